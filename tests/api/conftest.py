"""App fixtures: a real app against the session's migrated database, run as the app login role."""
from __future__ import annotations

import secrets

import pytest

from notifications_api import create_app
from notifications_api.web.auth import issue_token


@pytest.fixture(scope="session")
def app_config(database):
    return {
        "DATABASE_URL": database.app,
        "JWT_SECRET": secrets.token_urlsafe(36),
        "JWT_SECRET_PREVIOUS": "",
        "SERVICE_TOKEN": secrets.token_urlsafe(36),
        "SERVICE_TOKEN_PREVIOUS": "",
        "ENVIRONMENT": "test",
        "RATE_LIMIT_ENABLED": False,
        "ENABLE_DOCS": True,
        "LOG_LEVEL": "WARNING",
        "REDIS_HOST": "",
        "METRICS_TOKEN": "",
        "EMAIL_API_URL": "",
        "CORS_ORIGINS": (),
        "TRUSTED_PROXY_HOPS": 0,
    }


@pytest.fixture(scope="session")
def app(app_config):
    app = create_app(app_config)
    app.config["TESTING"] = True
    yield app
    app.extensions["notifications_db"].close()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def user_headers(app):
    def headers(user_id: str, **extra: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {issue_token(app.config, user_id)}", **extra}
    return headers


@pytest.fixture
def service_headers(app):
    return {"X-Service-Token": app.config["SERVICE_TOKEN"]}


@pytest.fixture
def make_app(app_config, app_factory):
    """A separate app with extra overrides (closed at teardown)."""
    return lambda **overrides: app_factory({**app_config, **overrides})


@pytest.fixture
def notify(client, service_headers):
    """Create one notification for a user through the API; returns the notification object."""
    def create(user_id: str, **fields):
        body = {"user_id": user_id, "notification_type": "comment", "title": "Ana commented", **fields}
        response = client.post("/api/v1/notifications", json=body, headers=service_headers)
        assert response.status_code in (200, 201), response.get_json()
        return response.get_json()["results"][0]["notification"]
    return create


@pytest.fixture
def user(make_user):
    """A fresh active user id."""
    return make_user()
