"""Stock Flask-Limiter/limits against web/ratelimit.py's FailoverFixedWindow, measured on a real Redis.

Why web/ratelimit.py keeps its one custom strategy (issue 17 asks for the measured reason):
1. Round trips per limited request: the stock fixed window counts the hit (EVALSHA) and then
   reads the window for the RateLimit-* headers (GET + TTL); ours returns both from one script.
2. Failover under a frozen Redis: the first request that fails, and how soon a process goes back
   to Redis once it answers again (the stock Limiter re-checks 1, 2, 4 ... 32 s apart).

    python bench/ratelimit_stock.py [--iterations 2000]

Starts its own redis-server on a free port (no persistence); needs nothing else.
"""
from __future__ import annotations

import argparse
import signal
import socket
import subprocess
import tempfile
import time

import redis
from flask import Flask
from flask_limiter import Limiter
from limits import parse
from limits.storage import storage_from_string
from limits.strategies import FixedWindowRateLimiter

from notifications_api.web import ratelimit


IN_SCRIPT = frozenset({"incrby", "expire", "pttl"})  # run by Redis inside an EVALSHA, not round trips


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_redis(directory: str) -> tuple[subprocess.Popen, int]:
    port = free_port()
    process = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                "--appendonly", "no", "--dir", directory],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client = redis.Redis(port=port, socket_timeout=0.5)
    for _ in range(100):
        try:
            client.ping()
            break
        except redis.RedisError:
            time.sleep(0.05)
    return process, port


def round_trips(admin: redis.Redis, run) -> dict[str, int]:
    admin.config_resetstat()
    run()
    stats = {name.removeprefix("cmdstat_"): value["calls"]
             for name, value in admin.info("commandstats").items()}
    stats.pop("config|resetstat", None)
    stats.pop("info", None)
    return stats


def storage_options() -> dict:
    return {"socket_connect_timeout": ratelimit.REDIS_TIMEOUT_SECONDS,
            "socket_timeout": ratelimit.REDIS_TIMEOUT_SECONDS, "key_prefix": ratelimit.KEY_PREFIX}


def compare_round_trips(port: int, iterations: int) -> None:
    uri = f"redis://127.0.0.1:{port}/0"
    admin = redis.Redis(port=port)
    item = parse("1000000/minute")
    stock = FixedWindowRateLimiter(storage_from_string(uri, **storage_options()))
    ours = ratelimit.FailoverFixedWindow(storage_from_string(uri, **storage_options()))
    app = Flask(__name__)

    def stock_request(key: str = "stock") -> None:
        stock.hit(item, key, "user-read")
        stock.get_window_stats(item, key, "user-read")  # what RateLimit-* need

    def our_request(key: str = "ours") -> None:
        with app.app_context():
            ours.hit(item, key, "user-read")
            ours.get_window_stats(item, key, "user-read")

    for name, run in (("stock limits FixedWindowRateLimiter", stock_request),
                      ("ratelimit.FailoverFixedWindow", our_request)):
        run()  # connect, load the scripts
        calls = round_trips(admin, run)
        started = time.perf_counter()
        for _ in range(iterations):
            run()
        per_request = (time.perf_counter() - started) / iterations * 1e6
        trips = sum(count for command, count in calls.items() if command not in IN_SCRIPT)
        print(f"{name}: {trips} round trips per limited request (commands: {calls}); "
              f"{per_request:.0f} us per request (hit + window) on loopback")
    admin.close()


def stock_failover(process: subprocess.Popen, port: int) -> None:
    """A stock Limiter (in_memory_fallback_enabled) while its Redis is frozen, then thawed."""
    app = Flask(__name__)
    limiter = Limiter(lambda: "client", app=app, storage_uri=f"redis://127.0.0.1:{port}/0",
                      storage_options={"socket_connect_timeout": 0.2, "socket_timeout": 0.2,
                                       "retry": redis.retry.Retry(redis.backoff.NoBackoff(), 0)},
                      in_memory_fallback_enabled=True, default_limits=["1000000/minute"])
    app.add_url_rule("/", "index", lambda: "ok")
    client = app.test_client()
    client.get("/")
    time.sleep(1.1)  # a process that has served for a while (its last backend check is old)
    process.send_signal(signal.SIGSTOP)
    try:
        started = time.perf_counter()
        client.get("/")
        print(f"stock Limiter, frozen Redis: the first failing request took "
              f"{(time.perf_counter() - started) * 1000:.0f} ms (timeout 200 ms)")
        frozen_until = time.monotonic() + 6
        while time.monotonic() < frozen_until:
            client.get("/")
            time.sleep(0.05)
    finally:
        process.send_signal(signal.SIGCONT)
    thawed = time.monotonic()
    while limiter.limiter.storage is not limiter.storage:  # still on the memory fallback
        client.get("/")
        time.sleep(0.05)
        if time.monotonic() - thawed > 60:
            print("stock Limiter: not back on Redis 60 s after it answered again")
            return
    print(f"stock Limiter: back on Redis {time.monotonic() - thawed:.1f} s after Redis answered again "
          f"(after a 6 s outage; the re-check interval doubles up to 32 s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=2000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        process, port = start_redis(directory)
        try:
            compare_round_trips(port, args.iterations)
            stock_failover(process, port)
        finally:
            process.send_signal(signal.SIGCONT)
            process.terminate()
            process.wait(10)


if __name__ == "__main__":
    main()
