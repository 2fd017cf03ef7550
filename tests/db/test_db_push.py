"""Web Push stored functions (migrations_sql/repeatable/0210_push.sql): subscriptions, queueing by the
create (one push_queue row), its expansion into per-browser deliveries, the worker's lease/outcome
functions, the purge; races with threads and separate connections."""
from __future__ import annotations

import os
import secrets
import threading
import uuid
from datetime import datetime, timedelta, timezone

import psycopg
import pytest
from db_helpers import call, create, create_one, run_threads, sqlstate


def _point() -> bytes:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    return ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)


def endpoint() -> str:
    return f"https://fcm.googleapis.com/fcm/send/{secrets.token_urlsafe(24)}"


def subscribe(conn, user_id, url=None, **kwargs) -> dict:
    [row] = call(conn, "sp_push_subscribe", user_id=user_id, endpoint=url or endpoint(), p256dh=_point(),
                 auth=os.urandom(16), **kwargs)
    return row


def expand_all(conn, limit=1000) -> int:
    """Expand the whole push queue (what the worker's claim does first); the deliveries queued."""
    queued = 0
    while True:
        [row] = call(conn, "sp_expand_push_queue", limit=limit)
        queued += row["queued"]
        if not row["expanded"]:
            return queued


def queue_rows(admin_conn) -> list[tuple]:
    return admin_conn.execute("SELECT user_ids, notification_ids, notification_type, priority, created_at"
                              " FROM activity.push_queue ORDER BY created_at").fetchall()


def outbox(admin_conn, user_id) -> list[tuple]:
    """The user's push_outbox rows, once the queue is expanded."""
    expand_all(admin_conn)
    return admin_conn.execute(
        "SELECT notification_id, subscription_id, status, attempts, available_at, last_error"
        " FROM activity.push_outbox WHERE user_id = %s ORDER BY created_at, subscription_id",
        (user_id,)).fetchall()


@pytest.fixture(scope="module")
def push_login(db_env, push_worker_login):
    """A login provisioned like production's push worker user (member of notifications_push_worker only)."""
    return push_worker_login(db_env.admin)


@pytest.fixture
def db_push(push_login, db_admin):
    """An autocommit connection as the push worker; the queue and the outbox start with nothing due."""
    db_admin.execute("DELETE FROM activity.push_queue")
    db_admin.execute("UPDATE activity.push_outbox SET status = 'cancelled', finished_at = now(),"
                     " lease_expires_at = NULL WHERE status IN ('pending', 'sending')")
    with psycopg.connect(push_login, autocommit=True) as conn:
        yield conn


def claim(conn, worker="w1", limit=100, lease=60, max_attempts=5) -> list[dict]:
    return call(conn, "sp_claim_push_deliveries", worker=worker, limit=limit, lease_seconds=lease,
                max_attempts=max_attempts)


def complete(conn, worker, *rows) -> list:
    return [r["delivery_id"] for r in call(conn, "sp_complete_push_deliveries", worker=worker,
                                           user_ids=[r["user_id"] for r in rows],
                                           delivery_ids=[r["delivery_id"] for r in rows])]


# --- subscriptions -------------------------------------------------------------------------------

def test_subscribe_creates_updates_and_never_returns_the_endpoint_or_keys(db_app, db_admin, db_user):
    u = db_user()
    url = endpoint()
    first = subscribe(db_app, u, url, user_agent="Firefox")
    assert first["result"] == "created" and first["removed_count"] == 0
    assert first["endpoint_origin"] == "https://fcm.googleapis.com"
    assert set(first) == {"result", "removed_count", "subscription_id", "endpoint_origin", "user_agent",
                          "created_at", "expiration_time", "last_success_at", "consecutive_failures"}
    later = datetime(2030, 1, 1, tzinfo=timezone.utc)
    again = subscribe(db_app, u, url, user_agent="Firefox 2", expiration_time=later)
    assert again["result"] == "updated"
    assert again["subscription_id"] == first["subscription_id"] and again["created_at"] == first["created_at"]
    assert again["user_agent"] == "Firefox 2" and again["expiration_time"] == later
    [listed] = call(db_app, "sp_push_subscriptions", user_id=u)
    assert "endpoint" not in listed and "p256dh" not in listed and listed["user_agent"] == "Firefox 2"


