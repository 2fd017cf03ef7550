"""`make bench-email` (and a scenario of `make bench`): e-mail digests (issue 25).

1. Throughput: 1 000 users with 20 pending e-mails each, all due; ONE worker process (the real
   EmailWorker, as `deliver-emails --once` runs it) against a local fake Email API that answers
   202 at once. Goal: >= 200 digests/s.
2. Flat cost: claiming (composing) the digest of a user with 100 000 notifications and 100 000
   finished outbox rows behind 10 pending ones, against a user with only those 10. Goal: the same
   cost (100 claims each, interleaved: wall-clock medians, and the backend's CPU time, which a
   shared machine disturbs less; the heavy user's must stay within 2x the light one's).
On a shared machine the wall clock measures the neighbours too: the report also gives the CPU
time per digest (worker process + its PostgreSQL backend) and what it allows.

The database: BENCH_DATABASE_URL / TEST_DATABASE_URL (a superuser URL) or the embedded PostgreSQL,
a throwaway database as `make bench` makes one (bench/run.py open_database).
"""
from __future__ import annotations

import json
import os
import secrets
import statistics
import sys
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

USERS, PER_USER, DELAY = 1000, 20, 600
GOAL_DIGESTS_PER_S = 200
FLAT_CLAIMS, HEAVY_HISTORY, FLAT_PENDING = 100, 100_000, 10


class _Accept(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):  # noqa: N802 (http.server's naming)
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = b'{"id": "ok"}'
        self.send_response(202)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def _serve(port_out) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Accept)
    port_out.put(server.server_address[1])
    server.serve_forever()


def fake_email_api():
    """(process, url): the fake Email API in a process of its own, so that its CPU is not the worker's."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    port_out = context.Queue()
    process = context.Process(target=_serve, args=(port_out,), daemon=True)
    process.start()
    return process, f"http://127.0.0.1:{port_out.get(timeout=30)}/v1/send"


def _users(conn, n: int) -> list[str]:
    users = [str(uuid.uuid4()) for _ in range(n)]
    conn.execute("INSERT INTO activity.users (user_id, email) SELECT u, u::text || '@bench.test'"
                 " FROM unnest(%s::uuid[]) AS u", (users,))
    return users


def _queue(conn, users: list[str], per_user: int) -> None:
    """per_user fan-outs through the create function, as the API queues them; then all due."""
    for i in range(per_user):
        conn.execute("SELECT count(*) FROM activity.sp_inbox_create(%s::uuid[], 'like', %s, 'Nice route!',"
                     " p_action_url => 'https://app.example/p/1', p_queue_email => true)",
                     (users, f"Like {i}"))
    conn.execute("UPDATE activity.email_outbox SET available_at = available_at - make_interval(secs => %s)"
                 " WHERE status = 'pending' AND user_id = ANY(%s::uuid[])", (DELAY + 1, users))


def _backend_cpu_seconds(pid: int) -> float | None:
    """utime + stime of a local PostgreSQL backend (None when the server is not on this machine)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def throughput(admin_conninfo: str, worker_conninfo: str) -> dict:
    """Wall clock, and CPU seconds (worker process + its backend): on a shared machine the CPU cost
    per digest is the stable figure; 1 / that cost is what one worker does with the CPU to itself."""
    import psycopg

    from notifications_api.channels.email_worker import EmailWorker, WorkerMetrics, WorkerSettings

    class MeasuredWorker(EmailWorker):
        backend_cpu: float | None = None

        def _shutdown(self):
            pid = self._conn.info.backend_pid if self._conn is not None else None
            self.backend_cpu = _backend_cpu_seconds(pid) if pid else None
            return super()._shutdown()

    with psycopg.connect(admin_conninfo, autocommit=True) as conn:
        users = _users(conn, USERS)
        _queue(conn, users, PER_USER)
        conn.execute("VACUUM ANALYZE activity.email_outbox, activity.notifications")
    api, url = fake_email_api()
    try:
        worker = MeasuredWorker(worker_conninfo, WorkerSettings(email_api_url=url, digest_delay_seconds=DELAY,
                                                                batch_size=50, lease_seconds=60),
                                metrics=WorkerMetrics())
        pid = worker._db(lambda conn: conn.info.backend_pid)
        backend_before = _backend_cpu_seconds(pid)
        started, cpu_started = time.perf_counter(), time.process_time()
        sent = worker.run(once=True)
        seconds, worker_cpu = time.perf_counter() - started, time.process_time() - cpu_started
        backend_cpu = (worker.backend_cpu - backend_before
                       if worker.backend_cpu is not None and backend_before is not None else None)
    finally:
        api.terminate()
        api.join()
    with psycopg.connect(admin_conninfo, autocommit=True) as conn:
        statuses = dict(conn.execute("SELECT status, count(*) FROM activity.email_outbox"
                                     " WHERE user_id = ANY(%s::uuid[]) GROUP BY status", (users,)).fetchall())
    per_email = worker.metrics.registry.get_sample_value(
        "notifications_api_email_notifications_per_email_sum")
    cpu = worker_cpu + (backend_cpu or 0)
    return {"users": USERS, "per_user": PER_USER, "emails": sent, "seconds": round(seconds, 2),
            "digests_per_s": round(sent / seconds, 1), "notifications_per_email": per_email / max(sent, 1),
            "worker_cpu_s": round(worker_cpu, 2), "backend_cpu_s": backend_cpu and round(backend_cpu, 2),
            "cpu_ms_per_digest": round(cpu * 1000 / max(sent, 1), 2),
            "digests_per_cpu_s": round(sent / cpu, 1) if cpu else None,
            "load_average": os.getloadavg()[0],
            "outbox": statuses, "goal_digests_per_s": GOAL_DIGESTS_PER_S,
            "goal_met": sent == USERS and sent / seconds >= GOAL_DIGESTS_PER_S}


