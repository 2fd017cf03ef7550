"""The production checklist's final list, run against the live configuration (`notifications-api preflight`).

`run(env)` returns one Check per item, in the order of docs/PRODUCTION.md; nothing is changed anywhere.
"""
from __future__ import annotations

import os
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import jwt
import psycopg
from psycopg import errors as pg_errors, sql
from psycopg.conninfo import conninfo_to_dict

from ..db import grants, migrate
from ..config import MIN_SECRET_LENGTH, PLACEHOLDERS, SPEC, ConfigError, load_config, secret_weakness

CONNECT_TIMEOUT = 5
REDIS_TIMEOUT = 2.0
TLS_MODES = ("require", "verify-ca", "verify-full")
GOOD_LOG_LEVELS = ("INFO", "WARNING")
# The stored functions the app calls (and sp_schema_version() that this check itself uses); the
# e-mail outbox ones, the worker group's and never the app's; the purge ones, retention's only.
FUNCTIONS = grants.API_FUNCTIONS
EMAIL_FUNCTIONS = grants.EMAIL_FUNCTIONS
FORBIDDEN_FUNCTIONS = grants.RETENTION_FUNCTIONS
WORKER_GROUP = grants.WORKER_GROUP
PUSH_FUNCTIONS = grants.PUSH_FUNCTIONS
PUSH_WORKER_GROUP = grants.PUSH_WORKER_GROUP
# What the login role must set for its sessions (admin.SESSION_SETTINGS, deploy/postgres/roles.sql).
UTC_NAMES = ("UTC", "Etc/UTC")
EMAIL_ITEM = "e-mail outbox functions"
PUSH_ITEM = "push outbox functions"
VAPID_ITEM = "Web Push key"
ALL_TABLE_PRIVILEGES = "SELECT,INSERT,UPDATE,DELETE,TRUNCATE,REFERENCES,TRIGGER"
READABLE_KINDS = ("r", "p", "v", "m", "f")  # tables, partitioned tables, views, materialized, foreign


@dataclass(frozen=True)
class Check:
    ok: bool
    item: str
    reason: str

    def line(self) -> str:
        return f"{'✓' if self.ok else '✗'} {self.item}: {self.reason}"

    def __iter__(self):  # unpacks as (ok, item, reason)
        return iter((self.ok, self.item, self.reason))


def run(env: Mapping[str, str]) -> list[Check]:
    """Every item of the final checklist, given the environment the service would start with."""
    checks: list[Check] = []
    try:
        load_config(env=env)
        checks.append(Check(True, "configuration valid", "every setting parses and passes the guardrails"))
    except ConfigError as exc:
        checks.append(Check(False, "configuration valid", "; ".join(exc.problems)))
    try:
        # The same values without the production refusals, so each item below reports on its own.
        config = load_config({"ENVIRONMENT": "staging"}, env=env)
    except ConfigError:
        checks.append(Check(False, "remaining checks", "not run: fix the configuration first"))
        return checks
    config["ENVIRONMENT"] = _environment(env)

    checks += [_environment_check(config), _debug_check(config), _log_level_check(config),
               _secrets_check(config), _metrics_token_check(config), _db_password_check(config),
               _cors_check(config), _docs_check(config), _rate_limit_check(config), _redis_check(config)]
    push = bool(config["VAPID_PRIVATE_KEY"])
    checks += _database_checks(config, migrate.default_directory(env), email=bool(config["EMAIL_API_URL"]),
                               push=push)
    checks += [_jwt_check(config), _jwt_audience_check(config), _service_token_check(config)]
    if push:
        checks.append(_vapid_check(config))
    if config["GRIP_PUBLISH_URL"]:
        checks.append(_publish_check(config))
    return checks


def _publish_check(config: dict) -> Check:
    """Every GRIP_PUBLISH_URL accepts an (empty) publish: live updates reach Pushpin."""
    from http.client import HTTPException

    from ..live.publisher import post_json

    failed = []
    for url in config["GRIP_PUBLISH_URL"]:
        try:
            status = post_json(url, b'{"items":[]}', timeout=REDIS_TIMEOUT)
            if status >= 300:
                failed.append(f"{url} answered {status}")
        except (OSError, HTTPException) as exc:
            failed.append(f"{url}: {type(exc).__name__}")
    if failed:
        return Check(False, "Pushpin publish", "; ".join(failed) + " (streams will only poll)")
    return Check(True, "Pushpin publish", f"{len(config['GRIP_PUBLISH_URL'])} publish endpoint(s) answer")


