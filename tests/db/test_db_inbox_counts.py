"""Inbox v2 counts: unseen next to unread, folded with the clock, many users at once, the clock job."""
from __future__ import annotations

import datetime as dt
import threading
import uuid

import psycopg
from db_helpers import call, counts, create_one, sqlstate, travel, truth


def future(seconds=3600):
    return dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=seconds)


def without_version(row):
    return {k: v for k, v in row.items() if k != "version"}


def test_unseen_next_to_unread(db_app, db_admin, db_user):
    u = db_user()
    a, b, _ = (create_one(db_app, u, notification_type=t)["notification_id"] for t in ("comment", "mention", "like"))
    assert without_version(counts(db_app, u)) == {"unread_count": 3, "unseen_count": 3,
                                                  "by_type": {"comment": 1, "mention": 1, "like": 1}}
    call(db_app, "sp_inbox_mark_read", user_id=u, notification_id=a)
    assert without_version(counts(db_app, u)) == {"unread_count": 2, "unseen_count": 2,
                                                  "by_type": {"mention": 1, "like": 1}}
    # marking unread keeps it seen
    [row] = call(db_app, "sp_inbox_mark_read", user_id=u, notification_id=a, read=False)
    assert row["status"] == "unread" and row["seen_at"] is not None and row["read_at"] is None
    assert without_version(counts(db_app, u)) == {"unread_count": 3, "unseen_count": 2,
                                                  "by_type": {"comment": 1, "mention": 1, "like": 1}}
    [r] = call(db_app, "sp_bulk_update", user_id=u, action="seen", all=True)
    assert r == {"updated_count": 2, "unread_count": 3, "unseen_count": 0}
    call(db_app, "sp_delete_notification", user_id=u, notification_id=b)
    assert without_version(counts(db_app, u)) == truth(db_admin, u) == {
        "unread_count": 2, "unseen_count": 0, "by_type": {"comment": 1, "like": 1}}


def test_known_version_skips_by_type_and_every_change_moves_it(db_app, db_user):
    u = db_user()
    n = create_one(db_app, u)["notification_id"]
    first = counts(db_app, u)
    assert counts(db_app, u, first["version"]) == {**first, "by_type": None}
    call(db_app, "sp_bulk_update", user_id=u, action="seen", all=True)  # only unseen changes
    second = counts(db_app, u, first["version"])
    assert second["version"] > first["version"] and second["unseen_count"] == 0 and second["by_type"] == {"comment": 1}
    call(db_app, "sp_inbox_mark_read", user_id=u, notification_id=n)
    assert counts(db_app, u, second["version"])["version"] > second["version"]


def test_expiry_is_folded_once_with_a_new_version(db_app, db_admin, db_user):
    u = db_user()
    create_one(db_app, u, notification_type="mention")
    create_one(db_app, u, expires_at=future(60))
    before = counts(db_app, u)
    assert before["unread_count"] == 2
    travel(db_admin, u, 120)
    after = counts(db_app, u, before["version"])  # the body changed: no "unchanged" answer
    assert after["version"] > before["version"]
    assert without_version(after) == truth(db_admin, u) == {
        "unread_count": 1, "unseen_count": 1, "by_type": {"mention": 1}}
    # folded: the next reads write nothing and keep the version
    again = counts(db_app, u, after["version"])
    assert again["version"] == after["version"] and again["by_type"] is None
    folded_at, next_change = db_admin.execute(
        "SELECT folded_at, next_change_at FROM activity.notification_counters WHERE user_id = %s", (u,)).fetchone()
    assert next_change is None and folded_at is not None


def test_expiry_of_a_read_and_seen_row_changes_nothing(db_app, db_admin, db_user):
    u = db_user()
    n = create_one(db_app, u, expires_at=future(60))["notification_id"]
    call(db_app, "sp_inbox_mark_read", user_id=u, notification_id=n)
    before = counts(db_app, u)
    travel(db_admin, u, 120)
    assert without_version(counts(db_app, u)) == without_version(before) == truth(db_admin, u)


def test_counts_many(db_app, db_admin, db_user):
    a, b, nobody = db_user(), db_user(), db_user()
    for _ in range(3):
        create_one(db_app, a)
    create_one(db_app, b, expires_at=future(60))
    create_one(db_app, b)
    travel(db_admin, b, 120)  # b's expiry is due: folded by the call
    unknown = uuid.uuid4()
    rows = call(db_app, "sp_get_unread_counts_many", user_ids=[b, a, nobody, a, unknown])
    by_user = {r["user_id"]: r for r in rows}
    assert set(by_user) == {a, b, nobody, unknown} and len(rows) == 4
    assert [r["user_id"] for r in rows] == sorted(by_user)
    assert {k: by_user[a][k] for k in ("unread_count", "unseen_count")} == {"unread_count": 3, "unseen_count": 3}
    assert {k: by_user[b][k] for k in ("unread_count", "unseen_count")} == {"unread_count": 1, "unseen_count": 1}
    assert by_user[nobody] == {"user_id": nobody, "unread_count": 0, "unseen_count": 0, "version": 0}
    assert by_user[a]["version"] == counts(db_app, a)["version"]
    assert by_user[b]["version"] == counts(db_app, b)["version"]
    with sqlstate("NA422", "user_ids"):
        call(db_app, "sp_get_unread_counts_many", user_ids=None)


