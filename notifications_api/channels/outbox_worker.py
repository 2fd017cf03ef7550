"""What every outbox worker shares (e-mail, push): the claim loop, its one database connection,
recording an outcome through a dropped connection, the queue statistics, and a stop flag safe from a
signal handler."""
from __future__ import annotations

import logging
import time
from collections.abc import Callable
from types import ModuleType
from typing import Any

import psycopg

RECORD_TRIES = 3
# The longest pause between two claims while the database is unavailable.
MAX_DB_BACKOFF_SECONDS = 30.0
DB_ERRORS = (psycopg.OperationalError, psycopg.InterfaceError)


class OutboxWorker:
    """The claim loop and what surrounds it. A subclass delivers a leased batch (`_deliver(batch) ->
    handled`), names its outbox module, kind and connection's application_name and what to log when an
    outcome or the statistics cannot be recorded; it sets conninfo, settings (batch_size, lease_seconds,
    max_attempts, poll_interval, prepare_threshold, stats_interval), name and metrics (heartbeat,
    record_stats) before calling __init__."""

    OUTBOX: ModuleType  # claim(conn, worker, batch_size, lease_seconds, max_attempts, ...), release, stats
    APPLICATION_NAME: str
    KIND: str  # "e-mail", "push": in the log messages
    EVENT: str  # "email", "push": the log events <EVENT>_worker_started / _stopped
    RECORD_LOST: str  # logged when an outcome could not be recorded after RECORD_TRIES
    STATS_LOST: str

    def __init__(self) -> None:
        self._log = logging.getLogger(type(self).__module__)  # the lines keep their worker's logger
        self._stopping = False  # a plain flag: set from a signal handler (an Event's lock could deadlock)
        self._conn: psycopg.Connection | None = None
        self._stats_due = 0.0

    # --- lifecycle ---------------------------------------------------------------------------------

    def stop(self) -> None:
        """Ask the loop to stop after the work in flight (safe from a signal handler or thread)."""
        self._stopping = True

    @property
    def stopping(self) -> bool:
        return self._stopping

    def _pause(self, seconds: float) -> None:
        """Sleep, waking within 0.1 s of stop()."""
        end = time.monotonic() + seconds
        while not self._stopping and (left := end - time.monotonic()) > 0:
            time.sleep(min(0.1, left))

    # --- the loop ----------------------------------------------------------------------------------

    def _claim(self) -> list:
        """Lease the next batch (a worker's own claim arguments)."""
        s = self.settings
        return self._db(self.OUTBOX.claim, self.name, s.batch_size, s.lease_seconds, s.max_attempts)

    def _started_fields(self) -> dict[str, Any]:
        return {"batch_size": self.settings.batch_size}

    def run(self, once: bool = False) -> int:
        """Deliver until stopped (once=True: until nothing is due). Returns the deliveries handled."""
        handled = 0
        failures = 0
        self._log.info(f"{self.KIND} worker started", extra={
            "event": f"{self.EVENT}_worker_started", "worker": self.name, "once": once,
            **self._started_fields()})
        try:
            while not self.stopping:
                try:
                    batch = self._claim()
                except DB_ERRORS as exc:
                    if once:
                        raise
                    failures += 1
                    delay = min(MAX_DB_BACKOFF_SECONDS, self.settings.poll_interval * 2 ** min(failures, 10))
                    self._log.warning("database unavailable; retrying", extra={
                        "event": "database_exception", "worker": self.name,
                        "error": type(exc).__name__, "retry_in_seconds": round(delay, 1)})
                    self._pause(delay)
                    continue
                failures = 0
                self.metrics.heartbeat.set_to_current_time()
                self._refresh_stats()
                if batch:
                    handled += self._deliver(batch)
                elif once:
                    break
                else:
                    self._pause(self.settings.poll_interval)
        finally:
            released = self._shutdown()
            self._log.info(f"{self.KIND} worker stopped", extra={
                "event": f"{self.EVENT}_worker_stopped", "worker": self.name, "handled": handled,
                "released": released})
        return handled

    def _shutdown(self) -> int | None:
        """Hand back what this worker still leases (nothing when the batch finished); close."""
        released = None
        try:
            released = self._db(self.OUTBOX.release, self.name)
        except psycopg.Error as exc:  # its leases expire on their own
            self._log.warning(f"could not release leased {self.KIND} deliveries", extra={
                "event": "database_exception", "worker": self.name, "error": type(exc).__name__})
        finally:
            self._close()
        return released

    # --- database ----------------------------------------------------------------------------------

    def _record_call(self, function: Callable[..., Any], *args: Any) -> Any:
        """An outcome must not be lost to a dropped connection: reconnect and try again a few times."""
        for attempt in range(RECORD_TRIES):
            try:
                return self._db(function, *args)
            except DB_ERRORS as exc:
                if attempt == RECORD_TRIES - 1:
                    self._log.error(self.RECORD_LOST, extra={
                        "event": "database_exception", "worker": self.name, "error": type(exc).__name__})
                    return None
                time.sleep(0.2 * 2 ** attempt)
        return None

    def _db(self, function: Callable[..., Any], *args: Any) -> Any:
        if self._conn is None or self._conn.closed:
            # No `options` startup parameter (PgBouncer refuses it): statement_timeout and the other
            # session settings are the worker login's own (db/admin.py, deploy/postgres/roles.sql).
            self._conn = psycopg.connect(
                self.conninfo, autocommit=True, connect_timeout=5,
                prepare_threshold=self.settings.prepare_threshold,
                application_name=self.APPLICATION_NAME)
        try:
            return function(self._conn, *args)
        except DB_ERRORS:
            self._close()
            raise

    def _close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            finally:
                self._conn = None

    def refresh_stats(self):
        stats = self._db(self.OUTBOX.stats)
        self.metrics.record_stats(stats)
        return stats

    def _refresh_stats(self) -> None:
        if time.monotonic() < self._stats_due:
            return
        self._stats_due = time.monotonic() + self.settings.stats_interval
        try:
            self.refresh_stats()
        except psycopg.Error as exc:
            self._log.warning(self.STATS_LOST, extra={
                "event": "database_exception", "worker": self.name, "error": type(exc).__name__})