def test_subscribe_validates_and_checks_the_user(db_app, db_user):
    u = db_user()
    with sqlstate("NA422", "keys.p256dh"):
        call(db_app, "sp_push_subscribe", user_id=u, endpoint=endpoint(), p256dh=b"\x04" + b"x" * 10,
             auth=os.urandom(16))
    with sqlstate("NA422", "keys.auth"):
        call(db_app, "sp_push_subscribe", user_id=u, endpoint=endpoint(), p256dh=_point(), auth=b"short")
    with sqlstate("NA422", "endpoint"):
        call(db_app, "sp_push_subscribe", user_id=u, endpoint="ftp://x", p256dh=_point(), auth=os.urandom(16))
    with sqlstate("NA422", "user_agent"):
        subscribe(db_app, u, user_agent="x" * 201)
    with sqlstate("NA401"):
        subscribe(db_app, uuid.uuid4())
    with sqlstate("NA403"):
        subscribe(db_app, db_user(active=False))


def test_a_browser_signing_in_as_another_user_moves_with_its_pending_deliveries_gone(
        db_app, db_admin, db_push, db_user):
    ana, ben = db_user(), db_user()
    url = endpoint()
    old = subscribe(db_app, ana, url)
    create_one(db_app, ana)
    assert len(outbox(db_admin, ana)) == 1
    moved = subscribe(db_app, ben, url)
    assert moved["result"] == "moved" and moved["subscription_id"] != old["subscription_id"]
    assert call(db_app, "sp_push_subscriptions", user_id=ana) == []
    assert outbox(db_admin, ana) == []  # Ana's pending push can never reach Ben's browser
    assert claim(db_push) == []
    create_one(db_app, ben)
    [row] = claim(db_push)
    assert row["user_id"] == ben and row["subscription_id"] == moved["subscription_id"]


def test_at_most_20_per_user_the_oldest_goes(db_app, db_user):
    u = db_user()
    ids = [subscribe(db_app, u)["subscription_id"] for _ in range(20)]
    newest = subscribe(db_app, u)
    assert newest["removed_count"] == 1
    listed = [r["subscription_id"] for r in call(db_app, "sp_push_subscriptions", user_id=u)]
    assert len(listed) == 20 and ids[0] not in listed and listed[0] == newest["subscription_id"]
    assert listed[1:] == ids[1:][::-1]  # newest first


def test_the_cap_holds_under_concurrent_registrations(db_env, db_app, db_user):
    u = db_user()
    for _ in range(18):
        subscribe(db_app, u)

    def register(i):
        with psycopg.connect(db_env.app, autocommit=True) as conn:
            subscribe(conn, u)
    run_threads(8, register)
    assert len(call(db_app, "sp_push_subscriptions", user_id=u)) == 20


def test_one_endpoint_one_owner_under_concurrent_registrations(db_env, db_app, db_admin, db_user):
    users = [db_user() for _ in range(6)]
    url = endpoint()

    def register(i):
        with psycopg.connect(db_env.app, autocommit=True) as conn:
            subscribe(conn, users[i], url)
    run_threads(6, register)
    assert db_admin.execute("SELECT count(*) FROM activity.push_subscriptions WHERE endpoint = %s",
                            (url,)).fetchone()[0] == 1


def test_unsubscribe_by_id_or_endpoint_only_the_callers(db_app, db_user):
    ana, ben = db_user(), db_user()
    url = endpoint()
    sub = subscribe(db_app, ana, url)
    with sqlstate("NAP04"):
        call(db_app, "sp_push_unsubscribe", user_id=ben, subscription_id=sub["subscription_id"])
    with sqlstate("NAP04"):
        call(db_app, "sp_push_unsubscribe", user_id=ben, endpoint=url)
    with sqlstate("NA422", "subscription_id"):
        call(db_app, "sp_push_unsubscribe", user_id=ana)
    [gone] = call(db_app, "sp_push_unsubscribe", user_id=ana, endpoint=url)
    assert gone == {"subscription_id": sub["subscription_id"], "endpoint_origin": "https://fcm.googleapis.com"}
    other = subscribe(db_app, ana)
    call(db_app, "sp_push_unsubscribe", user_id=ana, subscription_id=other["subscription_id"])
    assert call(db_app, "sp_push_subscriptions", user_id=ana) == []
    with sqlstate("NAP04"):
        call(db_app, "sp_push_unsubscribe", user_id=ana, subscription_id=other["subscription_id"])


# --- queueing by the create ----------------------------------------------------------------------

