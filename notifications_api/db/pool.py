"""The connection pool and the one way the app talks to PostgreSQL: stored-function calls."""
from __future__ import annotations

import logging
import select
import threading
import time
from collections.abc import Iterable, Sequence
from typing import Any, Callable

import psycopg
from flask import Flask, current_app
from psycopg_pool import ConnectionPool, PoolTimeout

from . import failures, rows
from ..errors import ApiError
from .outage import FAST_FAIL_SECONDS, Outage

log = logging.getLogger(__name__)

EXTENSION = "notifications_db"
IDLE_CHECK_SECONDS = 30.0
# After a checkout found a dead connection and the idle ones were swept: how often the checkout
# looks whether the pool has a connection ready again, or has failed to open one.
REPLACEMENT_POLL_SECONDS = 0.005


def _idle_check(conn: psycopg.Connection) -> None:
    """Checkout check that costs no round trip for a busy connection.

    A connection the server has closed (restart, terminated backend) has data or EOF
    waiting on its socket; only then, or after a long idle spell, do we ping.
    """
    idle = time.monotonic() - getattr(conn, "nt_used_at", 0.0)
    if _readable(conn) or idle > IDLE_CHECK_SECONDS:
        ConnectionPool.check_connection(conn)


def _readable(conn: psycopg.Connection) -> bool:
    """Data or EOF waiting on the socket of an idle connection: the server closed it (restart,
    terminated backend) or has something to say (a reported parameter, e.g. read-only now)."""
    # poll, not select: select() raises for descriptors >= 1024 (FD_SETSIZE), which a worker
    # holding many keep-alive sockets reaches.
    poller = select.poll()
    poller.register(conn.pgconn.socket, select.POLLIN)
    return bool(poller.poll(0))


def _read_only_server(conn: psycopg.Connection) -> bool:
    """The server said (ParameterStatus, PostgreSQL 14+) it is a standby or refuses writes.

    A demoted primary (a failover's old node back as a standby, or fenced read-only) must
    never receive a write: its connections are discarded, not reused. No round trip.
    """
    pgconn = conn.pgconn
    return (pgconn.parameter_status(b"in_hot_standby") == b"on"
            or pgconn.parameter_status(b"default_transaction_read_only") == b"on")


class SweepingPool(ConnectionPool):
    """psycopg_pool's pool, whose check() tests each idle connection with `sweep_check` (when given)
    instead of a round trip each. Database runs check() to sweep the idle connections at once when
    a checkout found a dead one (Database._checkout_check)."""

    def __init__(self, *args: Any, sweep_check: Callable[[psycopg.Connection], None] | None = None,
                 **kwargs: Any):
        self._sweep_check = sweep_check or ConnectionPool.check_connection
        super().__init__(*args, **kwargs)

    def check_connection(self, conn: psycopg.Connection) -> None:  # type: ignore[override]
        self._sweep_check(conn)


def make_pool(config: dict[str, Any], conninfo: str, *, timeout: float,
              check: Callable[[psycopg.Connection], None], configure: Callable[[psycopg.Connection], None],
              name: str, connect_timeout: int, application_name: str,
              sweep_check: Callable[[psycopg.Connection], None] | None = None) -> ConnectionPool:
    """A pool of autocommit connections, closed until opened in the worker (the primary's, and
    db/replica.py's read pool)."""
    return SweepingPool(
        conninfo,
        sweep_check=sweep_check,
        open=False,
        min_size=1 if config["DB_POOL_MIN_SIZE"] is None else config["DB_POOL_MIN_SIZE"],
        max_size=config["DB_POOL_MAX_SIZE"],
        timeout=timeout,
        check=check,
        # A lost connection is re-opened by a retry chain that backs off 1, 2, 4, 8 s...: after
        # a 10 s failover the pool would wait seconds more before trying the new primary. Chains
        # end after one pool timeout instead; then each waiting request starts a fresh attempt.
        reconnect_timeout=max(config["DB_POOL_TIMEOUT"], 1.0),
        # No `reset` hook: with one, psycopg_pool hands every returned connection to a
        # worker thread (a queue hop and a context switch per request, and a connection
        # that is not back in the pool when the next request asks). The last-use time
        # the check needs is stamped in call() instead.
        configure=configure,
        name=name,
        kwargs={
            "autocommit": True,  # one function call = one transaction = one round trip
            "prepare_threshold": config["DB_PREPARE_THRESHOLD"],
            "connect_timeout": connect_timeout,
            "application_name": application_name,
        },
    )


def keep_open(pool: ConnectionPool, size: int) -> None:
    """DB_POOL_MIN_SIZE's automatic value (unset): keep `size` connections open, never past the
    pool's max_size. The pool must be open: psycopg_pool's resize() starts the connections at once."""
    size = min(size, pool.max_size)
    if size > pool.min_size:
        pool.resize(size, pool.max_size)


