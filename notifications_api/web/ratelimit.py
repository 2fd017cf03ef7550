"""Rate limits on Redis (memory when none), keyed by user, service or client IP.

User and service routes are counted by `_route_limit` through the limits strategy directly; the
anonymous budget (by IP: /docs, the spec, failed authentication) goes through Flask-Limiter's
default limits. One Redis round trip per limited request: a Lua script counts the hit and returns
its window, so the RateLimit-* headers need no second query; a hot key (LEASE_HITS) needs one per
LEASE_HITS requests. While Redis fails the limits fail over to this
process's memory and /health reports `rate_limit_storage: degraded`; the next hit after
RETRY_SECONDS tries Redis again, so recovery needs no restart.
"""
from __future__ import annotations

import functools
import ipaddress
import logging
import math
import os
import threading
import time
from typing import Any, Callable, TypeVar

from flask import Flask, Response, current_app, g, has_app_context, request
from werkzeug.exceptions import TooManyRequests
from flask_limiter import Limit, Limiter
from limits import RateLimitItem, parse_many
from limits.storage import MemoryStorage, RedisStorage, Storage, storage_from_string
from limits.strategies import FixedWindowRateLimiter
from limits.util import WindowStats
from redis.backoff import NoBackoff
from redis.connection import Connection
from redis.exceptions import NoScriptError, RedisError
from redis.retry import Retry

from .. import metrics
from ..config import redis_uri

log = logging.getLogger(__name__)

EXTENSION = "rate_limit"
STORAGE_CHECK = "rate_limit_storage_check"  # read by views/health.py
REDIS_TIMEOUT_SECONDS = 0.2  # connect and per-reply: a hung Redis costs a request at most this
RETRY_SECONDS = 1.0  # while Redis is down, one hit per process per interval tries it again
CHECK_CACHE_SECONDS = 1.0  # /health reuses an outcome this fresh instead of pinging
KEY_PREFIX = "notifications-api"  # Redis keys: notifications-api:LIMITER/<key>/<scope>/<limit>

# Scopes: one budget per key across all the routes of a class.
USER_READ, USER_WRITE, SERVICE, ANONYMOUS = "user-read", "user-write", "service", "anonymous"
LIMIT_SETTINGS = ("RATE_LIMIT_USER_READ", "RATE_LIMIT_USER_WRITE", "RATE_LIMIT_SERVICE",
                  "RATE_LIMIT_ANONYMOUS")
# Responses that spend the client IP's anonymous budget when the request carried no accepted
# credential: failed authentication (credential stuffing) and routing misses (scanning). They
# keep their status when it is spent (API.md's order); the spent budget refuses /docs and the spec.
ANONYMOUS_FAILURES = frozenset({401, 403, 404, 405})
HEALTH = "health"  # the blueprint of /health and /health/live: never counted, never limited
# Outside the IP budget too: Prometheus scrapes must not be refused (a gap hides an incident).
# A wrong METRICS_TOKEN still spends the anonymous budget, as any failed authentication does.
# The web inbox's files too (views/ui.py): content-hashed and cached, one page load fetches several.
UNMETERED = frozenset({HEALTH, "metrics", "ui_assets"})
DOCS_PAGE = "docs.show"  # openapi.py's Swagger UI view: the page at /docs, its assets at /docs/<path>
DOCS_PAGES = (None, "index.html")

