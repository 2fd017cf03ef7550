"""The limiter on a Sentinel-managed Redis (REDIS_URL=redis+sentinel://…): counters on the primary
the sentinel names, and the same short timeouts towards the sentinel as towards Redis."""
from __future__ import annotations

import time

import pytest
from edge_helpers import RedisSentinel

from notifications_api.db import pool as db

pytestmark = pytest.mark.redis

COUNT = "/api/v1/notifications/unread/count"


@pytest.fixture
def sentinel(redis_server, tmp_path):
    server = RedisSentinel(tmp_path, redis_server)
    yield server
    server.stop()


def test_limits_are_counted_on_the_primary_the_sentinel_names(
        make_app, make_user, bearer, redis_server, sentinel):
    client = make_app(REDIS_URL=sentinel.url, RATE_LIMIT_USER_READ="3/minute").test_client()
    user = make_user()
    headers = bearer(user)
    assert [int(client.get(COUNT, headers=headers).headers["RateLimit-Remaining"]) for _ in range(3)] == [2, 1, 0]
    assert client.get(COUNT, headers=headers).status_code == 429
    redis = redis_server.client()
    try:
        [key] = [key for key in redis.keys("*") if user.encode() in key]
        assert key.startswith(b"notifications-api:LIMITER/") and int(redis.get(key)) == 4
    finally:
        redis.close()
    body = client.get("/health").get_json()
    assert body["status"] == "ok" and body["checks"]["rate_limit_storage"] == "ok"


@pytest.mark.serial
def test_a_frozen_sentinel_costs_a_request_at_most_the_redis_timeout(make_app, make_user, bearer, sentinel):
    app = make_app(REDIS_URL=sentinel.url, RATE_LIMIT_USER_READ="3/minute")
    client = app.test_client()
    headers = bearer(make_user())
    assert app.extensions[db.EXTENSION].ping()  # the database pool is open: only the limiter is timed
    sentinel.freeze()  # before the first request: the primary's address is still to be asked for
    started = time.perf_counter()
    response = client.get(COUNT, headers=headers)
    elapsed = time.perf_counter() - started
    assert response.status_code == 200 and response.headers["RateLimit-Remaining"] == "2"  # in memory
    assert elapsed < 0.5, elapsed
    assert client.get("/health").get_json()["checks"]["rate_limit_storage"] == "degraded"