def flat_cost(admin_conninfo: str, worker_conninfo: str) -> dict:
    import psycopg

    from notifications_api.channels import email_outbox

    with psycopg.connect(admin_conninfo, autocommit=True) as conn:
        heavy, light = _users(conn, 2)
        # the heavy user's history: 100 000 notifications, every one e-mailed long ago
        conn.execute("INSERT INTO activity.notifications (user_id, notification_type, title, status,"
                     " read_at, seen_at, created_at, delivered_at) SELECT %s, 'like', 'old', 'read', now(),"
                     " now(), now() - g * interval '1 minute', now() - g * interval '1 minute'"
                     " FROM generate_series(1, %s) g", (heavy, HEAVY_HISTORY))
        conn.execute("INSERT INTO activity.email_outbox (user_id, notification_id, recipient, subject, body,"
                     " status, attempts, created_at, available_at, sent_at, digest_id, notification_ids)"
                     " SELECT n.user_id, n.notification_id, 'x@bench.test', 'old', 'old', 'sent', 1,"
                     " n.created_at, n.created_at, n.created_at, NULL, NULL"
                     " FROM activity.notifications n WHERE n.user_id = %s", (heavy,))
        conn.execute("UPDATE activity.notification_counters SET version = version WHERE user_id = %s",
                     (heavy,))
        for user in (heavy, light):
            _queue(conn, [user], FLAT_PENDING)
        conn.execute("VACUUM ANALYZE activity.email_outbox, activity.notifications")
        # every other user's rows out of the way: only the measured user is due
        conn.execute("UPDATE activity.email_outbox SET status = 'cancelled'"
                     " WHERE status IN ('pending', 'sending') AND user_id <> ALL(%s::uuid[])",
                     ([heavy, light],))

        def reset(user: str) -> None:
            conn.execute("UPDATE activity.email_outbox SET status = CASE WHEN user_id = %s THEN 'pending'"
                         " ELSE 'cancelled' END, digest_id = NULL, notification_ids = NULL,"
                         " lease_owner = NULL, lease_expires_at = NULL, attempts = 0"
                         " WHERE user_id = ANY(%s::uuid[]) AND status IN ('pending', 'sending', 'cancelled')"
                         " AND subject <> 'old'", (user, [heavy, light]))

        timings: dict[str, list[float]] = {"heavy": [], "light": []}
        cpu: dict[str, float | None] = {}
        with psycopg.connect(worker_conninfo, autocommit=True) as heavy_conn, \
                psycopg.connect(worker_conninfo, autocommit=True) as light_conn:
            conns = {"heavy": (heavy, heavy_conn), "light": (light, light_conn)}
            before = {name: _backend_cpu_seconds(c.info.backend_pid) for name, (_, c) in conns.items()}
            for _ in range(FLAT_CLAIMS):
                for name, (user, conn_) in conns.items():
                    reset(user)
                    started = time.perf_counter()
                    (claimed,) = email_outbox.claim(conn_, "bench", 50, 60, 8, DELAY)
                    timings[name].append(time.perf_counter() - started)
                    assert len(claimed.notification_ids) == FLAT_PENDING
            for name, (_, c) in conns.items():
                after = _backend_cpu_seconds(c.info.backend_pid)
                cpu[name] = None if after is None or before[name] is None else after - before[name]
    heavy_us = statistics.median(timings["heavy"]) * 1e6
    light_us = statistics.median(timings["light"]) * 1e6
    cpu_us = {name: None if v is None else round(v * 1e6 / FLAT_CLAIMS) for name, v in cpu.items()}
    ratio = heavy_us / light_us
    cpu_ratio = cpu_us["heavy"] / cpu_us["light"] if cpu_us["heavy"] and cpu_us["light"] else None
    return {"heavy_history": HEAVY_HISTORY, "pending": FLAT_PENDING, "claims": FLAT_CLAIMS,
            "heavy_claim_us": round(heavy_us), "light_claim_us": round(light_us), "ratio": round(ratio, 2),
            "heavy_claim_cpu_us": cpu_us["heavy"], "light_claim_cpu_us": cpu_us["light"],
            "cpu_ratio": cpu_ratio and round(cpu_ratio, 2),
            "goal_met": (cpu_ratio if cpu_ratio is not None else ratio) <= 2}


