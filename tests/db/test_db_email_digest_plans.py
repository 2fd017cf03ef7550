"""Cost (issue 25): claiming due users and composing a digest read the pending rows only, never the
outbox's history: every statement of the claim and of the outcome, on a table with 200 000 finished
rows, reads a handful of rows through an index (auto_explain of the nested statements)."""
from __future__ import annotations

import json

import psycopg

from notifications_api.db.migrate import migrate

HISTORY_USERS, HISTORY_PER_USER = 400, 500

SEED = """
INSERT INTO activity.users (user_id, email)
SELECT md5('u' || g)::uuid, g || '@example.test' FROM generate_series(1, %(users)s) g;
INSERT INTO activity.email_outbox (user_id, notification_id, recipient, subject, body, status, attempts,
                                   created_at, available_at, sent_at, digest_id, notification_ids)
SELECT md5('u' || u)::uuid, gen_random_uuid(), 'x', 's', 'b', CASE WHEN g %% 3 = 0 THEN 'cancelled' ELSE 'sent' END,
       1, now() - g * interval '1 minute', now() - g * interval '1 minute', now() - g * interval '1 minute',
       NULL, NULL
  FROM generate_series(1, %(users)s) u CROSS JOIN generate_series(1, %(per)s) g;
"""


def plans_of(conn, query: str, params=()) -> list[dict]:
    found = []
    conn.add_notice_handler(lambda diag: found.append(diag.message_primary))
    conn.execute("LOAD 'auto_explain'")
    conn.execute("SET auto_explain.log_min_duration = 0; SET auto_explain.log_nested_statements = on;"
                 " SET auto_explain.log_analyze = on; SET auto_explain.log_format = json;"
                 " SET client_min_messages = log")
    conn.execute(query, params).fetchall()
    conn.execute("SET client_min_messages = warning")
    return [json.loads(m.split("plan:", 1)[1])["Plan"] for m in found if "plan:" in m]


def outbox_scans(plan: dict):
    if plan.get("Relation Name") == "email_outbox":
        yield plan
    for child in plan.get("Plans", []):
        yield from outbox_scans(child)


def test_claim_and_complete_never_read_the_history(db_env):
    db = db_env.fresh_database()
    migrate(db, echo=lambda *_: None)
    with psycopg.connect(db, autocommit=True) as conn:
        for statement in SEED.split(";")[:-1]:
            conn.execute(statement, {"users": HISTORY_USERS, "per": HISTORY_PER_USER})
        for i in range(1, 4):  # three users with history get 5 new pending e-mails each, due
            for _ in range(5):
                conn.execute("SELECT count(*) FROM activity.sp_inbox_create(ARRAY[md5('u' || %s)::uuid], 'like',"
                             " 't', p_queue_email => true)", (i,))
        conn.execute("UPDATE activity.email_outbox SET available_at = now() - interval '1 hour'"
                     " WHERE status = 'pending'")
        conn.execute("VACUUM ANALYZE activity.email_outbox, activity.notifications")
        plans = plans_of(conn, "SELECT * FROM activity.sp_claim_emails('w', 10, 60, 8, 600)")
        (user, delivery) = conn.execute("SELECT user_id, delivery_id FROM activity.email_outbox"
                                        " WHERE status = 'sending' AND lease_owner = 'w' LIMIT 1").fetchone()
        plans += plans_of(conn, "SELECT activity.sp_complete_email_delivery(%s, %s, 'w')", (user, delivery))
    scans = [s for p in plans for s in outbox_scans(p)]
    assert scans, "auto_explain saw no statement on email_outbox"
    for scan in scans:
        assert scan["Node Type"] != "Seq Scan", scan
        read = scan.get("Actual Rows", 0) + scan.get("Rows Removed by Filter", 0)
        assert read <= 100, (scan["Node Type"], scan.get("Index Name"), read)
    used = {s.get("Index Name") for s in scans}
    assert used & {"email_outbox_new_due", "email_outbox_user_open"}, used
