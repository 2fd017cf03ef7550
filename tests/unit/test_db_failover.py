"""The pool against a real PostgreSQL when a server turns read-only, as a demoted primary does:
its connections are discarded, never reused, and a refused write is a 503, never a 500.

A session made read-only (default_transaction_read_only, reported by the server like a standby's
in_hot_standby) stands in for a demoted node; the real failover is tests/reliability/test_failover.py.
"""
from __future__ import annotations

import logging
import socket

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from notifications_api.db.pool import Database
from notifications_api.errors import ApiError

PID = "SELECT pg_backend_pid()"
# A write refused with 25006 read_only_sql_transaction, as on a demoted primary.
REFUSED_WRITE = ("DO $$ BEGIN SET LOCAL transaction_read_only = on; "
                 "EXECUTE 'CREATE TABLE nt_never_created (x int)'; END $$")


@pytest.fixture
def pool(database):
    """One connection at most, so a connection that is not discarded is visibly reused."""
    db = Database({"DATABASE_CONNINFO": make_conninfo(database.admin, target_session_attrs="any"),
                   "DB_POOL_TIMEOUT": 2.0, "DB_POOL_MIN_SIZE": 1, "DB_POOL_MAX_SIZE": 1,
                   "DB_STATEMENT_TIMEOUT_MS": 5000, "DB_PREPARE_THRESHOLD": None})
    events: list[tuple[str, str, float]] = []
    db.event_observers.append(lambda *event: events.append(event))
    db.events = events
    yield db
    db.close()


def pid(db: Database) -> int:
    return db.call("test", PID, ())[0][0]


def test_a_healthy_connection_is_reused(pool):
    assert pid(pool) == pid(pool) == pid(pool)
    assert pool.events == []


def test_a_connection_to_a_server_gone_read_only_is_discarded_at_checkout(pool, caplog):
    first = pid(pool)
    pool.call("test", "SELECT set_config('default_transaction_read_only', 'on', false)", ())
    with caplog.at_level(logging.WARNING, logger="notifications_api.db.pool"):
        second = pid(pool)
    assert second != first  # the read-only session was closed, a new one opened
    assert pool.events == [("discarded", "read_only", 1.0)]
    discarded = [r for r in caplog.records if getattr(r, "event", None) == "database_connection_discarded"]
    assert [r.reason for r in discarded] == ["read_only"]
    with psycopg.connect(pool.pool.conninfo, autocommit=True) as conn:  # the old backend is gone
        alive = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", (first,)).fetchone()[0]
    assert alive == 0


def test_a_write_refused_as_read_only_is_a_503_and_drops_the_connection(pool, caplog):
    first = pid(pool)
    with caplog.at_level(logging.WARNING, logger="notifications_api.db.pool"), \
            pytest.raises(ApiError) as caught:
        pool.call("sp_create_notification", REFUSED_WRITE, ())
    error = caught.value
    assert (error.status, error.code, error.headers) == (503, "database_unavailable", {"Retry-After": "2"})
    assert ("discarded", "read_only", 1.0) in pool.events and ("unavailable", "read_only", 1.0) in pool.events
    line = [r for r in caplog.records if getattr(r, "event", None) == "database_exception"][0]
    assert (line.levelname, line.sqlstate, line.reason) == ("WARNING", "25006", "read_only")
    assert pid(pool) != first  # never reused


def test_recovery_after_an_outage_is_logged_with_its_duration(pool, caplog):
    pid(pool)
    pool.pool.close()  # every call now fails as if the server were gone
    for _ in range(2):
        with pytest.raises(ApiError) as caught:
            pid(pool)
        assert caught.value.status == 503
    pool.pool = type(pool.pool)(pool.pool.conninfo, min_size=1, max_size=1, kwargs=pool.pool.kwargs,
                                check=pool._checkout_check, open=False)
    pool.pool.open(wait=True)
    with caplog.at_level(logging.WARNING, logger="notifications_api.db.pool"):
        pid(pool)
        pid(pool)
    recovered = [r for r in caplog.records if getattr(r, "event", None) == "database_recovered"]
    assert len(recovered) == 1 and recovered[0].outage_seconds > 0
    assert [e[0] for e in pool.events].count("recovered") == 1


def test_a_multi_host_conninfo_skips_a_dead_host(database):
    """The first listed node is down (a killed primary): the pool connects to the next one."""
    from psycopg.conninfo import conninfo_to_dict

    from notifications_api.config import database_conninfo

    params = conninfo_to_dict(database.app)
    dead = free_port()
    conninfo = database_conninfo({
        "DATABASE_URL": make_conninfo(database.app, host=f"127.0.0.1,{params.get('host') or 'localhost'}",
                                      port=f"{dead},{params.get('port') or 5432}"),
        "DB_TARGET_SESSION_ATTRS": "read-write"})
    db = Database({"DATABASE_CONNINFO": conninfo, "DB_POOL_TIMEOUT": 3.0, "DB_POOL_MIN_SIZE": 1,
                   "DB_POOL_MAX_SIZE": 1, "DB_STATEMENT_TIMEOUT_MS": 5000, "DB_PREPARE_THRESHOLD": None})
    try:
        assert db.call("test", "SELECT 1", ()) == [(1,)]
    finally:
        db.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
