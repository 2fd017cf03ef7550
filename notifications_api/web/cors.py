"""CORS for the browser origins in CORS_ORIGINS (Flask-CORS), on the API paths only."""
from __future__ import annotations

import re

from flask import Flask, Response, request
from flask_cors import CORS

# What a browser page on a listed origin may send and read (API.md; RateLimit-* from ratelimit.py).
# Not X-Service-Token: only internal services send it, never a browser; allowing it would invite a
# page to hold the service secret.
CORS_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]
CORS_REQUEST_HEADERS = ["Authorization", "Content-Type", "If-None-Match", "Idempotency-Key", "X-Request-ID"]
CORS_EXPOSED_HEADERS = ["ETag", "Link", "Retry-After", "X-Request-ID", "X-Poll-Interval",
                        "RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset"]
PREFLIGHT_MAX_AGE = 600  # seconds a browser may reuse a preflight (Chromium caps it at 7200)

cors = CORS()


def init_app(app: Flask) -> None:
    config = app.config
    if not config["CORS_ORIGINS"]:  # empty: no CORS headers at all, so no origin is allowed
        return
    cors.init_app(
        app, resources={rf"^{re.escape(config['API_V1_PREFIX'])}/.*": {}},
        origins=list(config["CORS_ORIGINS"]), methods=CORS_METHODS,
        allow_headers=CORS_REQUEST_HEADERS, expose_headers=CORS_EXPOSED_HEADERS,
        max_age=PREFLIGHT_MAX_AGE, supports_credentials=False, send_wildcard=True,
        always_send=False,  # no Origin header, no CORS headers (else every origin is listed)
        vary_header=False,  # headers.py sets it on every API response, whichever origin is allowed
        intercept_exceptions=False)  # error responses pass through after_request too
    only_with_origin(app)


def only_with_origin(app: Flask) -> None:
    """Run Flask-CORS's after_request hook only for requests that carry an Origin header.

    Without one it adds nothing (always_send=False), but still matches the path against its
    resources and probes the headers: most of a hot request's header work, for nothing. Servers
    and most polling clients send no Origin; browsers send one on every cross-origin request.

    Kept for its measured gain on the hot paths (bench/instructions.py; the figures: docs/PERFORMANCE.md,
    "Figures from the code"). It relies on Flask-CORS registering one
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