def _environment(env: Mapping[str, str]) -> str:
    parse, default = SPEC["ENVIRONMENT"]
    try:
        return parse(env.get("ENVIRONMENT", default))
    except ValueError:
        return str(env.get("ENVIRONMENT"))


# --- configuration -------------------------------------------------------------------------------

def _environment_check(config: dict) -> Check:
    value = config["ENVIRONMENT"]
    if value != "production":
        return Check(False, "ENVIRONMENT", f"is {value!r}; production guardrails apply only to 'production'")
    return Check(True, "ENVIRONMENT", "production")


def _debug_check(config: dict) -> Check:
    if config["DEBUG"]:
        return Check(False, "DEBUG", "is true; it must be false in production")
    return Check(True, "DEBUG", "false")


def _log_level_check(config: dict) -> Check:
    level = config["LOG_LEVEL"]
    if level not in GOOD_LOG_LEVELS:
        why = "logs too much (and more detail than production needs)" if level == "DEBUG" \
            else "drops the per-request and event lines"
        return Check(False, "LOG_LEVEL", f"is {level}, which {why}; use INFO or WARNING")
    return Check(True, "LOG_LEVEL", level)


def _secrets_check(config: dict) -> Check:
    problems = []
    names = ("JWT_SECRET", "SERVICE_TOKEN", "JWT_SECRET_PREVIOUS", "SERVICE_TOKEN_PREVIOUS", "METRICS_TOKEN",
             "GRIP_SIG_KEY")
    for name in names:
        value = config[name]
        if not value:
            if name in ("JWT_SECRET", "SERVICE_TOKEN"):
                problems.append(f"{name} is empty")
            continue
        weakness = secret_weakness(value)
        if weakness:
            problems.append(f"{name} {weakness}")
    seen: dict[str, str] = {}
    for name in names:
        value = config[name]
        if value and value in seen:
            problems.append(f"{name} equals {seen[value]}; every secret must be different")
        elif value:
            seen[value] = name
    if problems:
        return Check(False, "secrets strong", "; ".join(problems))
    return Check(True, "secrets strong",
                 f"at least {MIN_SECRET_LENGTH} characters, no placeholder, all different")


def _metrics_token_check(config: dict) -> Check:
    if not config["METRICS_TOKEN"]:
        return Check(False, "/metrics protected", "METRICS_TOKEN is empty: anyone who reaches a pod reads it")
    return Check(True, "/metrics protected", "METRICS_TOKEN is set")


def _db_password_check(config: dict) -> Check:
    params = conninfo_to_dict(config["DATABASE_CONNINFO"])
    password = params.get("password") or ""
    if not password:
        if params.get("sslcert"):
            return Check(True, "database password", "none: the app user authenticates by client certificate")
        return Check(False, "database password", "no password in DB_PASSWORD/DATABASE_URL")
    if password.lower() in PLACEHOLDERS:
        return Check(False, "database password", "is a documented placeholder")
    if len(password) < 16:
        return Check(False, "database password", "is shorter than 16 characters")
    return Check(True, "database password", "set, not a placeholder")


def _cors_check(config: dict) -> Check:
    origins = config["CORS_ORIGINS"]
    if "*" in origins:
        return Check(False, "CORS strict", "CORS_ORIGINS contains *; list the exact browser origins")
    insecure = [origin for origin in origins if not origin.startswith("https://")]
    if insecure:
        return Check(False, "CORS strict", f"origins without https: {', '.join(insecure)}")
    if not origins:
        return Check(True, "CORS strict", "no browser origin is allowed (CORS_ORIGINS is empty)")
    return Check(True, "CORS strict", f"exact https origins only: {', '.join(origins)}")


def _docs_check(config: dict) -> Check:
    if config["ENABLE_DOCS"]:
        return Check(False, "docs off", "ENABLE_DOCS is true: /docs and /openapi.json are public")
    return Check(True, "docs off", "ENABLE_DOCS is false")


