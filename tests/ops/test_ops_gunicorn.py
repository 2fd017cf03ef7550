"""/metrics under real gunicorn with two workers: every count is the sum over both workers."""
from __future__ import annotations

import http.client
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from prometheus_client.multiprocess import MultiProcessCollector

from ops_helpers import free_port, sample

ROOT = Path(__file__).resolve().parents[2]
REQUESTS = "notifications_api_http_request_duration_seconds_count"
FUNCTIONS = "notifications_api_db_function_duration_seconds_count"
POOL_MAX = 3

pytestmark = pytest.mark.e2e


def _get(port: int, path: str, token: str | None = None) -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path, headers={"Authorization": f"Bearer {token}"} if token else {})
        response = conn.getresponse()
        return response.status, response.read().decode()
    finally:
        conn.close()


def _counts_per_worker(directory: Path) -> dict[int, float]:
    """The /health request count each worker's own file holds."""
    counts = {}
    for path in directory.glob("histogram_*.db"):
        for family in MultiProcessCollector.merge([str(path)]):
            for s in family.samples:
                if s.name == REQUESTS and s.labels.get("route") == "/health":
                    counts[int(path.stem.split("_")[-1])] = s.value
    return counts


@pytest.fixture
def gunicorn(database, ops_secrets, tmp_path):
    port = free_port()
    metrics_dir = tmp_path / "prometheus"
    metrics_dir.mkdir()
    (metrics_dir / "stale_counter_1.db").write_bytes(b"left over from an earlier run")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DB_", "REDIS_", "JWT_", "GUNICORN_"))}
    env.update({
        "PORT": str(port), "WEB_CONCURRENCY": "2", "GUNICORN_THREADS": "2", "DATABASE_URL": database.app,
        "JWT_SECRET": ops_secrets["JWT_SECRET"], "SERVICE_TOKEN": ops_secrets["SERVICE_TOKEN"],
        "METRICS_TOKEN": ops_secrets["METRICS_TOKEN"], "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
        "ENVIRONMENT": "test", "LOG_LEVEL": "WARNING", "RATE_LIMIT_ENABLED": "false",
        "DB_POOL_MIN_SIZE": "1", "DB_POOL_MAX_SIZE": str(POOL_MAX), "ENV_FILE": os.devnull,
        "GUNICORN_KEEPALIVE": "0",
    })
    log = (tmp_path / "gunicorn.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "notifications_api.wsgi:app"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if _get(port, "/health/live")[0] == 200:
                    break
            except OSError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail("gunicorn did not start:\n" + (tmp_path / "gunicorn.log").read_text()[-3000:])
            time.sleep(0.2)
        yield port, metrics_dir, process
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def test_metrics_are_summed_over_two_workers(gunicorn, ops_secrets):
    port, metrics_dir, master = gunicorn
    token = ops_secrets["METRICS_TOKEN"]
    assert not (metrics_dir / "stale_counter_1.db").exists()  # on_starting emptied the directory
    assert _get(port, "/metrics")[0] == 401
    # Both workers publish their pool gauges from boot, before serving anything.
    deadline = time.monotonic() + 15
    while sample(_get(port, "/metrics", token)[1], "notifications_api_db_pool_max_size") != 2 * POOL_MAX:
        assert time.monotonic() < deadline, "a worker never published its pool gauges"
        time.sleep(0.2)

    # Send /health (a stored-function ping each) in concurrent batches until both workers served some.
    sent = 0
    deadline = time.monotonic() + 60
    with ThreadPoolExecutor(max_workers=8) as pool:
        while len(_counts_per_worker(metrics_dir)) < 2 or sent < 40:
            assert time.monotonic() < deadline, "the requests never reached both workers"
            statuses = list(pool.map(lambda _: _get(port, "/health")[0], range(20)))
            assert statuses == [200] * 20
            sent += 20
    per_worker = _counts_per_worker(metrics_dir)
    assert len(per_worker) == 2 and all(count > 0 for count in per_worker.values())
    assert sum(per_worker.values()) == sent

    status, text = _get(port, "/metrics", token)
    assert status == 200
    assert sample(text, REQUESTS, route="/health", method="GET", status="200") == sent
    assert sample(text, FUNCTIONS, function="health") == sent
    assert sample(text, "notifications_api_db_pool_max_size") == 2 * POOL_MAX  # livesum over both workers

    # A worker that dies keeps its counts in the totals; its live gauges go with it.
    victim = next(iter(per_worker))
    assert (metrics_dir / f"gauge_livesum_{victim}.db").exists()
    os.kill(victim, signal.SIGTERM)
    deadline = time.monotonic() + 30
    while (metrics_dir / f"gauge_livesum_{victim}.db").exists():
        assert time.monotonic() < deadline, "child_exit did not mark the dead worker"
        time.sleep(0.1)
    status, text = _get(port, "/metrics", token)
    assert status == 200
    assert sample(text, REQUESTS, route="/health", method="GET", status="200") == sent
    assert sample(text, "notifications_api_db_pool_max_size") <= 2 * POOL_MAX
    assert master.poll() is None
