"""Prometheus metrics: request and stored-function latency, pool state, errors, rate limits, creations.

Under gunicorn every worker writes to PROMETHEUS_MULTIPROC_DIR and GET /metrics aggregates
all of them; without that variable (tests, `flask run`) the default in-process registry is used.
ops/gunicorn_conf.py calls `gunicorn_on_starting` and `gunicorn_child_exit`.
"""
from __future__ import annotations

import logging
import os
import shutil
import threading
import time
from dataclasses import dataclass, field
from typing import Any


log = logging.getLogger(__name__)

EXTENSION = "notifications_metrics"
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
PREFIX = "notifications_api"
# Around the 200 ms p95 target, so the alert's histogram_quantile() has resolution there.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0, 2.5, 5.0, 10.0)
POOL_REFRESH_SECONDS = 5.0
OUTAGE_BUCKETS = (0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0)
MAX_NOTIFICATION_TYPES = 200  # label values per process; more go to "other" (bounded cardinality)
UNMATCHED_ROUTE = "<unmatched>"
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# Known label values, created at start-up so the series exist (as 0) before the first event
# (the stored functions' names come from the app: preload_functions).
# Inbox state changes by action (endpoints 3, 3b, 4, 5, 10, 11, 11b, 13): a fixed set of labels.
ACTIONS = ("seen", "read", "unread", "archive", "unarchive", "delete", "snooze", "wake", "retract")
PROBLEM_CODES = (
    "invalid_json", "bad_request", "uri_too_long", "header_too_large",
    "missing_token", "invalid_token", "token_expired", "user_not_found",
    "invalid_service_token", "user_inactive", "service_token_required", "not_found",
    "notification_not_found", "method_not_allowed", "payload_too_large", "unsupported_media_type",
    "validation_error", "rate_limited", "database_unavailable", "internal_error",
    "notification_snoozed", "notification_archived",
)


