"""Edge fixtures: a Redis of the test's own on a free port (safe to stop, freeze and restart),
apps with rate limits on, and API servers in separate processes."""
from __future__ import annotations

import os
import secrets
import shutil

import pytest
from edge_helpers import ROOT, ApiServer, RedisServer

from notifications_api.web.auth import issue_token


@pytest.fixture
def redis_server(tmp_path):
    """A Redis of this test's own (skips with the reason printed when redis-server is missing)."""
    if shutil.which("redis-server") is None:
        reason = "redis-server is not on PATH (apt-get install -y redis-server)"
        print(reason)
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(reason + "; CI=true requires it")
        pytest.skip(reason)
    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def secrets_config():
    return {"JWT_SECRET": secrets.token_urlsafe(36), "SERVICE_TOKEN": secrets.token_urlsafe(36)}


@pytest.fixture(scope="session")
def edge_config(database, secrets_config):
    """Like tests/api's app_config, with rate limits on (in memory) and nothing else optional."""
    return {
        "DATABASE_URL": database.app, **secrets_config,
        "JWT_SECRET_PREVIOUS": "", "SERVICE_TOKEN_PREVIOUS": "",
        "ENVIRONMENT": "test", "LOG_LEVEL": "WARNING", "ENABLE_DOCS": False, "METRICS_TOKEN": "",
        "EMAIL_API_URL": "", "REDIS_HOST": "", "CORS_ORIGINS": (), "TRUSTED_PROXY_HOPS": 0,
        "RATE_LIMIT_ENABLED": True,
    }


@pytest.fixture
def make_app(edge_config, app_factory):
    """make_app(**overrides): an app with rate limits on; its pool is closed at teardown."""
    return lambda **overrides: app_factory({**edge_config, **overrides})


@pytest.fixture
def bearer(secrets_config):
    def headers(user_id: str, **extra: str) -> dict[str, str]:
        token = issue_token({"JWT_SECRET": secrets_config["JWT_SECRET"], "JWT_ALGORITHM": "HS256"}, user_id)
        return {"Authorization": f"Bearer {token}", **extra}
    return headers


@pytest.fixture
def start_server(database, secrets_config, tmp_path):
    """start_server(**settings) -> ApiServer; settings are environment variables (strings)."""
    started = []

    def start(**settings: str) -> ApiServer:
        env = {key: value for key, value in os.environ.items()
               if not key.startswith(("DB_", "REDIS_", "RATE_LIMIT_", "CORS_", "JWT_", "SERVICE_"))}
        env.pop("DATABASE_URL", None)
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        env.update({
            "ENV_FILE": str(tmp_path / "no.env"), "DATABASE_URL": database.app, **secrets_config,
            "ENVIRONMENT": "test", "LOG_LEVEL": "WARNING",
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")])),
            **settings})
        server = ApiServer(env, tmp_path)
        started.append(server)
        return server
    yield start
    for server in started:
        server.stop()
