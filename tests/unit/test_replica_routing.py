"""The read-routing decision (db/replica.py) against a scripted standby: no server needed.
The same decisions against a real streaming standby: tests/replica/."""
from __future__ import annotations

from contextlib import contextmanager

import psycopg
import pytest
from psycopg_pool import PoolTimeout

from notifications_api.config import ConfigError, load_config
from notifications_api.db import replica as replica_module
from notifications_api.db.replica import Floors, Replica, _next_state
from notifications_api.errors import ApiError

USER = "0e4c8f3c-51b8-4a8e-9c53-2b6f7d1e2a10"
BASE = {"JWT_SECRET": "j" * 40, "SERVICE_TOKEN": "s" * 40, "REDIS_URL": "", "REDIS_HOST": ""}


class Standby:
    """A connection to a scripted server: its status row, and the answer (or error) of each call."""

    def __init__(self, status=(True, 100, 100, True), answer=None, error=None):
        self.status, self.answer, self.error = status, answer or [("standby rows",)], error
        self.calls: list[str] = []
        self.pgconn = type("PgConn", (), {"host": b"h", "port": b"1"})()

    def execute(self, query, params=None):
        self.calls.append(query)
        if query == replica_module.STATUS:
            return Result([self.status])
        if self.error is not None:
            raise self.error
        return Result(self.answer)


def function_error(sqlstate: str, message: str) -> psycopg.Error:
    """The error a stored function raises with its own SQLSTATE (NA404, NA422...)."""
    return type(f"Error{sqlstate}", (psycopg.Error,), {"sqlstate": sqlstate})(message)


class Result:
    def __init__(self, rows):
        self.rows = rows

    def fetchone(self):
        return self.rows[0]

    def fetchall(self):
        return self.rows


class Pool:
    def __init__(self, conn=None, timeout=False):
        self.conn, self.timeout = conn, timeout

    @contextmanager
    def connection(self, timeout=None):
        if self.timeout:
            raise PoolTimeout("no connection")
        yield self.conn


class Primary:
    observers: list = []

    def __init__(self, position=200):
        self.calls: list[str] = []
        self.position = position

    def call(self, function, query, params, timeout=None):
        self.calls.append(function)
        if function == "sp_wal_position":
            return [(self.position,)]
        return [("primary rows",)]


@pytest.fixture
def route():
    """route(standby=Standby(...), **config) -> (replica, primary); every decision is recorded."""
    def build(standby=None, timeout=False, **overrides):
        config = load_config({**BASE, "DATABASE_READ_URL": "host=standby dbname=x", **overrides}, env={})
        primary = Primary()
        replica = Replica(config, primary)
        replica.pool = Pool(standby or Standby(), timeout)
        replica._opened = True
        replica.events = []
        replica.observers.append(lambda event, value: replica.events.append((event, value)))
        return replica, primary
    return build


def decisions(replica):
    return [event for event in replica.events if event[0] in ("standby", "primary")]


def test_a_user_without_writes_reads_from_the_standby(route):
    replica, primary = route()
    assert replica.read("sp_inbox_list", "Q", (), USER) == [("standby rows",)]
    assert decisions(replica) == [("standby", "replayed")] and primary.calls == []


def test_after_a_write_the_standby_must_have_replayed_it(route):
    standby = Standby(status=(True, 150, 250, True))
    replica, primary = route(standby)
    replica.wrote([USER])  # the primary is at 200
    assert replica.read("sp_inbox_list", "Q", (), USER) == [("primary rows",)]
    standby.status = (True, 200, 250, True)
    replica.servers.clear()  # (the status is cached per server for a few ms: read it again now)
    assert replica.read("sp_inbox_list", "Q", (), USER) == [("standby rows",)]
    other = "11111111-1111-4111-8111-111111111111"
    standby.status = (True, 150, 250, True)
    replica.servers.clear()
    assert replica.read("sp_inbox_list", "Q", (), other) == [("standby rows",)]  # not the writer
    assert decisions(replica) == [("primary", "own_write"), ("standby", "replayed"), ("standby", "replayed")]


def test_a_server_that_is_no_longer_a_standby_answers_only_what_it_has_written(route):
    """prefer-standby's fallback or a promoted standby answers as the primary would, but not a
    user who wrote past its insert position: that write went to another primary (a superseded one
    still up during a switchover must not answer with what it missed)."""
    server = Standby(status=(False, 300, None, False))
    replica, primary = route(server)
    assert replica.read("sp_inbox_list", "Q", (), USER) == [("standby rows",)]  # no floor: current
    replica.floors.record([USER], 250)  # written here (250 <= 300)
    assert replica.read("sp_inbox_list", "Q", (), USER) == [("standby rows",)]
    replica.floors.record([USER], 400)  # a write this server does not hold
    replica.servers.clear()
    assert replica.read("sp_inbox_list", "Q", (), USER) == [("primary rows",)]
    assert decisions(replica) == [("primary", "not_standby"), ("primary", "not_standby"),
                                  ("primary", "own_write")]


