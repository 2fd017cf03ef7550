"""Limits shared through Redis by two server processes; Redis stopped, restarted and frozen."""
from __future__ import annotations

import time

import pytest

from edge_helpers import wait_for

pytestmark = [pytest.mark.redis, pytest.mark.e2e]

COUNT = "/api/v1/notifications/unread/count"


def remaining(response) -> int:
    assert response.status == 200, (response.status, response.body)
    return int(response.headers["RateLimit-Remaining"])


def storage_state(server) -> str:
    response = server.get("/health")
    body = response.json()
    assert response.status == 200 and body["status"] == "ok", body  # degraded never fails /health
    return body["checks"]["rate_limit_storage"]


@pytest.fixture
def two_servers(start_server, redis_server):
    def start(**limits: str):
        settings = {"REDIS_HOST": "127.0.0.1", "REDIS_PORT": str(redis_server.port), **limits}
        return start_server(**settings), start_server(**settings)
    return start


def test_two_servers_share_one_budget(two_servers, make_user, bearer):
    first, second = two_servers(RATE_LIMIT_USER_READ="6/minute")
    headers = bearer(make_user())
    seen = [remaining((first if index % 2 == 0 else second).get(COUNT, headers)) for index in range(6)]
    assert seen == [5, 4, 3, 2, 1, 0]
    for server in (first, second):
        response = server.get(COUNT, headers)
        assert response.status == 429
        assert response.headers["Content-Type"] == "application/problem+json"
        assert response.json()["code"] == "rate_limited"
        assert 1 <= int(response.headers["Retry-After"]) <= 60
        assert response.headers["RateLimit-Limit"] == "6" and response.headers["RateLimit-Remaining"] == "0"
        assert 0 <= int(response.headers["RateLimit-Reset"]) <= 60
    assert remaining(second.get(COUNT, bearer(make_user()))) == 5  # another user's budget is whole


def test_redis_outage_falls_back_to_memory_and_recovers(two_servers, redis_server, make_user, bearer):
    first, second = two_servers(RATE_LIMIT_USER_READ="4/minute")
    headers = bearer(make_user())
    assert [remaining(first.get(COUNT, headers)), remaining(second.get(COUNT, headers))] == [3, 2]
    assert storage_state(first) == "ok" and storage_state(second) == "ok"

    redis_server.stop()
    # Still served, now limited by each process's own memory (a fresh budget per process).
    assert [remaining(first.get(COUNT, headers)) for _ in range(4)] == [3, 2, 1, 0]
    assert first.get(COUNT, headers).status == 429
    assert remaining(second.get(COUNT, headers)) == 3
    assert storage_state(first) == "degraded" and storage_state(second) == "degraded"

    redis_server.start()  # same port, empty (no persistence)
    for server in (first, second):
        wait_for(lambda: storage_state(server) == "ok", 10, "the limiter did not go back to Redis")
    # Shared again: the first process's exhausted memory budget no longer applies.
    assert [remaining(first.get(COUNT, headers)), remaining(second.get(COUNT, headers))] == [3, 2]


@pytest.mark.serial
def test_frozen_redis_never_holds_a_request(two_servers, redis_server, make_user, bearer):
    first, second = two_servers(RATE_LIMIT_USER_READ="1000/minute")
    headers = bearer(make_user())
    assert remaining(first.get(COUNT, headers)) == 999  # connected, script loaded

    redis_server.freeze()
    try:
        slowest = 0.0
        for round_ in range(3):  # the first hit times out; later rounds include retry probes
            for server in (first, second):
                for path, request_headers in ((COUNT, headers), ("/health", {}), ("/nope", {})):
                    response = server.get(path, request_headers)
                    assert response.status in (200, 404), response.body
                    slowest = max(slowest, response.seconds)
                    assert response.seconds < 0.5, (path, response.seconds)
            time.sleep(1.1)  # past the retry interval: the next hit probes the frozen Redis
        assert storage_state(first) == "degraded"
        assert slowest > 0.1  # the timeout was really paid (the test is not vacuous)
    finally:
        redis_server.thaw()
    wait_for(lambda: storage_state(first) == "ok", 10, "the limiter did not go back to Redis")
