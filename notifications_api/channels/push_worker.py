"""The Web Push worker: lease due push deliveries, encrypt and sign each, POST them concurrently over
pooled connections, record the outcomes (docs/PUSH.md).

Run by `notifications-api deliver-push`. Any number of workers may run: rows are leased with FOR
UPDATE SKIP LOCKED. A worker killed mid-batch loses nothing: its leases expire and another worker
takes the rows again (at most the pushes in flight are sent twice; the Topic header makes a push
service replace an undelivered copy). SIGTERM/SIGINT: stop claiming, finish the requests in flight,
hand the rest back, exit 0.
"""
from __future__ import annotations

import hashlib
import json
import logging
import random
import signal
import time
from collections import Counter as Tally
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import psycopg
import urllib3.exceptions

from ..db.rows import format_timestamp
from . import push_outbox as outbox
from .email_client import parse_retry_after
from .email_worker import MAX_RETRY_AFTER_SECONDS, WorkerSetupError, single_process_metrics, worker_name
from .outbox_worker import DB_ERRORS, OutboxWorker
from .push_crypto import VapidSigner, b64url, encrypt
from .push_outbox import PushDelivery
from .push_sender import BlockedDestination, EndpointPolicy, PushSender, endpoint_origin

log = logging.getLogger(__name__)

PREFIX = "notifications_api"
MAX_PAYLOAD_BYTES = 3072  # API.md: the decrypted body, compact UTF-8 JSON
ELLIPSIS = "…"
URGENCY = {"low": "low", "normal": "normal", "high": "high", "urgent": "high"}
OUTCOMES = ("sent", "retried", "failed", "gone", "lost")
QUEUE_STATUSES = ("pending", "due", "sending")
MAX_LEASE_MARGIN_SECONDS = 5.0
# Sent pushes are recorded together (one call), at the latest when this many wait: a round trip per
# push would bound a worker by the database's latency. A worker killed meanwhile re-sends at most
# these and the requests in flight (their leases expire).
SENT_FLUSH = 32


@dataclass(frozen=True)
class PushSettings:
    vapid_private_key: Any  # an ec.EllipticCurvePrivateKey (config.load_vapid_private_key)
    vapid_subject: str
    allowed_hosts: tuple[str, ...]
    ttl_seconds: int = 86400  # PUSH_TTL_SECONDS
    max_attempts: int = 5  # PUSH_MAX_ATTEMPTS
    batch_size: int = 200
    lease_seconds: int = 60
    poll_interval: float = 1.0
    concurrency: int = 16  # requests in flight (threads), also the sockets per push-service origin
    connect_timeout: float = 5.0
    read_timeout: float = 10.0
    retry_base: float = 15.0  # API.md: exponential backoff starting at 15 s
    retry_cap: float = 3600.0
    stats_interval: float = 15.0
    prepare_threshold: int | None = 5

    @property
    def lease_margin(self) -> float:
        return min(MAX_LEASE_MARGIN_SECONDS, self.lease_seconds / 10)

    def problems(self) -> list[str]:
        found = []
        if self.vapid_private_key is None:
            found.append("VAPID_PRIVATE_KEY is not set: there is no key to sign pushes with "
                         "(`notifications-api vapid-keys` makes one)")
        if not self.vapid_subject:
            found.append("VAPID_SUBJECT is not set")
        if not 1 <= self.batch_size <= 1000:
            found.append("--batch-size must be between 1 and 1000")
        if not 1 <= self.concurrency <= 256:
            found.append("--concurrency must be between 1 and 256")
        if not 1 <= self.lease_seconds <= 3600:
            found.append("--lease-seconds must be between 1 and 3600")
        elif self.lease_seconds <= self.connect_timeout + self.read_timeout + self.lease_margin:
            found.append(f"--lease-seconds must exceed the connect and read timeouts plus a margin "
                         f"({self.connect_timeout:g} + {self.read_timeout:g} + {self.lease_margin:g} s)")
        if self.poll_interval <= 0:
            found.append("--poll-interval must be positive")
        return found


