"""Call the stored functions the way the app does (named arguments, bound parameters)."""
from __future__ import annotations

import contextlib
import threading
import uuid

import psycopg
import pytest
from psycopg import sql
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb


def call(conn: psycopg.Connection, fn: str, **kwargs) -> list[dict]:
    """SELECT * FROM activity.<fn>(p_<k> => %s, ...) -> rows as dicts."""
    args = sql.SQL(", ").join(
        sql.SQL("{} => {}").format(sql.Identifier(f"p_{k}"), sql.Placeholder()) for k in kwargs)
    values = [Jsonb(v) if isinstance(v, (dict, list)) and k in ("payload", "patch") else v
              for k, v in kwargs.items()]
    query = sql.SQL("SELECT * FROM activity.{}({})").format(sql.Identifier(fn), args)
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(query, values)
        return cur.fetchall() if cur.description else []


def create(conn, user_ids, notification_type="comment", title="Hello", **kwargs) -> list[dict]:
    if not isinstance(user_ids, (list, tuple)):
        user_ids = [user_ids]
    return call(conn, "sp_create_notification", user_ids=list(user_ids), notification_type=notification_type,
                title=title, **kwargs)


def create_one(conn, user_id, **kwargs) -> dict:
    [row] = create(conn, user_id, **kwargs)
    assert row["result"] == "created", row
    return row


def unread(conn, user_id, by_type=True) -> dict:
    [row] = call(conn, "sp_get_unread_count", user_id=user_id, by_type=by_type)
    return row


@contextlib.contextmanager
def sqlstate(code: str, detail: str | None = None):
    """Expect a database error with this SQLSTATE (and DETAIL, when given)."""
    with pytest.raises(psycopg.Error) as info:
        yield info
    assert info.value.diag.sqlstate == code, (info.value.diag.sqlstate, str(info.value))
    if detail is not None:
        assert info.value.diag.message_detail == detail, str(info.value)


def recount(admin_conn, user_id) -> tuple[int, dict, int]:
    """(stored counter, stored per-type counters > 0, COUNT(*) of unread rows) for the invariant."""
    stored = admin_conn.execute(
        "SELECT COALESCE((SELECT unread_count FROM activity.notification_counters WHERE user_id = %s), 0)",
        (user_id,)).fetchone()[0]
    per_type = dict(admin_conn.execute(
        "SELECT notification_type, unread_count FROM activity.notification_type_counters"
        " WHERE user_id = %s AND unread_count > 0", (user_id,)).fetchall())
    actual = dict(admin_conn.execute(
        "SELECT notification_type, count(*) FROM activity.notifications"
        " WHERE user_id = %s AND status = 'unread' GROUP BY 1", (user_id,)).fetchall())
    assert per_type == actual, (per_type, actual)
    return stored, per_type, sum(actual.values())


# -- inbox v2: the clock and the ground truth ---------------------------------------------------

NOTIFICATION_TIMES = ["created_at", "delivered_at", "seen_at", "read_at", "archived_at", "snoozed_until",
                      "expires_at"]
COUNTER_TIMES = ["folded_at", "next_change_at", "next_expiry"]


def travel(admin_conn, user_id, seconds: float) -> None:
    """Move the clock `seconds` forward for one user: every stored instant of the user moves back
    by that much (the same thing, seen from the rows), as this release's functions would write it
    (activity.inbox_v2 on: not a write by older code)."""
    shift = ", ".join(f"{c} = {c} - make_interval(secs => %(s)s)" for c in NOTIFICATION_TIMES)
    shift_counters = ", ".join(f"{c} = {c} - make_interval(secs => %(s)s)" for c in COUNTER_TIMES)
    with admin_conn.transaction():
        admin_conn.execute("SET LOCAL activity.inbox_v2 = 'on'")
        admin_conn.execute(f"UPDATE activity.notifications SET {shift} WHERE user_id = %(u)s",
                           {"s": seconds, "u": user_id})
        admin_conn.execute(f"UPDATE activity.notification_counters SET {shift_counters} WHERE user_id = %(u)s",
                           {"s": seconds, "u": user_id})
        admin_conn.execute("UPDATE activity.notification_groups"
                           " SET latest_delivered_at = latest_delivered_at - make_interval(secs => %(s)s),"
                           " oldest_delivered_at = oldest_delivered_at - make_interval(secs => %(s)s)"
                           " WHERE user_id = %(u)s", {"s": seconds, "u": user_id})


def truth(admin_conn, user_id) -> dict:
    """unread_count, unseen_count and by_type by COUNT(*) over the user's rows, now."""
    rows = admin_conn.execute(
        """SELECT notification_type, status = 'unread', seen_at IS NULL AND read_at IS NULL
             FROM activity.notifications
            WHERE user_id = %s AND status <> 'archived'
              AND (snoozed_until IS NULL OR snoozed_until <= now())
              AND (expires_at IS NULL OR expires_at > now())""", (user_id,)).fetchall()
    by_type: dict[str, int] = {}
    for notification_type, is_unread, _ in rows:
        if is_unread:
            by_type[notification_type] = by_type.get(notification_type, 0) + 1
    return {"unread_count": sum(1 for r in rows if r[1]), "unseen_count": sum(1 for r in rows if r[2]),
            "by_type": by_type}


