"""The OpenAPI 3.1 document and Swagger UI (only with ENABLE_DOCS): each view declares its operation
with `doc`; `build_spec` walks the URL map and turns the marshmallow schemas into components."""
from __future__ import annotations

import copy
import hashlib
import json
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime, timedelta, timezone
from html import escape
from importlib import metadata, resources
from typing import Any, NamedTuple

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from flask import Flask, Response, current_app, request
from flask_swagger_ui import get_swaggerui_blueprint
from marshmallow import fields, validate
from werkzeug.routing import Rule

from . import http_limits, schemas
from .responses import dumps

EXTENSION = "openapi"
OPENAPI_VERSION = "3.1.0"
SPEC_URL = "/openapi.json"
DOCS_URL = "/docs"
PROBLEM = "application/problem+json"
JSON = "application/json"

EXAMPLE_USER = "9b2c4d6e-8f10-4a2b-9c3d-5e6f7a8b9c0d"
EXAMPLE_NOTIFICATION = {
    "notification_id": "3f0e1a2b-4c5d-4e6f-8a9b-0c1d2e3f4a5b",
    "user_id": EXAMPLE_USER,
    "notification_type": "comment",
    "title": "Ana commented on your post",
    "message": "Nice route!",
    "actor_user_id": "1d7a8b9c-0d1e-4f2a-8b3c-4d5e6f7a8b9c",
    "target_type": "post",
    "target_id": "post-812",
    "action_url": "https://app.example.com/posts/812#c-9",
    "payload": {"comment_id": 9},
    "priority": "normal",
    "group_key": None,
    "status": "unread",
    "created_at": "2026-11-26T03:42:21.123456Z",
    "delivered_at": "2026-11-26T03:42:21.123456Z",
    "seen_at": None,
    "read_at": None,
    "archived_at": None,
    "snoozed_until": None,
    "expires_at": None,
}
DESCRIPTION = """\
In-app notifications for the activity platform: internal services post notifications, web clients
list them, mark them read, archive them, poll the unread count and manage their preferences.

**Authentication.** End-user endpoints take `Authorization: Bearer <JWT>` (scheme `bearerAuth`;
`sub` is the user id). Creating notifications is for internal services only: `X-Service-Token:
<SERVICE_TOKEN>` (scheme `serviceToken`) or, equivalently, `Authorization: Bearer <SERVICE_TOKEN>`.
A user JWT on the internal endpoint is `403 service_token_required`.

**Errors** are RFC 9457 problem documents (`application/problem+json`, schema `Problem`) with a
stable `code`; field errors are under `errors`, keyed by the field's path (`limit`,
`quiet_hours.timezone`, `user_ids.3`). When several apply, the first in this order wins:
414/431 (a request line or header over the size limits), 404/405 (routing), 401/403 (credentials),
429 (rate limit), 413/415/400 (the body as bytes), 422 (its content). A method a path does not list
is `405 method_not_allowed` with an `Allow` header.
A `500 internal_error` never holds a stack trace or SQL; `503 database_unavailable` carries
`Retry-After`. A call the database rolled back (serialization failure, deadlock) is retried once
by the server before it answers 503: such a 503 changed nothing, so retrying it is safe.
A 503 is also what a database failover costs (seconds; never a 500). A create answered
503, or whose reply was lost, may have been stored: retry it with the same `dedupe_key` /
`Idempotency-Key` (stored once; the retry answers `200` with `result: duplicate`).

**Every response** carries `X-Request-ID` (the caller's when it is 1-128 characters of
`[A-Za-z0-9._-]`, else a new UUID; it equals the problem's `request_id`),
`X-Content-Type-Options: nosniff` and `Cache-Control: no-store`, except responses with an `ETag`,
which send `Cache-Control: private, no-cache`. Rate-limited endpoints (everything but `/health`,
`/health/live`, authorised `/metrics` scrapes, Swagger UI's static files under `/docs/` and the web
inbox's under `/ui/`; users
and services by identity, the rest by client address) send `RateLimit-Limit`,
`RateLimit-Remaining` and `RateLimit-Reset`, and `429` with `Retry-After` when the limit is hit.
Limits are shared by every server process (Redis); one identity requesting in quick succession is
counted a few requests at a time per process while far from its limit (never near it), so a burst
that stops may be refused up to a few requests before the limit, and never served past it.
A failed request without an accepted credential (401/403/404/405) spends its address's budget and
carries its headers, but keeps its own status even when that budget is spent (the order above).

**Timestamps** are RFC 3339 in UTC with a `Z` suffix. A timestamp sent (`until`, `before`,
`expires_at`) must be an RFC 3339 `date-time` exactly, else `422`: seconds and an offset (`Z` or
`±HH:MM`) required, `T` and `Z` in either case, `-00:00` read as UTC, a fraction cut to
microseconds, a leap second (`:60`) read as the last microsecond of its minute; shorter ISO 8601
forms (`2027-01-01T00:00Z`, `20270101T000000Z`) are refused. **IDs** are UUIDs, always returned in
the canonical lower-case 8-4-4-4-12 form; an id sent in a body must be in that form (either case),
else `422` keyed by its path (`user_ids.3`); a path id that is not a UUID is `404 not_found`.

**Decisions where the contract is silent:**

- Unknown query parameters are `422` on every endpoint under the API prefix, and so is a
  single-valued query parameter given more than once. Only `type` may repeat.
- `type` takes notification types repeated (`type=a&type=b`), comma-separated (`type=a,b`) or
  both; duplicates collapse; at most {max_types} distinct types.
- `limit` is plain decimal digits; `permanent` is spelled `true`, `false`, `1` or `0`.
- Endpoints that take a body take no query parameter; a body sent to one that takes none is
  ignored. Unknown body fields are `422`; `null` is accepted only where a schema says so; text fields reject
  NUL characters and unpaired surrogates; `NaN`/`Infinity` in a body is `400 invalid_json`.
- Create: a repeated user id in `user_ids` is `422`; `target_type` is 1-{target_type} characters,
  `target_id` 1-{target_id}, `group_key` 1-{group_key}, `dedupe_key` and the `Idempotency-Key` header
  1-{dedupe_key}; `payload` is at most {payload_kib} KiB as compact UTF-8 JSON; `expires_at` must be in
  the future and before the year 10000. A `201` for a single `user_id` carries `Location` (the new
  notification's absolute URL, readable with the user's JWT).
- Settings: quiet hours `start` must differ from `end`; both are `HH:MM` (24 h); `timezone` is an
  IANA zone name (`localtime`, `posixrules` and `Factory` are not).
- `If-None-Match` also matches a weak (`W/"..."`) form of the current ETag, and `*`.
- `HEAD` is answered for every `GET`; `OPTIONS` serves CORS preflight for the allowed origins.
"""


