"""Every stored function's success and failure paths, called as the app role."""
from __future__ import annotations

import datetime as dt
import time
import uuid

import pytest
from db_helpers import call, create, create_one, recount, sqlstate, unread

OUT_COLUMNS = ["notification_id", "user_id", "notification_type", "title", "message", "actor_user_id",
               "target_type", "target_id", "action_url", "payload", "priority", "group_key", "status",
               "created_at", "read_at", "archived_at", "expires_at"]
NOW = dt.datetime.now(dt.timezone.utc)


def future(seconds=3600):
    return dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=seconds)


# -- user checks (every user-facing function) -------------------------------------------------

USER_CALLS = [
    ("sp_get_user_notifications", {}),
    ("sp_get_notification_by_id", {"notification_id": uuid.uuid4()}),
    ("sp_mark_notification_as_read", {"notification_id": uuid.uuid4()}),
    ("sp_mark_notifications_as_read_bulk", {"all": True}),
    ("sp_delete_notification", {"notification_id": uuid.uuid4()}),
    ("sp_get_unread_count", {}),
    ("sp_get_notification_settings", {}),
    ("sp_update_notification_settings", {"patch": {}}),
]


@pytest.mark.parametrize(("fn", "kwargs"), USER_CALLS, ids=[c[0] for c in USER_CALLS])
def test_unknown_and_inactive_users_are_refused(db_app, db_user, fn, kwargs):
    with sqlstate("NA401"):
        call(db_app, fn, user_id=uuid.uuid4(), **kwargs)
    with sqlstate("NA403"):
        call(db_app, fn, user_id=db_user(active=False), **kwargs)


# -- create -------------------------------------------------------------------------------------

def test_create_returns_the_notification_in_input_order(db_app, db_admin, db_user):
    a, b = db_user(), db_user()
    rows = create(db_app, [b, a], notification_type="comment", title="Ana commented", message="Nice",
                  actor_user_id=a, target_type="post", target_id="post-1", action_url="https://x.test/p/1",
                  payload={"comment_id": 9}, priority="high", group_key="g1")
    assert [r["user_id"] for r in rows] == [b, a]
    r = rows[0]
    assert r["result"] == "created" and r["status"] == "unread" and r["payload"] == {"comment_id": 9}
    assert (r["priority"], r["group_key"], r["read_at"], r["archived_at"]) == ("high", "g1", None, None)
    assert list(r)[1:] == OUT_COLUMNS
    assert unread(db_app, b) == {"unread_count": 1, "by_type": {"comment": 1}, "version": 1}
    assert recount(db_admin, b)[0] == 1


def test_create_outcomes_per_user(db_app, db_user):
    ok, inactive, suppressed, muted_type = db_user(), db_user(active=False), db_user(), db_user()
    missing = uuid.uuid4()
    call(db_app, "sp_update_notification_settings", user_id=suppressed, patch={"in_app_enabled": False})
    call(db_app, "sp_update_notification_settings", user_id=muted_type,
         patch={"type_preferences": {"comment": {"in_app": False}}})
    rows = create(db_app, [ok, missing, inactive, suppressed, muted_type])
    assert [r["result"] for r in rows] == ["created", "user_not_found", "user_inactive", "suppressed", "suppressed"]
    assert [r["user_id"] for r in rows] == [ok, missing, inactive, suppressed, muted_type]
    for r in rows[1:]:
        assert all(r[c] is None for c in OUT_COLUMNS if c != "user_id")
    assert create(db_app, muted_type, notification_type="mention")[0]["result"] == "created"