def wait_ready(pools: Sequence[ConnectionPool], within: float) -> bool:
    """Until every pool holds its min_size connections ready (True), or a connection attempt failed
    (the database is down: the caller goes on, the pools retry in the background), or `within`
    seconds passed. Not pool.wait(): that closes the pool when it times out."""
    return _wait(pools, time.monotonic() + within,
                 lambda stats: stats.get("pool_available", 0) >= stats.get("pool_min", 0), errors_before=0)


def _wait(pools: Sequence[ConnectionPool], deadline: float, ready: Callable[[dict[str, int]], bool],
          errors_before: int) -> bool:
    """Poll the pools' stats until every one is `ready` (True), or until one more connection attempt
    than `errors_before` has failed, or `deadline` passes (False). Polled: psycopg_pool wakes no one
    when opening a connection fails."""
    while True:
        stats = [pool.get_stats() for pool in pools]
        if all(ready(s) for s in stats):
            return True
        if (sum(s.get("connections_errors", 0) for s in stats) > errors_before
                or time.monotonic() >= deadline):
            return False
        time.sleep(REPLACEMENT_POLL_SECONDS)


class Database:
    """One pool per process, opened after fork (gunicorn post_worker_init) or on first use."""

    def __init__(self, config: dict[str, Any]):
        self.timeout = config["DB_POOL_TIMEOUT"]
        self.auto_min_size = config["DB_POOL_MIN_SIZE"] is None
        self.pool = make_pool(config, config["DATABASE_CONNINFO"], timeout=self.timeout,
                              check=self._checkout_check, configure=rows.configure, name="notifications",
                              connect_timeout=max(1, int(self.timeout)), application_name="notifications-api",
                              sweep_check=self._sweep_check)
        self._opened = False
        self.outage = Outage()
        self._connect_errors_seen = 0
        self._lock = threading.Lock()
        self.observers: list[Callable[[str, float], None]] = []
        # (event, label, value): ("unavailable", reason, 1), ("discarded", reason, 1),
        # ("recovered", "", seconds the outage lasted). metrics.py turns them into series.
        self.event_observers: list[Callable[[str, str, float], None]] = []
        # this thread's current checkout: its failed checks, and until when it may wait
        self._checkout = threading.local()
        self.replica: Any = None  # db/replica.py's Replica when DATABASE_READ_URL is set

    def read(self, function: str, query: str, params: Sequence[Any], user_id: str,
             stale: Callable[[list[tuple]], bool] | None = None) -> list[tuple]:
        """A read-only call about one user, which a standby may answer (db/replica.py) unless
        `stale(rows)` says its answer is older than the caller knows. The primary's without standbys."""
        if self.replica is None:
            return self.call(function, query, params)
        return self.replica.read(function, query, params, user_id, stale)

    def write(self, function: str, query: str, params: Sequence[Any] | dict[str, Any],
              user_ids: Iterable[Any] | Callable[[list[tuple]], Iterable[Any]]) -> list[tuple]:
        """A call that changes these users' data (or `user_ids(rows)`'s): with standbys, their next
        reads wait for a standby that has replayed it."""
        rows = self.call(function, query, params)
        if self.replica is not None:
            self.replica.wrote(user_ids(rows) if callable(user_ids) else user_ids)
        return rows

    def open(self, working_size: int | None = None, within: float = 0.0) -> bool:
        """Open the pool (and the read pool). `working_size`: the connections the caller's threads
        use at once (gunicorn's post_worker_init: threads + 1); with DB_POOL_MIN_SIZE unset the pools
        keep that many open. Then wait up to `within` seconds for them (wait_ready): True when ready."""
        with self._lock:
            if not self._opened:
                self.pool.open(wait=False)
                self._opened = True
                if working_size is not None and self.auto_min_size:
                    keep_open(self.pool, working_size)
        if self.replica is not None:
            self.replica.open(working_size if self.auto_min_size else None)
        if within <= 0:
            return False
        return wait_ready([self.pool] + ([self.replica.pool] if self.replica is not None else []), within)

    def close(self) -> None:
        with self._lock:
            if self._opened:
                self.pool.close(timeout=5)
                self._opened = False
        if self.replica is not None:
            self.replica.close()

    def call(self, function: str, query: str, params: Sequence[Any] | dict[str, Any],
             timeout: float | None = None) -> list[tuple]:
        """Run one stored-function call and return its rows, mapping failures to ApiErrors."""
        if not self._opened:
            self.open()
        started = time.perf_counter()
        wait = self.outage.wait(timeout or self.timeout)
        self._checkout.failed = 0
        try:
            try:
                rows = self._execute(query, params, wait)
            except failures.ROLLED_BACK as exc:
                log.info("database call rolled back; retrying once", extra={
                    "event": "database_retry", "function": function, "sqlstate": exc.sqlstate})
                rows = self._execute(query, params, wait)
            outage_seconds = self.outage.succeeded()
            if outage_seconds is not None:
                self._recovered(outage_seconds)
            return rows
        except (psycopg.Error, PoolTimeout) as exc:
            # during an outage, a pool timeout is one more sign of it (not saturation)
            outage = failures.unavailable(exc) and (
                self._is_outage(exc) or (isinstance(exc, PoolTimeout) and wait == FAST_FAIL_SECONDS))
            reason = failures.unavailable_reason(exc, outage)
            error = failures.api_error(exc)
            if error.status >= 500:
                _log_failure(function, exc, error.status, reason)
            if error.status == 503:
                self._notify("unavailable", reason, 1.0)
                if outage:
                    self.outage.failed()
            raise error from exc
        finally:
            elapsed = time.perf_counter() - started
            for observe in self.observers:
                observe(function, elapsed)

    def _execute(self, query: str, params: Sequence[Any] | dict[str, Any], wait: float) -> list[tuple]:
        self._checkout.deadline = time.monotonic() + wait  # read by _replaced during the checkout
        with self.pool.connection(timeout=wait) as conn:
            self._checkout.deadline = None
            try:
                return conn.execute(query, params).fetchall()
            except psycopg.Error as exc:
                self._discard_if_unusable(conn, exc)
                raise
            finally:
                conn.nt_used_at = time.monotonic()  # read by _idle_check at the next checkout

    def _is_outage(self, exc: Exception) -> bool:
        """The database is unreachable (not merely slow or busy): connections fail."""
        if isinstance(exc, (psycopg.errors.QueryCanceled, *failures.ROLLED_BACK)):
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

        A dead connection says the server closed it, and a server that restarted (or an operator who
        terminated the app's sessions) closed every idle one with it: handed out one after another,
        the second would fail the call, since psycopg_pool sleeps a second and more after a
        checkout's second failed check. So the first failed check of a checkout sweeps the idle
        connections at once (_sweep_check: no round trip for a quiet one; the pool replaces the
        dead), waits until the pool has a connection ready, and asks for it. When the pool fails to
        open one meanwhile (an outage) or the checkout's time is up, and from a second failed check
        on, the closed connection is handed out and the call fails at once: a 503.
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
        if not failed and self._replaced():
            raise psycopg.OperationalError("pooled connection unusable")

    def _replaced(self) -> bool:
        """Sweep the idle connections, then wait for a connection ready in the pool: True when there
        is one; False at once when the pool failed to connect meanwhile, or at the checkout's deadline.
        With nothing idle there is nothing to sweep: True, and the checkout waits for the pool to
        replace this connection (which it starts when the check has failed).

        Polled: psycopg_pool wakes a waiting checkout when a connection arrives, never when opening
        one failed. pool.check() holds the pool's lock only to take the idle connections out; the
        checkout's own connection is not among them, and no lock is held while this runs."""
        stats = self.pool.get_stats()
        if not stats.get("pool_available", 0):
            return True
        errors = stats.get("connections_errors", 0)
        self.pool.check()
        deadline = getattr(self._checkout, "deadline", None) or time.monotonic() + self.timeout
        return _wait([self.pool], deadline, lambda stats: stats.get("pool_available", 0) > 0, errors)

    def _sweep_check(self, conn: psycopg.Connection) -> None:
        """pool.check()'s test of an idle connection: a quiet socket passes with no round trip; one
        with data or EOF waiting is pinged (a closed one fails at once), and dropped when dead or on
        a server gone read-only. A check that raises makes the pool open a replacement."""
        try:
            if _readable(conn):
                ConnectionPool.check_connection(conn)
        except psycopg.Error:
            self._discard(conn, "broken")
            raise
        if _read_only_server(conn):
            self._discard(conn, "read_only")
            raise psycopg.OperationalError("pooled connection to a read-only server")

    def _discard_if_unusable(self, conn: psycopg.Connection, exc: psycopg.Error) -> None:
        """After a failed call: a connection to a demoted node is closed (the pool replaces it)."""
        if conn.closed:
            return  # discarded by the checkout check already
        if conn.broken:
            self._discard(conn, "broken")
        elif getattr(exc, "sqlstate", None) in failures.UNAVAILABLE_SQLSTATES or _read_only_server(conn):
            self._discard(conn, "read_only")

    def _discard(self, conn: psycopg.Connection, reason: str) -> None:
        log.warning("pool discarding a connection", extra={
            "event": "database_connection_discarded", "reason": reason})
        self._notify("discarded", reason, 1.0)
        conn.close()

    def _recovered(self, seconds: float) -> None:
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


def _log_failure(function: str, exc: Exception, status: int, reason: str) -> None:
    """A 503's or a 500's log line (a stored function's own 4xx is no failure of ours)."""
    sqlstate = getattr(exc, "sqlstate", None)
    fields = {"event": "database_exception", "function": function, "error": type(exc).__name__,
              "sqlstate": sqlstate, "db_message": failures.primary_message(exc)}
    if status == 503:
        log.warning("database unavailable", extra={**fields, "reason": reason})
    else:
        log.error("database error", extra=fields)


def get_db() -> Database:
    return current_app.extensions[EXTENSION]


def init_app(app: Flask) -> None:
    app.extensions[EXTENSION] = Database(app.config)
