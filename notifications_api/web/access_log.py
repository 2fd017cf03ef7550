"""One JSON log line per request: its id (X-Request-ID in, or a new one), route, status and duration."""
from __future__ import annotations

import logging
import re
import time
import uuid

from flask import Flask, Response, g, request

from . import http_limits

log = logging.getLogger(__name__)
REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._-]{1,128}$")
MAX_LOGGED_PATH = 512  # a 404's path in its log line, cut here (a scanner's 4 KB path is not worth keeping)


def init_app(app: Flask) -> None:
    """Register before any other after_request hook of ours: after_request hooks run last-registered
    first, so the line is written after every header is set."""
    app.before_request(start_request)
    app.after_request(log_request)


def start_request() -> None:
    g.started = time.perf_counter()
    incoming = request.environ.get("HTTP_X_REQUEST_ID")  # (the environ: no exception on a miss)
    g.request_id = incoming if incoming and REQUEST_ID_RE.match(incoming) else str(uuid.uuid4())
    # 414/431 before every other check (routing, credentials, rate limits). Here, not in a hook of
    # its own: one hook fewer per request (measured with bench/instructions.py).
    http_limits.check_request_size(request.environ)


def log_request(response: Response) -> Response:
    req, state = request._get_current_object(), g._get_current_object()
    status = response.status_code
    started = getattr(state, "started", None)
    duration_ms = round((time.perf_counter() - started) * 1000, 2) if started is not None else 0.0
    rule = req.url_rule
    line = {
        "method": req.method,
        "route": rule.rule if rule is not None else None,
        "status": status,
        "duration_ms": duration_ms,
        "request_id": getattr(state, "request_id", None),  # (headers.py made one if none was set)
        "user_id": getattr(state, "user_id", None),
    }
    if status == 404:  # no route (or an unknown id): the path says what was asked for
        line["path"] = req.path[:MAX_LOGGED_PATH]
    service = getattr(state, "service", None)
    if service is not None:  # which service token called: "service" or "service-previous-token"
        line["service"] = service
    log.info("request", extra=line)
    return response
