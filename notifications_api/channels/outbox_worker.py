"""What every outbox worker shares (e-mail, push): its one database connection, recording an outcome
through a dropped connection, the queue statistics, and a stop flag safe from a signal handler."""
from __future__ import annotations

import logging
import time
from collections.abc import Callable
from types import ModuleType
from typing import Any

import psycopg

RECORD_TRIES = 3
DB_ERRORS = (psycopg.OperationalError, psycopg.InterfaceError)


class OutboxWorker:
    """A subclass names its outbox module (with `stats(conn)`), its connection's application_name,
    and what to log when an outcome or the statistics cannot be recorded; it sets conninfo, settings
    (prepare_threshold, stats_interval), name and metrics (record_stats) before calling __init__."""

    OUTBOX: ModuleType
    APPLICATION_NAME: str
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