# ---- marshmallow -> OpenAPI for this project's custom fields -------------------------------

def _max_length(schema: type[schemas.Schema], name: str) -> int:
    return next(v.max for v in schema._declared_fields[name].validators if isinstance(v, validate.Length))


def _description() -> str:
    """DESCRIPTION with the limits read from the schemas, so the prose cannot drift from them."""
    create = schemas.CreateNotificationSchema
    return DESCRIPTION.format(
        max_types=schemas.MAX_TYPE_FILTERS, payload_kib=schemas.MAX_PAYLOAD_BYTES // 1024,
        **{name: _max_length(create, name)
           for name in ("target_type", "target_id", "group_key", "dedupe_key")})


def _custom_field_properties(self, field: fields.Field, ret: dict, **kwargs: Any) -> dict:
    """Attribute function for the converter: what the generic mapping cannot know."""
    extra: dict[str, Any] = {}
    if isinstance(field, schemas.CanonicalUUID):  # format uuid alone does not say "this spelling only"
        extra["pattern"] = schemas.UUID_PATTERN
    if isinstance(field, schemas.TypeList):
        extra["items"] = {"type": "string", "pattern": schemas.TYPE_PATTERN, "maxLength": 64}
        extra["maxItems"] = schemas.MAX_TYPE_FILTERS
    if isinstance(field, fields.Dict):
        lengths = [v for v in field.validators if isinstance(v, validate.Length)]
        for length in lengths:  # Length on a Dict counts properties, not characters
            ret.pop("minLength", None)
            ret.pop("maxLength", None)
            if length.min is not None:
                extra["minProperties"] = length.min
            if length.max is not None:
                extra["maxProperties"] = length.max
        if isinstance(field.key_field, schemas.TypeName):
            extra["propertyNames"] = {"pattern": schemas.TYPE_PATTERN}
    return extra


def _list_parameter_style(self, field: fields.Field, **kwargs: Any) -> dict:
    if isinstance(field, schemas.TypeList):
        return {"style": "form", "explode": True}
    return {}


def _plugin(spec: APISpec, plugin: MarshmallowPlugin) -> None:
    plugin.map_to_openapi_type(schemas.QueryInteger, "integer", None)
    plugin.map_to_openapi_type(schemas.QueryBoolean, "boolean", None)
    plugin.map_to_openapi_type(schemas.TypeList, "array", None)
    plugin.converter.add_attribute_function(_custom_field_properties)
    plugin.converter.add_parameter_attribute_function(_list_parameter_style)


# ---- building blocks ---------------------------------------------------------------------

def _ref(kind: str, name: str) -> dict[str, str]:
    return {"$ref": f"#/components/{kind}/{name}"}


def response_headers(*names: str) -> dict[str, dict]:
    return {name: _ref("headers", name) for name in ("X-Request-ID",) + names}


RATE_HEADERS = ("RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset")

