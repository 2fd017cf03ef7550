"""The `notifications-api preflight` and `notifications-api purge` commands."""
from __future__ import annotations

import os
import uuid

import psycopg
from click.testing import CliRunner

from notifications_api.ops.cli import cli


def invoke(args, env):
    # ENV_FILE: a developer's .env must not leak into the run; unset names are removed from os.environ.
    names = ("ENVIRONMENT", "DEBUG", "LOG_LEVEL", "DATABASE_URL", "DB_HOST", "DB_PASSWORD", "JWT_SECRET",
             "SERVICE_TOKEN", "METRICS_TOKEN", "CORS_ORIGINS", "ENABLE_DOCS", "REDIS_HOST", "REDIS_PORT",
             "REDIS_DB", "REDIS_PASSWORD", "RATE_LIMIT_ENABLED", "MIGRATIONS_DIR")
    full = {name: None for name in names}
    full.update(env)
    full["ENV_FILE"] = os.devnull
    return CliRunner().invoke(cli, args, env=full, catch_exceptions=False)


def test_preflight_all_green(production_env):
    result = invoke(["preflight"], production_env)
    lines = result.output.strip().splitlines()
    assert result.exit_code == 0, result.output
    assert all(line.startswith("✓ ") for line in lines[:-1]), result.output
    assert lines[-1] == f"{len(lines) - 1} passed, 0 failed"


def test_preflight_exits_non_zero_on_any_failure(production_env):
    result = invoke(["preflight"], {**production_env, "ENABLE_DOCS": "true"})
    assert result.exit_code == 1
    assert "✗ docs off: ENABLE_DOCS is true" in result.output
    assert "✓ database reachable" in result.output
    assert result.output.strip().splitlines()[-1].endswith(" failed") and " 0 failed" not in result.output


def _notification(conn, user_id: str, key: str) -> str:
    row = conn.execute(
        "SELECT notification_id FROM activity.sp_create_notification(p_user_ids => %s::uuid[], "
        "p_notification_type => 'ops', p_title => 'retention', p_dedupe_key => %s)", ([user_id], key)).fetchone()
    return row[0]


def test_purge_loops_until_nothing_is_left(scratch_database, retention_login):
    from notifications_api.db import admin

    admin_conninfo, app_conninfo = scratch_database()
    retention_conninfo = retention_login(admin_conninfo)
    user = str(uuid.uuid4())
    admin.create_user(admin_conninfo, email="retention@example.test", user_id=user)
    with psycopg.connect(admin_conninfo, autocommit=True) as conn:
        ids = {key: _notification(conn, user, key) for key in
               ("old-archived-1", "old-archived-2", "old-archived-3", "recent-archived", "expired", "kept")}
        for key in ("old-archived-1", "old-archived-2", "old-archived-3", "recent-archived"):
            conn.execute("SELECT activity.sp_delete_notification(%s, %s, false)", (user, ids[key]))
        conn.execute("UPDATE activity.notifications SET archived_at = now() - interval '40 days' "
                     "WHERE notification_id = ANY(%s)",
                     ([ids["old-archived-1"], ids["old-archived-2"], ids["old-archived-3"]],))
        conn.execute("UPDATE activity.notifications SET expires_at = now() - interval '1 minute' "
                     "WHERE notification_id = %s", (ids["expired"],))
        # rows edited by hand: touching the counters row has the inbox counts recounted (0130's trigger)
        conn.execute("UPDATE activity.notification_counters SET version = version + 1 WHERE user_id = %s", (user,))

    result = invoke(["purge", "--archived-days", "30", "--batch-size", "1"], {"DATABASE_URL": retention_conninfo})
    assert result.exit_code == 0, result.output
    assert result.output.strip().splitlines() == ["purged 4 notification(s)", "purged 0 e-mail outbox row(s)",
                                                  "purged 0 push delivery row(s)"]
    with psycopg.connect(admin_conninfo) as conn:
        left = {row[0] for row in conn.execute("SELECT notification_id FROM activity.notifications")}
        unread = conn.execute("SELECT * FROM activity.sp_get_unread_count(%s, false)", (user,)).fetchone()[0]
    assert left == {ids["recent-archived"], ids["kept"]}
    assert unread == 1

    again = invoke(["purge"], {"DATABASE_URL": retention_conninfo})
    assert again.exit_code == 0 and again.output.strip().splitlines()[0] == "purged 0 notification(s)"


def test_the_app_login_cannot_purge(scratch_database):
    """Only the retention login may purge (the purge accepts 0 days): the API's login is refused."""
    admin_conninfo, app_conninfo = scratch_database()
    result = invoke(["purge", "--archived-days", "0"], {"DATABASE_URL": app_conninfo})
    assert result.exit_code == 1
    assert "purge refused" in result.output and "not a member of notifications_retention" in result.output
    with psycopg.connect(app_conninfo, autocommit=True) as conn:
        for query in ("SELECT * FROM activity.sp_purge_notifications(0, 1000)",
                      "SELECT * FROM activity.sp_purge_email_outbox(0, 0, 1000)"):
            try:
                conn.execute(query)
            except psycopg.errors.InsufficientPrivilege:
                continue
            raise AssertionError(f"the app login may run {query}")


def test_purge_also_empties_the_finished_email_outbox(scratch_database, retention_login):
    admin_conninfo, _ = scratch_database()
    retention_conninfo = retention_login(admin_conninfo)
    user = str(uuid.uuid4())
    with psycopg.connect(admin_conninfo, autocommit=True) as conn:
        for status, age in (("sent", 8), ("cancelled", 8), ("sent", 1), ("dead", 31), ("failed", 10),
                            ("pending", 90)):
            conn.execute("INSERT INTO activity.email_outbox (user_id, notification_id, recipient, subject, body,"
                         " status, created_at) VALUES (%s, gen_random_uuid(), 'a@example.test', 's', 'b', %s,"
                         " now() - make_interval(days => %s))", (user, status, age))
    result = invoke(["purge"], {"DATABASE_URL": retention_conninfo})
    assert result.exit_code == 0, result.output
    assert result.output.strip().splitlines() == ["purged 0 notification(s)", "purged 3 e-mail outbox row(s)",
                                                  "purged 0 push delivery row(s)"]
    with psycopg.connect(admin_conninfo) as conn:
        left = sorted(conn.execute("SELECT status, extract(day FROM now() - created_at)::int"
                                   " FROM activity.email_outbox").fetchall())
    assert left == [("failed", 10), ("pending", 90), ("sent", 1)]


def test_purge_reports_an_unreachable_database(database):
    from psycopg.conninfo import make_conninfo

    from ops_helpers import free_port

    conninfo = make_conninfo(database.app, host="127.0.0.1", port=str(free_port()))
    result = CliRunner().invoke(cli, ["purge"], env={"DATABASE_URL": conninfo, "ENV_FILE": os.devnull,
                                                     "DB_POOL_TIMEOUT": "1"})
    assert result.exit_code == 1
    assert "database_unavailable" in result.output
