"""`notifications-api deliver-emails` as a process: configuration, SIGTERM, a worker killed mid-batch."""
from __future__ import annotations

import json
import logging
import signal
import socket
import subprocess
import threading
import time
import urllib.request

from werkzeug import Response

from email_helpers import drain, outbox, worker_command, worker_env


def _blocking_first_request(email_api):
    """Policy: the first request waits until `release` is set (so a worker is caught mid-request)."""
    arrived, release = threading.Event(), threading.Event()

    def policy(received, n):
        if not arrived.is_set():
            arrived.set()
            release.wait(10)
        return Response("{}", 200)
    email_api.policy = policy
    return arrived, release


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _events(stdout: str) -> list[dict]:
    lines = []
    for line in stdout.splitlines():
        try:
            lines.append(json.loads(line))
        except ValueError:
            pass
    return lines


def _invoke(tmp_path, **env: str):
    """The command in this process (click's runner): a clean environment, no .env file."""
    from click.testing import CliRunner

    from notifications_api.ops.cli import cli

    clean = {name: None for name in ("DATABASE_URL", "WORKER_DATABASE_URL", "EMAIL_API_URL", "EMAIL_API_KEY",
                                     "JWT_SECRET", "SERVICE_TOKEN", "DB_HOST", "PROMETHEUS_MULTIPROC_DIR")}
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        return CliRunner().invoke(cli, ["deliver-emails", "--once"],
                                  env={**clean, "ENV_FILE": "/dev/null", "HOME": str(tmp_path),
                                       "LOG_LEVEL": "INFO", "EMAIL_DIGEST_DELAY_SECONDS": "0", **env})
    finally:  # the command configures logging for its process: give the test session its own back
        root.handlers[:] = handlers
        root.setLevel(level)


def test_without_email_api_url_it_refuses_to_start(tmp_path, worker_conninfo):
    result = _invoke(tmp_path, WORKER_DATABASE_URL=worker_conninfo)
    assert result.exit_code == 2
    assert "EMAIL_API_URL is not set" in result.output


def test_as_the_app_role_it_refuses_to_start(tmp_path, database, email_api):
    result = _invoke(tmp_path, DATABASE_URL=database.app, EMAIL_API_URL=email_api.url)
    assert result.exit_code == 2 and "notifications_worker" in result.output


def test_once_delivers_and_needs_no_jwt_secret_or_service_token(tmp_path, worker_conninfo, email_api,
                                                                queue_emails, admin_db):
    users = [u for u, _ in queue_emails(3)]
    result = _invoke(tmp_path, WORKER_DATABASE_URL=worker_conninfo, EMAIL_API_URL=email_api.url,
                     EMAIL_API_KEY="k" * 40, EMAIL_MAX_ATTEMPTS="3")
    assert result.exit_code == 0, result.output
    assert {r["status"] for r in outbox(admin_db, users)} == {"sent"}
    events = _events(result.output)
    assert sum(e.get("event") == "email_sent" for e in events) == 3
    assert "k" * 40 not in result.output  # the API key is never logged
    assert not any("@example.test" in json.dumps(e) for e in events)  # nor the addresses


def test_sigterm_finishes_the_request_in_flight_and_releases_the_rest(tmp_path, worker_conninfo, email_api,
                                                                      queue_emails, admin_db):
    users = [u for u, _ in queue_emails(5)]
    arrived, release = _blocking_first_request(email_api)
    env = worker_env(tmp_path, WORKER_DATABASE_URL=worker_conninfo, EMAIL_API_URL=email_api.url)
    port = _free_port()
    proc = subprocess.Popen(worker_command("--batch-size", "10", "--lease-seconds", "30", "--poll-interval", "0.1",
                                           "--metrics-port", str(port), "--metrics-addr", "127.0.0.1"),
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert arrived.wait(20), "the worker never called the Email API"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            exposed = response.read().decode()
        for name in ("notifications_api_emails_sent_total", "notifications_api_emails_retried_total",
                     "notifications_api_emails_dead_total", "notifications_api_emails_failed_total",
                     'notifications_api_email_queue_deliveries{status="sending"}',
                     "notifications_api_email_queue_oldest_due_age_seconds"):
            assert name in exposed, name
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.3)  # the signal lands while the request is in flight
        release.set()
        stdout, stderr = proc.communicate(timeout=20)
    finally:
        release.set()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, stderr
    rows = outbox(admin_db, users)
    sent = [r for r in rows if r["status"] == "sent"]
    rest = [r for r in rows if r["status"] != "sent"]
    assert len(sent) == 1 and sent[0]["attempts"] == 1
    assert len(email_api.received) == 1 and email_api.received[0].key == str(sent[0]["delivery_id"])
    assert [(r["status"], r["attempts"], r["lease_owner"]) for r in rest] == [("pending", 0, None)] * 4
    stopped = [e for e in _events(stdout) if e.get("event") == "email_worker_stopped"]
    assert stopped and stopped[0]["released"] == 4


def test_a_worker_killed_mid_batch_is_replaced_once_its_lease_expires(tmp_path, worker_conninfo, email_api,
                                                                      queue_emails, admin_db, make_worker):
    users = [u for u, _ in queue_emails(4)]
    arrived, release = _blocking_first_request(email_api)
    env = worker_env(tmp_path, WORKER_DATABASE_URL=worker_conninfo, EMAIL_API_URL=email_api.url)
    proc = subprocess.Popen(worker_command("--batch-size", "10", "--lease-seconds", "2", "--connect-timeout", "0.5",
                                           "--read-timeout", "1"),
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        assert arrived.wait(20), "the worker never called the Email API"
        proc.kill()  # SIGKILL: no handler, no release, no outcome recorded
        proc.wait(10)
    finally:
        release.set()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    in_flight = email_api.received[0].key
    assert {r["status"] for r in outbox(admin_db, users)} == {"sending"}

    survivor = make_worker(name="survivor")
    survivor.run(once=True)
    assert len(email_api.received) == 1  # not before the lease expired
    drain(survivor, lambda: {r["status"] for r in outbox(admin_db, users)} == {"sent"}, timeout=10)
    rows = outbox(admin_db, users)
    assert {r["lease_owner"] for r in rows} == {"survivor"} and {r["attempts"] for r in rows} == {2}
    keys = email_api.keys()
    # every delivery reached the Email API; the one in flight when the worker died twice, with the same
    # idempotency key (so the Email API can drop the repeat), the others once
    assert sorted(keys) == sorted([str(r["delivery_id"]) for r in rows] + [in_flight])