def test_create_dedupe_and_repeated_ids(db_app, db_user):
    a, b = db_user(), db_user()
    first = create(db_app, [a, b, a], dedupe_key="k1")
    assert [r["result"] for r in first] == ["created", "created", "duplicate"]
    assert first[0]["notification_id"] == first[2]["notification_id"]
    again = create(db_app, [a], dedupe_key="k1", title="other title")
    assert again[0]["result"] == "duplicate" and again[0]["notification_id"] == first[0]["notification_id"]
    assert again[0]["title"] == "Hello"
    # without a dedupe key a repeated id is stored once too
    rows = create(db_app, [b, b])
    assert [r["result"] for r in rows] == ["created", "duplicate"]
    assert rows[0]["notification_id"] == rows[1]["notification_id"]
    assert unread(db_app, a)["unread_count"] == 1 and unread(db_app, b)["unread_count"] == 2


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"user_ids": []}, "user_ids"),
    ({"user_ids": [None]}, "user_ids"),
    ({"user_ids": "many"}, "user_ids"),
    ({"notification_type": "Comment"}, "notification_type"),
    ({"notification_type": "a" * 65}, "notification_type"),
    ({"title": ""}, "title"),
    ({"title": "x" * 201}, "title"),
    ({"message": "x" * 2001}, "message"),
    ({"action_url": "javascript:alert(1)"}, "action_url"),
    ({"action_url": "https://x.test/" + "a" * 2040}, "action_url"),
    ({"payload": [1, 2]}, "payload"),
    ({"payload": {"x": "y" * 17000}}, "payload"),
    ({"priority": "critical"}, "priority"),
    ({"expires_at": NOW - dt.timedelta(seconds=1)}, "expires_at"),
    ({"dedupe_key": "k" * 129}, "dedupe_key"),
    ({"target_id": "t" * 256}, "target_id"),
])
def test_create_rejects_invalid_arguments(db_app, db_user, kwargs, field):
    args = {"user_ids": [db_user()], "notification_type": "comment", "title": "t"}
    if kwargs.get("user_ids") == "many":
        kwargs = {"user_ids": [uuid.uuid4() for _ in range(1001)]}
    args.update(kwargs)
    with sqlstate("NA422", field):
        call(db_app, "sp_create_notification", **args)


def test_create_fan_out_of_1000_users(db_app, db_admin, db_user):
    """One call for 1000 users (its speed is measured by `make bench`, not asserted here)."""
    users = [uuid.uuid4() for _ in range(1000)]
    db_admin.execute("INSERT INTO activity.users (user_id, email) SELECT u, u || '@x.test' FROM unnest(%s::uuid[]) u",
                     (users,))
    rows = create(db_app, users, queue_email=True)
    assert [r["user_id"] for r in rows] == users and {r["result"] for r in rows} == {"created"}
    assert db_admin.execute("SELECT count(*) FROM activity.email_outbox WHERE user_id = ANY(%s)",
                            (users,)).fetchone()[0] == 1000


# -- e-mail outbox ----------------------------------------------------------------------------------

def outbox(db_admin, user_id):
    return db_admin.execute("SELECT notification_id, recipient, subject, body, status, available_at"
                            " FROM activity.email_outbox WHERE user_id = %s", (user_id,)).fetchall()


def test_create_queues_email_by_settings(db_app, db_admin, db_user):
    plain, no_email, email_off, type_off = db_user(), db_user(email=None), db_user(), db_user()
    call(db_app, "sp_update_notification_settings", user_id=email_off, patch={"email_enabled": False})
    call(db_app, "sp_update_notification_settings", user_id=type_off,
         patch={"type_preferences": {"comment": {"email": False}}})
    rows = create(db_app, [plain, no_email, email_off, type_off], title="T", queue_email=True)
    assert {r["result"] for r in rows} == {"created"}
    [(nid, recipient, subject, body, status, _)] = outbox(db_admin, plain)
    assert (nid, recipient, subject, body, status) == (rows[0]["notification_id"], f"{plain}@example.test",
                                                       "T", "T", "pending")
    assert outbox(db_admin, no_email) == outbox(db_admin, email_off) == outbox(db_admin, type_off) == []
    other = db_user()
    create(db_app, other, message="body")
    assert outbox(db_admin, other) == []  # queue_email defaults to false
    create(db_app, other, message="body", queue_email=True, dedupe_key="d")
    create(db_app, other, message="body", queue_email=True, dedupe_key="d")  # duplicate: no second e-mail
    assert [r[3] for r in outbox(db_admin, other)] == ["body"]


