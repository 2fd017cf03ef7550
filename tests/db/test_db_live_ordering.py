"""Ordering and snapshots under interleavings the test controls (issue 26, items 8 and 9): a slow
fan-out never stamps a delivery time earlier than one already committed for the same user, and
one unread-count body never mixes two versions."""
from __future__ import annotations

import threading
import time

import psycopg
from db_helpers import call, create, create_one


def _create(conn, user_ids, title):
    return call(conn, "sp_inbox_create", user_ids=user_ids, notification_type="comment", title=title)


def _wait_until_blocked(admin, application_name: str, timeout: float = 5) -> None:
    """Until the session called `application_name` waits for a lock."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        row = admin.execute("SELECT wait_event_type FROM pg_stat_activity WHERE application_name = %s",
                            (application_name,)).fetchone()
        if row and row[0] == "Lock":
            return
        time.sleep(0.01)
    raise AssertionError(f"{application_name} never waited for a lock")


def _in_thread(target):
    result: dict = {}

    def run():
        try:
            result["value"] = target()
        except BaseException as exc:  # surfaced by the caller
            result["error"] = exc
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, result


def test_a_slow_fan_out_stamps_delivery_after_what_committed_before_it(db_env, db_admin, db_user):
    """A fan-out to [w, u] waits for w's counters row (another writer holds it); meanwhile a single
    create for u commits. The fan-out's row for u commits later, so it must be delivered later:
    a client that showed the single one and marks read `before` its time never marks the
    fan-out's row, which it has not seen."""
    w, u = sorted([db_user(), db_user()])
    for user in (w, u):  # both have counters rows
        create_one(db_admin, user, title="earlier")
    with psycopg.connect(db_env.admin) as holder:  # another writer, mid-transaction on w
        holder.execute("SELECT 1 FROM activity.notification_counters WHERE user_id = %s FOR UPDATE", (w,))

        def fan_out():
            with psycopg.connect(db_env.app, autocommit=True, application_name="slow-fan-out") as conn:
                return _create(conn, [w, u], "fan-out")
        thread, result = _in_thread(fan_out)
        _wait_until_blocked(db_admin, "slow-fan-out")
        with psycopg.connect(db_env.app, autocommit=True) as conn:
            [single] = _create(conn, [u], "single")
        holder.commit()
    thread.join(10)
    assert "error" not in result, result
    fanned = next(r for r in result["value"] if r["user_id"] == u)
    assert fanned["result"] == "created"
    assert fanned["delivered_at"] > single["delivered_at"]
    # what the client does next: it showed the single one, marks read everything up to it
    with psycopg.connect(db_env.app, autocommit=True) as conn:
        call(conn, "sp_bulk_update", user_id=u, action="read", all=True, before=single["delivered_at"])
        listed = call(conn, "sp_inbox_list", user_id=u, status="unread", limit=10)
    assert [row["title"] for row in listed] == ["fan-out"]


def test_one_unread_count_body_is_one_snapshot(db_env, db_admin, db_user):
    """The counts row is read, then a create commits before the per-type rows are read: the body
    must still describe one version (by_type adds up to unread_count)."""
    u = db_user()
    create_one(db_admin, u, notification_type="comment")
    with psycopg.connect(db_env.admin) as holder:
        # the writer, holding the per-type table: a reader gets past the counters row, then waits
        holder.execute("LOCK TABLE activity.notification_type_counters IN ACCESS EXCLUSIVE MODE")

        def read():
            with psycopg.connect(db_env.app, autocommit=True, application_name="count-reader") as conn:
                [row] = call(conn, "sp_get_unread_count", user_id=u, by_type=True, known_version=None)
                return row
        thread, result = _in_thread(read)
        _wait_until_blocked(db_admin, "count-reader")
        create(holder, u, notification_type="mention")
        holder.commit()
    thread.join(10)
    assert "error" not in result, result
    body = result["value"]
    assert sum(body["by_type"].values()) == body["unread_count"], body
