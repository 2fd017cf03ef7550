"""Soak: a bounded run of requests across every endpoint against gunicorn; worker memory is measured.

    python tests/soak/soak.py [--requests 100000] [--threads 8]     (make soak)

Starts its own embedded PostgreSQL, redis-server and gunicorn (2 workers, max_requests off so
workers are never recycled and growth would show), then prints status counts, throughput and the
RSS of each worker at start, during and at the end. Exits 1 on any 5xx or dropped connection, or
when a worker grew by more than --max-growth-mib after warm-up.
"""
from __future__ import annotations

import argparse
import http.client
import random
import shutil
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "reliability"))

from harness import (Gunicorn, PrivatePostgres, PrivateRedis, free_port, gunicorn_env,  # noqa: E402
                     request, rss_mib, user_token)

API = "/api/v1"


def _mix(rng: random.Random, user: dict, service: dict, ids: list[str]):
    roll = rng.random()
    nid = rng.choice(ids) if ids else str(uuid.uuid4())
    if roll < 0.35:
        return "GET", f"{API}/notifications/unread/count", None, user["headers"]
    if roll < 0.55:
        return "GET", f"{API}/notifications?limit={rng.choice((5, 20, 50))}", None, user["headers"]
    if roll < 0.63:
        return "GET", f"{API}/notifications/{nid}", None, user["headers"]
    if roll < 0.68:
        return rng.choice(("PUT", "DELETE")), f"{API}/notifications/{nid}/read", None, user["headers"]
    if roll < 0.80:
        key = f"soak-{rng.getrandbits(40)}" if rng.random() < 0.9 else "soak-replayed"
        return "POST", f"{API}/notifications", {
            "user_id": user["id"], "notification_type": rng.choice(("comment", "mention", "reaction")),
            "title": "soak", "payload": {"n": rng.random()}, "dedupe_key": key}, service
    if roll < 0.85:
        return "GET", f"{API}/notifications/settings", None, user["headers"]
    if roll < 0.87:
        return "PATCH", f"{API}/notifications/settings", {"push_enabled": rng.random() < 0.5}, user["headers"]
    if roll < 0.90:
        return "POST", f"{API}/notifications/mark-read", {"notification_ids": [nid]}, user["headers"]
    if roll < 0.93:
        return "GET", "/health", None, {}
    if roll < 0.97:  # errors are part of the traffic too
        return "GET", f"{API}/notifications?limit=0", None, user["headers"]
    return "GET", f"{API}/notifications/unread/count", None, {"Authorization": "Bearer nope"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=3000)
    parser.add_argument("--max-growth-mib", type=float, default=30.0)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="nt-soak-"))
    pg = redis = server = None
    try:
        print("starting embedded PostgreSQL, redis-server and gunicorn ...", flush=True)
        pg = PrivatePostgres(work / "pg")
        redis = PrivateRedis(work)
        (work / "prometheus").mkdir()
        port = free_port()
        pg.set_statement_timeout("5000")
        env = gunicorn_env(pg.app, work / "prometheus", redis.port, PORT=str(port), GUNICORN_MAX_REQUESTS="0",
                           DB_POOL_TIMEOUT="5", DB_STATEMENT_TIMEOUT_MS="5000", GUNICORN_KEEPALIVE="75",
                           DB_POOL_MAX_SIZE="4", GUNICORN_THREADS="4")
        server = Gunicorn(env=env, log_path=work / "gunicorn.log", port=port).start()
        service = {"X-Service-Token": env["SERVICE_TOKEN"]}
        users = []
        for _ in range(args.users):
            uid = pg.create_user()
            users.append({"id": uid, "headers": {"Authorization": f"Bearer {user_token(env, uid)}"}})
        ids: list[str] = []

        statuses: Counter = Counter()
        by_route: Counter = Counter()
        dropped: list[str] = []
        sent = [0]
        lock = threading.Lock()
        samples: list[tuple[int, dict[int, float]]] = []
        total = args.warmup + args.requests

        def take() -> bool:
            with lock:
                if sent[0] >= total:
                    return False
                sent[0] += 1
                return True

        def run(seed: int) -> None:
            rng = random.Random(seed)
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            while take():
                user = rng.choice(users)
                method, path, body, headers = _mix(rng, user, service, ids)
                try:
                    r = request(port, method, path, body, headers, conn=conn)
                except (OSError, http.client.HTTPException) as exc:
                    dropped.append(f"{method} {path}: {exc!r}")
                    conn.close()
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                    continue
                statuses[r.status] += 1
                by_route[(method, path.split("?")[0].replace(API, "")[:40], r.status)] += 1
                if r.status == 201 and len(ids) < 5000:
                    ids.append(r.body["results"][0]["notification"]["notification_id"])
            conn.close()

        def rss() -> dict[int, float]:
            return {w.pid: round(rss_mib(w.pid), 1) for w in server.workers()}

        threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(args.threads)]
        started = time.monotonic()
        for thread in threads:
            thread.start()
        measured_from = None
        next_sample = args.warmup
        while any(t.is_alive() for t in threads):
            done = sent[0]
            if done >= next_sample:
                if measured_from is None:
                    measured_from = (time.monotonic(), done)
                samples.append((done - args.warmup, rss()))
                print(f"  {done - args.warmup:>7} requests  RSS MiB per worker {samples[-1][1]}", flush=True)
                next_sample += args.requests // 10
            time.sleep(0.2)
        elapsed = time.monotonic() - started
        measured = time.monotonic() - measured_from[0]
        samples.append((sent[0] - args.warmup, rss()))

        print(f"\n{sent[0]} requests ({args.warmup} warm-up) in {elapsed:.1f}s; "
              f"{(sent[0] - measured_from[1]) / measured:.0f} req/s after warm-up; threads {args.threads}")
        print("status counts:", dict(sorted(statuses.items())))
        for (method, route, status), count in sorted(by_route.items(), key=lambda kv: -kv[1])[:20]:
            print(f"  {count:>7}  {status}  {method} {route}")
        first, last = samples[0][1], samples[-1][1]
        print("RSS MiB per worker after warm-up -> end:")
        growth = {}
        for pid in sorted(set(first) | set(last)):
            growth[pid] = (last.get(pid, 0) - first.get(pid, 0)) if pid in first and pid in last else None
            print(f"  worker {pid}: {first.get(pid)} -> {last.get(pid)}  (growth {growth[pid]})")
        failed = False
        if any(s >= 500 for s in statuses) or dropped:
            print(f"FAIL: server errors {[s for s in statuses if s >= 500]} / dropped {dropped[:3]}")
            failed = True
        if set(first) != set(last):
            print("FAIL: a worker was replaced during the soak")
            failed = True
        if any(g is not None and g > args.max_growth_mib for g in growth.values()):
            print(f"FAIL: a worker grew by more than {args.max_growth_mib} MiB")
            failed = True
        print("soak", "FAILED" if failed else "passed")
        return 1 if failed else 0
    finally:
        if server:
            server.close()
        if redis:
            redis.close()
        if pg:
            pg.close()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
