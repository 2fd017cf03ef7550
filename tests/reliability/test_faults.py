"""Faults under real gunicorn over our own PostgreSQL: outages cost 503s, never 500s or hangs."""
from __future__ import annotations

import http.client
import os
import re
import secrets
import signal
import threading
import time
from collections import Counter
from dataclasses import dataclass

import psycopg
import pytest

from harness import request, user_token

API = "/api/v1"
POOL_TIMEOUT = 1.0  # DB_POOL_TIMEOUT of the test gunicorn (harness.gunicorn_env)
SLACK = 0.75  # scheduling noise on a loaded 2-core CI machine

pytestmark = pytest.mark.e2e


@dataclass
class Outcome:
    started: float
    elapsed: float
    status: int | None  # None: no HTTP response at all (connection dropped or refused)
    code: str | None = None
    retry_after: str | None = None
    error: str | None = None
    path: str = ""


class Load:
    """Threads sending a mix of reads and creates until stopped; every outcome is recorded."""

    def __init__(self, port: int, user_headers: dict, service_headers: dict, user_id: str, threads: int = 6):
        self.port, self.user_headers, self.service_headers, self.user_id = \
            port, user_headers, service_headers, user_id
        self.outcomes: list[Outcome] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(threads)]

    def _one(self, index: int, n: int) -> tuple[str, str, dict | None, dict]:
        kind = (index + n) % 4
        if kind == 0:
            return "POST", f"{API}/notifications", {
                "user_id": self.user_id, "notification_type": "comment", "title": "load",
                "dedupe_key": f"load-{index}-{n}-{secrets.token_hex(4)}"}, self.service_headers
        if kind == 1:
            return "GET", f"{API}/notifications?limit=5", None, self.user_headers
        if kind == 2:
            return "GET", "/health", None, {}
        return "GET", f"{API}/notifications/unread/count", None, self.user_headers

    def _run(self, index: int) -> None:
        n = 0
        while not self._stop.is_set():
            method, path, body, headers = self._one(index, n)
            n += 1
            started = time.monotonic()
            try:
                r = request(self.port, method, path, body, headers, timeout=10)
                body = r.body if isinstance(r.body, dict) else {}
                self.outcomes.append(Outcome(started, r.elapsed, r.status, body.get("code"),
                                             r.headers.get("retry-after"), path=path))
            except (OSError, http.client.HTTPException) as exc:
                self.outcomes.append(Outcome(started, time.monotonic() - started, None,
                                             error=repr(exc), path=path))

    def __enter__(self) -> "Load":
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(15)


def _headers(server, user_id: str) -> tuple[dict, dict]:
    return ({"Authorization": f"Bearer {user_token(server.env, user_id)}"},
            {"X-Service-Token": server.env["SERVICE_TOKEN"]})


def _create(server, service: dict, user_id: str, **fields) -> dict:
    r = request(server.port, "POST", f"{API}/notifications",
                {"user_id": user_id, "notification_type": "comment", "title": "t", **fields}, service)
    assert r.status in (200, 201), r.body
    return r.body["results"][0]["notification"]


def _summary(outcomes: list[Outcome]) -> str:
    counts = Counter((o.status, o.code) for o in outcomes)
    return ", ".join(f"{status}/{code}: {n}" for (status, code), n in sorted(counts.items(), key=str))


def _problem_counter(server, code: str) -> float:
    text = request(server.port, "GET", "/metrics").raw.decode()
    match = re.search(r'notifications_api_errors_total\{code="%s"\} ([0-9.e+]+)' % code, text)
    return float(match.group(1)) if match else 0.0


def _wait_for_lock_waiters(pg, count: int, timeout: float = 10) -> None:
    """Until `count` app backends wait on a lock (the slow calls are really in PostgreSQL)."""
    deadline = time.monotonic() + timeout
    with psycopg.connect(pg.admin, autocommit=True) as conn:
        while True:
            waiting = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE usename = 'api_user' AND wait_event_type = 'Lock'"
            ).fetchone()[0]
            if waiting >= count:
                return
            assert time.monotonic() < deadline, f"only {waiting} of {count} calls are waiting on the lock"
            time.sleep(0.05)


class RowLock:
    """A superuser transaction holding the user's counters row FOR UPDATE: that user's writes block."""

    def __init__(self, pg, user_id: str):
        self.conn = psycopg.connect(pg.admin)
        row = self.conn.execute("SELECT 1 FROM activity.notification_counters WHERE user_id = %s FOR UPDATE",
                                (user_id,)).fetchone()
        assert row, "the user needs a counters row (create one notification first)"

    def release(self) -> None:
        if not self.conn.closed:
            self.conn.rollback()
            self.conn.close()