def test_a_standby_answers_a_writer_only_once_seen_streaming_on_that_connection(route, monkeypatch):
    """An old primary restarted as a standby can replay WAL of its own past a floor it does not hold
    (the new primary forked before it) until it is rewound: a writer's read needs a standby whose
    history was seen to be the primary's, a WAL receiver running with all it replayed received."""
    clock = [1000.0]
    monkeypatch.setattr(replica_module.time, "monotonic", lambda: clock[0])
    standby = Standby(status=(True, 500, None, False))  # restarted: replayed its own WAL, no stream
    replica, primary = route(standby)
    other = "11111111-1111-4111-8111-111111111111"
    assert replica.read("sp_inbox_list", "Q", (), other) == [("standby rows",)]  # no floor: the lag only
    replica.floors.record([USER], 400)
    assert replica.read("sp_inbox_list", "Q", (), USER) == [("primary rows",)]
    assert replica.read("sp_inbox_list", "Q", (), USER) == [("primary rows",)]
    assert standby.calls.count(replica_module.STATUS) == 2  # asked again once, not per read
    standby.status = (True, 500, 420, True)  # a receiver, but what it replayed was not received
    clock[0] += replica_module.STATUS_SECONDS
    assert replica.read("sp_inbox_list", "Q", (), USER) == [("primary rows",)]
    standby.status = (True, 600, 650, True)  # streaming from the primary
    clock[0] += replica_module.STATUS_SECONDS
    assert replica.read("sp_inbox_list", "Q", (), USER) == [("standby rows",)]
    standby.status = (True, 650, 650, False)  # the stream broke afterwards (a switchover)
    clock[0] += replica_module.STATUS_SECONDS
    assert replica.read("sp_inbox_list", "Q", (), USER) == [("standby rows",)]  # still vouched
    assert decisions(replica) == [("standby", "replayed"), ("primary", "own_write"), ("primary", "own_write"),
                                  ("primary", "own_write"), ("standby", "replayed"), ("standby", "replayed")]


def test_the_status_is_cached_not_read_per_request(route, monkeypatch):
    standby = Standby()
    replica, _ = route(standby)
    clock = [1000.0]
    monkeypatch.setattr(replica_module.time, "monotonic", lambda: clock[0])
    for _ in range(5):
        replica.read("sp_inbox_list", "Q", (), USER)
        clock[0] += 0.01
    assert standby.calls.count(replica_module.STATUS) == 1
    # a floor above the cached replay position re-reads it, at most every FLOOR_RECHECK_SECONDS
    replica.floors.record([USER], 500)
    replica.read("sp_inbox_list", "Q", (), USER)
    replica.read("sp_inbox_list", "Q", (), USER)
    assert standby.calls.count(replica_module.STATUS) == 2
    clock[0] += replica_module.FLOOR_RECHECK_SECONDS + 0.001
    replica.read("sp_inbox_list", "Q", (), USER)
    assert standby.calls.count(replica_module.STATUS) == 3
    clock[0] += replica_module.STATUS_SECONDS
    replica.floors.memory.clear()
    replica.read("sp_inbox_list", "Q", (), USER)  # no floor: only the lag, every STATUS_SECONDS
    assert standby.calls.count(replica_module.STATUS) == 4


def test_an_answer_older_than_the_clients_version_goes_to_the_primary(route):
    replica, primary = route(Standby(answer=[(1, 1, None, 6)]))
    stale = (lambda rows: rows[0][3] < 7)
    assert replica.read("sp_get_unread_count", "Q", (), USER, stale) == [("primary rows",)]
    assert decisions(replica) == [("primary", "version")]


def test_a_fold_goes_to_the_primary_without_skipping_the_standby(route):
    error = psycopg.errors.ReadOnlySqlTransaction("cannot execute SELECT FOR UPDATE in a read-only transaction")
    replica, primary = route(Standby(error=error))
    assert replica.read("sp_get_unread_count", "Q", (), USER) == [("primary rows",)]
    assert decisions(replica) == [("primary", "fold")] and replica.skip_reason is None


