"""The headers every response gets: request id, caching (a static file keeps its public Cache-Control),
nosniff, Vary: Origin, HSTS, the JSON CSP."""
from __future__ import annotations

import uuid
from typing import Callable

from flask import Flask, Response, g, request

HSTS = "max-age=31536000; includeSubDomains"
# JSON is never rendered: it may load nothing and be framed by nobody.
JSON_CSP = "default-src 'none'; frame-ancestors 'none'"
JSON_MIMETYPES = frozenset({"application/json", "application/problem+json"})


def init_app(app: Flask) -> None:
    config = app.config
    app.after_request(_response_headers(
        api_prefix=config["API_V1_PREFIX"] + "/" if config["CORS_ORIGINS"] else None,
        hsts=config["ENVIRONMENT"] == "production"))


def _response_headers(api_prefix: str | None, hsts: bool) -> Callable[[Response], Response]:
    """The after_request hook. `api_prefix`: add Vary: Origin under it (CORS is on); `hsts`: production.
    Config is read once, here: it does not change after create_app."""

    def add(response: Response) -> Response:
        state = g._get_current_object()  # (each access through the proxy costs a context lookup)
        request_id = getattr(state, "request_id", None)
        if request_id is None:  # a hook before the request id's failed: the log line says the same
            request_id = state.request_id = str(uuid.uuid4())
        headers = response.headers
        # One pass over the few headers set so far: a miss with `in`/.get() on werkzeug's Headers
        # raises and catches an exception, several times per request. A header nobody set yet is
        # `add`ed (set() scans for an old value); one set before (a view's Cache-Control) is replaced.
        present = {key.lower(): value for key, value in headers}
        cache = "private, no-cache" if "etag" in present else "no-store"
        if present.get("cache-control", "").startswith("public"):
            cache = present["cache-control"]  # a static file's own (views/ui.py): shared caches may keep it
        for name, value in (("X-Request-ID", request_id), ("X-Content-Type-Options", "nosniff"),
                            ("Cache-Control", cache)):
            if name.lower() in present:
                headers[name] = value
            else:
                headers.add(name, value)
        if api_prefix is not None and request.path.startswith(api_prefix):
            vary = present.get("vary")
            if not vary:
                headers.add("Vary", "Origin")
            elif "origin" not in vary.lower():
                headers["Vary"] = vary + ", Origin"
        if hsts and "strict-transport-security" not in present:
            headers.add("Strict-Transport-Security", HSTS)
        mimetype = present.get("content-type", "").partition(";")[0].strip().lower()
        if mimetype in JSON_MIMETYPES and "content-security-policy" not in present:
            headers.add("Content-Security-Policy", JSON_CSP)
        if response.status_code in (204, 304) or (request.method == "OPTIONS" and not response.data):
            headers.pop("Content-Type", None)  # no body, no media type
        return response

    return add
