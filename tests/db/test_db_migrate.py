"""The migration runner: idempotent, concurrent-safe, refuses edited files and the app role."""
from __future__ import annotations

import shutil
import threading
from pathlib import Path

import psycopg
import pytest

from notifications_api.db import admin
from notifications_api.db.migrate import SUPERSEDED, MigrationError, migrate, pending

MIGRATIONS = Path(__file__).resolve().parents[2] / "migrations_sql"
# Numbered files in order, then the repeatable ones: the order migrate() applies them in.
ALL_FILES = (sorted(p.name for p in MIGRATIONS.glob("[0-9]*.sql"))
             + [f"repeatable/{p.name}" for p in sorted((MIGRATIONS / "repeatable").glob("*.sql"))])
assert {"0001_schema.sql", "repeatable/0100_helpers.sql", "repeatable/0200_email.sql"} <= set(ALL_FILES)
# This release's stored functions: every repeatable file, in the order migrate() applies them.
CURRENT_FUNCTIONS = "\n".join(p.read_text() for p in sorted((MIGRATIONS / "repeatable").glob("*.sql")))


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
    with (directory / "repeatable" / "0100_helpers.sql").open("a") as f:
        f.write("\n-- changed\n")
    lines = []
    # a changed repeatable file is re-applied with every repeatable after it (their grants depend on it)
    later = [name for name in ALL_FILES if name.startswith("repeatable/") and name > "repeatable/0100_helpers.sql"]
    assert migrate(fresh, directory=directory, echo=lines.append) == ["9999_extra.sql",
                                                                      "repeatable/0100_helpers.sql", *later]
    assert lines == ["applied 9999_extra.sql", "applied repeatable/0100_helpers.sql",
                     *(f"applied {name}" for name in later)]
    with (directory / "repeatable" / "0200_email.sql").open("a") as f:
        f.write("\n-- changed\n")
    after_email = [name for name in ALL_FILES if name.startswith("repeatable/") and name > "repeatable/0200_email.sql"]
    assert migrate(fresh, directory=directory, echo=lambda *_: None) == ["repeatable/0200_email.sql", *after_email]
    (directory / "9998_broken.sql").write_text("SELECT * FROM no_such_table;")
    with pytest.raises(MigrationError, match="9998_broken.sql failed"):
        migrate(fresh, directory=directory, echo=lambda *_: None)
    assert "9998_broken.sql" not in dict(applied(fresh))


def test_a_superseded_version_of_a_numbered_file_counts_as_applied(db_env):
    """0001_schema.sql was fixed after its release: databases that applied the old version upgrade,
    keep the old checksum (the previous release's migrator still accepts them after a rollback),
    and preflight's check agrees; any other edit is still refused."""
    from notifications_api.ops.preflight import _migrations_check

    [old] = SUPERSEDED["0001_schema.sql"]
    fresh = db_env.fresh_database()
    migrate(fresh, echo=lambda *_: None)
    with psycopg.connect(fresh, autocommit=True) as conn:
        conn.execute("UPDATE activity.schema_migrations SET checksum = %s WHERE filename = '0001_schema.sql'",
                     (old,))
        conn.execute("DELETE FROM activity.schema_migrations WHERE filename = '0002_roles.sql'")
    assert migrate(fresh, echo=lambda *_: None) == ["0002_roles.sql"]
    assert dict(applied(fresh))["0001_schema.sql"] == old
    with psycopg.connect(fresh, autocommit=True) as conn:
        check = _migrations_check(conn, MIGRATIONS)
        assert check.ok, check.reason
        conn.execute("UPDATE activity.schema_migrations SET checksum = %s WHERE filename = '0001_schema.sql'",
                     ("0" * 64,))
        assert not _migrations_check(conn, MIGRATIONS).ok
    with pytest.raises(MigrationError, match=r"0001_schema\.sql was already applied but its content changed"):
        migrate(fresh, echo=lambda *_: None)


