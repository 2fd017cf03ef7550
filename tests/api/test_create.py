"""Endpoint 7: creating notifications as an internal service."""
import uuid
from datetime import datetime, timedelta, timezone

import pytest

from test_errors import assert_problem

P = "/api/v1/notifications"


def post(client, headers, body, **extra):
    return client.post(P, json=body, headers={**headers, **extra})


def base(user_id, **fields):
    return {"user_id": user_id, "notification_type": "comment", "title": "Ana commented", **fields}


def test_single_create(client, service_headers, user):
    response = post(client, service_headers, base(user, priority="high"))
    assert response.status_code == 201
    body = response.get_json()
    assert body["created_count"] == 1
    result = body["results"][0]
    assert result["user_id"] == user and result["result"] == "created"
    assert result["notification"]["priority"] == "high"
    assert response.headers["Location"] == f"http://localhost{P}/{result['notification']['notification_id']}"
    assert "Idempotent-Replayed" not in response.headers


def test_fan_out_reports_each_user(client, service_headers, user_headers, make_user):
    active, inactive, ghost = make_user(), make_user(active=False), str(uuid.uuid4())
    muted = make_user()
    patch = {"type_preferences": {"comment": {"in_app": False}}}
    assert client.patch(f"{P}/settings", json=patch, headers=user_headers(muted)).status_code == 200
    body = {"user_ids": [active, inactive, ghost, muted], "notification_type": "comment", "title": "t"}
    response = post(client, service_headers, body)
    assert response.status_code == 201
    results = response.get_json()["results"]
    assert [(r["user_id"], r["result"]) for r in results] == [
        (active, "created"), (inactive, "user_inactive"), (ghost, "user_not_found"), (muted, "suppressed")]
    assert [r["notification"] is None for r in results] == [False, True, True, True]
    assert response.get_json()["created_count"] == 1
    assert "Location" not in response.headers


def test_nothing_created_is_200(client, service_headers):
    response = post(client, service_headers, base(str(uuid.uuid4())))
    assert response.status_code == 200
    assert response.get_json()["created_count"] == 0


def test_dedupe_key_replay(client, service_headers, user):
    first = post(client, service_headers, base(user, dedupe_key="comment-9"))
    again = post(client, service_headers, base(user, dedupe_key="comment-9", title="changed"))
    assert first.status_code == 201 and again.status_code == 200
    assert again.headers["Idempotent-Replayed"] == "true"
    original = first.get_json()["results"][0]["notification"]
    assert again.get_json()["results"][0] == {"user_id": user, "result": "duplicate",
                                              "notification": original}


def test_idempotency_key_header(client, service_headers, user):
    first = post(client, service_headers, base(user), **{"Idempotency-Key": "k-1"})
    second = post(client, service_headers, base(user, dedupe_key="k-1"))
    assert first.status_code == 201 and second.status_code == 200
    assert second.get_json()["results"][0]["result"] == "duplicate"
    mismatch = post(client, service_headers, base(user, dedupe_key="a"), **{"Idempotency-Key": "b"})
    assert_problem(mismatch, 422, "validation_error")


def in_past():
    return (datetime.now(timezone.utc) - timedelta(minutes=1)).isoformat()


@pytest.mark.parametrize("change", [
    {"notification_type": "Bad"}, {"notification_type": "a" * 65}, {"title": ""}, {"title": "x" * 201},
    {"message": "x" * 2001}, {"action_url": "javascript:alert(1)"}, {"action_url": "ftp://x.example.com"},
    {"payload": []}, {"payload": {"x": "y" * 17000}}, {"priority": "critical"},
    {"expires_at": "2030-01-01T00:00:00"}, {"dedupe_key": "k" * 129}, {"unknown": 1},
    {"title": "nul\u0000byte"}, {"title": "\ud800"}, {"payload": {"x": "\u0000"}},
    {"actor_user_id": "nope"}, {"title": 5},
])
def test_create_validation(client, service_headers, user, change):
    body = {**base(user), **change}
    assert_problem(post(client, service_headers, body), 422, "validation_error")


def test_expires_at_must_be_future(client, service_headers, user):
    problem = assert_problem(post(client, service_headers, base(user, expires_at=in_past())),
                             422, "validation_error")
    assert "expires_at" in problem["errors"]


