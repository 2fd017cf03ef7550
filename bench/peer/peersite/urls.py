"""The peer's endpoints (README.md; peer.PATHS names them for bench/run.py)."""
from django.conf import settings
from django.urls import path
from django_ratelimit.decorators import ratelimit
from notifications.views import live_unread_notification_count

from . import views


def read_limited(view):
    """One budget per user across the read endpoints, like the service's user-read scope."""
    return ratelimit(group="user-read", key="user", rate=settings.RATE_LIMIT_USER_READ, block=True)(view)


urlpatterns = [
    path("healthz", views.healthz),
    path("inbox/notifications/api/unread_count/", read_limited(live_unread_notification_count),
         name="live_unread_notification_count"),
    path("inbox/notifications/api/list/", read_limited(views.notification_list), name="notification_list"),
]