def digest_timing(admin_conninfo: str) -> dict:
    """Both parts on a migrated database (superuser conninfo); provisions and drops a worker login."""
    import psycopg
    from psycopg import sql
    from psycopg.conninfo import make_conninfo

    from notifications_api.db import admin

    role, password = f"nt_bench_worker_{secrets.token_hex(5)}", secrets.token_urlsafe(24)
    admin.provision_worker_user(admin_conninfo, role, password)
    worker_conninfo = make_conninfo(admin_conninfo, user=role, password=password)
    try:
        return {"throughput": throughput(admin_conninfo, worker_conninfo),
                "flat_cost": flat_cost(admin_conninfo, worker_conninfo)}
    finally:
        with psycopg.connect(admin_conninfo, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


def describe(report: dict) -> str:
    t, f = report["throughput"], report["flat_cost"]
    return (f"e-mail digests: {t['emails']} digests of {t['per_user']} in {t['seconds']} s = "
            f"{t['digests_per_s']}/s by one worker (goal >= {t['goal_digests_per_s']}/s: "
            f"{'met' if t['goal_met'] else 'NOT met'}; load average {t['load_average']:.1f}); CPU "
            f"{t['cpu_ms_per_digest']} ms per digest (worker {t['worker_cpu_s']} s + backend "
            f"{t['backend_cpu_s']} s) = {t['digests_per_cpu_s']}/CPU-s; "
            f"claiming a digest: user with {f['heavy_history']} "
            f"notifications {f['heavy_claim_us']} µs vs {f['light_claim_us']} µs with none (x{f['ratio']}); "
            f"backend CPU {f['heavy_claim_cpu_us']} vs {f['light_claim_cpu_us']} µs (x{f['cpu_ratio']}): "
            f"{'flat' if f['goal_met'] else 'NOT flat'}")


def main() -> int:
    from bench.run import drop_database, open_database

    db = open_database(None)
    try:
        report = digest_timing(db.admin)
    finally:
        drop_database(db)
    print(describe(report))
    print(json.dumps(report, indent=2))
    return 0 if report["throughput"]["goal_met"] and report["flat_cost"]["goal_met"] else 1


if __name__ == "__main__":
    sys.exit(main())
