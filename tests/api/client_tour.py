"""A client author's first script, written against the Python client that openapi-python-client
generates from /openapi.json (package `notifications_api_client`, made by test_generated_client.py).

Typed as such a script would be: every body is a generated model, every answer is narrowed to its
generated model before use. Nothing here knows the API beyond what the document says.
"""
from __future__ import annotations

import json
import uuid

from notifications_api_client import AuthenticatedClient, Client
from notifications_api_client.api.internal import create_notifications
from notifications_api_client.api.notifications import (
    create_stream_ticket,
    get_unread_count,
    list_notifications,
    mark_notifications_read_bulk,
    stream_notifications,
)
from notifications_api_client.api.operations import get_health
from notifications_api_client.api.settings import get_settings, update_settings
from notifications_api_client.models import (
    CreateNotification,
    CreateNotificationPayload,
    CreateNotificationPriority,
    CreateResponse,
    CreateStreamTicketResponse201,
    Health,
    MarkRead,
    MarkReadResult,
    NotificationList,
    QuietHours,
    Settings,
    SettingsPatch,
    UnreadCount,
)


def events(stream: str) -> list[dict[str, str]]:
    """The text/event-stream body as its events (field -> value), as the document describes them."""
    return [dict(line.split(": ", 1) for line in block.split("\n"))
            for block in stream.split("\n\n") if block.strip()]


def tour(base_url: str, user_token: str, service_token: str, user_id: str) -> dict[str, object]:
    """Create two notifications, list and count them, read the live stream (JWT and ticket), mark them
    read in bulk, change the settings, check the service's health: an operation of every tag."""
    user = AuthenticatedClient(base_url=base_url, token=user_token)
    service = AuthenticatedClient(base_url=base_url, token=service_token)  # Authorization: Bearer works too

    payload = CreateNotificationPayload.from_dict({"post_id": 812})
    created: list[CreateResponse] = []
    for kind in ("comment", "mention"):
        body = CreateNotification(user_id=uuid.UUID(user_id), notification_type=kind, title=f"A {kind}",
                                  payload=payload, priority=CreateNotificationPriority.HIGH)
        answer = create_notifications.sync(client=service, body=body)
        assert isinstance(answer, CreateResponse), answer
        created.append(answer)

    page = list_notifications.sync(client=user, limit=10)
    assert isinstance(page, NotificationList), page
    count = get_unread_count.sync(client=user)
    assert isinstance(count, UnreadCount), count

    # The stream answers text/event-stream: the generated client hands back the text.
    streamed = stream_notifications.sync(client=user)
    assert isinstance(streamed, str), streamed
    ticket = create_stream_ticket.sync(client=user)
    assert isinstance(ticket, CreateStreamTicketResponse201), ticket
    browser = AuthenticatedClient(base_url=base_url, token="", prefix="")  # EventSource sends no credential
    with_ticket = stream_notifications.sync(client=browser, ticket=ticket.ticket)
    assert isinstance(with_ticket, str), with_ticket

    marked = mark_notifications_read_bulk.sync(
        client=user, body=MarkRead(notification_type="comment"))
    assert isinstance(marked, MarkReadResult), marked

    patched = update_settings.sync(client=user, body=SettingsPatch(
        push_enabled=False, quiet_hours=QuietHours(start="22:00", end="07:00", timezone="Europe/Amsterdam")))
    assert isinstance(patched, Settings), patched
    settings = get_settings.sync(client=user)
    assert isinstance(settings, Settings), settings
    quiet = settings.quiet_hours
    assert isinstance(quiet, QuietHours), quiet
    health = get_health.sync(client=Client(base_url=base_url))
    assert isinstance(health, Health), health

    return {
        "created": [result.result.value for answer in created for result in answer.results],
        "created_ids": [result.notification.notification_id for answer in created for result in answer.results
                        if result.notification is not None],
        "listed": [(item.notification_type, item.status.value, item.read_at, item.payload.to_dict())
                   for item in page.items],
        "unread_before": count.unread_count,
        "by_type_before": count.by_type.to_dict(),
        "streamed": [(event["event"], json.loads(event["data"])) for event in events(streamed) if "data" in event],
        "streamed_with_ticket": [event["event"] for event in events(with_ticket) if "data" in event],
        "marked": (marked.updated_count, marked.unread_count),
        "push_enabled": settings.push_enabled,
        "quiet_hours": (quiet.start, quiet.end, quiet.timezone),
        "health": health.status,
    }
