"""Time the inbox v2 migration (0130, 0131 and the function file) over v1 data.

    python bench/migrate_v2.py [--rows 1000000] [--users 10000]

A throwaway database on BENCH_DATABASE_URL / TEST_DATABASE_URL (a superuser URL): the previous
release's schema and functions (tests/db/previous_release), `--rows` v1 notifications spread over
`--users` users, then this release's migrate, step by step, with the time of each step; while it
runs, a second session keeps writing through the previous release's functions (as its pods would
during the rollout) and the longest of those writes is reported: what "online" costs a client.
docs/PRODUCTION.md ("Inbox v2 migration") has the figures and the extrapolation to 10 million.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main(argv=None) -> int:
    import psycopg
    from psycopg import sql
    from psycopg.conninfo import make_conninfo

    from notifications_api.db import migrate

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--users", type=int, default=10_000)
    args = parser.parse_args(argv)
    server = (os.environ.get("BENCH_DATABASE_URL") or os.environ.get("TEST_DATABASE_URL") or "").strip()
    if not server:
        raise SystemExit("set BENCH_DATABASE_URL or TEST_DATABASE_URL to a superuser URL")
    name = f"nt_migrate_{uuid.uuid4().hex[:10]}"
    work = Path(tempfile.mkdtemp(prefix="nt-migrate-"))
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    db = make_conninfo(server, dbname=name)
    report: dict = {"rows": args.rows, "users": args.users}
    try:
        previous = work / "previous"
        (previous / "repeatable").mkdir(parents=True)
        shutil.copy(ROOT / "migrations_sql" / "0001_schema.sql", previous)
        previous_functions = ROOT / "tests" / "db" / "previous_release" / "0100_functions.sql"
        shutil.copy(previous_functions, previous / "repeatable")
        shutil.copy(ROOT / "migrations_sql" / "repeatable" / "0200_email.sql", previous / "repeatable")
        migrate.migrate(db, directory=previous, echo=lambda *_: None)
        started = time.perf_counter()
        with psycopg.connect(db, autocommit=True) as conn:
            conn.execute("INSERT INTO activity.users (user_id) SELECT md5('m' || g)::uuid"
                         " FROM generate_series(1, %s) g", (args.users,))
            conn.execute(
                """INSERT INTO activity.notifications (user_id, notification_type, title, status, read_at,
                                                       archived_at, created_at)
                   SELECT md5('m' || (1 + g %% %s))::uuid, 'comment', 't', s.status,
                          CASE WHEN s.status <> 'unread' THEN now() END,
                          CASE WHEN s.status = 'archived' THEN now() END, now() - g * interval '1 second'
                     FROM generate_series(1, %s) g
                    CROSS JOIN LATERAL (SELECT CASE WHEN g %% 10 = 0 THEN 'archived' WHEN g %% 10 < 6
                                                    THEN 'read' ELSE 'unread' END AS status) s""",
                (args.users, args.rows))
            conn.execute("INSERT INTO activity.notification_counters (user_id, unread_count, version)"
                         " SELECT user_id, count(*) FILTER (WHERE status = 'unread'), 1"
                         " FROM activity.notifications GROUP BY user_id")
            conn.execute("INSERT INTO activity.notification_type_counters"
                         " (user_id, notification_type, unread_count)"
                         " SELECT user_id, notification_type, count(*) FROM activity.notifications"
                         " WHERE status = 'unread' GROUP BY 1, 2")
            conn.execute("VACUUM ANALYZE activity.notifications")
            report["table_mb"] = conn.execute(
                "SELECT pg_total_relation_size('activity.notifications') / 1048576").fetchone()[0]
        report["seed_s"] = round(time.perf_counter() - started, 1)

        stop = threading.Event()
        writes: list[float] = []

        def old_pods():  # the previous release keeps serving writes during the migration
            with psycopg.connect(db, autocommit=True) as conn:
                while not stop.is_set():
                    t = time.perf_counter()
                    conn.execute("SELECT * FROM activity.sp_mark_notifications_as_read_bulk("
                                 "md5('m' || (1 + floor(random() * %s)))::uuid, p_all => true)",
                                 (args.users,))
                    conn.execute("SELECT 1 FROM activity.sp_create_notification("
                                 "ARRAY[md5('m' || (1 + floor(random() * %s)))::uuid], 'comment', 'during')",
                                 (args.users,))
                    writes.append(time.perf_counter() - t)
                    time.sleep(0.01)
        writer = threading.Thread(target=old_pods)
        writer.start()
        steps = []
        try:
            for m in migrate.discover():
                if m.name in ("0001_schema.sql", "repeatable/0200_email.sql"):
                    continue
                t = time.perf_counter()
                with psycopg.connect(db, autocommit=True) as conn:
                    migrate._apply(conn, m)
                steps.append({"file": m.name, "seconds": round(time.perf_counter() - t, 2)})
        finally:
            stop.set()
            writer.join()
        report["steps"] = steps
        report["total_s"] = round(sum(s["seconds"] for s in steps), 1)
        report["old_release_writes"] = len(writes)
        report["longest_old_release_write_ms"] = round(max(writes) * 1000, 1) if writes else None
        print(json.dumps(report, indent=2))
        return 0
    finally:
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
