"""The daily digest (settings `email_digest`, issue 25): its slot (DST-correct), its e-mail, switching."""
from __future__ import annotations

from datetime import datetime, timezone

import psycopg
import pytest
from psycopg.types.json import Jsonb

from email_helpers import outbox

UTC = timezone.utc
DAILY = {"frequency": "daily", "at": "08:30", "timezone": "Europe/Amsterdam"}


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.mark.parametrize("time_, zone, after, expected", [
    # an ordinary day: later today, else tomorrow
    ("08:30", "Europe/Amsterdam", "2026-12-07 06:00", "2026-12-07 07:30"),
    ("08:30", "Europe/Amsterdam", "2026-12-07 07:30", "2026-12-08 07:30"),
    ("08:30", "Europe/Amsterdam", "2026-12-07 10:00", "2026-12-08 07:30"),
    # spring forward (Amsterdam, 2026-03-29 02:00 -> 03:00): 02:30 and 02:00 do not exist -> 03:00 CEST
    ("02:30", "Europe/Amsterdam", "2026-03-28 12:00", "2026-03-29 01:00"),
    ("02:00", "Europe/Amsterdam", "2026-03-28 12:00", "2026-03-29 01:00"),
    ("03:00", "Europe/Amsterdam", "2026-03-28 12:00", "2026-03-29 01:00"),
    ("02:30", "Europe/Amsterdam", "2026-03-29 01:00", "2026-03-30 00:30"),  # the day after: 02:30 CEST
    # fall back (Amsterdam, 2026-10-25 03:00 -> 02:00): 02:30 happens twice -> the first, once
    ("02:30", "Europe/Amsterdam", "2026-10-24 12:00", "2026-10-25 00:30"),
    ("02:30", "Europe/Amsterdam", "2026-10-25 00:30", "2026-10-26 01:30"),
    # New York (2026-03-08 02:00 -> 03:00), and a zone far from UTC across the date line
    ("02:15", "America/New_York", "2026-03-07 12:00", "2026-03-08 07:00"),
    ("00:00", "Pacific/Kiritimati", "2026-12-07 09:00", "2026-12-07 10:00"),
    ("23:59", "Pacific/Pago_Pago", "2026-12-07 11:00", "2026-12-08 10:59"),
])
def test_the_slot(admin_db, time_, zone, after, expected):
    (slot,) = admin_db.execute("SELECT activity.email_daily_slot(%s::time, %s, %s)",
                               (time_, zone, at(after))).fetchone().values()
    assert slot == at(expected)


def test_a_day_of_slots_is_once_a_day_through_both_dst_changes(admin_db):
    """Walking slot to slot through 2026 in Amsterdam: one per local day, none skipped or doubled."""
    rows = admin_db.execute("""
        WITH RECURSIVE walk(n, slot) AS (
            SELECT 1, activity.email_daily_slot('02:30', 'Europe/Amsterdam', '2026-01-01 00:00Z')
            UNION ALL
            SELECT n + 1, activity.email_daily_slot('02:30', 'Europe/Amsterdam', slot) FROM walk WHERE n < 365)
        SELECT (slot AT TIME ZONE 'Europe/Amsterdam')::date AS day, slot FROM walk""").fetchall()
    days = [r["day"] for r in rows]
    assert len(set(days)) == 365 and all((b - a).days == 1 for a, b in zip(days, days[1:]))


@pytest.fixture
def daily_user(make_user, database):
    def make(digest=DAILY) -> str:
        user = make_user()
        with psycopg.connect(database.admin, autocommit=True) as conn:
            conn.execute("SELECT * FROM activity.sp_settings_update(%s, %s)", (user, Jsonb({"email_digest": digest})))
        return user
    return make


def notify(conn, user, title="like", priority="normal") -> str:
    (nid,) = conn.execute(
        "SELECT notification_id::text FROM activity.sp_inbox_create(%s::uuid[], 'like', %s, 'm',"
        " p_priority => %s, p_queue_email => true)", ([user], title, priority)).fetchone().values()
    return nid


def slot_passes(conn, user) -> None:
    conn.execute("UPDATE activity.email_outbox SET available_at = now() - interval '1 second'"
                 " WHERE user_id = %s AND status = 'pending' AND kind = 'daily'", (user,))