HEADERS: dict[str, dict] = {
    "X-Request-ID": {
        "description": "The caller's X-Request-ID when valid, else a new UUID; equals a problem's "
                       "request_id.",
        "required": True,
        "schema": {"type": "string", "pattern": r"^[A-Za-z0-9._-]{1,128}$"},
    },
    "ETag": {
        "description": "Strong entity tag of the representation; send it back in If-None-Match.",
        "required": True,
        "schema": {"type": "string", "pattern": r'^"[^"]*"$'},
        "example": '"3b1f0c9a2d4e5f60718293a4"',
    },
    "X-Poll-Interval": {
        "description": "Seconds a client should wait before polling again (POLL_INTERVAL_SECONDS).",
        "required": True,
        "schema": {"type": "integer", "minimum": 1},
        "example": 30,
    },
    "Link": {
        "description": 'Present when there is a next page: `<absolute URL>; rel="next"`, keeping the '
                       "filters and the limit.",
        "schema": {"type": "string"},
        "example": '<https://notifications.example.com/api/v1/notifications?cursor=MS4xNzY0&limit=20>; '
                   'rel="next"',
    },
    "Location": {
        "description": "The created notification's URL (only for a single `user_id` that got `created`).",
        "schema": {"type": "string", "format": "uri-reference"},
        "example": "/api/v1/notifications/3f0e1a2b-4c5d-4e6f-8a9b-0c1d2e3f4a5b",
    },
    "Idempotent-Replayed": {
        "description": "`true` when every result is `duplicate`: nothing new was stored.",
        "schema": {"type": "string", "enum": ["true"]},
    },
    "Retry-After": {
        "description": "Seconds to wait before retrying.",
        "required": True,
        "schema": {"type": "integer", "minimum": 0},
        "example": 2,
    },
    "RateLimit-Limit": {
        "description": "Requests allowed in the current window (sent when rate limiting is enabled). "
                       "With several limits (per minute and per hour), all three headers describe the "
                       "most restrictive one: the fewest requests left, then the later reset.",
        "schema": {"type": "integer", "minimum": 0},
    },
    "RateLimit-Remaining": {
        "description": "Requests left in the current window (sent when rate limiting is enabled).",
        "schema": {"type": "integer", "minimum": 0},
    },
    "RateLimit-Reset": {
        "description": "Seconds until the current window resets (sent when rate limiting is enabled).",
        "schema": {"type": "integer", "minimum": 0},
    },
    "WWW-Authenticate": {
        "description": "Always `Bearer` on a 401.",
        "required": True,
        "schema": {"type": "string"},
    },
    "Allow": {
        "description": "The methods the path accepts.",
        "schema": {"type": "string"},
    },
}

PARAMETERS: dict[str, dict] = {
    "X-Request-ID": {
        "in": "header", "name": "X-Request-ID", "required": False,
        "description": "Correlation id, echoed in the response when it is 1-128 characters of "
                       "`[A-Za-z0-9._-]`; any other value is replaced by a new UUID (never rejected).",
        "schema": {"type": "string"},
    },
    "If-None-Match": {
        "in": "header", "name": "If-None-Match", "required": False,
        "description": "The ETag of a representation the client holds; a match answers 304 with no body.",
        "schema": {"type": "string"},
    },
    "Idempotency-Key": {
        "in": "header", "name": "Idempotency-Key", "required": False,
        "description": "The same thing as the body's `dedupe_key`; when both are sent they must be "
                       "equal, else 422.",
        "schema": {"type": "string", "minLength": 1, "maxLength": 128},  # the view's limit
    },
    "NotificationId": {
        "in": "path", "name": "notification_id", "required": True,
        "description": "The notification's id. Not a UUID: 404 not_found.",
        "schema": {"type": "string", "format": "uuid"},
    },
    "SubscriptionId": {
        "in": "path", "name": "subscription_id", "required": True,
        "description": "The push subscription's id. Not a UUID: 404 not_found.",
        "schema": {"type": "string", "format": "uuid"},
    },
}

