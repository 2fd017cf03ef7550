"""The migration runner: idempotent, concurrent-safe, refuses edited files and the app role."""
from __future__ import annotations

import shutil
import threading
from pathlib import Path

import psycopg
import pytest

from notifications_api.migrate import MigrationError, migrate, pending

MIGRATIONS = Path(__file__).resolve().parents[2] / "migrations_sql"
# Numbered files in order, then the repeatable ones: the order migrate() applies them in.
ALL_FILES = (sorted(p.name for p in MIGRATIONS.glob("[0-9]*.sql"))
             + [f"repeatable/{p.name}" for p in sorted((MIGRATIONS / "repeatable").glob("*.sql"))])
assert {"0001_schema.sql", "repeatable/0100_functions.sql", "repeatable/0200_email.sql"} <= set(ALL_FILES)


def applied(conninfo):
    with psycopg.connect(conninfo) as conn:
        return conn.execute("SELECT filename, checksum FROM activity.schema_migrations ORDER BY 1").fetchall()


def test_second_run_is_a_no_op(db_env):
    lines = []
    assert migrate(db_env.admin, echo=lines.append) == []
    assert lines == ["up to date"]
    assert pending(db_env.admin) == []


def test_dry_run_changes_nothing(db_env):
    fresh = db_env.fresh_database()
    lines = []
    names = migrate(fresh, dry_run=True, echo=lines.append)
    assert names == ALL_FILES == pending(fresh)
    assert lines == [f"would apply {n}" for n in names]
    with psycopg.connect(fresh) as conn:
        assert conn.execute("SELECT to_regnamespace('activity')").fetchone()[0] is None


def test_two_concurrent_runs_on_a_fresh_database(db_env):
    fresh = db_env.fresh_database()
    results, failures = [], []

    def run():
        try:
            results.append(migrate(fresh, echo=lambda *_: None))
        except Exception as exc:  # pragma: no cover - reported below
            failures.append(exc)
    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures
    assert sorted(results, key=len) == [[], ALL_FILES]
    assert len(applied(fresh)) == len(ALL_FILES)


def test_edited_applied_migration_is_refused(db_env, tmp_path):
    directory = tmp_path / "migrations_sql"
    shutil.copytree(MIGRATIONS, directory)
    fresh = db_env.fresh_database()
    migrate(fresh, directory=directory, echo=lambda *_: None)
    with (directory / "0001_schema.sql").open("a") as f:
        f.write("\n-- edited\n")
    with pytest.raises(MigrationError, match=r"0001_schema\.sql was already applied but its content changed"):
        migrate(fresh, directory=directory, echo=lambda *_: None)


def test_new_and_changed_files_are_applied(db_env, tmp_path):
    directory = tmp_path / "migrations_sql"
    shutil.copytree(MIGRATIONS, directory)
    fresh = db_env.fresh_database()
    migrate(fresh, directory=directory, echo=lambda *_: None)
    (directory / "9999_extra.sql").write_text("CREATE TABLE activity.extra (id int);")
    with (directory / "repeatable" / "0100_functions.sql").open("a") as f:
        f.write("\n-- changed\n")
    lines = []
    assert migrate(fresh, directory=directory, echo=lines.append) == ["9999_extra.sql",
                                                                      "repeatable/0100_functions.sql"]
    assert lines == ["applied 9999_extra.sql", "applied repeatable/0100_functions.sql"]
    (directory / "9998_broken.sql").write_text("SELECT * FROM no_such_table;")
    with pytest.raises(MigrationError, match="9998_broken.sql failed"):
        migrate(fresh, directory=directory, echo=lambda *_: None)
    assert "9998_broken.sql" not in dict(applied(fresh))


def test_refuses_to_run_as_the_app_role(db_env):
    with pytest.raises(MigrationError, match="refusing to migrate"):
        migrate(db_env.app, echo=lambda *_: None)


# The first release's definition of the unread count (its function file, re-applied by the previous
# release's migrate Job after a rollback; docs/PRODUCTION.md "Rollback"), abridged to its signature.
FIRST_RELEASE_UNREAD_COUNT = """
CREATE OR REPLACE FUNCTION activity.sp_get_unread_count(p_user_id uuid, p_by_type boolean DEFAULT true)
RETURNS TABLE(unread_count bigint, by_type jsonb, version bigint)
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = activity, pg_temp
AS $$ BEGIN RETURN QUERY SELECT 0::bigint, '{}'::jsonb, 0::bigint; END $$;
"""


UNREAD_COUNT_CALLS = [
    "SELECT * FROM activity.sp_get_unread_count(%s::uuid, true)",  # the first release's code
    "SELECT * FROM activity.sp_get_unread_count(%s::uuid)",  # probes
    "SELECT * FROM activity.sp_get_unread_count(%s::uuid, true, NULL, NULL)",  # this release's code
]


def test_rollback_then_forward_keeps_every_unread_count_form_callable(db_env):
    fresh = db_env.fresh_database()
    migrate(fresh, echo=lambda *_: None)
    current = (MIGRATIONS / "repeatable" / "0100_functions.sql").read_text()
    with psycopg.connect(fresh, autocommit=True) as conn:
        user = conn.execute("INSERT INTO activity.users (user_id, email) VALUES (gen_random_uuid(), 'r@x.test')"
                            " RETURNING user_id::text").fetchone()[0]
        for step in ("migrated", FIRST_RELEASE_UNREAD_COUNT, current):  # rollback, then forward again
            if step != "migrated":
                conn.execute(step)
            answers = [conn.execute(query, (user,)).fetchone() for query in UNREAD_COUNT_CALLS]
            assert answers == [(0, {}, 0)] * 3, step[:80]  # none ambiguous, all the same answer
