"""Instructions per request of the app's own Python, counted by callgrind.

Wall-clock timings on a shared machine move by +-30 % between two processes; instruction counts
do not (callgrind counts what the CPU executes, whatever else runs). Each scenario runs
in-process twice under `valgrind --tool=callgrind`, after the same warm-up: once with N
requests, once with none; (difference) / N is the cost of one request.

The database call is replaced by canned rows in the shape the pool returns (uuid and timestamptz
columns already text, jsonb as Python objects), so what is counted is the app's own work:
Flask/Werkzeug, the request hooks, auth, the view, JSON, the log line and the metrics. A
profiling aid for comparing two versions of the code, not a test and not a benchmark of the
service (`make bench` is that).

Configured as deployed (issue 19): rate limits on Redis (a redis-server started here on a free port
and stopped at the end, or --redis-url; the limiter's client side, one EVALSHA round trip, is
counted; the Redis server's own work is another process), Prometheus metrics in multiprocess mode,
the JSON request line written (to /dev/null: what is counted is this process's work up to the
write). `--no-limits` is the configuration before issue 19 (limits off), comparable with older
figures. `--layers` also counts each scenario with one layer off (bench/layers.py: limits, metrics,
logging, auth) and prints each layer's cost as the difference.

    python bench/instructions.py [--requests 200] [--only unread,unread_304,list_first]
                                 [--no-limits] [--layers] [--redis-url URL] [--replica]

`--replica` (issue 29) also counts each scenario with a read target configured (DATABASE_READ_URL):
the read-routing decision of db/replica.py runs in full (the user's floor, from Redis like the
limits, or from memory with --no-limits; the standby's cached status; the routing metric), and the
standby's answer is the same canned rows, through a stand-in for the pool's checkout. The
difference is the decision's cost per request (goal: at most 3 % of a poll).

Needs valgrind (Debian: apt-get install valgrind) and, with limits on, redis-server; about 20 s per
scenario and configuration (--layers: five configurations).
"""
from __future__ import annotations

import argparse
import gc
import io
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench import layers  # noqa: E402  (bench/ is not an installed package)

PREFIX = "/api/v1"
USER = "0e4c8f3c-51b8-4a8e-9c53-2b6f7d1e2a10"
WARM_UP = 20

# A row of activity.inbox_notification as the pool loads it (20 columns, the order db/store.py selects).
NOTIFICATION = (
    "5b0c1a8e-3f7d-4c2a-9e61-0d4b8f2a7c33", USER, "comment", "New comment on your post",
    "Nice route!", "9a1f2e3d-4c5b-4a69-8e7f-1a2b3c4d5e6f", "post", "post-812",
    "https://app.example.com/posts/812#c-9", {"comment_id": 9}, "normal", "post-812-comments",
    "unread", "2026-11-26T08:31:35.168000Z", "2026-11-26T08:31:35.168000Z", None, None, None, None, None,
)
CANNED = {
    # unread_count, unseen_count, by_type, version
    "sp_get_unread_count": [(30, 4, {"comment": 12, "mention": 9, "follow": 9}, 7)],
    "sp_inbox_list": [NOTIFICATION] * 21,  # a full page of 20, plus one: a next cursor
}
SCENARIOS = {
    "unread": f"{PREFIX}/notifications/unread/count",
    "unread_304": f"{PREFIX}/notifications/unread/count",
    "list_first": f"{PREFIX}/notifications?limit=20",
}


class _Cursor:
    __slots__ = ("rows",)

    def __init__(self, rows):
        self.rows = rows

    def fetchone(self):
        return self.rows[0]

    def fetchall(self):
        return self.rows


class _StandbyConnection:
    """What the read pool hands out, for the count: a standby that has replayed everything."""

    class pgconn:
        host, port = b"standby", b"5432"

    def __init__(self, rows):
        self._rows = rows

    def execute(self, query, params=None):
        from notifications_api.db import replica

        return _Cursor([(True, 10**9, 10**9, True)] if query == replica.STATUS else self._rows(query, params))