# status -> (component name, description, codes, example detail, extra headers)
PROBLEMS: dict[int, tuple[str, str, tuple[str, ...], str, tuple[str, ...]]] = {
    400: ("BadRequest", "The body is not parseable JSON (`invalid_json`), or the request is malformed HTTP "
                        "(`bad_request`).", ("invalid_json", "bad_request"),
          "The request body is not valid JSON.", ()),
    401: ("Unauthorized", "No credential, or an invalid, expired or unknown one.",
          ("missing_token", "invalid_token", "token_expired", "user_not_found", "invalid_service_token"),
          "An Authorization: Bearer token is required.", ("WWW-Authenticate",)),
    403: ("Forbidden", "The user is inactive, or a user JWT was sent to an internal endpoint.",
          ("user_inactive", "service_token_required"), "The token's user is inactive.", ()),
    409: ("Conflict", "The notification's state forbids the change: snoozed (mark read/unread while "
                      "snoozed) or archived (snoozing an archived one).",
          ("notification_snoozed", "notification_archived"),
          "The notification is snoozed; wake it first.", ()),
    404: ("NotFound", "No such notification (also another user's, an expired or a deleted one), no such "
                      "push subscription of the caller, the path id is not a UUID, or (push endpoints) push "
                      "is not configured.",
          ("notification_not_found", "subscription_not_found", "not_found"), "No such notification.", ()),
    405: ("MethodNotAllowed", "The path does not accept this method.", ("method_not_allowed",),
          "This method is not allowed on this resource.", ("Allow",)),
    413: ("PayloadTooLarge", "The body is over MAX_CONTENT_LENGTH (default 64 KiB).",
          ("payload_too_large",), "The request body is too large.", ()),
    414: ("UriTooLong", f"The request line is over {http_limits.MAX_REQUEST_LINE} bytes. Checked before "
                        "anything else. Past gunicorn's own limit (a request line over "
                        f"{http_limits.GUNICORN_LIMIT_REQUEST_LINE} bytes) gunicorn "
                        "answers by itself, before the app: `414 URI Too Long` as a small `text/html` page, "
                        "with only `Connection`, `Content-Type` and `Content-Length` headers (no "
                        "`X-Request-ID`, no problem document). A proxy in front may answer instead (the "
                        "nginx example: a problem document).", ("uri_too_long",),
          f"The request line is longer than {http_limits.MAX_REQUEST_LINE} bytes; shorten the URL.", ()),
    415: ("UnsupportedMediaType", "The body is not application/json.", ("unsupported_media_type",),
          "The request body must be application/json.", ()),
    431: ("HeaderTooLarge", f"A header line is over {http_limits.MAX_HEADER_FIELD} bytes, or there are more "
                            f"than {http_limits.MAX_HEADER_FIELDS} headers. Checked right after the request "
                            "line.", ("header_too_large",),
          f"A request header is longer than {http_limits.MAX_HEADER_FIELD} bytes.", ()),
    422: ("ValidationFailed", "The body or the query fails the schema (unknown fields and unknown query "
                              "parameters included); `errors` maps each field path to its messages.",
          ("validation_error",), "limit: Must be between 1 and 100.", ()),
    429: ("TooManyRequests", "Rate limit exceeded.", ("rate_limited",), "Too many requests; retry later.",
          ("Retry-After",) + RATE_HEADERS),
    500: ("InternalError", "A bug; it has been logged. The body holds no stack trace or SQL.",
          ("internal_error",), "An unexpected error occurred; it has been logged.", ()),
    503: ("ServiceUnavailable", "The database is down or no pooled connection was free within "
                                "DB_POOL_TIMEOUT seconds.",
          ("database_unavailable",), "The database is unavailable; retry shortly.", ("Retry-After",)),
}
TITLES = {400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 409: "Conflict",
          405: "Method Not Allowed", 413: "Content Too Large", 414: "URI Too Long",
          415: "Unsupported Media Type", 422: "Unprocessable Content", 429: "Too Many Requests",
          431: "Request Header Fields Too Large", 500: "Internal Server Error", 503: "Service Unavailable"}
# Statuses any request may get, whatever its operation: added to every operation's responses.
EVERY_OPERATION = (414, 431)


def _problem_response(status: int) -> dict:
    _, description, codes, detail, extra = PROBLEMS[status]
    example: dict[str, Any] = {"type": "about:blank", "title": TITLES[status], "status": status,
                               "code": codes[0], "detail": detail}
    if status == 422:
        example["errors"] = {"limit": ["Must be between 1 and 100."]}
    example["request_id"] = "9f1c2b7e-5a4d-4e3f-9b8a-7c6d5e4f3a2b"
    return {
        "description": f"{description} Codes: {', '.join(f'`{c}`' for c in codes)}.",
        "headers": response_headers(*extra),
        "content": {PROBLEM: {"schema": _ref("schemas", "Problem"), "example": example}},
    }


def _uri_too_long_response() -> dict:
    """The 414: the app's problem document, or gunicorn's own HTML page (see its description)."""
    response = _problem_response(414)
    response["headers"]["X-Request-ID"] = {**HEADERS["X-Request-ID"], "required": False,
                                           "description": "Sent with the app's problem document; "
                                                          "absent from gunicorn's HTML page."}
    response["content"]["text/html"] = {"schema": {"type": "string"},
                                        "example": "<html>\n  <head>\n    <title>URI Too Long</title>\n"
                                                   "  </head>\n  <body>\n    <h1><p>URI Too Long</p></h1>\n"
                                                   "    ...\n  </body>\n</html>\n"}
    return response


def _problems(*statuses: int) -> dict[str, dict]:
    return {str(status): _ref("responses", PROBLEMS[status][0]) for status in statuses}


def ok(description: str, schema: Any, example: Any = None, headers: tuple[str, ...] = RATE_HEADERS,
       links: dict | None = None) -> dict:
    content: dict[str, Any] = {"schema": schema}
    if example is not None:
        content["example"] = example
    response = {"description": description, "headers": response_headers(*headers), "content": {JSON: content}}
    if links:
        response["links"] = links
    return response


def plain(description: str, media_type: str, json_type: str = "string") -> dict:
    return {"description": description, "headers": response_headers(*RATE_HEADERS),
            "content": {media_type: {"schema": {"type": json_type}}}}


def not_modified(*headers: str) -> dict:
    return {"description": "Not Modified: If-None-Match matched; no body, the same ETag"
                           + (" and X-Poll-Interval" if "X-Poll-Interval" in headers else "") + ".",
            "headers": response_headers("ETag", *headers, *RATE_HEADERS)}


def body(schema: Any, description: str, example: dict) -> dict:
    return {"required": True, "description": description,
            "content": {JSON: {"schema": schema, "example": example}}}


class Ahead(NamedTuple):
    """An example timestamp that must stay in the future (a snooze's `until`): this long after the
    document is built, on the hour. The served document is rebuilt every REBUILD_AFTER seconds, so
    the example is always between `delta - REBUILD_AFTER` and `delta` ahead."""
    delta: timedelta


