"""GET /metrics (Prometheus) and the hooks that feed it: request timing, problem codes, stored-function
latency and database events (the metric objects themselves are notifications_api/metrics.py)."""
from __future__ import annotations

import hmac
import time

from flask import Blueprint, Flask, Response, current_app, g, request

from ..db.grants import API_FUNCTIONS
from ..db.pool import EXTENSION as DB_EXTENSION
from ..db.replica import REASONS
from ..errors import ApiError
from ..metrics import (EXTENSION, METHODS, UNMATCHED_ROUTE, ensure_refresher, get_metrics, PoolState,
                       observe_database_event, observe_function, observe_replica_event, preload_functions,
                       preload_replica, refresh_pool)
from ..web.auth import bearer_token

bp = Blueprint("metrics", __name__)


# --- The endpoint --------------------------------------------------------------------------------

def _authorize(token: str) -> None:
    value = bearer_token()
    if value is None:
        raise ApiError(401, "missing_token", "An Authorization: Bearer <METRICS_TOKEN> header is required.")
    if not hmac.compare_digest(value.encode(), token.encode()):
        raise ApiError(401, "invalid_token", "The metrics token is invalid.")


@bp.get("/metrics")
def metrics() -> Response:
    from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
    from prometheus_client.multiprocess import MultiProcessCollector

    token = current_app.config.get("METRICS_TOKEN")
    if token:
        _authorize(token)
    state: PoolState = current_app.extensions[EXTENSION]
    refresh_pool(state)
    if get_metrics().multiprocess:
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
    else:
        registry = REGISTRY
    return Response(generate_latest(registry), mimetype=None, content_type=CONTENT_TYPE_LATEST)


# --- Wiring --------------------------------------------------------------------------------------

def init_app(app: Flask) -> None:
    """Register /metrics, the request hooks and the stored-function observer."""
    metrics = get_metrics()
    database = app.extensions[DB_EXTENSION]
    state = PoolState(database)
    app.extensions[EXTENSION] = state
    database.observers.append(observe_function)
    database.event_observers.append(observe_database_event)
    if database.replica is not None:
        database.replica.observers.append(observe_replica_event)
        preload_replica(REASONS)
    app.register_blueprint(bp)
    preload_functions(API_FUNCTIONS)  # the ones the API calls (db/grants.py)
    multiprocess = metrics.multiprocess

    def start_timer() -> None:
        g.metrics_started = time.perf_counter()
        if multiprocess:
            ensure_refresher(state)

    def record_request(response: Response) -> Response:
        state = g._get_current_object()  # (each access through the proxy costs a context lookup)
        started = getattr(state, "metrics_started", None)
        if started is not None:
            req = request._get_current_object()
            rule, method = req.url_rule, req.method
            metrics.request_child(rule.rule if rule is not None else UNMATCHED_ROUTE,
                                  method if method in METHODS else "OTHER",
                                  response.status_code).observe(time.perf_counter() - started)
        code = getattr(state, "problem_code", None)
        if code is not None:
            metrics.error_child(code).inc()
        return response

    if multiprocess:  # this worker's pool gauges exist from the start, before its first request
        ensure_refresher(state)
    # First of all before_request hooks, so a request another hook rejects (429, 401) is timed too.
    app.before_request_funcs.setdefault(None, []).insert(0, start_timer)
    app.after_request(record_request)
