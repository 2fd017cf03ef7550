"""Settings 8/9, `email_digest` (issue 25): batched or daily, replaced whole, errors keyed by path."""
import pytest

from test_errors import assert_problem

P = "/api/v1/notifications/settings"
BATCHED = {"frequency": "batched", "at": None, "timezone": None}
DAILY = {"frequency": "daily", "at": "08:30", "timezone": "Europe/Amsterdam"}


def test_batched_until_set_then_daily_then_null_restores(client, user, user_headers):
    h = user_headers(user)
    assert client.get(P, headers=h).get_json()["email_digest"] == BATCHED
    response = client.patch(P, json={"email_digest": DAILY}, headers=h)
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["email_digest"] == DAILY
    assert client.get(P, headers=h).get_json()["email_digest"] == DAILY
    other = client.patch(P, json={"email_enabled": False}, headers=h).get_json()  # other fields keep it
    assert other["email_digest"] == DAILY
    assert client.patch(P, json={"email_digest": None}, headers=h).get_json()["email_digest"] == BATCHED
    assert client.patch(P, json={"email_digest": {"frequency": "batched"}},
                        headers=h).get_json()["email_digest"] == BATCHED


@pytest.mark.parametrize("digest, path", [
    ({"frequency": "daily", "timezone": "UTC"}, "email_digest.at"),
    ({"frequency": "daily", "at": None, "timezone": "UTC"}, "email_digest.at"),
    ({"frequency": "daily", "at": "8:30", "timezone": "UTC"}, "email_digest.at"),
    ({"frequency": "daily", "at": "24:00", "timezone": "UTC"}, "email_digest.at"),
    ({"frequency": "daily", "at": "08:30"}, "email_digest.timezone"),
    ({"frequency": "daily", "at": "08:30", "timezone": "Mars/Olympus"}, "email_digest.timezone"),
    ({"frequency": "batched", "at": "08:30", "timezone": None}, "email_digest.at"),
    ({"frequency": "batched", "timezone": "UTC"}, "email_digest.timezone"),
    ({"frequency": "hourly"}, "email_digest.frequency"),
    ({"at": "08:30", "timezone": "UTC"}, "email_digest.frequency"),
    ({"frequency": "daily", "at": "08:30", "timezone": "UTC", "weekdays": [1]}, "email_digest.weekdays"),
    ("daily", "email_digest"),
])
def test_validation_is_keyed_by_path(client, user, user_headers, digest, path):
    problem = assert_problem(client.patch(P, json={"email_digest": digest}, headers=user_headers(user)),
                             422, "validation_error")
    assert path in problem["errors"], problem["errors"]
    assert client.get(P, headers=user_headers(user)).get_json()["email_digest"] == BATCHED  # nothing changed
