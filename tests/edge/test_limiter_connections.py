"""The limiter's hit on Redis from each thread's own connection (issue 30): one user hammered from
many threads is counted exactly, and a closed connection or a flushed script costs no failover."""
from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from notifications_api.web import ratelimit

pytestmark = pytest.mark.redis

COUNT = "/api/v1/notifications/unread/count"


def _on_redis(make_app, redis_server, limit: str):
    return make_app(REDIS_HOST="127.0.0.1", REDIS_PORT=redis_server.port, RATE_LIMIT_USER_READ=limit)


def _hammer(app, headers: dict, threads: int, each: int, pool: ThreadPoolExecutor | None = None) -> list:
    """`each` reads per thread, `threads` threads released together, one test client per thread
    (on `pool`'s threads when given: long-lived threads, as gunicorn's)."""
    barrier = threading.Barrier(threads)

    def run(_: int) -> list:
        client = app.test_client()
        barrier.wait()
        return [client.get(COUNT, headers=headers) for _ in range(each)]
    if pool is not None:
        return [response for batch in pool.map(run, range(threads)) for response in batch]
    with ThreadPoolExecutor(threads) as own:
        return _hammer(app, headers, threads, each, own)


def _counter(redis, user_id: str) -> int:
    keys = [key for key in redis.keys("*") if user_id.encode() in key]
    assert len(keys) == 1, keys  # one counter: the user's read budget, on Redis
    return int(redis.get(keys[0]))


def test_one_user_from_many_threads_is_counted_once_per_request(make_app, redis_server, make_user,
                                                                bearer):
    app = _on_redis(make_app, redis_server, "1000/minute")
    user = make_user()
    threads = ThreadPoolExecutor(8)
    responses = _hammer(app, bearer(user), threads=8, each=25, pool=threads)
    assert {r.status_code for r in responses} == {200}
    # Every count from 1 to 200 went to exactly one request: no hit lost, none counted twice.
    assert sorted(int(r.headers["RateLimit-Remaining"]) for r in responses) == list(range(800, 1000))
    redis = redis_server.client()
    assert _counter(redis, user) == 200
    # Connections are kept per thread, not opened per request: at most the 8 threads' own plus the
    # client pool's (the first hits found the script not loaded yet and went through the client),
    # and a second round on the same threads opens none.

    def connections() -> int:
        return sum(1 for c in redis.client_list() if c.get("name") == "notifications-api")
    opened = connections()
    assert 1 <= opened <= 2 * 8
    assert {r.status_code for r in _hammer(app, bearer(user), threads=8, each=25, pool=threads)} == {200}
    assert connections() == opened
    assert _counter(redis, user) == 400
    threads.shutdown()
    redis.close()


def test_the_budget_holds_exactly_under_concurrency(make_app, redis_server, make_user, bearer):
    app = _on_redis(make_app, redis_server, "50/minute")
    user = make_user()
    responses = _hammer(app, bearer(user), threads=8, each=10)
    statuses = [r.status_code for r in responses]
    assert statuses.count(200) == 50 and statuses.count(429) == 30
    assert sorted(int(r.headers["RateLimit-Remaining"]) for r in responses if r.status_code == 200) == \
        list(range(50))
    assert all(r.headers["RateLimit-Remaining"] == "0" and "Retry-After" in r.headers
               for r in responses if r.status_code == 429)
    redis = redis_server.client()
    assert _counter(redis, user) == 80  # refusals are counted too, as before
    redis.close()


def _kill_connections(redis) -> None:
    """Redis closes the app's connections (Redis's `timeout`, a proxy, a restart)."""
    assert redis.client_kill_filter(_type="normal", skipme=True) >= 1


def _flush_scripts(redis) -> None:
    """Redis forgets the script (SCRIPT FLUSH, a restart without persistence): NOSCRIPT."""
    redis.script_flush()


@pytest.mark.parametrize("disrupt", [_kill_connections, _flush_scripts], ids=["killed", "flushed"])
def test_a_closed_connection_or_a_flushed_script_costs_no_failover(make_app, redis_server, make_user,
                                                                   bearer, caplog, disrupt):
    caplog.set_level(logging.INFO)
    app = _on_redis(make_app, redis_server, "100/minute")
    strategy = app.extensions[ratelimit.EXTENSION].strategy
    client = app.test_client()
    headers = bearer(make_user())

    def reads(count: int) -> list[int]:
        return [int(client.get(COUNT, headers=headers).headers["RateLimit-Remaining"]) for _ in range(count)]
    assert reads(2) == [99, 98]
    redis = redis_server.client()
    disrupt(redis)
    # Still the shared counter (a memory fallback would start again at 99), and no degraded state.
    assert reads(2) == [97, 96]
    assert [r for r in caplog.records if getattr(r, "event", None) == "rate_limit_storage_degraded"] == []
    assert strategy.health.up
    assert redis.script_exists(strategy._incr_script.sha) == [True]  # loaded again after a flush
    redis.close()
