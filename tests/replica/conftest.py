"""A real primary and streaming standby per test module (pgpair.py), the service's database migrated
on the primary (the standby replays it), and apps that read from the standby."""
from __future__ import annotations

import secrets
import shutil
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

import pgpair
from machine_tools import skip_unless_ci


@dataclass(frozen=True)
class Servers:
    pair: pgpair.Pair
    primary: str  # superuser conninfos to the service's database
    standby: str
    app_primary: str  # the app login's
    app_standby: str


@pytest.fixture(scope="module")
def servers():
    binaries = pgpair.bindir()
    if binaries is None:
        skip_unless_ci("no PostgreSQL binaries with pg_basebackup (apt-get install postgresql)")
    # Not pytest's basetemp: another pytest session on the machine resets /tmp/pytest-of-<user> to
    # 0700 when it starts, and the server user (not root) could no longer reach its data directory.
    base = Path(tempfile.mkdtemp(prefix="nt-pgpair-"))
    base.chmod(0o755)
    pair = pgpair.Pair(base / "pair", binaries)
    try:
        pair.start()
        from notifications_api.db import admin, migrate

        name, role, password = "notifications", f"nt_app_{uuid.uuid4().hex[:8]}", secrets.token_urlsafe(24)
        with psycopg.connect(pgpair.conninfo(pair.primary_port), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        primary = pgpair.conninfo(pair.primary_port, name)
        migrate.migrate(primary, echo=lambda *args, **kwargs: None)
        admin.provision_app_user(primary, role, password)
        standby = pgpair.conninfo(pair.standby_port, name)
        pgpair.wait_replayed(primary, standby)
        yield Servers(pair, primary, standby, make_conninfo(primary, user=role, password=password),
                      make_conninfo(standby, user=role, password=password))
    finally:
        pair.stop()
        shutil.rmtree(base, ignore_errors=True)


@dataclass(frozen=True)
class ModuleDatabase:
    name: str
    admin: str
    app: str


@pytest.fixture(scope="module")
def database(servers):
    """What tests/conftest.py's make_user needs: this module's database on the primary."""
    return ModuleDatabase(name="notifications", admin=servers.primary, app=servers.app_primary)


@pytest.fixture
def replica_app(servers, app_factory):
    """Factory: an app whose reads may go to the standby (extra typed overrides)."""
    def build(**overrides):
        return app_factory({
            "DATABASE_URL": servers.app_primary, "DATABASE_READ_URL": servers.app_standby,
            "JWT_SECRET": "j" * 48, "JWT_SECRET_PREVIOUS": "", "SERVICE_TOKEN": "s" * 48,
            "SERVICE_TOKEN_PREVIOUS": "", "ENVIRONMENT": "test", "RATE_LIMIT_ENABLED": False,
            "LOG_LEVEL": "WARNING", "REDIS_URL": "", "REDIS_HOST": "", "METRICS_TOKEN": "",
            "EMAIL_API_URL": "", "CORS_ORIGINS": (), "TRUSTED_PROXY_HOPS": 0, **overrides})
    return build