class PushMetrics:
    """The push worker's Prometheus metrics, in their own registry (served by --metrics-port).
    Labels carry outcomes and reasons only: never an endpoint, a key or a user."""

    def __init__(self, registry: Any = None) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.deliveries = Counter(
            f"{PREFIX}_push_deliveries", "Push send attempts by outcome: sent (2xx), retried (429/5xx/"
            "network), failed (other 4xx, refused destination, attempts or TTL used up), gone (404/410), "
            "lost (the lease expired before the outcome was recorded).", ("outcome",), registry=r)
        self.send_seconds = Histogram(f"{PREFIX}_push_send_duration_seconds",
                                      "Duration of one request to a push service.", registry=r,
                                      buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0))
        self.subscriptions_removed = Counter(
            f"{PREFIX}_push_subscriptions_removed", "Subscriptions the worker deleted: gone (404/410) or "
            "failures (10 consecutive failed deliveries).", ("reason",), registry=r)
        self.queue = Gauge(f"{PREFIX}_push_queue_deliveries",
                           "Push deliveries by status (pending includes deferred rows; due: pending, "
                           "due now; a notification not yet fanned out to its browsers counts once per "
                           "user in pending and due).",
                           ("status",), registry=r)
        self.oldest_due = Gauge(f"{PREFIX}_push_queue_oldest_due_age_seconds",
                                "How long the oldest due pending push has waited, not yet fanned out "
                                "ones included (0: none).", registry=r)
        self.heartbeat = Gauge(f"{PREFIX}_push_worker_last_poll_timestamp_seconds",
                               "When this worker last polled the push outbox.", registry=r)
        for outcome in OUTCOMES:
            self.deliveries.labels(outcome)
        for reason in ("gone", "failures"):
            self.subscriptions_removed.labels(reason)
        for status in QUEUE_STATUSES:
            self.queue.labels(status)

    def record_stats(self, stats: outbox.PushQueueStats) -> None:
        for status in QUEUE_STATUSES:
            self.queue.labels(status).set(getattr(stats, status))
        self.oldest_due.set(stats.oldest_due_age_seconds)


# --- what a push carries ---------------------------------------------------------------------------

def _dumps(body: dict) -> bytes:
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()


def _timestamp(value: datetime | None) -> str | None:
    return format_timestamp(value) if isinstance(value, datetime) else value


def payload(delivery: PushDelivery) -> bytes:
    """The decrypted body (API.md): compact UTF-8 JSON of at most MAX_PAYLOAD_BYTES, `message`
    shortened with an ellipsis to fit (then the title, for a pathological action_url)."""
    body = {
        "notification_id": str(delivery.notification_id), "notification_type": delivery.notification_type,
        "title": delivery.title, "message": delivery.message, "action_url": delivery.action_url,
        "priority": delivery.priority, "group_key": delivery.group_key,
        "created_at": _timestamp(delivery.created_at),
        "unread_count": delivery.unread_count, "unseen_count": delivery.unseen_count,
    }
    data = _dumps(body)
    for name in ("message", "title", "group_key", "action_url"):
        if len(data) <= MAX_PAYLOAD_BYTES:
            break
        body[name] = _shorten(body, name)
        data = _dumps(body)
    return data


def _shorten(body: dict, name: str) -> str | None:
    """The longest prefix of body[name] (+ …) that makes the body fit; None when nothing does."""
    text = body[name]
    if not text:
        return text
    low, high = 0, len(text)
    best = None
    while low <= high:  # binary search over characters: JSON escaping makes bytes per char uneven
        mid = (low + high) // 2
        candidate = text[:mid] + ELLIPSIS
        if len(_dumps({**body, name: candidate})) <= MAX_PAYLOAD_BYTES:
            best, low = candidate, mid + 1
        else:
            high = mid - 1
    return best if name != "title" or best else ELLIPSIS


