"""preflight: every item ✓ against the test deployment; each bad setting ✗ with the right reason."""
from __future__ import annotations

import re
import shutil
from pathlib import Path

import jwt
import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from notifications_api.web import auth
from notifications_api.db import migrate
from notifications_api.ops import preflight
from ops_helpers import free_port

# Every item, in the order of docs/PRODUCTION.md; the e-mail item only runs when EMAIL_API_URL is set.
ITEMS = [
    "configuration valid", "ENVIRONMENT", "DEBUG", "LOG_LEVEL", "secrets strong", "/metrics protected",
    "database password", "CORS strict", "docs off", "rate limits", "Redis reachable", "database reachable",
    "database TLS", "session settings", "migrations current", "stored functions executable", "app user cannot read tables",
    "app user cannot create objects", "e-mail outbox functions", "push outbox functions", "JWT validation",
    "JWT audience", "service-token validation", "Web Push key",
]
EMAIL_ITEMS = ["e-mail outbox functions"]
PUSH_ITEMS = ["push outbox functions", "Web Push key"]  # only when VAPID_PRIVATE_KEY is set
BASE_ITEMS = [item for item in ITEMS if item not in EMAIL_ITEMS + PUSH_ITEMS]
EMAIL_API_URL = "https://email-api.example.internal/v1/send"
ROOT = Path(__file__).resolve().parents[2]


def by_item(checks) -> dict:
    return {check.item: check for check in checks}


def assert_fails(checks, item: str, *fragments: str) -> None:
    check = by_item(checks)[item]
    assert not check.ok, check.line()
    for fragment in fragments:
        assert fragment in check.reason, check.line()


def test_all_pass_against_the_test_deployment(production_env):
    checks = preflight.run(production_env)
    assert [c.item for c in checks] == BASE_ITEMS
    assert [c.line() for c in checks if not c.ok] == []
    assert all(c.line().startswith("✓ ") for c in checks)


@pytest.mark.parametrize("changes, item, fragments", [
    ({"JWT_SECRET": "change-me"}, "secrets strong", ["JWT_SECRET is a documented placeholder"]),
    ({"SERVICE_TOKEN": "short-token"}, "secrets strong", ["SERVICE_TOKEN is shorter than 32 characters"]),
    ({"METRICS_TOKEN": "secret"}, "secrets strong", ["METRICS_TOKEN is a documented placeholder"]),
    ({"SERVICE_TOKEN": "@JWT_SECRET"}, "secrets strong", ["SERVICE_TOKEN equals JWT_SECRET"]),
    ({"JWT_SECRET_PREVIOUS": "@JWT_SECRET"}, "secrets strong", ["JWT_SECRET_PREVIOUS equals JWT_SECRET"]),
    ({"METRICS_TOKEN": ""}, "/metrics protected", ["METRICS_TOKEN is empty"]),
    ({"JWT_AUDIENCE": ""}, "JWT audience", ["JWT_AUDIENCE is empty"]),
    ({"CORS_ORIGINS": "*"}, "CORS strict", ["contains *"]),
    ({"CORS_ORIGINS": "https://app.example.com,http://app.example.com"}, "CORS strict",
     ["origins without https: http://app.example.com"]),
    ({"ENABLE_DOCS": "true"}, "docs off", ["ENABLE_DOCS is true"]),
    ({"ENVIRONMENT": "staging"}, "ENVIRONMENT", ["'staging'"]),
    ({"DEBUG": "true"}, "DEBUG", ["must be false"]),
    ({"LOG_LEVEL": "DEBUG"}, "LOG_LEVEL", ["is DEBUG"]),
    ({"LOG_LEVEL": "ERROR"}, "LOG_LEVEL", ["is ERROR"]),
    ({"RATE_LIMIT_ENABLED": "false"}, "rate limits", ["RATE_LIMIT_ENABLED is false"]),
    ({"REDIS_HOST": ""}, "rate limits", ["REDIS_HOST is empty"]),
    ({"REDIS_HOST": ""}, "Redis reachable", ["REDIS_HOST is not set"]),
    ({"REDIS_HOST": "127.0.0.1", "REDIS_PORT": "@free"}, "Redis reachable", ["ConnectionError"]),
    ({"REDIS_HOST": "", "REDIS_URL": "redis+sentinel://:Sentinel-pass-0123@127.0.0.1:@free/mymaster"},
     "Redis reachable", ["redis+sentinel://127.0.0.1:", "/mymaster: MasterNotFoundError"]),
])
def test_bad_setting_fails_its_item(production_env, changes, item, fragments):
    env = dict(production_env)
    for name, value in changes.items():
        if value == "@free":
            value = str(free_port())
        elif "@free" in value:
            value = value.replace("@free", str(free_port()))
        elif value.startswith("@"):
            value = env[value[1:]]
        env[name] = value
    checks = preflight.run(env)
    assert_fails(checks, item, *fragments)
    assert "Sentinel-pass-0123" not in "\n".join(c.line() for c in checks)
    # production guardrails of the config itself are reported too
    if changes.get("JWT_SECRET") == "change-me" or "CORS_ORIGINS" in changes and "*" in changes["CORS_ORIGINS"]:
        assert_fails(checks, "configuration valid")


