"""The connection pool and the one way the app talks to PostgreSQL: stored-function calls."""
from __future__ import annotations

import logging
import select
import threading
import time
from collections.abc import Sequence
from typing import Any, Callable

import psycopg
from flask import Flask, current_app
from psycopg.adapt import Loader
from psycopg.types.datetime import TimestamptzLoader
from psycopg_pool import ConnectionPool, PoolTimeout

from .errors import ApiError
from .schemas import format_timestamp

log = logging.getLogger(__name__)

EXTENSION = "notifications_db"
IDLE_CHECK_SECONDS = 30.0
RETRY_AFTER = "2"
# After the database failed a call, later calls wait at most FAST_FAIL_SECONDS for a connection
# (instead of DB_POOL_TIMEOUT) until one succeeds or OUTAGE_MEMORY_SECONDS pass: during an outage
# threads are not parked on the pool, so requests queued behind them do not wait twice.
FAST_FAIL_SECONDS = 0.25
OUTAGE_MEMORY_SECONDS = 1.0

# SQLSTATEs raised by the stored functions (migrations_sql) -> (status, code).
FUNCTION_ERRORS = {
    "NA401": (401, "user_not_found", "The token's user does not exist."),
    "NA403": (403, "user_inactive", "The token's user is inactive."),
    "NA404": (404, "notification_not_found", "No such notification."),
    "NAS09": (409, "notification_snoozed", "The notification is snoozed; wake it first."),
    "NAA09": (409, "notification_archived", "The notification is archived."),
}
# Failures that mean "the database cannot serve this now": 503, never 500.
UNAVAILABLE = (PoolTimeout, psycopg.OperationalError, psycopg.InterfaceError)


def _idle_check(conn: psycopg.Connection) -> None:
    """Checkout check that costs no round trip for a busy connection.

    A connection the server has closed (restart, terminated backend) has data or EOF
    waiting on its socket; only then, or after a long idle spell, do we ping.
    """
    idle = time.monotonic() - getattr(conn, "nt_used_at", 0.0)
    readable, _, _ = select.select([conn.pgconn.socket], [], [], 0)
    if readable or idle > IDLE_CHECK_SECONDS:
        ConnectionPool.check_connection(conn)


class _UuidAsText(Loader):
    """uuid columns arrive as their canonical text: every one of them ends up in JSON anyway."""

    def load(self, data) -> str:
        return bytes(data).decode()


class _TimestamptzAsApiText(Loader):
    """timestamptz columns arrive as the API's text, RFC 3339 in UTC with microseconds and a Z.

    Every one of them ends up in JSON: reshaping PostgreSQL's text ("2026-11-26 08:31:35.168+00",
    the sessions run with TimeZone=UTC and DateStyle=ISO) costs a fraction of parsing it into a
    datetime and formatting that again, the largest per-item cost of a list page. Anything else
    (another DateStyle, a year past 9999) goes the long way, with the same result.
    """

    def __init__(self, oid: int, context=None):
        super().__init__(oid, context)
        self._fallback = TimestamptzLoader(oid, context)

    def load(self, data) -> str | None:
        text = bytes(data).decode()
        if len(text) >= 22 and text[4] == "-" and text[10] == " " and text.endswith("+00"):
            fraction = text[19:-3]  # "" or ".1" to ".123456"
            return f"{text[:10]}T{text[11:19]}{(fraction or '.').ljust(7, '0')}Z"
        return format_timestamp(self._fallback.load(data))


def _configure(conn: psycopg.Connection) -> None:
    conn.adapters.register_loader("uuid", _UuidAsText)
    conn.adapters.register_loader("timestamptz", _TimestamptzAsApiText)