def _stub_standby(app, replay) -> None:
    """The read pool's checkout and the standby answer canned rows (as replay() does for the primary)."""
    from contextlib import contextmanager

    function_of = {store_query: name for name, store_query in _queries().items()}

    class Pool:
        @contextmanager
        def connection(self, timeout=None):
            yield _StandbyConnection(lambda query, params: replay(None, function_of[query], query, params))

    replica = app.extensions["notifications_db"].replica
    replica.pool, replica._opened = Pool(), True


def _queries() -> dict[str, str]:
    from notifications_api.db import store

    return {"sp_get_unread_count": store.UNREAD, "sp_inbox_list": store.LIST}


def child(scenario: str, requests: int, off: frozenset[str], redis_url: str | None,
          replica: bool = False) -> None:
    """Build the app as production configures it (minus the `off` layers), stub the database call,
    serve `requests`."""
    for name in [k for k in os.environ if k.startswith(("RATE_LIMIT_", "REDIS_"))]:
        del os.environ[name]
    os.environ.update({
        "ENV_FILE": os.devnull, "ENVIRONMENT": "production", "DEBUG": "false", "ENABLE_DOCS": "false",
        "DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none",
        "JWT_SECRET": "j" * 64, "SERVICE_TOKEN": "s" * 64, "METRICS_TOKEN": "m" * 64,
        "CORS_ORIGINS": "https://app.example.com",
        "DB_ALLOW_WEAK_SSLMODE": "true",
        "PROMETHEUS_MULTIPROC_DIR": os.environ.get("PROMETHEUS_MULTIPROC_DIR",
                                                   "/tmp/nt-instructions-metrics"),
        **layers.layer_env(off, redis_url),  # RATE_LIMIT_*/REDIS_URL, LOG_LEVEL
    })
    if replica:
        os.environ["DATABASE_READ_URL"] = "postgresql://nobody@127.0.0.1:2/none"
    from notifications_api.db import pool as db_module
    from notifications_api.web.auth import issue_token

    def replay(self, function, query, params, timeout=None):
        rows = CANNED[function]
        if function == "sp_get_unread_count" and params[2] is not None:  # the 304's known version holds
            count, unseen, _, version = rows[0]
            if params[2] == version:
                rows = [(count, unseen, None, version)]
        for observe in (self.observers if self is not None else ()):
            observe(function, 0.0001)
        return rows

    db_module.Database.call = replay
    app = layers.build_app(off)
    if replica:
        _stub_standby(app, replay)
    sys.stdout = open(os.devnull, "w")  # the request log lines, as production's stdout
    path, _, query = SCENARIOS[scenario].partition("?")
    environ = {
        "REQUEST_METHOD": "GET", "PATH_INFO": path, "QUERY_STRING": query, "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000", "SERVER_PROTOCOL": "HTTP/1.1", "wsgi.url_scheme": "http",
        "wsgi.errors": sys.stderr, "wsgi.multithread": True, "wsgi.multiprocess": True,
        "wsgi.run_once": False, "wsgi.version": (1, 0), "REMOTE_ADDR": "127.0.0.1",
        "HTTP_HOST": "127.0.0.1:8000", "HTTP_USER_AGENT": "wrk",
        "HTTP_AUTHORIZATION": "Bearer " + issue_token(app.config, USER),
    }
    seen = {}

    def start_response(status, headers, exc_info=None):
        seen["status"], seen["headers"] = status, dict(headers)

    def serve() -> None:
        body = app({**environ, "wsgi.input": io.BytesIO(b"")}, start_response)
        b"".join(body)
        body.close()

    serve()
    if replica:  # a process that just subscribed to the floors reads the primary for a lag limit
        app.extensions["notifications_db"].replica.floors.unknown_until = 0.0
    if scenario == "unread_304":
        environ["HTTP_IF_NONE_MATCH"] = seen["headers"]["ETag"]
    for _ in range(WARM_UP):
        serve()
    expected = "304" if scenario == "unread_304" else "200"
    if not seen["status"].startswith(expected):
        raise SystemExit(f"{scenario}: expected {expected}, got {seen['status']}")
    if replica:
        routed = app.extensions["notifications_db"].replica
        if not routed.servers or routed.skip_reason is not None:
            raise SystemExit(f"{scenario}: the reads did not reach the (stand-in) standby")
    limited = "RateLimit-Remaining" in seen["headers"]
    if limited != ("limits" not in off and redis_url is not None):
        raise SystemExit(f"{scenario}: rate limits {'on' if limited else 'off'}, expected the opposite")
    # The same collector state at the start of both runs (N requests and none): without it a
    # full collection of the start-up heap lands in one run and not the other, and moves the
    # difference by up to ~1.6M instructions per request (seen on list_first, 100 requests).
    gc.collect()
    for _ in range(requests):
        serve()