def _in_thread(fn, *args) -> tuple[threading.Thread, list]:
    box: list = []

    def run():
        try:
            box.append(fn(*args))
        except Exception as exc:  # recorded, asserted by the caller
            box.append(exc)
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, box


# -- PostgreSQL restarted under steady load ----------------------------------------------------

def test_postgres_restart_under_load_costs_quick_503s_and_recovers(pg, start_gunicorn):
    server = start_gunicorn()
    user_id = pg.create_user()
    user, service = _headers(server, user_id)
    with Load(server.port, user, service, user_id) as load:
        time.sleep(1.5)
        down_at = time.monotonic()
        pg.restart(down_seconds=2.0)
        up_at = time.monotonic()
        time.sleep(4.0)
    outcomes = load.outcomes
    print(f"\n{len(outcomes)} requests; outage {up_at - down_at:.2f}s; {_summary(outcomes)}")

    dropped = [o for o in outcomes if o.status is None]
    assert not dropped, f"requests without an HTTP response: {dropped[:3]}"
    assert {o.status for o in outcomes} <= {200, 201, 503}, _summary(outcomes)
    unavailable = [o for o in outcomes if o.status == 503]
    assert unavailable, "the outage was not observed"
    for o in unavailable:
        expected = None if o.path == "/health" else "database_unavailable"  # /health: its own JSON shape
        assert o.code == expected and (o.retry_after or o.path == "/health"), o
    slowest = max(o.elapsed for o in outcomes)
    print(f"503s: {len(unavailable)}, slowest response {slowest:.2f}s, "
          f"slowest 503 {max(o.elapsed for o in unavailable):.2f}s")
    # /health waits up to its own 2 s; everything else at most DB_POOL_TIMEOUT.
    assert max(o.elapsed for o in outcomes if o.path != "/health") < POOL_TIMEOUT + SLACK
    assert slowest < 2.0 + SLACK

    first_ok = min(o.started for o in outcomes if o.started > up_at and o.status in (200, 201))
    print(f"first success {first_ok - up_at:.2f}s after PostgreSQL was back")
    settled = [o for o in outcomes if o.started > up_at + 2.0]
    assert settled and all(o.status in (200, 201) for o in settled), _summary(settled)

    # The operator's view: one database_exception log line per 503, and the metric.
    events = [e for e in server.log_events() if e.get("event") == "database_exception"]
    assert events and all(e["level"] == "WARNING" for e in events)
    assert _problem_counter(server, "database_unavailable") >= len(
        [o for o in unavailable if o.path != "/health"])


# -- connections killed, statement timeout, pool exhausted ------------------------------------

def _wait_for_backends(pg, count: int, timeout: float = 10) -> set[int]:
    deadline = time.monotonic() + timeout
    while len(pids := pg.app_backend_pids()) < count:
        assert time.monotonic() < deadline, f"{len(pids)} of {count} connections open"
        time.sleep(0.05)
    return pids


