"""The primary pool when PostgreSQL kills every idle connection at once (a restart, an operator's
pg_terminate_backend): a warm pool must not hand out its dead connections one after another.

A restart that has finished costs no request; a database that refuses new connections (an outage)
still answers 503 at once, not after DB_POOL_TIMEOUT. The real restart under gunicorn is in
tests/reliability/test_faults.py.
"""
from __future__ import annotations

import threading
import time

import psycopg
import pytest
from psycopg import sql

from notifications_api.db.pool import Database
from notifications_api.errors import ApiError

SIZE = 5  # a warm pool: a worker's 4 threads and the stream publisher
TIMEOUT = 2.0
PID = "SELECT pg_backend_pid()"


@pytest.fixture
def login(db_env):
    """A login role of its own (this test may refuse its logins); (role, conninfo)."""
    return db_env.login_role()


@pytest.fixture
def warm(login):
    """A Database whose pool holds SIZE idle connections; their backend pids."""
    _, conninfo = login
    db = Database({"DATABASE_CONNINFO": conninfo, "DB_POOL_TIMEOUT": TIMEOUT, "DB_POOL_MIN_SIZE": SIZE,
                   "DB_POOL_MAX_SIZE": SIZE + 1, "DB_STATEMENT_TIMEOUT_MS": 5000, "DB_PREPARE_THRESHOLD": None})
    events: list[tuple[str, str, float]] = []
    db.event_observers.append(lambda *event: events.append(event))
    db.events = events
    db.open()
    deadline = time.monotonic() + 10
    while db.pool.get_stats().get("pool_available", 0) < SIZE:
        assert time.monotonic() < deadline, db.pool.get_stats()
        time.sleep(0.02)
    held = [db.pool.getconn() for _ in range(SIZE)]
    db.pids = {conn.info.backend_pid for conn in held}
    for conn in held:
        db.pool.putconn(conn)
    yield db
    db.close()


def _terminate(db_env, pids: set[int]) -> None:
    """pg_terminate_backend as the superuser, then until every one of them has exited (its socket closed)."""
    with psycopg.connect(db_env.admin, autocommit=True) as conn:
        conn.execute("SELECT pg_terminate_backend(pid) FROM unnest(%s::int[]) AS pid", (list(pids),))
        deadline = time.monotonic() + 10
        while conn.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(%s)",
                           (list(pids),)).fetchone()[0]:
            assert time.monotonic() < deadline, "the backends did not exit"
            time.sleep(0.02)


def test_every_idle_connection_killed_then_sequential_calls_all_succeed(db_env, warm):
    _terminate(db_env, warm.pids)
    pids = [warm.call("test", PID, ())[0][0] for _ in range(SIZE)]  # was: the second call a 503
    assert not set(pids) & warm.pids
    assert ("unavailable", "connection_lost", 1.0) not in warm.events
    assert [e for e in warm.events if e[0] == "discarded"] == [("discarded", "broken", 1.0)] * SIZE


def test_every_idle_connection_killed_then_concurrent_calls_all_succeed(db_env, warm):
    _terminate(db_env, warm.pids)
    barrier = threading.Barrier(SIZE)
    results: list[object] = []

    def one() -> None:
        barrier.wait()
        try:
            results.append(warm.call("test", PID, ())[0][0])
        except ApiError as exc:
            results.append(exc)

    threads = [threading.Thread(target=one) for _ in range(SIZE)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert len(results) == SIZE
    assert all(isinstance(r, int) and r not in warm.pids for r in results), results


def test_a_killed_connection_among_live_ones_costs_nothing_and_keeps_the_rest(db_env, warm):
    victim = sorted(warm.pids)[0]
    _terminate(db_env, {victim})
    pids = {warm.call("test", PID, ())[0][0] for _ in range(3 * SIZE)}
    assert victim not in pids
    assert warm.pids - {victim} <= pids  # the live connections were kept and served
    assert [e for e in warm.events if e[0] == "discarded"] == [("discarded", "broken", 1.0)]
    assert warm.pool.get_stats()["connections_num"] <= SIZE + 2  # the live ones were kept, not reopened


def test_an_outage_after_the_kill_is_still_a_quick_503(db_env, login, warm):
    """Every idle connection dead and the server refusing logins: the first call fails as soon as the
    pool's reconnect fails, not after DB_POOL_TIMEOUT; the next ones fail fast (db/outage.py)."""
    role, _ = login
    with psycopg.connect(db_env.admin, autocommit=True) as conn:
        conn.execute(sql.SQL("ALTER ROLE {} NOLOGIN").format(sql.Identifier(role)))
    try:
        _terminate(db_env, warm.pids)
        for _ in range(3):
            started = time.monotonic()
            with pytest.raises(ApiError) as caught:
                warm.call("test", PID, ())
            elapsed = time.monotonic() - started
            assert caught.value.status == 503 and caught.value.code == "database_unavailable"
            assert elapsed < 0.5, elapsed  # DB_POOL_TIMEOUT is 2 s
    finally:
        with psycopg.connect(db_env.admin, autocommit=True) as conn:
            conn.execute(sql.SQL("ALTER ROLE {} LOGIN").format(sql.Identifier(role)))
    deadline = time.monotonic() + 10
    while True:  # logins allowed again: the pool reconnects and calls succeed
        try:
            assert warm.call("test", PID, ())[0][0] not in warm.pids
            break
        except ApiError:
            assert time.monotonic() < deadline, "no recovery"
            time.sleep(0.1)


# -- warming: the working size opened before traffic (gunicorn's post_worker_init) --------------

def _database(conninfo: str, min_size: int | None, max_size: int) -> Database:
    return Database({"DATABASE_CONNINFO": conninfo, "DB_POOL_TIMEOUT": TIMEOUT, "DB_POOL_MIN_SIZE": min_size,
                     "DB_POOL_MAX_SIZE": max_size, "DB_STATEMENT_TIMEOUT_MS": 5000, "DB_PREPARE_THRESHOLD": None})


@pytest.mark.parametrize("min_size, max_size, kept", [(None, 8, 5), (None, 3, 3), (2, 8, 2), (0, 8, 0)])
def test_open_keeps_the_working_size_only_when_min_size_is_automatic(login, min_size, max_size, kept):
    db = _database(login[1], min_size, max_size)
    try:
        assert db.open(working_size=5, within=10)
        stats = db.pool.get_stats()
        assert (stats["pool_min"], stats["pool_available"], stats["pool_max"]) == (kept, kept, max_size)
    finally:
        db.close()


def test_open_stops_waiting_at_the_first_refused_connection(login):
    db = _database(login[1] + " port=1", None, 8)  # nothing listens on port 1
    try:
        started = time.monotonic()
        assert not db.open(working_size=5, within=TIMEOUT)
        assert time.monotonic() - started < TIMEOUT / 2
        assert not db.pool.closed  # it keeps trying in the background (pool.wait() would have closed it)
    finally:
        db.close()
