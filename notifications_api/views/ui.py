"""The reference web inbox: `<notification-inbox>`'s files under /ui/ (content-hashed, immutable) and,
with ENABLE_UI_DEMO (development only), the demo page and its two development endpoints."""
from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from importlib import resources
from uuid import UUID

from flask import Blueprint, Flask, Response, abort, current_app, g, request
from marshmallow import Schema, validate

from .. import metrics
from ..db import store
from ..db.pool import get_db
from ..live import publisher
from ..web import openapi, ratelimit
from ..web.auth import issue_token, user_required
from ..web.body import load_body, load_query
from ..web.responses import json_response
from ..web.schemas import CreateResponseSchema, EmptyQuerySchema, Text

UI_ROOT = "/ui"
EXTENSION = "ui_assets"
# Versioned names change with their content: cached for a year, never revalidated.
IMMUTABLE = "public, max-age=31536000, immutable"
# Stable names (what a host page may hard-code, and the service worker, whose URL must not change):
# cached, but revalidated every time (a 304 while the ETag holds).
REVALIDATE = "public, no-cache"
MEDIA_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8",
               ".html": "text/html; charset=utf-8"}
# Files served under a content-hashed name (`notification-inbox.3f9c2a1b7d4e.js`); the component's
# stable name is served too, revalidated. sw.js only under its stable name (a service worker's URL is
# its identity). demo.html is a template, served only as the demo page.
VERSIONED = ("notification-inbox.js", "demo.js", "demo.css")
STABLE = ("notification-inbox.js", "sw.js")
# The demo page loads only its own origin's files and talks only to its own origin.
DEMO_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; "
            "worker-src 'self'; manifest-src 'self'; base-uri 'none'; form-action 'none'; "
            "frame-ancestors 'none'")
HASH_LENGTH = 12

assets_bp = Blueprint("ui_assets", __name__)
demo_bp = Blueprint("ui_demo", __name__)


@dataclass(frozen=True)
class Asset:
    body: bytes
    media_type: str
    etag: str  # the content hash (strong)
    versioned_name: str


class Assets:
    """The files of ui_assets/, read once per app from the package (a wheel ships them as package data)."""

    def __init__(self) -> None:
        folder = resources.files(__package__).joinpath("ui_assets")
        self.by_name: dict[str, Asset] = {}
        self.urls: dict[str, str] = {}
        for name in sorted({*VERSIONED, *STABLE, "demo.html"}):
            body = folder.joinpath(name).read_bytes()
            digest = hashlib.sha256(body).hexdigest()
            stem, _, suffix = name.rpartition(".")
            versioned = f"{stem}.{digest[:HASH_LENGTH]}.{suffix}"
            self.by_name[name] = Asset(body, MEDIA_TYPES["." + suffix], digest[:32], versioned)
            self.urls[name] = f"{UI_ROOT}/{versioned if name in VERSIONED else name}"
        self.served: dict[str, tuple[Asset, str]] = {}
        for name in VERSIONED:
            self.served[self.by_name[name].versioned_name] = (self.by_name[name], IMMUTABLE)
        for name in STABLE:
            self.served[name] = (self.by_name[name], REVALIDATE)
        # Each file's current URL: a host page (or its build) reads the content-hashed name from here, and
        # the Subresource Integrity value of each versioned file (<script integrity=… crossorigin>).
        listing = {name: self.urls[name] for name in (*VERSIONED, "sw.js")}
        listing["integrity"] = {name: "sha384-" + base64.b64encode(
            hashlib.sha384(self.by_name[name].body).digest()).decode() for name in VERSIONED}
        listing = json.dumps(listing, indent=1).encode()
        self.served["manifest.json"] = (
            Asset(listing, "application/json", hashlib.sha256(listing).hexdigest()[:32], "manifest.json"),
            REVALIDATE)


def assets() -> Assets:
    return current_app.extensions[EXTENSION]


def _file_response(asset: Asset, cache_control: str) -> Response:
    response = Response(asset.body, content_type=asset.media_type)
    response.set_etag(asset.etag)
    response.headers["Cache-Control"] = cache_control
    return response.make_conditional(request)


@assets_bp.get(f"{UI_ROOT}/<path:filename>")
def asset(filename: str):
    found = assets().served.get(filename)
    if found is None:
        abort(404)
    response = _file_response(*found)
    # Public files, readable from any origin: a host page may load them with `crossorigin` and SRI.
    response.headers["Access-Control-Allow-Origin"] = "*"
    if filename == "sw.js":
        response.headers["Service-Worker-Allowed"] = "/"  # the host page may register it for a wider scope
    return response


