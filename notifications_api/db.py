"""The connection pool and the one way the app talks to PostgreSQL: stored-function calls."""
from __future__ import annotations

import logging
import re
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
# 40001 serialization_failure, 40P01 deadlock_detected: PostgreSQL rolled the transaction back. A
# call is one autocommit transaction, so running it again is safe: once. (Not the rest of class 40:
# 40003 statement_completion_unknown may have committed. In psycopg both are OperationalErrors.)
ROLLED_BACK = (psycopg.errors.SerializationFailure, psycopg.errors.DeadlockDetected)
# Class 22 (data exception) primary messages quote the offending input ("invalid input syntax for
# type uuid: \"...\""): a parameter value, which never goes into a log line.
_QUOTED = re.compile(r'"[^"]*"')
# ... and these SQLSTATEs whatever their class: 25006 read_only_sql_transaction is the answer of
# a primary that was demoted (or fenced read-only) during a failover.
UNAVAILABLE_SQLSTATES = {"25006": "read_only"}
SHUTDOWN_SQLSTATES = {"57P01": "server_shutdown", "57P02": "server_shutdown", "57P03": "server_starting"}


def _idle_check(conn: psycopg.Connection) -> None:
    """Checkout check that costs no round trip for a busy connection.

    A connection the server has closed (restart, terminated backend) has data or EOF
    waiting on its socket; only then, or after a long idle spell, do we ping.
    """
    idle = time.monotonic() - getattr(conn, "nt_used_at", 0.0)
    # poll, not select: select() raises for descriptors >= 1024 (FD_SETSIZE), which a worker
    # holding many keep-alive sockets reaches.
    poller = select.poll()
    poller.register(conn.pgconn.socket, select.POLLIN)
    if poller.poll(0) or idle > IDLE_CHECK_SECONDS:
        ConnectionPool.check_connection(conn)


def _read_only_server(conn: psycopg.Connection) -> bool:
    """The server said (ParameterStatus, PostgreSQL 14+) it is a standby or refuses writes.

    A demoted primary (a failover's old node back as a standby, or fenced read-only) must
    never receive a write: its connections are discarded, not reused. No round trip.
    """
    pgconn = conn.pgconn
    return (pgconn.parameter_status(b"in_hot_standby") == b"on"
            or pgconn.parameter_status(b"default_transaction_read_only") == b"on")


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
    # The session settings come from the login role (ALTER ROLE ... SET, see admin.py and
    # deploy/postgres/roles.sql), never from the libpq `options` parameter, which PgBouncer
    # refuses. TimeZone and DateStyle are reported at connect time: checking them costs nothing.
    timezone = conn.info.parameter_status("TimeZone")
    datestyle = conn.info.parameter_status("DateStyle") or ""
    if timezone not in ("UTC", "Etc/UTC") or not datestyle.startswith("ISO"):
        log.warning("database session settings differ from the login role's expected ones", extra={
            "event": "database_session_settings", "timezone": timezone, "datestyle": datestyle})


