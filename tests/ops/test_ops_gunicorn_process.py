"""Process-level settings of ops/gunicorn_conf.py, checked in real gunicorn workers (issue 19, "the tail").

A wrapper config imports the production settings and hooks and, after the production
post_worker_init, writes what the worker's interpreter looks like; the workers must still serve.
"""
from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

from ops_helpers import free_port

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.e2e

PROBE_CONFIG = """
import gc, json, os, sys, time
from notifications_api.gunicorn_conf import *  # noqa
from notifications_api import gunicorn_conf as _production


def post_worker_init(worker):
    started = time.monotonic()
    _production.post_worker_init(worker)
    pool = worker.wsgi.extensions["notifications_db"].pool
    state = {"frozen": gc.get_freeze_count(), "tracked": len(gc.get_objects()),
             "pool_open": not pool.closed, "available": pool.get_stats()["pool_available"],
             "init_seconds": time.monotonic() - started}
    with open(os.path.join(os.environ["PROBE_DIR"], "%d.json" % os.getpid()), "w") as f:
        json.dump(state, f)
"""


def _status(port: int, path: str) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


@contextlib.contextmanager
def _booted(tmp_path: Path, database_url: str, ops_secrets: dict, **overrides: str):
    """gunicorn (2 workers) with the probe config, until both workers wrote their state; (port, states)."""
    config = tmp_path / "probe_conf.py"
    config.write_text(PROBE_CONFIG)
    probes = tmp_path / "probes"
    probes.mkdir()
    (tmp_path / "prometheus").mkdir()
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DB_", "REDIS_", "JWT_", "GUNICORN_"))}
    env.update({
        "PORT": str(port), "WEB_CONCURRENCY": "2", "GUNICORN_THREADS": "2", "DATABASE_URL": database_url,
        "JWT_SECRET": ops_secrets["JWT_SECRET"], "SERVICE_TOKEN": ops_secrets["SERVICE_TOKEN"],
        "METRICS_TOKEN": ops_secrets["METRICS_TOKEN"], "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "prometheus"),
        "ENVIRONMENT": "test", "LOG_LEVEL": "WARNING", "RATE_LIMIT_ENABLED": "false",
        "ENV_FILE": os.devnull, "PROBE_DIR": str(probes), **overrides,
    })
    log = (tmp_path / "gunicorn.log").open("w")
    process = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", str(config), "notifications_api.wsgi:app"],
                               cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while len(list(probes.glob("*.json"))) < 2:
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail("the workers did not boot:\n" + (tmp_path / "gunicorn.log").read_text()[-3000:])
            time.sleep(0.2)
        time.sleep(0.1)  # the second file written to the end
        yield port, [json.loads(p.read_text()) for p in probes.glob("*.json")]
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def test_each_worker_freezes_the_gc_after_opening_its_pool(database, ops_secrets, tmp_path):
    """post_worker_init: pool opened, then gc.freeze(): the app's objects are out of every collection
    (a full collection would otherwise scan them all with the GIL held: 28-66 ms in-process)."""
    with _booted(tmp_path, database.app, ops_secrets, DB_POOL_MIN_SIZE="1", DB_POOL_MAX_SIZE="2") as (port, states):
        for state in states:
            assert state["pool_open"]
            assert state["frozen"] > 10_000  # the app, its modules, the pool
            assert state["tracked"] < 1_000  # only what was made after the freeze
        # Frozen workers serve: the pool opened before the freeze works (GET /health calls the database).
        assert {_status(port, "/health") for _ in range(6)} == {200}