def test_a_standby_too_far_behind_is_skipped_for_a_while(route, monkeypatch):
    standby = Standby(status=(True, 100, 300, True))
    replica, primary = route(standby, DB_MAX_REPLICA_LAG_SECONDS=1.0)
    clock = [1000.0]
    monkeypatch.setattr(replica_module.time, "monotonic", lambda: clock[0])
    assert replica.read("q", "Q", (), USER) == [("standby rows",)]  # behind since now: lag 0
    clock[0] += 1.5
    assert replica.read("q", "Q", (), USER) == [("primary rows",)]  # behind for 1.5 s
    assert ("skipped", "lag") in replica.events
    standby.status = (True, 300, 300, True)
    clock[0] += 0.5
    assert replica.read("q", "Q", (), USER) == [("primary rows",)]  # still within SKIP_SECONDS
    clock[0] += replica_module.SKIP_SECONDS
    assert replica.read("q", "Q", (), USER) == [("standby rows",)]  # the probe: caught up
    assert replica.skip_reason is None
    assert decisions(replica) == [("standby", "replayed"), ("primary", "lag"), ("primary", "lag"),
                                  ("standby", "replayed")]


@pytest.mark.parametrize("failure", ["timeout", "lost"])
def test_an_unreachable_standby_is_skipped_and_reads_use_the_primary(route, failure):
    if failure == "timeout":
        replica, primary = route(timeout=True)
    else:
        replica, primary = route(Standby(error=psycopg.OperationalError("server closed the connection")))
    assert replica.read("q", "Q", (), USER) == [("primary rows",)]
    assert replica.read("q", "Q", (), USER) == [("primary rows",)]
    assert decisions(replica) == [("primary", "down"), ("primary", "down")]
    assert [e for e in replica.events if e[0] == "skipped"] == [("skipped", "down")]


def test_a_recovery_conflict_retries_that_read_on_the_primary_without_skipping(route):
    error = psycopg.errors.SerializationFailure("canceling statement due to conflict with recovery")
    replica, primary = route(Standby(error=error))
    assert replica.read("q", "Q", (), USER) == [("primary rows",)]
    assert decisions(replica) == [("primary", "conflict")] and replica.skip_reason is None


def test_the_callers_own_mistake_is_not_retried(route):
    error = function_error("NA422", "limit must be between 1 and 101")
    replica, primary = route(Standby(error=error))
    with pytest.raises(ApiError) as raised:
        replica.read("q", "Q", (), USER)
    assert raised.value.status == 422 and primary.calls == []


def test_not_found_on_a_standby_is_asked_of_the_primary(route):
    replica, primary = route(Standby(error=function_error("NA404", "notification not found")))
    assert replica.read("q", "Q", (), USER) == [("primary rows",)]
    assert decisions(replica) == [("primary", "missing")]


def test_without_a_wal_receiver_the_lag_is_the_time_since_it_went_missing():
    state = _next_state(None, 10.0, True, 100, 100, False)
    assert state.lag == 0.0
    state = _next_state(state, 13.0, True, 100, 100, False)
    assert state.lag == 3.0  # a switchover of a few seconds keeps the standby; a broken stream does not
    state = _next_state(state, 14.0, True, 100, 120, True)  # streaming again, 120 not replayed yet
    assert state.lag == 0.0 and state.behind == (120, 14.0)
    assert _next_state(None, 10.0, False, None, None, False).lag == 0.0  # a primary: current


def test_lag_counts_from_when_a_position_was_first_seen_unreplayed():
    state = _next_state(None, 10.0, True, 100, 200, True)
    assert state.lag == 0.0
    state = _next_state(state, 12.0, True, 150, 260, True)  # 200 still not replayed: since 10.0
    assert state.lag == 2.0
    state = _next_state(state, 13.0, True, 200, 260, True)  # 200 replayed: 260 is the new mark
    assert state.lag == 0.0
    assert _next_state(state, 14.0, True, 260, 260, True).lag == 0.0


def test_memory_floors_keep_the_highest_position_until_they_expire(monkeypatch):
    floors = Floors({**load_config(BASE, env={})}, max_lag=5.0)
    clock = [100.0]
    monkeypatch.setattr(replica_module.time, "monotonic", lambda: clock[0])
    floors.record([USER], 300)
    floors.record([USER], 200)  # an older write's record arriving late
    assert floors.get(USER, clock[0]) == 300
    clock[0] += floors.ttl + 1
    assert floors.get(USER, clock[0]) is None