def test_advance_clocks_folds_due_users_once(db_app, db_admin, db_user):
    due, later, quiet = db_user(), db_user(), db_user()
    create_one(db_app, due, expires_at=future(60))
    create_one(db_app, due)
    create_one(db_app, later, expires_at=future(3600))
    create_one(db_app, quiet)
    for u in (due, later, quiet):
        counts(db_app, u)  # computed (a new user's first read counts its rows)
    old_version = counts(db_app, due)["version"]
    travel(db_admin, due, 120)
    rows = [r for r in call(db_app, "sp_advance_clocks", limit=10000) if r["user_id"] in (due, later, quiet)]
    assert rows == [{"user_id": due, "unread_count": 1, "unseen_count": 1, "version": rows[0]["version"]}]
    assert rows[0]["version"] > old_version
    assert counts(db_app, due)["version"] == rows[0]["version"]  # the read path has nothing left to fold
    assert [r for r in call(db_app, "sp_advance_clocks", limit=10000) if r["user_id"] == due] == []
    with sqlstate("NA422", "limit"):
        call(db_app, "sp_advance_clocks", limit=0)


def test_advance_clocks_skips_locked_users_and_replicas_share_the_work(db_env, db_app, db_admin, db_user):
    users = [db_user() for _ in range(6)]
    for u in users:
        create_one(db_app, u, expires_at=future(60))
        counts(db_app, u)
        travel(db_admin, u, 120)
    held = users[0]
    with psycopg.connect(db_env.admin) as holder:  # a writer holding one user's counters row
        holder.execute("SELECT 1 FROM activity.notification_counters WHERE user_id = %s FOR UPDATE", (held,))
        results: list[list[dict]] = []
        barrier = threading.Barrier(2)

        def replica():
            with psycopg.connect(db_env.app) as conn:  # one transaction: locks held until both ran
                barrier.wait()
                results.append(call(conn, "sp_advance_clocks", limit=10000))
                barrier.wait()
                conn.commit()
        threads = [threading.Thread(target=replica) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        holder.rollback()
    mine = [[r["user_id"] for r in rows if r["user_id"] in users] for rows in results]
    assert len(mine) == 2 and held not in mine[0] + mine[1]
    assert sorted(mine[0] + mine[1]) == sorted(users[1:])  # each folded by exactly one replica
    assert [r["user_id"] for r in call(db_app, "sp_advance_clocks", limit=10000) if r["user_id"] in users] == [held]


def test_a_write_by_older_code_is_recounted(db_app, db_admin, db_user):
    u = db_user()
    n = create_one(db_app, u)["notification_id"]
    create_one(db_app, u, notification_type="mention")
    counts(db_app, u)
    # what the previous release's mark-read did: the row and the legacy counters, nothing else
    db_admin.execute("UPDATE activity.notifications SET status = 'read', read_at = now()"
                     " WHERE user_id = %s AND notification_id = %s", (u, n))
    db_admin.execute("UPDATE activity.notification_counters SET unread_count = unread_count - 1,"
                     " version = version + 1 WHERE user_id = %s", (u,))
    assert db_admin.execute("SELECT inbox_unread FROM activity.notification_counters WHERE user_id = %s",
                            (u,)).fetchone()[0] is None
    assert without_version(counts(db_app, u)) == truth(db_admin, u) == {
        "unread_count": 1, "unseen_count": 1, "by_type": {"mention": 1}}


def test_previous_forms_answer_the_same_counts(db_app, db_admin, db_user):
    u = db_user()
    create_one(db_app, u)
    create_one(db_app, u, expires_at=future(60))
    travel(db_admin, u, 120)
    now = counts(db_app, u)
    [two] = call(db_app, "sp_get_unread_count", user_id=u, by_type=True)
    [four] = call(db_app, "sp_get_unread_count", user_id=u, by_type=True, known_version=now["version"],
                  known_count=now["unread_count"])
    assert two == {"unread_count": 1, "by_type": {"comment": 1}, "version": now["version"]}
    assert four == {"unread_count": 1, "by_type": None, "version": now["version"]}
