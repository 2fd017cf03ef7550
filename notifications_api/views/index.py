"""GET /: where to go from the service's root (the API, health, and the docs when they are on)."""
from __future__ import annotations

from flask import Blueprint, current_app

from ..web import openapi
from ..web.responses import json_response
from ..web.schemas import IndexSchema

bp = Blueprint("index", __name__)

EXAMPLE = {"name": "Notifications API",
           "links": {"api": "/api/v1/notifications", "health": "/health", "docs": "/docs",
                     "openapi": "/openapi.json"}}


@bp.get("/")
@openapi.doc(
    "getIndex", "Where to start: links to the API, health and (when on) the docs", tag="operations",
    security=[],
    description="`links.docs` and `links.openapi` are present only where Swagger UI and the document are "
                "served (ENABLE_DOCS; off in production, where the contract is the repository's "
                "docs/openapi.json). Not a health check: use `/health`.",
    responses={200: openapi.ok("The service's entry points.", IndexSchema, EXAMPLE)})
def index():
    config = current_app.config
    links = {"api": f"{config['API_V1_PREFIX']}/notifications", "health": "/health"}
    if config["ENABLE_DOCS"]:
        links.update(docs=openapi.DOCS_URL, openapi=openapi.SPEC_URL)
    return json_response({"name": config["PROJECT_NAME"], "links": links})
