"""Fixtures of the operations tests: apps with chosen settings, a production-like environment, metrics parsing."""
from __future__ import annotations

import secrets
from urllib.parse import urlsplit

import pytest

from notifications_api import create_app


@pytest.fixture(scope="session")
def ops_secrets():
    return {name: secrets.token_urlsafe(40) for name in ("JWT_SECRET", "SERVICE_TOKEN", "METRICS_TOKEN")}


@pytest.fixture
def ops_app(database, ops_secrets):
    """Factory: ops_app(**overrides) -> a test app run as the app login role (closed at teardown)."""
    made = []

    def factory(**overrides):
        config = {
            "DATABASE_URL": database.app, "ENVIRONMENT": "test", "LOG_LEVEL": "WARNING",
            "JWT_SECRET": ops_secrets["JWT_SECRET"], "JWT_SECRET_PREVIOUS": "",
            "SERVICE_TOKEN": ops_secrets["SERVICE_TOKEN"], "SERVICE_TOKEN_PREVIOUS": "",
            "METRICS_TOKEN": "", "RATE_LIMIT_ENABLED": False, "REDIS_HOST": "", "EMAIL_API_URL": "",
            "ENABLE_DOCS": False, "CORS_ORIGINS": (), "TRUSTED_PROXY_HOPS": 0,
            **overrides,
        }
        app = create_app(config)
        app.config["TESTING"] = True
        made.append(app)
        return app

    yield factory
    for app in made:
        app.extensions["notifications_db"].close()


@pytest.fixture
def production_env(database, redis_url, ops_secrets):
    """The environment of a correct production deployment against the session database (all ✓)."""
    redis = urlsplit(redis_url)
    return {
        "ENVIRONMENT": "production", "DEBUG": "false", "LOG_LEVEL": "INFO",
        "DATABASE_URL": database.app,
        "JWT_SECRET": ops_secrets["JWT_SECRET"], "SERVICE_TOKEN": ops_secrets["SERVICE_TOKEN"],
        "METRICS_TOKEN": ops_secrets["METRICS_TOKEN"],
        "CORS_ORIGINS": "https://app.example.com", "ENABLE_DOCS": "false", "RATE_LIMIT_ENABLED": "true",
        "REDIS_HOST": redis.hostname or "127.0.0.1", "REDIS_PORT": str(redis.port or 6379),
        "REDIS_DB": (redis.path or "/0").lstrip("/") or "0", "REDIS_PASSWORD": redis.password or "",
    }