def test_an_existing_schema_keeps_its_owner(db_env):
    """The Auth API owns schema activity (and users): migrating, as a plain migrator with the grants
    docs/PRODUCTION.md lists, never takes it; the service then works in it."""
    import secrets

    from psycopg import sql

    fresh = db_env.fresh_database()
    suffix = secrets.token_hex(5)
    auth_owner, migrator, app = f"nt_auth_{suffix}", f"nt_mig_{suffix}", f"nt_app_{suffix}"
    password = secrets.token_urlsafe(16)
    db_env.extra_roles.extend([auth_owner, migrator, app])
    dbname = psycopg.conninfo.conninfo_to_dict(fresh)["dbname"]
    with psycopg.connect(fresh, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(auth_owner)))
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {} IN ROLE notifications_owner").format(
            sql.Identifier(migrator), sql.Literal(password)))
        conn.execute(sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(
            sql.Identifier(dbname), sql.Identifier(migrator)))
        conn.execute(sql.SQL("CREATE SCHEMA activity AUTHORIZATION {}").format(sql.Identifier(auth_owner)))
        conn.execute("CREATE TABLE activity.users (user_id uuid PRIMARY KEY, email text, display_name text,"
                     " is_active boolean NOT NULL DEFAULT true, created_at timestamptz NOT NULL DEFAULT now())")
        conn.execute(sql.SQL("ALTER TABLE activity.users OWNER TO {}").format(sql.Identifier(auth_owner)))
        # what PRODUCTION.md asks of the schema's owner
        conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(auth_owner)))
        conn.execute("GRANT USAGE, CREATE ON SCHEMA activity TO notifications_owner WITH GRANT OPTION")
        conn.execute("GRANT SELECT ON activity.users TO notifications_owner")
        conn.execute("RESET ROLE")
    migrate(psycopg.conninfo.make_conninfo(fresh, user=migrator, password=password), echo=lambda *_: None)
    admin.provision_app_user(fresh, app, password)
    with psycopg.connect(fresh, autocommit=True) as conn:
        assert conn.execute("SELECT nspowner::regrole::text FROM pg_namespace WHERE nspname = 'activity'"
                            ).fetchone() == (auth_owner,)
        user = conn.execute("INSERT INTO activity.users (user_id) VALUES (gen_random_uuid()) RETURNING user_id::text"
                            ).fetchone()[0]
    with psycopg.connect(psycopg.conninfo.make_conninfo(fresh, user=app, password=password)) as conn:
        assert conn.execute("SELECT unread_count FROM activity.sp_get_unread_count(%s::uuid, false)",
                            (user,)).fetchone() == (0,)
    with psycopg.connect(fresh, autocommit=True) as conn:  # the roles can be dropped with the database
        for role in (migrator, app):
            conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))


def test_a_fresh_schema_belongs_to_the_owner_role(db_env):
    with psycopg.connect(db_env.admin) as conn:
        assert conn.execute("SELECT nspowner::regrole::text FROM pg_namespace WHERE nspname = 'activity'"
                            ).fetchone() == ("notifications_owner",)


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
    current = CURRENT_FUNCTIONS
    with psycopg.connect(fresh, autocommit=True) as conn:
        user = conn.execute("INSERT INTO activity.users (user_id, email) VALUES (gen_random_uuid(), 'r@x.test')"
                            " RETURNING user_id::text").fetchone()[0]
        for step in ("migrated", FIRST_RELEASE_UNREAD_COUNT, current):  # rollback, then forward again
            if step != "migrated":
                conn.execute(step)
            answers = [conn.execute(query, (user,)).fetchone() for query in UNREAD_COUNT_CALLS]
            assert answers == [(0, {}, 0)] * 3, step[:80]  # none ambiguous, all the same answer


