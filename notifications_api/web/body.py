"""The request's JSON body and query string, loaded through marshmallow schemas (415/413/400, then 422)."""
from __future__ import annotations

import json
from typing import Any

from flask import request
from marshmallow import Schema, ValidationError

from ..errors import ApiError, validation_error
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