def test_a_worker_opens_its_working_size_of_connections_before_its_first_request(database, ops_secrets, tmp_path):
    """DB_POOL_MIN_SIZE unset: each worker holds GUNICORN_THREADS + 1 (the stream publisher) connections
    when post_worker_init returns, before it takes traffic (was: 1, and the first concurrent requests
    each opened one: 10-68 ms)."""
    role = conninfo_to_dict(database.app)["user"]
    with psycopg.connect(database.admin, autocommit=True) as conn:
        booting = conn.execute("SELECT clock_timestamp()").fetchone()[0]
    with _booted(tmp_path, database.app, ops_secrets, DB_POOL_MAX_SIZE="4") as (port, states):
        assert [state["available"] for state in states] == [3, 3]  # GUNICORN_THREADS=2, + 1
        with psycopg.connect(database.admin, autocommit=True) as conn:
            # (only the backends opened since the boot began: earlier tests of this process may
            # still hold pooled connections as the same role)
            backends = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE usename = %s"
                                    " AND backend_start >= %s", (role, booting)).fetchone()[0]
        assert backends == 6  # 2 workers x 3, and no request has been sent yet
        assert {_status(port, "/health") for _ in range(6)} == {200}


def test_a_worker_whose_database_is_down_still_starts_and_answers_503(ops_secrets, tmp_path):
    """Warming does not hold a worker back when the database refuses connections: it stops at the
    first failed attempt (not after DB_POOL_TIMEOUT), and the worker answers as before."""
    url = f"postgresql://nobody:nothing@127.0.0.1:{free_port()}/none"  # nothing listens there
    with _booted(tmp_path, url, ops_secrets, DB_POOL_TIMEOUT="5") as (port, states):
        for state in states:
            assert state["pool_open"] and state["available"] == 0
            assert state["init_seconds"] < 2.5, state  # DB_POOL_TIMEOUT is 5 s
        assert _status(port, "/health/live") == 200
        assert _status(port, "/health") == 503


def test_workers_are_recycled_rarely_and_not_together(tmp_path):
    """max_requests: a leak safety net, 10x rarer than 10 000 (each recycle is a latency spike:
    p99 114 ms without, 308 ms with one per ~2 000 requests; docs/PERFORMANCE.md "The tail")."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GUNICORN_")}
    env["ENV_FILE"] = os.devnull
    done = subprocess.run([sys.executable, "-c", "from notifications_api import gunicorn_conf as c; "
                           "print(c.max_requests, c.max_requests_jitter)"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    max_requests, jitter = map(int, done.stdout.split())
    assert max_requests >= 100_000 and jitter >= max_requests // 20


def test_the_listening_socket_stays_shared_and_connections_uncapped(tmp_path):
    """The split decision (docs/PERFORMANCE.md, "The split, measured again"): reuse_port loses requests
    when a worker recycles (29-46 wrk errors per 6 s run), and a worker_connections cap makes gthread
    close keep-alive connections and stop accepting. Both stay off, also in the checkout's gunicorn.conf.py."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GUNICORN_")}
    env["ENV_FILE"] = os.devnull
    code = ("import runpy, sys; sys.path.insert(0, %r); c = runpy.run_path(%r); "
            "print(c['reuse_port'], c['worker_connections'])") % (str(ROOT), str(ROOT / "gunicorn.conf.py"))
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    reuse_port, worker_connections = done.stdout.split()
    assert reuse_port == "False"
    assert int(worker_connections) >= 1000  # gunicorn's default: never the limit on kept-alive connections


@pytest.mark.parametrize("host, bind", [(None, "0.0.0.0:8003"), ("", "0.0.0.0:8003"),
                                        ("127.0.0.1", "127.0.0.1:8003"), ("::1", "[::1]:8003")])
def test_bind_is_host_and_port(tmp_path, host, bind):
    """HOST: every interface by default (the image), loopback or any address when given (`make run`)."""
    env = {k: v for k, v in os.environ.items() if k not in ("HOST", "PORT")}
    env["ENV_FILE"] = os.devnull
    if host is not None:
        env["HOST"] = host
    done = subprocess.run([sys.executable, "-c", "from notifications_api.ops import gunicorn_conf as c; print(c.bind)"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == bind
