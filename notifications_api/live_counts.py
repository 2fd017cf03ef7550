"""The counts a live-update event carries ({unread_count, unseen_count, version}), read through the
inbox's own stored functions (never a copy of their SQL).

Inbox v2 (sp_get_unread_counts_many, one call per batch) and inbox v1 (sp_get_unread_count, one
call per user; v1 has no seen state, so every unread notification is unseen) are both served while
the two are merged in either order; once inbox v2 is on main the v1 branch below goes.
"""
from __future__ import annotations

from typing import Any

from . import store
from .db import Database


def of_user(db: Database, user_id: str) -> dict[str, Any]:
    """One user's counts; the stored function's 401/403 for a missing or inactive user."""
    counts = store.unread_counts(db, user_id, by_type=False)
    if isinstance(counts, dict):  # inbox v2
        return counts
    unread, _, version = counts  # inbox v1
    return {"unread_count": unread, "unseen_count": unread, "version": version}


def of_users(db: Database, user_ids: list[str]) -> list[dict[str, Any]]:
    """Many users' counts (user_id, unread_count, unseen_count, version)."""
    many = getattr(store, "unread_counts_many", None)
    if many is not None:  # inbox v2: one call
        return many(db, user_ids)
    return [{"user_id": user_id, **of_user(db, user_id)} for user_id in user_ids]