def test_create_queues_one_delivery_per_subscription_when_push_is_allowed(db_app, db_admin, db_user):
    ana, ben, cid, dan = db_user(), db_user(), db_user(), db_user()
    subs = {u: [subscribe(db_app, u)["subscription_id"] for _ in range(2)] for u in (ana, ben, cid, dan)}
    call(db_app, "sp_update_notification_settings", user_id=ben, patch={"push_enabled": False})
    call(db_app, "sp_update_notification_settings", user_id=cid,
         patch={"type_preferences": {"comment": {"push": False}}})
    rows = create(db_app, [ana, ben, cid, dan, ana])
    assert [r["result"] for r in rows] == ["created"] * 4 + ["duplicate"]
    assert sorted(r[1] for r in outbox(db_admin, ana)) == sorted(subs[ana])
    assert outbox(db_admin, ben) == [] and outbox(db_admin, cid) == []
    assert len(outbox(db_admin, dan)) == 2
    create(db_app, [cid], notification_type="mention")  # only comments are off for cid
    assert len(outbox(db_admin, cid)) == 2
    assert call(db_app, "sp_create_notification", user_ids=[ana], notification_type="comment", title="x",
                dedupe_key="k1")[0]["result"] == "created"
    create(db_app, [ana], dedupe_key="k1")  # a duplicate queues nothing
    assert len(outbox(db_admin, ana)) == 4


def test_quiet_hours_defer_push_but_not_urgent(db_app, db_admin, db_user):
    u = db_user()
    subscribe(db_app, u)
    now = db_admin.execute("SELECT now() AT TIME ZONE 'UTC'").fetchone()[0]
    start = (now - timedelta(hours=1)).strftime("%H:%M")
    end = (now + timedelta(hours=2)).strftime("%H:%M")
    call(db_app, "sp_update_notification_settings", user_id=u,
         patch={"quiet_hours": {"start": start, "end": end, "timezone": "UTC"}})
    create_one(db_app, u, notification_type="normal")
    create_one(db_app, u, notification_type="urgent", priority="urgent")
    rows = {r[0]: r for r in outbox(db_admin, u)}
    deferred, at_once = sorted(rows.values(), key=lambda r: r[4], reverse=True)
    assert deferred[4] > datetime.now(timezone.utc) + timedelta(minutes=90)
    assert at_once[4] <= datetime.now(timezone.utc) + timedelta(seconds=5)


def test_a_user_without_subscriptions_queues_nothing(db_app, db_admin, db_user):
    u = db_user()
    create_one(db_app, u)
    assert outbox(db_admin, u) == []


# --- the push queue: one row per create, expanded by the worker ----------------------------------

def test_the_create_queues_one_row_per_call_not_a_row_per_browser(db_app, db_push, db_admin, db_user):
    ana, ben, off = db_user(), db_user(), db_user()
    for u in (ana, ben, off):
        subscribe(db_app, u)
        subscribe(db_app, u)
    call(db_app, "sp_update_notification_settings", user_id=off, patch={"push_enabled": False})
    rows = create(db_app, [ana, ben, off, ana], priority="high", dedupe_key="q1")
    [(user_ids, notification_ids, kind, priority, _)] = queue_rows(db_admin)
    # the settings are not read on the create's path: `off` is in the row, dropped at expansion
    assert sorted(user_ids) == sorted([ana, ben, off]) and (kind, priority) == ("comment", "high")
    by_user = {r["user_id"]: r["notification_id"] for r in rows}
    assert dict(zip(user_ids, notification_ids)) == by_user
    assert db_admin.execute("SELECT count(*) FROM activity.push_outbox WHERE user_id = ANY (%s)",
                            ([ana, ben, off],)).fetchone()[0] == 0  # nothing per browser yet
    create(db_app, [ana, ben], dedupe_key="q1")  # only duplicates: nothing queued
    call(db_app, "sp_update_notification_settings", user_id=ben,
         patch={"type_preferences": {"comment": {"in_app": False}}})
    create(db_app, [ben])  # suppressed: nothing created, nothing queued
    assert len(queue_rows(db_admin)) == 1


def test_nothing_is_queued_while_no_browser_is_registered_at_all(db_app, db_admin, db_user):
    """Push not configured (no subscription anywhere): no queue row that no worker would ever take."""
    u = db_user()
    with psycopg.connect(db_admin.info.dsn, password=db_admin.info.password) as conn:  # one transaction
        conn.execute("DELETE FROM activity.push_queue")
        conn.execute("DELETE FROM activity.push_subscriptions")
        create_one(conn, u)
        assert conn.execute("SELECT count(*) FROM activity.push_queue").fetchone()[0] == 0
        conn.rollback()