def counts(conn, user_id, known_version=None) -> dict:
    """This release's unread count: unread_count, unseen_count, by_type, version."""
    [row] = call(conn, "sp_get_unread_count", user_id=user_id, by_type=True, known_version=known_version)
    return row


def groups_truth(admin_conn, user_id) -> dict:
    """{group_key or notification_id (ungrouped): (count, unread, latest id, oldest delivered_at, sample)}
    by GROUP BY over the user's inbox rows, now."""
    rows = admin_conn.execute(
        """SELECT notification_id, group_key, status = 'unread', delivered_at, actor_user_id
             FROM activity.notifications
            WHERE user_id = %s AND status <> 'archived'
              AND (snoozed_until IS NULL OR snoozed_until <= now())
              AND (expires_at IS NULL OR expires_at > now())
            ORDER BY delivered_at DESC, notification_id DESC""", (user_id,)).fetchall()
    groups: dict = {}
    for nid, key, is_unread, delivered, actor in rows:
        groups.setdefault(key if key is not None else nid, []).append((nid, is_unread, delivered, actor))
    out = {}
    for key, members in groups.items():
        sample: list = []
        for _, _, _, actor in members[:10]:
            if actor is not None and actor not in sample and len(sample) < 3:
                sample.append(actor)
        out[key] = (len(members), sum(1 for m in members if m[1]), members[0][0], members[-1][2], sample)
    return out


def groups_walk(conn, user_id, unread=False, limit=7) -> list[dict]:
    """Every page of sp_inbox_groups, in order."""
    rows, cursor = [], (None, None)
    while True:
        page = call(conn, "sp_inbox_groups", user_id=user_id, unread=unread, limit=limit + 1,
                    cursor_delivered_at=cursor[0], cursor_id=cursor[1])
        rows += page[:limit]
        if len(page) <= limit:
            return rows
        cursor = (page[limit - 1]["delivered_at"], page[limit - 1]["notification_id"])


def groups_answer(conn, user_id, unread=False) -> dict:
    """groups_walk in groups_truth's shape."""
    out = {}
    for g in groups_walk(conn, user_id, unread):
        key = g["group_key"] if g["group_key"] is not None else g["notification_id"]
        assert key not in out, key  # never a group twice
        out[key] = (g["notifications_count"], g["unread_count"], g["notification_id"], g["oldest_delivered_at"],
                    g["sample_actor_user_ids"])
    return out


def run_step(conn, admin_conn, user_id, made: list, step: tuple, create_fields) -> None:
    """One step of the inbox property tests, as the app does it; the rules' refusals (gone or
    expired 404, snoozed/archived 409, until past the expiry 422) are expected outcomes.
    `create_fields(step, n)` gives the fields of a ("create", ...) step's notification."""
    import datetime as dt

    def pick(i):
        return made[i % len(made)] if made else str(uuid.uuid4())

    def ahead(seconds):
        return dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=seconds)
    kind = step[0]
    try:
        if kind == "create":
            made.append(create_one(conn, user_id, dedupe_key=f"d{len(made)}",
                                   **create_fields(step, len(made)))["notification_id"])
        elif kind in ("read", "unread"):
            call(conn, "sp_inbox_mark_read", user_id=user_id, notification_id=pick(step[1]), read=kind == "read")
        elif kind in ("seen", "archive", "unarchive"):
            call(conn, "sp_bulk_update", user_id=user_id, action=kind, notification_ids=[pick(step[1])])
        elif kind == "delete":
            call(conn, "sp_delete_notification", user_id=user_id, notification_id=pick(step[1]), permanent=True)
        elif kind == "wake":
            call(conn, "sp_inbox_snooze", user_id=user_id, notification_id=pick(step[1]), until=None)
        elif kind == "snooze":
            call(conn, "sp_inbox_snooze", user_id=user_id, notification_id=pick(step[1]), until=ahead(step[2]))
        elif kind == "bulk":
            call(conn, "sp_bulk_update", user_id=user_id, action=step[1], **step[2])
        elif kind == "clock":
            travel(admin_conn, user_id, step[1])
        elif kind == "retract":
            key = admin_conn.execute("SELECT dedupe_key FROM activity.notifications WHERE notification_id = %s",
                                     (pick(step[1]),)).fetchone()
            if key:
                call(conn, "sp_retract_notifications", dedupe_key=key[0], user_ids=[user_id])
    except psycopg.Error as exc:
        assert exc.diag.sqlstate in ("NA404", "NAS09", "NAA09", "NA422"), exc


def run_threads(n, target):
    """target(0..n-1) in n threads released together; any exception fails the test."""
    barrier = threading.Barrier(n)
    errors = []

    def wrapped(i):
        try:
            barrier.wait()
            target(i)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)
    threads = [threading.Thread(target=wrapped, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
