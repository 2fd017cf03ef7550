"""db/store.py's wrappers for the live-updates stream: dicts keyed by column name, through the app's pool."""
from __future__ import annotations

import psycopg

from notifications_api.db import store
from notifications_api.db.pool import get_db


def test_unread_counts_many_and_advance_clocks(app, make_user, notify, database):
    a, b = make_user(), make_user()
    notify(a)
    notify(a)
    notify(b, expires_at="2999-01-01T00:00:00Z")
    with app.app_context():
        db = get_db()
        rows = store.unread_counts_many(db, [b, a])
        assert [r["user_id"] for r in rows] == sorted([a, b])
        by_user = {r["user_id"]: r for r in rows}
        assert {k: by_user[a][k] for k in ("unread_count", "unseen_count")} == {"unread_count": 2, "unseen_count": 2}
        assert set(by_user[b]) == {"user_id", "unread_count", "unseen_count", "version"}
        # b's notification expires by the clock (its instants move back an hour, as if time passed)
        with psycopg.connect(database.admin, autocommit=True) as conn, conn.transaction():
            conn.execute("SET LOCAL activity.inbox_v2 = 'on'")
            conn.execute("UPDATE activity.notifications SET expires_at = now() - interval '1 second',"
                         " created_at = created_at - interval '1 hour', delivered_at = delivered_at - interval"
                         " '1 hour' WHERE user_id = %s", (b,))
            conn.execute("UPDATE activity.notification_counters SET folded_at = folded_at - interval '1 hour',"
                         " next_change_at = now() - interval '1 second' WHERE user_id = %s", (b,))
        advanced = [r for r in store.advance_clocks(db, 1000, 1000) if r["user_id"] in (a, b)]
        assert advanced == [{"user_id": b, "unread_count": 0, "unseen_count": 0,
                             "version": by_user[b]["version"] + 1, "changed": True}]
        assert b not in [r["user_id"] for r in store.advance_clocks(db, 1000, 1000)]  # folded once