def _rate_limit_check(config: dict) -> Check:
    if not config["RATE_LIMIT_ENABLED"]:
        return Check(False, "rate limits", "RATE_LIMIT_ENABLED is false")
    if not config["REDIS_HOST"] and not config["REDIS_URL"]:
        return Check(False, "rate limits", "REDIS_HOST is empty: each worker process would count on its own")
    return Check(True, "rate limits", "enabled, shared through Redis")


def _redis_check(config: dict) -> Check:
    if config["REDIS_URL"]:
        return _redis_url_check(config)
    if not config["REDIS_HOST"]:
        return Check(False, "Redis reachable", "REDIS_HOST is not set")
    import redis

    where = f"{config['REDIS_HOST']}:{config['REDIS_PORT']}/{config['REDIS_DB']}"
    client = redis.Redis(host=config["REDIS_HOST"], port=config["REDIS_PORT"], db=config["REDIS_DB"],
                         password=config["REDIS_PASSWORD"] or None, ssl=config["REDIS_SSL"],
                         socket_connect_timeout=REDIS_TIMEOUT, socket_timeout=REDIS_TIMEOUT)
    try:
        client.ping()
    except redis.RedisError as exc:
        return Check(False, "Redis reachable", f"{where}: {type(exc).__name__}: {_scrub(str(exc), config)}")
    finally:
        client.close()
    return Check(True, "Redis reachable", f"{where} answered PING")


def _redis_url_check(config: dict) -> Check:
    """REDIS_URL (plain or Sentinel): PING through the limiter's own storage, as the app will."""
    from urllib.parse import urlsplit

    from redis import RedisError

    from ..web.ratelimit import redis_storage

    parts = urlsplit(config["REDIS_URL"])
    where = f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}{parts.path}"  # no password
    try:
        redis_storage(config).get_connection().ping()
    except (RedisError, OSError) as exc:
        detail = _scrub(str(exc), config)
        if parts.password:
            detail = detail.replace(parts.password, "[REDACTED]")
        return Check(False, "Redis reachable", f"{where}: {type(exc).__name__}: {detail}")
    return Check(True, "Redis reachable", f"{where} answered PING")


# --- database (connected as the configured app user) ---------------------------------------------

DATABASE_ITEMS = ("database reachable", "database TLS", "session settings", "migrations current",
                  "stored functions executable", "app user cannot read tables",
                  "app user cannot create objects")


def _database_checks(config: dict, directory: Path, email: bool = False, push: bool = False) -> list[Check]:
    """The database items; with `email` (EMAIL_API_URL set: the API queues e-mails) the outbox item too;
    with `push` (VAPID_PRIVATE_KEY set) the push worker group's item."""
    conninfo = config["DATABASE_CONNINFO"]
    items = DATABASE_ITEMS + ((EMAIL_ITEM,) if email else ()) + ((PUSH_ITEM,) if push else ())
    try:
        conn = psycopg.connect(conninfo, autocommit=True, connect_timeout=CONNECT_TIMEOUT,
                               application_name="notifications-api-preflight")
    except psycopg.Error as exc:
        reason = _scrub(str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__, config)
        checks = [Check(False, "database reachable", reason)]
        sslmode = _sslmode(conninfo)
        if sslmode in TLS_MODES:
            checks.append(Check(False, "database TLS",
                                f"sslmode={sslmode} and no TLS connection could be made"))
        else:
            checks.append(Check(False, "database TLS", "not checked: the database is unreachable"))
        return checks + [Check(False, item, "not checked: the database is unreachable")
                         for item in items[2:]]
    with conn:
        user, database, version = conn.execute(
            "SELECT current_user::text, current_database()::text, current_setting('server_version')"
        ).fetchone()
        checks = [Check(True, "database reachable",
                        f"connected to {database} as {user} (PostgreSQL {version})"),
                  _tls_check(conn, conninfo)]
        queries = (("session settings", lambda: _session_check(conn, config)),
                   ("migrations current", lambda: _migrations_check(conn, directory)),
                   ("stored functions executable", lambda: _functions_check(conn)),
                   ("app user cannot read tables", lambda: _tables_check(conn)),
                   ("app user cannot create objects", lambda: _create_check(conn)))
        if email:
            queries += ((EMAIL_ITEM, lambda: _email_functions_check(conn)),)
        if push:
            queries += ((PUSH_ITEM, lambda: _worker_functions_check(conn, PUSH_ITEM, PUSH_WORKER_GROUP,
                                                                    PUSH_FUNCTIONS)),)
        for item, check in queries:
            try:
                checks.append(check())
            except psycopg.Error as exc:
                checks.append(Check(False, item, f"query failed: {type(exc).__name__}: {exc}".strip()))
    return checks


