"""On a seeded table the list and unread-count calls are index range scans; a heavy user's count scans nothing."""
from __future__ import annotations

import json

import psycopg
import pytest
from psycopg import sql

from notifications_api.db.migrate import migrate

LIGHT_USERS, PER_LIGHT_USER, HEAVY_UNREAD = 2000, 100, 100_000
SEED = """
INSERT INTO activity.users (user_id)
SELECT md5('light' || g)::uuid FROM generate_series(1, {light}) g
UNION ALL SELECT md5('heavy')::uuid;

INSERT INTO activity.notifications (user_id, notification_type, title, status, read_at, archived_at, created_at,
                                    delivered_at, dedupe_key, target_type, target_id, group_key)
SELECT md5('light' || u)::uuid, (ARRAY['comment', 'mention', 'like'])[1 + g % 3], 't',
       s.status,
       CASE WHEN s.status <> 'unread' THEN now() END,
       CASE WHEN s.status = 'archived' THEN now() END,
       now() - (g * {light} + u) * interval '1 second',
       now() - (g * {light} + u) * interval '1 second',
       'like-' || g, 'post', 'post-' || (g % 50), 'g' || (g % 7)
  FROM generate_series(1, {light}) u
 CROSS JOIN generate_series(1, {per}) g
 CROSS JOIN LATERAL (SELECT CASE WHEN g % 10 = 0 THEN 'archived' WHEN g % 10 < 6 THEN 'read'
                                 ELSE 'unread' END AS status) s
 ORDER BY 1, 7 DESC;

INSERT INTO activity.notifications (user_id, notification_type, title, created_at, delivered_at, group_key)
SELECT md5('heavy')::uuid, (ARRAY['comment', 'mention'])[1 + g % 2], 't', now() - g * interval '1 second',
       now() - g * interval '1 second', 'heavy-group'
  FROM generate_series(1, {heavy}) g;

SET activity.inbox_v2 = 'on';  -- written as this release's functions would (0130's trigger)
INSERT INTO activity.notification_counters (user_id, unread_count, version, inbox_unread, inbox_unseen, folded_at)
SELECT user_id, count(*) FILTER (WHERE status = 'unread'), 1, count(*) FILTER (WHERE status = 'unread'),
       count(*) FILTER (WHERE status = 'unread'), now()
  FROM activity.notifications GROUP BY user_id;
INSERT INTO activity.notification_type_counters (user_id, notification_type, unread_count, inbox_unread)
SELECT user_id, notification_type, count(*), count(*) FROM activity.notifications WHERE status = 'unread'
 GROUP BY 1, 2;
INSERT INTO activity.notification_groups (user_id, group_key, notifications_count, unread_count,
                                         latest_delivered_at, latest_id, oldest_delivered_at)
SELECT DISTINCT ON (user_id, group_key) user_id, group_key, count(*) OVER w,
       count(*) FILTER (WHERE status = 'unread') OVER w, delivered_at, notification_id, min(delivered_at) OVER w
  FROM activity.notifications WHERE status <> 'archived' AND group_key IS NOT NULL
WINDOW w AS (PARTITION BY user_id, group_key)
 ORDER BY user_id, group_key, delivered_at DESC, notification_id DESC;
"""
HEAVY = "md5('heavy')::uuid"
LIGHT = "md5('light7')::uuid"


@pytest.fixture(scope="module")
def seeded(db_env):
    conninfo = db_env.fresh_database()
    migrate(conninfo, echo=lambda *_: None)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        # a throwaway database: unlogged tables load faster and leave no dirty buffers for
        # the checkpoint of DROP DATABASE; plans are the same
        conn.execute("ALTER TABLE activity.notifications SET UNLOGGED")
        for statement in SEED.format(light=LIGHT_USERS, per=PER_LIGHT_USER, heavy=HEAVY_UNREAD).split(";"):
            if statement.strip():
                conn.execute(statement)
        conn.execute("ANALYZE activity.notifications, activity.notification_counters,"
                     " activity.notification_type_counters, activity.users")
    return conninfo


