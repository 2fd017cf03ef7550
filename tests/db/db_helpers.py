"""Call the stored functions the way the app does (named arguments, bound parameters)."""
from __future__ import annotations

import contextlib

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
