"""The e-mail delivery worker: lease due e-mails, POST each to the Email API, record the outcome.

Run by `notifications-api deliver-emails` (docs/EMAIL.md). An e-mail is a user's digest of what is
still unseen once EMAIL_DIGEST_DELAY_SECONDS have passed (0: one per notification). Any number of
workers may run: e-mails are leased with FOR UPDATE SKIP LOCKED, users composed under a lock.
SIGTERM/SIGINT: stop claiming, finish the request in flight, hand the rest of the batch back, exit 0.
"""
from __future__ import annotations

import logging
import os
import random
import secrets
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg

from . import email_outbox as outbox
from .email_client import EmailApiClient, Outcome, backoff_delay
from .email_outbox import Delivery
from .outbox_worker import DB_ERRORS, OutboxWorker

log = logging.getLogger(__name__)

PREFIX = "notifications_api"
# Kept free at the end of a lease (a tenth of it, at most this): a request is only started while
# it can finish, and its outcome be recorded, inside the lease.
MAX_LEASE_MARGIN_SECONDS = 5.0
# A Retry-After longer than this (a misconfigured or hostile server) is read as this.
MAX_RETRY_AFTER_SECONDS = 3600.0
QUEUE_STATUSES = ("pending", "due", "sending", "failed", "dead")


class WorkerSetupError(Exception):
    """The worker cannot start (configuration, privileges, missing migrations)."""


@dataclass(frozen=True)
class WorkerSettings:
    email_api_url: str
    email_api_key: str = ""
    max_attempts: int = 8  # EMAIL_MAX_ATTEMPTS
    digest_delay_seconds: int = 600  # EMAIL_DIGEST_DELAY_SECONDS (0: one e-mail per notification, v1)
    batch_size: int = 50
    lease_seconds: int = 60
    poll_interval: float = 2.0
    connect_timeout: float = 5.0
    read_timeout: float = 10.0
    retry_base: float = 2.0  # backoff: uniform(0, min(retry_cap, retry_base * 2**(attempt-1)))
    retry_cap: float = 3600.0
    stats_interval: float = 15.0  # how often the queue gauges are refreshed
    prepare_threshold: int | None = 5  # DB_PREPARE_THRESHOLD: None behind PgBouncer's transaction pooling

    @property
    def lease_margin(self) -> float:
        return min(MAX_LEASE_MARGIN_SECONDS, self.lease_seconds / 10)

    def problems(self) -> list[str]:
        found = []
        if not self.email_api_url:
            found.append("EMAIL_API_URL is not set: there is no Email API to deliver to")
        elif not self.email_api_url.startswith(("http://", "https://")):
            found.append("EMAIL_API_URL must be an http:// or https:// URL")
        if not 1 <= self.batch_size <= 1000:
            found.append("--batch-size must be between 1 and 1000")
        if not 1 <= self.lease_seconds <= 3600:
            found.append("--lease-seconds must be between 1 and 3600")
        elif self.lease_seconds <= self.connect_timeout + self.read_timeout + self.lease_margin:
            found.append(f"--lease-seconds must exceed the connect and read timeouts plus a margin "
                         f"({self.connect_timeout:g} + {self.read_timeout:g} + {self.lease_margin:g} s)")
        if not 0 <= self.digest_delay_seconds <= 7 * 24 * 3600:
            found.append("EMAIL_DIGEST_DELAY_SECONDS must be between 0 and 604800")
        if self.poll_interval <= 0:
            found.append("--poll-interval must be positive")
        if self.connect_timeout <= 0 or self.read_timeout <= 0:
            found.append("timeouts must be positive")
        return found