def topic(notification_id: Any) -> str:
    """RFC 8030 Topic: ≤ 32 characters of the URL-safe base64 alphabet; a repeat of the same
    notification replaces an undelivered copy."""
    return b64url(hashlib.sha256(str(notification_id).encode()).digest())[:32]


def ttl_seconds(delivery: PushDelivery, ttl: int, now: datetime | None = None) -> int:
    """PUSH_TTL_SECONDS, cut to the time left before the notification expires."""
    if delivery.expires_at is None:
        return ttl
    now = now or datetime.now(timezone.utc)
    return max(0, min(ttl, int((delivery.expires_at - now).total_seconds())))


@dataclass(frozen=True)
class PushOutcome:
    kind: str  # sent, gone, retry, failed, skipped (not started: the lease was running out)
    status: int | None = None
    error: str | None = None
    retry_after: float | None = None
    seconds: float = 0.0


def classify(status: int, retry_after: str | None) -> PushOutcome:
    """2xx sent; 404/410 the browser unsubscribed; 408/429/5xx retried (Retry-After read); any other
    answer (other 4xx, a 3xx never followed, 1xx) failed at once."""
    if 200 <= status < 300:
        return PushOutcome("sent", status)
    if status in (404, 410):
        return PushOutcome("gone", status, f"HTTP {status}")
    if status in (408, 429) or status >= 500:
        return PushOutcome("retry", status, f"HTTP {status}", parse_retry_after(retry_after))
    return PushOutcome("failed", status, f"HTTP {status}")


# --- the worker ------------------------------------------------------------------------------------