# Count the hit and return it with the window's remaining life, in one round trip. A counter
# without a TTL (first hit, or an EXPIRE lost to a crash) gets the window length.
INCR_SCRIPT = """
local count = redis.call("INCRBY", KEYS[1], ARGV[2])
local ttl = redis.call("PTTL", KEYS[1])
if ttl < 0 then
  redis.call("EXPIRE", KEYS[1], ARGV[1])
  ttl = tonumber(ARGV[1]) * 1000
end
return {count, ttl}
"""
STORAGE_ERRORS = (RedisError, OSError)
# Hot keys (issue 30: one user's many tabs, a script, a service polling for a user): a key hit again
# within LEASE_HOT_SECONDS in this process, with more than LEASE_HEADROOM of its limit left, is
# counted LEASE_HITS at a time: one round trip counts this hit and the next ones, which this process
# then serves from memory until they are used or the window ends. Redis's counter runs ahead of the
# requests served by at most LEASE_HITS - 1 per process and key, never behind: no request is served
# uncounted, and near the limit every hit is counted on its own.
LEASE_HITS = 8
LEASE_HOT_SECONDS = 0.05
LEASE_HEADROOM = 0.1  # of the limit's amount (and at least 2 × LEASE_HITS)
LEASE_KEYS_MAX = 10_000  # recently hit keys remembered per process before stale ones are dropped


class StorageHealth:
    """Whether the limiter's Redis is usable; every hit reports its outcome, /health reads it."""

    def __init__(self, ping: Callable[[], Any]):
        self._ping = ping
        self.up = True
        self._outcome_at = -math.inf  # monotonic time of the last success or failure
        self._retry_at = 0.0
        self._lock = threading.Lock()

    def use_redis(self) -> bool:
        """Up: always. Down: one caller per RETRY_SECONDS tries Redis (its own hit is the probe)."""
        if self.up:
            return True
        with self._lock:
            now = time.monotonic()
            if now < self._retry_at:
                return False
            self._retry_at = now + RETRY_SECONDS
            return True

    def succeeded(self) -> None:
        self._outcome_at = time.monotonic()
        if not self.up:
            self.up = True
            log.info("rate-limit storage recovered; limits are shared again",
                     extra={"event": "rate_limit_storage_recovered"})

    def failed(self, exc: BaseException) -> None:
        now = time.monotonic()
        self._outcome_at = now
        self._retry_at = now + RETRY_SECONDS
        if self.up:
            self.up = False
            log.warning("rate-limit storage unreachable; limits are kept in this process's memory",
                        extra={"event": "rate_limit_storage_degraded", "error": type(exc).__name__})

    def check(self) -> bool:
        """For /health: a recent outcome, else one PING (bounded by REDIS_TIMEOUT_SECONDS)."""
        if time.monotonic() - self._outcome_at >= CHECK_CACHE_SECONDS:
            try:
                self._ping()
            except STORAGE_ERRORS as exc:
                self.failed(exc)
            else:
                self.succeeded()
        return self.up


