"""The peer's own views: the list page as JSON, the health check and the 429 answer.

The unread count is django-notifications-hq's own `live_unread_notification_count` (urls.py).
"""
from django.forms.models import model_to_dict
from django.http import JsonResponse
from django.views.decorators.cache import never_cache
from notifications.utils import id2slug

DEFAULT_LIMIT, MAX_LIMIT = 20, 100  # as the service's list (API.md: limit 1-100, default 20)


def _limit(request):
    try:
        limit = int(request.GET.get("limit", DEFAULT_LIMIT))
    except ValueError:
        return DEFAULT_LIMIT
    return limit if 1 <= limit <= MAX_LIMIT else DEFAULT_LIMIT


@never_cache
def notification_list(request):
    """The user's newest notifications, as AllNotificationsList lists them, serialised as the
    package's JSON views do (model_to_dict + slug) but without resolving the generic foreign keys
    (actor, target, action object) into objects: one query, like the service's page, which
    returns ids too."""
    items = []
    for notification in request.user.notifications.all()[:_limit(request)]:
        item = model_to_dict(notification)
        item["id"], item["slug"] = notification.id, id2slug(notification.id)
        items.append(item)
    return JsonResponse({"items": items})


def healthz(request):
    return JsonResponse({"status": "ok"})


def rate_limited(request, exception):
    return JsonResponse({"code": "rate_limited", "detail": "Too many requests."}, status=429)
