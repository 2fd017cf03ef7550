"""Property (issue 25): for random interleavings of creates, seen/read/archive/retract, time passing and
worker runs, every notification that was due and stayed unseen is in exactly one e-mail, and nothing
else is: no e-mail carries a notification the user already had or lost, none carries one twice."""
from __future__ import annotations

import uuid

import psycopg
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

DELAY = 600
ACTIONS = ("seen", "read", "archive", "retract")

operations = st.lists(st.one_of(
    st.just(("create", 0)),
    st.tuples(st.sampled_from(ACTIONS), st.integers(0, 30)),
    st.just(("age", 0)),
    st.just(("run", 0)),
), min_size=1, max_size=14)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=operations)
def test_every_unseen_due_notification_is_in_exactly_one_email(ops, make_user, make_worker, email_api, database):
    user = make_user()
    worker = make_worker(digest_delay_seconds=DELAY)
    wanted: dict[str, bool] = {}  # the model: notification -> still unread, unseen, in the inbox
    keys: dict[str, str] = {}
    in_emails: dict[str, int] = {}
    handled = 0

    def run() -> None:
        nonlocal handled
        worker.run(once=True)
        mine = [r.body for r in email_api.received if r.body.get("to") == f"{user}@example.test"]
        new = mine[handled:]
        handled = len(mine)
        assert len(new) <= 1, "more than one e-mail for one user in one pass"
        for mail in new:
            assert mail["notification_ids"], mail
            for nid in mail["notification_ids"]:
                assert wanted.get(nid), f"{nid} was seen or gone when it was e-mailed"
                in_emails[nid] = in_emails.get(nid, 0) + 1

    with psycopg.connect(database.admin, autocommit=True) as conn:
        def age() -> None:
            conn.execute("UPDATE activity.email_outbox SET available_at = available_at - make_interval(secs => %s)"
                         " WHERE user_id = %s AND status = 'pending'", (DELAY + 1, user))

        for op, arg in ops:
            if op == "create":
                key = f"k-{uuid.uuid4()}"
                (nid,) = conn.execute(
                    "SELECT notification_id::text FROM activity.sp_inbox_create(%s::uuid[], 'like', 'Like',"
                    " p_dedupe_key => %s, p_queue_email => true)", ([user], key)).fetchone()
                wanted[nid], keys[nid] = True, key
            elif op in ACTIONS and wanted:
                nid = sorted(wanted)[arg % len(wanted)]
                if op == "retract":
                    conn.execute("SELECT * FROM activity.sp_retract_notifications(p_dedupe_key => %s)", (keys[nid],))
                else:
                    conn.execute("SELECT * FROM activity.sp_bulk_update(%s, %s, ARRAY[%s]::uuid[])", (user, op, nid))
                wanted[nid] = False
            elif op == "age":
                age()
            elif op == "run":
                run()
        age()  # in the end everything is due
        run()
        run()  # and nothing goes twice

    for nid, still_wanted in wanted.items():
        assert in_emails.get(nid, 0) <= 1, nid
        if still_wanted:
            assert in_emails.get(nid, 0) == 1, f"{nid} stayed unseen and was never e-mailed"
