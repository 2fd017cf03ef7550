"""What web/ratelimit.py's one custom strategy (FailoverFixedWindow) rests on, pinned: the measured
reason it exists, and the Flask-Limiter/limits internals it reaches into. A failure here means
the library changed under it: re-measure (bench/ratelimit_stock.py) and adapt or drop it."""
from __future__ import annotations

import inspect

import flask_limiter
import pytest
from flask import Flask
from limits import parse
from limits.storage import RedisStorage, storage_from_string
from limits.strategies import FixedWindowRateLimiter

from notifications_api.web import ratelimit

IN_SCRIPT = {"cmdstat_incrby", "cmdstat_expire", "cmdstat_pttl"}  # inside an EVALSHA: no round trip


def _round_trips(admin, run) -> int:
    admin.config_resetstat()
    run()
    stats = {name: value["calls"] for name, value in admin.info("commandstats").items()
             if name not in ("cmdstat_config|resetstat", "cmdstat_info")}
    return sum(calls for name, calls in stats.items() if name not in IN_SCRIPT)


@pytest.mark.redis
def test_the_stock_fixed_window_needs_three_round_trips_where_ours_needs_one(redis_server):
    """The reason for the custom strategy: RateLimit-* need the window after the hit."""
    item = parse("100/minute")
    stock = FixedWindowRateLimiter(storage_from_string(redis_server.url, key_prefix="t"))
    ours = ratelimit.FailoverFixedWindow(storage_from_string(redis_server.url, key_prefix="t"))
    admin = redis_server.client()
    app = Flask(__name__)

    def stock_request():
        stock.hit(item, "a", "s")
        stock.get_window_stats(item, "a", "s")

    def our_request():
        with app.app_context():
            ours.hit(item, "b", "s")
            ours.get_window_stats(item, "b", "s")
    try:
        stock_request(), our_request()  # connect and load the scripts
        assert _round_trips(admin, stock_request) == 3  # EVALSHA, then GET and TTL
        assert _round_trips(admin, our_request) == 1
    finally:
        admin.close()


def test_the_flask_limiter_internals_ratelimit_uses_are_unchanged():
    limiter_class = flask_limiter.Limiter
    # _AppLimiter overrides these two to keep each app's storage in its own extensions.
    assert isinstance(inspect.getattr_static(limiter_class, "limiter"), property)
    assert isinstance(inspect.getattr_static(limiter_class, "storage"), property)
    # _finish reads the window of the request's limit through RequestLimit.window.
    assert isinstance(inspect.getattr_static(flask_limiter.RequestLimit, "window"), property)
    # FailoverFixedWindow replaces these strategy methods and prefixes keys as the storage does.
    for name in ("hit", "test", "get_window_stats", "clear"):
        parameters = inspect.signature(getattr(FixedWindowRateLimiter, name)).parameters
        assert list(parameters)[:3] == ["self", "item", "identifiers"], name
    assert RedisStorage.prefixed_key(type("S", (), {"key_prefix": "p"})(), "k") == "p:k"
    # _route_limit counts user/service routes itself and keeps them out of the default (IP) limits
    # with a request filter; a shared limit's key is key_for(key, scope), which it reuses.
    assert ratelimit._route_limited in ratelimit.limiter._request_filters
    # _gate_default_limits wraps the three request hooks Flask-Limiter registers in init_app:
    # its before_request check, its after_request hook and its teardown.
    app = Flask(__name__)
    app.config["RATELIMIT_ENABLED"] = True
    bare = flask_limiter.Limiter(ratelimit.client_ip, app=app, storage_uri="memory://")
    check, inject, release = ratelimit.flask_limiter_hooks(app, bare)
    assert check == bare._check_request_limit
    assert inject in app.after_request_funcs[None] and release in app.teardown_request_funcs[None]
    with pytest.raises(RuntimeError, match="Flask-Limiter changed"):
        ratelimit.flask_limiter_hooks(Flask(__name__), bare)  # an app it was never bound to
    assert list(inspect.signature(bare._check_request_limit).parameters) == ["callable_name", "in_middleware"]
    item = parse("5/minute")
    assert item.key_for("user", "user-read") == "LIMITER/user/user-read/5/1/minute"
