"""Stream fixtures: the app served in-process (its publisher is inspectable) behind a real
Pushpin + zurl started for the session on free ports."""
from __future__ import annotations

import secrets

import pytest
from pushpin_helpers import SseClient, start_behind_pushpin

from notifications_api.web.auth import issue_token


@pytest.fixture(scope="session")
def stream_config(database):
    return {
        "DATABASE_URL": database.app, "JWT_SECRET": secrets.token_urlsafe(36), "JWT_SECRET_PREVIOUS": "",
        "SERVICE_TOKEN": secrets.token_urlsafe(36), "SERVICE_TOKEN_PREVIOUS": "", "ENVIRONMENT": "test",
        "RATE_LIMIT_ENABLED": False, "ENABLE_DOCS": False, "LOG_LEVEL": "WARNING", "REDIS_HOST": "",
        "METRICS_TOKEN": "", "EMAIL_API_URL": "", "CORS_ORIGINS": (), "TRUSTED_PROXY_HOPS": 0,
        "GRIP_SIG_KEY": secrets.token_urlsafe(36), "POLL_INTERVAL_SECONDS": 2, "JWT_ALGORITHM": "HS256",
    }


@pytest.fixture(scope="session")
def behind_pushpin(tmp_path_factory, stream_config, database):
    from notifications_api.db import admin
    import uuid
    probe_user = str(uuid.uuid4())
    admin.create_user(database.admin, user_id=probe_user, email=f"{probe_user}@example.test", active=True)
    pushpin, server = start_behind_pushpin(tmp_path_factory.mktemp("pushpin"), stream_config, probe_user)
    yield pushpin, server
    pushpin.stop()
    server.stop()


@pytest.fixture
def pushpin(behind_pushpin):
    return behind_pushpin[0]


@pytest.fixture
def api(behind_pushpin):
    return behind_pushpin[1]


@pytest.fixture
def bearer(stream_config):
    return lambda user_id: {"Authorization": f"Bearer {issue_token(stream_config, user_id)}"}


@pytest.fixture
def service(stream_config):
    return {"X-Service-Token": stream_config["SERVICE_TOKEN"]}


@pytest.fixture
def streams():
    """open(base_url, path, headers) -> SseClient; all closed at teardown."""
    opened = []

    def open_stream(base_url: str, path: str, headers: dict[str, str] | None = None) -> SseClient:
        client = SseClient(base_url, path, headers)
        opened.append(client)
        return client
    yield open_stream
    for client in opened:
        client.close()