def test_a_daily_user_gets_one_email_at_the_slot_whatever_the_delay(daily_user, admin_db, make_worker, email_api):
    user = daily_user()
    nids = [notify(admin_db, user, f"t{i}") for i in range(3)]
    (expected,) = admin_db.execute("SELECT activity.email_daily_slot('08:30', 'Europe/Amsterdam', now())"
                                   ).fetchone().values()
    rows = outbox(admin_db, [user])
    assert {(r["kind"], r["available_at"]) for r in rows} == {("daily", expected)}
    for delay in (0, 600):
        assert make_worker(digest_delay_seconds=delay).run(once=True) == 0  # not before the slot
    admin_db.execute("SELECT activity.sp_bulk_update(%s, 'seen', ARRAY[%s]::uuid[])", (user, nids[0]))
    slot_passes(admin_db, user)
    assert make_worker(digest_delay_seconds=0).run(once=True) == 1  # even with the delay at 0: one digest
    (mail,) = email_api.received
    assert mail.body["notification_ids"] == nids[:0:-1] and mail.body["subject"] == "2 new notifications"


def test_a_daily_digest_with_nothing_unseen_sends_nothing(daily_user, admin_db, make_worker, email_api):
    user = daily_user()
    notify(admin_db, user)
    admin_db.execute("SELECT activity.sp_bulk_update(%s, 'read', p_all => true)", (user,))
    slot_passes(admin_db, user)
    assert make_worker(digest_delay_seconds=600).run(once=True) == 0
    assert email_api.received == [] and {r["status"] for r in outbox(admin_db, [user])} == {"cancelled"}


def test_urgent_still_goes_at_once_for_a_daily_user(daily_user, admin_db, make_worker, email_api):
    user = daily_user()
    notify(admin_db, user)
    urgent = notify(admin_db, user, "urgent", priority="urgent")
    assert make_worker(digest_delay_seconds=600).run(once=True) == 1
    assert [m.body["notification_ids"] for m in email_api.received] == [[urgent]]


def test_quiet_hours_do_not_apply_to_a_daily_digest(daily_user, admin_db):
    user = daily_user()
    admin_db.execute("SELECT * FROM activity.sp_settings_update(%s, %s)", (user, Jsonb(
        {"quiet_hours": {"start": "00:00", "end": "23:59", "timezone": "Europe/Amsterdam"}})))
    notify(admin_db, user)
    (row,) = outbox(admin_db, [user])
    (slot,) = admin_db.execute("SELECT activity.email_daily_slot('08:30', 'Europe/Amsterdam', now())"
                               ).fetchone().values()
    assert (row["kind"], row["available_at"]) == ("daily", slot)


def test_switching_moves_what_is_waiting(daily_user, admin_db, make_worker, email_api):
    user = daily_user({"frequency": "batched"})
    notify(admin_db, user)
    admin_db.execute("SELECT * FROM activity.sp_settings_update(%s, %s)", (user, Jsonb({"email_digest": DAILY})))
    (row,) = outbox(admin_db, [user])
    assert row["kind"] == "daily" and row["available_at"] > datetime.now(UTC)
    admin_db.execute("SELECT * FROM activity.sp_settings_update(%s, %s)", (user, Jsonb({"email_digest": None})))
    (row,) = outbox(admin_db, [user])
    assert (row["kind"], row["available_at"]) == ("batched", row["created_at"])  # the delay counts from creation
    assert make_worker(digest_delay_seconds=0).run(once=True) == 1


@pytest.mark.parametrize("digest, path", [
    ({"frequency": "daily", "at": "08:30"}, "email_digest.timezone"),
    ({"frequency": "daily", "at": "8:30", "timezone": "UTC"}, "email_digest.at"),
    ({"frequency": "weekly"}, "email_digest.frequency"),
    ({"frequency": "batched", "at": "08:30"}, "email_digest.at"),
    ({"frequency": "daily", "at": "08:30", "timezone": "UTC", "x": 1}, "email_digest.x"),
    ([], "email_digest"),
])
def test_the_function_checks_by_path(make_user, admin_db, digest, path):
    with pytest.raises(psycopg.Error) as info:
        admin_db.execute("SELECT * FROM activity.sp_settings_update(%s, %s)",
                         (make_user(), Jsonb({"email_digest": digest})))
    assert info.value.sqlstate == "NA422" and info.value.diag.message_detail == path
