"""Notifications API: in-app notifications for the activity platform."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import Flask

from .web import access_log, cors, headers, openapi, proxy, ratelimit
from .db import pool as db
from .db import replica
from . import errors, logs
from .live import publisher
from .config import load_config


def create_app(overrides: Mapping[str, Any] | None = None) -> Flask:
    """The one wiring point. `overrides` are typed config values (tests)."""
    config = load_config(overrides)
    app = Flask(__name__, static_folder=None)
    app.config.update(config)
    logs.configure(config)
    errors.init_app(app)
    db.init_app(app)
    replica.init_app(app)  # a read pool on the standbys when DATABASE_READ_URL is set
    publisher.init_app(app)  # live updates to Pushpin (no thread until the first event)
    from .views import metrics  # (views are imported once the app is built: bench/layers.py)
    metrics.init_app(app)  # its timer is the first before_request hook, its after_request the last
    # after_request hooks run last-registered first: the rate-limit headers, then web/headers.py's,
    # then CORS's, then the log line (which sees the response as sent), then metrics.
    access_log.init_app(app)
    proxy.init_app(app)
    cors.init_app(app)
    headers.init_app(app)
    ratelimit.init_app(app)
    _register_blueprints(app, config["API_V1_PREFIX"])
    openapi.init_app(app)
    return app


def _register_blueprints(app: Flask, prefix: str) -> None:
    from .views import health, index, notifications, push, retractions, settings, stream, ui
    app.register_blueprint(index.bp)
    app.register_blueprint(health.bp)
    ui.init_app(app)  # /ui/: the web inbox's files (and, with ENABLE_UI_DEMO, its demo page)
    # In any order: /notifications/settings, /stream, /groups... never read as a notification id (the
    # uuid converter; and Werkzeug tries literal path parts before variables whatever the order).
    for resource in (notifications, retractions, settings, stream, push):
        app.register_blueprint(resource.bp, url_prefix=prefix)
