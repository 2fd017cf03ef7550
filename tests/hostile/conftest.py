"""Hostile-input fixtures: the app fixtures of tests/api (real app, shared migrated database)."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from hostile_helpers import PREFIX

_spec = importlib.util.spec_from_file_location(
    "api_fixtures_for_hostile", Path(__file__).resolve().parents[1] / "api" / "conftest.py")
_api = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_api)

app_config, app, client, user_headers, service_headers, user = (
    _api.app_config, _api.app, _api.client, _api.user_headers, _api.service_headers, _api.user)


@pytest.fixture
def notification(client, service_headers, user):
    response = client.post(f"{PREFIX}/notifications", headers=service_headers,
                           json={"user_id": user, "notification_type": "comment", "title": "target"})
    assert response.status_code == 201
    return response.get_json()["results"][0]["notification"]