class FailoverFixedWindow(FixedWindowRateLimiter):
    """Fixed windows on Redis, in memory while Redis fails; each hit remembers its window (on g).

    Kept instead of the stock strategy + Flask-Limiter's in_memory_fallback for measured reasons
    (bench/ratelimit_stock.py; the figures: docs/PERFORMANCE.md, "Figures from the code"): stock
    costs 3 Redis round trips per limited request (hit, then GET + TTL for the headers) where this
    costs 1; its first request under a frozen Redis waits out two timeouts, and it returns to Redis
    long after Redis is back. tests/edge/test_limiter_library.py fails when either fact or the internals
    used here change.
    """

    def __init__(self, redis: RedisStorage | None):
        self.memory = MemoryStorage()
        super().__init__(self.memory)
        self.redis = redis
        self.health = StorageHealth(redis.get_connection().ping) if redis else None
        self._incr_script = redis.get_connection().register_script(INCR_SCRIPT) if redis else None
        self._own = threading.local()  # each thread's connection: (pid, redis.Connection)
        # key -> [hits left, Redis's count with them, valid until (monotonic), reset at (epoch)]
        self._leases: dict[str, list[Any]] = {}
        self._recent: dict[str, tuple[float, int]] = {}  # key -> (last Redis hit, remaining after it)
        self._buying: set[str] = set()  # keys whose lease is being bought (one thread at a time)
        self._lease_lock = threading.Lock()

    @property
    def primary(self) -> Storage:
        return self.redis or self.memory

    def hit(self, item: RateLimitItem, *identifiers: str, cost: int = 1) -> bool:
        """The strategy's API (Flask-Limiter's default limits, the anonymous budget): the window is
        remembered on g for get_window_stats."""
        key = item.key_for(*identifiers)
        allowed, window = self.hit_window(item, key, cost)
        if has_app_context():
            g.setdefault("rate_limit_windows", {})[key] = window
        return allowed

    def hit_window(self, item: RateLimitItem, key: str, cost: int = 1) -> tuple[bool, WindowStats]:
        """Count a hit on `key` (item.key_for(...)); whether it is within the limit, and the window
        after it (what the RateLimit-* headers report). A hot key's hit may be one this process
        counted already (LEASE_HITS)."""
        if self.redis is None or cost != 1:
            count, reset_at = self._incr(key, item.get_expiry(), cost)
            return count <= item.amount, WindowStats(reset_at, max(0, item.amount - count))
        now = time.monotonic()
        with self._lease_lock:
            lease = self._leases.get(key)
            if lease is not None:
                if lease[0] > 0 and now < lease[2]:
                    lease[0] -= 1
                    return True, WindowStats(lease[3], max(0, item.amount - (lease[1] - lease[0])))
                del self._leases[key]
            recent = self._recent.get(key)
            # hot, far from the limit, and no other thread buying: buy; else count this hit alone
            bought = LEASE_HITS if (
                recent is not None and now - recent[0] < LEASE_HOT_SECONDS
                and recent[1] >= max(2 * LEASE_HITS, item.amount * LEASE_HEADROOM)
                and key not in self._buying and self.health.up) else 1
            if bought > 1:
                self._buying.add(key)
        try:
            count, reset_at = self._incr(key, item.get_expiry(), bought)
        except BaseException:
            if bought > 1:
                with self._lease_lock:
                    self._buying.discard(key)
            raise
        count -= bought - 1  # this hit's place in the window; the rest are this process's to serve
        with self._lease_lock:
            if bought > 1:
                self._buying.discard(key)  # (with the lease stored: no second buyer in between)
            if len(self._recent) >= LEASE_KEYS_MAX:
                self._forget(now)
            self._recent[key] = (now, item.amount - count)
            if bought > 1 and count < item.amount:
                left = min(bought - 1, item.amount - count)  # those past the limit are spent
                self._leases[key] = [left, count + left, now + max(0.0, reset_at - time.time()), reset_at]
        return count <= item.amount, WindowStats(reset_at, max(0, item.amount - count))

    def _forget(self, now: float) -> None:
        """Drop the keys not hit lately and the leases used up or expired (under the lease lock)."""
        self._recent = {key: hit for key, hit in self._recent.items() if now - hit[0] < LEASE_HOT_SECONDS}
        self._leases = {key: lease for key, lease in self._leases.items() if lease[0] > 0 and now < lease[2]}

    def _incr(self, key: str, expiry: int, cost: int) -> tuple[int, float]:
        if self.redis is not None and self.health.use_redis():
            try:
                count, ttl_ms = self._run_script(self.redis.prefixed_key(key), expiry, cost)
            except STORAGE_ERRORS as exc:
                self.health.failed(exc)
            else:
                self.health.succeeded()
                return int(count), time.time() + int(ttl_ms) / 1000
        return self.memory.incr(key, expiry, cost), self.memory.get_expiry(key)

    def _run_script(self, key: str, expiry: int, cost: int) -> tuple[int, int]:
        """INCR_SCRIPT as one EVALSHA on this thread's own connection, not through the client.

        The client's path (pool checkout and return under a lock, a readiness poll, the retry
        wrapper, observability counters) costs more CPU than the command on a kept connection
        (docs/PERFORMANCE.md, "Figures from the code"). Same command, key and reply. A
        connection that was closed or holds an unread reply is replaced before sending, as the
        pool does on checkout; an error leaves it disconnected (the next hit reconnects) and is
        the caller's failover. NOSCRIPT (a flushed or restarted Redis) goes through the client's
        script object once, which loads the script.
        """
        connection = self._connection()
        try:
            connection.connect()  # a no-op when connected; a refused connect fails over at once
            try:
                stale = connection.can_read()  # a stray reply; EOF (closed by Redis, a proxy) raises
            except STORAGE_ERRORS:
                stale = True
            if stale:
                connection.disconnect()
                connection.connect()
            connection.send_command("EVALSHA", self._incr_script.sha, 1, key, expiry, cost)
            return connection.read_response()
        except NoScriptError:
            return self._incr_script(keys=[key], args=[expiry, cost])
        except BaseException:
            connection.disconnect()
            raise

    def _connection(self) -> Connection:
        """This thread's connection, made by the storage's pool with its settings (timeouts, client
        name, Sentinel discovery) but not lent by it: it closes when the thread ends (or, after a
        fork, is replaced)."""
        pid = os.getpid()
        own = getattr(self._own, "connection", None)
        if own is None or own[0] != pid:
            own = self._own.connection = (pid, self.redis.get_connection().connection_pool.make_connection())
        return own[1]

    def _read(self, read: Callable[[Storage], Any]) -> Any:
        if self.redis is not None and self.health.use_redis():
            try:
                result = read(self.redis)
            except STORAGE_ERRORS as exc:
                self.health.failed(exc)
            else:
                self.health.succeeded()
                return result
        return read(self.memory)

    def test(self, item: RateLimitItem, *identifiers: str, cost: int = 1) -> bool:
        key = item.key_for(*identifiers)
        return self._read(lambda storage: storage.get(key)) < item.amount - cost + 1

    def get_window_stats(self, item: RateLimitItem, *identifiers: str) -> WindowStats:
        key = item.key_for(*identifiers)
        remembered = g.get("rate_limit_windows", {}).get(key) if has_app_context() else None
        if remembered is not None:
            return remembered
        count, reset_at = self._read(lambda storage: (storage.get(key), storage.get_expiry(key)))
        return WindowStats(reset_at, max(0, item.amount - count))

    def clear(self, item: RateLimitItem, *identifiers: str) -> None:
        key = item.key_for(*identifiers)
        with self._lease_lock:
            self._leases.pop(key, None)
            self._recent.pop(key, None)
        self.memory.clear(key)
        if self.redis is not None:
            self._read(lambda storage: storage.clear(key))


