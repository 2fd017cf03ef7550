"""Inbox v2 functions at the database level: snooze, bulk, retraction; their races; a property test
of the counts against COUNT(*) ground truth with the clock moved forward in the database."""
from __future__ import annotations

import datetime as dt
import random
import uuid

import psycopg
import pytest
from db_helpers import call, counts, create, create_one, run_step, run_threads, sqlstate, travel, truth
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st


def ahead(seconds=3600):
    return dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=seconds)


def without_version(row):
    return {k: v for k, v in row.items() if k != "version"}


def exact(conn, admin, user_id):
    assert without_version(counts(conn, user_id)) == truth(admin, user_id)


# -- snooze -----------------------------------------------------------------------------------------

def test_snooze_rules(db_app, db_admin, db_user):
    u = db_user()
    n = create_one(db_app, u, expires_at=ahead(7200))["notification_id"]
    with sqlstate("NA422", "until"):
        call(db_app, "sp_inbox_snooze", user_id=u, notification_id=n, until=ahead(30))
    with sqlstate("NA422", "until"):
        call(db_app, "sp_inbox_snooze", user_id=u, notification_id=n, until=ahead(91 * 86400))
    with sqlstate("NA422", "until"):  # after its expiry
        call(db_app, "sp_inbox_snooze", user_id=u, notification_id=n, until=ahead(7300))
    with sqlstate("NA404"):
        call(db_app, "sp_inbox_snooze", user_id=u, notification_id=uuid.uuid4(), until=ahead(120))
    [row] = call(db_app, "sp_inbox_snooze", user_id=u, notification_id=n, until=ahead(600))
    assert row["status"] == "snoozed" and row["delivered_at"] == row["snoozed_until"]
    exact(db_app, db_admin, u)
    assert counts(db_app, u)["unread_count"] == 0
    with sqlstate("NAS09", "notification_snoozed"):
        call(db_app, "sp_inbox_mark_read", user_id=u, notification_id=n)
    [woken] = call(db_app, "sp_inbox_snooze", user_id=u, notification_id=n, until=None)
    assert woken["status"] == "unread" and woken["snoozed_until"] <= dt.datetime.now(dt.timezone.utc)
    exact(db_app, db_admin, u)
    call(db_app, "sp_delete_notification", user_id=u, notification_id=n)
    with sqlstate("NAA09", "notification_archived"):
        call(db_app, "sp_inbox_snooze", user_id=u, notification_id=n, until=ahead(600))


def test_wake_by_clock_needs_no_write(db_app, db_admin, db_user):
    u = db_user()
    n = create_one(db_app, u)["notification_id"]
    call(db_app, "sp_inbox_snooze", user_id=u, notification_id=n, until=ahead(600))
    version = counts(db_app, u)["version"]
    travel(db_admin, u, 700)
    [row] = call(db_app, "sp_inbox_get", user_id=u, notification_id=n)
    assert row["status"] == "unread"
    assert [r["notification_id"] for r in call(db_app, "sp_inbox_list", user_id=u)] == [n]
    now = counts(db_app, u)
    assert now["version"] > version and without_version(now) == truth(db_admin, u) == {
        "unread_count": 1, "unseen_count": 1, "by_type": {"comment": 1}}


# -- bulk and retraction ------------------------------------------------------------------------

def test_bulk_validation(db_app, db_user):
    u = db_user()
    for kwargs, field in (({"action": "nope", "all": True}, "action"), ({"action": "read"}, "all"),
                          ({"action": "read", "status": "all"}, "status"),
                          ({"action": "read", "notification_ids": []}, "notification_ids")):
        with sqlstate("NA422", field):
            call(db_app, "sp_bulk_update", user_id=u, **kwargs)
    with sqlstate("NA401"):
        call(db_app, "sp_bulk_update", user_id=uuid.uuid4(), action="read", all=True)


