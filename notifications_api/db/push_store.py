"""The Web Push subscription functions (endpoints 17-19): bound parameters in, dicts out. No Flask here.

One Python function per stored function of migrations_sql/repeatable/0210_push.sql that the API calls;
the worker's are in channels/push_outbox.py.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from .pool import Database

MAX_PER_USER = 20  # API.md: a 21st subscription replaces the one registered longest ago
SUBSCRIPTION_FIELDS = ("subscription_id", "endpoint_origin", "user_agent", "created_at", "expiration_time",
                       "last_success_at", "consecutive_failures")
SUBSCRIBE_COLUMNS = ("result", "removed_count", *SUBSCRIPTION_FIELDS)
SUBSCRIBE = (f"SELECT {', '.join(SUBSCRIBE_COLUMNS)} FROM activity.sp_push_subscribe("
             "%s::uuid, %s::text, %s::bytea, %s::bytea, %s::text, %s::timestamptz, %s::int)")
LIST = f"SELECT {', '.join(SUBSCRIPTION_FIELDS)} FROM activity.sp_push_subscriptions(%s::uuid)"
UNSUBSCRIBE = ("SELECT subscription_id, endpoint_origin"
               " FROM activity.sp_push_unsubscribe(%s::uuid, %s::uuid, %s::text)")


def subscribe(db: Database, user_id: str, endpoint: str, p256dh: bytes, auth: bytes, user_agent: str | None,
              expiration_time: datetime | None) -> dict[str, Any]:
    """Register or refresh a browser: result ('created', 'updated', 'moved'), removed_count (the cap),
    and the subscription's fields."""
    row = db.call("sp_push_subscribe", SUBSCRIBE,
                  (user_id, endpoint, p256dh, auth, user_agent, expiration_time, MAX_PER_USER))[0]
    return dict(zip(SUBSCRIBE_COLUMNS, row))


def subscriptions(db: Database, user_id: str) -> list[dict[str, Any]]:
    return [dict(zip(SUBSCRIPTION_FIELDS, row)) for row in db.call("sp_push_subscriptions", LIST, (user_id,))]


def unsubscribe(db: Database, user_id: str, subscription_id: UUID | None = None,
                endpoint: str | None = None) -> dict[str, Any]:
    """Forget one browser by id or endpoint: its subscription_id and endpoint_origin (404 when none)."""
    row = db.call("sp_push_unsubscribe", UNSUBSCRIBE, (user_id, subscription_id, endpoint))[0]
    return {"subscription_id": row[0], "endpoint_origin": row[1]}
