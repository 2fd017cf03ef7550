"""Database commands: `migrate`, `create-user`, `purge` (retention)."""
from __future__ import annotations

import uuid

import click

from .cli_env import admin_conninfo, database_url_option, environment, fail, load, require_database


@click.command()
@database_url_option
@click.option("--dry-run", is_flag=True, help="Show what would be applied; change nothing.")
def migrate(database_url: str | None, dry_run: bool) -> None:
    """Apply pending SQL migrations (run as an admin/owner role, never as the app user)."""
    import psycopg

    from ..db import migrate as migrations

    conninfo = admin_conninfo(database_url)
    applied = []
    try:
        applied = migrations.migrate(conninfo, dry_run=dry_run, echo=click.echo,
                                     directory=migrations.default_directory(environment()))
    except migrations.MigrationError as exc:
        fail(str(exc))
    except psycopg.OperationalError as exc:
        fail(f"cannot connect to the database: {exc}")
    if applied:  # migrate() already echoed each file
        click.echo(f"{'would apply' if dry_run else 'applied'} {len(applied)} migration(s)")


@click.command("create-user")
@database_url_option
@click.option("--email", required=True)
@click.option("--user-id", type=click.UUID, help="Default: a new random UUID.")
@click.option("--display-name")
@click.option("--inactive", is_flag=True, help="Create the user as inactive.")
def create_user(database_url: str | None, email: str, user_id: uuid.UUID | None,
                display_name: str | None, inactive: bool) -> None:
    """Create a row in activity.users (the Auth API owns users in production)."""
    import psycopg

    from ..db import admin

    try:
        created = admin.create_user(admin_conninfo(database_url), email=email,
                                    user_id=str(user_id) if user_id else None,
                                    display_name=display_name, active=not inactive)
    except psycopg.Error as exc:
        fail(str(exc).strip())
    click.echo(str(created))


@click.command()
@click.option("--archived-days", type=click.IntRange(min=0), default=90, show_default=True,
              help="Delete archived notifications older than this many days (expired ones always go).")
@click.option("--email-sent-days", type=click.IntRange(min=0), default=7, show_default=True,
              help="Delete sent and cancelled e-mail outbox rows queued more than this many days ago.")
@click.option("--email-failed-days", type=click.IntRange(min=0), default=30, show_default=True,
              help="Delete failed and dead e-mail outbox rows queued more than this many days ago.")
@click.option("--push-days", type=click.IntRange(min=0), default=7, show_default=True,
              help="Delete sent, failed and cancelled push deliveries finished more than this many days ago.")
@click.option("--batch-size", type=click.IntRange(1, 100000), default=1000, show_default=True,
              help="Rows per call (one short transaction each).")
def purge(archived_days: int, email_sent_days: int, email_failed_days: int, push_days: int,
          batch_size: int) -> None:
    """Retention: purge notifications, then the e-mail and push outboxes, in batches until nothing is left.

    Connects as RETENTION_DATABASE_URL, else the configured database user; either must be the retention
    login (a member of notifications_retention): the API's login may not purge.
    """
    import psycopg

    from ..db import retention
    from ..db.pool import Database
    from ..errors import ApiError

    env = environment()
    require_database(env)
    if env.get("RETENTION_DATABASE_URL"):
        env = {**env, "DATABASE_URL": env["RETENTION_DATABASE_URL"]}
    database = Database(load(env, need_secrets=False))
    notifications = outbox = pushes = 0
    try:
        while deleted := retention.purge_notifications(database, archived_days, batch_size):
            notifications += deleted
        while deleted := retention.purge_email_outbox(database, email_sent_days, email_failed_days,
                                                      batch_size):
            outbox += deleted
        while deleted := retention.purge_push_outbox(database, push_days, batch_size):
            pushes += deleted
    except ApiError as exc:
        if isinstance(exc.__cause__, psycopg.errors.InsufficientPrivilege):
            fail("purge refused: the configured database user is not a member of notifications_retention; "
                 "connect as the retention login (RETENTION_DATABASE_URL, or DB_USER=retention_user; "
                 "see deploy/postgres/roles.sql)")
        fail(f"purge stopped after {notifications} notification(s) and {outbox} e-mail outbox row(s): "
             f"{exc.code}: {exc.detail}")
    finally:
        database.close()
    click.echo(f"purged {notifications} notification(s)")
    click.echo(f"purged {outbox} e-mail outbox row(s)")
    click.echo(f"purged {pushes} push delivery row(s)")