def _sslmode(conninfo: str) -> str:
    return conninfo_to_dict(conninfo).get("sslmode") or os.environ.get("PGSSLMODE") or "prefer"


def _tls_check(conn: psycopg.Connection, conninfo: str) -> Check:
    sslmode = _sslmode(conninfo)
    in_use = conn.pgconn.ssl_in_use
    protocol = conn.pgconn.ssl_attribute("protocol") if in_use else None
    if sslmode in TLS_MODES:
        if not in_use:  # libpq would not connect; kept for safety
            return Check(False, "database TLS", f"sslmode={sslmode} but the connection is not encrypted")
        return Check(True, "database TLS", f"sslmode={sslmode}, {protocol}")
    state = f"in use ({protocol})" if in_use else "not in use"
    return Check(True, "database TLS", f"not required (sslmode={sslmode}); TLS {state}")


def _session_check(conn: psycopg.Connection, config: dict) -> Check:
    """TimeZone, DateStyle and statement_timeout come from the login role (ALTER ROLE ... SET):
    the app sends no startup options (PgBouncer refuses them)."""
    item = "session settings"
    timezone, datestyle, timeout_ms = conn.execute(
        "SELECT current_setting('TimeZone'), current_setting('DateStyle'),"
        " (SELECT setting::int FROM pg_settings WHERE name = 'statement_timeout')").fetchone()
    problems = []
    if timezone not in UTC_NAMES:
        problems.append(f"TimeZone is {timezone}, not UTC")
    if not datestyle.startswith("ISO"):
        problems.append(f"DateStyle is {datestyle}, not ISO")
    if timeout_ms != config["DB_STATEMENT_TIMEOUT_MS"]:
        problems.append(f"statement_timeout is {timeout_ms} ms, DB_STATEMENT_TIMEOUT_MS is "
                        f"{config['DB_STATEMENT_TIMEOUT_MS']}")
    if problems:
        return Check(False, item, "; ".join(problems) + " (set them on the login role: "
                                  "ALTER ROLE ... IN DATABASE ... SET, see deploy/postgres/roles.sql)")
    return Check(True, item, f"TimeZone {timezone}, DateStyle {datestyle}, statement_timeout {timeout_ms} ms "
                             "(from the login role)")


def _migrations_check(conn: psycopg.Connection, directory: Path) -> Check:
    item = "migrations current"
    try:
        on_disk = migrate.discover(directory)
    except migrate.MigrationError as exc:
        return Check(False, item, str(exc))
    try:
        applied = dict(conn.execute("SELECT filename, checksum FROM activity.sp_schema_version()").fetchall())
    except (pg_errors.UndefinedFunction, pg_errors.InvalidSchemaName, pg_errors.UndefinedTable):
        return Check(False, item, "activity.sp_schema_version() is missing: run `notifications-api migrate`")
    except pg_errors.InsufficientPrivilege:
        return Check(False, item, "the app user cannot execute activity.sp_schema_version()")
    pending = [m.name for m in on_disk if m.name not in applied]
    changed = [m.name for m in on_disk if m.name in applied and applied[m.name] != m.checksum
               and not migrate.is_superseded(m, applied[m.name])]
    unknown = sorted(set(applied) - {m.name for m in on_disk})
    problems = []
    if pending:
        problems.append(f"pending: {', '.join(pending)} (run `notifications-api migrate`)")
    if changed:
        problems.append(f"differ from the applied version: {', '.join(changed)}")
    if unknown:
        problems.append(f"applied but not in this release: {', '.join(unknown)} (a newer release migrated)")
    if problems:
        return Check(False, item, "; ".join(problems))
    return Check(True, item, f"{len(on_disk)} file(s) applied, checksums match")


