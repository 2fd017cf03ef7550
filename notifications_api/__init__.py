"""Notifications API: in-app notifications for the activity platform."""
from __future__ import annotations

import logging
import time
import re
import uuid
from collections.abc import Mapping
from typing import Any

from flask import Flask, g, request

from . import db, errors, logs, metrics
from . import openapi
from . import edge, http_limits, publisher, ratelimit
from .config import load_config

log = logging.getLogger(__name__)
REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._-]{1,128}$")
MAX_LOGGED_PATH = 512  # a 404's path in its log line, cut here (a scanner's 4 KB path is not worth keeping)


def create_app(overrides: Mapping[str, Any] | None = None) -> Flask:
    """The one wiring point. `overrides` are typed config values (tests)."""
    config = load_config(overrides)
    app = Flask(__name__, static_folder=None)
    app.config.update(config)
    logs.configure(config)
    errors.init_app(app)
    db.init_app(app)
    publisher.init_app(app)  # live updates to Pushpin (no thread until the first event)
    metrics.init_app(app)
    _init_request_hooks(app)
    edge.init_app(app)  # after the request hooks: its after_request runs before theirs
    ratelimit.init_app(app)  # after edge: its RateLimit-* hook runs before edge's CORS one
    _register_blueprints(app, config["API_V1_PREFIX"])
    openapi.init_app(app)
    return app


def _register_blueprints(app: Flask, prefix: str) -> None:
    from .views import health, internal, notifications, settings, stream
    app.register_blueprint(health.bp)
    # settings before notifications so /notifications/settings never reads as an id
    app.register_blueprint(settings.bp, url_prefix=prefix)
    # stream before notifications: /notifications/stream is not a notification id either
    app.register_blueprint(stream.bp, url_prefix=prefix)
    app.register_blueprint(notifications.bp, url_prefix=prefix)
    app.register_blueprint(internal.bp, url_prefix=prefix)


def _init_request_hooks(app: Flask) -> None:
    @app.before_request
    def start_request():
        g.started = time.perf_counter()
        incoming = request.environ.get("HTTP_X_REQUEST_ID")  # (the environ: no exception on a miss)
        g.request_id = incoming if incoming and REQUEST_ID_RE.match(incoming) else str(uuid.uuid4())
        # 414/431 before every other check (routing, credentials, rate limits). Here, not in a hook of
        # its own: one hook fewer per request (measured with bench/instructions.py).
        http_limits.check_request_size(request.environ)

    @app.after_request
    def finish_request(response):
        req, state = request._get_current_object(), g._get_current_object()
        headers = response.headers
        request_id = getattr(state, "request_id", None) or str(uuid.uuid4())
        status = response.status_code
        # One pass over the headers instead of `in` (werkzeug raises and catches on a miss); a
        # header nobody set yet is added (set() scans for an old value), one Flask set (a static
        # file's Cache-Control) is replaced.
        present = {key.lower() for key, _ in headers}
        cache = "private, no-cache" if "etag" in present else "no-store"
        for name, value in (("X-Request-ID", request_id), ("X-Content-Type-Options", "nosniff"),
                            ("Cache-Control", cache)):
            if name.lower() in present:
                headers[name] = value
            else:
                headers.add(name, value)
        if status in (204, 304) or (req.method == "OPTIONS" and not response.data):
            headers.pop("Content-Type", None)  # no body, no media type
        started = getattr(state, "started", None)
        duration_ms = round((time.perf_counter() - started) * 1000, 2) if started is not None else 0.0
        rule = req.url_rule
        line = {
            "method": req.method,
            "route": rule.rule if rule is not None else None,
            "status": status,
            "duration_ms": duration_ms,
            "request_id": request_id,
            "user_id": getattr(state, "user_id", None),
        }
        if status == 404:  # no route (or an unknown id): the path says what was asked for
            line["path"] = req.path[:MAX_LOGGED_PATH]
        service = getattr(state, "service", None)
        if service is not None:  # which service token called: "service" or "service-previous-token"
            line["service"] = service
        log.info("request", extra=line)
        return response