def test_quiet_hours_defer_email_except_urgent(db_app, db_admin, db_user):
    u = db_user()
    # a window covering every instant but one minute: "now" is inside it
    local_now = db_admin.execute("SELECT (now() AT TIME ZONE 'UTC')::time").fetchone()[0]
    end = (dt.datetime.combine(dt.date.today(), local_now) - dt.timedelta(minutes=1)).strftime("%H:%M")
    start = (dt.datetime.combine(dt.date.today(), local_now) - dt.timedelta(minutes=2)).strftime("%H:%M")
    call(db_app, "sp_update_notification_settings", user_id=u,
         patch={"quiet_hours": {"start": end, "end": start, "timezone": "UTC"}})
    create(db_app, u, queue_email=True, priority="normal")
    create(db_app, u, queue_email=True, priority="urgent", notification_type="alert")
    times = sorted(r[5] for r in outbox(db_admin, u))
    now = db_admin.execute("SELECT now()").fetchone()[0]
    assert times[0] <= now + dt.timedelta(seconds=5)
    assert times[1] > now + dt.timedelta(hours=23)


def test_quiet_hours_end_helper(db_admin):
    def qe(start, end, tz, at):
        return db_admin.execute("SELECT activity.quiet_hours_end(%s::time, %s::time, %s, %s::timestamptz)",
                                (start, end, tz, at)).fetchone()[0]

    def utc(s):
        return dt.datetime.fromisoformat(s).astimezone(dt.timezone.utc)
    # over midnight, Amsterdam in winter (UTC+1)
    assert qe("22:00", "07:00", "Europe/Amsterdam", "2026-01-10T22:30:00+01:00") == utc("2026-01-11T07:00:00+01:00")
    assert qe("22:00", "07:00", "Europe/Amsterdam", "2026-01-11T06:59:00+01:00") == utc("2026-01-11T07:00:00+01:00")
    assert qe("22:00", "07:00", "Europe/Amsterdam", "2026-01-11T07:00:00+01:00") is None
    assert qe("22:00", "07:00", "Europe/Amsterdam", "2026-01-11T12:00:00+01:00") is None
    # the night the clocks go forward (2026-03-29 02:00 -> 03:00): the window ends at 07:00 CEST
    assert qe("22:00", "07:00", "Europe/Amsterdam", "2026-03-28T23:00:00+01:00") == utc("2026-03-29T07:00:00+02:00")
    # same-day window
    assert qe("13:00", "14:00", "UTC", "2026-01-10T13:30:00Z") == utc("2026-01-10T14:00:00Z")
    assert qe("13:00", "14:00", "UTC", "2026-01-10T12:59:00Z") is None
    assert qe(None, None, None, "2026-01-10T12:59:00Z") is None


# -- list -------------------------------------------------------------------------------------------

def ids(rows):
    return [r["notification_id"] for r in rows]


def test_list_filters_and_keyset(db_app, db_user):
    u, other = db_user(), db_user()
    made = [create_one(db_app, u, notification_type=t) for t in ["comment", "mention", "comment", "like", "comment"]]
    create_one(db_app, other)
    newest_first = list(reversed(ids(made)))
    call(db_app, "sp_mark_notification_as_read", user_id=u, notification_id=made[1]["notification_id"])
    call(db_app, "sp_delete_notification", user_id=u, notification_id=made[3]["notification_id"])

    def lst(**kw):
        return ids(call(db_app, "sp_get_user_notifications", user_id=u, **kw))
    inbox = [i for i in newest_first if i != made[3]["notification_id"]]
    assert lst() == inbox
    assert lst(status="all") == newest_first
    assert lst(status="archived") == [made[3]["notification_id"]]
    assert lst(status="read") == [made[1]["notification_id"]]
    assert lst(status="unread") == [i for i in inbox if i != made[1]["notification_id"]]
    assert lst(types=["mention", "like"], status="all") == [made[3]["notification_id"], made[1]["notification_id"]]
    assert lst(types=[]) == inbox
    # keyset walk, page size 2
    seen, cursor = [], {}
    while True:
        page = call(db_app, "sp_get_user_notifications", user_id=u, status="all", limit=2, **cursor)
        seen += ids(page)
        if len(page) < 2:
            break
        cursor = {"cursor_created_at": page[-1]["created_at"], "cursor_id": page[-1]["notification_id"]}
    assert seen == newest_first


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"status": "deleted"}, "status"), ({"limit": 0}, "limit"), ({"limit": 102}, "limit"),
    ({"cursor_id": uuid.uuid4()}, "cursor")])
def test_list_rejects_invalid_arguments(db_app, db_user, kwargs, field):
    with sqlstate("NA422", field):
        call(db_app, "sp_get_user_notifications", user_id=db_user(), **kwargs)
    assert len(call(db_app, "sp_get_user_notifications", user_id=db_user(), limit=101)) == 0