# Each named function of schema activity: (name, SECURITY DEFINER, search_path pinned, executable by
# the given role (NULL: the current user), executable by the current user).
FUNCTION_FACTS = """SELECT p.proname::text, p.prosecdef,
                           coalesce(bool_or(c LIKE 'search_path=%%'), false),
                           has_function_privilege(coalesce(%s::name, current_user), p.oid, 'EXECUTE'),
                           has_function_privilege(current_user, p.oid, 'EXECUTE')
                      FROM pg_proc p
                      JOIN pg_namespace n ON n.oid = p.pronamespace
                      LEFT JOIN LATERAL unnest(p.proconfig) AS c ON true
                     WHERE n.nspname = 'activity' AND p.proname = ANY(%s)
                     GROUP BY p.oid, p.proname, p.prosecdef"""


def _function_facts(conn: psycopg.Connection, role: str | None, names: tuple[str, ...]) -> list[tuple]:
    return conn.execute(FUNCTION_FACTS, (role, list(names))).fetchall()


def _function_problems(rows: list[tuple], names: tuple[str, ...], access: list[str],
                       missing_hint: str = "") -> list[str]:
    """What is wrong with `names` (rows: their FUNCTION_FACTS): missing ones, then the given access
    problems, then those not SECURITY DEFINER or without a pinned search_path."""
    found = {row[0] for row in rows}
    missing = [name for name in names if name not in found]
    not_definer = sorted({name for name, definer, *_ in rows if not definer})
    no_path = sorted({name for name, _, path, *_ in rows if not path})
    problems = [f"missing: {', '.join(missing)}{missing_hint}"] if missing else []
    problems += access
    if not_definer:
        problems.append(f"not SECURITY DEFINER: {', '.join(not_definer)}")
    if no_path:
        problems.append(f"no fixed search_path: {', '.join(no_path)}")
    return problems


def _functions_check(conn: psycopg.Connection) -> Check:
    item = "stored functions executable"
    rows = _function_facts(conn, None, FUNCTIONS + FORBIDDEN_FUNCTIONS)
    forbidden = sorted({row[0] for row in rows if row[4] and row[0] in FORBIDDEN_FUNCTIONS})
    rows = [row for row in rows if row[0] in FUNCTIONS]
    not_executable = sorted({row[0] for row in rows if not row[4]})
    access = [f"not executable by the app user: {', '.join(not_executable)}"] if not_executable else []
    problems = _function_problems(rows, FUNCTIONS, access)
    if forbidden:
        problems.append(f"the app user may execute the retention group's {', '.join(forbidden)}")
    if problems:
        return Check(False, item, "; ".join(problems))
    return Check(True, item, f"all {len(FUNCTIONS)} present, SECURITY DEFINER, executable by the app user; "
                             "no purge function")


def _email_functions_check(conn: psycopg.Connection) -> Check:
    return _worker_functions_check(conn, EMAIL_ITEM, WORKER_GROUP, EMAIL_FUNCTIONS)


def _worker_functions_check(conn: psycopg.Connection, item: str, group: str, names: tuple[str, ...]) -> Check:
    """A worker's outbox functions exist, run as their owner, and only its group may execute them."""
    if conn.execute("SELECT to_regrole(%s) IS NULL", (group,)).fetchone()[0]:
        return Check(False, item, f"role {group} does not exist: run deploy/postgres/roles.sql, "
                                  "then `notifications-api migrate`")
    rows = _function_facts(conn, group, names + FUNCTIONS)
    own_rows = [row for row in rows if row[0] in names]
    not_for_worker = sorted({row[0] for row in own_rows if not row[3]})
    for_app = sorted({row[0] for row in own_rows if row[4]})
    worker_runs_api = sorted({row[0] for row in rows if row[0] in FUNCTIONS and row[3]})
    access = []
    if not_for_worker:
        access.append(f"not executable by {group}: {', '.join(not_for_worker)}")
    if for_app:
        access.append(f"executable by the app user: {', '.join(for_app)}")
    problems = _function_problems(own_rows, names, access, " (run `notifications-api migrate`)")
    if worker_runs_api:
        problems.append(f"{group} may execute the API's {', '.join(worker_runs_api)}")
    if problems:
        return Check(False, item, "; ".join(problems))
    return Check(True, item, f"all {len(names)} present, SECURITY DEFINER, executable by "
                             f"{group}, not by the app user")


