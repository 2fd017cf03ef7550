"""RFC 9457 problem documents: the one error envelope for every failure."""
from __future__ import annotations

import json
import logging
from http import HTTPStatus
from typing import Any

from flask import Flask, Response, g
from werkzeug.exceptions import HTTPException

log = logging.getLogger(__name__)

PROBLEM_MIMETYPE = "application/problem+json"

# Default problem code for an HTTP status raised by Flask/Werkzeug itself.
CODES = {
    400: "bad_request",  # malformed HTTP Werkzeug refused; a body that is not JSON is body.read_json's
    401: "missing_token",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    414: "uri_too_long",
    415: "unsupported_media_type",
    422: "validation_error",
    431: "header_too_large",
    429: "rate_limited",
    503: "database_unavailable",
}
DETAILS = {
    404: "No resource matches this URL.",
    405: "This method is not allowed on this resource.",
    413: "The request body is too large.",
    415: "The request body must be application/json.",
    431: "The request headers are too large.",
    429: "Too many requests; retry later.",
}


# RFC 9110 names where Python 3.11's HTTPStatus still has the RFC 7231 ones.
TITLES = {413: "Content Too Large", 414: "URI Too Long", 422: "Unprocessable Content"}


class ApiError(Exception):
    """An error the API reports to its caller as a problem document."""

    def __init__(self, status: int, code: str, detail: str,
                 errors: dict[str, list[str]] | None = None, headers: dict[str, str] | None = None):
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.errors = errors
        self.headers = headers or {}


def validation_error(errors: dict[str, list[str]]) -> ApiError:
    """422 whose detail names the first failing field, as in API.md."""
    field, messages = next(iter(errors.items()))
    return ApiError(422, "validation_error", f"{field}: {messages[0]}", errors=errors)


def problem(status: int, code: str, detail: str, errors: dict[str, list[str]] | None = None,
            headers: dict[str, str] | None = None) -> Response:
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": TITLES.get(status) or HTTPStatus(status).phrase,
        "status": status,
        "code": code,
        "detail": detail,
    }
    if errors:
        body["errors"] = errors
    body["request_id"] = g.get("request_id")
    g.problem_code = code  # counted by metrics
    try:
        text = json.dumps(body, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate echoed from hostile input (a field name): \ud800 escapes
        text = json.dumps(body).encode("ascii")
    response = Response(text, status=status, mimetype=PROBLEM_MIMETYPE)
    if status == 401:
        response.headers["WWW-Authenticate"] = "Bearer"
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def _api_error(exc: ApiError) -> Response:
    return problem(exc.status, exc.code, exc.detail, exc.errors, exc.headers)


def _http_error(exc: HTTPException) -> Response:
    status = exc.code or 500
    if status >= 500:
        return _unexpected(exc)
    # Start from Werkzeug's own response so Allow / Retry-After survive.
    original = exc.get_response()
    keep = {k: v for k, v in original.headers.items() if k in ("Allow", "Retry-After")}
    code = CODES.get(status, "http_error")
    detail = DETAILS.get(status) or exc.description or HTTPStatus(status).phrase
    return problem(status, code, detail, headers=keep)


def _unexpected(exc: Exception) -> Response:
    log.error("unhandled exception", exc_info=exc, extra={"event": "internal_error"})
    return problem(500, "internal_error", "An unexpected error occurred; it has been logged.")


def init_app(app: Flask) -> None:
    app.register_error_handler(ApiError, _api_error)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _unexpected)
