"""db.Database against a real PostgreSQL: a rolled-back call is retried once and is no outage, the
idle check works past descriptor 1024, an unexpected error logs the server's message without inputs."""
from __future__ import annotations

import logging
import os
import resource
import select
import uuid

import psycopg
import pytest
from psycopg import sql

from notifications_api.db import pool as db, rows as db_types
from notifications_api.errors import ApiError


def _database(conninfo: str) -> db.Database:
    return db.Database({"DATABASE_CONNINFO": conninfo, "DB_POOL_MIN_SIZE": 1, "DB_POOL_MAX_SIZE": 2,
                        "DB_POOL_TIMEOUT": 5.0, "DB_PREPARE_THRESHOLD": None})


@pytest.fixture
def flaky(database):
    """Factory: flaky(sqlstate, failures) -> the name of a test-only function (created as superuser)
    whose first `failures` calls raise `sqlstate`; a sequence counts the calls (it survives rollbacks)."""
    made = []

    def make(sqlstate: str, failures: int) -> tuple[str, str]:
        name = f"nt_flaky_{uuid.uuid4().hex[:10]}"
        made.append(name)
        with psycopg.connect(database.admin, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE SEQUENCE public.{}").format(sql.Identifier(name)))
            conn.execute(sql.SQL(
                """CREATE FUNCTION public.{name}() RETURNS bigint LANGUAGE plpgsql AS $$
                   DECLARE n bigint := nextval({seq});
                   BEGIN
                       IF n <= {failures} THEN
                           RAISE EXCEPTION 'forced failure %', n USING ERRCODE = {sqlstate};
                       END IF;
                       RETURN n;
                   END $$""").format(name=sql.Identifier(name), seq=sql.Literal(f"public.{name}"),
                                     failures=sql.Literal(failures), sqlstate=sql.Literal(sqlstate)))
        return name, f"SELECT public.{name}()"

    yield make
    with psycopg.connect(database.admin, autocommit=True) as conn:
        for name in made:
            conn.execute(sql.SQL("DROP FUNCTION public.{}()").format(sql.Identifier(name)))
            conn.execute(sql.SQL("DROP SEQUENCE public.{}").format(sql.Identifier(name)))


def _calls(database, name: str) -> int:
    with psycopg.connect(database.admin) as conn:
        return conn.execute(sql.SQL("SELECT last_value FROM public.{}").format(sql.Identifier(name))).fetchone()[0]


@pytest.mark.parametrize("sqlstate", ["40001", "40P01"])  # serialization_failure, deadlock_detected
def test_a_rolled_back_call_is_retried_once(database, flaky, caplog, sqlstate):
    name, query = flaky(sqlstate, failures=1)
    database_ = _database(database.admin)
    caplog.set_level(logging.INFO, logger="notifications_api.db.pool")
    try:
        assert database_.call("test_flaky", query, ()) == [(2,)]
    finally:
        database_.close()
    assert _calls(database, name) == 2
    retries = [r for r in caplog.records if getattr(r, "event", None) == "database_retry"]
    assert [(r.function, r.sqlstate) for r in retries] == [("test_flaky", sqlstate)]
    assert not [r for r in caplog.records if getattr(r, "event", None) == "database_exception"]


@pytest.mark.parametrize("sqlstate", ["40001", "40P01"])
def test_a_call_rolled_back_twice_is_a_503_but_no_outage(database, flaky, sqlstate):
    name, query = flaky(sqlstate, failures=5)
    database_ = _database(database.admin)
    try:
        with pytest.raises(ApiError) as raised:
            database_.call("test_flaky", query, ())
        assert raised.value.status == 503 and raised.value.code == "database_unavailable"
        assert _calls(database, name) == 2  # retried once, not more
        assert database_.outage.failing_until == 0.0  # the database answered: no fast-fail outage mode
    finally:
        database_.close()


def test_an_unexpected_error_logs_the_server_message_without_the_input(database, caplog):
    secret_input = f"not-a-uuid-{uuid.uuid4().hex}"
    database_ = _database(database.admin)
    try:
        with pytest.raises(ApiError) as raised:
            database_.call("test_cast", "SELECT %s::uuid", (secret_input,))
    finally:
        database_.close()
    assert raised.value.status == 500
    [record] = [r for r in caplog.records if getattr(r, "event", None) == "database_exception"]
    assert (record.sqlstate, record.function) == ("22P02", "test_cast")
    assert record.db_message.startswith("invalid input syntax for type uuid")
    assert secret_input not in record.db_message and secret_input not in str(record.__dict__)


def test_the_idle_check_works_past_descriptor_1024(database):
    """select.select() refuses descriptors >= FD_SETSIZE (1024); a worker with many keep-alive
    sockets gets pool connections there. The checkout check must poll instead."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 2048
    if soft < wanted:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, max(hard, wanted)
                                                        if hard != resource.RLIM_INFINITY else hard))
        except (ValueError, OSError) as exc:
            pytest.fail(f"cannot raise RLIMIT_NOFILE to {wanted} (soft {soft}, hard {hard}): {exc}")
    filler = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]
    database_ = _database(database.admin)
    try:
        assert database_.call("health", "SELECT 1", ()) == [(1,)]
        with database_.pool.connection() as conn:
            fd = conn.pgconn.socket
            assert fd >= 1024
            with pytest.raises(ValueError):  # what the old check did
                select.select([fd], [], [], 0)
            db._idle_check(conn)  # what the pool runs at checkout: no exception
        for _ in range(3):  # every later checkout runs the check on that connection
            assert database_.call("health", "SELECT 1", ()) == [(1,)]
    finally:
        database_.close()
        for fd in filler:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_a_session_without_the_roles_settings_is_logged(database, caplog):
    """The pool sends no startup options: a login whose role lacks TimeZone/DateStyle is named in the log
    (the values come with the connection: no round trip)."""
    with psycopg.connect(database.app, options="-c timezone=Asia/Kolkata -c datestyle=SQL,DMY") as conn:
        db_types.configure(conn)
    [record] = [r for r in caplog.records if getattr(r, "event", None) == "database_session_settings"]
    assert (record.timezone, record.datestyle) == ("Asia/Kolkata", "SQL, DMY")
    caplog.clear()
    with psycopg.connect(database.app) as conn:  # the app login as provisioned: nothing to say
        db_types.configure(conn)
    assert not [r for r in caplog.records if getattr(r, "event", None) == "database_session_settings"]