class PushWorker(OutboxWorker):
    """One worker process: a database connection, a sender with its pools, a thread pool, the loop."""

    OUTBOX = outbox
    APPLICATION_NAME = "notifications-push-worker"
    RECORD_LOST = "could not record a push outcome; its lease will expire and it is sent again"
    STATS_LOST = "could not read the push queue statistics"
    KIND = "push"
    EVENT = "push"

    def __init__(self, conninfo: str, settings: PushSettings, *, name: str | None = None,
                 sender: PushSender | None = None, metrics: PushMetrics | None = None,
                 rng: random.Random | None = None,
                 before_send: Callable[[PushDelivery], None] | None = None) -> None:
        self.conninfo = conninfo
        self.settings = settings
        self.name = name or worker_name()
        self._own_sender = sender is None
        self.sender = sender or PushSender(
            EndpointPolicy(settings.allowed_hosts), per_origin=settings.concurrency,
            connect_timeout=settings.connect_timeout, read_timeout=settings.read_timeout)
        self.signer = VapidSigner(settings.vapid_private_key, settings.vapid_subject)
        self.metrics = metrics or PushMetrics()
        self.rng = rng or random.Random()
        self.before_send = before_send  # test hook (runs in the sending thread)
        super().__init__()
        self._executor = ThreadPoolExecutor(settings.concurrency, thread_name_prefix="push-send")

    def check(self) -> None:
        """Connect and make sure this role may run the push worker; WorkerSetupError otherwise."""
        try:
            allowed = self._db(outbox.can_claim)
        except psycopg.errors.UndefinedFunction:
            raise WorkerSetupError(
                "the push outbox functions are missing: run `notifications-api migrate`") from None
        except DB_ERRORS as exc:
            raise WorkerSetupError(f"cannot connect to the database: {str(exc).strip()}") from None
        if not allowed:
            user = self._db(lambda conn: conn.execute("SELECT current_user").fetchone()[0])
            raise WorkerSetupError(
                f"database role {user!r} may not run the push worker: connect as a member of "
                "notifications_push_worker (WORKER_DATABASE_URL; `provision_push_worker_user` in "
                "db/admin.py)")

    def _started_fields(self) -> dict[str, Any]:
        return {"batch_size": self.settings.batch_size, "concurrency": self.settings.concurrency}

    def _shutdown(self) -> int | None:
        self._executor.shutdown(wait=True)
        try:
            return super()._shutdown()
        finally:
            if self._own_sender:
                self.sender.close()

    # --- one batch ---------------------------------------------------------------------------------

    def _deliver(self, batch: list[PushDelivery]) -> int:
        """Send a leased batch concurrently; record each outcome as it comes; one summary log line."""
        s = self.settings
        started = time.perf_counter()
        # a request is started only while it can end (and be recorded) before the lease does
        deadline = time.monotonic() + s.lease_seconds - s.connect_timeout - s.read_timeout - s.lease_margin
        futures = {self._executor.submit(self._send, delivery, deadline): delivery for delivery in batch}
        tally: Tally[str] = Tally()
        origins: Tally[str] = Tally()
        sent: list[PushDelivery] = []
        for future in as_completed(futures):
            delivery = futures[future]
            outcome = future.result()
            if outcome.kind == "skipped":
                tally["released"] += 1
                continue
            self.metrics.send_seconds.observe(outcome.seconds)
            origins[endpoint_origin(delivery.endpoint)] += 1
            if outcome.kind == "sent":
                sent.append(delivery)
                if len(sent) >= SENT_FLUSH:
                    tally.update(self._complete(sent))
                    sent = []
                continue
            tally[self._record(delivery, outcome)] += 1
        if sent:
            tally.update(self._complete(sent))
        if tally["released"]:
            self._record_call(outbox.release, self.name)
        log.info("push batch delivered", extra={
            "event": "push_batch", "worker": self.name, "claimed": len(batch), **dict(tally),
            "origins": dict(origins), "duration_ms": round((time.perf_counter() - started) * 1000, 1)})
        return len(batch) - tally["released"]

    def _send(self, delivery: PushDelivery, deadline: float) -> PushOutcome:
        """Encrypt, sign, POST (in a sending thread). Never raises."""
        if self.stopping or time.monotonic() > deadline:
            return PushOutcome("skipped")
        started = time.perf_counter()
        try:
            if self.before_send:
                self.before_send(delivery)
            body = encrypt(payload(delivery), delivery.p256dh, delivery.auth)
            origin = endpoint_origin(delivery.endpoint)
            headers = {
                "Content-Encoding": "aes128gcm",
                "Content-Type": "application/octet-stream",
                "TTL": str(ttl_seconds(delivery, self.settings.ttl_seconds)),
                "Urgency": URGENCY.get(delivery.priority, "normal"),
                "Topic": topic(delivery.notification_id),
                "Authorization": self.signer.header(origin),
            }
            response = self.sender.post(delivery.endpoint, body, headers)
        except BlockedDestination as exc:
            return PushOutcome("failed", None, f"refused: {exc}", seconds=time.perf_counter() - started)
        except ValueError as exc:  # the subscription's key is not a P-256 point, the payload too big
            return PushOutcome("failed", None, f"cannot encrypt: {exc}",
                               seconds=time.perf_counter() - started)
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            # network-level: the class name only (urllib3's messages quote the URL, a capability)
            return PushOutcome("retry", None, _network_error(exc), seconds=time.perf_counter() - started)
        outcome = classify(response.status, response.retry_after)
        return PushOutcome(outcome.kind, outcome.status, outcome.error, outcome.retry_after,
                           time.perf_counter() - started)

    def retry_delay(self, delivery: PushDelivery, outcome: PushOutcome) -> float:
        """Exponential from retry_base (15 s, 30 s, 60 s, ...) with up to 25 % jitter; a longer
        Retry-After wins (capped at an hour)."""
        s = self.settings
        delay = min(s.retry_cap, s.retry_base * 2 ** min(max(delivery.attempts - 1, 0), 30))
        delay *= 1 + self.rng.random() / 4
        if outcome.retry_after is not None:
            delay = max(delay, min(outcome.retry_after, MAX_RETRY_AFTER_SECONDS))
        return delay

    def _complete(self, deliveries: list[PushDelivery]) -> Tally[str]:
        """Record sent pushes in one call: how many were sent, and lost (the lease had expired)."""
        ours = self._record_call(outbox.complete, deliveries, self.name) or set()
        counts = Tally(sent=len(ours), lost=len(deliveries) - len(ours))
        for kind, count in counts.items():
            self.metrics.deliveries.labels(kind).inc(count)
        return counts

    def _record(self, delivery: PushDelivery, outcome: PushOutcome) -> str:
        """Record one outcome; which of OUTCOMES it was."""
        s = self.settings
        if outcome.kind == "sent":
            return "sent" if self._complete([delivery])["sent"] else "lost"
        if outcome.kind == "gone":
            kind = "gone" if self._record_call(outbox.gone, delivery, self.name) else "lost"
            if kind == "gone":
                self._removed(delivery, "gone", outcome.status)
        elif outcome.kind == "failed":
            result = self._record_call(outbox.fail, delivery, self.name, outcome.error or "failed")
            kind = "failed" if result and result[0] else "lost"
            if result and result[1]:
                self._removed(delivery, "failures", outcome.status)
        else:
            delay = self.retry_delay(delivery, outcome)
            ttl_left = s.ttl_seconds - (datetime.now(timezone.utc) - delivery.queued_at).total_seconds()
            give_up = delay >= ttl_left or ttl_seconds(delivery, s.ttl_seconds) == 0
            result = self._record_call(outbox.retry, delivery, self.name, outcome.error or "error",
                                       min(delay, 86400.0), s.max_attempts, give_up)
            status, removed = result if result else (None, False)
            kind = {"pending": "retried", "failed": "failed"}.get(status, "lost")
            if removed:
                self._removed(delivery, "failures", outcome.status)
        self.metrics.deliveries.labels(kind).inc()
        if kind == "failed":
            log.warning("push failed", extra={
                "event": "push_failed", "worker": self.name, "delivery_id": str(delivery.delivery_id),
                "subscription_id": str(delivery.subscription_id), "attempt": delivery.attempts,
                "status": outcome.status, "error": outcome.error,
                "endpoint_origin": endpoint_origin(delivery.endpoint)})
        return kind

    def _removed(self, delivery: PushDelivery, reason: str, status: int | None) -> None:
        self.metrics.subscriptions_removed.labels(reason).inc()
        log.info("push subscription removed", extra={
            "event": "push_subscription_removed", "worker": self.name, "reason": reason, "status": status,
            "user_id": str(delivery.user_id), "subscription_id": str(delivery.subscription_id),
            "endpoint_origin": endpoint_origin(delivery.endpoint)})


