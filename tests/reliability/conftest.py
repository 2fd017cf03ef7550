"""Fault-test fixtures: a private embedded PostgreSQL and Redis, and a gunicorn launcher.

The shared PostgreSQL and Redis of the other test runs are never touched: these tests stop,
restart and kill what they started themselves.
"""
from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

import pytest
from machine_tools import skip_unless_ci

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import Gunicorn, PrivatePostgres, PrivateRedis, free_port, gunicorn_env  # noqa: E402

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="session")
def private_pg():
    """Our own PostgreSQL 18 (embedded) in a tmp dir: migrated, app role provisioned.

    Not under pytest's basetemp: every pytest run resets /tmp/pytest-of-<user> to mode 0700, which
    would lock out the `embedded_postgres` system user the server runs as (when we are root).
    """
    work = Path(tempfile.mkdtemp(prefix="nt-reliability-"))
    try:
        server = PrivatePostgres(work / "pg")
        try:
            yield server
        finally:
            server.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)


@pytest.fixture
def pg(private_pg):
    """The private server, guaranteed up again after a test that stopped it."""
    yield private_pg
    from notifications_api.ops import devdb

    if not devdb.is_running(private_pg.data_dir):
        private_pg.start()


@pytest.fixture(scope="session")
def private_redis(tmp_path_factory):
    try:
        server = PrivateRedis(tmp_path_factory.mktemp("relredis"))
    except RuntimeError as exc:
        skip_unless_ci(str(exc))
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def start_gunicorn(pg, private_redis, tmp_path):
    """Factory: start_gunicorn(**env) -> a running Gunicorn (2 workers, pool timeout 1 s); killed after."""
    started: list[Gunicorn] = []

    def start(**overrides: str) -> Gunicorn:
        index = len(started)
        metrics_dir = tmp_path / f"prometheus-{index}"
        metrics_dir.mkdir()
        port = free_port()
        env = gunicorn_env(pg.app, metrics_dir, private_redis.port, PORT=str(port), **overrides)
        pg.set_statement_timeout(env["DB_STATEMENT_TIMEOUT_MS"])
        server = Gunicorn(env=env, log_path=tmp_path / f"gunicorn-{index}.log", port=port)
        started.append(server)
        return server.start()

    yield start
    for server in started:
        server.close()
