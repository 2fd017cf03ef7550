"""One Python function per stored function: bound parameters in, plain rows out. No Flask here."""
from __future__ import annotations

import json
from datetime import datetime
from typing import Any
from uuid import UUID

from psycopg.types.json import Jsonb

from .db import Database

LIST = ("SELECT * FROM activity.sp_get_user_notifications("
        "%s::uuid, %s::text, %s::text[], %s::int, %s::timestamptz, %s::uuid)")
GET = "SELECT * FROM activity.sp_get_notification_by_id(%s::uuid, %s::uuid)"
MARK = "SELECT * FROM activity.sp_mark_notification_as_read(%s::uuid, %s::uuid, %s::boolean)"
MARK_BULK = ("SELECT * FROM activity.sp_mark_notifications_as_read_bulk("
             "%s::uuid, %s::uuid[], %s::text, %s::boolean, %s::timestamptz)")
DELETE = "SELECT activity.sp_delete_notification(%s::uuid, %s::uuid, %s::boolean)"
UNREAD = "SELECT * FROM activity.sp_get_unread_count(%s::uuid, %s::boolean, %s::bigint, %s::bigint)"
CREATE = ("SELECT * FROM activity.sp_create_notification("
          "%s::uuid[], %s::text, %s::text, %s::text, %s::uuid, %s::text, %s::text, %s::text, "
          "%s::jsonb, %s::text, %s::text, %s::timestamptz, %s::text, %s::boolean)")
SETTINGS = "SELECT * FROM activity.sp_get_notification_settings(%s::uuid)"
UPDATE_SETTINGS = "SELECT * FROM activity.sp_update_notification_settings(%s::uuid, %s::jsonb)"
PURGE = "SELECT * FROM activity.sp_purge_notifications(%s::int, %s::int)"


def _select(function: str, columns: tuple[str, ...], args: str) -> str:
    """A call that names the columns it reads: rows map to dicts by name, never by position."""
    return f"SELECT {', '.join(columns)} FROM activity.{function}({args})"


def _dicts(columns: tuple[str, ...], rows: list[tuple]) -> list[dict[str, Any]]:
    return [dict(zip(columns, row)) for row in rows]


COUNTS_COLUMNS = ("user_id", "unread_count", "unseen_count", "version")
COUNTS_MANY = _select("sp_get_unread_counts_many", COUNTS_COLUMNS, "%s::uuid[]")
ADVANCE_CLOCKS = _select("sp_advance_clocks", COUNTS_COLUMNS, "%s::int")


def list_notifications(db: Database, user_id: str, status: str | None, types: list[str] | None,
                       limit: int, after: tuple[datetime, UUID] | None) -> list[tuple]:
    created_at, notification_id = after or (None, None)
    return db.call("sp_get_user_notifications", LIST,
                   (user_id, status, types or None, limit, created_at, notification_id))


def get_notification(db: Database, user_id: str, notification_id: UUID) -> tuple:
    return db.call("sp_get_notification_by_id", GET, (user_id, notification_id))[0]


def mark_read(db: Database, user_id: str, notification_id: UUID, read: bool) -> tuple:
    return db.call("sp_mark_notification_as_read", MARK, (user_id, notification_id, read))[0]


def mark_read_bulk(db: Database, user_id: str, notification_ids: list[UUID] | None,
                   notification_type: str | None, everything: bool,
                   before: datetime | None) -> tuple[int, int]:
    row = db.call("sp_mark_notifications_as_read_bulk", MARK_BULK,
                  (user_id, notification_ids, notification_type, everything, before))[0]
    return row[0], row[1]


def delete_notification(db: Database, user_id: str, notification_id: UUID, permanent: bool) -> None:
    db.call("sp_delete_notification", DELETE, (user_id, notification_id, permanent))


def unread_counts(db: Database, user_id: str, by_type: bool = True,
                  known: tuple[int, int] | None = None) -> tuple[int, dict[str, int] | None, int]:
    """(unread_count, by_type, version). `known` is a (version, unread_count) pair the caller
    has: when it still holds, by_type is None (unchanged) and the per-type rows are not read."""
    known_version, known_count = known or (None, None)
    count, types, version = db.call("sp_get_unread_count", UNREAD,
                                    (user_id, by_type, known_version, known_count))[0]
    return count, types, version


def unread_counts_many(db: Database, user_ids: list[str | UUID]) -> list[dict[str, Any]]:
    """The current counts of many users (one row per distinct id, ascending; zeros for a user
    without notifications): user_id, unread_count, unseen_count, version."""
    return _dicts(COUNTS_COLUMNS, db.call("sp_get_unread_counts_many", COUNTS_MANY, (list(user_ids),)))


def advance_clocks(db: Database, limit: int) -> list[dict[str, Any]]:
    """Fold the clock (snooze ends, expiries) into the counts of up to `limit` due users; the
    users whose counts changed, with their new counts (same keys as unread_counts_many). Safe to
    run on several replicas at once."""
    return _dicts(COUNTS_COLUMNS, db.call("sp_advance_clocks", ADVANCE_CLOCKS, (limit,)))


def create_notifications(db: Database, user_ids: list[UUID], fields: dict[str, Any],
                         queue_email: bool) -> list[tuple]:
    return db.call("sp_create_notification", CREATE, (
        user_ids, fields["notification_type"], fields["title"], fields.get("message"),
        fields.get("actor_user_id"), fields.get("target_type"), fields.get("target_id"),
        fields.get("action_url"), Jsonb(fields.get("payload") or {}), fields.get("priority", "normal"),
        fields.get("group_key"), fields.get("expires_at"), fields.get("dedupe_key"), queue_email))


def get_settings(db: Database, user_id: str) -> tuple:
    return db.call("sp_get_notification_settings", SETTINGS, (user_id,))[0]


def update_settings(db: Database, user_id: str, patch: dict[str, Any]) -> tuple:
    return db.call("sp_update_notification_settings", UPDATE_SETTINGS,
                   (user_id, Jsonb(patch, dumps=_dumps)))[0]


def purge(db: Database, archived_older_than_days: int, batch_size: int) -> int:
    return db.call("sp_purge_notifications", PURGE, (archived_older_than_days, batch_size))[0][0]


def _dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
