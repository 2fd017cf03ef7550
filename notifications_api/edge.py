"""The HTTP edge: CORS for the browser origins, trust in the proxies in front, security headers."""
from __future__ import annotations

import re

from flask import Flask, Response, current_app, request
from flask_cors import CORS
from werkzeug.middleware.proxy_fix import ProxyFix

# What a browser page on a listed origin may send and read (API.md; RateLimit-* from ratelimit.py).
CORS_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]
CORS_REQUEST_HEADERS = ["Authorization", "Content-Type", "If-None-Match", "Idempotency-Key",
                        "X-Request-ID", "X-Service-Token"]
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
    app.after_request(_security_headers)


def _security_headers(response: Response) -> Response:
    config = current_app.config
    headers = response.headers
    if config["CORS_ORIGINS"] and request.path.startswith(config["API_V1_PREFIX"] + "/"):
        response.vary.add("Origin")
    # (membership tests: Headers.setdefault raises and catches KeyError on every miss)
    if config["ENVIRONMENT"] == "production" and "Strict-Transport-Security" not in headers:
        headers["Strict-Transport-Security"] = HSTS
    if response.mimetype in JSON_MIMETYPES and "Content-Security-Policy" not in headers:
        headers["Content-Security-Policy"] = JSON_CSP
    return response
