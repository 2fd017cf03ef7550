"""Machine tools (nginx, chromium, psql) that some tests drive: optional locally, required in CI."""
import os

import pytest


def skip_unless_ci(reason: str) -> None:
    """Skip on a developer's machine that lacks the tool; under CI=true (.ci/run installs it) fail."""
    print(reason)
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(reason + "; CI=true requires it")
    pytest.skip(reason)
