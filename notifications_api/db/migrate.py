"""Apply migrations_sql/: numbered files once each, repeatable/ files whenever they change."""
from __future__ import annotations

import argparse
import hashlib
import os
import re
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Callable

import psycopg

# Fixed pg_advisory_lock key ("NOTIFMIG"): replicas starting at once migrate one at a time.
LOCK_KEY = 0x4E4F5449464D4947
LOCK_POLL_SECONDS = 0.2
NUMBERED = re.compile(r"^\d{4}_[A-Za-z0-9_.-]+\.sql$")
REPEATABLE_DIR = "repeatable"
# A numbered file whose first line is this marker runs outside a transaction (CREATE INDEX
# CONCURRENTLY, batched backfills that COMMIT): its statements, separated by lines that are exactly
# SPLIT, are sent one by one in autocommit; it is recorded as applied only once all succeeded, so
# such a file must be safe to run again from the start (IF NOT EXISTS, idempotent updates).
NO_TRANSACTION = "-- migrate:no-transaction"
SPLIT = "-- migrate:split"

# Schema activity may already exist, owned by the platform's Auth API (it owns `users`): then it
# keeps its owner. Only an absent schema is created, owned by notifications_owner (created here
# when a superuser migrates a fresh cluster; otherwise deploy/postgres/roles.sql made it).
BOOTSTRAP_SQL = """
DO $$
BEGIN
    IF to_regnamespace('activity') IS NULL THEN
        IF to_regrole('notifications_owner') IS NULL THEN
            BEGIN
                CREATE ROLE notifications_owner NOLOGIN;
            EXCEPTION WHEN duplicate_object OR unique_violation THEN
                NULL;  -- created concurrently by another database's migration
            END;
        END IF;
        CREATE SCHEMA activity AUTHORIZATION notifications_owner;
    END IF;
END
$$;
CREATE TABLE IF NOT EXISTS activity.schema_migrations (
    filename   text PRIMARY KEY,
    checksum   text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);
"""

# Earlier contents of released numbered files, replaced by a fix whose effect on a database that
# already applied the old version is nil or handled by a later file. A recorded checksum listed
# here counts as applied (neither re-run nor refused) and stays recorded as it is, so that the
# previous release's migrator, which knows only the old file, still accepts the database after a
# rollback. Add an entry only with the reason; never for a change an existing database still needs.
SUPERSEDED: dict[str, dict[str, str]] = {
    "0001_schema.sql": {
        # took schema activity from its owner (ALTER SCHEMA ... OWNER): the fix only stops
        # doing that on new databases; the schema of an existing one stays as it is.
        "f66535cfaafc52dc7801c2eb6ee13442b2416f739781fd2498071d27cee61c42":
            "ALTER SCHEMA activity OWNER TO notifications_owner removed",
    },
}


class MigrationError(RuntimeError):
    """A migration cannot be applied safely (changed file, failing SQL, wrong role)."""


@dataclass(frozen=True)
class Migration:
    name: str  # as recorded in schema_migrations: "0001_schema.sql" or "repeatable/0100_functions.sql"
    sql: str
    checksum: str
    repeatable: bool

    @property
    def transactional(self) -> bool:
        return self.sql.split("\n", 1)[0].strip() != NO_TRANSACTION

    def statements(self) -> list[str]:
        """The statements of a no-transaction file, in order."""
        chunks, current = [], []
        for line in self.sql.splitlines():
            if line.strip() == SPLIT:
                chunks.append("\n".join(current))
                current = []
            else:
                current.append(line)
        chunks.append("\n".join(current))
        return [c for c in chunks if _has_sql(c)]


def _has_sql(chunk: str) -> bool:
    return any(line.strip() and not line.strip().startswith("--") for line in chunk.splitlines())


def default_directory(env: Mapping[str, str] | None = None) -> Traversable:
    """MIGRATIONS_DIR when set (an override), else the SQL files shipped in the package.

    The package's copy is what this release was built with: the top-level migrations_sql/ of the
    checkout, installed as `notifications_api.migrations_sql` (setup.py), so a wheel migrates too.
    """
    override = (os.environ if env is None else env).get("MIGRATIONS_DIR")
    return Path(override) if override else resources.files("notifications_api.migrations_sql")


