"""Web Push benchmark (`make bench-push`, docs/PERFORMANCE.md "Web Push").

A fan-out to --users users × --browsers browsers each, on a throwaway database of the server at
BENCH_DATABASE_URL (else TEST_DATABASE_URL; a superuser URL), measuring:

1. the create call with push on (every user has browsers, push enabled) against push off (the same
   users with push_enabled false: _queue_push runs; since the settings are applied at expansion, it
   queues its one push_queue row all the same) and against no push queueing at all (_queue_push
   replaced by a no-op for that arm, as the superuser, in this throwaway database), interleaved, median
   of --reps; the same for a one-user create (push on vs none, 200 each, in blocks); then the
   worker's expansion of one fan-out create (rolled back, median of --reps);
2. one `deliver-push` worker process (PushWorker, --concurrency threads) sending the queued deliveries
   to a local push service: pushes/s from first claim to last recorded outcome;
3. the deliveries query (the claim's due scan) with an empty history and with --history finished
   rows: its buffers and time must not grow with the history.

The push service is a Node HTTP server on a loopback port that answers 201 to every POST (the
decrypting web-push-testing that the tests use verifies ~100-400 messages/s on this machine, so it
would measure itself; the tests prove the messages decrypt).

    .venv/bin/python bench/push.py [--users 1000] [--browsers 2] [--reps 7] [--history 200000]
"""
from __future__ import annotations

import argparse
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from notifications_api.channels.push_crypto import generate_vapid_keys, public_key_bytes  # noqa: E402
from notifications_api.channels.push_worker import PushMetrics, PushSettings, PushWorker  # noqa: E402
from notifications_api.config import load_vapid_private_key  # noqa: E402
from notifications_api.db import admin, migrate  # noqa: E402

SINK = r"""
const http = require('http');
let count = 0;
const server = http.createServer((req, res) => {
  if (req.url === '/count') { res.writeHead(200); res.end(String(count)); return; }
  req.on('data', () => {});
  req.on('end', () => { count += 1; res.writeHead(201, {'Content-Length': '0'}); res.end(); });
});
server.keepAliveTimeout = 60000;
server.listen(0, '127.0.0.1', () => console.log('Server running on port ' + server.address().port));
process.on('SIGTERM', () => process.exit(0));
"""


SINGLE_CREATE = "SELECT count(*) FROM activity.sp_inbox_create(%s::uuid[], 'comment', %s)"
NO_QUEUEING = """
CREATE OR REPLACE FUNCTION activity._queue_push(p_rows activity.inbox_notification[])
RETURNS integer LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = activity, pg_temp
AS $$ BEGIN RETURN 0; END $$"""


def start_sink() -> tuple[subprocess.Popen, int]:
    if shutil.which("node") is None:
        sys.exit("node is required (the local push service)")
    process = subprocess.Popen(["node", "-e", SINK], stdout=subprocess.PIPE, text=True)
    line = process.stdout.readline()
    return process, int(line.rsplit(" ", 1)[1])


def points(n: int) -> list[bytes]:
    from cryptography.hazmat.primitives.asymmetric import ec

    return [public_key_bytes(ec.generate_private_key(ec.SECP256R1())) for _ in range(n)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--browsers", type=int, default=2)
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--rounds", type=int, default=3, help="fan-outs delivered by the worker")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--history", type=int, default=200000)
    args = parser.parse_args()

    server = os.environ.get("BENCH_DATABASE_URL") or os.environ.get("TEST_DATABASE_URL")
    if not server:
        sys.exit("set BENCH_DATABASE_URL (or TEST_DATABASE_URL) to a superuser URL")
    name = f"nt_bench_push_{secrets.token_hex(4)}"
    admin.ensure_database(server, name)
    dsn = make_conninfo(server, dbname=name)
    sink, port = start_sink()
    try:
        migrate.migrate(dsn, echo=lambda *a, **k: None)
        worker_role, password = f"nt_bench_pw_{secrets.token_hex(4)}", secrets.token_urlsafe(16)
        admin.provision_push_worker_user(dsn, worker_role, password)
        run(dsn, make_conninfo(dsn, user=worker_role, password=password), port, args)
    finally:
        sink.terminate()
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
            for (role,) in conn.execute("SELECT rolname FROM pg_roles WHERE rolname LIKE 'nt_bench_pw_%'"):
                conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