class Database:
    """One pool per process, opened after fork (gunicorn post_worker_init) or on first use."""

    def __init__(self, config: dict[str, Any]):
        self.timeout = config["DB_POOL_TIMEOUT"]
        options = f"-c timezone=UTC -c datestyle=ISO -c statement_timeout={config['DB_STATEMENT_TIMEOUT_MS']}"
        self.pool = ConnectionPool(
            config["DATABASE_CONNINFO"],
            open=False,
            min_size=config["DB_POOL_MIN_SIZE"],
            max_size=config["DB_POOL_MAX_SIZE"],
            timeout=self.timeout,
            check=_idle_check,
            # No `reset` hook: with one, psycopg_pool hands every returned connection to a
            # worker thread (a queue hop and a context switch per request, and a connection
            # that is not back in the pool when the next request asks). The last-use time
            # the check needs is stamped in call() instead.
            configure=_configure,
            name="notifications",
            kwargs={
                "autocommit": True,  # one function call = one transaction = one round trip
                "prepare_threshold": config["DB_PREPARE_THRESHOLD"],
                "options": options,
                "connect_timeout": max(1, int(self.timeout)),
                "application_name": "notifications-api",
            },
        )
        self._opened = False
        self._failing_until = 0.0
        self._connect_errors_seen = 0
        self._lock = threading.Lock()
        self.observers: list[Callable[[str, float], None]] = []

    def open(self) -> None:
        with self._lock:
            if not self._opened:
                self.pool.open(wait=False)
                self._opened = True

    def close(self) -> None:
        with self._lock:
            if self._opened:
                self.pool.close(timeout=5)
                self._opened = False

    def call(self, function: str, query: str, params: Sequence[Any] | dict[str, Any],
             timeout: float | None = None) -> list[tuple]:
        """Run one stored-function call and return its rows, mapping failures to ApiErrors."""
        if not self._opened:
            self.open()
        started = time.perf_counter()
        wait = timeout or self.timeout
        if self._failing_until and time.monotonic() < self._failing_until:
            wait = min(wait, FAST_FAIL_SECONDS)
        try:
            with self.pool.connection(timeout=wait) as conn:
                try:
                    rows = conn.execute(query, params).fetchall()
                finally:
                    conn.nt_used_at = time.monotonic()  # read by _idle_check at the next checkout
            self._failing_until = 0.0
            return rows
        except (psycopg.Error, PoolTimeout) as exc:
            error = _map_error(function, exc)
            if error.status == 503 and self._is_outage(exc):
                self._failing_until = time.monotonic() + OUTAGE_MEMORY_SECONDS
            raise error from exc
        finally:
            elapsed = time.perf_counter() - started
            for observe in self.observers:
                observe(function, elapsed)

    def _is_outage(self, exc: Exception) -> bool:
        """The database is unreachable (not merely slow or busy): connections fail."""
        if isinstance(exc, psycopg.errors.QueryCanceled):
            return False  # a statement timeout: the database answers
        if isinstance(exc, PoolTimeout):
            # A full pool of healthy connections (saturation) is not an outage; failed
            # connection attempts since the last look are.
            errors = self.pool.get_stats().get("connections_errors", 0)
            outage, self._connect_errors_seen = errors > self._connect_errors_seen, errors
            return outage
        return True

    def ping(self, timeout: float = 2.0) -> bool:
        try:
            self.call("health", "SELECT 1", (), timeout=timeout)
            return True
        except ApiError:
            return False


def _map_error(function: str, exc: Exception) -> ApiError:
    sqlstate = getattr(exc, "sqlstate", None)
    if sqlstate in FUNCTION_ERRORS:
        status, code, detail = FUNCTION_ERRORS[sqlstate]
        return ApiError(status, code, detail)
    if sqlstate == "NA422":
        field = exc.diag.message_detail or "_schema"
        message = exc.diag.message_primary or "Invalid value."
        return ApiError(422, "validation_error", f"{field}: {message}", errors={field: [message]})
    if isinstance(exc, UNAVAILABLE):
        log.warning("database unavailable", extra={
            "event": "database_exception", "function": function,
            "error": type(exc).__name__, "sqlstate": sqlstate})
        return ApiError(503, "database_unavailable", "The database is unavailable; retry shortly.",
                        headers={"Retry-After": RETRY_AFTER})
    log.error("database error", extra={
        "event": "database_exception", "function": function,
        "error": type(exc).__name__, "sqlstate": sqlstate})
    return ApiError(500, "internal_error", "An unexpected error occurred; it has been logged.")


def get_db() -> Database:
    return current_app.extensions[EXTENSION]


def init_app(app: Flask) -> None:
    app.extensions[EXTENSION] = Database(app.config)