class WorkerMetrics:
    """The worker's Prometheus metrics, in their own registry (served by --metrics-port)."""

    def __init__(self, registry: Any = None) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.sent = Counter(f"{PREFIX}_emails_sent", "E-mails the Email API accepted.", registry=r)
        self.retried = Counter(f"{PREFIX}_emails_retried",
                               "Send attempts that failed transiently and were scheduled again.", registry=r)
        self.dead = Counter(f"{PREFIX}_emails_dead", "Deliveries given up after EMAIL_MAX_ATTEMPTS.",
                            registry=r)
        self.failed = Counter(f"{PREFIX}_emails_failed",
                              "Deliveries the Email API refused for good (4xx other than 429).", registry=r)
        self.per_email = Histogram(f"{PREFIX}_email_notifications_per_email",
                                   "Notifications in each e-mail the Email API accepted (1: not a digest).",
                                   registry=r, buckets=(1, 2, 3, 5, 10, 20, 50, 100, 1000))
        self.send_seconds = Histogram(f"{PREFIX}_email_send_duration_seconds",
                                      "Duration of one request to the Email API.", registry=r,
                                      buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0))
        self.queue = Gauge(f"{PREFIX}_email_queue_deliveries",
                           "Outbox rows by status (pending includes deferred rows; due: pending, due now).",
                           ("status",), registry=r)
        self.oldest_due = Gauge(f"{PREFIX}_email_queue_oldest_due_age_seconds",
                                "How long the oldest due pending delivery has waited (0: none).", registry=r)
        self.heartbeat = Gauge(f"{PREFIX}_email_worker_last_poll_timestamp_seconds",
                               "When this worker last polled the outbox (stuck worker: it stops moving).",
                               registry=r)

        for status in QUEUE_STATUSES:  # every series exists (at 0) from the start
            self.queue.labels(status)

    def record_stats(self, stats: outbox.QueueStats) -> None:
        for status in QUEUE_STATUSES:
            self.queue.labels(status).set(getattr(stats, status))
        self.oldest_due.set(stats.oldest_due_age_seconds)