class _AppLimiter(Limiter):
    """Flask-Limiter whose storage lives in each app's extensions (a process may build several apps)."""

    @property
    def limiter(self) -> FailoverFixedWindow:
        return current_app.extensions[EXTENSION].strategy

    @property
    def storage(self) -> Storage:
        return self.limiter.primary


class RateLimitState:
    """Per-app state: the strategy (storages + failover) and the parsed limits, by config name."""

    def __init__(self, strategy: FailoverFixedWindow, limits: dict[str, list[RateLimitItem]]):
        self.strategy = strategy
        self.limits = {name: sorted(items) for name, items in limits.items()}  # smallest window first
        self.anonymous = self.limits["RATE_LIMIT_ANONYMOUS"]


# --- keys -------------------------------------------------------------------------------------

def client_ip() -> str:
    """The client's address (ProxyFix has applied TRUSTED_PROXY_HOPS); IPv6 counts per /64."""
    address = request.remote_addr or "unknown"
    if ":" in address:
        try:
            network = ipaddress.ip_network(f"{address}/64", strict=False)
        except ValueError:
            return address
        return f"{network.network_address}/64"
    return address


def _user_key() -> str:
    return g.user_id


def _service_key() -> str:
    """One budget per service, whichever of its tokens it used: a rotation's overlap
    (SERVICE_TOKEN_PREVIOUS) must not double it. g.service still tells them apart in the logs."""
    return SERVICE


def _setting(name: str) -> Callable[[], str]:
    """The limit string of the current app (validated at start-up by config.py)."""
    return lambda: current_app.config[name]


