"""One Python function per stored function: bound parameters in, plain rows out. No Flask here."""
from __future__ import annotations

import json
from datetime import datetime
from typing import Any
from uuid import UUID

from psycopg.types.json import Jsonb

from .pool import Database
from .rows import NOTIFICATION_FIELDS


def _select(function: str, columns: tuple[str, ...], args: str) -> str:
    """A call that names the columns it reads: rows map to dicts by name, never by position."""
    return f"SELECT {', '.join(columns)} FROM activity.{function}({args})"


def _dicts(columns: tuple[str, ...], rows: list[tuple]) -> list[dict[str, Any]]:
    return [dict(zip(columns, row)) for row in rows]


OUT = NOTIFICATION_FIELDS  # the columns of activity.inbox_notification, read by name
LIST = _select("sp_inbox_list", OUT, "%s::uuid, %s::text, %s::text[], %s::int, %s::timestamptz, %s::uuid")
GET = _select("sp_inbox_get", OUT, "%s::uuid, %s::uuid")
MARK = _select("sp_inbox_mark_read", OUT, "%s::uuid, %s::uuid, %s::boolean")
SNOOZE = _select("sp_inbox_snooze", OUT, "%s::uuid, %s::uuid, %s::timestamptz")
BULK_COLUMNS = ("updated_count", "unread_count", "unseen_count")
BULK = _select("sp_bulk_update", BULK_COLUMNS,
               "%s::uuid, %s::text, %s::uuid[], %s::text, %s::text, %s::text, %s::boolean, %s::timestamptz")
CREATE_COLUMNS = ("result", *OUT)
CREATE = _select("sp_inbox_create", CREATE_COLUMNS,
                 "%s::uuid[], %s::text, %s::text, %s::text, %s::uuid, %s::text, %s::text, %s::text, "
                 "%s::jsonb, %s::text, %s::text, %s::timestamptz, %s::text, %s::boolean")
GROUP_COLUMNS = ("notifications_count", "unread_count", "sample_actor_user_ids", "oldest_delivered_at", *OUT)
GROUPS = _select("sp_inbox_groups", GROUP_COLUMNS,
                 "%s::uuid, %s::boolean, %s::int, %s::timestamptz, %s::uuid")
RETRACT_COLUMNS = ("retracted_count", "has_more", "user_ids")
RETRACT = _select("sp_retract_notifications", RETRACT_COLUMNS,
                  "%s::text, %s::text, %s::text, %s::text, %s::uuid, %s::uuid[], %s::int")
DELETE = "SELECT activity.sp_delete_notification(%s::uuid, %s::uuid, %s::boolean)"
UNREAD = ("SELECT unread_count, unseen_count, by_type, version"
          " FROM activity.sp_get_unread_count(%s::uuid, %s::boolean, %s::bigint)")
SETTINGS = "SELECT * FROM activity.sp_settings_get(%s::uuid)"
UPDATE_SETTINGS = "SELECT * FROM activity.sp_settings_update(%s::uuid, %s::jsonb)"
COUNTS_COLUMNS = ("user_id", "unread_count", "unseen_count", "version")
COUNTS_MANY = _select("sp_get_unread_counts_many", COUNTS_COLUMNS, "%s::uuid[]")
ADVANCE_CLOCKS = _select("sp_advance_clocks", COUNTS_COLUMNS + ("changed",), "%s::int, %s::int")


def list_notifications(db: Database, user_id: str, status: str | None, types: list[str] | None,
                       limit: int, after: tuple[datetime, UUID] | None) -> list[dict[str, Any]]:
    """A page in delivery order; `after` is the (delivered_at, notification_id) of the last item seen."""
    delivered_at, notification_id = after or (None, None)
    return _dicts(OUT, db.read("sp_inbox_list", LIST,
                               (user_id, status, types or None, limit, delivered_at, notification_id),
                               user_id))


def list_groups(db: Database, user_id: str, unread: bool, limit: int,
                after: tuple[datetime, UUID] | None) -> list[dict[str, Any]]:
    """A page of groups, newest latest member first: the group's numbers and its latest member's
    fields (group_key is the latest member's); `after` is the last group's latest (delivered_at, id)."""
    delivered_at, notification_id = after or (None, None)
    return _dicts(GROUP_COLUMNS, db.read("sp_inbox_groups", GROUPS,
                                         (user_id, unread, limit, delivered_at, notification_id), user_id))


def get_notification(db: Database, user_id: str, notification_id: UUID) -> dict[str, Any]:
    return _dicts(OUT, db.read("sp_inbox_get", GET, (user_id, notification_id), user_id))[0]


def mark_read(db: Database, user_id: str, notification_id: UUID, read: bool) -> dict[str, Any]:
    return _dicts(OUT, db.write("sp_inbox_mark_read", MARK, (user_id, notification_id, read), (user_id,)))[0]


