"""The stored functions, one repeatable file per concern (issue 23): a database migrated when they
were one file (0100_functions.sql) upgrades with no function changed, and a fresh one gets the same."""
from __future__ import annotations

import shutil
from pathlib import Path

import psycopg

from notifications_api.db.migrate import migrate
from notifications_api.ops.preflight import _migrations_check

MIGRATIONS = Path(__file__).resolve().parents[2] / "migrations_sql"
# The repeatable files that changed when the functions were split (0200_email.sql did not, and the
# files of later concerns — 0210_push.sql, 0300_replica_reads.sql — came later): numbered from 0200 on,
# they are copied as they are.
ONE_FILE = Path(__file__).resolve().parent / "previous_release" / "one_function_file"

# Functions whose definition changed after the split, on purpose: name -> why.
REWRITTEN: dict[str, str] = {
    "sp_inbox_create": "its counts go through _row_delta/_apply like every writer's, not an inline copy of the rule;"
                       " delivered_at is stamped under the users' locks (issue 26)",
    "sp_get_unread_count": "the counts and the per-type rows are read by one statement, one snapshot (issue 26)",
    "sp_advance_clocks": "the previous release's form calls the new (limit, max_ms) one (issue 26)",
    "_apply": "a group left with no inbox member is deleted (issue 26)",
    "_probe_groups": "a group's inbox members are the not-snoozed ones (as _in_inbox), not delivered_at <= now():"
                     " a fan-out's new row, delivered at clock_timestamp(), is its group's latest",
    # issue 25 (e-mail digests)
    "sp_update_notification_settings": "the previous release's shape over sp_settings_update (email_digest)",
    "sp_delete_notification": "a digest awaiting its retry is not cancelled by one of its notifications",
    "sp_bulk_update": "a digest awaiting its retry is not cancelled by one of its notifications",
    "sp_retract_notifications": "a digest awaiting its retry is not cancelled by one of its notifications",
}
# Functions added after the split, on purpose (a rollback to the one-file layout leaves them, unused).
ADDED = {"sp_settings_get", "sp_settings_update", "_settings_email_digest", "email_daily_slot", "_local_instant",
         "_compact_json_octets"}  # issue 26: the payload measured as the API measures it
# Overloads added after the split (their name was there before): signature -> why.
ADDED_OVERLOADS: dict[str, str] = {
    "activity.sp_advance_clocks(integer,integer)": "every user folded, and a time bound per call (issue 26)",
}

# Every function of schema activity: signature -> (definition, ACL, owner).
FUNCTIONS = """SELECT p.oid::regprocedure::text, pg_get_functiondef(p.oid), p.proacl::text, p.proowner::regrole::text
                 FROM pg_proc p WHERE p.pronamespace = 'activity'::regnamespace"""


def functions(conninfo: str) -> dict[str, tuple[str, str, str]]:
    with psycopg.connect(conninfo) as conn:
        return {sig: rest for sig, *rest in conn.execute(FUNCTIONS).fetchall()}


def one_file_layout(tmp_path: Path) -> Path:
    """migrations_sql/ as it was before the split: the same numbered files, the old repeatable ones."""
    directory = tmp_path / "one_file"
    (directory / "repeatable").mkdir(parents=True)
    for path in MIGRATIONS.glob("*.sql"):
        shutil.copy(path, directory)
    for path in ONE_FILE.glob("*.sql"):
        shutil.copy(path, directory / "repeatable")
    for path in (MIGRATIONS / "repeatable").glob("*.sql"):
        if int(path.name[:4]) >= 200:
            shutil.copy(path, directory / "repeatable")
    return directory


def recorded(conninfo: str) -> set[str]:
    with psycopg.connect(conninfo) as conn:
        return {r[0] for r in conn.execute("SELECT filename FROM activity.schema_migrations")}


def assert_same_functions(before, after, rewritten=()):
    added = {sig for sig in after
             if sig.split("(")[0].removeprefix("activity.") in ADDED or sig in ADDED_OVERLOADS}
    assert sorted(set(after) - added) == sorted(before)  # none added (but ADDED), none removed
    for sig, (definition, acl, owner) in before.items():
        assert (after[sig][1], after[sig][2]) == (acl, owner), sig
        if sig.split("(")[0].removeprefix("activity.") not in rewritten:
            assert after[sig][0] == definition, sig


def test_a_database_with_the_one_file_layout_upgrades_with_no_function_changed(db_env, tmp_path):
    old = one_file_layout(tmp_path)
    db = db_env.fresh_database()
    migrate(db, directory=old, echo=lambda *_: None)
    before = functions(db)
    assert "repeatable/0100_functions.sql" in recorded(db)

    applied = migrate(db, echo=lambda *_: None)
    repeatable = sorted(f"repeatable/{p.name}" for p in (MIGRATIONS / "repeatable").glob("*.sql"))
    assert applied == repeatable  # every repeatable file again: the gone one may have defined anything
    assert_same_functions(before, functions(db), REWRITTEN)
    # the gone file's row is dropped: nothing "applied but not in this release", nothing left to do
    assert "repeatable/0100_functions.sql" not in recorded(db)
    assert migrate(db, echo=lambda *_: None) == []
    with psycopg.connect(db, autocommit=True) as conn:
        check = _migrations_check(conn, MIGRATIONS)
        assert check.ok, check.reason

    fresh = db_env.fresh_database()
    migrate(fresh, echo=lambda *_: None)
    assert functions(fresh) == functions(db)  # byte for byte, privileges included


def test_rollback_to_the_one_file_layout_and_forward_again(db_env, tmp_path):
    """A rollback re-applies the single file (its row was dropped, so it is pending again); going
    forward again re-applies the split files over it."""
    old = one_file_layout(tmp_path)
    reference = db_env.fresh_database()
    migrate(reference, directory=old, echo=lambda *_: None)
    db = db_env.fresh_database()
    migrate(db, echo=lambda *_: None)
    current = functions(db)

    assert "repeatable/0100_functions.sql" in migrate(db, directory=old, echo=lambda *_: None)
    assert_same_functions(functions(reference), functions(db))
    migrate(db, echo=lambda *_: None)
    assert functions(db) == current
    assert "repeatable/0100_functions.sql" not in recorded(db)