def _unmetered() -> bool:
    """/health, /metrics, and Swagger UI's files: one /docs load is the page, the document and
    six static assets, and only the first two count (else 60/minute is 8 reloads; with the web inbox
    demo, the demo token the page fetches counts too)."""
    if request.blueprint in UNMETERED:
        return True
    return request.endpoint == DOCS_PAGE and (request.view_args or {}).get("path") not in DOCS_PAGES


def _on_breach(scope: str, key_func: Callable[[], str]) -> Callable[[RateLimitItem], None]:
    """What a refusal does (key: a user id, service name or IP): a log line and a metric."""
    def rejected(limit: RateLimitItem) -> None:
        log.info("rate limited", extra={
            "event": "rate_limited", "scope": scope, "limit": str(limit),
            "rate_limit_key": key_func(), "method": request.method,
            "route": request.url_rule.rule if request.url_rule else None})
        metrics.record_rate_limited()
    return rejected


_anonymous_rejected = _on_breach(ANONYMOUS, client_ip)


limiter = _AppLimiter(
    client_ip,
    # Endpoints that are neither a user's nor the internal one (/docs, /openapi.json) by IP.
    # (Not the routes _route_limit guards, nor the unmetered ones: the request filter below.)
    default_limits=[Limit(_setting("RATE_LIMIT_ANONYMOUS"), key_function=client_ip, scope=ANONYMOUS,
                          shared=True, on_breach=lambda hit: _anonymous_rejected(hit.limit))],
    storage_uri="memory://",  # unused: each app's storages are in its FailoverFixedWindow
    strategy="fixed-window",
    headers_enabled=False,  # ours: the IETF names, delta seconds, Retry-After only on a 429
    in_memory_fallback_enabled=False,  # ours: per app, with recovery and a health report
)

F = TypeVar("F", bound=Callable[..., Any])
ROUTE_SCOPE = "rate_limit_scope"  # set on a view _route_limit wraps: Flask-Limiter's defaults skip it


def _route_limit(limit_setting: str, scope: str, key_func: Callable[[], str]) -> Callable[[F], F]:
    """A decorator for views, placed under the auth decorator that sets the key it reads.

    The hit goes to the strategy directly, not through Flask-Limiter's route decorator: Flask-Limiter's
    evaluation (its before_request pass and its decorator's: resolving, filtering and sorting the
    limits, building RequestLimit objects) costs more than the hit itself and the rest of the request
    together; this path costs the hit plus a dict lookup (docs/PERFORMANCE.md, round 4 and "Figures
    from the code"). Same keys in Redis as Flask-Limiter's shared limits (key_for(key, scope)), same
    on_breach log line and metric, same 429.
    """
    rejected = _on_breach(scope, key_func)

    def decorate(view: F) -> F:
        @functools.wraps(view)
        def wrapper(*args, **kwargs):
            state = current_app.extensions.get(EXTENSION)
            if state is not None:  # RATE_LIMIT_ENABLED=false: no work at all
                _hit(state, state.limits[limit_setting], key_func(), scope, rejected)
            return view(*args, **kwargs)
        setattr(wrapper, ROUTE_SCOPE, scope)
        return wrapper  # type: ignore[return-value]
    return decorate


def _hit(state: RateLimitState, items: list[RateLimitItem], key: str, scope: str,
         rejected: Callable[[RateLimitItem], None]) -> None:
    """Count this request against each limit (smallest window first); 429 at the first one spent.
    The limit _finish reports: the spent one, else the most restrictive (_most_restrictive)."""
    strategy = state.strategy
    windows = []
    for item in items:
        allowed, window = strategy.hit_window(item, item.key_for(key, scope))
        if not allowed:
            g.rate_limit = item, window
            rejected(item)
            raise TooManyRequests()
        windows.append((item, window))
    g.rate_limit = windows[0] if len(windows) == 1 else _most_restrictive(windows)


