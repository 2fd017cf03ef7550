"""Reads on streaming standbys: a second pool, the routing decision, and read-your-writes floors.

GitLab's database load balancing, on PostgreSQL's own streaming replication: after a write the
primary's WAL position is remembered for every user the write touched (in every process, through
Redis pub/sub when Redis is configured; else in this process); a read for that user goes to a
standby only once the standby has replayed past it. The standby's position is cached per server
for a few milliseconds, so a decision costs no extra round trip per request. A standby that is
too far behind, unreachable or failing is skipped for SKIP_SECONDS (a metric, a log line) and its
reads go to the primary: never an error. docs/SCALING.md ("Read replicas") has the measurements
and the choices.
"""
from __future__ import annotations

import logging
import math
import select
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Callable

import psycopg
from flask import Flask
from psycopg_pool import PoolTimeout
from redis.client import PubSub

from . import failures, rows
from ..errors import ApiError
from .pool import EXTENSION, Database, _idle_check, keep_open, make_pool

log = logging.getLogger(__name__)

WAL_POSITION = "SELECT activity.sp_wal_position()"
STATUS = ("SELECT in_recovery, replay_position, receive_position, receiving"
          " FROM activity.sp_replica_status()")
# A standby's status (replay and receive positions) younger than this decides a read whose user has
# no floor; a user's floor above the cached replay position re-reads it when older than
# FLOOR_RECHECK_SECONDS. Both are per server and process: under load one status query per server
# per STATUS_SECONDS (or per FLOOR_RECHECK_SECONDS while users wait for their writes).
STATUS_SECONDS = 0.25
FLOOR_RECHECK_SECONDS = 0.005
SKIP_SECONDS = 2.0  # a skipped standby is tried again (by one read) after this
CHECKOUT_SECONDS = 0.5  # the most a read waits for a standby connection before using the primary
# prefer-standby: a read connection that landed on a non-standby (none was up, or a failover promoted
# it) is replaced after this, so the reads find a standby again once there is one.
NOT_STANDBY_SECONDS = 10.0
REDIS_TIMEOUT_SECONDS = 0.2
FLOOR_CHANNEL = "notifications-api:wal-floors"
MEMORY_FLOORS_MAX = 100_000
UNKNOWN_POSITION = 2**53  # above every WAL position (and exact in Redis's Lua numbers)
# The calls' own 4xx that a standby behind the primary could answer wrongly (a user or a
# notification it has not replayed yet): asked again on the primary, which has the last word.
MAYBE_MISSING = frozenset({"NA401", "NA403", "NA404"})
# Why a read went where it did (metric label `reason`); target is "standby" or "primary".
REASONS = ("replayed", "own_write", "version", "fold", "missing", "conflict", "lag", "down",
           "floor_unknown", "not_standby")


class FloorUnknown(Exception):
    """The shared floors cannot be read (Redis down): no standby may answer."""