class Database:
    """One pool per process, opened after fork (gunicorn post_worker_init) or on first use."""

    def __init__(self, config: dict[str, Any]):
        self.timeout = config["DB_POOL_TIMEOUT"]
        self.pool = ConnectionPool(
            config["DATABASE_CONNINFO"],
            open=False,
            min_size=config["DB_POOL_MIN_SIZE"],
            max_size=config["DB_POOL_MAX_SIZE"],
            timeout=self.timeout,
            check=self._checkout_check,
            # A lost connection is re-opened by a retry chain that backs off 1, 2, 4, 8 s...: after
            # a 10 s failover the pool would wait seconds more before trying the new primary. Chains
            # end after one pool timeout instead; then each waiting request starts a fresh attempt.
            reconnect_timeout=max(self.timeout, 1.0),
            # No `reset` hook: with one, psycopg_pool hands every returned connection to a
            # worker thread (a queue hop and a context switch per request, and a connection
            # that is not back in the pool when the next request asks). The last-use time
            # the check needs is stamped in call() instead.
            configure=_configure,
            name="notifications",
            kwargs={
                "autocommit": True,  # one function call = one transaction = one round trip
                "prepare_threshold": config["DB_PREPARE_THRESHOLD"],
                "connect_timeout": max(1, int(self.timeout)),
                "application_name": "notifications-api",
            },
        )
        self._opened = False
        self._failing_until = 0.0
        self._connect_errors_seen = 0
        self._lock = threading.Lock()
        self.observers: list[Callable[[str, float], None]] = []
        # (event, label, value): ("unavailable", reason, 1), ("discarded", reason, 1),
        # ("recovered", "", seconds the outage lasted). metrics.py turns them into series.
        self.event_observers: list[Callable[[str, str, float], None]] = []
        self._outage_since = 0.0
        self._checkout = threading.local()  # failed checks during this thread's current checkout

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
        self._checkout.failed = 0
        try:
            try:
                rows = self._execute(query, params, wait)
            except ROLLED_BACK as exc:
                log.info("database call rolled back; retrying once", extra={
                    "event": "database_retry", "function": function, "sqlstate": exc.sqlstate})
                rows = self._execute(query, params, wait)
            if self._outage_since:
                self._recovered()
            self._failing_until = 0.0
            return rows
        except (psycopg.Error, PoolTimeout) as exc:
            # during an outage, a pool timeout is one more sign of it (not saturation)
            outage = _unavailable(exc) and (
                self._is_outage(exc) or (isinstance(exc, PoolTimeout) and wait == FAST_FAIL_SECONDS))
            reason = _unavailable_reason(exc, outage)
            error = _map_error(function, exc, reason)
            if error.status == 503:
                self._notify("unavailable", reason, 1.0)
                if outage:
                    self._failing_until = time.monotonic() + OUTAGE_MEMORY_SECONDS
                    self._outage_since = self._outage_since or time.monotonic()
            raise error from exc
        finally:
            elapsed = time.perf_counter() - started
            for observe in self.observers:
                observe(function, elapsed)

    def _execute(self, query: str, params: Sequence[Any] | dict[str, Any], wait: float) -> list[tuple]:
        with self.pool.connection(timeout=wait) as conn:
            try:
                return conn.execute(query, params).fetchall()
            except psycopg.Error as exc:
                self._discard_if_unusable(conn, exc)
                raise
            finally:
                conn.nt_used_at = time.monotonic()  # read by _idle_check at the next checkout

    def _is_outage(self, exc: Exception) -> bool:
        """The database is unreachable (not merely slow or busy): connections fail."""
        if isinstance(exc, (psycopg.errors.QueryCanceled, *ROLLED_BACK)):
            return False  # a statement timeout, a serialization failure, a deadlock: the database answers
        if isinstance(exc, PoolTimeout):
            # A full pool of healthy connections (saturation) is not an outage; failed
            # connection attempts since the last look are.
            errors = self.pool.get_stats().get("connections_errors", 0)
            outage, self._connect_errors_seen = errors > self._connect_errors_seen, errors
            return outage
        return True

    # -- failover: what a switch looks like from here --------------------------------------

    def _checkout_check(self, conn: psycopg.Connection) -> None:
        """The pool's check: a dead connection, or one to a server that went read-only, is closed
        so the pool drops it and hands out (or opens) another; target_session_attrs finds the primary.

        Only the first failed check of a checkout asks the pool for another connection: after two,
        psycopg_pool backs off for up to the whole timeout again (past DB_POOL_TIMEOUT). From the
        second on (a failover: every pooled connection is dead) the closed connection is handed out,
        and the call fails at once: a 503.
        """
        if _read_only_server(conn):
            self._discard(conn, "read_only")
        else:
            try:
                _idle_check(conn)
                return
            except psycopg.Error:
                self._discard(conn, "broken")
        failed = getattr(self._checkout, "failed", 0)
        self._checkout.failed = failed + 1
        if not failed:
            raise psycopg.OperationalError("pooled connection unusable")

    def _discard_if_unusable(self, conn: psycopg.Connection, exc: psycopg.Error) -> None:
        """After a failed call: a connection to a demoted node is closed (the pool replaces it)."""
        if conn.closed:
            return  # discarded by the checkout check already
        if conn.broken:
            self._discard(conn, "broken")
        elif getattr(exc, "sqlstate", None) in UNAVAILABLE_SQLSTATES or _read_only_server(conn):
            self._discard(conn, "read_only")

    def _discard(self, conn: psycopg.Connection, reason: str) -> None:
        log.warning("pool discarding a connection", extra={
            "event": "database_connection_discarded", "reason": reason})
        self._notify("discarded", reason, 1.0)
        conn.close()

    def _recovered(self) -> None:
        with self._lock:
            since, self._outage_since = self._outage_since, 0.0
        if since:
            seconds = time.monotonic() - since
            log.warning("database available again", extra={
                "event": "database_recovered", "outage_seconds": round(seconds, 3)})
            self._notify("recovered", "", seconds)

    def _notify(self, event: str, label: str, value: float) -> None:
        for observe in self.event_observers:
            try:
                observe(event, label, value)
            except Exception:  # metrics never turn a database answer into a 500
                log.exception("a database event observer failed")

    def ping(self, timeout: float = 2.0) -> bool:
        try:
            self.call("health", "SELECT 1", (), timeout=timeout)
            return True
        except ApiError:
            return False