def _most_restrictive(windows: list[tuple[RateLimitItem, WindowStats]]) -> tuple[RateLimitItem, WindowStats]:
    """The limit the RateLimit-* headers report when none is spent: the one with the fewest requests
    left (then the later reset), i.e. the one that will refuse first. Flask-Limiter reports the
    smallest window, which with "600/minute;5000/hour" promised 590 left to a client about to get
    the hour's 429."""
    return min(windows, key=lambda window: (window[1].remaining, -window[1].reset_time))


@limiter.request_filter
def _route_limited() -> bool:
    """Flask-Limiter's defaults (the anonymous budget) skip the routes _route_limit guards and the
    unmetered ones."""
    view = current_app.view_functions.get(request.endpoint or "")
    return getattr(view, ROUTE_SCOPE, None) is not None or _unmetered()


user_read = _route_limit("RATE_LIMIT_USER_READ", USER_READ, _user_key)
user_write = _route_limit("RATE_LIMIT_USER_WRITE", USER_WRITE, _user_key)
service = _route_limit("RATE_LIMIT_SERVICE", SERVICE, _service_key)


# --- app wiring -------------------------------------------------------------------------------

def redis_storage(config: dict[str, Any]) -> RedisStorage | None:
    """The limits storage for REDIS_URL / REDIS_HOST (plain or Sentinel), or None without Redis.

    Every connection, to a sentinel as to the primary, gets the same short timeouts and no
    retries: a hung or failing Redis costs a request at most REDIS_TIMEOUT_SECONDS.
    """
    uri = redis_uri(config)
    if uri is None:
        return None
    bounded = {"socket_connect_timeout": REDIS_TIMEOUT_SECONDS, "socket_timeout": REDIS_TIMEOUT_SECONDS,
               "retry": Retry(NoBackoff(), 0)}  # fail over now; never wait out retries on a request
    options: dict[str, Any] = {**bounded, "client_name": "notifications-api"}
    if uri.startswith("redis+sentinel://"):
        # Counters are read back from the primary only: a replica lags and would under-count.
        options.update(sentinel_kwargs=dict(bounded), use_replicas=False)
    return storage_from_string(uri, key_prefix=KEY_PREFIX, **options)


def _anonymous_failure() -> tuple[int, WindowStats]:
    """Spend the client IP's anonymous budget on this failed request; the limit and window to report."""
    state = current_app.extensions[EXTENSION]
    key = client_ip()
    windows = []
    for item in state.anonymous:  # smallest window first, as Flask-Limiter orders them
        if not state.strategy.hit(item, key, ANONYMOUS):
            return item.amount, state.strategy.get_window_stats(item, key, ANONYMOUS)
        windows.append((item, state.strategy.get_window_stats(item, key, ANONYMOUS)))
    item, window = _most_restrictive(windows)
    return item.amount, window


def _seconds_until(timestamp: float) -> int:
    return max(0, math.ceil(timestamp - time.time()))


def _finish(response: Response) -> Response:
    """RateLimit-* on every response a limit was checked for; anonymous failures spend the IP budget.

    A failure is never turned into a 429, even once the budget is spent: API.md ranks 404/405 and
    401/403 above 429, and a browser told 429 for an expired token backs off instead of
    refreshing it. The spent budget refuses the anonymous endpoints (/docs, /openapi.json).
    """
    routed = g.pop("rate_limit", None)  # (g may outlive the request: a test's app context)
    current = limiter.current_limit if routed is None else None
    if routed is not None:
        amount, (reset_at, remaining) = routed[0].amount, routed[1]
    elif current is not None:  # Flask-Limiter's defaults (the anonymous budget)
        if not current.breached:
            current = min(limiter.current_limits, key=lambda limit: (limit.window.remaining,
                                                                     -limit.window.reset_time))
        amount, (reset_at, remaining) = current.limit.amount, current.window
    elif (response.status_code in ANONYMOUS_FAILURES and request.blueprint != HEALTH
            and g.get("user_id") is None and g.get("service") is None):
        amount, (reset_at, remaining) = _anonymous_failure()
    else:
        return response
    headers = response.headers
    headers["RateLimit-Limit"] = str(amount)
    headers["RateLimit-Remaining"] = str(remaining)
    headers["RateLimit-Reset"] = str(_seconds_until(reset_at))
    if response.status_code == 429:
        headers["Retry-After"] = str(max(1, _seconds_until(reset_at)))
    return response


