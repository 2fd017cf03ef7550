"""Admin/owner operations: the database, the app login role, users (never run as the app)."""
from __future__ import annotations

import uuid
from uuid import UUID

import psycopg
from psycopg import errors, sql

from .grants import APP_GROUP, OWNER_ROLE, PUSH_WORKER_GROUP, RETENTION_GROUP, WORKER_GROUP

# Session settings of every login, kept on the role (ALTER ROLE ... IN DATABASE ... SET): PgBouncer
# refuses the libpq `options` startup parameter, and the app's timestamp loader expects UTC/ISO.
# deploy/postgres/roles.sql sets the same; `preflight` checks them.
SESSION_SETTINGS = {"timezone": "UTC", "datestyle": "ISO, MDY"}
STATEMENT_TIMEOUT_MS = 5000  # DB_STATEMENT_TIMEOUT_MS's default
RETENTION_STATEMENT_TIMEOUT_MS = 60000  # one purge batch may touch up to 100 000 rows


def ensure_database(server_conninfo: str, dbname: str) -> bool:
    """Create the database if missing; True when this call created it."""
    with psycopg.connect(server_conninfo, autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (dbname,)).fetchone():
            return False
        try:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
        except errors.DuplicateDatabase:
            return False  # created concurrently
        return True


def provision_app_user(conninfo: str, username: str, password: str | None,
                       statement_timeout_ms: int = STATEMENT_TIMEOUT_MS) -> None:
    """Create (or re-password) the app's LOGIN role: member of notifications_api plus CONNECT, no more."""
    _provision_login(conninfo, username, password, APP_GROUP,
                     forbidden=(OWNER_ROLE, RETENTION_GROUP, PUSH_WORKER_GROUP),
                     what="the app needs a plain login role", statement_timeout_ms=statement_timeout_ms)


def provision_worker_user(conninfo: str, username: str, password: str | None,
                          statement_timeout_ms: int = STATEMENT_TIMEOUT_MS) -> None:
    """Create (or re-password) the e-mail worker's LOGIN role: member of notifications_worker plus CONNECT.

    Run after migrating (the migration creates the group). The worker login is kept apart from the
    app login: it may not be privileged, an owner, or a member of notifications_api.
    """
    _provision_login(conninfo, username, password, WORKER_GROUP,
                     forbidden=(OWNER_ROLE, APP_GROUP, RETENTION_GROUP),
                     what="the e-mail worker needs its own plain login role",
                     statement_timeout_ms=statement_timeout_ms)


def provision_push_worker_user(conninfo: str, username: str, password: str | None,
                               statement_timeout_ms: int = STATEMENT_TIMEOUT_MS) -> None:
    """Create (or re-password) the push worker's LOGIN role: member of notifications_push_worker plus
    CONNECT. Run after migrating; it may not be privileged, an owner, or any other job's login."""
    _provision_login(conninfo, username, password, PUSH_WORKER_GROUP,
                     forbidden=(OWNER_ROLE, APP_GROUP, WORKER_GROUP, RETENTION_GROUP),
                     what="the push worker needs its own plain login role",
                     statement_timeout_ms=statement_timeout_ms)


def provision_retention_user(conninfo: str, username: str, password: str | None,
                             statement_timeout_ms: int = RETENTION_STATEMENT_TIMEOUT_MS) -> None:
    """Create (or re-password) the retention job's LOGIN role: member of notifications_retention plus CONNECT.

    Run after migrating (the migration creates the group). Only this login may purge; it may not be
    privileged, an owner, the app login or the e-mail worker's.
    """
    _provision_login(conninfo, username, password, RETENTION_GROUP,
                     forbidden=(OWNER_ROLE, APP_GROUP, WORKER_GROUP, PUSH_WORKER_GROUP),
                     what="retention needs its own plain login role",
                     statement_timeout_ms=statement_timeout_ms)


def _provision_login(conninfo: str, username: str, password: str | None, group: str,
                     forbidden: tuple[str, ...], what: str, statement_timeout_ms: int) -> None:
    """A LOGIN role that is a member of `group` (plus CONNECT) and of none of `forbidden`, with its
    session settings stored on the role for this database."""
    role = sql.Identifier(username)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        if conn.execute("SELECT to_regrole(%s) IS NULL", (group,)).fetchone()[0]:
            raise ValueError(f"role {group} does not exist yet: run the migrations first")
        row = conn.execute(
            "SELECT rolsuper OR rolcreaterole OR rolcreatedb OR rolbypassrls,"
            " EXISTS (SELECT 1 FROM unnest(%s::text[]) f"
            "         WHERE to_regrole(f) IS NOT NULL AND pg_has_role(r.oid, f, 'MEMBER'))"
            " FROM pg_roles r WHERE rolname = %s", (list(forbidden), username)).fetchone()
        if row and (row[0] or row[1]):
            raise ValueError(f"{username!r} is a privileged role or a member of "
                             f"{', '.join(forbidden)}; {what}")
        # Send a SCRAM verifier, never the clear-text password, so it stays out of server logs.
        secret = (sql.SQL(" PASSWORD {}").format(sql.Literal(_encrypt(conn, username, password)))
                  if password is not None else sql.SQL(""))
        created = False
        if row is None:
            try:
                conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(role) + secret)
                created = True
            except errors.DuplicateObject:
                pass  # created concurrently: fall through to ALTER
        if not created:
            conn.execute(sql.SQL("ALTER ROLE {} LOGIN").format(role) + secret)
        conn.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(group), role))
        dbname = conn.execute("SELECT current_database()").fetchone()[0]
        conn.execute(sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(sql.Identifier(dbname), role))
        settings = {**SESSION_SETTINGS, "statement_timeout": str(int(statement_timeout_ms))}
        for name, value in settings.items():
            conn.execute(sql.SQL("ALTER ROLE {} IN DATABASE {} SET {} TO {}").format(
                role, sql.Identifier(dbname), sql.Identifier(name), sql.Literal(value)))


def _encrypt(conn: psycopg.Connection, username: str, password: str) -> str:
    return conn.pgconn.encrypt_password(password.encode(), username.encode(), b"scram-sha-256").decode()


def create_user(conninfo: str, *, email: str | None, user_id: UUID | str | None = None,
                display_name: str | None = None, active: bool = True) -> UUID:
    """Insert or update a row of activity.users (normally the Auth API's job)."""
    uid = UUID(str(user_id)) if user_id is not None else uuid.uuid4()
    with psycopg.connect(conninfo) as conn:
        conn.execute(
            """INSERT INTO activity.users (user_id, email, display_name, is_active)
               VALUES (%s, %s, %s, %s)
               ON CONFLICT (user_id) DO UPDATE
                  SET email = EXCLUDED.email, display_name = EXCLUDED.display_name,
                      is_active = EXCLUDED.is_active""",
            (uid, email, display_name, active))
    return uid
