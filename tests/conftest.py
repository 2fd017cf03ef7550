"""Shared fixtures: a real PostgreSQL (TEST_DATABASE_URL or embedded), a fresh migrated database, Redis."""
from __future__ import annotations

import os
import secrets
import uuid
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class TestDatabase:
    __test__ = False  # not a test class, despite the name

    name: str
    admin: str  # superuser conninfo to this database (migrations, seeding)
    app: str  # the app login role: EXECUTE on the stored functions and nothing else


@pytest.fixture(scope="session")
def pg_server():
    """Superuser conninfo: TEST_DATABASE_URL if set, else embedded PostgreSQL under .data/test-pg."""
    url = os.environ.get("TEST_DATABASE_URL", "").strip()
    if url:
        yield url
        return
    from notifications_api import devdb

    data_dir = ROOT / ".data" / "test-pg"
    conninfo = devdb.start(data_dir)
    try:
        yield conninfo
    finally:
        devdb.stop(data_dir)


@pytest.fixture(scope="session")
def database(pg_server):
    """A fresh database `nt_<hex>`, migrated, with an app role `nt_app_<hex>`; dropped at the end."""
    from notifications_api import admin, migrate

    suffix = uuid.uuid4().hex[:12]
    name, role, password = f"nt_{suffix}", f"nt_app_{suffix}", secrets.token_urlsafe(24)
    with psycopg.connect(pg_server, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        admin_conninfo = make_conninfo(pg_server, dbname=name)
        migrate.migrate(admin_conninfo, echo=lambda *args, **kwargs: None)
        admin.provision_app_user(admin_conninfo, role, password)
        yield TestDatabase(name=name, admin=admin_conninfo,
                           app=make_conninfo(admin_conninfo, user=role, password=password))
    finally:
        with psycopg.connect(pg_server, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


@pytest.fixture
def retention_login(pg_server):
    """Factory: retention_login(admin_conninfo) -> conninfo of a new retention login (member of
    notifications_retention) in that database; the roles are dropped at teardown."""
    from notifications_api import admin

    made = []

    def make(admin_conninfo: str) -> str:
        role, password = f"nt_ret_{uuid.uuid4().hex[:12]}", secrets.token_urlsafe(24)
        made.append((admin_conninfo, role))
        admin.provision_retention_user(admin_conninfo, role, password)
        return make_conninfo(admin_conninfo, user=role, password=password)

    yield make
    for admin_conninfo, role in made:
        try:  # its CONNECT grant (a shared object) goes with DROP OWNED, if the database is still there
            with psycopg.connect(admin_conninfo, autocommit=True) as conn:
                conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
        except psycopg.OperationalError:
            pass
        with psycopg.connect(pg_server, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


@pytest.fixture
def make_user(database):
    """Factory: make_user(active=True, email=None) -> the new user's id (str)."""
    from notifications_api import admin

    def make(active: bool = True, email: str | None = None) -> str:
        user_id = str(uuid.uuid4())
        admin.create_user(database.admin, user_id=user_id, email=email or f"{user_id}@example.test",
                          active=active)
        return user_id

    return make


@pytest.fixture
def app_factory():
    """Factory: app_factory(config) -> a test app (create_app with typed overrides); pools closed at teardown."""
    from notifications_api import create_app

    made = []

    def build(config: dict):
        app = create_app(config)
        app.config["TESTING"] = True
        made.append(app)
        return app

    yield build
    for app in made:
        app.extensions["notifications_db"].close()


@pytest.fixture(scope="session")
def redis_url():
    """TEST_REDIS_URL (default redis://127.0.0.1:6379/15); skip when unreachable, fail when CI=true."""
    import redis

    url = os.environ.get("TEST_REDIS_URL") or "redis://127.0.0.1:6379/15"
    client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)
    try:
        client.ping()
    except redis.RedisError as exc:
        reason = f"Redis at {_without_password(url)} is not reachable ({exc.__class__.__name__}: {exc})"
        print(reason)
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(reason + "; CI=true requires it")
        pytest.skip(reason)
    finally:
        client.close()
    return url


def _without_password(url: str) -> str:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.password:
        parts = parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@", 1))
    return parts.geturl()
