"""JSON response bodies: compact UTF-8, the one encoding every view and the spec use."""
from __future__ import annotations

import json
from typing import Any

from flask import Response


def dumps(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def json_response(obj: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(dumps(obj), status=status, headers=headers, mimetype="application/json")