def test_a_warm_pool_serves_every_request_after_a_finished_restart(pg, start_gunicorn):
    """A warm pool's idle connections all die in a restart. Once PostgreSQL is back, no request
    fails, sequential or concurrent (was: a checkout's second dead connection was handed out, a 503);
    while it is down, a request is a 503 without waiting out DB_POOL_TIMEOUT."""
    server = start_gunicorn(WEB_CONCURRENCY="1", DB_POOL_MAX_SIZE="6")  # warm: 4 threads + 1
    user_id = pg.create_user()
    user, _ = _headers(server, user_id)
    path = f"{API}/notifications/unread/count"

    def concurrent(n: int) -> list[int]:
        barrier = threading.Barrier(n)
        statuses: list[int] = []

        def one() -> None:
            barrier.wait()
            statuses.append(request(server.port, "GET", path, headers=user).status)
        threads = [threading.Thread(target=one) for _ in range(n)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(15)
        return statuses

    before = _wait_for_backends(pg, 5)
    pg.restart()
    assert concurrent(4) == [200] * 4
    assert not (pg.app_backend_pids() & before)

    _wait_for_backends(pg, 5)
    pg.restart()
    assert [request(server.port, "GET", path, headers=user).status for _ in range(10)] == [200] * 10

    _wait_for_backends(pg, 5)
    pg.stop()
    try:
        r = request(server.port, "GET", path, headers=user)
        assert r.status == 503 and r.body["code"] == "database_unavailable", r.body
        assert r.elapsed < POOL_TIMEOUT, r.elapsed  # the pool's failed reconnect ends the wait
    finally:
        pg.start()
    deadline = time.monotonic() + 10
    while (status := request(server.port, "GET", path, headers=user).status) != 200:
        assert status == 503 and time.monotonic() < deadline
        time.sleep(0.2)


def test_terminated_backends_are_replaced_without_an_error(pg, start_gunicorn):
    server = start_gunicorn()
    user_id = pg.create_user()
    user, _ = _headers(server, user_id)
    for _ in range(20):  # warm both workers' pools
        assert request(server.port, "GET", f"{API}/notifications/unread/count", headers=user).status == 200
    deadline = time.monotonic() + 10  # each worker opened its pool (4) before it took traffic
    while len(pg.app_backend_pids()) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    before = pg.app_backend_pids()
    assert pg.terminate_app_backends() >= 2
    time.sleep(0.2)
    statuses = [request(server.port, "GET", f"{API}/notifications/unread/count", headers=user).status
                for _ in range(20)]
    assert statuses == [200] * 20  # the checkout check saw each dead socket and reconnected
    assert not (pg.app_backend_pids() & before)


def test_statement_timeout_is_a_503_and_the_connection_is_reused(pg, start_gunicorn):
    server = start_gunicorn(WEB_CONCURRENCY="1", DB_POOL_MIN_SIZE="1", DB_POOL_MAX_SIZE="1",
                            DB_STATEMENT_TIMEOUT_MS="500")
    user_id = pg.create_user()
    user, service = _headers(server, user_id)
    _create(server, service, user_id)
    backends = pg.app_backend_pids()
    assert len(backends) == 1

    lock = RowLock(pg, user_id)
    try:
        r = request(server.port, "POST", f"{API}/notifications/mark-read", {"all": True}, user)
        assert r.status == 503 and r.body["code"] == "database_unavailable", r.body
        assert r.headers["retry-after"] == "2"
        assert 0.45 < r.elapsed < 0.5 + SLACK, r.elapsed
        # Same (only) connection, still locked out of the row, serves the next read at once.
        r = request(server.port, "GET", f"{API}/notifications/unread/count", headers=user)
        assert r.status == 200 and r.body["unread_count"] == 1
    finally:
        lock.release()
    r = request(server.port, "POST", f"{API}/notifications/mark-read", {"all": True}, user)
    assert r.status == 200 and r.body == {"updated_count": 1, "unread_count": 0, "unseen_count": 0}
    assert pg.app_backend_pids() == backends  # never reconnected
    events = [e for e in server.log_events() if e.get("event") == "database_exception"]
    assert [(e["error"], e["sqlstate"]) for e in events] == [("QueryCanceled", "57014")]


def test_pool_exhausted_by_slow_calls_is_a_503_within_the_pool_timeout(pg, start_gunicorn):
    server = start_gunicorn(WEB_CONCURRENCY="1", DB_POOL_MIN_SIZE="1", DB_POOL_MAX_SIZE="1",
                            DB_STATEMENT_TIMEOUT_MS="8000")
    slow_user, other_user = pg.create_user(), pg.create_user()
    slow, service = _headers(server, slow_user)
    other, _ = _headers(server, other_user)
    _create(server, service, slow_user)

    lock = RowLock(pg, slow_user)
    try:
        thread, box = _in_thread(request, server.port, "POST", f"{API}/notifications/mark-read",
                                 {"all": True}, slow)
        _wait_for_lock_waiters(pg, 1)  # the only pooled connection is now held by a slow call
        outcomes = [request(server.port, "GET", f"{API}/notifications/unread/count", headers=other)
                    for _ in range(3)]
        health = request(server.port, "GET", "/health")
    finally:
        lock.release()
    thread.join(10)
    for r in outcomes:
        assert r.status == 503 and r.body["code"] == "database_unavailable", r.body
        assert r.headers["retry-after"] == "2"
        assert POOL_TIMEOUT - 0.05 < r.elapsed < POOL_TIMEOUT + SLACK, r.elapsed
    print(f"\npool-timeout 503 latencies: {[round(r.elapsed, 3) for r in outcomes]}")
    assert health.status == 503 and health.body["checks"]["database"] == "error"
    assert box and box[0].status == 200, box  # the slow call itself completes once unblocked
    assert request(server.port, "GET", f"{API}/notifications/unread/count", headers=other).status == 200
    errors = {e["error"] for e in server.log_events() if e.get("event") == "database_exception"}
    assert errors == {"PoolTimeout"}


# -- gunicorn workers and signals -------------------------------------------------------------

def test_killed_worker_is_replaced_and_the_other_worker_serves_on(pg, start_gunicorn):
    server = start_gunicorn(GUNICORN_KEEPALIVE="60")
    user_id = pg.create_user()
    user, _ = _headers(server, user_id)
    path = f"{API}/notifications/unread/count"

    # Keep-alive connections stay with the worker that accepted them: find one on each worker.
    by_worker: dict[int, list[http.client.HTTPConnection]] = {}
    for _ in range(60):
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        assert request(server.port, "GET", path, headers=user, conn=conn).status == 200
        pid = server.worker_for(conn.sock.getsockname()[1])
        by_worker.setdefault(pid, []).append(conn)
        if len(by_worker) == 2 and all(len(c) >= 2 for c in by_worker.values()):
            break
    assert len(by_worker) == 2 and None not in by_worker, "could not reach both workers"
    victim, survivor = sorted(by_worker, key=lambda pid: len(by_worker[pid]))

    survivor_statuses: list[int | str] = []
    stop = threading.Event()

    def keep_asking(conn):
        while not stop.is_set():
            try:
                survivor_statuses.append(request(server.port, "GET", path, headers=user, conn=conn).status)
            except (OSError, http.client.HTTPException) as exc:
                survivor_statuses.append(repr(exc))
                return

    threads = [threading.Thread(target=keep_asking, args=(c,), daemon=True) for c in by_worker[survivor]]
    for thread in threads:
        thread.start()
    time.sleep(0.5)
    os.kill(victim, signal.SIGKILL)
    killed_at = time.monotonic()
    while len({w.pid for w in server.workers()} - {victim}) < 2:
        assert time.monotonic() - killed_at < 15, "the master did not replace the killed worker"
        time.sleep(0.05)
    replaced_after = time.monotonic() - killed_at
    time.sleep(0.5)
    stop.set()
    for thread in threads:
        thread.join(10)

    print(f"\nworker {victim} killed; replaced after {replaced_after:.2f}s; "
          f"{len(survivor_statuses)} requests on worker {survivor} meanwhile")
    assert survivor_statuses and set(survivor_statuses) == {200}, Counter(survivor_statuses)
    with pytest.raises((OSError, http.client.HTTPException)):  # the victim's own connections are gone
        request(server.port, "GET", path, headers=user, conn=by_worker[victim][0])
    assert server.process.poll() is None
    assert all(request(server.port, "GET", path, headers=user).status == 200 for _ in range(10))
    assert f"pid:{victim}" in server.log_text()  # the master logs the dead worker
    for conns in by_worker.values():
        for conn in conns:
            conn.close()


def test_sigterm_lets_in_flight_requests_complete_then_exits(pg, start_gunicorn):
    server = start_gunicorn(DB_STATEMENT_TIMEOUT_MS="15000", WEB_CONCURRENCY="1")
    user_id = pg.create_user()
    user, service = _headers(server, user_id)
    _create(server, service, user_id)

    lock = RowLock(pg, user_id)
    try:
        in_flight = [_in_thread(request, server.port, "POST", f"{API}/notifications/mark-read",
                                {"all": True}, user, 30) for _ in range(3)]
        _wait_for_lock_waiters(pg, 1)  # one holds the row lock wait, the others queue behind it
        time.sleep(0.3)
        server.process.send_signal(signal.SIGTERM)
        time.sleep(1.0)
        assert server.process.poll() is None, "gunicorn exited with requests in flight"
        with pytest.raises(OSError):  # no new connections once shutting down
            request(server.port, "GET", "/health/live", timeout=2)
    finally:
        lock.release()
    released_at = time.monotonic()
    results = []
    for thread, box in in_flight:
        thread.join(20)
        results.append(box[0])
    assert [getattr(r, "status", r) for r in results] == [200, 200, 200]
    assert sorted(r.body["updated_count"] for r in results) == [0, 0, 1]
    assert server.process.wait(20) == 0
    print(f"\nin-flight requests completed; master exited {time.monotonic() - released_at:.2f}s "
          "after the lock was released")
