"""Queueing: what creating a notification puts in the outbox, quiet hours, cancellation."""
from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from psycopg.types.json import Jsonb

from email_helpers import outbox
from notifications_api.db import admin

UTC = timezone.utc


def _settings(conn, user_id: str, patch: dict) -> None:
    conn.execute("SELECT * FROM activity.sp_update_notification_settings(%s, %s)", (user_id, Jsonb(patch)))


def test_created_notification_queues_one_delivery(create, make_user, admin_db):
    user = make_user(email="ana@example.test")
    body = create(user, title="Ana commented on your post", message="Nice route!")
    notification = body["results"][0]["notification"]
    (row,) = outbox(admin_db, [user])
    assert row["notification_id"] == uuid.UUID(notification["notification_id"])
    assert (row["recipient"], row["subject"], row["body"]) == (
        "ana@example.test", "Ana commented on your post", "Nice route!")
    assert (row["status"], row["attempts"], row["lease_owner"]) == ("pending", 0, None)
    assert abs((row["available_at"] - datetime.now(UTC)).total_seconds()) < 5


def test_without_a_message_the_text_is_the_title(create, make_user, admin_db):
    user = make_user()
    create(user, title="Ben mentioned you", message=None)
    (row,) = outbox(admin_db, [user])
    assert row["body"] == "Ben mentioned you"


def test_no_email_api_url_queues_nothing(create, make_user, admin_db):
    user = make_user()
    body = create(user, email=False)
    assert body["results"][0]["result"] == "created"
    assert outbox(admin_db, [user]) == []


def test_settings_decide_per_user(create, make_user, admin_db, database):
    default, type_off, channel_off, other_type_off, in_app_off = (make_user() for _ in range(5))
    _settings(admin_db, type_off, {"type_preferences": {"comment": {"email": False}}})
    _settings(admin_db, channel_off, {"email_enabled": False})
    _settings(admin_db, other_type_off, {"type_preferences": {"reaction": {"email": False}}})
    _settings(admin_db, in_app_off, {"type_preferences": {"comment": {"in_app": False}}})
    no_address = str(admin.create_user(database.admin, email=None))
    users = [default, type_off, channel_off, other_type_off, in_app_off, no_address]
    body = create(users)
    results = {r["user_id"]: r["result"] for r in body["results"]}
    assert results[in_app_off] == "suppressed"
    queued = {str(r["user_id"]) for r in outbox(admin_db, users)}
    assert queued == {default, other_type_off}


def test_a_duplicate_queues_nothing_more(create, make_user, admin_db):
    user = make_user()
    create(user, dedupe_key="comment-9")
    again = create(user, dedupe_key="comment-9")
    assert again["results"][0]["result"] == "duplicate"
    assert len(outbox(admin_db, [user])) == 1


@pytest.mark.parametrize("permanent", ["false", "true"])
def test_archiving_or_deleting_before_sending_cancels(email_apps, create, make_user, admin_db, permanent):
    from notifications_api.web.auth import issue_token

    app = email_apps["on"]
    user = make_user()
    nid = create(user)["results"][0]["notification"]["notification_id"]
    response = app.test_client().delete(f"/api/v1/notifications/{nid}?permanent={permanent}",
                                        headers={"Authorization": f"Bearer {issue_token(app.config, user)}"})
    assert response.status_code == 204
    (row,) = outbox(admin_db, [user])
    assert row["status"] == "cancelled"


# --- quiet hours ------------------------------------------------------------------------------------

def _window_around_now(zone: str) -> tuple[dict, datetime]:
    """Quiet hours from an hour ago to an hour ahead (local time of `zone`), and the instant they end."""
    local = datetime.now(UTC).astimezone(ZoneInfo(zone))
    start = (local - timedelta(hours=1)).replace(second=0, microsecond=0)
    end = (local + timedelta(hours=1)).replace(second=0, microsecond=0)
    window = {"start": start.strftime("%H:%M"), "end": end.strftime("%H:%M"), "timezone": zone}
    return window, end.astimezone(UTC)


@pytest.mark.parametrize("zone", ["UTC", "Asia/Tokyo", "America/New_York"])
def test_quiet_hours_defer_to_their_end(create, make_user, admin_db, zone):
    user = make_user()
    window, ends = _window_around_now(zone)
    _settings(admin_db, user, {"quiet_hours": window})
    create(user)
    (row,) = outbox(admin_db, [user])
    assert row["available_at"] == ends


def test_urgent_is_not_deferred(create, make_user, admin_db):
    user = make_user()
    window, _ = _window_around_now("UTC")
    _settings(admin_db, user, {"quiet_hours": window})
    create(user, priority="urgent")
    (row,) = outbox(admin_db, [user])
    assert abs((row["available_at"] - datetime.now(UTC)).total_seconds()) < 5


def test_outside_quiet_hours_is_not_deferred(create, make_user, admin_db):
    user = make_user()
    local = datetime.now(UTC)
    start, end = local + timedelta(hours=2), local + timedelta(hours=3)
    _settings(admin_db, user, {"quiet_hours": {"start": start.strftime("%H:%M"), "end": end.strftime("%H:%M"),
                                               "timezone": "UTC"}})
    create(user)
    (row,) = outbox(admin_db, [user])
    assert abs((row["available_at"] - datetime.now(UTC)).total_seconds()) < 5


@pytest.mark.parametrize("start, end, zone, at, expected", [
    # across midnight, Amsterdam in winter (UTC+1)
    ("22:00", "07:00", "Europe/Amsterdam", "2026-01-15T21:30Z", "2026-01-16T06:00Z"),
    ("22:00", "07:00", "Europe/Amsterdam", "2026-01-16T05:00Z", "2026-01-16T06:00Z"),
    ("22:00", "07:00", "Europe/Amsterdam", "2026-01-15T21:00Z", "2026-01-16T06:00Z"),  # start is inside
    ("22:00", "07:00", "Europe/Amsterdam", "2026-01-16T06:00Z", None),  # end is outside
    ("22:00", "07:00", "Europe/Amsterdam", "2026-01-15T12:00Z", None),
    # summer time (UTC+2)
    ("22:00", "07:00", "Europe/Amsterdam", "2026-07-01T21:00Z", "2026-07-02T05:00Z"),
    # same-day window
    ("09:00", "17:00", "UTC", "2026-06-01T10:00Z", "2026-06-01T17:00Z"),
    ("09:00", "17:00", "UTC", "2026-06-01T08:59Z", None),
    # the local date differs from the UTC date
    ("20:00", "08:00", "America/New_York", "2026-01-15T02:00Z", "2026-01-15T13:00Z"),
    ("20:00", "08:00", "Asia/Tokyo", "2026-01-15T12:00Z", "2026-01-15T23:00Z"),
])
def test_quiet_hours_end(admin_db, start, end, zone, at, expected):
    got = admin_db.execute("SELECT activity.quiet_hours_end(%s::time, %s::time, %s, %s::timestamptz) AS e",
                           (start, end, zone, at)).fetchone()["e"]
    want = datetime.fromisoformat(expected.replace("Z", "+00:00")) if expected else None
    assert got == want