# -- by id, mark read -----------------------------------------------------------------------------

def test_get_by_id_is_scoped_to_the_user(db_app, db_user):
    u, other = db_user(), db_user()
    n = create_one(db_app, u)
    [row] = call(db_app, "sp_get_notification_by_id", user_id=u, notification_id=n["notification_id"])
    assert row["notification_id"] == n["notification_id"] and list(row) == OUT_COLUMNS
    for who, nid in [(other, n["notification_id"]), (u, uuid.uuid4())]:
        with sqlstate("NA404"):
            call(db_app, "sp_get_notification_by_id", user_id=who, notification_id=nid)


def test_mark_read_unread_rules(db_app, db_admin, db_user):
    u = db_user()
    nid = create_one(db_app, u)["notification_id"]
    v0 = unread(db_app, u)["version"]
    [r1] = call(db_app, "sp_mark_notification_as_read", user_id=u, notification_id=nid)
    assert r1["status"] == "read" and r1["read_at"] is not None
    assert unread(db_app, u) == {"unread_count": 0, "by_type": {}, "version": v0 + 1}
    [r2] = call(db_app, "sp_mark_notification_as_read", user_id=u, notification_id=nid, read=True)
    assert r2["read_at"] == r1["read_at"] and unread(db_app, u)["version"] == v0 + 1  # idempotent
    [r3] = call(db_app, "sp_mark_notification_as_read", user_id=u, notification_id=nid, read=False)
    assert r3["status"] == "unread" and r3["read_at"] is None
    assert unread(db_app, u)["unread_count"] == 1
    call(db_app, "sp_delete_notification", user_id=u, notification_id=nid)
    [r4] = call(db_app, "sp_mark_notification_as_read", user_id=u, notification_id=nid)
    assert r4["status"] == "archived" and r4["read_at"] is not None  # archived wins
    [r5] = call(db_app, "sp_mark_notification_as_read", user_id=u, notification_id=nid, read=False)
    assert r5["status"] == "archived" and r5["read_at"] is None
    assert unread(db_app, u)["unread_count"] == 0
    stored, _, actual = recount(db_admin, u)
    assert stored == actual == 0
    with sqlstate("NA404"):
        call(db_app, "sp_mark_notification_as_read", user_id=db_user(), notification_id=nid)


# -- bulk -------------------------------------------------------------------------------------------

def test_bulk_selectors(db_app, db_admin, db_user):
    u, other = db_user(), db_user()
    made = [create_one(db_app, u, notification_type=t) for t in ["comment", "mention", "comment", "like"]]
    theirs = create_one(db_app, other)["notification_id"]
    [r] = call(db_app, "sp_mark_notifications_as_read_bulk", user_id=u,
               notification_ids=[made[0]["notification_id"], made[1]["notification_id"], theirs, uuid.uuid4()],
               notification_type="comment")
    assert r == {"updated_count": 1, "unread_count": 3}
    [r] = call(db_app, "sp_mark_notifications_as_read_bulk", user_id=u, all=True, before=made[2]["created_at"])
    assert r == {"updated_count": 2, "unread_count": 1}
    assert unread(db_app, u)["by_type"] == {"like": 1}
    [r] = call(db_app, "sp_mark_notifications_as_read_bulk", user_id=u, all=True)
    assert r == {"updated_count": 1, "unread_count": 0}
    [r] = call(db_app, "sp_mark_notifications_as_read_bulk", user_id=u, all=True)
    assert r == {"updated_count": 0, "unread_count": 0}
    assert unread(db_app, other)["unread_count"] == 1
    stored, _, actual = recount(db_admin, u)
    assert stored == actual == 0


@pytest.mark.parametrize(("kwargs", "field"), [
    ({}, "all"), ({"all": False}, "all"), ({"before": NOW}, "all"),
    ({"notification_ids": []}, "notification_ids"),
    ({"notification_ids": [uuid.uuid4() for _ in range(1001)]}, "notification_ids")])
def test_bulk_rejects_invalid_arguments(db_app, db_user, kwargs, field):
    with sqlstate("NA422", field):
        call(db_app, "sp_mark_notifications_as_read_bulk", user_id=db_user(), **kwargs)


# -- delete -----------------------------------------------------------------------------------------