class Floors:
    """The last write position per user, in this process's memory; with Redis, every process's
    writes reach every process through one pub/sub channel.

    A writer publishes "<position> <user ids>" before its response leaves; a reader first takes
    what its subscription has received (a non-blocking read of a socket: ~5 µs, against ~50 µs for
    a GET per request), then looks in memory. Causality holds: the message is in the reader's
    socket before the writer's client even has the response — once the writer has had the reply
    to a PING sent after its PUBLISH. Redis writes the publisher's reply before the subscribers'
    copies (its pending-write queue is last in, first out), so a Redis descheduled in between
    let a reader in another process miss a floor of a write already acknowledged (a CI run saw
    it); the PING is read in a later turn of Redis's event loop, after every copy was written.
    One more round trip per write, none per read. A process that just subscribed (its
    first request, or after losing Redis) has missed what was published before: for one lag limit
    its reads use the primary, and so do all of them while Redis cannot be read.
    """

    def __init__(self, config: dict[str, Any], max_lag: float):
        self.ttl = max(60.0, 4 * max_lag)  # a floor older than this is below any usable standby
        # per user: (position, expires at) pairs, the highest position first, each later one lower
        # and expiring later (a short-lived unknown floor over a later write's lasting one)
        self.memory: dict[str, tuple[tuple[int, float], ...]] = {}
        self.unknown_until = 0.0
        self.max_lag = max_lag
        self.redis = _redis_client(config)
        self._subscription: Any = None  # opened in the worker (after fork), on first use
        self._poller: Any = None
        self._lock = threading.Lock()

    def get(self, user_id: str, now: float) -> int | None:
        if self.redis is not None:
            self._receive()
        if now < self.unknown_until:
            raise FloorUnknown()
        for position, expires in self.memory.get(user_id, ()):
            if expires > now:
                return position
        return None

    def record(self, user_ids: Iterable[Any], position: int, ttl: float | None = None) -> None:
        ids = [str(user_id) for user_id in user_ids]
        self._remember(ids, position, ttl or self.ttl)
        if self.redis is not None:
            try:
                self.redis.publish(FLOOR_CHANNEL, f"{position} {math.ceil(ttl or self.ttl)} {','.join(ids)}")
                self.redis.ping()  # the subscribers' copies are written by now (the class docstring)
            except Exception as exc:
                self.failed(exc)

    def unknown(self, user_ids: Iterable[Any]) -> None:
        """These users wrote, but where the write ended in the WAL could not be read (the primary
        went away right after the commit): their reads use the primary for one lag limit, after
        which any standby within the limit has replayed it."""
        self.record(user_ids, UNKNOWN_POSITION, ttl=max(self.max_lag, SKIP_SECONDS))

    def failed(self, exc: BaseException | None) -> None:
        """Floors may be lost or unreadable: every read uses the primary for one lag limit."""
        if time.monotonic() >= self.unknown_until:
            log.warning("read-your-writes floors unavailable; reads use the primary", extra={
                "event": "database_replica_floors_unavailable",
                "error": type(exc).__name__ if exc is not None else None})
        self.unknown_until = time.monotonic() + max(self.max_lag, SKIP_SECONDS)

    def _remember(self, ids: Sequence[str], position: int, ttl: float) -> None:
        now = time.monotonic()
        if len(self.memory) + len(ids) > MEMORY_FLOORS_MAX:
            self.memory = {k: v for k, v in self.memory.items() if v[-1][1] > now}
        expires = now + ttl
        for user_id in ids:
            # the highest position until it expires, then the next: an unknown floor (a short life)
            # must not hide a later write's floor once it has expired
            floors = [floor for floor in self.memory.get(user_id, ()) if floor[1] > now]
            floors.append((position, expires))
            floors.sort(key=lambda floor: (-floor[0], -floor[1]))
            self.memory[user_id] = _dominant(floors)

    def _receive(self) -> None:
        """Take every floor the subscription has received (subscribing first if need be).

        Only when its socket has data: a poll(0) costs ~1 µs where redis-py's get_message(timeout=0)
        costs ~5 µs per read (its retry wrapper, two settimeout calls, a peek). Everything redis-py
        has read ahead into its own buffer is drained with the message that brought it, so nothing
        waits there unseen.
        """
        with self._lock:
            try:
                if self._subscription is None:
                    self._subscribe()
                elif not self._poller.poll(0):
                    return
                idle = 0
                while True:
                    message = self._subscription.get_message(timeout=0)
                    if self._subscription.reconnected:  # redis-py re-subscribed by itself: a gap
                        self._subscription.reconnected = False
                        self.failed(None)
                        self._watch()
                    if message is None:
                        # None is also a (skipped) subscribe confirmation: stop only when nothing
                        # is left, neither in redis-py's buffer nor in the socket (a message still
                        # arriving in pieces is left for the next read after a few tries)
                        idle += 1
                        if idle > 100 or not self._subscription.connection.can_read(timeout=0):
                            return
                        continue
                    position, ttl, ids = message["data"].decode().split(" ", 2)
                    self._remember(ids.split(","), int(position), float(ttl))
            except Exception as exc:  # Redis gone or the subscription dropped: subscribe again later
                self.failed(exc)
                subscription, self._subscription = self._subscription, None
                if subscription is not None:
                    try:
                        subscription.close()
                    except Exception:
                        pass

    def _subscribe(self) -> None:
        subscription = _Subscription(self.redis.connection_pool, ignore_subscribe_messages=True)
        subscription.subscribe(FLOOR_CHANNEL)
        subscription.reconnected = False
        self._subscription = subscription
        self._watch()
        # what was published before is missed: the primary's, for one lag limit
        self.unknown_until = time.monotonic() + max(self.max_lag, SKIP_SECONDS)

    def _watch(self) -> None:
        """Poll the subscription's socket (a new one after redis-py reconnected). `_sock` is
        redis-py's own attribute: tests/unit/test_replica_routing.py fails if it goes."""
        self._poller = select.poll()
        self._poller.register(self._subscription.connection._sock.fileno(), select.POLLIN)