def test_expansion_applies_the_settings_at_expansion(db_app, db_push, db_admin, db_user):
    on, off, type_off, later_off, bare = (db_user() for _ in range(5))
    subs = {u: {subscribe(db_app, u)["subscription_id"], subscribe(db_app, u)["subscription_id"]}
            for u in (on, off, type_off, later_off)}
    call(db_app, "sp_update_notification_settings", user_id=off, patch={"push_enabled": False})
    call(db_app, "sp_update_notification_settings", user_id=type_off,
         patch={"type_preferences": {"comment": {"push": False}}})
    create(db_app, [on, off, type_off, later_off, bare])
    # turned off after the create, before the worker took it: the setting as it is now applies
    call(db_app, "sp_update_notification_settings", user_id=later_off, patch={"push_enabled": False})
    [row] = call(db_push, "sp_expand_push_queue", limit=10)
    assert row == {"expanded": 1, "queued": 2}
    assert {r[1] for r in outbox(db_admin, on)} == subs[on]
    for u in (off, type_off, later_off, bare):  # `bare` has no browser
        assert outbox(db_admin, u) == []
    assert queue_rows(db_admin) == []  # expanded rows are gone, with or without deliveries


def test_quiet_hours_are_evaluated_at_expansion_and_urgent_is_never_deferred(db_app, db_push, db_admin, db_user):
    u = db_user()
    subscribe(db_app, u)
    create_one(db_app, u, title="can wait")
    create_one(db_app, u, title="now!", priority="urgent")
    now = db_admin.execute("SELECT now() AT TIME ZONE 'UTC'").fetchone()[0]
    quiet = {"start": (now - timedelta(hours=1)).strftime("%H:%M"),
             "end": (now + timedelta(hours=2)).strftime("%H:%M"), "timezone": "UTC"}
    call(db_app, "sp_update_notification_settings", user_id=u, patch={"quiet_hours": quiet})  # after the create
    expand_all(db_push)
    rows = db_admin.execute(
        "SELECT n.title, o.available_at FROM activity.push_outbox o JOIN activity.notifications n"
        " ON n.user_id = o.user_id AND n.notification_id = o.notification_id WHERE o.user_id = %s", (u,)).fetchall()
    at = dict(rows)
    assert at["can wait"] > datetime.now(timezone.utc) + timedelta(minutes=90)
    assert at["now!"] <= datetime.now(timezone.utc)
    assert [r["title"] for r in claim(db_push)] == ["now!"]


def test_expansion_carries_the_create_time_over(db_app, db_push, db_admin, db_user):
    """The TTL counts from the create, and older creates go first, however late the expansion."""
    u = db_user()
    subscribe(db_app, u)
    create_one(db_app, u, title="older")
    create_one(db_app, u, title="newer")
    db_admin.execute("UPDATE activity.push_queue SET created_at = now() - interval '1 hour'"
                     " WHERE %s = ANY (user_ids) AND created_at = (SELECT min(created_at) FROM activity.push_queue)",
                     (u,))
    [queued_at] = db_admin.execute("SELECT min(created_at) FROM activity.push_queue").fetchone()
    rows = claim(db_push)
    assert [r["title"] for r in rows] == ["older", "newer"]
    assert rows[0]["queued_at"] == queued_at
    [(created_at, available_at)] = db_admin.execute(
        "SELECT created_at, available_at FROM activity.push_outbox WHERE delivery_id = %s",
        (rows[0]["delivery_id"],)).fetchall()
    assert created_at == available_at == queued_at


def test_a_browser_registered_before_the_expansion_gets_it_a_moved_one_does_not(
        db_app, db_push, db_admin, db_user):
    ana, ben = db_user(), db_user()
    laptop = endpoint()
    subscribe(db_app, ana, laptop)
    create_one(db_app, ana, title="for Ana")
    phone = subscribe(db_app, ana)  # subscribed between the create and the pick-up
    moved = subscribe(db_app, ben, laptop)  # Ana's laptop signs in as Ben before the pick-up
    assert moved["result"] == "moved"
    rows = claim(db_push)
    assert [(r["user_id"], r["subscription_id"], r["title"]) for r in rows] == [
        (ana, phone["subscription_id"], "for Ana")]
    assert outbox(db_admin, ben) == []