def _resolve_examples(value: Any, now: datetime) -> Any:
    """`value` with every Ahead replaced by its RFC 3339 timestamp."""
    if isinstance(value, Ahead):
        return (now.replace(minute=0, second=0, microsecond=0) + value.delta).strftime("%Y-%m-%dT%H:%M:%SZ")
    if isinstance(value, dict):
        return {key: _resolve_examples(item, now) for key, item in value.items()}
    if isinstance(value, list):
        return [_resolve_examples(item, now) for item in value]
    return value


def links_from(pointer: str) -> dict:
    """OpenAPI links from a response holding a notification id to the per-notification operations."""
    parameters = {"notification_id": f"$response.body#{pointer}"}
    return {
        name: {"operationId": operation_id, "parameters": parameters}
        for name, operation_id in (("GetNotification", "getNotification"),
                                   ("MarkRead", "markNotificationRead"),
                                   ("MarkUnread", "markNotificationUnread"),
                                   ("ArchiveOrDelete", "deleteNotification"))
    }


USER = [{"bearerAuth": []}]
SERVICE = [{"serviceToken": []}]
# The problems of an operation that requires a credential, by what it takes (see `_errors`).
CREDENTIAL_ERRORS = (401, 403, 422, 429, 500, 503)  # 422: each validates its query, if nothing else
BODY_ERRORS = (400, 413, 415)
PATH_ID_ERRORS = (404,)
NO_QUERY = "Any query parameter is `422`."  # said of an operation with a body or an empty query schema


# ---- docs beside the views -----------------------------------------------------------------

DOCS_ATTRIBUTE = "openapi_operations"  # on a view: {method or None (any): Operation}
# a rule's argument -> its parameter component
PATH_PARAMETERS = {"notification_id": "NotificationId", "subscription_id": "SubscriptionId"}
METHODS = ("get", "put", "post", "delete", "patch")  # documented, in this order; HEAD and OPTIONS never


class Operation(NamedTuple):
    """One documented operation, as a view declares it; `_operation` makes it OpenAPI."""
    operation_id: str
    summary: str
    responses: Mapping[int, dict]
    description: str | None = None  # `{prefix}` in it becomes the API prefix; NO_QUERY is added
    tag: str = "notifications"
    security: list = USER
    errors: tuple[int, ...] = ()  # problem statuses beyond those `_errors` derives
    query: Any = None  # the schema the view loads its query with (one without fields: none taken)
    query_docs: Mapping[str, str] = {}  # a description for each of its fields
    parameters: tuple = ()  # component names or parameter objects, after the path and query ones
    request: dict | None = None  # the request body (see `body`)
    schemas: Mapping[str, dict] = {}  # component schemas it names only in words (an event stream's events)


def doc(operation_id: str, summary: str, *, method: str | None = None,
        **details: Any) -> Callable[[Callable], Callable]:
    """Attach an OpenAPI operation to a view (`method`: one method of a route that takes several).

    The view itself is returned: nothing runs per request."""
    operation = Operation(operation_id, summary, **details)

    def attach(view: Callable) -> Callable:
        setattr(view, DOCS_ATTRIBUTE, {**getattr(view, DOCS_ATTRIBUTE, {}), method: operation})
        return view
    return attach


def _operation(documented: Operation, rule: Rule, prefix: str, converter: Any, now: datetime) -> dict:
    """The OpenAPI operation object (a fresh copy: apispec rewrites what it is given)."""
    query = []
    if documented.query is not None:
        query = converter.schema2parameters(documented.query, location="query")
    for parameter in query:
        parameter["description"] = documented.query_docs[parameter["name"]]
    operation: dict[str, Any] = {"operationId": documented.operation_id, "tags": [documented.tag],
                                 "security": documented.security, "summary": documented.summary}
    description = [documented.description.replace("{prefix}", prefix)] if documented.description else []
    if documented.request is not None or (documented.query is not None and not query):
        description.append(NO_QUERY)  # (API.md: endpoints that take a body take no query parameter)
    if description:
        operation["description"] = " ".join(description)
    parameters = [PATH_PARAMETERS[name] for name in sorted(rule.arguments)] + query
    operation["parameters"] = [*parameters, *documented.parameters, "X-Request-ID"]
    if documented.request is not None:
        operation["requestBody"] = documented.request
    operation["responses"] = {**{str(status): response for status, response in documented.responses.items()},
                              **_problems(*_errors(documented, rule), *EVERY_OPERATION)}
    return _resolve_examples(copy.deepcopy(operation), now)


def _errors(documented: Operation, rule: Rule) -> list[int]:
    """Its problem statuses: those of a required credential, of a body, of a path id, plus its own."""
    statuses = set(documented.errors)
    if documented.security and all(documented.security):  # ([] or an empty requirement: optional)
        statuses.update(CREDENTIAL_ERRORS)
        if documented.request is not None:
            statuses.update(BODY_ERRORS)
        if rule.arguments & PATH_PARAMETERS.keys():
            statuses.update(PATH_ID_ERRORS)
    return sorted(statuses)


