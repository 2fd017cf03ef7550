"""docs/openapi.json, the contract kept in the repository, is exactly what the service serves."""
from __future__ import annotations

import json
from pathlib import Path

from notifications_api.ops.cli_docs import SNAPSHOT, reference_document, render

ROOT = Path(__file__).resolve().parents[2]
REGENERATE = "docs/openapi.json is out of date with the code: regenerate it with `make openapi` and commit it"


def test_snapshot_is_the_document_the_code_builds():
    assert (ROOT / SNAPSHOT).read_text(encoding="utf-8") == render(reference_document()), REGENERATE


def test_snapshot_is_what_the_app_serves(client):
    """The tests' app (other settings, but the default prefix and name) serves the same document."""
    served = client.get("/openapi.json")
    assert served.status_code == 200
    assert served.get_json() == json.loads((ROOT / SNAPSHOT).read_text(encoding="utf-8")), REGENERATE
