"""docs/openapi.json, the contract kept in the repository, is exactly what the service serves."""
from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

from notifications_api.ops.cli_docs import SNAPSHOT, SNAPSHOT_INSTANT, reference_document, render
from notifications_api.web import openapi

ROOT = Path(__file__).resolve().parents[2]
REGENERATE = "docs/openapi.json is out of date with the code: regenerate it with `make openapi` and commit it"


def test_snapshot_is_the_document_the_code_builds():
    assert (ROOT / SNAPSHOT).read_text(encoding="utf-8") == render(reference_document()), REGENERATE


def test_snapshot_is_what_the_app_serves(client):
    """The tests' app (other settings, but the default prefix and name) serves the same document, but
    for the examples that must lie ahead: the server computes those from the current time."""
    served = client.get("/openapi.json")
    assert served.status_code == 200
    snapshot = json.loads((ROOT / SNAPSHOT).read_text(encoding="utf-8"))
    moving = _moving_paths(client.application)
    assert moving, "the snooze example (openapi.Ahead) is no longer found: update this test"
    assert _masked(served.get_json(), moving) == _masked(snapshot, moving), REGENERATE


def _moving_paths(app) -> set[tuple]:
    """Where the document changes with the time it is built: the Ahead examples."""
    one = openapi.build_spec(app, now=SNAPSHOT_INSTANT)
    other = openapi.build_spec(app, now=SNAPSHOT_INSTANT + timedelta(hours=1))
    paths: set[tuple] = set()

    def walk(a, b, path):
        if isinstance(a, dict) and isinstance(b, dict):
            for key in a.keys() & b.keys():
                walk(a[key], b[key], path + (key,))
        elif isinstance(a, list) and isinstance(b, list):
            for index, (x, y) in enumerate(zip(a, b)):
                walk(x, y, path + (index,))
        elif a != b:
            paths.add(path)

    walk(one, other, ())
    return paths


def _masked(document, paths: set[tuple], path: tuple = ()):
    if path in paths:
        return "<ahead>"
    if isinstance(document, dict):
        return {key: _masked(value, paths, path + (key,)) for key, value in document.items()}
    if isinstance(document, list):
        return [_masked(value, paths, path + (index,)) for index, value in enumerate(document)]
    return document