def discover(directory: Traversable | None = None) -> list[Migration]:
    """Numbered files in order, then the repeatable ones in name order."""
    directory = Path(directory) if isinstance(directory, (str, os.PathLike)) else directory
    directory = directory if directory is not None else default_directory()
    if not directory.is_dir():
        raise MigrationError(f"migrations directory not found: {directory}")
    found: list[Migration] = []
    numbers: dict[str, str] = {}
    for path in _sql_files(directory):
        if not NUMBERED.match(path.name):
            raise MigrationError(f"{path.name}: migration files must be named NNNN_name.sql")
        number = path.name[:4]
        if number in numbers:
            raise MigrationError(f"{path.name} and {numbers[number]} share the number {number}")
        numbers[number] = path.name
        found.append(_load(path, path.name, repeatable=False))
    repeatable = directory.joinpath(REPEATABLE_DIR)
    for path in _sql_files(repeatable) if repeatable.is_dir() else ():
        found.append(_load(path, f"{REPEATABLE_DIR}/{path.name}", repeatable=True))
    return found


def _sql_files(directory: Traversable) -> list[Traversable]:
    """The *.sql files of one folder by name (Traversable has no glob: a wheel may be zipped)."""
    return sorted((p for p in directory.iterdir() if p.name.endswith(".sql") and p.is_file()),
                  key=lambda p: p.name)


def _load(path: Traversable, name: str, *, repeatable: bool) -> Migration:
    raw = path.read_bytes()
    return Migration(name, raw.decode("utf-8"), hashlib.sha256(raw).hexdigest(), repeatable)


def _applied(conn: psycopg.Connection) -> dict[str, str]:
    exists = conn.execute("SELECT to_regclass('activity.schema_migrations') IS NOT NULL").fetchone()[0]
    if not exists:
        return {}
    return dict(conn.execute("SELECT filename, checksum FROM activity.schema_migrations").fetchall())


def is_superseded(m: Migration, recorded: str) -> bool:
    """The database applied an earlier version of numbered file `m` that its current one replaces."""
    return not m.repeatable and recorded in SUPERSEDED.get(m.name, {})


def _gone(migrations: list[Migration], applied: dict[str, str]) -> list[str]:
    """Recorded repeatable files no longer on disk: split or renamed (0100_functions.sql became
    0100_helpers.sql .. 0120_privileges.sql), or a newer release's after a rollback."""
    on_disk = {m.name for m in migrations}
    return sorted(n for n in applied if n.startswith(f"{REPEATABLE_DIR}/") and n not in on_disk)


def _plan(migrations: list[Migration], applied: dict[str, str]) -> list[Migration]:
    """What to apply. A changed repeatable file is re-applied with every repeatable after it: a later
    file may grant on (or revoke from) what an earlier one redefines, e.g. 0150_retention.sql takes
    sp_purge_notifications away from the app group again after a rollback re-applied an old
    0100_functions.sql that granted it. A recorded repeatable file that is gone may have defined
    what any of them defines: then every repeatable file is re-applied (and its row dropped)."""
    todo = []
    rerun_rest = bool(_gone(migrations, applied))
    for m in migrations:
        recorded = applied.get(m.name)
        if recorded is None or (m.repeatable and (rerun_rest or recorded != m.checksum)):
            todo.append(m)
            rerun_rest = rerun_rest or m.repeatable
        elif recorded != m.checksum and not is_superseded(m, recorded):
            raise MigrationError(
                f"{m.name} was already applied but its content changed (checksum {recorded[:12]}… on the "
                f"database, {m.checksum[:12]}… on disk); restore it and put the change in a new "
                "numbered file")
    return todo