def test_missing_required_secret_stops_early(production_env):
    checks = preflight.run({**production_env, "JWT_SECRET": ""})
    assert [c.item for c in checks] == ["configuration valid", "remaining checks"]
    assert_fails(checks, "configuration valid", "JWT_SECRET is required")


def _with_conninfo(env, conninfo):
    return {**env, "DATABASE_URL": conninfo}


def test_database_unreachable(production_env, database):
    checks = preflight.run(_with_conninfo(production_env, make_conninfo(database.app, host="127.0.0.1",
                                                                        port=str(free_port()))))
    assert_fails(checks, "database reachable", "127.0.0.1")
    for item in BASE_ITEMS[BASE_ITEMS.index("migrations current"):BASE_ITEMS.index("JWT validation")]:
        assert_fails(checks, item, "not checked")
    assert EMAIL_ITEMS[0] not in by_item(checks)


def test_wrong_database_password_is_not_printed(production_env, database):
    wrong = "Wrong-password-0123456789-abcdefgh"
    conninfo = make_conninfo(database.app, password=wrong)
    try:
        psycopg.connect(conninfo).close()
        # Environmental, not a gap: the test servers here (system and embedded) trust local
        # connections, so no password is ever refused; against a password-checking server it runs.
        pytest.skip("this PostgreSQL does not check passwords (trust authentication)")
    except psycopg.OperationalError:
        pass
    checks = preflight.run(_with_conninfo(production_env, conninfo))
    assert_fails(checks, "database reachable", "password authentication failed")
    assert all(wrong not in c.reason for c in checks)


def test_placeholder_database_password(production_env, database):
    checks = preflight.run(_with_conninfo(production_env, make_conninfo(database.app, password="api_password")))
    assert_fails(checks, "database password", "placeholder")


def test_tls_required_but_not_available(production_env, database):
    with psycopg.connect(database.admin) as conn:
        if conn.execute("SHOW ssl").fetchone()[0] == "on":
            # the test needs a server WITHOUT TLS (ours have none); with TLS the premise is false
            pytest.skip("this PostgreSQL offers TLS")
    checks = preflight.run(_with_conninfo(production_env, make_conninfo(database.app, sslmode="require")))
    assert_fails(checks, "database TLS", "sslmode=require")


def test_app_user_is_a_superuser(production_env, database):
    checks = preflight.run(_with_conninfo(production_env, database.admin))
    assert_fails(checks, "app user cannot read tables", "superuser")


def test_role_outside_the_app_group_cannot_execute(production_env, extra_role):
    checks = preflight.run(_with_conninfo(production_env, extra_role()))
    assert_fails(checks, "stored functions executable", "not executable by the app user", "sp_get_unread_count")
    assert_fails(checks, "migrations current", "cannot execute activity.sp_schema_version()")


def test_app_user_with_a_table_grant(production_env, extra_role):
    conninfo = extra_role("GRANT notifications_api TO {role}",
                          "GRANT SELECT ON activity.notification_settings TO {role}",
                          "GRANT UPDATE ON activity.email_outbox TO {role}")
    checks = preflight.run(_with_conninfo(production_env, conninfo))
    assert_fails(checks, "app user cannot read tables", "SELECT succeeded on activity.notification_settings",
                 "privileges granted on activity.email_outbox")
    assert by_item(checks)["stored functions executable"].ok


def test_app_user_may_create_objects(production_env, extra_role):
    conninfo = extra_role("GRANT notifications_api TO {role}", "GRANT CREATE ON SCHEMA activity TO {role}")
    checks = preflight.run(_with_conninfo(production_env, conninfo))
    assert_fails(checks, "app user cannot create objects", "CREATE on schema activity")


def test_missing_and_weakened_functions(production_env, scratch_database):
    admin_conninfo, app_conninfo = scratch_database()
    with psycopg.connect(admin_conninfo, autocommit=True) as conn:
        conn.execute("DROP FUNCTION activity.sp_update_notification_settings(uuid, jsonb)")
        conn.execute("GRANT EXECUTE ON FUNCTION activity.sp_purge_notifications(integer, integer) TO notifications_api")
        conn.execute("ALTER FUNCTION activity.sp_get_unread_count(uuid, boolean) SECURITY INVOKER")
        conn.execute("ALTER FUNCTION activity.sp_delete_notification(uuid, uuid, boolean) RESET search_path")
    checks = preflight.run(_with_conninfo(production_env, app_conninfo))
    assert_fails(checks, "stored functions executable", "missing: sp_update_notification_settings",
                 "not SECURITY DEFINER: sp_get_unread_count", "no fixed search_path: sp_delete_notification",
                 "the app user may execute the retention group's sp_purge_notifications")


