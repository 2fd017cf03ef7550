"""Fixtures of the operations tests: apps with chosen settings, a production-like environment, metrics parsing."""
from __future__ import annotations

import secrets
from urllib.parse import urlsplit

import pytest


@pytest.fixture(scope="session")
def ops_secrets():
    return {name: secrets.token_urlsafe(40) for name in ("JWT_SECRET", "SERVICE_TOKEN", "METRICS_TOKEN")}


@pytest.fixture
def ops_app(database, ops_secrets, app_factory):
    """Factory: ops_app(**overrides) -> a test app run as the app login role (closed at teardown)."""
    def factory(**overrides):
        return app_factory({
            "DATABASE_URL": database.app, "ENVIRONMENT": "test", "LOG_LEVEL": "WARNING",
            "JWT_SECRET": ops_secrets["JWT_SECRET"], "JWT_SECRET_PREVIOUS": "",
            "SERVICE_TOKEN": ops_secrets["SERVICE_TOKEN"], "SERVICE_TOKEN_PREVIOUS": "",
            "METRICS_TOKEN": "", "RATE_LIMIT_ENABLED": False, "REDIS_HOST": "", "EMAIL_API_URL": "",
            "ENABLE_DOCS": False, "CORS_ORIGINS": (), "TRUSTED_PROXY_HOPS": 0,
            **overrides,
        })

    return factory


@pytest.fixture
def production_env(database, redis_url, ops_secrets):
    """The environment of a correct production deployment against the session database (all ✓)."""
    redis = urlsplit(redis_url)
    return {
        "ENVIRONMENT": "production", "DEBUG": "false", "LOG_LEVEL": "INFO",
        "DATABASE_URL": database.app,
        "JWT_SECRET": ops_secrets["JWT_SECRET"], "SERVICE_TOKEN": ops_secrets["SERVICE_TOKEN"],
        "METRICS_TOKEN": ops_secrets["METRICS_TOKEN"], "JWT_AUDIENCE": "notifications-api",
        # the test server has no TLS: the explicit opt-out of the sslmode guardrail
        "DB_ALLOW_WEAK_SSLMODE": "true",
        "CORS_ORIGINS": "https://app.example.com", "ENABLE_DOCS": "false", "RATE_LIMIT_ENABLED": "true",
        "REDIS_HOST": redis.hostname or "127.0.0.1", "REDIS_PORT": str(redis.port or 6379),
        "REDIS_DB": (redis.path or "/0").lstrip("/") or "0", "REDIS_PASSWORD": redis.password or "",
    }


@pytest.fixture
def scratch_database(pg_server):
    """Factory: a fresh migrated database with its own app login role, for tests that change it.

    Returns (admin conninfo, app conninfo); everything is dropped at teardown.
    """
    import psycopg
    from psycopg import sql
    from psycopg.conninfo import make_conninfo

    from notifications_api.db import admin, migrate

    made = []

    def factory():
        suffix = secrets.token_hex(6)
        name, role, password = f"nt_ops_{suffix}", f"nt_ops_app_{suffix}", secrets.token_urlsafe(24)
        made.append((name, role))
        admin.ensure_database(pg_server, name)
        admin_conninfo = make_conninfo(pg_server, dbname=name)
        migrate.migrate(admin_conninfo, echo=lambda *args: None)
        admin.provision_app_user(admin_conninfo, role, password)
        return admin_conninfo, make_conninfo(admin_conninfo, user=role, password=password)

    yield factory
    with psycopg.connect(pg_server, autocommit=True) as conn:
        for name, role in made:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


@pytest.fixture
def extra_role(database):
    """Factory: extra_role(*grants) -> app conninfo of a new login role in the session database.

    `grants` are SQL statements with `{role}` for the role's name; privileges and role are dropped after.
    """
    import psycopg
    from psycopg import sql
    from psycopg.conninfo import make_conninfo

    roles = []

    def factory(*grants: str) -> str:
        role, password = f"nt_ops_role_{secrets.token_hex(6)}", secrets.token_urlsafe(24)
        roles.append(role)
        with psycopg.connect(database.admin, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                sql.Identifier(role), sql.Literal(password)))
            conn.execute(sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(
                sql.Identifier(database.name), sql.Identifier(role)))
            for grant in grants:
                conn.execute(sql.SQL(grant).format(role=sql.Identifier(role)))
        return make_conninfo(database.admin, user=role, password=password)

    yield factory
    with psycopg.connect(database.admin, autocommit=True) as conn:
        for role in roles:
            conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))