def init_app(app: Flask) -> None:
    """Bind the limiter when RATE_LIMIT_ENABLED; register /health's storage check when on Redis."""
    config = app.config
    if not config["RATE_LIMIT_ENABLED"]:
        return
    redis = redis_storage(config)
    if redis is None and config["ENVIRONMENT"] == "production":
        log.warning("no REDIS_URL or REDIS_HOST: rate limits are per process "
                    "(each worker allows the full limit)",
                    extra={"event": "rate_limit_storage_memory"})
    limits = {name: parse_many(config[name]) for name in LIMIT_SETTINGS}
    state = RateLimitState(FailoverFixedWindow(redis), limits)
    app.extensions[EXTENSION] = state
    if redis is not None:
        app.extensions[STORAGE_CHECK] = state.strategy.health.check
    config["RATELIMIT_ENABLED"] = True
    limiter.init_app(app)
    _gate_default_limits(app)
    app.after_request(_finish)


def _gate_default_limits(app: Flask) -> None:
    """Flask-Limiter's request hooks run only where its default limits can apply.

    On a route _route_limit guards (and an unmetered one) its before_request check ends at the
    request filter, yet what it does first (resolving the endpoint, filtering limits, its exemption
    scopes and per-request context) costs more CPU than the Redis hit it does not make; its
    after_request hook (conditional deductions, headers: we use neither) and its teardown (resetting
    that context) then build and clear an empty per-request context (docs/PERFORMANCE.md, "Figures
    from the code" and "Issue 30"). The three hooks are replaced in place, same order among the
    hooks: the check is skipped exactly when _route_limited() would have made it a no-op, and the
    other two run only after a check ran. tests/edge/test_limiter_library.py fails if Flask-Limiter
    stops registering the hooks this replaces.
    """
    check, inject, release = flask_limiter_hooks(app, limiter)

    def check_default_limits() -> None:
        if not _route_limited():
            g.default_limits_checked = True
            check()

    def finish_default_limits(response: Response) -> Response:
        return inject(response) if g.get("default_limits_checked") else response

    def release_default_limits(exc: BaseException | None = None) -> None:
        if g.pop("default_limits_checked", False):
            release(exc)

    for hooks, hook, gated in ((app.before_request_funcs[None], check, check_default_limits),
                               (app.after_request_funcs[None], inject, finish_default_limits),
                               (app.teardown_request_funcs[None], release, release_default_limits)):
        hooks[hooks.index(hook)] = gated


def flask_limiter_hooks(app: Flask, instance: Limiter) -> tuple[Callable[..., Any], ...]:
    """The request hooks Flask-Limiter's init_app registered for `instance` on `app`: its
    before_request check, its after_request hook (partial(Limiter.__inject_headers, instance)) and
    its teardown (instance.__release_context). RuntimeError when one is not where it was."""
    check = instance._check_request_limit
    inject_headers = getattr(Limiter, "_Limiter__inject_headers", None)
    inject = next((hook for hook in app.after_request_funcs.get(None, ())
                   if isinstance(hook, functools.partial) and hook.func is inject_headers
                   and hook.args == (instance,)), None)
    release = getattr(instance, "_Limiter__release_context", None)
    if (check not in app.before_request_funcs.get(None, ()) or inject is None
            or release not in app.teardown_request_funcs.get(None, ())):
        raise RuntimeError("Flask-Limiter's request hooks are not registered where "
                           "ratelimit._gate_default_limits expects them (Flask-Limiter changed)")
    return check, inject, release
