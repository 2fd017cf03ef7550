"""`make run` as a newcomer meets it: the tour it prints works as pasted, the other commands find its
setup, and a SIGTERM to its whole process group stops it gracefully.

One embedded PostgreSQL (a fresh data directory) serves every step, so this is one test.
"""
from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import psutil
import pytest

from machine_tools import skip_unless_ci, stop_process
from notifications_api.ops import devpushpin
from ops_helpers import free_port

ROOT = Path(__file__).resolve().parents[2]
CLI = Path(sys.executable).with_name("notifications-api")


def _dev_env(data: Path, port: int) -> dict[str, str]:
    """A newcomer's shell: no database, secrets or .env of ours; DEV_DATA_DIR instead of .data."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("DB_", "REDIS_", "JWT_", "GUNICORN_", "RATE_LIMIT_", "EMAIL_"))
           and k not in ("DATABASE_URL", "MIGRATION_DATABASE_URL", "SERVICE_TOKEN", "METRICS_TOKEN",
                         "ENVIRONMENT", "ENABLE_DOCS", "PROMETHEUS_MULTIPROC_DIR", "MIGRATIONS_DIR",
                         "MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    env.pop("HOST", None)
    env.update({"ENV_FILE": os.devnull, "DEV_DATA_DIR": str(data), "PORT": str(port), "PUSHPIN_PORT": str(free_port()),
                "WEB_CONCURRENCY": "1", "GUNICORN_THREADS": "2", "PYTHONUNBUFFERED": "1"})
    return env


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(CLI), *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)


def _get(url: str, token: str) -> int:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.status


@pytest.fixture
def data_dir():
    # Under the checkout like .data/test-pg: run as root, the embedded server's own user must reach it.
    path = ROOT / ".data" / f"test-dev-{uuid.uuid4().hex[:8]}"
    yield path
    from notifications_api.ops import devdb
    devdb.force_stop(path / "pg")
    shutil.rmtree(path, ignore_errors=True)


@pytest.mark.e2e
def test_make_run_tour_commands_and_group_sigterm(data_dir, tmp_path):
    if not shutil.which("make") or not shutil.which("curl"):
        skip_unless_ci("make and curl are needed to follow the README's `make run` tour")
    port = free_port()
    env = _dev_env(data_dir, port)
    log_path = tmp_path / "make-run.log"
    with log_path.open("w") as log:
        make = subprocess.Popen(["make", "--no-print-directory", "run"], cwd=ROOT, env=env,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health/live", timeout=2)
                break
            except OSError:
                pass
            assert make.poll() is None and time.monotonic() < deadline, log_path.read_text()[-3000:]
            time.sleep(0.3)
        output = log_path.read_text()

        # The tour, pasted into a shell outside the checkout, works line by line (curl -f fails on a 4xx).
        tour = output[output.index("The tour"):].split("\n\n")[0].splitlines()
        assert f"Swagger UI: http://localhost:{port}/docs (already authorized as the demo user)" in tour[0]
        script = "\n".join(line[2:] for line in tour[1:])
        for path in ("?limit=20", "/unread/count", "/mark-read", "/settings", "/read"):
            assert path in script, path
        assert "X-Service-Token: $SERVICE_TOKEN" in script and "If-None-Match: $ETAG" in script
        assert not re.search(r"NOTIFICATION_ID", script)  # a real demo id was filled in
        secrets_file = (data_dir / "dev.env").read_text()
        service_token = re.search(r"^SERVICE_TOKEN=(.+)$", secrets_file, re.M).group(1)
        assert service_token not in output  # the tour reads it from the file, never prints it
        ran = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=tmp_path, env=env,
                             capture_output=True, text=True, timeout=60)
        assert ran.returncode == 0, ran.stdout[-2000:] + ran.stderr[-2000:]
        answers = ran.stdout.replace(" ", "")
        assert re.search(r"^304$", answers, re.M), answers[-2000:]  # the ETag round trip
        assert '"updated_count":' in answers and '"reaction":{"in_app":false}' in answers, answers[-2000:]
        assert '"result":"created"' in answers, answers[-2000:]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/docs", timeout=10) as docs:
            assert docs.status == 200  # docs on under `make run`, authorized as the demo user when loaded
            assert b'"preauthorize": {"scheme": "bearerAuth", "token_url": "/ui/demo/token"}' in docs.read()
        # the web inbox demo (docs/WEB.md): its URL in the banner, the page served
        demo_url = re.search(r"^Web inbox demo .*: (http://\S+/ui/demo)$", output, re.M).group(1)
        with urllib.request.urlopen(demo_url, timeout=10) as demo:
            assert demo.status == 200 and b"<notification-inbox" in demo.read()

        # The other commands find the development setup with no ENV_FILE or hand-built socket URL.
        checked = _cli(env, "check-config")
        assert checked.returncode == 0, checked.stderr
        issued = _cli(env, "issue-token", "--user-id", "00000000-0000-4000-8000-000000000001")
        assert issued.returncode == 0, issued.stderr
        count_url = f"http://127.0.0.1:{port}/api/v1/notifications/unread/count"
        assert _get(count_url, issued.stdout.strip()) == 200  # signed with the server's own secret
        migrated = _cli(env, "migrate", "--dry-run")
        assert migrated.returncode == 0 and "up to date" in migrated.stdout, migrated.stdout + migrated.stderr
        checklist = _cli(env, "preflight").stdout
        for item in ("database reachable", "migrations current", "stored functions executable",
                     "app user cannot read tables"):
            assert f"✓ {item}" in checklist, checklist
        assert "✗ docs off: ENABLE_DOCS is true" in checklist, checklist  # what the server serves with
        purged = _cli(env, "purge")  # as make run's retention login
        assert purged.returncode == 0 and "purged 0 notification(s)" in purged.stdout, purged.stdout + purged.stderr
        assert "error" not in purged.stderr, purged.stderr
        # the development server and its Pushpin listen on loopback only (HOST unset)
        listening = {c.laddr.port: c.laddr.ip for c in psutil.net_connections("tcp") if c.status == "LISTEN"}
        assert listening[port] == "127.0.0.1", listening
        if devpushpin.available():  # (.ci/run installs it)
            assert "pushpin started on" in output, output[-3000:]
            assert listening[int(env["PUSHPIN_PORT"])] == "127.0.0.1", listening
            clock = _cli(env, "stream-clock", "--once")  # finds make run's Pushpin
            assert clock.returncode == 0 and "published the counts of" in clock.stdout, clock.stdout + clock.stderr

        # A SIGTERM to the whole group (make and the dev runner; make forwards its own copy too).
        os.killpg(make.pid, signal.SIGTERM)
        make.wait(timeout=60)
    finally:
        if make.poll() is None:
            os.killpg(make.pid, signal.SIGKILL)
            stop_process(make)
    output = log_path.read_text()
    # gunicorn's own lines carry the same UTC timestamps as the app's JSON lines
    assert re.search(r"^\[\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z\] \[\d+\] \[INFO\] Handling signal: term$",
                     output, re.M), output[-3000:]
    assert "Handling signal: int" not in output and "SIGKILL" not in output, output[-3000:]  # graceful only
    assert "embedded PostgreSQL stopped" in output, output[-3000:]

    # With `make run` gone, a command that needs the database says exactly what to do.
    stopped = _cli(env, "migrate")
    assert stopped.returncode == 1
    assert f"the development database in {data_dir / 'pg'} is not running" in stopped.stderr
    assert "`make run`" in stopped.stderr


@pytest.mark.parametrize("environment, discovered", [(None, True), ("development", True),
                                                     ("production", False), ("staging", False)])
def test_development_setup_is_read_only_in_development(tmp_path, monkeypatch, environment, discovered):
    from notifications_api.ops import cli_env

    (tmp_path / "dev.env").write_text("JWT_SECRET=generated-jwt\nSERVICE_TOKEN=generated-service\n")
    for name in ("JWT_SECRET", "SERVICE_TOKEN", "ENVIRONMENT", "DATABASE_URL", "DB_HOST", "ENABLE_DOCS", "HOST",
                 "GRIP_PUBLISH_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ENV_FILE", os.devnull)
    monkeypatch.setenv("DEV_DATA_DIR", str(tmp_path))
    if environment:
        monkeypatch.setenv("ENVIRONMENT", environment)
    env = cli_env.environment()
    assert (env.get("JWT_SECRET") == "generated-jwt") is discovered
    assert "DATABASE_URL" not in env  # no embedded server running there
    assert "GRIP_PUBLISH_URL" not in env  # nor its Pushpin
    # what `make run` serves with unless told otherwise (preflight's "docs off" then says what is served)
    assert (env.get("ENABLE_DOCS"), env.get("HOST")) == (("true", "127.0.0.1") if discovered else (None, None))
    monkeypatch.setenv("JWT_SECRET", "set-by-the-operator")
    monkeypatch.setenv("ENABLE_DOCS", "false")
    assert cli_env.environment()["JWT_SECRET"] == "set-by-the-operator"  # the environment always wins
    assert cli_env.environment()["ENABLE_DOCS"] == "false"


def test_make_run_starts_a_push_worker_when_push_is_configured_and_stops_it(database, push_worker_login, capsys):
    """`make run` with VAPID_PRIVATE_KEY set runs `deliver-push` beside gunicorn, as the push worker's
    login (the embedded database's `push_worker`), and stops it on exit; without a key, or without a
    login that may run it, none is started, and it says why."""
    import psycopg

    from notifications_api.channels.push_crypto import generate_vapid_keys
    from notifications_api.ops import cli_dev

    login = push_worker_login(database.admin)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DB_", "EMAIL_", "VAPID_", "PUSH_"))
           and k not in ("DATABASE_URL", "WORKER_DATABASE_URL", "PROMETHEUS_MULTIPROC_DIR")}
    env.update({"ENV_FILE": os.devnull, "ENVIRONMENT": "test", "DATABASE_URL": database.app, "LOG_LEVEL": "INFO",
                "VAPID_PRIVATE_KEY": generate_vapid_keys()[0], "VAPID_SUBJECT": "mailto:ops@notifications-api.dev"})
    assert cli_dev._start_push_worker({**env, "VAPID_PRIVATE_KEY": ""}, login) is None
    assert capsys.readouterr().err == ""
    assert cli_dev._start_push_worker(env, database.app) is None  # the app's login may not run it
    assert "no push worker started" in capsys.readouterr().err

    def workers() -> list[str]:
        with psycopg.connect(database.admin, autocommit=True) as conn:
            return [r[0] for r in conn.execute(
                "SELECT usename FROM pg_stat_activity WHERE datname = %s"
                " AND application_name = 'notifications-push-worker'", (database.name,))]

    child = cli_dev._start_push_worker(env, login)
    try:
        assert child is not None and "push worker started" in capsys.readouterr().out
        deadline = time.monotonic() + 20
        while not workers():
            assert child.poll() is None, f"deliver-push exited with {child.returncode}"
            assert time.monotonic() < deadline, "deliver-push never connected"
            time.sleep(0.1)
        assert workers() == [psycopg.conninfo.conninfo_to_dict(login)["user"]]
    finally:
        cli_dev._stop_worker(child)
    assert child.returncode == 0  # SIGTERM: a graceful stop
    deadline = time.monotonic() + 5
    while workers() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert workers() == []