@pytest.fixture
def explained(seeded, db_env):
    """A superuser session with auto_explain, acting as the app role; yields (conn, plans list)."""
    plans: list[dict] = []
    with psycopg.connect(seeded, autocommit=True) as conn:
        conn.add_notice_handler(lambda d: plans.append(json.loads(d.message_primary[d.message_primary.index("{"):]))
                                if "plan:" in (d.message_primary or "") else None)
        for stmt in ["LOAD 'auto_explain'", "SET auto_explain.log_min_duration = 0",
                     "SET auto_explain.log_nested_statements = on", "SET auto_explain.log_level = notice",
                     "SET auto_explain.log_format = json", "SET auto_explain.log_analyze = on"]:
            conn.execute(stmt)
        conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(db_env.app_role)))
        yield conn, plans


def nodes(plan):
    yield plan
    for child in plan.get("Plans", []):
        yield from nodes(child)


def scans_of_notifications(plans):
    return [n for p in plans for n in nodes(p["Plan"]) if n.get("Relation Name") == "notifications"]


@pytest.mark.parametrize("status", [None, "unread", "read", "archived", "all"])
def test_list_is_an_index_range_scan_at_any_depth(explained, status):
    conn, plans = explained
    for user in (HEAVY, LIGHT):
        uid = conn.execute(f"SELECT {user}").fetchone()[0]
        middle = conn.execute("SELECT * FROM activity.sp_get_user_notifications(%s, %s, NULL, 101)",
                              (uid, status)).fetchall()
        cursor = (middle[-1][13], middle[-1][0]) if middle else (None, None)
        for _ in range(7):  # past the plan cache's switch to a generic plan
            plans.clear()
            conn.execute("SELECT * FROM activity.sp_get_user_notifications(%s, %s, NULL, 21, %s, %s)",
                         (uid, status, *cursor)).fetchall()
            scans = scans_of_notifications(plans)
            assert scans, plans
            for scan in scans:
                assert scan["Node Type"] in ("Index Scan", "Index Only Scan"), scan
                assert "created_at" in scan["Index Cond"], scan  # the cursor bounds the range
                assert scan["Actual Rows"] <= 21, scan


def test_unread_count_reads_no_notification_rows(explained):
    conn, plans = explained
    for user, expected in ((HEAVY, HEAVY_UNREAD), (LIGHT, None)):
        uid = conn.execute(f"SELECT {user}").fetchone()[0]
        for by_type in (True, False):
            for _ in range(7):
                plans.clear()
                count, by, _version = conn.execute("SELECT * FROM activity.sp_get_unread_count(%s, %s)",
                                                   (uid, by_type)).fetchone()
                assert plans and scans_of_notifications(plans) == []
                assert all(n["Node Type"] != "Seq Scan" for p in plans for n in nodes(p["Plan"])), plans
            if expected:
                assert count == expected and (by is None or sum(by.values()) == expected)


# -- inbox v2 ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("status", [None, "unread", "read", "archived", "snoozed", "all"])
def test_v2_list_is_an_index_range_scan_in_delivery_order_at_any_depth(explained, status):
    conn, plans = explained
    for user in (HEAVY, LIGHT):
        uid = conn.execute(f"SELECT {user}").fetchone()[0]
        middle = conn.execute("SELECT delivered_at, notification_id FROM activity.sp_inbox_list(%s, %s, NULL, 101)",
                              (uid, status)).fetchall()
        cursor = middle[-1] if middle else (None, None)
        for _ in range(7):  # past the plan cache's switch to a generic plan
            plans.clear()
            conn.execute("SELECT * FROM activity.sp_inbox_list(%s, %s, NULL, 21, %s, %s)",
                         (uid, status, *cursor)).fetchall()
            scans = scans_of_notifications(plans)
            assert scans, plans
            for scan in scans:
                assert scan["Node Type"] in ("Index Scan", "Index Only Scan"), scan
                assert "delivered_at" in scan["Index Cond"], scan  # the cursor bounds the range
                assert "delivered" in scan["Index Name"], scan
                assert scan["Actual Rows"] <= 21, scan


