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
from . import edge, ratelimit
from .config import load_config

log = logging.getLogger(__name__)
REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._-]{1,128}$")


def create_app(overrides: Mapping[str, Any] | None = None) -> Flask:
    """The one wiring point. `overrides` are typed config values (tests)."""
    config = load_config(overrides)
    app = Flask(__name__, static_folder=None)
    app.config.update(config)
    logs.configure(config)
    errors.init_app(app)
    db.init_app(app)
    metrics.init_app(app)
    _init_request_hooks(app)
    edge.init_app(app)  # after the request hooks: its after_request runs before theirs
    ratelimit.init_app(app)  # after edge: a 429 it substitutes still gets the CORS headers
    _register_blueprints(app, config["API_V1_PREFIX"])
    openapi.init_app(app)
    return app


def _register_blueprints(app: Flask, prefix: str) -> None:
    from .views import health, internal, notifications, settings
    app.register_blueprint(health.bp)
    # settings before notifications so /notifications/settings never reads as an id
    app.register_blueprint(settings.bp, url_prefix=prefix)
    app.register_blueprint(notifications.bp, url_prefix=prefix)
    app.register_blueprint(internal.bp, url_prefix=prefix)


def _init_request_hooks(app: Flask) -> None:
    @app.before_request
    def start_request():
        g.started = time.perf_counter()
        incoming = request.headers.get("X-Request-ID", "")
        g.request_id = incoming if REQUEST_ID_RE.match(incoming) else str(uuid.uuid4())

    @app.after_request
    def finish_request(response):
        headers = response.headers
        headers["X-Request-ID"] = g.get("request_id") or str(uuid.uuid4())
        headers["X-Content-Type-Options"] = "nosniff"
        headers["Cache-Control"] = "private, no-cache" if "ETag" in headers else "no-store"
        if response.status_code in (204, 304) or (request.method == "OPTIONS" and not response.data):
            headers.pop("Content-Type", None)  # no body, no media type
        duration_ms = round((time.perf_counter() - g.get("started", time.perf_counter())) * 1000, 2)
        log.info("request", extra={
            "method": request.method,
            "route": request.url_rule.rule if request.url_rule else None,
            "status": response.status_code,
            "duration_ms": duration_ms,
            "request_id": headers["X-Request-ID"],
            "user_id": g.get("user_id"),
        })
        return response
