"""Request and response helpers shared by the views: body/query loading, JSON, ETags."""
from __future__ import annotations

import hashlib
import json
from typing import Any

from flask import Response, request
from marshmallow import Schema, ValidationError

from .errors import ApiError, validation_error
from .schemas import EmptyQuerySchema, flatten_errors


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not valid JSON")


def read_json() -> Any:
    """The body as JSON: content type (415), size (413), syntax (400) — before any 422."""
    if request.mimetype != "application/json":
        raise ApiError(415, "unsupported_media_type", "The request body must be application/json.")
    raw = request.get_data(cache=True)  # 413 is raised here when over MAX_CONTENT_LENGTH
    try:
        data = json.loads(raw, parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        raise ApiError(400, "invalid_json", "The request body is not valid JSON.") from None
    return data


def load_body(schema: Schema) -> dict[str, Any]:
    """For the endpoints that take a body and no query: the body's bytes (415/413/400) first,
    then any query parameter (unknown: 422), then the body's content (422)."""
    data = read_json()
    load_query(_NO_QUERY)
    return load(schema, data)


def load(schema: Schema, data: Any) -> dict[str, Any]:
    try:
        return schema.load(data)
    except ValidationError as exc:
        raise validation_error(flatten_errors(exc.messages)) from None


def load_query(schema: Schema, multi: tuple[str, ...] = ()) -> dict[str, Any]:
    """Query parameters through a schema; a repeated parameter is an error unless listed in multi."""
    if not request.args:  # the common case: the schema's defaults, computed once per schema
        return dict(_defaults(schema))
    data: dict[str, Any] = {}
    errors: dict[str, list[str]] = {}
    for key in request.args.keys():
        values = request.args.getlist(key)
        if key in multi:
            data[key] = values
        elif len(values) > 1:
            errors[key] = ["Only one value is allowed."]
        else:
            data[key] = values[0]
    if errors:
        raise validation_error(errors)
    return load(schema, data)


_DEFAULTS: dict[int, dict[str, Any]] = {}
_NO_QUERY = EmptyQuerySchema()


def _defaults(schema: Schema) -> dict[str, Any]:
    defaults = _DEFAULTS.get(id(schema))
    if defaults is None:
        defaults = _DEFAULTS[id(schema)] = schema.load({})
    return defaults


def dumps(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def json_response(obj: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(dumps(obj), status=status, headers=headers, mimetype="application/json")


def etag_for(body: bytes) -> str:
    return '"' + hashlib.blake2b(body, digest_size=12).hexdigest() + '"'


def _if_none_match() -> list[str]:
    """The entity tags in If-None-Match, weak prefixes dropped (["*"] for a star).

    Not Werkzeug's `request.if_none_match`: it accepts an unquoted tag as the tag (`v1.2.x` would
    match `"v1.2.x"`, a 304 where the tests pin a 200) and reads a padded ` * ` as a tag, not a star.
    """
    header = request.environ.get("HTTP_IF_NONE_MATCH")
    if not header:
        return []
    if header.strip() == "*":
        return ["*"]
    tags = []
    for candidate in header.split(","):
        candidate = candidate.strip()
        if candidate.startswith("W/"):
            candidate = candidate[2:]
        tags.append(candidate)
    return tags


def _if_none_match_hits(etag: str) -> bool:
    tags = _if_none_match()
    return tags == ["*"] or etag in tags


def version_etag(owner: str, version: int, count: int) -> str:
    """A strong ETag for state that (version, count) identifies for one owner, e.g. a user's unread
    counts: '"v<version>.<count>.<owner tag>"'. The owner tag keeps one user's tag from validating
    another user's copy (a shared browser cache keyed by URL)."""
    return _version_etag(version, count, _owner_tag(owner))


def _version_etag(version: int, count: int, owner_tag: str) -> str:
    return f'"v{version}.{count}.{owner_tag}"'


def known_version(owner: str) -> tuple[int, int] | None:
    """The (version, count) of the first If-None-Match tag that version_etag made for this owner."""
    owner_tag = None
    for tag in _if_none_match():
        if not (tag.startswith('"v') and tag.endswith('"') and len(tag) < 64):
            continue
        version, _, rest = tag[2:-1].partition(".")
        count, _, _ = rest.partition(".")
        if (version.isascii() and version.isdigit() and count.isascii() and count.isdigit()
                and len(version) <= 18 and len(count) <= 18):  # (both go to bigint parameters)
            pair = int(version), int(count)
            owner_tag = owner_tag or _owner_tag(owner)
            if _version_etag(*pair, owner_tag) == tag:  # exactly ours: the 304 carries the same tag
                return pair
    return None


def _owner_tag(owner: str) -> str:
    return hashlib.blake2b(owner.encode(), digest_size=6).hexdigest()


def not_modified_or_json(etag: str, obj: Any | None, headers: dict[str, str] | None = None) -> Response:
    """304 when If-None-Match holds `etag`, else 200 with `obj` as JSON; both carry the ETag."""
    all_headers = {"ETag": etag, **(headers or {})}
    if _if_none_match_hits(etag):
        return Response(status=304, headers=all_headers)
    return Response(dumps(obj), status=200, headers=all_headers, mimetype="application/json")


def conditional_json(obj: Any, headers: dict[str, str] | None = None) -> Response:
    """200 with a strong ETag, or 304 with the same ETag (and headers) when If-None-Match matches."""
    body = dumps(obj)
    etag = etag_for(body)
    all_headers = {"ETag": etag, **(headers or {})}
    if _if_none_match_hits(etag):
        return Response(status=304, headers=all_headers)
    return Response(body, status=200, headers=all_headers, mimetype="application/json")