def _vapid_check(config: dict) -> Check:
    """VAPID_PRIVATE_KEY is a P-256 key and VAPID_SUBJECT a real contact (push services refuse others)."""
    from ..config import load_vapid_private_key, vapid_subject_problem

    try:
        key = load_vapid_private_key(config["VAPID_PRIVATE_KEY"])
    except ValueError as exc:
        return Check(False, VAPID_ITEM, f"VAPID_PRIVATE_KEY {exc}")
    problem = vapid_subject_problem(config["VAPID_SUBJECT"], production=True) if config["VAPID_SUBJECT"] \
        else "is not set"
    if problem:
        return Check(False, VAPID_ITEM, f"VAPID_SUBJECT {problem}")
    from ..channels.push_crypto import b64url, public_key_bytes

    public = b64url(public_key_bytes(key))
    return Check(True, VAPID_ITEM, f"a P-256 key (public key {public[:12]}…), VAPID_SUBJECT "
                                   f"{config['VAPID_SUBJECT']}")


def _tables_check(conn: psycopg.Connection) -> Check:
    item = "app user cannot read tables"
    superuser, bypass_rls = conn.execute(
        "SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user").fetchone()
    if superuser:
        return Check(False, item, "the app user is a superuser")
    rows = conn.execute(
        """SELECT c.relname::text, c.relkind::text,
                  CASE WHEN c.relkind = 'S'
                       THEN has_sequence_privilege(current_user, c.oid, 'USAGE,SELECT,UPDATE')
                       ELSE has_table_privilege(current_user, c.oid, %s) END
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname = 'activity' AND c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S')
            ORDER BY c.relname""", (ALL_TABLE_PRIVILEGES,)).fetchall()
    tables = [name for name, kind, _ in rows if kind in READABLE_KINDS]
    if not tables:
        return Check(False, item, "schema activity has no tables here: wrong database?")
    privileged = [name for name, _, has in rows if has]
    readable = []
    for name in tables:  # the proof: an actual SELECT must be refused
        try:
            conn.execute(sql.SQL("SELECT 1 FROM activity.{} LIMIT 1").format(sql.Identifier(name)))
            readable.append(name)
        except pg_errors.InsufficientPrivilege:
            pass
    problems = []
    if readable:
        problems.append(f"SELECT succeeded on {', '.join('activity.' + n for n in readable)}")
    extra = sorted(set(privileged) - set(readable))
    if extra:
        problems.append(f"privileges granted on {', '.join('activity.' + n for n in extra)}")
    if bypass_rls:
        problems.append("the app user has BYPASSRLS")
    if problems:
        return Check(False, item, "; ".join(problems))
    return Check(True, item, f"SELECT refused on all {len(tables)} tables of schema activity")


def _create_check(conn: psycopg.Connection) -> Check:
    item = "app user cannot create objects"
    row = conn.execute(
        """SELECT has_schema_privilege(current_user, 'activity', 'CREATE'),
                  pg_has_role(current_user, n.nspowner, 'USAGE'),
                  has_database_privilege(current_user, current_database(), 'CREATE')
             FROM pg_namespace n WHERE n.nspname = 'activity'""").fetchone()
    if row is None:
        return Check(False, item, "schema activity does not exist")
    can_create, owns_schema, can_create_schema = row
    problems = []
    if owns_schema:
        problems.append("the app user is (a member of) the owner of schema activity")
    elif can_create:
        problems.append("the app user has CREATE on schema activity")
    if can_create_schema:
        problems.append("the app user may create schemas in this database")
    if problems:
        return Check(False, item, "; ".join(problems))
    return Check(True, item, "no CREATE on schema activity or on the database")


# --- credentials: a self-signed round trip through the real decorators ----------------------------

def _round_trip_app(config: dict, decorator: Callable) -> Any:
    from flask import Flask, g

    from .. import errors

    app = Flask("notifications_api.ops.preflight")
    app.config.update(config)
    errors.init_app(app)

    @app.post("/check")
    @decorator
    def check():
        return {"user_id": g.get("user_id"), "service": g.get("service")}

    return app.test_client()


