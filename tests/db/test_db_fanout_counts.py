"""The fan-out create counts its rows through the writers' helpers (_row_delta, _apply; issue 23):
whatever state each user's counts are in, one create leaves counts, per-type counts and groups
equal to what the rows say, and moves each counted user's version by exactly one."""
from __future__ import annotations

import datetime as dt

from db_helpers import call, counts, create_one, groups_answer, groups_truth, travel, truth


def future(seconds=3600):
    return dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=seconds)


def versions(admin_conn, users):
    return dict(admin_conn.execute("SELECT user_id, version FROM activity.notification_counters"
                                   " WHERE user_id = ANY (%s)", (users,)).fetchall())


def test_a_fan_out_over_users_in_every_state_of_their_counts(db_app, db_admin, db_user):
    new, counted, stale, due, snoozing = (db_user() for _ in range(5))
    for u in (counted, stale, due, snoozing):
        create_one(db_app, u, notification_type="mention", group_key="g")
        create_one(db_app, u, notification_type="comment", expires_at=future(60))
        counts(db_app, u)
    # stale: written by older code (counts "not computed"); due: an expiry the clock has not folded yet
    db_admin.execute("UPDATE activity.notification_counters SET version = version + 1 WHERE user_id = %s",
                     (stale,))
    travel(db_admin, due, 120)
    [snoozed] = [r["notification_id"] for r in call(db_app, "sp_inbox_list", user_id=snoozing)
                 if r["notification_type"] == "mention"]
    call(db_app, "sp_inbox_snooze", user_id=snoozing, notification_id=snoozed, until=future(600))
    users = [new, counted, stale, due, snoozing]
    before = versions(db_admin, users)

    rows = call(db_app, "sp_inbox_create", user_ids=users + [counted], notification_type="comment", title="t",
                group_key="g", expires_at=future(7200))
    assert [r["result"] for r in rows] == ["created"] * 5 + ["duplicate"]
    after = versions(db_admin, users)
    assert after[new] == 1 and all(after[u] == before[u] + 1 for u in (counted, stale, due, snoozing))
    for u in users:
        assert {k: v for k, v in counts(db_app, u).items() if k != "version"} == truth(db_admin, u), u
        assert groups_answer(db_app, u) == groups_truth(db_admin, u), u
