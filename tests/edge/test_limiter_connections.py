"""The limiter's hit on Redis from each thread's own connection (issue 30): one user hammered from
many threads is counted exactly, and a closed connection or a flushed script costs no failover."""
from __future__ import annotations

import logging
import threading
import time
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
    strategy = app.extensions[ratelimit.EXTENSION].strategy
    responses = _hammer(app, bearer(user), threads=8, each=25, pool=threads)
    assert {r.status_code for r in responses} == {200}
    # Every request had its own place in the count: none counted twice, none uncounted. Redis holds
    # them and what this process bought ahead and has not served yet (a hot key's lease).
    places = sorted(1000 - int(r.headers["RateLimit-Remaining"]) for r in responses)
    assert len(set(places)) == 200
    redis = redis_server.client()
    assert _counter(redis, user) == 200 + _unused(strategy) >= places[-1]
    # Connections are kept per thread, not opened per request: at most the 8 threads' own plus the
    # client pool's (the first hits found the script not loaded yet and went through the client),
    # and a second round on the same threads opens none.

    def connections() -> int:
        return sum(1 for c in redis.client_list() if c.get("name") == "notifications-api")
    opened = connections()
    assert 1 <= opened <= 2 * 8
    assert {r.status_code for r in _hammer(app, bearer(user), threads=8, each=25, pool=threads)} == {200}
    assert connections() == opened
    assert _counter(redis, user) == 400 + _unused(strategy)
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
    # refusals are counted too, as before; a hot key's bought hits past the limit too (at most a
    # lease's worth, bought when another thread's hits had used the headroom meanwhile)
    assert 80 <= _counter(redis, user) <= 80 + ratelimit.LEASE_HITS - 1
    redis.close()


def _unused(strategy) -> int:
    """Hits this process counted in Redis ahead (a hot key's lease) and has not served yet."""
    return sum(lease[0] for lease in strategy._leases.values())


def _evalsha_calls(redis) -> int:
    return redis.info("commandstats").get("cmdstat_evalsha", {}).get("calls", 0)


def test_a_hot_key_is_counted_several_hits_per_round_trip(make_app, redis_server, make_user, bearer,
                                                          monkeypatch):
    """One user's requests in quick succession: Redis is asked once per LEASE_HITS of them, and each
    request still reports its own place in the count."""
    # "quick" widened: a loaded machine may space two of these requests past 50 ms
    monkeypatch.setattr(ratelimit, "LEASE_HOT_SECONDS", 30.0)
    app = _on_redis(make_app, redis_server, "1000/minute")
    strategy = app.extensions[ratelimit.EXTENSION].strategy
    client, user = app.test_client(), make_user()
    headers = bearer(user)
    redis = redis_server.client()
    client.get(COUNT, headers=headers)  # the script loaded, the key seen once
    before = _evalsha_calls(redis)
    seen = [int(client.get(COUNT, headers=headers).headers["RateLimit-Remaining"]) for _ in range(40)]
    assert seen == list(range(998, 958, -1))
    assert _evalsha_calls(redis) - before == 40 // ratelimit.LEASE_HITS
    assert _counter(redis, user) == 41 + _unused(strategy)
    redis.close()


def test_near_the_limit_every_hit_is_counted_alone(make_app, redis_server, make_user, bearer):
    """Leases stop while the headroom is small: the limit refuses exactly its 41st request, and
    Redis holds exactly the requests made (none bought ahead past it)."""
    app = _on_redis(make_app, redis_server, "40/minute")
    client, user = app.test_client(), make_user()
    headers = bearer(user)
    responses = [client.get(COUNT, headers=headers) for _ in range(45)]
    assert [r.status_code for r in responses] == [200] * 40 + [429] * 5
    assert [int(r.headers["RateLimit-Remaining"]) for r in responses[:40]] == list(range(39, -1, -1))
    redis = redis_server.client()
    assert _counter(redis, user) == 45
    redis.close()


def test_two_processes_hot_on_one_key_never_serve_past_the_limit(make_app, redis_server, make_user, bearer):
    """Two processes (two apps on one Redis), each with leases on the same hot key: together they
    serve the limit exactly, whichever bought what."""
    apps = [_on_redis(make_app, redis_server, "100/minute") for _ in range(2)]
    clients, user = [app.test_client() for app in apps], make_user()
    headers = bearer(user)
    statuses = [clients[index % 2].get(COUNT, headers=headers).status_code for index in range(150)]
    assert statuses.count(200) == 100 and statuses.count(429) == 50
    redis = redis_server.client()
    assert _counter(redis, user) >= 150
    redis.close()


def test_a_lease_ends_with_its_window(make_app, redis_server, make_user, bearer, monkeypatch):
    """Hits bought in one window are not served in the next: the new window counts from one."""
    monkeypatch.setattr(ratelimit, "LEASE_HOT_SECONDS", 0.5)  # hot however loaded the machine
    app = _on_redis(make_app, redis_server, "60/second")
    client, headers = app.test_client(), bearer(make_user())
    strategy = app.extensions[ratelimit.EXTENSION].strategy
    for _ in range(3):
        assert client.get(COUNT, headers=headers).status_code == 200
    assert _unused(strategy) > 0  # bought ahead
    time.sleep(1.1)
    assert client.get(COUNT, headers=headers).headers["RateLimit-Remaining"] == "59"


def _kill_connections(redis) -> None:
    """Redis closes the app's connections (Redis's `timeout`, a proxy, a restart)."""
    assert redis.client_kill_filter(_type="normal", skipme=True) >= 1


def _flush_scripts(redis) -> None:
    """Redis forgets the script (SCRIPT FLUSH, a restart without persistence): NOSCRIPT."""
    redis.script_flush()


@pytest.mark.parametrize("disrupt", [_kill_connections, _flush_scripts], ids=["killed", "flushed"])
def test_a_closed_connection_or_a_flushed_script_costs_no_failover(make_app, redis_server, make_user,
                                                                   bearer, caplog, disrupt, monkeypatch):
    monkeypatch.setattr(ratelimit, "LEASE_HITS", 1)  # every read goes to Redis: what is disrupted
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