def _jwt_audience_check(config: dict) -> Check:
    if not config["JWT_AUDIENCE"]:
        return Check(False, "JWT audience", "JWT_AUDIENCE is empty: a token any platform service signs "
                                            "with the shared secret is accepted as a user's")
    return Check(True, "JWT audience", f"tokens must carry aud={config['JWT_AUDIENCE']!r}")


def _jwt_check(config: dict) -> Check:
    from ..web.auth import issue_token, user_required

    item = "JWT validation"
    client = _round_trip_app(config, user_required)
    user_id = str(uuid.uuid4())
    now = int(time.time())
    expired_at = now - config["JWT_LEEWAY_SECONDS"] - 3600
    valid = issue_token(config, user_id, hours=0.25)
    header, _, signature = valid.split(".")
    other_payload = issue_token(config, str(uuid.uuid4()), hours=0.25).split(".")[1]
    foreign = jwt.encode({"sub": user_id, "exp": now + 600}, "x" * 64, algorithm=config["JWT_ALGORITHM"])
    unsigned = jwt.encode({"sub": user_id, "exp": now + 600}, None, algorithm="none")
    expired = jwt.encode({"sub": user_id, "exp": expired_at, "iat": expired_at - 60},
                         config["JWT_SECRET"], algorithm=config["JWT_ALGORITHM"])
    cases = [
        ("a token we signed", valid, 200, None),
        ("a tampered payload", f"{header}.{other_payload}.{signature}", 401, "invalid_token"),
        ("a token signed with another key", foreign, 401, "invalid_token"),
        ("an unsigned (alg none) token", unsigned, 401, "invalid_token"),
        ("an expired token", expired, 401, "token_expired"),
    ]
    failures = []
    for label, token, status, code in cases:
        response = client.post("/check", headers={"Authorization": f"Bearer {token}"})
        body = response.get_json(silent=True) or {}
        if response.status_code != status or (code and body.get("code") != code) \
                or (status == 200 and body.get("user_id") != user_id):
            failures.append(f"{label}: got {response.status_code} {body.get('code', '')}".strip())
    if failures:
        return Check(False, item, "; ".join(failures))
    return Check(True, item, f"{config['JWT_ALGORITHM']} round trip accepted; tampered, foreign-key, "
                             "unsigned and expired tokens refused")


def _service_token_check(config: dict) -> Check:
    from ..web.auth import service_required

    item = "service-token validation"
    client = _round_trip_app(config, service_required)
    wrong = config["SERVICE_TOKEN"][::-1] + "x"
    cases = [
        ("X-Service-Token", {"X-Service-Token": config["SERVICE_TOKEN"]}, 200, None),
        ("Authorization: Bearer", {"Authorization": f"Bearer {config['SERVICE_TOKEN']}"}, 200, None),
        ("a wrong token", {"X-Service-Token": wrong}, 401, "invalid_service_token"),
        ("no token", {}, 401, "missing_token"),
    ]
    if config["SERVICE_TOKEN_PREVIOUS"]:
        previous = {"X-Service-Token": config["SERVICE_TOKEN_PREVIOUS"]}
        cases.append(("SERVICE_TOKEN_PREVIOUS", previous, 200, None))
    failures = []
    for label, headers, status, code in cases:
        response = client.post("/check", headers=headers)
        body = response.get_json(silent=True) or {}
        if response.status_code != status or (code and body.get("code") != code):
            failures.append(f"{label}: got {response.status_code} {body.get('code', '')}".strip())
    if failures:
        return Check(False, item, "; ".join(failures))
    return Check(True, item, "the configured token is accepted (both headers); "
                             "a wrong or missing one is refused")


def _scrub(text: str, config: Mapping[str, Any]) -> str:
    """Error messages may quote a conninfo: keep every secret out of what we print."""
    for name in ("DB_PASSWORD", "REDIS_PASSWORD", "DATABASE_URL", "JWT_SECRET", "SERVICE_TOKEN"):
        value = config.get(name)
        if value and len(value) >= 4:
            text = text.replace(value, "[REDACTED]")
    password = conninfo_to_dict(config["DATABASE_CONNINFO"]).get("password")
    if password and len(password) >= 4:
        text = text.replace(password, "[REDACTED]")
    return text