class _Metrics:
    """The process's metric objects (built once, on first use: importing this module has no effects)."""

    def __init__(self) -> None:
        from prometheus_client import Counter, Gauge, Histogram

        # prometheus_client picks file-backed values when it is first imported, from this variable:
        # ops/gunicorn_conf.py sets it before any worker imports prometheus_client.
        self.multiprocess = bool(os.environ.get(MULTIPROC_ENV))
        if self.multiprocess:  # outside gunicorn (flask run, a CLI command) nobody created it
            os.makedirs(os.environ[MULTIPROC_ENV], exist_ok=True)
        self.requests = Histogram(
            f"{PREFIX}_http_request_duration_seconds", "HTTP request latency by route template.",
            ("route", "method", "status"), buckets=LATENCY_BUCKETS)
        self.functions = Histogram(
            f"{PREFIX}_db_function_duration_seconds",
            "Stored-function call latency, pool wait included.", ("function",), buckets=LATENCY_BUCKETS)
        self.errors = Counter(f"{PREFIX}_errors_total", "Problem documents sent, by problem code.",
                              ("code",))
        self.rate_limited = Counter(f"{PREFIX}_rate_limited_total", "Requests rejected by a rate limit.")
        self.created = Counter(f"{PREFIX}_notifications_created_total",
                               "Notifications created, by notification type.", ("notification_type",))
        self.changed = Counter(f"{PREFIX}_notifications_changed_total",
                               "Notifications whose state an action changed, by action.", ("action",))
        # livesum: the sum over the workers that are alive (a dead worker's files are removed).
        self.pool_size = Gauge(f"{PREFIX}_db_pool_size", "Open connections in the pools.",
                               multiprocess_mode="livesum")
        self.pool_max = Gauge(f"{PREFIX}_db_pool_max_size", "Maximum connections of the pools.",
                              multiprocess_mode="livesum")
        self.pool_in_use = Gauge(f"{PREFIX}_db_pool_in_use", "Connections checked out right now.",
                                 multiprocess_mode="livesum")
        self.pool_waiting = Gauge(f"{PREFIX}_db_pool_waiting", "Requests waiting for a connection.",
                                  multiprocess_mode="livesum")
        self.stream_dropped = Counter(f"{PREFIX}_stream_publish_dropped_total",
                                      "Live-update events not published (queue full, Pushpin down).")
        self.pool_timeouts = Counter(f"{PREFIX}_db_pool_timeouts_total",
                                     "Connection requests that failed (timed out or queue full).")
        # Failover and outages (db.Database.event_observers): why calls got a 503, connections the
        # pool threw away (e.g. to a demoted primary), and how long each outage lasted.
        self.db_unavailable = Counter(f"{PREFIX}_db_unavailable_total",
                                      "Stored-function calls answered 503, by reason.", ("reason",))
        self.db_discarded = Counter(f"{PREFIX}_db_connections_discarded_total",
                                    "Pooled connections discarded, by reason (read_only: a demoted node).",
                                    ("reason",))
        self.db_outages = Histogram(
            f"{PREFIX}_db_outage_seconds",
            "From the first failed call of an outage to the next success, per worker.",
            buckets=OUTAGE_BUCKETS)
        # Reads on standbys (db/replica.py): who answered each routable read and why; skips; lag.
        self.db_reads = Counter(f"{PREFIX}_db_reads_total",
                                "Routable reads by target (standby, primary) and reason (replayed: the "
                                "standby had it; own_write, version, fold, missing, conflict, lag, "
                                "down, floor_unknown, not_standby: why the primary answered).",
                                ("target", "reason"))
        self.replica_skips = Counter(f"{PREFIX}_db_replica_skips_total",
                                     "Times a standby was skipped for a while, by reason (lag, down).",
                                     ("reason",))
        self.replica_lag = Gauge(f"{PREFIX}_db_replica_lag_seconds",
                                 "How long the standby's oldest received, unreplayed WAL has waited "
                                 "(or since its WAL receiver went missing).",
                                 multiprocess_mode="livemostrecent")
        self._reads: dict[tuple[str, str], Any] = {}
        # Label children cached here: a dict lookup per event instead of labels() validation.
        self._lock = threading.Lock()
        self._requests: dict[tuple[str, str, int], Any] = {}
        self._functions: dict[str, Any] = {}
        self._errors = {code: self.errors.labels(code) for code in PROBLEM_CODES}
        self._created: dict[str, Any] = {}
        self._changed = {action: self.changed.labels(action) for action in ACTIONS}

    def request_child(self, route: str, method: str, status: int):
        child = self._requests.get((route, method, status))
        return child if child is not None else self._add(
            self._requests, (route, method, status), self.requests, route, method, str(status))

    def function_child(self, function: str):
        child = self._functions.get(function)
        return child if child is not None else self._add(self._functions, function, self.functions, function)

    def error_child(self, code: str):
        child = self._errors.get(code)
        return child if child is not None else self._add(self._errors, code, self.errors, code)

    def created_child(self, notification_type: str):
        child = self._created.get(notification_type)
        if child is None:
            with self._lock:
                label = notification_type if len(self._created) < MAX_NOTIFICATION_TYPES else "other"
                child = self._created.setdefault(label, self.created.labels(label))
        return child

    def _add(self, cache: dict, key: Any, metric: Any, *labels: str):
        """The label child for `key`, made once and shared by the threads."""
        with self._lock:
            return cache.setdefault(key, metric.labels(*labels))


_metrics: _Metrics | None = None
_metrics_lock = threading.Lock()


def get_metrics() -> _Metrics:
    global _metrics
    if _metrics is None:
        with _metrics_lock:
            if _metrics is None:
                _metrics = _Metrics()
    return _metrics


# --- Called by other modules -------------------------------------------------------------------

def preload_functions(names) -> None:
    """Create the stored-function latency series for these names now, so they exist (as 0) at start."""
    metrics = get_metrics()
    for name in names:
        metrics.function_child(name)


def record_rate_limited() -> None:
    """Count one request rejected by a rate limit (called by the rate-limit handler)."""
    get_metrics().rate_limited.inc()


def record_notifications_created(notification_type: str, count: int) -> None:
    """Count `count` notifications created with this type (after sp_create_notification)."""
    if count:
        get_metrics().created_child(notification_type).inc(count)


def record_notifications_changed(action: str, count: int) -> None:
    """Count `count` notifications whose state `action` (one of ACTIONS) changed."""
    if count:
        get_metrics()._changed[action].inc(count)


