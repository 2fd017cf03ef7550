"""Migration 0160 (e-mail digests, issue 25) over e-mail the previous release queued: the v1 rows keep
going out under the new rules, and the online file can run again."""
from __future__ import annotations

import shutil
from pathlib import Path

import psycopg

from notifications_api.db.migrate import discover, migrate

MIGRATIONS = Path(__file__).resolve().parents[2] / "migrations_sql"
PREVIOUS = Path(__file__).resolve().parent / "previous_release"


def previous_release(tmp_path) -> Path:
    """The release before 0160: its numbered files, its functions (one file), its 0200_email.sql."""
    directory = tmp_path / "before_digests"
    (directory / "repeatable").mkdir(parents=True)
    for path in MIGRATIONS.glob("*.sql"):
        if path.name < "0160":
            shutil.copy(path, directory)
    for path in (PREVIOUS / "one_function_file").glob("*.sql"):
        shutil.copy(path, directory / "repeatable")
    shutil.copy(PREVIOUS / "email_v1" / "0200_email.sql", directory / "repeatable")
    return directory


def queue(conn, user, title, priority="normal") -> str:
    return conn.execute("SELECT notification_id::text FROM activity.sp_create_notification(ARRAY[%s::uuid],"
                        " 'like', %s, p_priority => %s, p_queue_email => true)", (user, title, priority)).fetchone()[0]


def claim(conn, delay):
    return conn.execute("SELECT user_id::text, delivery_id::text, notification_ids::text[] FROM"
                        " activity.sp_claim_emails('w', 100, 60, 8, %s)", (delay,)).fetchall()


def test_v1_rows_keep_going_out_under_the_new_rules(db_env, tmp_path):
    db = db_env.fresh_database()
    migrate(db, directory=previous_release(tmp_path), echo=lambda *_: None)
    with psycopg.connect(db, autocommit=True) as conn:
        a, b, c = (conn.execute("INSERT INTO activity.users (user_id, email) VALUES (gen_random_uuid(), 'x@y.test')"
                                " RETURNING user_id::text").fetchone()[0] for _ in range(3))
        a_nids = [queue(conn, a, f"a{i}") for i in range(3)]
        urgent, b_normal = queue(conn, b, "urgent", "urgent"), queue(conn, b, "b")
        c_nid = queue(conn, c, "c")
        # a v1 worker already tried c's e-mail once (503): a retry is due with its delivery id as key
        (c_delivery,) = conn.execute("SELECT delivery_id::text FROM activity.sp_claim_email_deliveries('v1', 100, 60, 8)"
                                     " WHERE user_id = %s", (c,)).fetchone()
        conn.execute("SELECT activity.sp_release_email_deliveries('v1')")  # the others go back untouched
        conn.execute("UPDATE activity.email_outbox SET attempts = 1, last_error = 'HTTP 503'"
                     " WHERE delivery_id = %s", (c_delivery,))

    migrate(db, echo=lambda *_: None)  # this release: 0160 and the functions
    with psycopg.connect(db, autocommit=True) as conn:
        kinds = dict(conn.execute("SELECT notification_id::text, kind FROM activity.email_outbox").fetchall())
        assert kinds[urgent] == "urgent" and {kinds[n] for n in a_nids + [b_normal, c_nid]} == {"batched"}
        (urgent_delivery,) = conn.execute("SELECT delivery_id::text FROM activity.email_outbox"
                                          " WHERE notification_id = %s", (urgent,)).fetchone()
        first = claim(conn, 600)  # at once: the urgent one alone, and c's retry as the e-mail it was
        assert sorted(first) == sorted([(b, urgent_delivery, [urgent]), (c, c_delivery, [c_nid])])
        conn.execute("UPDATE activity.email_outbox SET available_at = available_at - interval '601 seconds'"
                     " WHERE status = 'pending'")
        second = {user: ids for user, _, ids in claim(conn, 600)}
        assert second == {a: a_nids[::-1], b: [b_normal]}  # one digest each, newest first
        assert claim(conn, 600) == []


def test_the_online_file_can_run_again(db_env):
    """0160 runs outside a transaction: after a failure half-way the Job runs it again from the top."""
    fresh = db_env.fresh_database()
    migrate(fresh, echo=lambda *_: None)
    (online,) = [m for m in discover() if m.name == "0160_email_digest.sql"]
    assert not online.transactional
    with psycopg.connect(fresh, autocommit=True) as conn:
        for statement in online.statements():
            conn.execute(statement)
        assert conn.execute("SELECT count(*) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
                            " WHERE NOT i.indisvalid").fetchone()[0] == 0
        assert conn.execute("SELECT count(*) FROM pg_indexes WHERE indexname IN"
                            " ('email_outbox_new_due', 'email_outbox_retry_due', 'email_outbox_user_open')"
                            ).fetchone()[0] == 3