# Routes whose views are not in views/: /metrics (metrics.py) and the Swagger UI page (the library's
# blueprint, whose view also serves the page's assets under /docs/, which are not operations).
OTHER_ROUTES: dict[str, Operation] = {
    "/metrics": Operation(
        "getMetrics", "Prometheus metrics, aggregated over all workers", tag="operations",
        security=[{}, {"metricsToken": []}],
        description="Requires `Authorization: Bearer <METRICS_TOKEN>` when METRICS_TOKEN is set.",
        responses={200: plain("Prometheus text exposition format.", "text/plain"),
                   401: _ref("responses", "MetricsUnauthorized")},
        errors=(429,)),
    DOCS_URL: Operation(
        "getDocs", "Swagger UI, served from local assets (only with ENABLE_DOCS)", tag="operations",
        security=[], responses={200: plain("The Swagger UI page.", "text/html")}, errors=(429,)),
}


def _documented_routes(app: Flask) -> Iterator[tuple[Rule, dict[str | None, Operation]]]:
    """Each rule of the app with the operations its view documents (rules without any are left out)."""
    for rule in app.url_map.iter_rules():
        documented = getattr(app.view_functions[rule.endpoint], DOCS_ATTRIBUTE, None)
        if documented is None and rule.rule in OTHER_ROUTES:
            documented = {None: OTHER_ROUTES[rule.rule]}
        if documented:
            yield rule, documented


def _requiring(*groups: tuple[str, ...]) -> list[dict]:
    """`oneOf`/`anyOf` branches: each requires one group of fields."""
    return [{"required": list(group)} for group in groups]


# Constraints a marshmallow field cannot state (validates_schema rules), added to the generated schemas,
# in words and as JSON Schema. An "exactly one of" / "at least one of" rule sits inside `allOf`, beside
# the object's properties: a top-level oneOf/anyOf makes client generators (openapi-python-client)
# give the body up as `Any`, while one object with every field plus an `allOf` keeps the model typed.
REFINEMENTS: dict[str, dict[str, Any]] = {
    "CreateNotification": {
        "description": "Exactly one of `user_id` and `user_ids` (else 422).",
        "allOf": [{"oneOf": _requiring(("user_id",), ("user_ids",))}],
        "properties": {
            "user_id": {"description": "The one recipient. Exactly one of `user_id` and `user_ids`."},
            "user_ids": {"uniqueItems": True,
                         "description": "Fan-out to many recipients, each once. Exactly one of `user_id` and "
                                        "`user_ids`."},
            "action_url": {"format": "uri", "pattern": "^[Hh][Tt][Tt][Pp][Ss]?://"},
            "payload": {"description": "A JSON object, at most "
                                       f"{schemas.MAX_PAYLOAD_BYTES // 1024} KiB serialized."},
            "expires_at": {"description": "Must be in the future."},
            "priority": {"description": "Defaults to `normal`."},
        },
    },
    "MarkRead": {
        "description": "At least one selector: `notification_ids`, `notification_type` or `all: true` "
                       "(else 422); they combine as AND. `before` narrows them but is not a selector alone.",
        "allOf": [{"anyOf": [*_requiring(("notification_ids",), ("notification_type",)),
                             {"required": ["all"], "properties": {"all": {"const": True}}}]}],
        "properties": {
            "notification_ids": {"description": "A selector: these notifications (others' ids are skipped)."},
            "notification_type": {"description": "A selector: notifications of this type."},
            "all": {"description": "A selector when `true`: every notification. `false` is the same as "
                                   "leaving it out."},
            "before": {"description": "Only notifications delivered at or before this time."},
        },
    },
    "Bulk": {
        "description": "`action` and at least one selector: `notification_ids`, `notification_type`, "
                       "`group_key`, `status` or `all: true` (else 422); selectors combine as AND. "
                       "`before` narrows them but is not a selector alone.",
        "allOf": [{"anyOf": [*_requiring(("notification_ids",), ("notification_type",), ("group_key",),
                                         ("status",)),
                             {"required": ["all"], "properties": {"all": {"const": True}}}]}],
    },
    "Snooze": {"properties": {"until": {
        "description": "At least 60 s and at most 90 days ahead, not after the notification's expires_at."}}},
    "Retract": {
        "description": "Exactly one of `dedupe_key` or the pair `target_type` + `target_id` (else 422); "
                       "`notification_type`, `actor_user_id` and `user_ids` narrow.",
        "allOf": [{"oneOf": _requiring(("dedupe_key",), ("target_type", "target_id"))}],
        "dependentRequired": {"target_type": ["target_id"], "target_id": ["target_type"]},
    },
    "QuietHours": {"description": "`start` and `end` are HH:MM (24 h) and must differ; `timezone` is an "
                                  "IANA name such as Europe/Amsterdam.",
                   "properties": {"timezone": {"minLength": 1}}},
    "Problem": {"description": "RFC 9457 problem document."},
}


# Response objects whose every property the server always sends (null where nullable): all required,
# so generated clients type them as present.
ALWAYS_COMPLETE = ("Notification",)


def _refine(components: dict[str, dict]) -> None:
    for name in ALWAYS_COMPLETE:
        components[name]["required"] = list(components[name]["properties"])
    for name, rules in REFINEMENTS.items():
        schema = components[name]
        for key, value in rules.items():
            if key == "properties":
                for prop, extra in value.items():
                    schema["properties"][prop].update(extra)
            else:
                schema[key] = value