def record_stream_publish_dropped(count: int) -> None:
    """Count live-update events the publisher dropped (live/publisher.py)."""
    get_metrics().stream_dropped.inc(count)


def observe_function(function: str, seconds: float) -> None:
    """Database.observers callback: one stored-function call took `seconds`."""
    get_metrics().function_child(function).observe(seconds)


def observe_database_event(event: str, label: str, value: float) -> None:
    """Database.event_observers callback: a 503's reason, a discarded connection, a recovery."""
    metrics = get_metrics()
    if event == "unavailable":
        metrics.db_unavailable.labels(label).inc(value)
    elif event == "discarded":
        metrics.db_discarded.labels(label).inc(value)
    elif event == "recovered":
        metrics.db_outages.observe(value)


def observe_replica_event(event: str, value: Any) -> None:
    """Replica.observers callback: ("standby"|"primary", reason) per read, ("skipped", reason),
    ("lag", seconds)."""
    metrics = get_metrics()
    if event == "lag":
        metrics.replica_lag.set(value)
    elif event == "skipped":
        metrics.replica_skips.labels(value).inc()
    else:
        child = metrics._reads.get((event, value))
        if child is None:
            child = metrics._add(metrics._reads, (event, value), metrics.db_reads, event, value)
        child.inc()


def preload_replica(reasons) -> None:
    """Create the read-routing series (as 0) at start-up when standbys are configured."""
    metrics = get_metrics()
    for reason in reasons:
        target = "standby" if reason == "replayed" else "primary"
        if (target, reason) not in metrics._reads:
            metrics._add(metrics._reads, (target, reason), metrics.db_reads, target, reason)
    for reason in ("lag", "down"):
        metrics.replica_skips.labels(reason)


# --- Pool gauges ---------------------------------------------------------------------------------

@dataclass
class PoolState:
    database: Any
    errors_seen: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    refresher_pid: int | None = None


def refresh_pool(state: PoolState) -> None:
    """Copy this process's pool statistics into the gauges (and new failed requests into the counter)."""
    metrics = get_metrics()
    pool = state.database.pool
    stats = pool.get_stats()
    if pool.closed:  # not opened yet in this process: nothing is connected or in use
        size = available = waiting = 0
    else:
        size, available, waiting = stats["pool_size"], stats["pool_available"], stats["requests_waiting"]
    metrics.pool_size.set(size)
    metrics.pool_max.set(stats["pool_max"])
    metrics.pool_in_use.set(max(size - available, 0))
    metrics.pool_waiting.set(waiting)
    errors = stats.get("requests_errors", 0)
    with state.lock:
        if errors > state.errors_seen:
            metrics.pool_timeouts.inc(errors - state.errors_seen)
        state.errors_seen = max(errors, state.errors_seen)


def _refresh_forever(state: PoolState) -> None:
    while True:
        try:
            refresh_pool(state)
        except Exception:  # never let a metrics problem kill the thread or the worker
            log.exception("refreshing the pool metrics failed")
        time.sleep(POOL_REFRESH_SECONDS)


def ensure_refresher(state: PoolState) -> None:
    """Multiprocess: each worker keeps its own gauges fresh, since a scrape is served by one worker."""
    pid = os.getpid()
    if state.refresher_pid != pid:
        with state.lock:
            if state.refresher_pid != pid:
                state.refresher_pid = pid
                threading.Thread(target=_refresh_forever, args=(state,), name="pool-metrics",
                                 daemon=True).start()


# --- gunicorn hooks (called from gunicorn.conf.py) -----------------------------------------------

def gunicorn_on_starting(server) -> None:
    """Create PROMETHEUS_MULTIPROC_DIR, or empty it: stale files would resurrect old workers' counts."""
    directory = os.environ.get(MULTIPROC_ENV)
    if not directory:
        return
    os.makedirs(directory, exist_ok=True)
    for entry in os.scandir(directory):
        if entry.is_dir(follow_symlinks=False):
            shutil.rmtree(entry.path, ignore_errors=True)
        else:
            os.unlink(entry.path)


def gunicorn_child_exit(server, worker) -> None:
    """Drop a dead worker's live gauges (its counters and histograms stay in the totals)."""
    if os.environ.get(MULTIPROC_ENV):
        from prometheus_client import multiprocess
        multiprocess.mark_process_dead(worker.pid)