def test_expansion_is_bounded_by_users_and_takes_at_least_one_row(db_app, db_push, db_admin, db_user):
    users = [db_user() for _ in range(6)]
    for u in users:
        subscribe(db_app, u)
    for i in range(0, 6, 2):
        create(db_app, users[i:i + 2])  # three rows of two users
    [row] = call(db_push, "sp_expand_push_queue", limit=3)
    assert row == {"expanded": 2, "queued": 4}  # 2 + 2 users >= 3
    [row] = call(db_push, "sp_expand_push_queue", limit=1)
    assert row == {"expanded": 1, "queued": 2}  # a row of two users is never split
    assert call(db_push, "sp_expand_push_queue", limit=1) == [{"expanded": 0, "queued": 0}]
    with sqlstate("NA422", "limit"):
        call(db_push, "sp_expand_push_queue", limit=0)


def test_a_crash_mid_expansion_loses_nothing_and_a_concurrent_expansion_skips_the_locked_rows(
        db_app, db_push, db_admin, push_login, db_user):
    users = [db_user() for _ in range(4)]
    for u in users:
        subscribe(db_app, u)
    create(db_app, users[:2], title="first")
    create(db_app, users[2:], title="second")
    with psycopg.connect(push_login) as crashing:  # one transaction, never committed
        [row] = call(crashing, "sp_expand_push_queue", limit=1)
        assert row == {"expanded": 1, "queued": 2}
        # meanwhile another worker: the locked row is skipped, the other one is taken
        [other] = call(db_push, "sp_expand_push_queue", limit=1000)
        assert other == {"expanded": 1, "queued": 2}
        assert call(db_push, "sp_expand_push_queue", limit=1000) == [{"expanded": 0, "queued": 0}]
        crashing.rollback()  # the worker died mid-expansion
    assert len(queue_rows(db_admin)) == 1  # its row is back, untouched
    rows = claim(db_push)
    assert sorted((r["user_id"], r["title"]) for r in rows) == sorted(
        [(u, "first") for u in users[:2]] + [(u, "second") for u in users[2:]])
    assert queue_rows(db_admin) == []


def test_only_the_functions_touch_the_queue(db_env, push_login):
    for login in (db_env.app, push_login):
        with psycopg.connect(login, autocommit=True) as conn:
            for statement in ("SELECT * FROM activity.push_queue",
                              "INSERT INTO activity.push_queue (user_ids, notification_ids, user_count,"
                              " notification_type, priority) VALUES ('{}', '{}', 0, 'x', 'normal')",
                              "DELETE FROM activity.push_queue",
                              "SELECT activity._queue_push('{}')"):
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    conn.execute(statement)
    with psycopg.connect(db_env.app, autocommit=True) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT * FROM activity.sp_expand_push_queue(10)")


# --- the worker's functions ----------------------------------------------------------------------

def test_the_worker_role_can_do_nothing_else(push_login, db_user):
    with psycopg.connect(push_login, autocommit=True) as conn:
        for statement in ("SELECT * FROM activity.push_subscriptions",
                          "SELECT * FROM activity.sp_push_subscriptions(gen_random_uuid())",
                          "SELECT * FROM activity.sp_inbox_list(gen_random_uuid(), NULL, NULL, 10, NULL, NULL)",
                          "SELECT * FROM activity.sp_claim_email_deliveries('w', 1, 10, 1)",
                          "SELECT * FROM activity.sp_purge_push_outbox(0, 10)"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement)


def test_claim_returns_what_the_push_needs_and_leases(db_app, db_push, db_admin, db_user):
    u = db_user()
    sub = subscribe(db_app, u)
    n = create_one(db_app, u, title="Ana commented", message="Nice", action_url="https://app.example.com/x",
                   group_key="post:1")
    [row] = claim(db_push, worker="w1")
    assert row["user_id"] == u and row["notification_id"] == n["notification_id"]
    assert row["subscription_id"] == sub["subscription_id"] and row["endpoint"].startswith("https://fcm")
    assert len(row["p256dh"]) == 65 and len(row["auth"]) == 16 and row["attempts"] == 1
    assert (row["title"], row["message"], row["action_url"], row["group_key"]) == (
        "Ana commented", "Nice", "https://app.example.com/x", "post:1")
    assert row["unread_count"] == 1 and row["unseen_count"] == 1
    assert claim(db_push, worker="w2") == []  # leased
    [(status, owner)] = db_admin.execute("SELECT status, lease_owner FROM activity.push_outbox"
                                         " WHERE user_id = %s", (u,)).fetchall()
    assert (status, owner) == ("sending", "w1")