def count(scenario: str, requests: int, off: frozenset[str], redis_url: str | None,
          replica: bool = False) -> int:
    """Instructions callgrind collected for a child run with `requests` requests."""
    command = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
               sys.executable, __file__, "--child", scenario, "--requests", str(requests),
               "--off", ",".join(sorted(off)), *(["--redis-url", redis_url] if redis_url else []),
               *(["--replica"] if replica else [])]
    env = {**os.environ, "PYTHONHASHSEED": "0"}  # same dict layouts in both runs
    completed = subprocess.run(command, env=env, capture_output=True, text=True)
    match = re.search(r"Collected\s*:\s*([\d,]+)", completed.stderr)
    if completed.returncode != 0 or not match:
        raise SystemExit(f"{scenario}: valgrind failed:\n{completed.stderr[-3000:]}")
    return int(match.group(1).replace(",", ""))


def per_request(scenario: str, requests: int, off: frozenset[str], redis_url: str | None,
                replica: bool = False) -> float:
    return (count(scenario, requests, off, redis_url, replica)
            - count(scenario, 0, off, redis_url, replica)) / requests


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--only", help="comma-separated: " + ",".join(SCENARIOS))
    parser.add_argument("--no-limits", action="store_true",
                        help="rate limits off: the configuration before issue 19 (comparable figures)")
    parser.add_argument("--layers", action="store_true",
                        help="also count with each layer off (" + ", ".join(layers.LAYERS) + ")")
    parser.add_argument("--redis-url", help="the limits' Redis (default: start a redis-server here)")
    parser.add_argument("--replica", action="store_true",
                        help="also count with a read target (the read-routing decision, issue 29)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--off", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.requests, layers.parse_off(args.off), args.redis_url, args.replica)
        return 0
    if subprocess.run(["valgrind", "--version"], capture_output=True).returncode != 0:
        raise SystemExit("valgrind is needed (Debian: apt-get install valgrind)")
    base = frozenset({"limits"}) if args.no_limits else frozenset()
    redis = None
    redis_url = args.redis_url
    if not args.no_limits and not redis_url:
        layers.require_redis_server()
        redis = layers.RedisServer()
        redis_url = redis.url
    try:
        config = ("rate limits off (--no-limits)" if args.no_limits else "rate limits on Redis")
        print(f"configuration: production, {config}, metrics on, request log lines on")
        for scenario in (args.only.split(",") if args.only else SCENARIOS):
            on = per_request(scenario, args.requests, base, redis_url)
            print(f"{scenario:<12} {on:>12,.0f} instructions per request", flush=True)
            if args.replica:
                routed = per_request(scenario, args.requests, base, redis_url, replica=True)
                print(f"  {'with a standby':<14} {routed:>12,.0f}   the routing decision costs "
                      f"{routed - on:>10,.0f} ({(routed - on) / on:.1%})", flush=True)
            if args.layers:
                for layer in layers.LAYERS:
                    if layer in base:
                        continue
                    off = per_request(scenario, args.requests, base | {layer}, redis_url)
                    print(f"  {layer + ' off':<14} {off:>12,.0f}   the layer costs {on - off:>10,.0f}"
                          f" ({(on - off) / on:.1%})", flush=True)
    finally:
        if redis is not None:
            redis.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