def test_session_settings_come_from_the_login_role(production_env, extra_role):
    """A login without ALTER ROLE ... SET gets the server's defaults: preflight names each difference."""
    conninfo = extra_role("GRANT notifications_api TO {role}",
                          "ALTER ROLE {role} SET timezone = 'Europe/Berlin'",
                          "ALTER ROLE {role} SET datestyle = 'SQL, DMY'",
                          "ALTER ROLE {role} SET statement_timeout = '1min'")
    checks = preflight.run(_with_conninfo(production_env, conninfo))
    assert_fails(checks, "session settings", "TimeZone is Europe/Berlin", "DateStyle is SQL, DMY",
                 "statement_timeout is 60000 ms, DB_STATEMENT_TIMEOUT_MS is 5000", "ALTER ROLE")
    assert by_item(preflight.run(production_env))["session settings"].ok


def test_migrations_pending_or_changed(production_env, tmp_path):
    directory = tmp_path / "migrations_sql"
    shutil.copytree(migrate.default_directory(), directory)
    (directory / "9999_ops_extra.sql").write_text("SELECT 1;\n")
    checks = preflight.run({**production_env, "MIGRATIONS_DIR": str(directory)})
    assert_fails(checks, "migrations current", "pending: 9999_ops_extra.sql", "notifications-api migrate")

    (directory / "9999_ops_extra.sql").unlink()
    repeatable = sorted((directory / "repeatable").glob("*.sql"))[0]
    repeatable.write_text(repeatable.read_text() + "\n-- changed\n")
    checks = preflight.run({**production_env, "MIGRATIONS_DIR": str(directory)})
    assert_fails(checks, "migrations current", f"differ from the applied version: repeatable/{repeatable.name}")

    first = sorted(directory.glob("*.sql"))[0]
    first.unlink()
    checks = preflight.run({**production_env, "MIGRATIONS_DIR": str(directory)})
    assert_fails(checks, "migrations current", f"applied but not in this release: {first.name}")


def test_broken_jwt_validation_is_caught(production_env, monkeypatch):
    def ignores_signature(token, config):
        claims = jwt.decode(token, options={"verify_signature": False})
        return str(claims["sub"]), claims["exp"]

    monkeypatch.setattr(auth, "decode_user_token", ignores_signature)
    checks = preflight.run(production_env)
    assert_fails(checks, "JWT validation", "a tampered payload: got 200")


def test_broken_service_token_validation_is_caught(production_env, monkeypatch):
    monkeypatch.setattr(auth, "_matches", lambda candidate, secrets: 0)
    checks = preflight.run(production_env)
    assert_fails(checks, "service-token validation", "a wrong token: got 200")


# --- e-mail (EMAIL_API_URL set: the API queues e-mails for the worker) -----------------------------

def test_all_pass_with_email_on(production_env):
    checks = preflight.run({**production_env, "EMAIL_API_URL": EMAIL_API_URL})
    assert [c.item for c in checks] == [item for item in ITEMS if item not in PUSH_ITEMS]
    assert [c.line() for c in checks if not c.ok] == []
    assert "executable by notifications_worker, not by the app user" in by_item(checks)[EMAIL_ITEMS[0]].reason


def test_the_runbook_states_the_counts_a_good_run_prints(production_env):
    """docs/PRODUCTION.md's "A good run ends with N passed" and its numbered final checklist follow the code."""
    runbook = (ROOT / "docs" / "PRODUCTION.md").read_text()
    stated = re.search(r"A good run ends with `(\d+) passed, 0 failed` \(`(\d+) passed` with `EMAIL_API_URL`", runbook)
    assert stated, "docs/PRODUCTION.md no longer states what a good preflight run prints"
    assert int(stated.group(1)) == len(preflight.run(production_env))
    assert int(stated.group(2)) == len(preflight.run({**production_env, "EMAIL_API_URL": EMAIL_API_URL}))
    checklist = runbook[runbook.index("## 10. Final checklist"):]
    numbers = [int(n) for n in re.findall(r"^(\d+)\. ", checklist, re.M)]
    assert numbers == list(range(1, len(numbers) + 1)), numbers


