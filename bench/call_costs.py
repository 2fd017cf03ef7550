"""What one stored-function call costs PostgreSQL: backend CPU and round trip per call.

The capacity figures of docs/SCALING.md come from here. As the app role, over one connection,
each call kind runs N times; the backend's CPU time is read from /proc/<backend pid>/stat before
and after (so it is PostgreSQL's own work: parse/bind/execute, plpgsql, the protocol, not the
client's; other sessions on a shared server do not count). PostgreSQL must run on this machine (a local
TEST_DATABASE_URL or BENCH_DATABASE_URL, superuser) and /proc readable (run as root or postgres).

    .venv/bin/python bench/call_costs.py [--calls 3000] [--users 1000]
"""
from __future__ import annotations

import argparse
import os
import random
import secrets
import statistics
import sys
import time
import uuid
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo
from psycopg.types.json import Jsonb

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from notifications_api.db import admin, migrate, store  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")


def backend_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime + stime


def create_args(user_ids: list[str], key: str | None) -> tuple:
    return (user_ids, random.choice(("comment", "mention", "like")), "A title", "A message body", None,
            "post", "post-1", None, Jsonb({"k": "v"}), "normal", None, None, key, False)


def measure(conn: psycopg.Connection, label: str, calls: list[tuple[str, tuple]], per: int = 1) -> dict:
    pid = conn.info.backend_pid
    cpu = backend_cpu(pid)
    trips = []
    for query, params in calls:
        started = time.perf_counter()
        conn.execute(query, params).fetchall()
        trips.append(time.perf_counter() - started)
    cpu = backend_cpu(pid) - cpu
    n = len(calls) * per
    row = {"call": label, "calls": len(calls), "backend_cpu_us": cpu / n * 1e6,
           "round_trip_median_us": statistics.median(trips) / per * 1e6}
    print(f"{label:<42} {row['backend_cpu_us']:6.0f} µs backend CPU  {row['round_trip_median_us']:6.0f} µs "
          f"median round trip  ({len(calls)} calls)", flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--users", type=int, default=1000)
    args = parser.parse_args()
    server = os.environ.get("BENCH_DATABASE_URL") or os.environ.get("TEST_DATABASE_URL")
    if not server:
        sys.exit("set BENCH_DATABASE_URL or TEST_DATABASE_URL (a superuser URL to a local PostgreSQL)")
    name, role, password = f"nt_costs_{uuid.uuid4().hex[:8]}", f"nt_costs_{uuid.uuid4().hex[:8]}", \
        secrets.token_urlsafe(18)
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        admin_url = make_conninfo(server, dbname=name)
        migrate.migrate(admin_url, echo=lambda *a, **k: None)
        admin.provision_app_user(admin_url, role, password)
        users = [str(admin.create_user(admin_url, email=f"u{i}@example.test")) for i in range(args.users)]
        app_url = make_conninfo(admin_url, user=role, password=password)
        with psycopg.connect(app_url, autocommit=True, prepare_threshold=5,
                             options="-c timezone=UTC -c datestyle=ISO") as conn:
            for _ in range(50):  # 50 notifications per user, by fan-out
                conn.execute(store.CREATE, create_args(users, None))
            conn.execute("SELECT 1")
            n = args.calls
            pick = [random.choice(users) for _ in range(n)]
            rows = []
            rows.append(measure(conn, "unread count (200)",
                                [(store.UNREAD, (u, True, None)) for u in pick]))
            known = {u: conn.execute(store.UNREAD, (u, True, None)).fetchone() for u in set(pick)}
            rows.append(measure(conn, "unread count (304: version known)",
                                [(store.UNREAD, (u, True, known[u][3])) for u in pick]))
            rows.append(measure(conn, "list, first page of 20",
                                [(store.LIST, (u, None, None, 21, None, None)) for u in pick]))
            rows.append(measure(conn, "create, one user",
                                [(store.CREATE, create_args([u], f"k-{i}")) for i, u in enumerate(pick)]))
            targets = []  # the app role cannot read tables: each user's unread ids from the list call
            for u in pick:
                page = conn.execute(store.LIST, (u, "unread", None, 21, None, None)).fetchall()
                targets.append((u, [r[0] for r in page]))
            rows.append(measure(conn, "mark one read",
                                [(store.MARK, (u, ids[0], True)) for u, ids in targets if ids]))
            rows.append(measure(conn, "bulk mark read (up to 20 ids)",
                                [(store.BULK, (u, "read", ids[1:], None, None, None, False, None))
                                 for u, ids in targets if len(ids) > 1][:n // 3]))
            fanout = users[:1000]
            rows.append(measure(conn, f"create fan-out, per recipient ({len(fanout)})",
                                [(store.CREATE, create_args(fanout, None)) for _ in range(20)],
                                per=len(fanout)))
    finally:
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


if __name__ == "__main__":
    main()