def _network_error(exc: Exception) -> str:
    """A network failure without its message (urllib3 puts the URL, a capability, in it)."""
    reason = getattr(exc, "reason", None)
    name = type(exc).__name__
    if isinstance(exc, urllib3.exceptions.MaxRetryError) and reason is not None:
        name = type(reason).__name__
    return f"network: {name}"


# --- the command -----------------------------------------------------------------------------------

def serve(conninfo: str, settings: PushSettings, *, once: bool = False, metrics_port: int = 0,
          metrics_addr: str = "0.0.0.0") -> int:
    """`notifications-api deliver-push`: check, install signal handlers, run. Returns the exit code."""
    problems = settings.problems()
    if problems:
        raise WorkerSetupError("; ".join(problems))
    single_process_metrics()
    worker = PushWorker(conninfo, settings)
    worker.check()
    if metrics_port:
        from prometheus_client import start_http_server

        start_http_server(metrics_port, addr=metrics_addr, registry=worker.metrics.registry)
        log.info("metrics served", extra={"event": "push_worker_metrics", "port": metrics_port})

    def on_signal(signum, frame):
        if worker.stopping:
            raise KeyboardInterrupt
        log.info("stopping after the requests in flight", extra={
            "event": "push_worker_stopping", "worker": worker.name, "signal": signal.Signals(signum).name})
        worker.stop()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        worker.run(once=once)
    except KeyboardInterrupt:
        return 130
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0