_RULE_ARG = re.compile(r"<(?:[^<>:]+:)?([^<>]+)>")


def build_spec(app: Flask, now: datetime | None = None) -> dict[str, Any]:
    """The OpenAPI document for this app: the operations its routes' views document (see `doc`);
    examples that must lie ahead are computed from `now` (default: the current time)."""
    config = app.config
    now = now or datetime.now(timezone.utc)
    plugin = MarshmallowPlugin()
    try:
        version = metadata.version("notifications-api")
    except metadata.PackageNotFoundError:
        version = "0.0.0"
    spec = APISpec(
        title=config["PROJECT_NAME"], version=version, openapi_version=OPENAPI_VERSION,
        plugins=[plugin],
        info={"description": _description()},
        tags=[{"name": "notifications", "description": "The end user's notifications (JWT)."},
              {"name": "settings", "description": "The end user's notification preferences (JWT)."},
              {"name": "push", "description": "Web Push: the browsers of the end user (JWT; docs/PUSH.md)."},
              {"name": "internal", "description": "For internal services (service token)."},
              {"name": "operations",
               "description": "Health, metrics and these docs (not under the prefix)."}],
    )
    _plugin(spec, plugin)
    for name, schema in (
        ("Notification", schemas.NotificationSchema), ("NotificationList", schemas.NotificationListSchema),
        ("UnreadCount", schemas.UnreadCountSchema), ("MarkReadResult", schemas.MarkReadResultSchema),
        ("CreateResult", schemas.CreateResultSchema), ("CreateResponse", schemas.CreateResponseSchema),
        ("ChannelPreferences", schemas.ChannelPreferencesSchema), ("QuietHours", schemas.QuietHoursSchema),
        ("Settings", schemas.SettingsSchema), ("Problem", schemas.ProblemSchema),
        ("Health", schemas.HealthSchema), ("Index", schemas.IndexSchema),
        ("CreateNotification", schemas.CreateNotificationSchema),
        ("MarkRead", schemas.MarkReadSchema), ("SettingsPatch", schemas.SettingsPatchSchema),
    ):
        spec.components.schema(name, schema=schema)
    spec.components.security_scheme("bearerAuth", {
        "type": "http", "scheme": "bearer", "bearerFormat": "JWT",
        "description": "A user JWT from the Auth API (HS256 by default; `exp` required, `sub` is the user's "
                       "UUID). An unknown user is 401 user_not_found, an inactive one 403 user_inactive."})
    spec.components.security_scheme("serviceToken", {
        "type": "apiKey", "in": "header", "name": "X-Service-Token",
        "description": "The internal SERVICE_TOKEN. `Authorization: Bearer <SERVICE_TOKEN>` is accepted "
                       "too. During rotation SERVICE_TOKEN_PREVIOUS also works."})
    spec.components.security_scheme("metricsToken", {
        "type": "http", "scheme": "bearer",
        "description": "METRICS_TOKEN; required by /metrics only when it is configured."})
    for name, header in HEADERS.items():
        spec.components.header(name, header)
    for name, parameter in PARAMETERS.items():
        spec.components.parameter(name, parameter["in"], {k: v for k, v in parameter.items() if k != "in"})
    for status in PROBLEMS:
        spec.components.response(PROBLEMS[status][0],
                                 _uri_too_long_response() if status == 414 else _problem_response(status))
    metrics_401 = _problem_response(401)
    metrics_401["description"] = "METRICS_TOKEN is set and the bearer token is missing or wrong. " \
                                 "Codes: `missing_token`, `invalid_token`."
    metrics_401["content"][PROBLEM]["example"]["detail"] = \
        "An Authorization: Bearer <METRICS_TOKEN> header is required."
    spec.components.response("MetricsUnauthorized", metrics_401)

    spec.components.security_scheme("streamTicket", {
        "type": "apiKey", "in": "query", "name": "ticket",
        "description": "A stream ticket from createStreamTicket (the stream endpoint only)."})
    prefix = config["API_V1_PREFIX"]
    paths: dict[str, dict[str, dict]] = {}
    for rule, documented in _documented_routes(app):
        path = _RULE_ARG.sub(r"{\1}", rule.rule)
        for method in METHODS:
            operation = documented.get(method, documented.get(None))
            if method.upper() in rule.methods and operation is not None:
                paths.setdefault(path, {})[method] = _operation(operation, rule, prefix, plugin.converter,
                                                                now)
                for name, schema in operation.schemas.items():
                    if name not in spec.components.schemas:
                        spec.components.schema(name, copy.deepcopy(schema))
    for path, operations in paths.items():
        spec.path(path=path, operations=operations)
    document = spec.to_dict()
    _refine(document["components"]["schemas"])
    return document


REBUILD_AFTER = 24 * 3600  # seconds: keeps Ahead examples ahead in a long-running worker


