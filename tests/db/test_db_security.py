"""The app role can execute the API functions and do nothing else; others cannot execute them."""
from __future__ import annotations

import uuid

import psycopg
import pytest
from psycopg import errors, sql

from notifications_api.db import admin, grants

TABLES = ["users", "notifications", "notification_counters", "notification_type_counters", "notification_groups",
          "notification_settings", "email_outbox", "schema_migrations"]
# Internal helpers that must be inlined into the queries that use them (plain SQL: a SECURITY
# DEFINER or SET clause would stop that) and the trigger function; none reads a table but the list
# pages (read inlined, as the SECURITY DEFINER caller's owner), none is executable by the app or
# PUBLIC, all are owned by the owner.
INLINED = {"_in_inbox", "_c_unread", "_c_unseen", "_next_at", "_delta", "_row_delta", "_out", "_out_v1",
           "_inbox_page", "_page_v1", "_groups_page"}
TRIGGERS = {"_counters_written_by_old_code"}


@pytest.mark.parametrize("table", TABLES)
@pytest.mark.parametrize("statement", [
    "SELECT * FROM activity.{}",
    "INSERT INTO activity.{} DEFAULT VALUES",
    "UPDATE activity.{} SET user_id = user_id",
    "DELETE FROM activity.{}",
])
def test_app_role_cannot_touch_tables(db_app, table, statement):
    if table == "schema_migrations":
        statement = statement.replace("user_id = user_id", "filename = filename")
    with pytest.raises(errors.InsufficientPrivilege):
        db_app.execute(sql.SQL(statement).format(sql.Identifier(table)))


def test_function_privileges(db_admin, db_env):
    rows = db_admin.execute(
        """SELECT p.proname, p.prosecdef, pg_get_userbyid(p.proowner), p.proconfig,
                  has_function_privilege(%s, p.oid, 'EXECUTE'),
                  has_function_privilege(%s, p.oid, 'EXECUTE'),
                  has_function_privilege('public', p.oid, 'EXECUTE'), p.provolatile, l.lanname
             FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang
            WHERE p.pronamespace = 'activity'::regnamespace""",
        (db_env.app_role, db_env.retention_role)).fetchall()
    by_name = {r[0]: r for r in rows}
    assert set(grants.API_FUNCTIONS) | set(grants.RETENTION_FUNCTIONS) | INLINED | TRIGGERS <= set(by_name)
    for name, secdef, owner, config, app_can, retention_can, public_can, volatility, language in rows:
        assert owner == "notifications_owner", name
        assert not public_can, name
        assert app_can == (name in grants.API_FUNCTIONS), name
        assert retention_can == (name in grants.RETENTION_FUNCTIONS), name
        if name in INLINED:
            assert not secdef and config is None and language == "sql" and volatility in "is", name
        elif name in TRIGGERS:
            assert not secdef and "search_path=activity, pg_temp" in config, name
        else:
            assert secdef and "search_path=activity, pg_temp" in config, name


def test_grants_list_is_what_the_database_grants(db_admin):
    """db/grants.py is the one list of function names (metrics, preflight): it must match the migrations."""
    rows = db_admin.execute(
        """SELECT g.rolname, array_agg(DISTINCT p.proname::text ORDER BY p.proname::text)
             FROM pg_proc p CROSS JOIN pg_roles g
            WHERE p.pronamespace = 'activity'::regnamespace AND g.rolname = ANY(%s)
              AND has_function_privilege(g.oid, p.oid, 'EXECUTE')
            GROUP BY g.rolname""", (list(grants.GRANTS),)).fetchall()
    assert dict(rows) == {group: sorted(names) for group, names in grants.GRANTS.items()}


def test_only_the_retention_login_can_purge(db_app, db_retention, db_user):
    """The purge accepts 0 days: the API's login must not be able to delete everyone's archive."""
    for query in ("SELECT * FROM activity.sp_purge_notifications(0, 1000)",
                  "SELECT * FROM activity.sp_purge_email_outbox(0, 0, 1000)"):
        with pytest.raises(errors.InsufficientPrivilege):
            db_app.execute(query)
        assert db_retention.execute(query.replace("1000", "1")).fetchone()[0] >= 0
    uid = db_user()
    with pytest.raises(errors.InsufficientPrivilege):  # and nothing of the API's
        db_retention.execute("SELECT * FROM activity.sp_get_unread_count(%s)", (uid,))


def test_logins_carry_their_session_settings(db_env):
    """TimeZone, DateStyle and statement_timeout come from the role, not from startup options
    (which PgBouncer refuses): a bare connection already has them."""
    for conninfo, timeout in ((db_env.app, "5s"), (db_env.retention, "1min")):
        with psycopg.connect(conninfo, autocommit=True) as conn:
            assert conn.execute("SELECT current_setting('TimeZone'), current_setting('DateStyle'),"
                                " current_setting('statement_timeout')").fetchone() == ("UTC", "ISO, MDY", timeout)


def test_app_role_is_only_a_member_of_the_group(db_admin, db_env):
    rows = db_admin.execute(
        "SELECT b.rolname FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.member"
        " JOIN pg_roles b ON b.oid = m.roleid WHERE r.rolname = %s", (db_env.app_role,)).fetchall()
    assert rows == [("notifications_api",)]
    assert db_admin.execute("SELECT rolsuper, rolcreaterole, rolcreatedb FROM pg_roles WHERE rolname = %s",
                            (db_env.app_role,)).fetchone() == (False, False, False)


def test_a_login_outside_the_group_cannot_execute(db_env, db_user):
    _, conninfo = db_env.login_role()
    uid = db_user()
    with psycopg.connect(conninfo, autocommit=True) as conn:
        for query in ["SELECT * FROM activity.sp_get_unread_count(%s)",
                      "SELECT * FROM activity.sp_get_user_notifications(%s)"]:
            with pytest.raises(errors.InsufficientPrivilege):
                conn.execute(query, (uid,))


def test_provision_is_idempotent_and_refuses_privileged_roles(db_env):
    role, _ = db_env.login_role()
    admin.provision_app_user(db_env.admin, role, "first")
    admin.provision_app_user(db_env.admin, role, "second")
    admin.provision_app_user(db_env.admin, role, None)
    with psycopg.connect(db_env.admin, autocommit=True) as conn:
        assert conn.execute("SELECT pg_has_role(%s, 'notifications_api', 'MEMBER')", (role,)).fetchone()[0]
    with pytest.raises(ValueError):
        admin.provision_app_user(db_env.admin, "postgres", "x")


def test_create_user_upserts(db_admin, db_env):
    uid = admin.create_user(db_env.admin, email="a@example.test", display_name="A")
    assert isinstance(uid, uuid.UUID)
    assert admin.create_user(db_env.admin, email=None, user_id=str(uid), active=False) == uid
    assert db_admin.execute("SELECT email, display_name, is_active FROM activity.users WHERE user_id = %s",
                            (uid,)).fetchone() == (None, None, False)


def test_ensure_database(db_env):
    name = f"nt_db_{uuid.uuid4().hex[:12]}"
    db_env.extra_databases.append(name)
    assert admin.ensure_database(db_env.server, name) is True
    assert admin.ensure_database(db_env.server, name) is False