def test_archive_and_delete(db_app, db_admin, db_user):
    u = db_user()
    a = create_one(db_app, u, queue_email=True)["notification_id"]
    b = create_one(db_app, u, queue_email=True, notification_type="mention")["notification_id"]
    assert len(call(db_app, "sp_delete_notification", user_id=u, notification_id=a)) == 1
    call(db_app, "sp_delete_notification", user_id=u, notification_id=a)  # archiving again: no-op
    [row] = call(db_app, "sp_get_notification_by_id", user_id=u, notification_id=a)
    assert row["status"] == "archived" and row["archived_at"] is not None
    assert unread(db_app, u)["unread_count"] == 1
    call(db_app, "sp_delete_notification", user_id=u, notification_id=b, permanent=True)
    with sqlstate("NA404"):
        call(db_app, "sp_get_notification_by_id", user_id=u, notification_id=b)
    with sqlstate("NA404"):
        call(db_app, "sp_delete_notification", user_id=u, notification_id=b)
    assert unread(db_app, u) == {"unread_count": 0, "by_type": {}, "version": 4}
    assert sorted(r[4] for r in outbox(db_admin, u)) == ["cancelled", "cancelled"]
    call(db_app, "sp_delete_notification", user_id=u, notification_id=a, permanent=True)
    assert recount(db_admin, u)[0] == 0


# -- unread count ------------------------------------------------------------------------------------

def test_unread_count_shapes(db_app, db_user):
    u = db_user()
    assert unread(db_app, u) == {"unread_count": 0, "by_type": {}, "version": 0}
    assert unread(db_app, u, by_type=False) == {"unread_count": 0, "by_type": None, "version": 0}
    create_one(db_app, u)
    create_one(db_app, u, notification_type="mention")
    assert unread(db_app, u) == {"unread_count": 2, "by_type": {"comment": 1, "mention": 1}, "version": 2}
    # the production probe, exactly as written
    row = db_app.execute(f"SELECT * FROM activity.sp_get_unread_count('{u}', false);").fetchone()
    assert row == (2, None, 2)


def known(conn, user_id, version, count, by_type=True) -> dict:
    """The app's four-argument form: what the caller knows, (version, count), or NULLs."""
    [row] = call(conn, "sp_get_unread_count", user_id=user_id, by_type=by_type,
                 known_version=version, known_count=count)
    return row


def test_unread_count_known_pair_skips_by_type(db_app, db_user):
    u = db_user()
    create_one(db_app, u)
    create_one(db_app, u, notification_type="mention")
    state = unread(db_app, u)
    assert (state["version"], state["unread_count"]) == (2, 2)
    # the caller's (version, count) still holds: by_type NULL means "unchanged"
    assert known(db_app, u, 2, 2) == {"unread_count": 2, "by_type": None, "version": 2}
    # either half stale, or unknown: the full answer
    for version, count in [(1, 2), (2, 1), (2, None), (None, 2), (None, None)]:
        assert known(db_app, u, version, count) == state
    assert known(db_app, u, 2, 2, by_type=False)["by_type"] is None  # not asked for: NULL either way
    # the first release's two-argument form (rollbacks, probes): the same full answer
    assert call(db_app, "sp_get_unread_count", user_id=u) == [state]
    create_one(db_app, u)  # any change bumps the version: the old pair no longer holds
    assert known(db_app, u, 2, 2) == {"unread_count": 3, "by_type": {"comment": 2, "mention": 1}, "version": 3}


def test_unread_count_known_pair_stops_holding_when_one_expires(db_app, db_user):
    u = db_user()
    create_one(db_app, u)
    create_one(db_app, u, notification_type="mention", expires_at=future(1.0))
    assert known(db_app, u, 2, 2)["by_type"] is None
    time.sleep(1.1)  # the expiry is folded in: a new version, and the known pair no longer holds
    assert known(db_app, u, 2, 2) == {"unread_count": 1, "by_type": {"comment": 1}, "version": 3}


def test_unread_count_known_pair_still_checks_the_user(db_app, db_admin, db_user):
    u = db_user()
    db_admin.execute("UPDATE activity.users SET is_active = false WHERE user_id = %s", (u,))
    with sqlstate("NA403"):
        known(db_app, u, 0, 0)
    with sqlstate("NA401"):
        known(db_app, str(uuid.uuid4()), 0, 0)


