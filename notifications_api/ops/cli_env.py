"""What every `notifications-api` command shares: the environment it sees (with `make run`'s
database and secrets discovered in development), the configuration, and failing with a message."""
from __future__ import annotations

import os
import secrets
import sys
from pathlib import Path

import click
from dotenv import dotenv_values

from ..config import SECRETS, ConfigError, load_config, read_environment


# Where `make run` keeps the embedded PostgreSQL and its generated secrets (`dev --data-dir`).
DEV_DATA_DIR_ENV = "DEV_DATA_DIR"
DEV_ENV_FILE = "dev.env"
START_DEV = "start `make run` (in another terminal; it stops that database when it exits)"
DEV_DATABASE = "activity_platform"
# make run's logins, one per group (docs/PRODUCTION.md's roles): name -> the variable of its conninfo
DEV_APP_USER = "api_user"
DEV_WORKER_USER = "email_worker"
DEV_RETENTION_USER = "retention_user"
DEV_PUSH_WORKER_USER = "push_worker"  # `make run` starts `deliver-push` as it when VAPID_PRIVATE_KEY is set
DEV_LOGINS = {DEV_APP_USER: "DATABASE_URL", DEV_WORKER_USER: "WORKER_DATABASE_URL",
              DEV_RETENTION_USER: "RETENTION_DATABASE_URL"}
# What `make run` serves with unless the environment or .env says otherwise (the commands beside it see
# the same): Swagger UI and the web inbox demo (docs/WEB.md) on, and loopback only (the tour prints a
# 24-hour token).
DEV_DEFAULTS = {"ENABLE_DOCS": "true", "ENABLE_UI_DEMO": "true", "HOST": "127.0.0.1"}
DEV_GRIP_SIG_KEY_FILE = "grip-sig-key"
DEV_PUSHPIN_DIR = "pushpin"


def dev_data_dir() -> Path:
    return Path(os.environ.get(DEV_DATA_DIR_ENV) or ".data")


def environment() -> dict[str, str]:
    """What load_config sees (os.environ over `.env`) plus, in development, what `make run` set up.

    So that `check-config`, `issue-token`, `preflight`, `migrate`, `purge`, `stream-clock`, ... work beside
    `make run` with no extra setting: the secrets it generated (.data/dev.env), its defaults (DEV_DEFAULTS)
    and, while they run, its embedded PostgreSQL (each of its logins; MIGRATION_DATABASE_URL as the
    superuser) and its Pushpin. Anything set in the environment or `.env` wins; nothing is discovered for
    ENVIRONMENT other than development.
    """
    env = read_environment()
    if env.get("ENVIRONMENT", "development").strip().lower() != "development":
        return env
    data = dev_data_dir()
    stored = read_dev_secrets(data / DEV_ENV_FILE)
    found = {name: stored[name] for name in SECRETS if name in stored}
    if not env.get("DATABASE_URL") and not env.get("DB_HOST"):
        found.update(dev_database(data))
    if not env.get("GRIP_PUBLISH_URL"):
        found.update(dev_pushpin(data))
    return with_dev_defaults({**found, **env})


def with_dev_defaults(env: dict[str, str]) -> dict[str, str]:
    """`env` with DEV_DEFAULTS for what it leaves unset or empty."""
    return {**env, **{name: value for name, value in DEV_DEFAULTS.items() if not env.get(name)}}


def dev_database(data: Path) -> dict[str, str]:
    """The conninfos of `make run`'s embedded server, when it is running: MIGRATION_DATABASE_URL (the
    superuser) and one per login it provisioned (DATABASE_URL, WORKER_DATABASE_URL,
    RETENTION_DATABASE_URL)."""
    from psycopg.conninfo import make_conninfo

    from . import devdb

    server = devdb.running_conninfo(data / "pg")
    if server is None or not (data / f"{DEV_APP_USER}.password").is_file():
        return {}
    owner = make_conninfo(server, dbname=DEV_DATABASE)
    found = {"MIGRATION_DATABASE_URL": owner}
    for login, variable in DEV_LOGINS.items():
        password = data / f"{login}.password"
        if password.is_file():
            found[variable] = make_conninfo(owner, user=login, password=password.read_text().strip())
    return found


def dev_pushpin(data: Path) -> dict[str, str]:
    """GRIP_PUBLISH_URL and GRIP_SIG_KEY of the Pushpin `make run` started, while it runs."""
    from . import devpushpin

    url = devpushpin.running_publish_url(data / DEV_PUSHPIN_DIR)
    key = data / DEV_GRIP_SIG_KEY_FILE
    if url is None or not key.is_file():
        return {}
    return {"GRIP_PUBLISH_URL": url, "GRIP_SIG_KEY": key.read_text().strip()}


def no_database_hint(env: dict[str, str]) -> str | None:
    """Exactly what to do when no database is configured and `make run`'s is not running."""
    if env.get("DATABASE_URL") or env.get("DB_HOST"):
        return None
    data = dev_data_dir()
    where = f"the development database in {data / 'pg'} is not running" if (data / "pg").is_dir() \
        else "no development database exists yet"
    return (f"no database configured (DATABASE_URL or DB_HOST) and {where}: {START_DEV}, "
            "or set DATABASE_URL (and MIGRATION_DATABASE_URL for migrate/create-user) in .env")


def load(env: dict[str, str] | None = None, *, need_secrets: bool = True) -> dict:
    """load_config, turning ConfigError into a clean exit 1.

    Database-only commands (migrate, create-user) sign nothing, so they do not
    require JWT_SECRET/SERVICE_TOKEN: absent ones get a throwaway random value. Nor do
    they serve the API's /metrics: METRICS_TOKEN is not required of them.
    """
    source = env if env is not None else environment()
    overrides: dict = {}
    if not need_secrets:
        overrides = {name: secrets.token_urlsafe(48) for name in SECRETS if not source.get(name)}
        overrides["METRICS_PUBLIC"] = True
    try:
        return load_config(overrides, env=source)
    except ConfigError as exc:
        click.echo(str(exc), err=True)
        missing = [name for name in SECRETS if not source.get(name)]
        if missing and source.get("ENVIRONMENT", "development") == "development":
            click.echo(f"development: `make run` generates {' and '.join(SECRETS)} into "
                       f"{dev_data_dir() / DEV_ENV_FILE}, which this command then reads; "
                       "or set them in .env", err=True)
        sys.exit(1)


def admin_conninfo(database_url: str | None) -> str:
    """--database-url, else MIGRATION_DATABASE_URL, else the configured DATABASE_CONNINFO."""
    if database_url:
        return database_url
    env = environment()
    if env.get("MIGRATION_DATABASE_URL"):
        return env["MIGRATION_DATABASE_URL"]
    require_database(env)
    return load(env, need_secrets=False)["DATABASE_CONNINFO"]


def require_database(env: dict[str, str]) -> None:
    """Stop with the exact next step instead of trying localhost:5432 when nothing is configured."""
    hint = no_database_hint(env)
    if hint and env.get("ENVIRONMENT", "development") == "development":
        fail(hint)


def fail(message: str, code: int = 1) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def read_dev_secrets(path: Path) -> dict[str, str]:
    """The secrets `dev` generated into `path` (.data/dev.env), or nothing."""
    return {k: v for k, v in dotenv_values(path).items() if v} if path.is_file() else {}


database_url_option = click.option(
    "--database-url", metavar="URL",
    help="Admin/owner connection (default: $MIGRATION_DATABASE_URL, else the configured database).")