@pytest.mark.parametrize("change", ["seen", "read", "archive", "snooze", "delete", "expire", "retract"])
def test_claim_cancels_what_the_inbox_already_has_or_lost(db_app, db_push, db_admin, db_user, change):
    u = db_user()
    subscribe(db_app, u)
    key = f"event-{uuid.uuid4()}"
    nid = create_one(db_app, u, dedupe_key=key)["notification_id"]
    if change in ("seen", "read", "archive", "delete"):
        call(db_app, "sp_bulk_update", user_id=u, action=change, notification_ids=[nid])
    elif change == "snooze":
        call(db_app, "sp_inbox_snooze", user_id=u, notification_id=nid,
             until=datetime.now(timezone.utc) + timedelta(hours=1))
    elif change == "expire":
        db_admin.execute("UPDATE activity.notifications SET expires_at = now() - interval '1 second'"
                         " WHERE notification_id = %s", (nid,))
    else:
        call(db_app, "sp_retract_notifications", dedupe_key=key, user_ids=[u])
    assert claim(db_push) == []
    [(status, error)] = db_admin.execute("SELECT status, last_error FROM activity.push_outbox WHERE user_id = %s",
                                         (u,)).fetchall()
    assert status == "cancelled" and "before it was pushed" in error


def test_two_workers_leasing_concurrently_never_share_a_delivery(db_app, db_push, db_admin, push_login, db_user):
    """The workers start on a queue nothing has expanded yet: seven creates (six of five users, one of
    all thirty), expanded by whichever claim gets to them, each delivery claimed exactly once."""
    users = [db_user() for _ in range(30)]
    for u in users:
        subscribe(db_app, u)
        subscribe(db_app, u)
    for i in range(0, 30, 5):
        create(db_app, users[i:i + 5])
    create(db_app, users, title="second")
    assert len(queue_rows(db_admin)) == 7
    assert db_admin.execute("SELECT count(*) FROM activity.push_outbox WHERE status = 'pending'").fetchone()[0] == 0
    claimed: dict[int, list] = {}

    def work(i):
        with psycopg.connect(push_login, autocommit=True) as conn:
            got = []
            while batch := claim(conn, worker=f"w{i}", limit=7):
                got.extend(r["delivery_id"] for r in batch)
            claimed[i] = got
    run_threads(4, work)
    everything = [d for got in claimed.values() for d in got]
    assert len(everything) == 120 and len(set(everything)) == 120
    assert sum(1 for got in claimed.values() if got) >= 2
    assert queue_rows(db_admin) == []
    pairs = db_admin.execute("SELECT count(DISTINCT (notification_id, subscription_id)) FROM activity.push_outbox"
                             " WHERE delivery_id = ANY (%s)", (everything,)).fetchone()[0]
    assert pairs == 120  # no (notification, browser) was expanded twice


def test_outcomes_sent_resets_failures_and_needs_the_lease(db_app, db_push, db_admin, db_user):
    u = db_user()
    sub = subscribe(db_app, u)
    db_admin.execute("UPDATE activity.push_subscriptions SET consecutive_failures = 3 WHERE user_id = %s", (u,))
    create_one(db_app, u)
    [row] = claim(db_push, worker="w1")
    assert complete(db_push, "w2", row) == []
    assert complete(db_push, "w1", row) == [row["delivery_id"]]
    [listed] = call(db_app, "sp_push_subscriptions", user_id=u)
    assert listed["subscription_id"] == sub["subscription_id"]
    assert listed["consecutive_failures"] == 0 and listed["last_success_at"] is not None
    assert outbox(db_admin, u)[0][2] == "sent"


def test_retry_backs_off_then_fails_at_max_attempts(db_app, db_push, db_admin, db_user):
    u = db_user()
    subscribe(db_app, u)
    create_one(db_app, u)
    [row] = claim(db_push, max_attempts=2)
    [r] = call(db_push, "sp_retry_push_delivery", user_id=u, delivery_id=row["delivery_id"], worker="w1",
               error="HTTP 503", delay_seconds=15.0, max_attempts=2)
    assert r == {"status": "pending", "subscription_removed": False}
    [(available_at, status)] = db_admin.execute(
        "SELECT available_at - now(), status FROM activity.push_outbox WHERE user_id = %s", (u,)).fetchall()
    assert status == "pending" and timedelta(seconds=14) < available_at <= timedelta(seconds=15)
    assert claim(db_push) == []  # not due yet
    db_admin.execute("UPDATE activity.push_outbox SET available_at = now() WHERE user_id = %s", (u,))
    [row] = claim(db_push, max_attempts=2)
    assert row["attempts"] == 2
    [r] = call(db_push, "sp_retry_push_delivery", user_id=u, delivery_id=row["delivery_id"], worker="w1",
               error="HTTP 503", delay_seconds=15.0, max_attempts=2)
    assert r["status"] == "failed"
    [listed] = call(db_app, "sp_push_subscriptions", user_id=u)
    assert listed["consecutive_failures"] == 1


