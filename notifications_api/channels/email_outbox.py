"""The e-mail worker's calls of the outbox stored functions: bound parameters in, plain values out."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

import psycopg

CLAIM_SIGNATURE = "activity.sp_claim_emails(text, integer, integer, integer, integer)"
CLAIM = "SELECT * FROM activity.sp_claim_emails(%s::text, %s::int, %s::int, %s::int, %s::int)"
COMPLETE = "SELECT activity.sp_complete_email_delivery(%s::uuid, %s::uuid, %s::text)"
RETRY = ("SELECT activity.sp_retry_email_delivery("
         "%s::uuid, %s::uuid, %s::text, %s::text, %s::float8, %s::int)")
FAIL = "SELECT activity.sp_fail_email_delivery(%s::uuid, %s::uuid, %s::text, %s::text)"
RELEASE = "SELECT activity.sp_release_email_deliveries(%s::text)"
STATS = "SELECT * FROM activity.sp_email_queue_stats()"
CAN_CLAIM = "SELECT has_function_privilege(%s::text, 'EXECUTE')"


@dataclass(frozen=True)
class Delivery:
    """One e-mail: a single notification's, or a user's digest (docs/EMAIL.md)."""

    user_id: UUID
    delivery_id: UUID  # the e-mail's idempotency key: the same for every retry of it
    notification_id: UUID  # the newest in it
    recipient: str
    subject: str
    body: str
    attempts: int  # including the one about to be made
    created_at: datetime
    notification_ids: tuple[UUID, ...] = ()  # every notification in it, newest first


@dataclass(frozen=True)
class QueueStats:
    pending: int
    due: int
    sending: int
    failed: int
    dead: int
    oldest_due_age_seconds: float


def can_claim(conn: psycopg.Connection) -> bool:
    """Whether the connected role may run the worker (raises UndefinedFunction before migrations)."""
    return bool(conn.execute(CAN_CLAIM, (CLAIM_SIGNATURE,)).fetchone()[0])


def claim(conn: psycopg.Connection, worker: str, limit: int, lease_seconds: int,
          max_attempts: int, delay_seconds: int = 0) -> list[Delivery]:
    """Lease up to `limit` e-mails; `delay_seconds`: EMAIL_DIGEST_DELAY_SECONDS (0: one per notification)."""
    rows = conn.execute(CLAIM, (worker, limit, lease_seconds, max_attempts, delay_seconds))
    return [Delivery(*row[:8], tuple(row[8] or ())) for row in rows]


def complete(conn: psycopg.Connection, delivery: Delivery, worker: str) -> bool:
    return bool(conn.execute(COMPLETE, (delivery.user_id, delivery.delivery_id, worker)).fetchone()[0])


def retry(conn: psycopg.Connection, delivery: Delivery, worker: str, error: str, delay_seconds: float,
          max_attempts: int) -> str | None:
    """'pending' (retried later), 'dead' (attempts used up) or None (the lease was lost)."""
    return conn.execute(RETRY, (delivery.user_id, delivery.delivery_id, worker, error, delay_seconds,
                                max_attempts)).fetchone()[0]


def fail(conn: psycopg.Connection, delivery: Delivery, worker: str, error: str) -> bool:
    return bool(conn.execute(FAIL, (delivery.user_id, delivery.delivery_id, worker, error)).fetchone()[0])


def release(conn: psycopg.Connection, worker: str) -> int:
    return conn.execute(RELEASE, (worker,)).fetchone()[0]


def stats(conn: psycopg.Connection) -> QueueStats:
    return QueueStats(*conn.execute(STATS).fetchone())
