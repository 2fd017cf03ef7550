"""Machine tools (nginx, chromium, psql, redis-server, pgbouncer) that some tests drive: optional locally,
required in CI; and stopping the processes tests start."""
import os
import subprocess

import pytest


def skip_unless_ci(reason: str) -> None:
    """Skip on a developer's machine that lacks the tool; under CI=true (.ci/run installs it) fail."""
    print(reason)
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(reason + "; CI=true requires it")
    pytest.skip(reason)


def stop_process(process: subprocess.Popen, timeout: float = 5) -> None:
    """SIGTERM, then SIGKILL if it has not exited within `timeout` seconds."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout)