def _dominant(floors: list[tuple[int, float]]) -> tuple[tuple[int, float], ...]:
    """Of (position, expires) pairs sorted by position, highest first: those not outlived by a higher
    one (a lower position matters only for the time it outlives every higher one)."""
    kept: list[tuple[int, float]] = []
    for position, expires in floors:
        if not kept or expires > kept[-1][1]:
            kept.append((position, expires))
    return tuple(kept)


class _Subscription(PubSub):
    """redis-py reconnects a dropped subscription by itself and says nothing: what was published
    meanwhile is lost. PubSub.on_connect (its public re-subscribe hook) notes it here.
    tests/unit/test_replica_routing.py fails if redis-py stops calling it."""

    reconnected = False

    def on_connect(self, connection) -> None:
        self.reconnected = True
        super().on_connect(connection)


def _redis_client(config: dict[str, Any]):
    """A Redis client for REDIS_URL / REDIS_HOST (plain or Sentinel) with short timeouts, or None."""
    from ..config import redis_uri

    uri = redis_uri(config)
    if uri is None:
        return None
    from limits.storage import storage_from_string
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    bounded = {"socket_connect_timeout": REDIS_TIMEOUT_SECONDS, "socket_timeout": REDIS_TIMEOUT_SECONDS,
               "retry": Retry(NoBackoff(), 0)}
    options: dict[str, Any] = {**bounded, "client_name": "notifications-api-floors"}
    if uri.startswith("redis+sentinel://"):
        options.update(sentinel_kwargs=dict(bounded), use_replicas=False)
    return storage_from_string(uri, **options).get_connection()


@dataclass
class ServerState:
    """What a server said about itself, and when (time.monotonic())."""
    checked_at: float
    in_recovery: bool
    replay: int  # a standby's replay position; a primary's insert position
    lag: float
    # (a received position not yet replayed, when first seen); (-1, when) while no WAL receiver runs
    behind: tuple[int, float] | None