def worker_name() -> str:
    """Unique per process (the lease owner): host, pid and a random suffix."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


class EmailWorker(OutboxWorker):
    """One worker: a database connection, an Email API client, the loop."""

    OUTBOX = outbox
    APPLICATION_NAME = "notifications-email-worker"
    RECORD_LOST = ("could not record a delivery outcome; its lease will expire and it is sent again with "
                   "the same idempotency key")
    STATS_LOST = "could not read the queue statistics"
    KIND = "e-mail"
    EVENT = "email"

    def __init__(self, conninfo: str, settings: WorkerSettings, *, name: str | None = None,
                 client: EmailApiClient | None = None, metrics: WorkerMetrics | None = None,
                 rng: random.Random | None = None,
                 before_send: Callable[[Delivery], None] | None = None) -> None:
        self.conninfo = conninfo
        self.settings = settings
        self.name = name or worker_name()
        self.client = client or EmailApiClient(settings.email_api_url, settings.email_api_key,
                                               settings.connect_timeout, settings.read_timeout)
        self.metrics = metrics or WorkerMetrics()
        self.rng = rng or random.Random()
        self.before_send = before_send  # test hook
        super().__init__()

    def check(self) -> None:
        """Connect and make sure this role may run the worker; WorkerSetupError otherwise."""
        try:
            allowed = self._db(outbox.can_claim)
        except psycopg.errors.UndefinedFunction:
            raise WorkerSetupError(
                "the outbox functions are missing: run `notifications-api migrate`") from None
        except DB_ERRORS as exc:
            raise WorkerSetupError(f"cannot connect to the database: {str(exc).strip()}") from None
        if not allowed:
            user = self._db(lambda conn: conn.execute("SELECT current_user").fetchone()[0])
            raise WorkerSetupError(
                f"database role {user!r} may not run the e-mail worker: connect as a member of "
                "notifications_worker (WORKER_DATABASE_URL; `provision_worker_user` in db/admin.py)")

    def _claim(self) -> list[Delivery]:
        s = self.settings
        return self._db(outbox.claim, self.name, s.batch_size, s.lease_seconds, s.max_attempts,
                        s.digest_delay_seconds)

    def _started_fields(self) -> dict[str, Any]:
        return {"batch_size": self.settings.batch_size, "lease_seconds": self.settings.lease_seconds}

    # --- one batch ---------------------------------------------------------------------------------

    def _deliver(self, batch: list[Delivery]) -> int:
        s = self.settings
        # a request is started only while it can end before the lease does
        deadline = time.monotonic() + s.lease_seconds - s.connect_timeout - s.read_timeout - s.lease_margin
        handled = 0
        for delivery in batch:
            if self.stopping:
                break  # run()'s shutdown releases the rest
            if time.monotonic() > deadline:
                released = self._record_call(outbox.release, self.name)  # None: the leases expire anyway
                log.info("lease running out; released the rest of the batch", extra={
                    "event": "email_batch_released", "worker": self.name, "released": released})
                break
            if self.before_send:
                self.before_send(delivery)
            started = time.perf_counter()
            outcome = self.client.send(delivery)
            self.metrics.send_seconds.observe(time.perf_counter() - started)
            self._record(delivery, outcome, time.perf_counter() - started)
            handled += 1
        return handled

    def _record(self, delivery: Delivery, outcome: Outcome, seconds: float) -> None:
        s = self.settings
        fields = {"worker": self.name, "delivery_id": str(delivery.delivery_id),
                  "notification_id": str(delivery.notification_id), "user_id": str(delivery.user_id),
                  "attempt": delivery.attempts, "status": outcome.status,
                  "duration_ms": round(seconds * 1000, 1)}
        if outcome.status is None:
            fields["error"] = outcome.error  # network-level: no response body, no address in it
        if outcome.kind == "sent":
            if self._record_call(outbox.complete, delivery, self.name):
                count = len(delivery.notification_ids) or 1
                self.metrics.sent.inc()
                self.metrics.per_email.observe(count)
                log.info("e-mail sent", extra={"event": "email_sent", **fields})
                if len(delivery.notification_ids) > 1 or self.settings.digest_delay_seconds:
                    log.info("e-mail digest sent", extra={
                        "event": "email_digest_sent", "worker": self.name, "user_id": str(delivery.user_id),
                        "delivery_id": str(delivery.delivery_id), "count": count})
            else:
                log.warning("e-mail sent after the lease was lost",
                            extra={"event": "email_lease_lost", **fields})
        elif outcome.kind == "failed":
            if self._record_call(outbox.fail, delivery, self.name, outcome.error):
                self.metrics.failed.inc()
                log.warning("e-mail refused by the Email API", extra={"event": "email_failed", **fields})
        else:
            delay = backoff_delay(delivery.attempts, s.retry_base, s.retry_cap, self.rng)
            if outcome.retry_after is not None:  # honoured: never earlier than the server asked
                delay = max(delay, min(outcome.retry_after, MAX_RETRY_AFTER_SECONDS))
            status = self._record_call(outbox.retry, delivery, self.name, outcome.error or "error",
                                       delay, s.max_attempts)
            if status == "dead":
                self.metrics.dead.inc()
                log.error("e-mail given up", extra={"event": "email_dead", **fields})
            elif status == "pending":
                self.metrics.retried.inc()
                log.info("e-mail will be retried", extra={
                    "event": "email_retry", "retry_in_seconds": round(delay, 3), **fields})


# --- the command ---------------------------------------------------------------------------------

def single_process_metrics() -> None:
    """The worker serves its own registry: never write PROMETHEUS_MULTIPROC_DIR files (the image sets it)."""
    os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
    from prometheus_client import values

    values.ValueClass = values.MutexValue


def serve(conninfo: str, settings: WorkerSettings, *, once: bool = False, metrics_port: int = 0,
          metrics_addr: str = "0.0.0.0") -> int:
    """`notifications-api deliver-emails`: check, install signal handlers, run. Returns the exit code."""
    problems = settings.problems()
    if problems:
        raise WorkerSetupError("; ".join(problems))
    single_process_metrics()
    worker = EmailWorker(conninfo, settings)
    worker.check()
    if metrics_port:
        from prometheus_client import start_http_server

        start_http_server(metrics_port, addr=metrics_addr, registry=worker.metrics.registry)
        log.info("metrics served", extra={"event": "email_worker_metrics", "port": metrics_port})

    def on_signal(signum, frame):
        if worker.stopping:  # a second signal: give up the request in flight (its lease expires)
            raise KeyboardInterrupt
        log.info("stopping after the request in flight", extra={
            "event": "email_worker_stopping", "worker": worker.name, "signal": signal.Signals(signum).name})
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