# -- expiry ------------------------------------------------------------------------------------------

def expire(db_admin, user_id, nid):
    """Move expires_at into the past; next_expiry follows (it bounds expires_at from below)."""
    db_admin.execute("UPDATE activity.notifications SET expires_at = now() - interval '1 second'"
                     " WHERE user_id = %s AND notification_id = %s", (user_id, nid))
    db_admin.execute("UPDATE activity.notification_counters SET next_expiry = now() - interval '1 second'"
                     " WHERE user_id = %s", (user_id,))


def test_expired_notifications_are_invisible(db_app, db_admin, db_user):
    u = db_user()
    keep = create_one(db_app, u)["notification_id"]
    gone = create_one(db_app, u, notification_type="mention", expires_at=future(1.0))["notification_id"]
    assert unread(db_app, u)["unread_count"] == 2
    time.sleep(1.1)  # real expiry: next_change_at must trigger the fold by itself (a new version)
    assert unread(db_app, u) == {"unread_count": 1, "by_type": {"comment": 1}, "version": 3}
    assert ids(call(db_app, "sp_get_user_notifications", user_id=u, status="all")) == [keep]
    for fn in ["sp_get_notification_by_id", "sp_mark_notification_as_read", "sp_delete_notification"]:
        with sqlstate("NA404"):
            call(db_app, fn, user_id=u, notification_id=gone)
    [r] = call(db_app, "sp_mark_notifications_as_read_bulk", user_id=u, notification_ids=[gone, keep])
    assert r == {"updated_count": 1, "unread_count": 0}
    stored, _, actual = recount(db_admin, u)
    assert stored == actual == 1  # the counter still holds the expired row until it is purged


# -- purge -------------------------------------------------------------------------------------------

def test_purge_keeps_counters_exact(db_app, db_admin, db_retention, db_user):
    u = db_user()
    expired = create_one(db_app, u, expires_at=future(), queue_email=True)["notification_id"]
    expire(db_admin, u, expired)
    db_admin.execute("UPDATE activity.email_outbox SET status = 'sent' WHERE user_id = %s", (u,))
    old = create_one(db_app, u)["notification_id"]
    call(db_app, "sp_delete_notification", user_id=u, notification_id=old)
    db_admin.execute("UPDATE activity.notifications SET archived_at = now() - interval '100 days'"
                     " WHERE user_id = %s AND notification_id = %s", (u, old))
    recent = create_one(db_app, u)["notification_id"]
    total = 0
    while True:
        [r] = call(db_retention, "sp_purge_notifications", archived_older_than_days=90, batch_size=1)
        total += r["deleted_count"]
        if r["deleted_count"] == 0:
            break
    assert total >= 2
    assert ids(call(db_app, "sp_get_user_notifications", user_id=u, status="all")) == [recent]
    stored, _, actual = recount(db_admin, u)
    assert stored == actual == 1
    assert outbox(db_admin, u) == []
    assert db_admin.execute("SELECT next_expiry FROM activity.notification_counters WHERE user_id = %s",
                            (u,)).fetchone()[0] is None
    for kwargs, field in [({"batch_size": 0}, "batch_size"),
                          ({"archived_older_than_days": -1}, "archived_older_than_days")]:
        with sqlstate("NA422", field):
            call(db_retention, "sp_purge_notifications", **kwargs)


# -- schema version ----------------------------------------------------------------------------------

def test_schema_version_is_readable_by_the_app(db_app):
    rows = call(db_app, "sp_schema_version")
    names = [r["filename"] for r in rows]
    assert "0001_schema.sql" in names and "repeatable/0100_helpers.sql" in names
    assert all(len(r["checksum"]) == 64 for r in rows)


def test_the_payload_limit_measures_compact_json(db_app, db_user):
    """sp_inbox_create measures the payload as the API does (compact JSON), not as jsonb's text."""
    import json
    u = db_user()
    payload = {f"k{n:04d}": [n, {"a": None}] for n in range(600)}
    payload["pad"] = ""
    payload["pad"] = "é" * ((16384 - len(json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode())) // 2)
    size = len(json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode())
    assert 16383 <= size <= 16384
    create_one(db_app, u, payload=payload)
    payload["pad"] += "xx"
    with sqlstate("NA422", "payload"):
        create(db_app, u, payload=payload)
