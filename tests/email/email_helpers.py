"""Helpers of the e-mail tests: the fake Email API, worker settings, outbox reads, subprocess env."""
from __future__ import annotations

import json
import os
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import psycopg
from werkzeug import Request, Response

from notifications_api.channels.email_worker import EmailWorker, WorkerSettings

ROOT = Path(__file__).resolve().parents[2]
API_KEY = "test-email-api-key-" + "k" * 16


@dataclass
class Received:
    body: dict
    headers: dict
    at: float

    @property
    def key(self) -> str:
        return self.body.get("idempotency_key")


@dataclass
class FakeEmailApi:
    """Records every request; `policy(received, n)` answers the n-th request (1-based) for a key."""

    url: str
    received: list[Received] = field(default_factory=list)
    policy: Callable[[Received, int], Response] | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def handle(self, request: Request) -> Response:
        try:
            body = json.loads(request.get_data())
        except ValueError:
            body = {"_raw": request.get_data(as_text=True)}
        received = Received(body, dict(request.headers), time.time())
        with self.lock:
            self.received.append(received)
            n = sum(1 for r in self.received if r.key == received.key)
        if self.policy is None:
            return Response('{"id": "ok"}', 202, content_type="application/json")
        return self.policy(received, n)

    def keys(self) -> list[str]:
        with self.lock:
            return [r.key for r in self.received]

    def wait_for(self, count: int, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.received) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"the Email API got {len(self.received)} requests, expected {count}")
            time.sleep(0.01)


def fast_settings(url: str, **overrides) -> WorkerSettings:
    """Worker settings for tests: short timeouts and lease, millisecond backoff, no digest delay (v1)."""
    values = dict(email_api_url=url, email_api_key=API_KEY, max_attempts=3, batch_size=10, lease_seconds=3,
                  digest_delay_seconds=0,
                  poll_interval=0.05, connect_timeout=0.5, read_timeout=1.0, retry_base=0.01, retry_cap=0.02)
    values.update(overrides)
    return WorkerSettings(**values)


def drain(worker: EmailWorker, done: Callable[[], bool], timeout: float = 15.0) -> None:
    """Run `worker` in --once passes until `done()` (retries become due a few ms later)."""
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise AssertionError("deliveries did not settle in time")
        worker.run(once=True)
        time.sleep(0.02)


def outbox(conn: psycopg.Connection, user_ids) -> list[dict]:
    """The outbox rows of these users (dicts), oldest first."""
    return conn.execute("SELECT * FROM activity.email_outbox WHERE user_id = ANY(%s::uuid[])"
                        " ORDER BY created_at, delivery_id", ([str(u) for u in user_ids],)).fetchall()


def worker_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "notifications_api.ops.cli", "deliver-emails", *args]


def worker_env(tmp_path, **extra: str) -> dict[str, str]:
    """A clean environment for a worker subprocess: no .env, no JWT_SECRET/SERVICE_TOKEN."""
    return {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path), "ENV_FILE": "/dev/null",
            "PYTHONPATH": str(ROOT), "LOG_LEVEL": "INFO", "EMAIL_DIGEST_DELAY_SECONDS": "0", **extra}


def metric(worker: EmailWorker, name: str, **labels: str) -> float:
    """A sample of the worker's own registry (0 when absent); `name` without the notifications_api_ prefix."""
    return worker.metrics.registry.get_sample_value(f"notifications_api_{name}", labels) or 0.0


def run_together(workers: list[EmailWorker]) -> None:
    """Each worker's run(once=True) in its own thread, released together; any exception fails."""
    start = threading.Barrier(len(workers))
    failures = []

    def run(worker):
        start.wait()
        try:
            worker.run(once=True)
        except Exception as exc:  # pragma: no cover - reported below
            failures.append(exc)

    threads = [threading.Thread(target=run, args=(w,)) for w in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not failures, failures
