"""The HTTP edge: CORS for the browser origins, trust in the proxies in front, security headers."""
from __future__ import annotations

import re
from typing import Callable

from flask import Flask, Response, request
from flask_cors import CORS
from werkzeug.middleware.proxy_fix import ProxyFix

# What a browser page on a listed origin may send and read (API.md; RateLimit-* from ratelimit.py).
# Not X-Service-Token: only internal services send it, never a browser; allowing it would invite a
# page to hold the service secret.
CORS_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]
CORS_REQUEST_HEADERS = ["Authorization", "Content-Type", "If-None-Match", "Idempotency-Key", "X-Request-ID"]
CORS_EXPOSED_HEADERS = ["ETag", "Link", "Retry-After", "X-Request-ID", "X-Poll-Interval",
                        "RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset"]
PREFLIGHT_MAX_AGE = 600  # seconds a browser may reuse a preflight (Chromium caps it at 7200)
HSTS = "max-age=31536000; includeSubDomains"
# JSON is never rendered: it may load nothing and be framed by nobody.
JSON_CSP = "default-src 'none'; frame-ancestors 'none'"
JSON_MIMETYPES = frozenset({"application/json", "application/problem+json"})

cors = CORS()


def init_app(app: Flask) -> None:
    config = app.config
    hops = config["TRUSTED_PROXY_HOPS"]
    if hops:
        # Client address and scheme from the last `hops` proxies' X-Forwarded-For/-Proto; with no
        # trusted hop the socket's peer is the client and forwarded headers are ignored. The Host
        # header is the client's: proxies must pass it through (X-Forwarded-Host is not trusted).
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops)
    if config["CORS_ORIGINS"]:  # empty: no CORS headers at all, so no origin is allowed
        cors.init_app(
            app, resources={rf"^{re.escape(config['API_V1_PREFIX'])}/.*": {}},
            origins=list(config["CORS_ORIGINS"]), methods=CORS_METHODS,
            allow_headers=CORS_REQUEST_HEADERS, expose_headers=CORS_EXPOSED_HEADERS,
            max_age=PREFLIGHT_MAX_AGE, supports_credentials=False, send_wildcard=True,
            always_send=False,  # no Origin header, no CORS headers (else every origin is listed)
            vary_header=False,  # set below on every API response, whichever origin is allowed
            intercept_exceptions=False)  # error responses pass through after_request too
        _only_with_origin(app)
    app.after_request(_security_headers(
        api_prefix=config["API_V1_PREFIX"] + "/" if config["CORS_ORIGINS"] else None,
        hsts=config["ENVIRONMENT"] == "production"))


def _only_with_origin(app: Flask) -> None:
    """Run Flask-CORS's after_request hook only for requests that carry an Origin header.

    Without one it adds nothing (always_send=False), but still matches the path against its
    resources and probes the headers: most of a hot request's header work, for nothing. Servers
    and most polling clients send no Origin; browsers send one on every cross-origin request.

    Kept for its measured gain (bench/instructions.py, no Origin header, Flask-CORS 6.0):
    unread count 1,004,693 instructions per request with it, 1,074,357 without (+6.9 %);
    list page 2,677,199 with it, 2,766,156 without (+3.3 %). It relies on Flask-CORS registering one
    after_request hook named `cors_after_request` last: tests/edge/test_cors.py checks that shape.
    """
    hooks = app.after_request_funcs[None]
    cors_after_request = hooks[-1]  # the hook cors.init_app just appended
    if getattr(cors_after_request, "__name__", "") != "cors_after_request":
        raise RuntimeError("Flask-CORS did not register its after_request hook as expected")

    def cors_if_origin(response: Response) -> Response:
        if "HTTP_ORIGIN" in request.environ:
            return cors_after_request(response)
        return response

    hooks[-1] = cors_if_origin


def _security_headers(api_prefix: str | None, hsts: bool) -> Callable[[Response], Response]:
    """The after_request hook adding Vary: Origin (API paths, when CORS is on), HSTS (production)
    and the JSON CSP. Config is read once, here: it does not change after create_app."""

    def add(response: Response) -> Response:
        headers = response.headers
        # One pass over the few headers set so far: a miss with `in`/.get() on werkzeug's
        # Headers raises and catches an exception, several times per request.
        present = {key.lower(): value for key, value in headers}
        if api_prefix is not None and request.path.startswith(api_prefix):
            vary = present.get("vary")
            if not vary:
                headers.add("Vary", "Origin")  # (add: known absent, no scan for an old value)
            elif "origin" not in vary.lower():
                headers["Vary"] = vary + ", Origin"
        if hsts and "strict-transport-security" not in present:
            headers.add("Strict-Transport-Security", HSTS)
        mimetype = present.get("content-type", "").partition(";")[0].strip().lower()
        if mimetype in JSON_MIMETYPES and "content-security-policy" not in present:
            headers.add("Content-Security-Policy", JSON_CSP)
        return response

    return add