def _refuse_app_role(conn: psycopg.Connection) -> None:
    """Never migrate as the app login: it is a member of notifications_api and owns nothing."""
    user, is_app = conn.execute(
        """SELECT current_user::text,
                  NOT r.rolsuper
                  AND to_regrole('notifications_api') IS NOT NULL
                  AND pg_has_role(current_user, 'notifications_api', 'MEMBER')
                  AND NOT (to_regrole('notifications_owner') IS NOT NULL
                           AND pg_has_role(current_user, 'notifications_owner', 'MEMBER'))
             FROM pg_roles r WHERE r.rolname = current_user""").fetchone()
    if is_app:
        raise MigrationError(
            f"refusing to migrate as {user!r}: it is an application role (member of notifications_api); "
            "run migrations with an admin/superuser connection")


def pending(conninfo: str, directory: Traversable | None = None) -> list[str]:
    """Names of the files a migrate() would apply now."""
    migrations = discover(directory)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        return [m.name for m in _plan(migrations, _applied(conn))]


def migrate(conninfo: str, *, dry_run: bool = False, directory: Traversable | None = None,
            echo: Callable[[str], object] = print) -> list[str]:
    """Apply what is pending, each file in its own transaction; returns the names applied."""
    migrations = discover(directory)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        _refuse_app_role(conn)
        if dry_run:
            todo = _plan(migrations, _applied(conn))
            for m in todo:
                echo(f"would apply {m.name}")
            if not todo:
                echo("up to date")
            return [m.name for m in todo]

        _lock(conn)
        try:
            conn.execute(BOOTSTRAP_SQL)
            applied = _applied(conn)
            todo = _plan(migrations, applied)
            for m in todo:
                _apply(conn, m)
                echo(f"applied {m.name}")
            # A gone file's row goes once its replacements are applied (until then each run applies
            # them again): left behind, preflight would call it "applied but not in this release",
            # and a rollback would not re-apply the previous release's file.
            if gone := _gone(migrations, applied):
                conn.execute("DELETE FROM activity.schema_migrations WHERE filename = ANY (%s)", (gone,))
            if not todo:
                echo("up to date")
            return [m.name for m in todo]
        finally:
            if not conn.closed:
                conn.execute("SELECT pg_advisory_unlock(%s)", (LOCK_KEY,))


RECORD = """INSERT INTO activity.schema_migrations (filename, checksum) VALUES (%s, %s)
              ON CONFLICT (filename) DO UPDATE SET checksum = EXCLUDED.checksum, applied_at = now()"""


def _lock(conn: psycopg.Connection) -> None:
    """Take the migration lock, polling: a runner blocked inside pg_advisory_lock() would be a
    running statement, and another runner's CREATE INDEX CONCURRENTLY waits for every running
    statement to end: a deadlock. Between polls this session runs nothing."""
    while not conn.execute("SELECT pg_try_advisory_lock(%s)", (LOCK_KEY,)).fetchone()[0]:
        time.sleep(LOCK_POLL_SECONDS)


def _apply(conn: psycopg.Connection, m: Migration) -> None:
    try:
        if m.transactional or m.repeatable:
            with conn.transaction():
                conn.execute(m.sql)
                conn.execute(RECORD, (m.name, m.checksum))
            return
        for statement in m.statements():  # autocommit: each one alone, outside any transaction
            conn.execute(statement)
        conn.execute(RECORD, (m.name, m.checksum))
    except psycopg.Error as exc:
        raise MigrationError(f"{m.name} failed: {exc}") from exc
    finally:
        if not m.transactional and not conn.closed:
            conn.execute("RESET ALL")  # a SET in the file must not outlive it


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("conninfo", nargs="?", default=os.environ.get("DATABASE_URL"),
                        help="admin connection string (default: $DATABASE_URL)")
    parser.add_argument("--dry-run", action="store_true", help="print what would be applied, change nothing")
    parser.add_argument("--directory", type=Path, default=None)
    args = parser.parse_args(argv)
    if not args.conninfo:
        parser.error("give a connection string or set DATABASE_URL")
    try:
        migrate(args.conninfo, dry_run=args.dry_run, directory=args.directory)
    except MigrationError as exc:
        print(f"migration failed: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