def test_ten_consecutive_failures_delete_the_subscription(db_app, db_push, db_admin, db_user):
    u = db_user()
    subscribe(db_app, u)
    for i in range(10):
        create_one(db_app, u, title=f"n{i}")
        [row] = claim(db_push)
        [r] = call(db_push, "sp_fail_push_delivery", user_id=u, delivery_id=row["delivery_id"], worker="w1",
                   error="HTTP 400")
        assert r == {"failed": True, "subscription_removed": i == 9}
    assert call(db_app, "sp_push_subscriptions", user_id=u) == []
    assert [r[2] for r in outbox(db_admin, u)] == ["failed"] * 10  # the history stays (purged later)


def test_gone_deletes_the_subscription_and_its_other_deliveries(db_app, db_push, db_admin, db_user):
    u = db_user()
    sub, other = subscribe(db_app, u), subscribe(db_app, u)
    create_one(db_app, u)
    create_one(db_app, u)
    rows = claim(db_push, limit=1)
    target = rows[0]
    assert call(db_push, "sp_gone_push_subscription", user_id=u, delivery_id=target["delivery_id"],
                worker="nobody")[0]["sp_gone_push_subscription"] is False
    assert call(db_push, "sp_gone_push_subscription", user_id=u, delivery_id=target["delivery_id"],
                worker="w1")[0]["sp_gone_push_subscription"] is True
    remaining = {r["subscription_id"] for r in call(db_app, "sp_push_subscriptions", user_id=u)}
    assert remaining == {sub["subscription_id"], other["subscription_id"]} - {target["subscription_id"]}
    assert {r[1] for r in outbox(db_admin, u)} == remaining


def test_an_expired_lease_is_taken_over_and_the_old_owner_cannot_record(db_app, db_push, db_admin, db_user):
    u = db_user()
    subscribe(db_app, u)
    create_one(db_app, u)
    [row] = claim(db_push, worker="dead", lease=1)
    db_admin.execute("UPDATE activity.push_outbox SET lease_expires_at = now() - interval '1 second'"
                     " WHERE user_id = %s", (u,))
    [again] = claim(db_push, worker="alive")
    assert again["delivery_id"] == row["delivery_id"] and again["attempts"] == 2
    assert complete(db_push, "dead", row) == []
    # a delivery that keeps killing its worker fails once its attempts are used up
    db_admin.execute("UPDATE activity.push_outbox SET lease_expires_at = now() - interval '1 second'"
                     " WHERE user_id = %s", (u,))
    assert claim(db_push, worker="third", max_attempts=2) == []
    assert outbox(db_admin, u)[0][2] == "failed"


def test_release_hands_back_unsent_rows(db_app, db_push, db_admin, db_user):
    u = db_user()
    subscribe(db_app, u)
    create_one(db_app, u)
    claim(db_push, worker="w1")
    assert call(db_push, "sp_release_push_deliveries", worker="w1")[0]["sp_release_push_deliveries"] == 1
    [row] = claim(db_push, worker="w2")
    assert row["attempts"] == 1


def test_queue_stats_count_what_is_not_expanded_yet(db_app, db_push, db_admin, db_user):
    u = db_user()
    subscribe(db_app, u)
    subscribe(db_app, u)
    create_one(db_app, u)
    db_admin.execute("UPDATE activity.push_queue SET created_at = now() - interval '30 seconds'")
    [stats] = call(db_push, "sp_push_queue_stats")
    # one (user, notification) pair: its browsers are not known before the expansion; due at once
    assert (stats["pending"], stats["due"], stats["sending"]) == (1, 1, 0)
    assert 29 <= stats["oldest_due_age_seconds"] < 60
    claim(db_push, limit=1)  # expands it into two deliveries, leases one
    [stats] = call(db_push, "sp_push_queue_stats")
    assert (stats["pending"], stats["due"], stats["sending"]) == (1, 1, 1)
    assert 29 <= stats["oldest_due_age_seconds"] < 60  # the delivery waits since the create
    claim(db_push)
    [stats] = call(db_push, "sp_push_queue_stats")
    assert (stats["pending"], stats["due"], stats["sending"], stats["oldest_due_age_seconds"]) == (0, 0, 2, 0)


