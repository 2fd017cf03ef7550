"""A worker's memory of a database outage: fail fast while it lasts, and how long it lasted."""
from __future__ import annotations

import threading
import time

# After the database failed a call, later calls wait at most FAST_FAIL_SECONDS for a connection
# (instead of DB_POOL_TIMEOUT) until one succeeds or OUTAGE_MEMORY_SECONDS pass: during an outage
# threads are not parked on the pool, so requests queued behind them do not wait twice.
FAST_FAIL_SECONDS = 0.25
OUTAGE_MEMORY_SECONDS = 1.0


class Outage:
    def __init__(self) -> None:
        self.failing_until = 0.0
        self._since = 0.0
        self._lock = threading.Lock()

    def wait(self, wait: float) -> float:
        """How long a call may wait for a connection: `wait`, or FAST_FAIL_SECONDS during an outage."""
        if self.failing_until and time.monotonic() < self.failing_until:
            return min(wait, FAST_FAIL_SECONDS)
        return wait

    def failed(self) -> None:
        """A call failed because the database is unreachable."""
        self.failing_until = time.monotonic() + OUTAGE_MEMORY_SECONDS
        self._since = self._since or time.monotonic()

    def succeeded(self) -> float | None:
        """A call succeeded: the seconds since the outage began, if this success ended one."""
        self.failing_until = 0.0
        if not self._since:
            return None
        with self._lock:
            since, self._since = self._since, 0.0
        return time.monotonic() - since if since else None
