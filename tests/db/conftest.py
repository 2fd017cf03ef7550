"""Database-level fixtures: a fresh migrated database on the session's server, an app login role."""
from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass, field

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from notifications_api.db import admin
from notifications_api.db.migrate import migrate


@dataclass
class DbEnv:
    server: str  # superuser conninfo to the server's maintenance database
    name: str
    admin: str  # superuser conninfo to the test database
    app: str  # the app login role (member of notifications_api only)
    app_role: str
    retention: str  # a retention login (member of notifications_retention only)
    retention_role: str
    extra_roles: list[str] = field(default_factory=list)
    extra_databases: list[str] = field(default_factory=list)

    def fresh_database(self) -> str:
        """An empty database on the same server (dropped at the end of the session); its admin conninfo."""
        name = f"nt_db_{secrets.token_hex(6)}"
        self.extra_databases.append(name)
        admin.ensure_database(self.server, name)
        return make_conninfo(self.server, dbname=name)

    def login_role(self) -> tuple[str, str]:
        """A login role outside notifications_api, with CONNECT; (role, conninfo)."""
        role, password = f"nt_other_{secrets.token_hex(6)}", secrets.token_urlsafe(16)
        self.extra_roles.append(role)
        with psycopg.connect(self.admin, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                sql.Identifier(role), sql.Literal(password)))
            conn.execute(sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(
                sql.Identifier(self.name), sql.Identifier(role)))
        return role, make_conninfo(self.admin, user=role, password=password)


@pytest.fixture(scope="session")
def db_env(pg_server):
    server = pg_server  # TEST_DATABASE_URL, else the embedded server (tests/conftest.py)
    name = f"nt_db_{secrets.token_hex(6)}"
    app_role, password = f"nt_app_{secrets.token_hex(6)}", secrets.token_urlsafe(16)
    retention_role = f"nt_ret_{secrets.token_hex(6)}"
    admin.ensure_database(server, name)
    admin_dsn = make_conninfo(server, dbname=name)
    env = DbEnv(server=server, name=name, admin=admin_dsn, app_role=app_role,
                app=make_conninfo(admin_dsn, user=app_role, password=password),
                retention_role=retention_role,
                retention=make_conninfo(admin_dsn, user=retention_role, password=password))
    try:
        migrate(admin_dsn, echo=lambda *_: None)
        admin.provision_app_user(admin_dsn, app_role, password)
        admin.provision_retention_user(admin_dsn, retention_role, password)
        yield env
    finally:
        with psycopg.connect(server, autocommit=True) as conn:
            for db in [name, *env.extra_databases]:
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(db)))
            for role in [app_role, retention_role, *env.extra_roles]:
                conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


@pytest.fixture
def db_app(db_env):
    """An autocommit connection as the app login role."""
    with psycopg.connect(db_env.app, autocommit=True) as conn:
        yield conn


@pytest.fixture
def db_retention(db_env):
    """An autocommit connection as the retention login."""
    with psycopg.connect(db_env.retention, autocommit=True) as conn:
        yield conn


@pytest.fixture
def db_admin(db_env):
    """An autocommit superuser connection to the test database."""
    with psycopg.connect(db_env.admin, autocommit=True) as conn:
        yield conn


@pytest.fixture
def db_user(db_env):
    """Factory: db_user(active=True, email=...) -> a new user's UUID."""
    def make(active: bool = True, email: str | None = "default") -> uuid.UUID:
        uid = uuid.uuid4()
        return admin.create_user(db_env.admin, user_id=uid,
                                 email=f"{uid}@example.test" if email == "default" else email, active=active)
    return make
