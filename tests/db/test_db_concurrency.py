"""Races with threads and separate connections: dedupe, counters, keyset walks."""
from __future__ import annotations

import random
import threading
import uuid

import psycopg
from db_helpers import call, create, recount, run_threads, unread
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st


def test_concurrent_creates_with_one_dedupe_key_store_one_row(db_env, db_admin, db_user):
    users = [db_user(), db_user()]
    results = []

    def create_it(i):
        with psycopg.connect(db_env.app, autocommit=True) as conn:
            # half the callers list the users the other way round: no deadlock either way
            results.append(create(conn, users if i % 2 else users[::-1], dedupe_key="same-event"))
    run_threads(20, create_it)
    for uid in users:
        outcomes = [r for rows in results for r in rows if r["user_id"] == uid]
        assert sorted({r["result"] for r in outcomes}) in (["created", "duplicate"], ["created"])
        assert [r["result"] for r in outcomes].count("created") == 1
        assert len({r["notification_id"] for r in outcomes}) == 1
        assert db_admin.execute("SELECT count(*) FROM activity.notifications WHERE user_id = %s",
                                (uid,)).fetchone()[0] == 1
        assert unread(db_admin, uid)["unread_count"] == 1


OPS = st.lists(st.sampled_from(["create", "read", "unread", "archive", "delete", "bulk", "bulk_type"]),
               min_size=4, max_size=12)


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(scripts=st.lists(OPS, min_size=4, max_size=4), seed=st.integers(0, 2**16))
def test_concurrent_mixed_operations_keep_counters_exact(db_env, db_admin, db_user, scripts, seed):
    u = db_user()
    with psycopg.connect(db_env.app, autocommit=True) as conn:
        for i in range(6):
            create(conn, u, notification_type=random.Random(seed + i).choice(["comment", "mention"]))

    def worker(i):
        rnd = random.Random(seed * 31 + i)
        with psycopg.connect(db_env.app, autocommit=True) as conn:
            for op in scripts[i]:
                listed = call(conn, "sp_get_user_notifications", user_id=u, status="all", limit=101)
                ids = [r["notification_id"] for r in listed]
                nid = rnd.choice(ids) if ids else uuid.uuid4()
                try:
                    if op == "create":
                        create(conn, u, notification_type=rnd.choice(["comment", "mention"]))
                    elif op in ("read", "unread"):
                        call(conn, "sp_mark_notification_as_read", user_id=u, notification_id=nid,
                             read=op == "read")
                    elif op in ("archive", "delete"):
                        call(conn, "sp_delete_notification", user_id=u, notification_id=nid,
                             permanent=op == "delete")
                    elif op == "bulk":
                        call(conn, "sp_mark_notifications_as_read_bulk", user_id=u, all=True)
                    else:
                        call(conn, "sp_mark_notifications_as_read_bulk", user_id=u, notification_type="comment",
                             notification_ids=ids[:3] or None)
                except psycopg.Error as exc:
                    assert exc.diag.sqlstate == "NA404", exc  # deleted by another thread meanwhile
    run_threads(4, worker)
    stored, _, actual = recount(db_admin, u)
    assert stored == actual
    assert unread(db_admin, u)["unread_count"] == actual


def test_keyset_walk_sees_every_row_once_while_rows_arrive(db_env, db_app, db_admin, db_user):
    u = db_user()
    db_admin.execute(
        "INSERT INTO activity.notifications (user_id, notification_type, title, created_at)"
        " SELECT %s, 'comment', 't' || g, now() - g * interval '1 millisecond'"
        " FROM generate_series(1, 300) g", (u,))
    before = {r[0] for r in db_admin.execute("SELECT notification_id FROM activity.notifications"
                                             " WHERE user_id = %s", (u,)).fetchall()}
    stop = threading.Event()

    def writer():
        with psycopg.connect(db_env.app, autocommit=True) as conn:
            while not stop.is_set():
                create(conn, u)
    thread = threading.Thread(target=writer)
    thread.start()
    try:
        seen, cursor = [], {}
        while True:
            page = call(db_app, "sp_get_user_notifications", user_id=u, limit=7, **cursor)
            seen += [r["notification_id"] for r in page]
            if len(page) < 7:
                break
            cursor = {"cursor_created_at": page[-1]["created_at"], "cursor_id": page[-1]["notification_id"]}
    finally:
        stop.set()
        thread.join()
    assert len(seen) == len(set(seen))
    assert before <= set(seen)