@pytest.mark.serial  # its 5 s statement_timeout is a bound
def test_bulk_archive_of_100_000_in_one_call(db_env, db_app, db_admin, db_user):
    u = db_user()
    create_one(db_app, u)
    db_admin.execute(
        "INSERT INTO activity.notifications (user_id, notification_type, title, created_at, delivered_at)"
        " SELECT %s, 'comment', 't', now() - g * interval '1 second', now() - g * interval '1 second'"
        " FROM generate_series(1, 100000) g", (u,))
    # rows inserted by hand: touching the counters row has them recounted (0130's trigger)
    db_admin.execute("UPDATE activity.notification_counters SET version = version WHERE user_id = %s", (u,))
    assert counts(db_app, u)["unread_count"] == 100001
    with psycopg.connect(db_env.app, autocommit=True, options="-c statement_timeout=5000") as conn:
        [r] = call(conn, "sp_bulk_update", user_id=u, action="archive", all=True)
    assert r == {"updated_count": 100001, "unread_count": 0, "unseen_count": 0}
    exact(db_app, db_admin, u)


def test_retract_caps_and_has_more(db_app, db_admin, db_user):
    users = [db_user() for _ in range(5)]
    create(db_app, users, dedupe_key="like-1", target_type="post", target_id="p9", queue_email=True)
    [r] = call(db_app, "sp_retract_notifications", dedupe_key="like-1", limit=2)
    assert (r["retracted_count"], r["has_more"]) == (2, True)
    [r] = call(db_app, "sp_retract_notifications", target_type="post", target_id="p9", limit=2)
    assert (r["retracted_count"], r["has_more"]) == (2, True)
    [r] = call(db_app, "sp_retract_notifications", dedupe_key="like-1", limit=2)
    assert (r["retracted_count"], r["has_more"]) == (1, False)
    for u in users:
        exact(db_app, db_admin, u)
    assert db_admin.execute("SELECT count(*) FROM activity.email_outbox WHERE user_id = ANY(%s)"
                            " AND status = 'pending'", (users,)).fetchone()[0] == 0
    with sqlstate("NA422", "dedupe_key"):
        call(db_app, "sp_retract_notifications")
    with sqlstate("NA422", "target_id"):
        call(db_app, "sp_retract_notifications", target_type="post")
    with sqlstate("NA422", "limit"):
        call(db_app, "sp_retract_notifications", dedupe_key="x", limit=10001)


# -- races --------------------------------------------------------------------------------------------

def test_bulk_archive_racing_creates_and_marks(db_env, db_admin, db_user):
    u = db_user()
    with psycopg.connect(db_env.app, autocommit=True) as conn:
        ids = [create_one(conn, u, notification_type=random.choice(["a", "b"]))["notification_id"]
               for _ in range(30)]

    def work(i):
        with psycopg.connect(db_env.app, autocommit=True) as conn:
            for k in range(8):
                if i == 0:
                    call(conn, "sp_bulk_update", user_id=u, action="archive", all=True)
                elif i == 1:
                    create_one(conn, u, notification_type="a", expires_at=ahead(3600))
                elif i == 2:
                    call(conn, "sp_inbox_mark_read", user_id=u, notification_id=ids[k], read=k % 2 == 0)
                else:
                    call(conn, "sp_bulk_update", user_id=u, action="unarchive", notification_ids=ids[k::3])
    run_threads(4, work)
    with psycopg.connect(db_env.app, autocommit=True) as conn:
        exact(conn, db_admin, u)


def test_snooze_racing_archive(db_env, db_admin, db_user):
    u = db_user()
    with psycopg.connect(db_env.app, autocommit=True) as conn:
        ids = [create_one(conn, u)["notification_id"] for _ in range(10)]
    outcomes = []

    def work(i):
        with psycopg.connect(db_env.app, autocommit=True) as conn:
            for n in ids:
                try:
                    if i % 2:
                        call(conn, "sp_inbox_snooze", user_id=u, notification_id=n, until=ahead(600))
                    else:
                        call(conn, "sp_delete_notification", user_id=u, notification_id=n)
                except psycopg.Error as exc:
                    outcomes.append(exc.diag.sqlstate)
    run_threads(4, work)
    assert set(outcomes) <= {"NAA09"}  # a snooze that lost the race sees the archive: 409
    rows = db_admin.execute("SELECT status, snoozed_until > now() FROM activity.notifications"
                            " WHERE user_id = %s", (u,)).fetchall()
    assert all(status == "archived" or snoozed for status, snoozed in rows)
    assert all(not snoozed for status, snoozed in rows if status == "archived")  # archiving ends a snooze
    with psycopg.connect(db_env.app, autocommit=True) as conn:
        exact(conn, db_admin, u)