def run(dsn: str, worker_dsn: str, port: int, args) -> None:
    origin = f"http://127.0.0.1:{port}"
    users = [str(uuid.uuid4()) for _ in range(args.users)]
    keys = points(args.users * args.browsers)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("INSERT INTO activity.users (user_id, email, display_name) "
                     "SELECT u, u::text || '@bench.test', 'Bench' FROM unnest(%s::uuid[]) AS u", (users,))
        with conn.cursor() as cur:
            cur.executemany(
                "SELECT activity.sp_push_subscribe(%s::uuid, %s, %s, %s, NULL, NULL, 20)",
                [(u, f"{origin}/notify/{u}-{b}", keys[i * args.browsers + b], os.urandom(16))
                 for i, u in enumerate(users) for b in range(args.browsers)])

        # 1. the create's cost, push on vs off
        def create(tag: str) -> float:
            started = time.perf_counter()
            conn.execute("SELECT count(*) FROM activity.sp_inbox_create(%s::uuid[], 'comment', %s, 'bench')",
                         (users, tag))
            return time.perf_counter() - started

        def set_push(on: bool) -> None:
            conn.execute("INSERT INTO activity.notification_settings (user_id, push_enabled) "
                         "SELECT u, %s FROM unnest(%s::uuid[]) u ON CONFLICT (user_id) DO UPDATE "
                         "SET push_enabled = EXCLUDED.push_enabled", (on, users))

        def clear_outbox() -> None:
            conn.execute("DELETE FROM activity.push_queue")
            conn.execute("UPDATE activity.push_outbox SET status = 'cancelled', finished_at = now() "
                         "WHERE status = 'pending'")

        queue_push = conn.execute(
            "SELECT pg_get_functiondef('activity._queue_push(activity.inbox_notification[])'::regprocedure)"
        ).fetchone()[0]

        def no_queueing(off: bool) -> None:
            """Swap _queue_push for a no-op (the "none" arm), or put the real one back."""
            conn.execute(NO_QUEUEING if off else queue_push)

        on, off, none = [], [], []
        create("warm-up")
        try:
            for rep in range(args.reps):
                set_push(True)
                on.append(create(f"on {rep}"))
                set_push(False)
                off.append(create(f"off {rep}"))
                no_queueing(True)
                none.append(create(f"none {rep}"))
                no_queueing(False)
        finally:
            no_queueing(False)
        clear_outbox()
        set_push(True)
        queued = args.users * args.browsers

        def ms(values: list[float]) -> float:
            return statistics.median(values) * 1000

        print(f"create for {args.users} users x {args.browsers} browsers (median of {args.reps}): "
              f"push on {ms(on):.1f} ms (one queue row for {queued} deliveries), push off {ms(off):.1f} ms, "
              f"no push queueing {ms(none):.1f} ms; on vs off {(ms(on) / ms(off) - 1) * 100:+.1f} %, "
              f"on vs none {(ms(on) / ms(none) - 1) * 100:+.1f} %")

        # 1a. the common create: one recipient (with browsers, push on), queueing vs none, in blocks
        single_on, single_none = [], []
        try:
            for block in range(4):
                for arm, times in ((False, single_on), (True, single_none)):
                    no_queueing(arm)
                    for i in range(50):
                        started = time.perf_counter()
                        user = users[(block * 50 + i) % len(users)]
                        conn.execute(SINGLE_CREATE, ([user], f"single {block} {i}"))
                        times.append(time.perf_counter() - started)
        finally:
            no_queueing(False)
        print(f"create for 1 user x {args.browsers} browsers (median of {len(single_on)}): push on "
              f"{ms(single_on):.3f} ms, no push queueing {ms(single_none):.3f} ms, "
              f"{(ms(single_on) / ms(single_none) - 1) * 100:+.1f} %")
        clear_outbox()

        # 1b. the worker's expansion of one such create into per-browser deliveries
        create("expansion probe")
        expansion = []
        for _ in range(args.reps):
            conn.execute("BEGIN")
            started = time.perf_counter()
            [(rows, made)] = conn.execute("SELECT * FROM activity.sp_expand_push_queue(1000)").fetchall()
            expansion.append(time.perf_counter() - started)
            conn.execute("ROLLBACK")
        print(f"expansion of one such fan-out by the claim: {ms(expansion):.1f} ms for {rows} queue row"
              f" -> {made} deliveries (median of {args.reps}, rolled back)")
        clear_outbox()

        # 2. one worker process's throughput
        private, _ = generate_vapid_keys()
        settings = PushSettings(vapid_private_key=load_vapid_private_key(private),
                                vapid_subject="mailto:bench@notifications-api.dev",
                                allowed_hosts=(origin,), concurrency=args.concurrency, batch_size=200,
                                poll_interval=0.05, lease_seconds=60)
        rates = []
        for round_ in range(args.rounds):
            create(f"round {round_}")
            worker = PushWorker(worker_dsn, settings, metrics=PushMetrics())
            cpu = time.process_time()
            started = time.perf_counter()
            handled = worker.run(once=True)
            elapsed = time.perf_counter() - started
            cpu = time.process_time() - cpu
            sent = worker.metrics.deliveries.labels("sent")._value.get()
            rates.append(sent / elapsed)
            print(f"worker round {round_ + 1}: {int(sent)}/{handled} sent in {elapsed:.2f} s = "
                  f"{sent / elapsed:.0f} pushes/s (worker CPU {cpu / max(sent, 1) * 1e6:.0f} µs/push)")
        print(f"worker: median {statistics.median(rates):.0f} pushes/s per process "
              f"(concurrency {args.concurrency})")

        # 3. the deliveries query against the history: the claim (200 due rows, rolled back) and its
        #    due scan's buffers
        scan = ("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) SELECT o.user_id, o.delivery_id "
                "FROM activity.push_outbox o WHERE o.status = 'pending' AND o.available_at <= now() "
                "ORDER BY o.available_at LIMIT 200 FOR UPDATE SKIP LOCKED")

        def measure(label: str) -> None:
            times = []
            for _ in range(15):
                conn.execute("BEGIN")
                started = time.perf_counter()
                conn.execute("SELECT count(*) FROM activity.sp_claim_push_deliveries('bench', 200, 60, 5)")
                times.append(time.perf_counter() - started)
                conn.execute("ROLLBACK")
            conn.execute("BEGIN")
            plan = conn.execute(scan).fetchone()[0][0]["Plan"]
            conn.execute("ROLLBACK")
            buffers = plan.get("Shared Hit Blocks", 0) + plan.get("Shared Read Blocks", 0)
            rows = conn.execute("SELECT count(*) FROM activity.push_outbox").fetchone()[0]
            print(f"deliveries query, {label} ({rows} outbox rows): claim of 200 "
                  f"{statistics.median(times) * 1000:.1f} ms (median of 15), due scan {buffers} buffers")
        create("history probe")
        while conn.execute("SELECT expanded FROM activity.sp_expand_push_queue(1000)").fetchone()[0]:
            pass  # the claims below measure the lease, not the expansion (rolled back each time)
        measure("small history")
        conn.execute("""
            INSERT INTO activity.push_outbox (user_id, notification_id, subscription_id, status, attempts,
                                              created_at, finished_at)
            SELECT s.u[1 + g %% cardinality(s.u)], gen_random_uuid(), s.i[1 + g %% cardinality(s.u)],
                   (ARRAY['sent', 'failed', 'cancelled'])[1 + g %% 3], 1, now(), now()
              FROM generate_series(1, %s) g,
                   (SELECT array_agg(user_id) AS u, array_agg(subscription_id) AS i
                      FROM activity.push_subscriptions) s""", (args.history,))
        conn.execute("ANALYZE activity.push_outbox")
        measure(f"+{args.history} finished rows")


if __name__ == "__main__":
    main()