def test_no_transaction_file_runs_statement_by_statement(db_env, tmp_path):
    directory = tmp_path / "migrations_sql"
    shutil.copytree(MIGRATIONS, directory)
    fresh = db_env.fresh_database()
    migrate(fresh, directory=directory, echo=lambda *_: None)
    (directory / "9990_online.sql").write_text(
        "-- migrate:no-transaction\n"
        "CREATE TABLE IF NOT EXISTS activity.online (id int);\n"
        "-- migrate:split\n"
        "DO $$ BEGIN FOR i IN 1..3 LOOP INSERT INTO activity.online VALUES (i); COMMIT; END LOOP; END $$;\n"
        "-- migrate:split\n"
        "SET lock_timeout = '1s';\n"
        "-- migrate:split\n"
        "-- only a comment\n"
        "-- migrate:split\n"
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS online_id ON activity.online (id);\n")
    (directory / "9991_broken_online.sql").write_text(
        "-- migrate:no-transaction\nCREATE INDEX CONCURRENTLY IF NOT EXISTS online_id2 ON activity.online (id);\n"
        "-- migrate:split\nSELECT * FROM no_such_table;\n")
    with pytest.raises(MigrationError, match="9991_broken_online.sql failed"):
        migrate(fresh, directory=directory, echo=lambda *_: None)
    names = dict(applied(fresh))
    assert "9990_online.sql" in names and "9991_broken_online.sql" not in names
    with psycopg.connect(fresh, autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM activity.online").fetchone()[0] == 3
        assert conn.execute("SELECT indisvalid FROM pg_index WHERE indexrelid = 'activity.online_id'::regclass"
                            ).fetchone()[0]
    (directory / "9991_broken_online.sql").write_text(
        "-- migrate:no-transaction\nCREATE INDEX CONCURRENTLY IF NOT EXISTS online_id2 ON activity.online (id);\n")
    assert migrate(fresh, directory=directory, echo=lambda *_: None) == ["9991_broken_online.sql"]


PREVIOUS_RELEASE = Path(__file__).resolve().parent / "previous_release"


def _previous_release_directory(tmp_path) -> Path:
    """The previous release's migrations_sql/: 0001 and its function file (tests/db/previous_release)."""
    directory = tmp_path / "previous"
    (directory / "repeatable").mkdir(parents=True)
    shutil.copy(MIGRATIONS / "0001_schema.sql", directory)
    shutil.copy(PREVIOUS_RELEASE / "0100_functions.sql", directory / "repeatable")
    shutil.copy(MIGRATIONS / "repeatable" / "0200_email.sql", directory / "repeatable")
    return directory


def _v1_counts(conn, user):
    return conn.execute("SELECT unread_count, by_type FROM activity.sp_get_unread_count(%s::uuid, true)",
                        (user,)).fetchone()


def test_v1_data_migrates_without_losing_a_row_or_a_count_and_rollback_still_works(db_env, tmp_path):
    previous = _previous_release_directory(tmp_path)
    fresh = db_env.fresh_database()
    migrate(fresh, directory=previous, echo=lambda *_: None)
    create = ("SELECT notification_id::text FROM activity.sp_create_notification(ARRAY[%s::uuid], %s, 't',"
              " p_expires_at => %s)")
    with psycopg.connect(fresh, autocommit=True) as conn:
        users = [conn.execute("INSERT INTO activity.users (user_id) VALUES (gen_random_uuid())"
                              " RETURNING user_id::text").fetchone()[0] for _ in range(3)]
        made = {}
        for i, user in enumerate(users):
            made[user] = [conn.execute(create, (user, t, None)).fetchone()[0]
                          for t in ("comment", "mention", "comment", "like")[: i + 2]]
            conn.execute("SELECT activity.sp_mark_notification_as_read(%s, %s)", (user, made[user][0]))
            conn.execute("SELECT activity.sp_delete_notification(%s, %s)", (user, made[user][-1]))
        before = conn.execute("SELECT user_id, notification_id, status, created_at, read_at"
                              " FROM activity.notifications ORDER BY 1, 2").fetchall()
        v1_counts = {u: _v1_counts(conn, u) for u in users}

    migrate(fresh, echo=lambda *_: None)  # this release, over v1 data
    with psycopg.connect(fresh, autocommit=True) as conn:
        after = conn.execute("SELECT user_id, notification_id, status, created_at, read_at"
                             " FROM activity.notifications ORDER BY 1, 2").fetchall()
        assert after == before
        assert conn.execute("SELECT count(*) FROM activity.notifications WHERE delivered_at IS DISTINCT FROM"
                            " created_at OR seen_at IS DISTINCT FROM read_at").fetchone()[0] == 0
        assert conn.execute("SELECT attnotnull FROM pg_attribute WHERE attrelid = 'activity.notifications'::regclass"
                            " AND attname = 'delivered_at'").fetchone()[0]
        for u in users:
            [row] = conn.execute("SELECT unread_count, unseen_count, by_type FROM"
                                 " activity.sp_get_unread_count(%s::uuid, true, NULL::bigint)", (u,)).fetchall()
            assert (row[0], row[2]) == v1_counts[u] and row[1] == row[0]  # the read ones are seen
            assert _v1_counts(conn, u) == v1_counts[u]  # the previous forms, over the new functions
        # this release writes; then a rollback re-applies the previous functions over the new schema
        conn.execute(create, (users[0], "comment", None))
        previous_functions = (PREVIOUS_RELEASE / "0100_functions.sql").read_text()
        conn.execute(previous_functions)
        unread, by_type = _v1_counts(conn, users[0])
        assert unread == v1_counts[users[0]][0] + 1
        old_made = conn.execute(create, (users[0], "mention", None)).fetchone()[0]
        conn.execute("SELECT activity.sp_mark_notification_as_read(%s, %s)", (users[0], made[users[0]][1]))
        conn.execute("SELECT * FROM activity.sp_mark_notifications_as_read_bulk(%s, p_all => true)", (users[1],))
        listed = conn.execute("SELECT notification_id::text FROM activity.sp_get_user_notifications(%s)",
                              (users[0],)).fetchall()
        assert (old_made,) in listed
        legacy = {u: _v1_counts(conn, u) for u in users}
        # and forward again: the counts the previous release left are recounted where it wrote
        conn.execute(CURRENT_FUNCTIONS)
        for u in users:
            [row] = conn.execute("SELECT unread_count, unseen_count, by_type FROM"
                                 " activity.sp_get_unread_count(%s::uuid, true, NULL::bigint)", (u,)).fetchall()
            truth = conn.execute(
                "SELECT count(*) FILTER (WHERE status = 'unread'),"
                " count(*) FILTER (WHERE seen_at IS NULL AND read_at IS NULL)"
                " FROM activity.notifications WHERE user_id = %s AND status <> 'archived'", (u,)).fetchone()
            assert (row[0], row[1]) == truth and (row[0], row[2]) == legacy[u]


def test_inbox_v2_online_files_can_run_again(db_env):
    """0130 and 0131 run outside a transaction: after a failure half-way the Job simply runs them
    again, so every statement must succeed a second time over what the first run left."""
    from notifications_api.db.migrate import discover
    fresh = db_env.fresh_database()
    migrate(fresh, echo=lambda *_: None)
    online = [m for m in discover() if m.name in ("0130_inbox_v2.sql", "0131_inbox_v2_online.sql")]
    assert [m.transactional for m in online] == [False, False]
    with psycopg.connect(fresh, autocommit=True) as conn:
        for m in online:
            for statement in m.statements():
                conn.execute(statement)
        assert conn.execute("SELECT count(*) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
                            " WHERE NOT i.indisvalid").fetchone()[0] == 0