def _unavailable(exc: Exception) -> bool:
    return isinstance(exc, UNAVAILABLE) or getattr(exc, "sqlstate", None) in UNAVAILABLE_SQLSTATES


def _unavailable_reason(exc: Exception, outage: bool) -> str:
    """Why the database could not serve a call, for the 503's log line and metric label."""
    sqlstate = getattr(exc, "sqlstate", None)
    if sqlstate in UNAVAILABLE_SQLSTATES:
        return UNAVAILABLE_SQLSTATES[sqlstate]
    if sqlstate in SHUTDOWN_SQLSTATES:
        return SHUTDOWN_SQLSTATES[sqlstate]
    if isinstance(exc, psycopg.errors.QueryCanceled):
        return "statement_timeout"
    if isinstance(exc, PoolTimeout):
        return "no_connection" if outage else "pool_saturated"
    return "connection_lost"


def _map_error(function: str, exc: Exception, reason: str | None = None) -> ApiError:
    sqlstate = getattr(exc, "sqlstate", None)
    if sqlstate in FUNCTION_ERRORS:
        status, code, detail = FUNCTION_ERRORS[sqlstate]
        return ApiError(status, code, detail)
    if sqlstate == "NA422":
        field = exc.diag.message_detail or "_schema"
        message = exc.diag.message_primary or "Invalid value."
        return ApiError(422, "validation_error", f"{field}: {message}", errors={field: [message]})
    fields = {"event": "database_exception", "function": function, "error": type(exc).__name__,
              "sqlstate": sqlstate, "db_message": _primary_message(exc, sqlstate)}
    if _unavailable(exc):
        log.warning("database unavailable", extra={**fields, "reason": reason})
        return ApiError(503, "database_unavailable", "The database is unavailable; retry shortly.",
                        headers={"Retry-After": RETRY_AFTER})
    log.error("database error", extra=fields)
    return ApiError(500, "internal_error", "An unexpected error occurred; it has been logged.")


def _primary_message(exc: Exception, sqlstate: str | None) -> str | None:
    """The server's primary message (never its DETAIL, which may hold row values), inputs redacted."""
    diag = getattr(exc, "diag", None)
    message = diag.message_primary if diag is not None else None
    if message and sqlstate and sqlstate.startswith("22"):
        message = _QUOTED.sub('"…"', message)
    return message


def get_db() -> Database:
    return current_app.extensions[EXTENSION]


def init_app(app: Flask) -> None:
    app.extensions[EXTENSION] = Database(app.config)
