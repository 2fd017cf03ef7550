"""The app as production serves it, with chosen layers turned off: what each layer costs.

    gunicorn -c gunicorn.conf.py bench.layers:app      (BENCH_LAYERS_OFF=metrics,auth)

Layers (issue 19): `limits` (Flask-Limiter on Redis), `metrics` (Prometheus, multiprocess under
gunicorn), `logging` (the JSON request line) and `auth` (the user JWT). Two of them have a
configuration switch and are turned off by it, exactly as an operator would: `limits` by
RATE_LIMIT_ENABLED=false, `logging` by LOG_LEVEL=WARNING (the request line is logged at INFO). The
other two have none, and the app is not changed for the bench (another change owns
notifications_api/): this module removes them from the built app instead, and fails loudly if the
app's wiring no longer has what it removes.

- metrics off: the two request hooks metrics.init_app registers and the stored-function observer
  are taken out (the /metrics endpoint stays; nothing is recorded).
- auth off: `user_required` trusts the bearer token it is given. It still finds the user id of
  the token (the unverified `sub`, remembered per token), so every request reads the same user's
  data as with auth on; what disappears is the header parsing, the verification, the
  verified-token cache and its expiry check. Never deploy it.

`build_app(off)` is also what bench/instructions.py counts, so the instruction and req/s figures
measure the same difference. `RedisServer` is the throwaway Redis both start.
"""
from __future__ import annotations

import functools
import os
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

LAYERS = ("limits", "metrics", "logging", "auth")
OFF_ENV = "BENCH_LAYERS_OFF"
# High enough that a bench run never meets them (one wrk connection on one user does ~1 000 req/s),
# while every request still does the limiter's Redis round trip: the cost of a hit does not depend
# on the amount (same script, keys, windows and headers).
BENCH_LIMIT = "1000000/minute"


def parse_off(value: str | None) -> frozenset[str]:
    off = frozenset(part.strip() for part in (value or "").split(",") if part.strip())
    unknown = off - set(LAYERS)
    if unknown:
        raise SystemExit(f"unknown layer(s) {', '.join(sorted(unknown))}; known: {', '.join(LAYERS)}")
    return off


def layer_env(off: frozenset[str] | set[str], redis_url: str | None) -> dict[str, str]:
    """Environment for a server (or an instructions.py child) with these layers off."""
    env = {OFF_ENV: ",".join(sorted(off)), "LOG_LEVEL": "WARNING" if "logging" in off else "INFO"}
    if "limits" in off or not redis_url:
        env["RATE_LIMIT_ENABLED"] = "false"
    else:
        env.update({"RATE_LIMIT_ENABLED": "true", "REDIS_URL": redis_url,
                    "RATE_LIMIT_USER_READ": BENCH_LIMIT, "RATE_LIMIT_USER_WRITE": BENCH_LIMIT,
                    "RATE_LIMIT_SERVICE": BENCH_LIMIT})
    return env


def _trusting_user_required(view):
    """auth off: the token's `sub`, unverified (remembered per token); nothing else."""
    import jwt
    from flask import g, request

    users: dict[str, str] = {}

    @functools.wraps(view)
    def wrapper(*args, **kwargs):
        header = request.environ.get("HTTP_AUTHORIZATION", "")
        user = users.get(header)
        if user is None:
            user = users[header] = jwt.decode(header[7:], options={"verify_signature": False})["sub"]
        g.user_id = user
        return view(*args, **kwargs)
    return wrapper


def build_app(off: frozenset[str] | set[str]):
    """create_app() with `off` layers removed (limits/logging are off by their config, see layer_env)."""
    from notifications_api.web import auth
    if "auth" in off:
        import sys
        if any(name.startswith("notifications_api.views") for name in sys.modules):
            raise SystemExit("auth off must be set up before the views are imported")
        auth.user_required = _trusting_user_required  # the views decorate with it at import
    from notifications_api import create_app, metrics
    from notifications_api.views import metrics as metrics_endpoint
    from notifications_api.db import pool as db

    app = create_app()
    if "metrics" in off:
        before = app.before_request_funcs.get(None, [])
        after = app.after_request_funcs.get(None, [])
        hooks = [f for f in before if getattr(f, "__name__", "") == "start_timer"
                 and f.__module__ == metrics_endpoint.__name__]
        hooks += [f for f in after if getattr(f, "__name__", "") == "record_request"
                  and f.__module__ == metrics_endpoint.__name__]
        database = app.extensions[db.EXTENSION]
        if len(hooks) != 2 or metrics.observe_function not in database.observers:
            raise SystemExit("bench/layers.py: the metrics hooks are not where they were "
                             "(notifications_api/metrics.py init_app changed); update build_app")
        for hook in hooks:
            (before if hook in before else after).remove(hook)
        database.observers.remove(metrics.observe_function)
    return app


class RedisServer:
    """A throwaway redis-server on a free loopback port (no persistence), stopped by its PID."""

    def __init__(self) -> None:
        self.directory = tempfile.mkdtemp(prefix="notifications-bench-redis-")
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", self.directory],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        self.url = f"redis://127.0.0.1:{self.port}/0"
        deadline = time.monotonic() + 10
        while True:
            if self.process.poll() is not None:
                raise SystemExit(f"redis-server exited ({self.process.returncode})")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise SystemExit("redis-server did not answer within 10 s")
            time.sleep(0.05)

    def stop(self) -> None:
        stop_process(self.process, 10)
        for leftover in Path(self.directory).glob("*"):
            leftover.unlink(missing_ok=True)
        os.rmdir(self.directory)


def stop_process(process: subprocess.Popen, timeout: float, group: bool = False) -> None:
    """SIGTERM a process we started (its whole process group with `group`), SIGKILL after `timeout`."""
    kill = os.killpg if group else os.kill
    if process.poll() is None:
        kill(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            kill(process.pid, signal.SIGKILL)
            process.wait()


def require_redis_server() -> None:
    import shutil
    if shutil.which("redis-server") is None:
        raise SystemExit("error: `redis-server` is not on PATH; the bench runs with rate limits on Redis "
                         "like production.\n  Debian/Ubuntu: sudo apt-get install redis-server    "
                         "macOS: brew install redis\n  or pass --redis-url redis://host:port/db, "
                         "or --no-limits for the old configuration (limits off).")


# `gunicorn bench.layers:app`: run.py sets BENCH_LAYERS_SERVE=1 for those servers; importing this
# module for its helpers (run.py, instructions.py) builds nothing.
app = build_app(parse_off(os.environ.get(OFF_ENV))) if os.environ.get("BENCH_LAYERS_SERVE") == "1" else None