def test_purge_removes_finished_rows_only(db_app, db_push, db_admin, db_retention, db_user):
    u = db_user()
    subscribe(db_app, u)
    for _ in range(3):
        create_one(db_app, u)
    rows = claim(db_push, limit=2)
    expand_all(db_push)  # the third create too (the claim expanded about two users' worth)
    complete(db_push, "w1", rows[0])
    call(db_push, "sp_fail_push_delivery", user_id=u, delivery_id=rows[1]["delivery_id"], worker="w1",
         error="HTTP 400")
    db_admin.execute("UPDATE activity.push_outbox SET finished_at = now() - interval '8 days'"
                     " WHERE user_id = %s AND finished_at IS NOT NULL", (u,))
    with sqlstate("NA422", "older_than_days"):
        call(db_retention, "sp_purge_push_outbox", older_than_days=-1, batch_size=10)
    create_one(db_app, u, title="not expanded yet")
    db_admin.execute("UPDATE activity.push_queue SET created_at = now() - interval '8 days'")
    while call(db_retention, "sp_purge_push_outbox", older_than_days=7, batch_size=1000)[0]["deleted_count"]:
        pass
    assert len(queue_rows(db_admin)) == 1  # work not expanded yet is never purged
    assert sorted(r[2] for r in outbox(db_admin, u)) == ["pending", "pending"]


def test_the_claim_does_not_read_the_history(db_app, db_push, db_admin, db_user):
    """The due scan is an index range of push_outbox_due (partial): sent rows are never read."""
    db_admin.execute("SET enable_seqscan = off")
    try:
        plan = "\n".join(r[0] for r in db_admin.execute(
            "EXPLAIN SELECT o.user_id FROM activity.push_outbox o WHERE o.status = 'pending'"
            " AND o.available_at <= now() ORDER BY o.available_at LIMIT 100 FOR UPDATE SKIP LOCKED"))
    finally:
        db_admin.execute("RESET enable_seqscan")
    assert "push_outbox_due" in plan, plan


def test_concurrent_creates_and_claims_queue_each_push_once(db_env, db_app, db_push, push_login, db_user):
    users = [db_user() for _ in range(10)]
    for u in users:
        subscribe(db_app, u)
    seen: list = []
    lock = threading.Lock()

    def run(i):
        if i < 3:
            with psycopg.connect(db_env.app, autocommit=True) as conn:
                for k in range(5):
                    create(conn, users, title=f"t{i}-{k}")
        else:
            with psycopg.connect(push_login, autocommit=True) as conn:
                for _ in range(40):
                    batch = claim(conn, worker=f"w{i}", limit=20)
                    with lock:
                        seen.extend(r["delivery_id"] for r in batch)
    run_threads(5, run)
    seen.extend(r["delivery_id"] for r in claim(db_push, worker="final", limit=1000))
    assert len(seen) == len(set(seen)) == 3 * 5 * 10


def test_complete_many_at_once_and_only_ours(db_app, db_push, db_user):
    users = [db_user() for _ in range(3)]
    for u in users:
        subscribe(db_app, u)
    create(db_app, users)
    mine = claim(db_push, worker="w1", limit=2)
    theirs = claim(db_push, worker="w2")
    assert sorted(complete(db_push, "w1", *mine, *theirs)) == sorted(r["delivery_id"] for r in mine)
    with sqlstate("NA422", "delivery_ids"):
        call(db_push, "sp_complete_push_deliveries", worker="w1", user_ids=[users[0]], delivery_ids=[])


def test_a_delivery_queued_for_a_subscription_deleted_meanwhile_is_dropped(db_app, db_push, db_admin, db_user):
    """An expansion that read the subscription just before it was deleted (no foreign key) queues a row
    for it: the claim drops it instead of sending to a browser that is gone."""
    u = db_user()
    sub = subscribe(db_app, u)
    n = create_one(db_app, u)
    db_admin.execute("DELETE FROM activity.push_subscriptions WHERE user_id = %s", (u,))
    db_admin.execute("INSERT INTO activity.push_outbox (user_id, notification_id, subscription_id)"
                     " VALUES (%s, %s, %s)", (u, n["notification_id"], sub["subscription_id"]))
    assert claim(db_push) == []
    assert [r for r in outbox(db_admin, u) if r[2] in ("pending", "sending")] == []