class Replica:
    """The read pool over DATABASE_READ_URL and the decision, per read, of who answers it."""

    def __init__(self, config: dict[str, Any], primary: Database):
        self.primary = primary
        self.max_lag = config["DB_MAX_REPLICA_LAG_SECONDS"]
        self.standby_only = config["DB_READ_TARGET_SESSION_ATTRS"] == "standby"
        self.floors = Floors(config, self.max_lag)
        self.timeout = min(config["DB_POOL_TIMEOUT"], CHECKOUT_SECONDS)
        self.pool = make_pool(config, config["DATABASE_READ_CONNINFO"], timeout=self.timeout,
                              check=self._checkout_check, configure=self._configure,
                              name="notifications-read", connect_timeout=1,
                              application_name="notifications-api-read")
        self._opened = False
        self._lock = threading.Lock()
        self.servers: dict[tuple[bytes | None, bytes | None], ServerState] = {}
        self.skip_until = 0.0
        self.skip_reason: str | None = None
        # (target, reason) per read; ("skipped", reason) per skip; ("lag", seconds) per status read.
        self.observers: list[Callable[[str, str | float], None]] = []

    def open(self, working_size: int | None = None) -> None:
        """Open the read pool; `working_size`: keep that many connections open (Database.open)."""
        with self._lock:
            if not self._opened:
                self.pool.open(wait=False)
                self._opened = True
                if working_size is not None:
                    keep_open(self.pool, working_size)

    def close(self) -> None:
        with self._lock:
            if self._opened:
                self.pool.close(timeout=5)
                self._opened = False

    # -- the decision ------------------------------------------------------------------------

    def read(self, function: str, query: str, params: Sequence[Any],
             user_id: str, stale: Callable[[list[tuple]], bool] | None = None) -> list[tuple]:
        now = time.monotonic()
        if now < self.skip_until or (self.skip_reason is not None and not self._claim_probe(now)):
            return self._on_primary(function, query, params, self.skip_reason or "down")
        try:
            floor = self.floors.get(user_id, now)
        except FloorUnknown:
            return self._on_primary(function, query, params, "floor_unknown")
        target, reason, answer = self._on_standby(function, query, params, floor, now, stale)
        if answer is None:
            return self._on_primary(function, query, params, reason)
        self._notify(target, reason)
        return answer

    def _on_standby(self, function: str, query: str, params: Sequence[Any], floor: int | None, now: float,
                    stale: Callable[[list[tuple]], bool] | None) -> tuple[str, str, list[tuple] | None]:
        """(target, reason, rows) from the read pool, or (target, reason, None): ask the primary."""
        if not self._opened:
            self.open()
        started = time.perf_counter()
        try:
            with self.pool.connection(timeout=self.timeout) as conn:
                state = self._state(conn, floor, now)
                if not state.in_recovery:
                    # A promoted standby, or prefer-standby's fallback: current, unless this user
                    # wrote past what it holds (a superseded primary still up after a switchover).
                    if floor is not None and state.replay < floor:
                        return "primary", "own_write", None
                    return "primary", "not_standby", self._execute(conn, function, query, params, started)
                if state.lag > self.max_lag:
                    self._skip("lag", None)
                    return "standby", "lag", None
                if self.skip_reason is not None:
                    self._recovered()
                if floor is not None and (state.replay < floor or not self._vouched(conn, state, now)):
                    return "standby", "own_write", None
                answer = self._execute(conn, function, query, params, started)
            if stale is not None and stale(answer):
                return "standby", "version", None
            return "standby", "replayed", answer
        except PoolTimeout as exc:
            self._skip("down", exc)
            return "standby", "down", None
        except psycopg.Error as exc:
            sqlstate = exc.sqlstate
            if sqlstate in MAYBE_MISSING:
                return "standby", "missing", None
            if sqlstate in failures.FUNCTION_ERRORS or sqlstate == "NA422":
                raise failures.api_error(exc) from exc  # the caller's mistake: the same on the primary
            if isinstance(exc, psycopg.errors.ReadOnlySqlTransaction):
                return "standby", "fold", None  # the counts must fold the clock: a write
            if isinstance(exc, (psycopg.errors.SerializationFailure, psycopg.errors.QueryCanceled)):
                return "standby", "conflict", None  # this statement only (a recovery conflict, a timeout)
            self._skip("down", exc)  # a lost connection, a shutdown: the server
            return "standby", "down", None

    def _execute(self, conn: psycopg.Connection, function: str, query: str, params: Sequence[Any],
                 started: float) -> list[tuple]:
        try:
            return conn.execute(query, params).fetchall()
        finally:
            conn.nt_used_at = time.monotonic()
            elapsed = time.perf_counter() - started
            for observe in self.primary.observers:
                observe(function, elapsed)

    def _on_primary(self, function: str, query: str, params: Sequence[Any], reason: str) -> list[tuple]:
        self._notify("primary", reason)
        return self.primary.call(function, query, params)

    def _state(self, conn: psycopg.Connection, floor: int | None, now: float) -> ServerState:
        """The connection's server's status: cached, or read now when too old for this decision."""
        key = (conn.pgconn.host, conn.pgconn.port)
        state = self.servers.get(key)
        if state is not None:
            age = now - state.checked_at
            fresh_enough = floor is None or state.replay >= floor or age < FLOOR_RECHECK_SECONDS
            if age < STATUS_SECONDS and fresh_enough:
                return state
        return self._read_state(conn, key, state, now)

    def _read_state(self, conn: psycopg.Connection, key: tuple[bytes | None, bytes | None],
                    previous: ServerState | None, now: float) -> ServerState:
        in_recovery, replay, receive, receiving = conn.execute(STATUS).fetchone()
        conn.nt_used_at = now
        if in_recovery and receiving and receive is not None and receive >= (replay or 0):
            conn.nt_vouched = True
        state = self.servers[key] = _next_state(previous, now, in_recovery, replay, receive, receiving)
        self._notify("lag", state.lag)
        return state

    def _vouched(self, conn: psycopg.Connection, state: ServerState, now: float) -> bool:
        """Whether this standby's history is the primary's, so that its replay position can be
        compared with a floor: it was seen streaming (a WAL receiver running, and everything replayed
        received from it) on this connection. A server that restarted as a standby (an old primary
        rejoining after a switchover) may first replay WAL of its own that the new primary never had,
        its positions then past floors it does not hold, until it is rewound; it vouches once it
        streams. Its connections are new (a restart closes them all): asked once per connection, and
        a connection to a standby whose stream broke later stays vouched (its history is the last
        primary's, which a floor it has replayed came from)."""
        if getattr(conn, "nt_vouched", False):
            return True
        if now - getattr(conn, "nt_vouch_checked_at", -math.inf) < STATUS_SECONDS:
            return False  # asked lately (a standby fed by WAL archive only never vouches)
        conn.nt_vouch_checked_at = now
        key = (conn.pgconn.host, conn.pgconn.port)
        state = self._read_state(conn, key, state, now)
        return state.in_recovery and getattr(conn, "nt_vouched", False)

    # -- writes ------------------------------------------------------------------------------

    def wrote(self, user_ids: Iterable[Any]) -> None:
        """After a committed write: these users' reads need a standby that has replayed it."""
        ids = list(user_ids)
        if not ids:
            return
        try:
            position = self.primary.call("sp_wal_position", WAL_POSITION, ())[0][0]
        except ApiError:  # the write committed; its position is unknown: these users read the primary
            self.floors.unknown(ids)
            return
        self.floors.record(ids, position)

    # -- skipping a standby ------------------------------------------------------------------

    def _skip(self, reason: str, exc: BaseException | None) -> None:
        self.skip_until = time.monotonic() + SKIP_SECONDS
        if self.skip_reason != reason:
            log.warning("standby skipped; reads use the primary", extra={
                "event": "database_replica_skipped", "reason": reason,
                "error": type(exc).__name__ if exc is not None else None})
            self._notify("skipped", reason)
        self.skip_reason = reason

    def _claim_probe(self, now: float) -> bool:
        """After SKIP_SECONDS one read (this one, if it wins) tries the standby again."""
        with self._lock:
            if now < self.skip_until:
                return False
            self.skip_until = now + SKIP_SECONDS
            return True

    def _recovered(self) -> None:
        log.warning("standby answering again", extra={
            "event": "database_replica_recovered", "after": self.skip_reason})
        self.skip_reason = None
        self.skip_until = 0.0

    def healthy(self, timeout: float = 2.0) -> bool:
        """For /health: not skipped, and the standby answers its status within `timeout`."""
        if self.skip_reason is not None and time.monotonic() < self.skip_until:
            return False
        if not self._opened:
            self.open()
        try:
            with self.pool.connection(timeout=timeout) as conn:
                state = self._state(conn, None, time.monotonic())
        except (psycopg.Error, PoolTimeout):
            return False
        return not state.in_recovery or state.lag <= self.max_lag

    # -- the pool ----------------------------------------------------------------------------

    def _configure(self, conn: psycopg.Connection) -> None:
        rows.configure(conn)
        conn.nt_opened_at = time.monotonic()

    def _checkout_check(self, conn: psycopg.Connection) -> None:
        """Broken connections are closed, and so is one to a server that is no longer a standby (a
        failover promoted it): at once with target_session_attrs=standby, after NOT_STANDBY_SECONDS
        with prefer-standby (meanwhile it answers: a promoted node has every write). The pool
        reconnects, to a standby when there is one."""
        if conn.pgconn.parameter_status(b"in_hot_standby") == b"off" and (
                self.standby_only or time.monotonic() - conn.nt_opened_at > NOT_STANDBY_SECONDS):
            conn.close()
            raise psycopg.OperationalError("the read connection is not on a standby")
        try:
            _idle_check(conn)
        except psycopg.Error:
            conn.close()
            raise

    def _notify(self, event: str, value: str | float) -> None:
        for observe in self.observers:
            try:
                observe(event, value)
            except Exception:
                log.exception("a replica observer failed")