def test_email_item_not_checked_when_the_database_is_unreachable(production_env, database):
    env = _with_conninfo(production_env, make_conninfo(database.app, host="127.0.0.1", port=str(free_port())))
    checks = preflight.run(_push_env({**env, "EMAIL_API_URL": EMAIL_API_URL}))
    assert [c.item for c in checks] == ITEMS
    assert_fails(checks, EMAIL_ITEMS[0], "not checked")
    assert_fails(checks, PUSH_ITEMS[0], "not checked")


def test_email_functions_with_wrong_grants(production_env, scratch_database):
    admin_conninfo, app_conninfo = scratch_database()
    with psycopg.connect(admin_conninfo, autocommit=True) as conn:
        conn.execute("DROP FUNCTION activity.sp_release_email_deliveries(text)")
        conn.execute("REVOKE EXECUTE ON FUNCTION activity.sp_email_queue_stats() FROM notifications_worker")
        conn.execute("GRANT EXECUTE ON FUNCTION activity.sp_fail_email_delivery(uuid, uuid, text, text)"
                     " TO notifications_api")
        conn.execute("GRANT EXECUTE ON FUNCTION activity.sp_get_unread_count(uuid, boolean) TO notifications_worker")
        conn.execute("ALTER FUNCTION activity.sp_complete_email_delivery(uuid, uuid, text) SECURITY INVOKER")
    env = {**_with_conninfo(production_env, app_conninfo), "EMAIL_API_URL": EMAIL_API_URL}
    checks = preflight.run(env)
    assert_fails(checks, EMAIL_ITEMS[0], "missing: sp_release_email_deliveries",
                 "not executable by notifications_worker: sp_email_queue_stats",
                 "executable by the app user: sp_fail_email_delivery",
                 "notifications_worker may execute the API's sp_get_unread_count",
                 "not SECURITY DEFINER: sp_complete_email_delivery")
    assert by_item(checks)["stored functions executable"].ok  # the API's own item is unaffected
    # without EMAIL_API_URL nothing is queued: the outbox is not checked at all
    assert EMAIL_ITEMS[0] not in by_item(preflight.run(_with_conninfo(production_env, app_conninfo)))


def test_email_functions_granted_to_public(production_env, scratch_database):
    admin_conninfo, app_conninfo = scratch_database()
    with psycopg.connect(admin_conninfo, autocommit=True) as conn:
        conn.execute("GRANT EXECUTE ON FUNCTION activity.sp_claim_email_deliveries(text, integer, integer, integer)"
                     " TO PUBLIC")
    checks = preflight.run({**_with_conninfo(production_env, app_conninfo), "EMAIL_API_URL": EMAIL_API_URL})
    assert_fails(checks, EMAIL_ITEMS[0], "executable by the app user: sp_claim_email_deliveries")


def test_worker_group_missing(production_env, monkeypatch):
    monkeypatch.setattr(preflight, "WORKER_GROUP", "nt_ops_no_such_group")
    checks = preflight.run({**production_env, "EMAIL_API_URL": EMAIL_API_URL})
    assert_fails(checks, EMAIL_ITEMS[0], "role nt_ops_no_such_group does not exist", "roles.sql")


# --- Web Push (VAPID_PRIVATE_KEY set: the API queues pushes for the push worker) -----------------------

def _push_env(env: dict) -> dict:
    from notifications_api.channels.push_crypto import generate_vapid_keys

    return {**env, "VAPID_PRIVATE_KEY": generate_vapid_keys()[0], "VAPID_SUBJECT": "mailto:push@acme-notify.io"}


def test_all_pass_with_push_on(production_env):
    checks = preflight.run(_push_env(production_env))
    assert [c.item for c in checks] == [item for item in ITEMS if item not in EMAIL_ITEMS]
    assert [c.line() for c in checks if not c.ok] == []
    assert "executable by notifications_push_worker, not by the app user" in \
        by_item(checks)["push outbox functions"].reason


def test_push_functions_and_key_with_problems(production_env, scratch_database):
    admin_conninfo, app_conninfo = scratch_database()
    with psycopg.connect(admin_conninfo, autocommit=True) as conn:
        conn.execute("REVOKE EXECUTE ON FUNCTION activity.sp_push_queue_stats() FROM notifications_push_worker")
        conn.execute("GRANT EXECUTE ON FUNCTION activity.sp_release_push_deliveries(text) TO notifications_api")
    env = {**_push_env(_with_conninfo(production_env, app_conninfo)), "VAPID_SUBJECT": "mailto:ops@example.com"}
    checks = preflight.run(env)
    assert_fails(checks, "push outbox functions", "not executable by notifications_push_worker: sp_push_queue_stats",
                 "executable by the app user: sp_release_push_deliveries")
    assert_fails(checks, "Web Push key", "placeholder")
    assert "push outbox functions" not in by_item(preflight.run(_with_conninfo(production_env, app_conninfo)))
