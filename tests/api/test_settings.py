"""Endpoints 8 and 9: settings with merge semantics."""
import pytest

from test_errors import assert_problem

P = "/api/v1/notifications/settings"
DEFAULTS = {"in_app_enabled": True, "email_enabled": True, "push_enabled": True,
            "type_preferences": {}, "quiet_hours": None, "updated_at": None,
            "email_digest": {"frequency": "batched", "at": None, "timezone": None}}


def test_defaults(client, user, user_headers):
    response = client.get(P, headers=user_headers(user))
    assert response.status_code == 200
    assert response.get_json() == DEFAULTS


def test_patch_merges(client, user, user_headers):
    h = user_headers(user)
    first = client.patch(P, json={"email_enabled": False,
                                  "type_preferences": {"comment": {"email": False},
                                                       "reaction": {"in_app": False, "email": False}},
                                  "quiet_hours": {"start": "22:00", "end": "07:00",
                                                  "timezone": "Europe/Amsterdam"}}, headers=h)
    assert first.status_code == 200, first.get_json()
    body = first.get_json()
    assert body["email_enabled"] is False and body["in_app_enabled"] is True
    assert body["quiet_hours"] == {"start": "22:00", "end": "07:00", "timezone": "Europe/Amsterdam"}
    assert body["updated_at"].endswith("Z")
    second = client.patch(P, json={"type_preferences": {"comment": {"push": False}, "reaction": None}},
                          headers=h).get_json()
    assert second["type_preferences"] == {"comment": {"email": False, "push": False}}
    assert second["email_enabled"] is False
    third = client.patch(P, json={"quiet_hours": None}, headers=h).get_json()
    assert third["quiet_hours"] is None
    assert client.get(P, headers=h).get_json() == third


@pytest.mark.parametrize("patch", [
    {"in_app_enabled": None}, {"email_enabled": "false"}, {"unknown": True},
    {"type_preferences": {"comment": {"sms": False}}}, {"type_preferences": {"comment": {"email": None}}},
    {"type_preferences": {"Bad Type": {"email": False}}},
    {"type_preferences": {f"t{i}": {"email": False} for i in range(201)}},
    {"quiet_hours": {"start": "22:00", "end": "07:00", "timezone": "Mars/Olympus"}},
    {"quiet_hours": {"start": "24:00", "end": "07:00", "timezone": "UTC"}},
    {"quiet_hours": {"start": "7:00", "end": "08:00", "timezone": "UTC"}},
    {"quiet_hours": {"start": "07:00", "end": "07:00", "timezone": "UTC"}},
    {"quiet_hours": {"start": "07:00", "timezone": "UTC"}},
    {"quiet_hours": {"start": "22:00", "end": "07:00", "timezone": "localtime"}},
    {"quiet_hours": {"start": "22:00", "end": "07:00", "timezone": "Factory"}},
])
def test_patch_validation(client, user, user_headers, patch):
    assert_problem(client.patch(P, json=patch, headers=user_headers(user)), 422, "validation_error")


def test_timezone_error_path(client, user, user_headers):
    patch = {"quiet_hours": {"start": "22:00", "end": "07:00", "timezone": "Nowhere/Land"}}
    problem = assert_problem(client.patch(P, json=patch, headers=user_headers(user)), 422, "validation_error")
    assert "quiet_hours.timezone" in problem["errors"]


def test_object_level_error_keeps_its_path(client, user, user_headers):
    problem = assert_problem(client.patch(P, json={"type_preferences": {"comment": True}},
                                          headers=user_headers(user)), 422, "validation_error")
    assert list(problem["errors"]) == ["type_preferences.comment"]
