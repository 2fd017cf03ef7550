"""The stream clock: changes that only time makes (a snooze ending, an expiry) pushed to the
streams within 60 s. Runs as `notifications-api stream-clock` (its own small process; any number
of replicas is safe: sp_advance_clocks hands each due user to one caller, SKIP LOCKED)."""
from __future__ import annotations

import logging
import threading

from ..db import store
from ..db.pool import Database
from ..errors import ApiError
from .publisher import Publisher

log = logging.getLogger(__name__)

INTERVAL_SECONDS = 15.0  # well inside API.md's 60 s, at one cheap indexed call per tick
BATCH = 1000  # users folded per call at most
BATCH_MS = 1000  # and for at most about this long: far below the role's 5 s statement_timeout


def tick(database: Database, publisher: Publisher, batch: int = BATCH,
         stop: threading.Event | None = None) -> int:
    """Fold every due clock change and publish the new counts; the number of users published.
    Calls again while a call folded anyone: a due user whose counts did not change (a read
    notification expiring) is folded but not published, and must not end the tick."""
    total = 0
    while stop is None or not stop.is_set():
        rows = store.advance_clocks(database, batch, BATCH_MS)
        changed = [row for row in rows if row["changed"]]
        if changed:
            publisher.publish_counts(changed)
        total += len(changed)
        if not rows:
            break
    return total


def run(database: Database, publisher: Publisher, stop: threading.Event,
        interval: float = INTERVAL_SECONDS) -> None:
    """tick() every `interval` seconds until `stop` is set; a database outage only skips ticks."""
    while not stop.is_set():
        try:
            count = tick(database, publisher, stop=stop)
            if count:
                log.info("clock changes published", extra={"event": "stream_clock", "user_count": count})
        except ApiError as exc:
            log.warning("stream clock tick failed", extra={"event": "stream_clock_failed", "code": exc.code})
        stop.wait(interval)