def test_exactly_one_target(client, service_headers, user):
    assert_problem(post(client, service_headers, {"notification_type": "comment", "title": "t"}),
                   422, "validation_error")
    both = {**base(user), "user_ids": [user]}
    assert_problem(post(client, service_headers, both), 422, "validation_error")
    assert_problem(post(client, service_headers, {"user_ids": [], "notification_type": "c", "title": "t"}),
                   422, "validation_error")
    too_many = {"user_ids": [str(uuid.uuid4()) for _ in range(1001)], "notification_type": "c", "title": "t"}
    assert_problem(post(client, service_headers, too_many), 422, "validation_error")


def test_bad_user_id_path(client, service_headers):
    body = {"user_ids": [str(uuid.uuid4()), "x"], "notification_type": "c", "title": "t"}
    problem = assert_problem(post(client, service_headers, body), 422, "validation_error")
    assert "user_ids.1" in problem["errors"]


@pytest.mark.parametrize("expires_at", ["9999-12-31T23:30:00-02:00", "9999-12-31T23:59:59.5+00:00"])
def test_expires_at_beyond_year_9999_is_refused(client, service_headers, user, user_headers, expires_at):
    problem = assert_problem(post(client, service_headers, base(user, expires_at=expires_at)),
                             422, "validation_error")
    assert "expires_at" in problem["errors"]
    assert client.get(P, headers=user_headers(user)).status_code == 200


def test_location_is_absolute(client, service_headers, user):
    response = post(client, service_headers, base(user))
    assert response.headers["Location"].startswith("http://localhost/api/v1/notifications/")


def _payload_of(size: int) -> dict:
    """A payload of many short keys that is exactly `size` bytes as compact JSON (jsonb's own text
    form, with a space after every ':' and ',', is ~25% longer)."""
    import json
    payload = {f"k{n:04d}": 0 for n in range((size - 20) // 10)}
    payload["pad"] = ""
    payload["pad"] = "x" * (size - len(json.dumps(payload, separators=(",", ":"))))
    assert len(json.dumps(payload, separators=(",", ":")).encode()) == size
    return payload


def test_the_payload_limit_is_one_measure_in_the_api_and_the_database(client, service_headers, user):
    """16 KiB serialized (API.md) as compact JSON, on both sides of the boundary: the database
    must not refuse with its own longer measure what the API's schema let through."""
    response = post(client, service_headers, base(user, payload=_payload_of(16 * 1024)))
    assert response.status_code == 201, response.get_json()
    assert len(response.get_json()["results"][0]["notification"]["payload"]) > 1600
    response = post(client, service_headers, base(user, payload=_payload_of(16 * 1024 + 1)))
    assert_problem(response, 422, "validation_error")
    assert "payload" in response.get_json()["errors"]


def test_a_retried_create_publishes_its_young_duplicate_again(app, client, service_headers, user, database):
    """A create that committed but whose answer was lost: the producer's retry gets `duplicate`, and
    the notification is published again (the first attempt may never have published it); an old
    duplicate (not a retry) is not."""
    import psycopg
    published = []
    extension = app.extensions["notifications_publisher"]
    original_changed = extension.changed
    extension.changed = lambda user_ids, notifications=(): published.append(
        [n["notification_id"] for n in notifications])
    try:
        first = post(client, service_headers, base(user, dedupe_key="lost-answer"))
        retry = post(client, service_headers, base(user, dedupe_key="lost-answer"))
        fan_out = post(client, service_headers, {"user_ids": [user], "notification_type": "comment",
                                                 "title": "Ana commented", "dedupe_key": "lost-answer"})
        with psycopg.connect(database.admin, autocommit=True) as conn:
            conn.execute("UPDATE activity.notifications SET created_at = created_at - interval '2 minutes'"
                         " WHERE user_id = %s AND dedupe_key = 'lost-answer'", (user,))
        old = post(client, service_headers, base(user, dedupe_key="lost-answer"))
    finally:
        extension.changed = original_changed
    notification_id = first.get_json()["results"][0]["notification"]["notification_id"]
    assert retry.get_json()["results"][0]["result"] == "duplicate"
    assert fan_out.status_code == 200, fan_out.get_json()
    assert old.get_json()["results"][0]["result"] == "duplicate"
    assert published == [[notification_id], [notification_id], [notification_id], []]