def test_a_short_unknown_floor_does_not_hide_a_later_writes_floor(monkeypatch):
    """A write whose position was lost (a floor above every position, for one lag limit), then a
    write whose position is known: once the first expires, the second still holds for its own life."""
    floors = Floors({**load_config(BASE, env={})}, max_lag=5.0)
    clock = [100.0]
    monkeypatch.setattr(replica_module.time, "monotonic", lambda: clock[0])
    floors.unknown([USER])
    floors.record([USER], 700)
    assert floors.get(USER, clock[0]) == replica_module.UNKNOWN_POSITION
    clock[0] += 5.1
    assert floors.get(USER, clock[0]) == 700
    floors.record([USER], 600)  # an older write's record arriving late: 700 still holds
    assert floors.get(USER, clock[0]) == 700
    clock[0] = 100.0 + floors.ttl + 0.1  # 700 expired; 600, recorded later, lives a little longer
    assert floors.get(USER, clock[0]) == 600
    clock[0] += 5.1
    assert floors.get(USER, clock[0]) is None


def test_a_write_whose_position_is_lost_sends_that_user_to_the_primary(route, monkeypatch):
    replica, primary = route()
    clock = [1000.0]
    monkeypatch.setattr(replica_module.time, "monotonic", lambda: clock[0])
    real_call = primary.call
    primary.call = lambda *args, **kwargs: (_ for _ in ()).throw(ApiError(503, "database_unavailable", "x"))
    replica.wrote([USER])  # committed, but the primary went away before its position was read
    primary.call = real_call
    other = "22222222-2222-4222-8222-222222222222"
    assert replica.read("q", "Q", (), USER) == [("primary rows",)]
    assert replica.read("q", "Q", (), other) == [("standby rows",)]  # nobody else's reads
    clock[0] += max(replica.max_lag, replica_module.SKIP_SECONDS) + 0.1
    assert replica.read("q", "Q", (), USER) == [("standby rows",)]  # a lag limit later
    assert decisions(replica) == [("primary", "own_write"), ("standby", "replayed"), ("standby", "replayed")]


def test_unreadable_shared_floors_send_every_read_to_the_primary(route):
    replica, primary = route()
    replica.floors.failed(ConnectionError("redis down"))
    assert replica.read("q", "Q", (), USER) == [("primary rows",)]
    assert decisions(replica) == [("primary", "floor_unknown")]


def test_read_targets_from_the_environment():
    config = load_config(BASE, env={"DB_READ_HOST": "s1,s2", "DB_READ_PORT": "5433,5434", "DB_HOST": "p"})
    assert "host=s1,s2" in config["DATABASE_READ_CONNINFO"]
    assert "target_session_attrs=standby" in config["DATABASE_READ_CONNINFO"]
    assert load_config(BASE, env={})["DATABASE_READ_CONNINFO"] is None
    url = load_config(BASE, env={"DATABASE_READ_URL": "postgresql://u@a,b/db",
                                 "DB_READ_TARGET_SESSION_ATTRS": "prefer-standby"})["DATABASE_READ_CONNINFO"]
    assert "target_session_attrs=prefer-standby" in url
    with pytest.raises(ConfigError) as raised:
        load_config(BASE, env={"DATABASE_READ_URL": "postgresql://a/db", "DB_READ_HOST": "b"})
    assert raised.value.problems == ["set DATABASE_READ_URL or DB_READ_HOST, not both"]
    with pytest.raises(ConfigError) as raised:
        load_config(BASE, env={"DATABASE_READ_URL": "postgresql://a/db?target_session_attrs=any"})
    assert raised.value.problems == ["DATABASE_READ_URL asks for target_session_attrs=any but "
                                     "DB_READ_TARGET_SESSION_ATTRS is standby: set DB_READ_TARGET_SESSION_ATTRS "
                                     "instead"]


def test_floors_reach_every_process_through_redis(redis_url, monkeypatch):
    """Two processes' floors on one Redis: one's write is in the other's memory at its next read;
    a process that just subscribed, or lost Redis, reads the primary for one lag limit."""
    config = load_config({**BASE, "REDIS_URL": redis_url}, env={})
    writer, reader = Floors(config, max_lag=1.0), Floors(config, max_lag=1.0)
    now = replica_module.time.monotonic()
    for floors in (writer, reader):
        with pytest.raises(replica_module.FloorUnknown):  # just subscribed
            floors.get(USER, now)
        floors.unknown_until = 0.0  # (as if the lag limit had passed)
    assert reader.get(USER, now) is None
    writer.record([USER, "other"], 4242)
    assert reader.get(USER, replica_module.time.monotonic()) == 4242
    assert reader.get("other", replica_module.time.monotonic()) == 4242
    reader._subscription.connection.disconnect()  # the subscription dropped (redis-py reconnects it)
    writer.record([USER], 4343)  # published while the reader was not subscribed: lost to it
    with pytest.raises(replica_module.FloorUnknown):
        reader.get(USER, replica_module.time.monotonic())  # ... so it reads the primary for a while
    reader.unknown_until = 0.0
    writer.record([USER], 4444)
    assert reader.get(USER, replica_module.time.monotonic()) == 4444  # and receives again