# Each status's page reads its own partial keyset index, also once the plan cache has switched to
# a generic plan (the list functions share one page query whose status predicate folds at planning).
V1_INDEXES = {None: "notifications_inbox_keyset", "unread": "notifications_unread_keyset",
              "read": "notifications_read_keyset", "archived": "notifications_archived_keyset",
              "all": "notifications_all_keyset"}
V2_INDEXES = {None: "notifications_inbox_delivered", "unread": "notifications_unread_delivered",
              "read": "notifications_read_delivered", "archived": "notifications_archived_delivered",
              "snoozed": "notifications_inbox_delivered", "all": "notifications_all_delivered"}


@pytest.mark.parametrize(("function", "indexes"), [("sp_get_user_notifications", V1_INDEXES),
                                                   ("sp_inbox_list", V2_INDEXES)])
def test_list_pages_read_their_status_index(explained, function, indexes):
    conn, plans = explained
    uid = conn.execute(f"SELECT {LIGHT}").fetchone()[0]
    for status, index in indexes.items():
        for _ in range(7):  # past the plan cache's switch to a generic plan
            plans.clear()
            conn.execute(f"SELECT * FROM activity.{function}(%s, %s, NULL, 21)", (uid, status)).fetchall()
            used = {s.get("Index Name") for s in scans_of_notifications(plans)}
            assert used == {index}, (status, used)


def test_v2_unread_count_reads_no_notification_rows(explained):
    conn, plans = explained
    for user, expected in ((HEAVY, HEAVY_UNREAD), (LIGHT, None)):
        uid = conn.execute(f"SELECT {user}").fetchone()[0]
        version = None
        for known in (False, True):
            for _ in range(7):
                plans.clear()
                unread, unseen, by_type, version = conn.execute(
                    "SELECT * FROM activity.sp_get_unread_count(%s, true, %s)",
                    (uid, version if known else None)).fetchone()
                assert plans and scans_of_notifications(plans) == []
                relations = {n.get("Relation Name") for p in plans for n in nodes(p["Plan"])} - {None}
                if known:  # a 304: the user and the counters row, not even the per-type rows
                    assert by_type is None and "notification_type_counters" not in relations, relations
                assert all(n["Node Type"] != "Seq Scan" for p in plans for n in nodes(p["Plan"])), plans
            if expected:
                assert unread == unseen == expected


@pytest.mark.parametrize("selector", [{"p_notification_type": "nothing"}, {"p_group_key": "g3"},
                                      {"p_status": "snoozed"},
                                      {"p_notification_ids": ["00000000-0000-0000-0000-000000000001"]}])
def test_v2_bulk_by_selector_uses_indexes_only(explained, selector):
    conn, plans = explained
    uid = conn.execute(f"SELECT {LIGHT}").fetchone()[0]
    args = ", ".join(f"{k} => %s" for k in selector)
    with conn.transaction():  # rolled back: the seeded rows stay as they are for the other tests
        for _ in range(7):
            plans.clear()
            conn.execute(f"SELECT * FROM activity.sp_bulk_update(%s, 'seen', {args})", (uid, *selector.values()))
            scans = scans_of_notifications(plans)
            assert scans, plans
            reads = [s for s in scans if s["Node Type"].endswith("Scan")]  # (not the ModifyTable node)
            # (a Tid Scan is the update finding the locked row again by its tuple id)
            assert reads and all(s["Node Type"] in ("Index Scan", "Index Only Scan", "Bitmap Heap Scan",
                                                    "Tid Scan") for s in reads), scans
        raise_rollback(conn)


def raise_rollback(conn):
    """Leave the enclosing conn.transaction() block by rolling it back."""
    raise psycopg.Rollback()


