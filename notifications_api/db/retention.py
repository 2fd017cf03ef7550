"""Retention: the purge calls `notifications-api purge` makes, as the retention login."""
from __future__ import annotations

from .pool import Database

PURGE_NOTIFICATIONS = "SELECT * FROM activity.sp_purge_notifications(%s::int, %s::int)"
PURGE_EMAIL_OUTBOX = "SELECT * FROM activity.sp_purge_email_outbox(%s::int, %s::int, %s::int)"
PURGE_PUSH_OUTBOX = "SELECT * FROM activity.sp_purge_push_outbox(%s::int, %s::int)"


def purge_notifications(db: Database, archived_older_than_days: int, batch_size: int) -> int:
    """One batch of expired and old archived notifications; how many were deleted."""
    return db.call("sp_purge_notifications", PURGE_NOTIFICATIONS,
                   (archived_older_than_days, batch_size))[0][0]


def purge_email_outbox(db: Database, finished_older_than_days: int, failed_older_than_days: int,
                       batch_size: int) -> int:
    """One batch of finished e-mail outbox rows; how many were deleted."""
    return db.call("sp_purge_email_outbox", PURGE_EMAIL_OUTBOX,
                   (finished_older_than_days, failed_older_than_days, batch_size))[0][0]


def purge_push_outbox(db: Database, finished_older_than_days: int, batch_size: int) -> int:
    """One batch of sent, failed and cancelled push deliveries; how many were deleted."""
    return db.call("sp_purge_push_outbox", PURGE_PUSH_OUTBOX, (finished_older_than_days, batch_size))[0][0]
