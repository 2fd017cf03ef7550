"""Redis Sentinel failover under load: the limiter's primary is killed, no request fails, and once
the sentinels have promoted the replica the limits are shared by the workers again.

Three sentinels, a primary and a replica from `redis-server CONF [--sentinel]` on free ports (never
the Debian redis-sentinel service on 26379); the service's storage is `redis+sentinel://…/mymaster`.
"""
from __future__ import annotations

import http.client
import threading
import time
from collections import Counter

import pytest
from machine_tools import skip_unless_ci

from failover import SentinelRedis, private_dir
from harness import Gunicorn, free_port, gunicorn_env, request, user_token

from notifications_api.web import ratelimit

API = "/api/v1"
BIG = "1000000/minute"
READ_LIMIT = 100000  # RATE_LIMIT_USER_READ per minute: never reached, but counted and reported

pytestmark = pytest.mark.e2e


@pytest.fixture
def sentinel():
    work = private_dir("nt-sentinel-")
    try:
        formation = SentinelRedis(work)
    except RuntimeError as exc:
        skip_unless_ci(str(exc))
    try:
        yield formation
    finally:
        formation.close()


@pytest.fixture
def service(pg, sentinel, tmp_path):
    metrics_dir = tmp_path / "prometheus"
    metrics_dir.mkdir()
    port = free_port()
    env = gunicorn_env(pg.app, metrics_dir, None, PORT=str(port), RATE_LIMIT_ENABLED="true",
                       REDIS_URL=sentinel.uri, RATE_LIMIT_USER_READ=f"{READ_LIMIT}/minute",
                       RATE_LIMIT_USER_WRITE=BIG, RATE_LIMIT_SERVICE=BIG, RATE_LIMIT_ANONYMOUS=BIG)
    server = Gunicorn(env=env, log_path=tmp_path / "gunicorn.log", port=port)
    try:
        yield server.start()
    finally:
        server.close()


def _remaining_sequence(server: Gunicorn, headers: dict, count: int) -> list[int]:
    """RateLimit-Remaining of `count` reads, each on a new connection (both workers serve them),
    spaced so that the key is never hot (a hot key is counted several hits at a time per process,
    ratelimit.LEASE_HITS): each read is one hit on the shared counter, in order."""
    seen = []
    for index in range(count):
        if index:
            time.sleep(ratelimit.LEASE_HOT_SECONDS + 0.02)
        r = request(server.port, "GET", f"{API}/notifications/unread/count", headers=headers)
        assert r.status == 200, r.body
        seen.append(int(r.headers["ratelimit-remaining"]))
    return seen


def _limit_keys(sentinel: SentinelRedis, port: int, user_id: str) -> dict[bytes, int]:
    client = sentinel.client(port)
    return {key: int(client.get(key) or 0) for key in client.scan_iter(match=f"*{user_id}*")}


def test_killing_the_redis_primary_fails_no_request_and_limits_are_shared_again(pg, sentinel, service):
    users = [pg.create_user() for _ in range(3)]
    headers = [{"Authorization": f"Bearer {user_token(service.env, u)}"} for u in users]
    service_headers = {"X-Service-Token": service.env["SERVICE_TOKEN"]}
    # Before: one counter in Redis for both workers.
    before = _remaining_sequence(service, headers[0], 10)
    assert before == list(range(READ_LIMIT - 1, READ_LIMIT - 11, -1)), before
    assert sum(_limit_keys(sentinel, sentinel.master_port(), users[0]).values()) == 10

    outcomes: list[tuple[float, int | None, str]] = []
    stop = threading.Event()

    def run(index: int) -> None:
        n = 0
        while not stop.is_set():
            n += 1
            if n % 3 == 0:
                method, path, body, h = "POST", f"{API}/notifications", {
                    "user_id": users[index % 3], "notification_type": "comment", "title": "t",
                    "dedupe_key": f"redis-{index}-{n}"}, service_headers
            else:
                method, path, body, h = "GET", f"{API}/notifications/unread/count", None, headers[index % 3]
            started = time.monotonic()
            try:
                status = request(service.port, method, path, body, h, timeout=10).status
            except (OSError, http.client.HTTPException) as exc:
                status = None
                path = repr(exc)
            outcomes.append((started, status, path))

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(4)]
    for thread in threads:
        thread.start()
    time.sleep(1.0)
    killed_at = time.monotonic()
    old = sentinel.kill_primary()
    while sentinel.master_port() in (None, old):
        assert time.monotonic() - killed_at < 20, "the sentinels never promoted the replica"
        time.sleep(0.05)
    promoted_after = time.monotonic() - killed_at
    new = sentinel.master_port()
    time.sleep(2.0)
    stop.set()
    for thread in threads:
        thread.join(15)

    statuses = Counter(status for _, status, _ in outcomes)
    during = sum(1 for started, _, _ in outcomes if killed_at <= started <= killed_at + promoted_after)
    print(f"\nRedis primary {old} killed; replica {new} promoted after {promoted_after:.2f}s; "
          f"{len(outcomes)} requests ({during} during the switch): {dict(statuses)}")
    assert during > 0
    assert set(statuses) <= {200, 201}, [o for o in outcomes if o[1] not in (200, 201)][:5]

    # After: the limits are shared again (on the new primary), within a few retry intervals.
    deadline = time.monotonic() + 15
    while True:
        fresh = pg.create_user()  # a new budget each try: counts from a memory fallback do not linger
        sequence = _remaining_sequence(service, {"Authorization": f"Bearer {user_token(service.env, fresh)}"}, 10)
        stored = _limit_keys(sentinel, new, fresh)
        if sequence == list(range(READ_LIMIT - 1, READ_LIMIT - 11, -1)) and sum(stored.values()) == 10:
            break
        assert time.monotonic() < deadline, f"limits not shared after the failover: {sequence}, {stored}"
        time.sleep(0.5)
    print(f"limits shared again {time.monotonic() - killed_at:.1f}s after the kill: "
          f"10 reads by two workers counted once each on the new primary")
    health = request(service.port, "GET", "/health")
    assert health.status == 200 and health.body["checks"].get("rate_limit_storage") == "ok", health.body
