"""Health checks for load balancers and orchestrators (not under the API prefix)."""
from __future__ import annotations

from flask import Blueprint, current_app

from ..web import openapi
from ..db.pool import get_db
from ..web.schemas import HealthSchema
from ..web.responses import json_response

bp = Blueprint("health", __name__)

HEALTH_DB_TIMEOUT = 2.0


@bp.get("/health")
@openapi.doc(
    "getHealth", "Readiness: the API and its database", tag="operations", security=[],
    description="The database check waits at most 2 s. Where Redis is configured, "
                "`checks.rate_limit_storage` is `ok` or `degraded` (degraded does not fail the check: "
                "limits fall back to memory). Where standbys are configured (`DATABASE_READ_URL`), "
                "`checks.database_replica` is `ok`, or `degraded` while the standby is skipped (too far "
                "behind, unreachable, no WAL receiver): reads then use the primary, so degraded does not "
                "fail the check either.",
    responses={200: openapi.ok("Healthy.", HealthSchema,
                               {"status": "ok", "checks": {"api": "ok", "database": "ok"}}, headers=()),
               503: openapi.ok("The database check failed (same shape, still application/json).",
                               HealthSchema, {"status": "error",
                                              "checks": {"api": "ok", "database": "error"}}, headers=())})
def health():
    checks = {"api": "ok", "database": "ok" if get_db().ping(HEALTH_DB_TIMEOUT) else "error"}
    replica = get_db().replica
    if replica is not None:
        checks["database_replica"] = "ok" if replica.healthy(HEALTH_DB_TIMEOUT) else "degraded"
    storage_check = current_app.extensions.get("rate_limit_storage_check")
    if storage_check is not None:
        checks["rate_limit_storage"] = "ok" if storage_check() else "degraded"
    healthy = checks["database"] == "ok"
    return json_response({"status": "ok" if healthy else "error", "checks": checks},
                         status=200 if healthy else 503)


@bp.get("/health/live")
@openapi.doc("getLiveness", "Liveness: answers without touching the database", tag="operations", security=[],
             responses={200: openapi.ok("Alive.", HealthSchema, {"status": "ok"}, headers=())})
def live():
    return json_response({"status": "ok"})
