"""The push worker's calls of the push outbox stored functions: bound parameters in, plain values out."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

import psycopg

CLAIM_SIGNATURE = "activity.sp_claim_push_deliveries(text, integer, integer, integer)"
CLAIM = "SELECT * FROM activity.sp_claim_push_deliveries(%s::text, %s::int, %s::int, %s::int)"
COMPLETE = "SELECT delivery_id FROM activity.sp_complete_push_deliveries(%s::text, %s::uuid[], %s::uuid[])"
RETRY = ("SELECT status, subscription_removed FROM activity.sp_retry_push_delivery("
         "%s::uuid, %s::uuid, %s::text, %s::text, %s::float8, %s::int, %s::boolean, %s::int)")
FAIL = ("SELECT failed, subscription_removed"
        " FROM activity.sp_fail_push_delivery(%s::uuid, %s::uuid, %s::text, %s::text, %s::int)")
GONE = "SELECT activity.sp_gone_push_subscription(%s::uuid, %s::uuid, %s::text)"
RELEASE = "SELECT activity.sp_release_push_deliveries(%s::text)"
STATS = "SELECT pending, due, sending, oldest_due_age_seconds FROM activity.sp_push_queue_stats()"
CAN_CLAIM = "SELECT has_function_privilege(%s::text, 'EXECUTE')"
MAX_FAILURES = 10  # consecutive failed deliveries after which a subscription is deleted (API.md)


@dataclass(frozen=True)
class PushDelivery:
    user_id: UUID
    delivery_id: UUID
    notification_id: UUID
    subscription_id: UUID
    endpoint: str  # a capability: never logged (push_sender.endpoint_origin is)
    p256dh: bytes
    auth: bytes
    attempts: int  # including the one about to be made
    queued_at: datetime
    notification_type: str
    title: str
    message: str | None
    action_url: str | None
    priority: str
    group_key: str | None
    created_at: datetime
    expires_at: datetime | None
    unread_count: int
    unseen_count: int

    def __repr__(self) -> str:  # keep the endpoint and keys out of tracebacks and debug output
        return f"PushDelivery(delivery_id={self.delivery_id}, attempts={self.attempts})"


@dataclass(frozen=True)
class PushQueueStats:
    pending: int
    due: int
    sending: int
    oldest_due_age_seconds: float


def can_claim(conn: psycopg.Connection) -> bool:
    """Whether the connected role may run the worker (raises UndefinedFunction before migrations)."""
    return bool(conn.execute(CAN_CLAIM, (CLAIM_SIGNATURE,)).fetchone()[0])


def claim(conn: psycopg.Connection, worker: str, limit: int, lease_seconds: int,
          max_attempts: int) -> list[PushDelivery]:
    return [PushDelivery(*row) for row in conn.execute(CLAIM, (worker, limit, lease_seconds, max_attempts))]


def complete(conn: psycopg.Connection, deliveries: list[PushDelivery], worker: str) -> set[UUID]:
    """Record a batch's sent pushes at once; the delivery ids that were still ours."""
    user_ids, delivery_ids = [d.user_id for d in deliveries], [d.delivery_id for d in deliveries]
    return {row[0] for row in conn.execute(COMPLETE, (worker, user_ids, delivery_ids))}


def retry(conn: psycopg.Connection, delivery: PushDelivery, worker: str, error: str, delay_seconds: float,
          max_attempts: int, give_up: bool) -> tuple[str | None, bool]:
    """('pending' | 'failed' | None when the lease was lost, whether the subscription was removed)."""
    status, removed = conn.execute(RETRY, (delivery.user_id, delivery.delivery_id, worker, error,
                                           delay_seconds, max_attempts, give_up, MAX_FAILURES)).fetchone()
    return status, bool(removed)


def fail(conn: psycopg.Connection, delivery: PushDelivery, worker: str, error: str) -> tuple[bool, bool]:
    """(whether it was ours to fail, whether the subscription was removed)."""
    failed, removed = conn.execute(FAIL, (delivery.user_id, delivery.delivery_id, worker, error,
                                          MAX_FAILURES)).fetchone()
    return bool(failed), bool(removed)


def gone(conn: psycopg.Connection, delivery: PushDelivery, worker: str) -> bool:
    """404/410: delete the subscription (and its deliveries); False when the lease was lost."""
    return bool(conn.execute(GONE, (delivery.user_id, delivery.delivery_id, worker)).fetchone()[0])


def release(conn: psycopg.Connection, worker: str) -> int:
    return conn.execute(RELEASE, (worker,)).fetchone()[0]


def stats(conn: psycopg.Connection) -> PushQueueStats:
    return PushQueueStats(*conn.execute(STATS).fetchone())