def test_retraction_racing_create_with_the_same_dedupe_key(db_env, db_admin, db_user):
    users = [db_user() for _ in range(3)]
    failures = []

    def work(i):
        with psycopg.connect(db_env.app, autocommit=True) as conn:
            for _ in range(10):
                try:
                    if i % 2:
                        create(conn, users, dedupe_key="like-race")
                    else:
                        call(conn, "sp_retract_notifications", dedupe_key="like-race")
                except psycopg.errors.SerializationFailure:
                    failures.append(i)  # documented: "concurrent create with the same dedupe_key; retry"
    run_threads(4, work)
    for u in users:
        assert db_admin.execute("SELECT count(*) FROM activity.notifications WHERE user_id = %s"
                                " AND dedupe_key = 'like-race'", (u,)).fetchone()[0] <= 1
        with psycopg.connect(db_env.app, autocommit=True) as conn:
            exact(conn, db_admin, u)


# -- property: every sequence keeps the counts exact ------------------------------------------------

STEPS = st.lists(st.one_of(
    st.tuples(st.just("create"), st.sampled_from(["comment", "like", "mention"]), st.sampled_from([None, 60, 600])),
    st.tuples(st.sampled_from(["read", "unread", "seen", "archive", "unarchive", "delete", "wake"]),
              st.integers(0, 20)),
    st.tuples(st.just("snooze"), st.integers(0, 20), st.sampled_from([120, 900])),
    st.tuples(st.just("bulk"), st.sampled_from(["seen", "read", "unread", "archive", "unarchive", "delete"]),
              st.sampled_from([{"all": True}, {"notification_type": "like"}, {"status": "snoozed"},
                               {"status": "read"}, {"group_key": "g"}])),
    st.tuples(st.just("clock"), st.sampled_from([30, 90, 400, 1000])),
    st.tuples(st.just("retract"), st.integers(0, 20)),
), min_size=5, max_size=30)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=STEPS)
def test_counts_match_ground_truth_after_every_step(db_app, db_admin, db_user, steps):
    u = db_user()
    made: list[str] = []

    def fields(step, n):
        _, notification_type, expires = step
        return {"notification_type": notification_type, "group_key": "g" if n % 2 else None,
                "expires_at": ahead(expires) if expires else None}
    for step in steps:
        run_step(db_app, db_admin, u, made, step, fields)
        exact(db_app, db_admin, u)
    # and the clock job agrees with the read path
    travel(db_admin, u, 2000)
    advanced = {r["user_id"]: r for r in call(db_app, "sp_advance_clocks", limit=10000)}
    if u in advanced:
        assert {k: advanced[u][k] for k in ("unread_count", "unseen_count")} == {
            k: truth(db_admin, u)[k] for k in ("unread_count", "unseen_count")}
    exact(db_app, db_admin, u)


def test_retraction_and_purge_recount_users_written_by_others_first(db_app, db_retention, db_admin, db_user):
    u = db_user()
    create_one(db_app, u)
    # rows the functions never counted (inserted by hand), then the counters row touched by hand
    db_admin.execute("INSERT INTO activity.notifications (user_id, notification_type, title, target_type,"
                     " target_id, expires_at) SELECT %s, 'like', 't', 'post', 'p-hand',"
                     " CASE WHEN g %% 2 = 0 THEN now() + interval '1 hour' END FROM generate_series(1, 6) g", (u,))
    db_admin.execute("UPDATE activity.notification_counters SET version = version + 1 WHERE user_id = %s", (u,))
    [r] = call(db_app, "sp_retract_notifications", target_type="post", target_id="p-hand", limit=4)
    assert (r["retracted_count"], r["has_more"]) == (4, True)
    exact(db_app, db_admin, u)
    travel(db_admin, u, 7200)  # the rest expire by the clock
    db_admin.execute("UPDATE activity.notification_counters SET version = version + 1 WHERE user_id = %s", (u,))
    call(db_retention, "sp_purge_notifications", archived_older_than_days=90, batch_size=100)
    exact(db_app, db_admin, u)
    assert db_admin.execute("SELECT unread_count FROM activity.notification_counters WHERE user_id = %s",
                            (u,)).fetchone()[0] == db_admin.execute(
        "SELECT count(*) FROM activity.notifications WHERE user_id = %s AND status = 'unread'", (u,)).fetchone()[0]
