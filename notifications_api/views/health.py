"""Health checks for load balancers and orchestrators (not under the API prefix)."""
from __future__ import annotations

from flask import Blueprint, current_app

from ..db import get_db
from ..responses import json_response

bp = Blueprint("health", __name__)

HEALTH_DB_TIMEOUT = 2.0


@bp.get("/health")
def health():
    checks = {"api": "ok", "database": "ok" if get_db().ping(HEALTH_DB_TIMEOUT) else "error"}
    storage_check = current_app.extensions.get("rate_limit_storage_check")
    if storage_check is not None:
        checks["rate_limit_storage"] = "ok" if storage_check() else "degraded"
    healthy = checks["database"] == "ok"
    return json_response({"status": "ok" if healthy else "error", "checks": checks},
                         status=200 if healthy else 503)


@bp.get("/health/live")
def live():
    return json_response({"status": "ok"})
