"""Reads on a streaming standby (issue 29): who pays for a poll, and what a fold and a write cost.

Starts a throwaway primary + hot standby (tests/replica/pgpair.py: pg_basebackup -R, free ports,
stopped at the end), migrates and seeds the primary, and serves the app in-process (Flask's test
client, one pool connection per target) twice: without DATABASE_READ_URL (today) and with it.
PostgreSQL's own CPU is read from /proc/<backend pid>/stat of the app's connections on each server,
so it is the servers' work only (parse, plan, plpgsql, protocol), per request:

- the poll (304: the client's version still holds) and the first page of the list;
- a poll whose counts must fold the clock (a notification expired): on the standby the call fails
  with 25006 and is asked again of the primary, which folds (the choice); against that, computing the
  folded counts on the standby without writing (the alternative, measured as its query);
- a write (mark read): with a standby configured it also reads the primary's WAL position (the floor).

    .venv/bin/python bench/replica.py [--users 200] [--polls 3000]
"""
from __future__ import annotations

import argparse
import os
import random
import shutil
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import psycopg
from psycopg.conninfo import make_conninfo

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "replica"))
import pgpair  # noqa: E402  (the tests' primary + standby)
from notifications_api import create_app  # noqa: E402
from notifications_api.db import admin, migrate  # noqa: E402
from notifications_api.web.auth import issue_token  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")
P = "/api/v1"
SEED = ("SELECT count(*) FROM activity.sp_inbox_create(%s::uuid[], 'comment', 'A title', 'A body', NULL,"
        " 'post', %s, NULL, '{}'::jsonb, 'normal', NULL, %s::timestamptz, NULL, false)")
# The alternative to folding on the primary: the folded counts computed on the standby, written
# nowhere (what _recount computes, at now()). Every poll of a user with a fold due would pay it
# until the primary folds; and the version cannot move, so the ETag would no longer name the body.
COMPUTE_ON_STANDBY = """
SELECT count(*) FILTER (WHERE activity._c_unread(n.status, n.snoozed_until, n.expires_at, now()) = 1),
       count(*) FILTER (WHERE activity._c_unseen(n.status, n.seen_at, n.read_at, n.snoozed_until,
                                                 n.expires_at, now()) = 1),
       (SELECT jsonb_object_agg(t.notification_type, t.c) FROM (
            SELECT m.notification_type, count(*) AS c FROM activity.notifications m
             WHERE m.user_id = %(u)s
               AND activity._c_unread(m.status, m.snoozed_until, m.expires_at, now()) = 1
             GROUP BY m.notification_type) t)
  FROM activity.notifications n WHERE n.user_id = %(u)s AND n.status <> 'archived'
"""


def cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def backends(conninfo: str, application: str) -> list[int]:
    with psycopg.connect(conninfo, autocommit=True) as conn:
        return [row[0] for row in conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE application_name = %s", (application,))]


class Meter:
    """CPU of the app's backends on both servers around a block of requests."""

    def __init__(self, primary: str, standby: str):
        self.primary, self.standby = primary, standby

    def __enter__(self):
        self.pids = {"primary": backends(self.primary, "notifications-api"),
                     "standby": backends(self.standby, "notifications-api-read")}
        self.start = {k: sum(cpu(p) for p in v) for k, v in self.pids.items()}
        return self

    def __exit__(self, *exc):
        self.used = {k: sum(cpu(p) for p in v) - self.start[k] for k, v in self.pids.items()}


def app_for(servers: dict, read: bool):
    config = {"DATABASE_URL": servers["app_primary"], "JWT_SECRET": "j" * 48, "SERVICE_TOKEN": "s" * 48,
              "ENVIRONMENT": "test", "RATE_LIMIT_ENABLED": False, "LOG_LEVEL": "WARNING", "REDIS_URL": "",
              "REDIS_HOST": "", "DB_POOL_MIN_SIZE": 1, "DB_POOL_MAX_SIZE": 1}
    if read:
        config["DATABASE_READ_URL"] = servers["app_standby"]
    app = create_app(config)
    app.config["TESTING"] = True
    return app


def run(label: str, meter: Meter, requests: list, client) -> None:
    statuses: dict[int, int] = {}
    with meter:
        started = time.perf_counter()
        for path, headers in requests:
            status = client.get(P + path, headers=headers).status_code
            statuses[status] = statuses.get(status, 0) + 1
        wall = time.perf_counter() - started
    n = len(requests)
    print(f"  {label:<34} primary {meter.used['primary'] / n * 1e6:6.1f} µs  standby "
          f"{meter.used['standby'] / n * 1e6:6.1f} µs backend CPU per request; {wall / n * 1e6:6.0f} µs "
          f"wall in-process  {statuses}", flush=True)


def direct_calls(servers: dict, users: list[str], calls: int) -> None:
    """The poll's stored-function call alone, over one connection to each server (as
    bench/call_costs.py measures the primary in docs/SCALING.md): is a standby's call as cheap?"""
    from notifications_api.db import store

    print("the poll's call alone (sp_get_unread_count, version known), one connection")
    for name in ("app_primary", "app_standby"):
        with psycopg.connect(servers[name], autocommit=True, prepare_threshold=5) as conn:
            versions = {u: conn.execute(store.UNREAD, (u, True, None)).fetchone()[3] for u in users}
            picks = random.choices(users, k=calls)
            pid = conn.info.backend_pid
            before = cpu(pid)
            started = time.perf_counter()
            for u in picks:
                conn.execute(store.UNREAD, (u, True, versions[u])).fetchone()
            wall = time.perf_counter() - started
            used = cpu(pid) - before
        print(f"  {name[4:]:<34} {used / calls * 1e6:6.1f} µs backend CPU per call; "
              f"{wall / calls * 1e6:6.0f} µs round trip", flush=True)
    from notifications_api.db import replica

    for label, name, query in (("the floor (sp_wal_position)", "app_primary", replica.WAL_POSITION),
                               ("a standby's status", "app_standby", replica.STATUS)):
        with psycopg.connect(servers[name], autocommit=True, prepare_threshold=5) as conn:
            for _ in range(50):
                conn.execute(query).fetchall()
            pid = conn.info.backend_pid
            before, started = cpu(pid), time.perf_counter()
            for _ in range(calls):
                conn.execute(query).fetchall()
            wall, used = time.perf_counter() - started, cpu(pid) - before
        print(f"  {label:<34} {used / calls * 1e6:6.1f} µs backend CPU per call; "
              f"{wall / calls * 1e6:6.0f} µs round trip", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=200)
    parser.add_argument("--polls", type=int, default=3000)
    args = parser.parse_args()
    binaries = pgpair.bindir()
    if binaries is None:
        sys.exit("needs PostgreSQL binaries with pg_basebackup (apt-get install postgresql)")
    base = Path(tempfile.mkdtemp(prefix="nt-bench-replica-"))
    base.chmod(0o755)
    pair = pgpair.Pair(base / "pair", binaries)
    try:
        pair.start()
        with psycopg.connect(pgpair.conninfo(pair.primary_port), autocommit=True) as conn:
            conn.execute("CREATE DATABASE notifications")
        primary = pgpair.conninfo(pair.primary_port, "notifications")
        standby = pgpair.conninfo(pair.standby_port, "notifications")
        migrate.migrate(primary, echo=lambda *a, **k: None)
        admin.provision_app_user(primary, "bench_app", "bench-password-0123456789")
        users = [str(admin.create_user(primary, email=f"u{i}@example.test")) for i in range(args.users)]
        with psycopg.connect(primary, autocommit=True) as conn:
            for i in range(20):
                conn.execute(SEED, (users, f"post-{i}", None))
        login = {"user": "bench_app", "password": "bench-password-0123456789"}
        servers = {"app_primary": make_conninfo(primary, **login),
                   "app_standby": make_conninfo(standby, **login)}
        pgpair.wait_replayed(primary, standby)
        meter = Meter(primary, standby)
        print(f"PostgreSQL {binaries}; {args.users} users x 20 notifications; {args.polls} requests per row")
        direct_calls(servers, users, args.polls)
        for read in (False, True):
            app = app_for(servers, read)
            client = app.test_client()
            auth = {u: {"Authorization": f"Bearer {issue_token(app.config, u)}"} for u in users}
            tags = {u: client.get(f"{P}/notifications/unread/count", headers=auth[u]).headers["ETag"]
                    for u in users}
            polls = [("/notifications/unread/count", {**auth[u], "If-None-Match": tags[u]})
                     for u in random.choices(users, k=args.polls)]
            lists = [("/notifications?limit=20", auth[u]) for u in random.choices(users, k=args.polls // 3)]
            print("with a standby (DATABASE_READ_URL)" if read else "primary only (today)")
            run("poll (304)", meter, polls[:200], client)  # warm-up: plans, caches
            run("poll (304)", meter, polls, client)
            run("list, first page of 20", meter, lists, client)
            # writes: the floor costs one more call on the primary
            marks = []
            for u in random.sample(users, 151):
                first = client.get(f"{P}/notifications?limit=1", headers=auth[u]).get_json()["items"][0]
                marks.append((u, first["notification_id"]))
            u, nid = marks.pop()  # opens the primary's pool (reads alone never did, with a standby)
            assert client.put(f"{P}/notifications/{nid}/read", headers=auth[u]).status_code == 200
            with meter:
                started = time.perf_counter()
                for u, nid in marks:
                    assert client.put(f"{P}/notifications/{nid}/read", headers=auth[u]).status_code == 200
                wall = time.perf_counter() - started
            print(f"  {'mark read (a write)':<34} primary {meter.used['primary'] / len(marks) * 1e6:6.1f} µs "
                  f"backend CPU per request; {wall / len(marks) * 1e6:6.0f} µs wall in-process", flush=True)
            app.extensions["notifications_db"].close()
        # a fold due: every user gets a notification expiring in 1 s, then each polls once
        with psycopg.connect(primary, autocommit=True) as conn:
            conn.execute(SEED, (users, "expiring", datetime.now(timezone.utc) + timedelta(seconds=1)))
        time.sleep(1.5)
        pgpair.wait_replayed(primary, standby)
        app = app_for(servers, True)
        client = app.test_client()
        auth = {u: {"Authorization": f"Bearer {issue_token(app.config, u)}"} for u in users}
        client.get(f"{P}/notifications/unread/count", headers=auth[users[0]])  # open both pools
        print("a fold due (expired notifications), with a standby")
        run("poll, fold on the primary (chosen)", meter,
            [("/notifications/unread/count", auth[u]) for u in users[1:]], client)
        with psycopg.connect(standby, autocommit=True) as conn:  # the alternative, on the standby
            pid = conn.info.backend_pid
            for u in users[:20]:
                conn.execute(COMPUTE_ON_STANDBY, {"u": u}).fetchall()
            before = cpu(pid)
            for u in users:
                conn.execute(COMPUTE_ON_STANDBY, {"u": u}).fetchall()
            used = cpu(pid) - before
        label = "compute on the standby (each poll)"
        print(f"  {label:<34} standby {used / len(users) * 1e6:6.1f} µs backend CPU per poll, for every "
              "poll until the primary folds", flush=True)
        app.extensions["notifications_db"].close()
    finally:
        pair.stop()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