def _next_state(previous: ServerState | None, now: float, in_recovery: bool, replay: int | None,
                receive: int | None, receiving: bool) -> ServerState:
    """The lag is how long the oldest received-but-not-replayed position seen has waited (to within
    STATUS_SECONDS): a paused or stuck replay grows it, an idle primary does not (unlike
    now() - pg_last_xact_replay_timestamp(), which counts the idle time as lag). Without a WAL
    receiver (the primary is gone or switching over, or the stream broke) nothing new can arrive:
    the lag is the time since the receiver was first seen missing, so a switchover of a few
    seconds keeps the standby's reads (its data is the last primary's), a broken stream does not."""
    if not in_recovery:  # a primary: `replay` is how far it has written (sp_replica_status)
        return ServerState(now, False, replay or 0, 0.0, None)
    replay = replay or 0
    if not receiving:
        lost = previous.behind if previous is not None else None
        if lost is None or lost[0] >= 0:
            lost = (-1, now)
        return ServerState(now, True, replay, now - lost[1], lost)
    if receive is None or replay >= receive:
        return ServerState(now, True, replay, 0.0, None)
    behind = previous.behind if previous is not None else None
    if behind is None or behind[0] < 0 or replay >= behind[0]:
        behind = (receive, now)
    return ServerState(now, True, replay, now - behind[1], behind)


def get_replica(app: Flask) -> Replica | None:
    return app.extensions[EXTENSION].replica


def init_app(app: Flask) -> None:
    """A read pool when DATABASE_READ_URL (or DB_READ_HOST) is set; else reads use the primary."""
    database = app.extensions[EXTENSION]
    if app.config.get("DATABASE_READ_CONNINFO"):
        database.replica = Replica(app.config, database)