# ---- the demo page (ENABLE_UI_DEMO; refused in production by config.py) -----------------------

DEMO_TYPE = "demo"


class DemoNotificationSchema(Schema):
    """What the demo page may choose about its test notification (the rest is fixed)."""
    title = Text(load_default="Test notification", validate=validate.Length(1, 200))


demo_body = DemoNotificationSchema()
no_query = EmptyQuerySchema()


@demo_bp.get(f"{UI_ROOT}/demo")
@openapi.doc("getUiDemo", "The web inbox demo page (only with ENABLE_UI_DEMO; development)", tag="operations",
             security=[], responses={200: openapi.plain("The demo page (HTML).", "text/html")}, errors=(429,))
def demo_page():
    urls = assets().urls
    page = assets().by_name["demo.html"]
    api_base = current_app.config["API_V1_PREFIX"]
    html = page.body.decode()
    for key, value in (("inbox_js", urls["notification-inbox.js"]), ("demo_js", urls["demo.js"]),
                       ("demo_css", urls["demo.css"]), ("api_base", api_base)):
        html = html.replace("{{" + key + "}}", value)
    response = Response(html, content_type=page.media_type)
    response.headers["Content-Security-Policy"] = DEMO_CSP
    return response


@demo_bp.post(f"{UI_ROOT}/demo/token")
@openapi.doc(
    "issueUiDemoToken", "A 1-hour JWT for the demo user (only with ENABLE_UI_DEMO; development)",
    tag="operations", security=[],
    description="Development only: anyone who reaches the server gets the demo user's token "
                "(UI_DEMO_USER_ID), which is why the setting is refused in production.",
    responses={200: openapi.ok("The token.", {"type": "object", "required": ["token"],
                                              "properties": {"token": {"type": "string"}}},
                               {"token": "eyJhbGciOiJIUzI1NiIs..."}, headers=())},
    errors=(429,))
def demo_token():
    load_query(no_query)
    config = current_app.config
    return json_response({"token": issue_token(config, config["UI_DEMO_USER_ID"], hours=1)})


@demo_bp.post(f"{UI_ROOT}/demo/notifications")
@openapi.doc(
    "sendUiDemoNotification", "Send the caller a test notification (only with ENABLE_UI_DEMO; development)",
    tag="operations", description="The demo page's \"send me a test notification\": a notification of type "
                                  "`demo` for the JWT's own user, delivered and published like any create.",
    request=openapi.body(DemoNotificationSchema, "Optional: the title.", {"title": "Test notification #1"}),
    responses={201: openapi.ok("Created (or suppressed by the user's settings: 200).", CreateResponseSchema)})
@user_required
@ratelimit.user_write
def demo_notification():
    body = load_body(demo_body)
    notification = {"notification_type": DEMO_TYPE, "title": body["title"],
                    "message": "Sent from the web inbox demo page.", "payload": {"actor_name": "Demo"},
                    "group_key": "web-inbox-demo",
                    "action_url": request.host_url.rstrip("/") + f"{UI_ROOT}/demo"}
    rows = store.create_notifications(get_db(), [UUID(str(g.user_id))], notification,
                                      queue_email=bool(current_app.config["EMAIL_API_URL"]))
    results = []
    for row in rows:
        result = row.pop("result")
        results.append({"user_id": str(row["user_id"]), "result": result,
                        "notification": row if result in ("created", "duplicate") else None})
    created = [r["notification"] for r in results if r["result"] == "created"]
    metrics.record_notifications_created(DEMO_TYPE, len(created))
    publisher.changed((), created)
    return json_response({"created_count": len(created), "results": results}, status=201 if created else 200)


def init_app(app: Flask) -> None:
    """The component's files always; the demo page and its endpoints only with ENABLE_UI_DEMO (and
    then Swagger UI's pre-authorization as the demo user)."""
    app.extensions[EXTENSION] = Assets()
    app.register_blueprint(assets_bp)
    if app.config["ENABLE_UI_DEMO"]:
        app.register_blueprint(demo_bp)
        # Swagger UI (with ENABLE_DOCS) starts authorized as the demo user, by a token from the same endpoint.
        openapi.preauthorize_docs(app, f"{UI_ROOT}/demo/token")
