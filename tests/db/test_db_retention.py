"""Retention functions (repeatable/0150_retention.sql) run by the retention login: the e-mail
outbox purge keeps what is unfinished or still young, validates, and never waits for a locked row."""
from __future__ import annotations

import psycopg
import pytest
from db_helpers import call, sqlstate

from notifications_api.db import admin

# (status, days since queued) -> kept with the defaults (7 days finished, 30 days failed/dead)?
ROWS = [("sent", 8, False), ("cancelled", 8, False), ("sent", 6, True), ("cancelled", 1, True),
        ("failed", 31, False), ("dead", 31, False), ("failed", 29, True), ("dead", 10, True),
        ("pending", 90, True), ("sending", 90, True)]


def _queue(db_admin, user_id, status: str, days: int) -> None:
    db_admin.execute(
        "INSERT INTO activity.email_outbox (user_id, notification_id, recipient, subject, body, status, created_at,"
        " sent_at) VALUES (%s, gen_random_uuid(), 'r@example.test', 's', 'b', %s, now() - make_interval(days => %s),"
        " CASE WHEN %s = 'sent' THEN now() - make_interval(days => %s) END)", (user_id, status, days, status, days))


def _left(db_admin, user_id) -> list[tuple[str, int]]:
    return sorted(db_admin.execute(
        "SELECT status, round(extract(epoch FROM now() - created_at) / 86400)::int FROM activity.email_outbox"
        " WHERE user_id = %s", (user_id,)).fetchall())


def _purge_all(conn, **kwargs) -> int:
    total = 0
    while True:
        [row] = call(conn, "sp_purge_email_outbox", **kwargs)
        total += row["deleted_count"]
        if not row["deleted_count"]:
            return total


def test_outbox_purge_deletes_only_old_finished_rows(db_retention, db_admin, db_user):
    user = db_user()
    for status, days, _ in ROWS:
        _queue(db_admin, user, status, days)
    assert _purge_all(db_retention, batch_size=1) >= 4
    assert _left(db_admin, user) == sorted((status, days) for status, days, kept in ROWS if kept)
    # shorter ages: everything finished goes, pending and sending never do
    _purge_all(db_retention, finished_older_than_days=0, failed_older_than_days=0)
    assert _left(db_admin, user) == [("pending", 90), ("sending", 90)]


@pytest.mark.parametrize("kwargs, field", [
    ({"finished_older_than_days": -1}, "finished_older_than_days"),
    ({"failed_older_than_days": None}, "failed_older_than_days"),
    ({"batch_size": 0}, "batch_size"),
    ({"batch_size": 100001}, "batch_size"),
])
def test_outbox_purge_validates(db_retention, kwargs, field):
    with sqlstate("NA422", field):
        call(db_retention, "sp_purge_email_outbox", **kwargs)


def test_outbox_purge_skips_locked_rows_and_never_double_counts(db_env, db_admin, db_user):
    """Two purges at once (a second CronJob run, a manual one): each takes rows the other has not
    locked, never waits for them (lock_timeout would raise), and together they delete each row once."""
    user = db_user()
    for _ in range(6):
        _queue(db_admin, user, "sent", 30)
    with psycopg.connect(db_env.retention) as first, psycopg.connect(db_env.retention) as second:
        second.execute("SET lock_timeout = '1s'")
        [a] = call(first, "sp_purge_email_outbox", batch_size=4)  # holds its 4 rows until commit
        rest = _purge_all(second, batch_size=100)
        second.commit()
        first.commit()
    assert a["deleted_count"] == 4 and rest >= 2
    assert _left(db_admin, user) == []


def test_provision_retention_user(db_env):
    role, conninfo = db_env.login_role()
    admin.provision_retention_user(db_env.admin, role, "first")
    admin.provision_retention_user(db_env.admin, role, "second")  # idempotent: re-password
    with psycopg.connect(db_env.admin) as conn:
        groups = conn.execute(
            "SELECT array_agg(g.rolname::text) FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid"
            " JOIN pg_roles r ON r.oid = m.member WHERE r.rolname = %s", (role,)).fetchone()[0]
    assert groups == ["notifications_retention"]
    # the app login may not double as the retention login, nor the other way round
    with pytest.raises(ValueError, match="own plain login role"):
        admin.provision_retention_user(db_env.admin, db_env.app_role, "x")
    with pytest.raises(ValueError, match="plain login role"):
        admin.provision_app_user(db_env.admin, role, "x")