def snooze(db: Database, user_id: str, notification_id: UUID, until: datetime | None) -> dict[str, Any]:
    """Snooze until `until`, or wake now (None)."""
    return _dicts(OUT, db.write("sp_inbox_snooze", SNOOZE, (user_id, notification_id, until), (user_id,)))[0]


def bulk_update(db: Database, user_id: str, action: str, selectors: dict[str, Any]) -> dict[str, int]:
    """One action on the notifications the selectors pick: updated_count, unread_count, unseen_count."""
    return _dicts(BULK_COLUMNS, db.write("sp_bulk_update", BULK, (
        user_id, action, selectors.get("notification_ids"), selectors.get("notification_type"),
        selectors.get("group_key"), selectors.get("status"), bool(selectors.get("all")),
        selectors.get("before")), (user_id,)))[0]


def retract(db: Database, selectors: dict[str, Any], limit: int = 10000) -> dict[str, Any]:
    """Delete (for every user, or user_ids) what the producer takes back: retracted_count, has_more,
    user_ids (the users whose counts changed, for the live updates; not part of the response)."""
    return _dicts(RETRACT_COLUMNS, db.write("sp_retract_notifications", RETRACT, (
        selectors.get("dedupe_key"), selectors.get("target_type"), selectors.get("target_id"),
        selectors.get("notification_type"), selectors.get("actor_user_id"), selectors.get("user_ids"),
        limit), lambda rows: rows[0][2] or ()))[0]


def delete_notification(db: Database, user_id: str, notification_id: UUID, permanent: bool) -> None:
    db.write("sp_delete_notification", DELETE, (user_id, notification_id, permanent), (user_id,))


def unread_counts(db: Database, user_id: str, known_version: int | None = None,
                  by_type: bool = True) -> dict[str, Any]:
    """unread_count, unseen_count, by_type, version. When `known_version` is still the current
    version (or by_type is False), by_type is None (the per-type rows were not read)."""
    # A standby whose version is older than the one the client holds is behind for this user: a
    # 304 or a body from it would go back in time (the client's ETag is itself a floor).
    stale = None if known_version is None else (lambda rows: rows[0][3] < known_version)
    return _dicts(("unread_count", "unseen_count", "by_type", "version"),
                  db.read("sp_get_unread_count", UNREAD, (user_id, by_type, known_version), user_id,
                          stale))[0]


def check_user(db: Database, user_id: str) -> None:
    """Raise the 401/403 ApiError of a missing or inactive user. No stored function only checks a
    user: sp_get_unread_count without the per-type rows is the cheapest one that does."""
    db.call("sp_get_unread_count", UNREAD, (user_id, False, None))


def unread_counts_many(db: Database, user_ids: list[str | UUID]) -> list[dict[str, Any]]:
    """The current counts of many users (one row per distinct id, ascending; zeros for a user
    without notifications): user_id, unread_count, unseen_count, version."""
    return _dicts(COUNTS_COLUMNS, db.call("sp_get_unread_counts_many", COUNTS_MANY, (list(user_ids),)))


def advance_clocks(db: Database, limit: int, max_ms: int) -> list[dict[str, Any]]:
    """Fold the clock (snooze ends, expiries) into the counts of up to `limit` due users, for at
    most about `max_ms`; every user folded, with their new counts (the keys of unread_counts_many)
    and `changed`. Safe to run on several replicas at once."""
    rows = db.write("sp_advance_clocks", ADVANCE_CLOCKS, (limit, max_ms),
                    lambda rows: (row[0] for row in rows))
    return _dicts(COUNTS_COLUMNS + ("changed",), rows)


def create_notifications(db: Database, user_ids: list[UUID], fields: dict[str, Any],
                         queue_email: bool) -> list[dict[str, Any]]:
    """One dict per input user id: result and the notification's fields."""
    return _dicts(CREATE_COLUMNS, db.write("sp_inbox_create", CREATE, (
        user_ids, fields["notification_type"], fields["title"], fields.get("message"),
        fields.get("actor_user_id"), fields.get("target_type"), fields.get("target_id"),
        fields.get("action_url"), Jsonb(fields.get("payload") or {}), fields.get("priority", "normal"),
        fields.get("group_key"), fields.get("expires_at"), fields.get("dedupe_key"), queue_email), user_ids))


def get_settings(db: Database, user_id: str) -> tuple:
    return db.read("sp_settings_get", SETTINGS, (user_id,), user_id)[0]


def update_settings(db: Database, user_id: str, patch: dict[str, Any]) -> tuple:
    return db.write("sp_settings_update", UPDATE_SETTINGS,
                    (user_id, Jsonb(patch, dumps=_dumps)), (user_id,))[0]


def _dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