class _Document:
    """The spec of one app, built on first use (after every blueprint is registered), then reused
    for REBUILD_AFTER seconds."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._body: bytes | None = None
        self._spec: dict[str, Any] | None = None
        self._built = 0.0

    def get(self, app: Flask) -> tuple[dict[str, Any], bytes]:
        with self._lock:
            if self._spec is None or time.monotonic() - self._built > REBUILD_AFTER:
                self._spec = build_spec(app)
                self._body = dumps(self._spec)
                self._built = time.monotonic()
            return self._spec, self._body


def spec_for(app: Flask) -> dict[str, Any]:
    """The cached document of an app with docs enabled."""
    return app.extensions[EXTENSION].get(app)[0]


@doc("getOpenAPI", "This document (only with ENABLE_DOCS)", tag="operations", security=[],
     responses={200: plain("The OpenAPI document.", JSON, "object")}, errors=(429,))
def openapi_json() -> Response:
    app = current_app._get_current_object()
    return Response(app.extensions[EXTENSION].get(app)[1], mimetype=JSON)


# ---- Swagger UI at /docs --------------------------------------------------------------------
# flask-swagger-ui's blueprint serves Swagger UI's files under /docs/; the page is this module's: no
# inline script (its settings are JSON data, read by swagger-init.js), so its CSP runs only this
# origin's files. Swagger UI inserts a <style> element (hence the inline styles) and its stylesheet
# draws icons from data: URIs.
DOCS_SCRIPT = "swagger-init.js"
DOCS_CSP = ("default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
            "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
DOCS_PREAUTHORIZE = "openapi_docs_preauthorize"  # app.extensions: see preauthorize_docs
USER_SCHEME = "bearerAuth"  # the user JWT's security scheme
PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="UTF-8">
  <title>{title}</title>
  <link rel="stylesheet" type="text/css" href="{docs}/index.css">
  <link rel="stylesheet" type="text/css" href="{docs}/swagger-ui.css">
  <link rel="icon" type="image/png" href="{docs}/favicon-32x32.png" sizes="32x32">
  <link rel="icon" type="image/png" href="{docs}/favicon-16x16.png" sizes="16x16">
</head>
<body>
  <div id="swagger-ui"></div>
  <script type="application/json" id="swagger-ui-settings">{settings}</script>
  <script src="{docs}/swagger-ui-bundle.js"></script>
  <script src="{docs}/swagger-ui-standalone-preset.js"></script>
  <script src="{docs}/{script}"></script>
</body>
</html>
"""


def preauthorize_docs(app: Flask, token_url: str) -> None:
    """Have Swagger UI start authorized as a user: when /docs loads, its page POSTs to `token_url`
    (same origin, answering `{"token": <user JWT>}`) and sets the token on bearerAuth. Only for a
    development-only token endpoint: views/ui.py's demo, under ENABLE_UI_DEMO (refused in production).
    The page carries the URL, never a token."""
    app.extensions[DOCS_PREAUTHORIZE] = {"scheme": USER_SCHEME, "token_url": token_url}


def _json_in_html(value: Any) -> str:
    """JSON safe inside a <script> data block (no `</script>`, no `<!--`)."""
    return json.dumps(value).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _docs_views(app: Flask, files: Callable[..., Response]) -> Callable[..., Response]:
    """docs.show: the page (/docs, /docs/, /docs/index.html), swagger-init.js, else Swagger UI's files."""
    script_body = resources.files(__package__).joinpath("docs_assets", DOCS_SCRIPT).read_bytes()
    script_etag = hashlib.sha256(script_body).hexdigest()[:32]
    config = {"dom_id": "#swagger-ui", "url": SPEC_URL, "layout": "StandaloneLayout", "deepLinking": True,
              "validatorUrl": None, "oauth2RedirectUrl": f"{DOCS_URL}/oauth2-redirect.html",
              "displayRequestDuration": True}
    title = escape(f"{app.config['PROJECT_NAME']} - API docs")

    def show(path: str | None = None) -> Response:
        if not path or path == "index.html":
            settings = _json_in_html({"config": config,
                                      "preauthorize": current_app.extensions.get(DOCS_PREAUTHORIZE)})
            page = PAGE.format(title=title, docs=DOCS_URL, script=DOCS_SCRIPT, settings=settings)
            response = Response(page, content_type="text/html; charset=utf-8")
            response.headers["Content-Security-Policy"] = DOCS_CSP
            return response
        if path == DOCS_SCRIPT:
            response = Response(script_body, content_type="text/javascript; charset=utf-8")
            response.set_etag(script_etag)
            return response.make_conditional(request)
        return files(path=path)

    return show


def init_app(app: Flask) -> None:
    """Serve /openapi.json and /docs only when ENABLE_DOCS; otherwise they stay unrouted (404 problem)."""
    if not app.config["ENABLE_DOCS"]:
        return
    app.extensions[EXTENSION] = _Document()
    app.add_url_rule(SPEC_URL, "openapi_json", openapi_json, methods=["GET"])
    app.register_blueprint(get_swaggerui_blueprint(DOCS_URL, SPEC_URL, blueprint_name="docs"))
    # The blueprint's routes (/docs/, /docs/<path>) keep their endpoint (ratelimit.py knows it), with
    # this module's page and script in front of its files; the page is served at /docs too (no redirect).
    app.view_functions["docs.show"] = _docs_views(app, app.view_functions["docs.show"])
    app.add_url_rule(DOCS_URL, "docs.show", methods=["GET"])
