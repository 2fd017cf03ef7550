"""The grouped inbox (issue 14) at the database level: every group's numbers against a GROUP BY
after every step of random operations with the clock moved forward; a race; the page order."""
from __future__ import annotations

import datetime as dt
import threading
import uuid

import psycopg
from db_helpers import call, create_one, groups_answer, groups_truth, groups_walk, run_step, travel
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st


def ahead(seconds=3600):
    return dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=seconds)


def exact(conn, admin, user_id):
    truth = groups_truth(admin, user_id)
    assert groups_answer(conn, user_id) == truth
    unread = {k: v for k, v in truth.items() if v[1] > 0}
    assert groups_answer(conn, user_id, unread=True) == unread


def test_groups_and_groups_of_one_in_latest_order(db_app, db_admin, db_user):
    u = db_user()
    actors = [uuid.uuid4() for _ in range(5)]
    likes = [create_one(db_app, u, notification_type="like", group_key="post-1-likes", actor_user_id=a)
             ["notification_id"] for a in actors]
    alone = create_one(db_app, u, notification_type="mention")["notification_id"]
    create_one(db_app, u, notification_type="like", group_key="post-1-likes", actor_user_id=actors[1])
    page = groups_walk(db_app, u)
    assert [g["group_key"] for g in page] == ["post-1-likes", None]
    assert page[1]["notification_id"] == alone and page[1]["notifications_count"] == 1
    group = page[0]
    assert group["notifications_count"] == group["unread_count"] == 6
    assert group["sample_actor_user_ids"] == [actors[1], actors[4], actors[3]]
    exact(db_app, db_admin, u)
    call(db_app, "sp_bulk_update", user_id=u, action="read", group_key="post-1-likes")
    assert [g["group_key"] for g in groups_walk(db_app, u, unread=True)] == [None]
    exact(db_app, db_admin, u)
    assert likes


def test_a_group_gaining_a_member_moves_to_the_top(db_app, db_admin, db_user):
    u = db_user()
    create_one(db_app, u, group_key="a")
    create_one(db_app, u, group_key="b")
    assert [g["group_key"] for g in groups_walk(db_app, u)] == ["b", "a"]
    create_one(db_app, u, group_key="a")
    assert [g["group_key"] for g in groups_walk(db_app, u)] == ["a", "b"]
    exact(db_app, db_admin, u)


STEPS = st.lists(st.one_of(
    st.tuples(st.just("create"), st.sampled_from(["g1", "g2", None]), st.sampled_from([None, 60, 900]),
              st.integers(0, 4)),
    st.tuples(st.sampled_from(["read", "unread", "archive", "unarchive", "delete", "wake", "seen"]),
              st.integers(0, 30)),
    st.tuples(st.just("snooze"), st.integers(0, 30), st.sampled_from([120, 600])),
    st.tuples(st.just("bulk"), st.sampled_from(["read", "unread", "archive", "unarchive", "delete"]),
              st.sampled_from([{"group_key": "g1"}, {"group_key": "g2"}])),
    st.tuples(st.just("clock"), st.sampled_from([30, 150, 700, 1000])),
    st.tuples(st.just("retract"), st.integers(0, 30)),
), min_size=5, max_size=30)
ACTORS = [uuid.UUID(int=i + 1) for i in range(4)] + [None]


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=STEPS)
def test_groups_match_a_group_by_after_every_step(db_app, db_admin, db_retention, db_user, steps):
    u = db_user()
    made: list[str] = []

    def fields(step, n):
        _, key, expires, actor = step
        return {"group_key": key, "actor_user_id": ACTORS[actor], "expires_at": ahead(expires) if expires else None}
    for step in steps:
        run_step(db_app, db_admin, u, made, step, fields)
        exact(db_app, db_admin, u)
    travel(db_admin, u, 2000)
    call(db_retention, "sp_purge_notifications", archived_older_than_days=0, batch_size=1000)
    exact(db_app, db_admin, u)


def test_creates_into_one_group_racing_bulk_reads_end_exact(db_env, db_admin, db_user):
    u = db_user()
    barrier = threading.Barrier(4)
    errors = []

    def work(i):
        try:
            with psycopg.connect(db_env.app, autocommit=True) as conn:
                barrier.wait()
                for k in range(15):
                    if i < 2:
                        create_one(conn, u, group_key="hot", actor_user_id=uuid.uuid4())
                    else:
                        call(conn, "sp_bulk_update", user_id=u, action="read" if k % 2 else "archive",
                             group_key="hot")
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)
    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    with psycopg.connect(db_env.app, autocommit=True) as conn:
        exact(conn, db_admin, u)


def test_a_group_whose_members_all_left_keeps_no_row_and_comes_back_with_one(db_app, db_admin, db_user):
    """Issue 26: an emptied group's counters row used to stay (zeros) forever."""
    u = db_user()
    first = create_one(db_app, u, group_key="post:1")
    second = create_one(db_app, u, group_key="post:1")

    def rows():
        return db_admin.execute("SELECT group_key, notifications_count FROM activity.notification_groups"
                                " WHERE user_id = %s", (u,)).fetchall()
    assert rows() == [("post:1", 2)]
    call(db_app, "sp_delete_notification", user_id=u, notification_id=first["notification_id"], permanent=False)
    call(db_app, "sp_delete_notification", user_id=u, notification_id=second["notification_id"], permanent=True)
    assert rows() == []
    assert groups_truth(db_admin, u) == {}
    call(db_app, "sp_bulk_update", user_id=u, action="unarchive", notification_ids=[first["notification_id"]])
    assert rows() == [("post:1", 1)]
    assert groups_answer(db_app, u) == groups_truth(db_admin, u)