@pytest.mark.parametrize(("selector", "matching"), [
    ({"p_dedupe_key": "like-7"}, LIGHT_USERS),
    ({"p_target_type": "post", "p_target_id": "post-7"}, LIGHT_USERS * PER_LIGHT_USER // 50)])
def test_v2_retraction_reads_only_the_matching_rows(explained, selector, matching):
    conn, plans = explained
    args = ", ".join(f"{k} => %s" for k in selector)
    with conn.transaction():
        plans.clear()
        retracted, _ = conn.execute(f"SELECT retracted_count, has_more FROM activity.sp_retract_notifications({args}, p_limit => 10000)",
                                    tuple(selector.values())).fetchone()
        assert retracted == matching
        every = [n for p in plans for n in nodes(p["Plan"])]
        used = {n["Index Name"] for n in every if n.get("Index Name")}
        # (the counters', groups' and outbox's own keys aside; the group probes read one member each;
        # a planner may delete the matched rows through the primary key, one probe per matched row:
        # PostgreSQL 18 does, 15 does not)
        assert used and all(name.startswith("notifications_retract") or name == "notifications_group_members"
                            or name == "notifications_pkey" or not name.startswith("notifications")
                            for name in used), used
        assert all(n["Node Type"] != "Seq Scan" for n in every if n.get("Relation Name") == "notifications")
        assert all(n["Actual Rows"] * n.get("Actual Loops", 1) <= retracted + 1 for n in every
                   if n.get("Index Name", "").startswith("notifications_retract")
                   or n.get("Index Name") == "notifications_pkey"), used
        raise_rollback(conn)


# -- the grouped inbox (issue 14) -----------------------------------------------------------------

@pytest.mark.parametrize("unread", [False, True])
def test_groups_page_never_scans_a_groups_members(explained, unread):
    conn, plans = explained
    for user in (HEAVY, LIGHT):  # the heavy user's one group holds 100 000 members
        uid = conn.execute(f"SELECT {user}").fetchone()[0]
        first = conn.execute("SELECT delivered_at, notification_id FROM activity.sp_inbox_groups(%s, %s, 3)",
                             (uid, unread)).fetchall()
        cursor = first[-1] if first else (None, None)
        for _ in range(7):
            plans.clear()
            rows = conn.execute("SELECT * FROM activity.sp_inbox_groups(%s, %s, 21, %s, %s)",
                                (uid, unread, *cursor)).fetchall()
            assert len(rows) <= 21
            every = [n for p in plans for n in nodes(p["Plan"])]
            reads = [n for n in every if n.get("Relation Name") in ("notifications", "notification_groups")
                     and n["Node Type"].endswith("Scan")]
            assert reads, plans
            for n in reads:
                assert n["Node Type"] in ("Index Scan", "Index Only Scan", "Bitmap Heap Scan"), n
                assert n["Actual Rows"] <= 21, (n["Relation Name"], n.get("Index Name"), n["Actual Rows"])


@pytest.mark.parametrize(("unread", "indexes"), [
    (False, {"notification_groups_latest", "notifications_ungrouped_delivered"}),
    (True, {"notification_groups_latest_unread", "notifications_ungrouped_unread_delivered"})])
def test_groups_page_reads_the_partial_indexes_of_its_filter(explained, unread, indexes):
    conn, plans = explained
    uid = conn.execute(f"SELECT {LIGHT}").fetchone()[0]
    for _ in range(7):  # past the plan cache's switch to a generic plan
        plans.clear()
        conn.execute("SELECT * FROM activity.sp_inbox_groups(%s, %s, 21)", (uid, unread)).fetchall()
        used = {n.get("Index Name") for p in plans for n in nodes(p["Plan"])}
        assert indexes <= used, used
        assert not ({"notification_groups_latest", "notification_groups_latest_unread", "notifications_ungrouped_delivered",
                     "notifications_ungrouped_unread_delivered"} - indexes) & used, used
