"""sp_get_notification_settings / sp_update_notification_settings: defaults, merge rules, checks."""
from __future__ import annotations

import threading

import psycopg
import pytest
from db_helpers import call, sqlstate

DEFAULTS = {"in_app_enabled": True, "email_enabled": True, "push_enabled": True, "type_preferences": {},
            "quiet_hours": None, "updated_at": None}


def get(conn, user_id):
    [row] = call(conn, "sp_get_notification_settings", user_id=user_id)
    return row


def patch(conn, user_id, body):
    [row] = call(conn, "sp_update_notification_settings", user_id=user_id, patch=body)
    return row


def test_defaults_for_a_user_who_never_saved(db_app, db_user):
    assert get(db_app, db_user()) == DEFAULTS


def test_patch_merges(db_app, db_user):
    u = db_user()
    r = patch(db_app, u, {"push_enabled": False,
                          "type_preferences": {"reaction": {"in_app": False, "email": False},
                                               "comment": {"email": False}},
                          "quiet_hours": {"start": "22:00", "end": "07:00", "timezone": "Europe/Amsterdam"}})
    assert r["updated_at"] is not None and (r["in_app_enabled"], r["push_enabled"]) == (True, False)
    assert r["quiet_hours"] == {"start": "22:00", "end": "07:00", "timezone": "Europe/Amsterdam"}
    r = patch(db_app, u, {"type_preferences": {"comment": {"push": False}, "reaction": None}})
    assert r["type_preferences"] == {"comment": {"email": False, "push": False}}
    r = patch(db_app, u, {"type_preferences": {"comment": {"email": None}}})
    assert r["type_preferences"] == {"comment": {"push": False}}
    r = patch(db_app, u, {"type_preferences": {"comment": {"push": None}}})
    assert r["type_preferences"] == {}  # an empty override map disappears
    r = patch(db_app, u, {"email_enabled": False})
    assert r["quiet_hours"] is not None and r["push_enabled"] is False and r["email_enabled"] is False
    r = patch(db_app, u, {"quiet_hours": None})
    assert r["quiet_hours"] is None
    assert get(db_app, u) == r


@pytest.mark.parametrize(("body", "field"), [
    ([], "_schema"),
    ({"colour": "red"}, "colour"),
    ({"in_app_enabled": None}, "in_app_enabled"),
    ({"email_enabled": "yes"}, "email_enabled"),
    ({"type_preferences": None}, "type_preferences"),
    ({"type_preferences": {"Bad Type": {"email": False}}}, "type_preferences.Bad Type"),
    ({"type_preferences": {"comment": {"sms": False}}}, "type_preferences.comment.sms"),
    ({"type_preferences": {"comment": {"email": "no"}}}, "type_preferences.comment.email"),
    ({"type_preferences": {"comment": True}}, "type_preferences.comment"),
    ({"type_preferences": {f"t{i}": {"email": False} for i in range(201)}}, "type_preferences"),
    ({"quiet_hours": "22-07"}, "quiet_hours"),
    ({"quiet_hours": {"start": "24:00", "end": "07:00", "timezone": "UTC"}}, "quiet_hours.start"),
    ({"quiet_hours": {"start": "22:00", "end": "7:00", "timezone": "UTC"}}, "quiet_hours.end"),
    ({"quiet_hours": {"start": "22:00", "end": "22:00", "timezone": "UTC"}}, "quiet_hours.end"),
    ({"quiet_hours": {"start": "22:00", "end": "07:00"}}, "quiet_hours.timezone"),
    ({"quiet_hours": {"start": "22:00", "end": "07:00", "timezone": "Mars/Olympus"}}, "quiet_hours.timezone"),
    ({"quiet_hours": {"start": "22:00", "end": "07:00", "timezone": "XYZ+3"}}, "quiet_hours.timezone"),
    ({"quiet_hours": {"start": "22:00", "end": "07:00", "timezone": "UTC", "days": 5}}, "quiet_hours.days"),
])
def test_patch_rejects_invalid_settings(db_app, db_user, body, field):
    u = db_user()
    with sqlstate("NA422", field):
        patch(db_app, u, body)
    assert get(db_app, u) == DEFAULTS


def test_more_than_200_types_after_the_merge(db_app, db_user):
    u = db_user()
    patch(db_app, u, {"type_preferences": {f"a{i}": {"email": False} for i in range(150)}})
    with sqlstate("NA422", "type_preferences"):
        patch(db_app, u, {"type_preferences": {f"b{i}": {"email": False} for i in range(51)}})


def test_concurrent_patches_keep_each_others_keys(db_env, db_app, db_user):
    u = db_user()
    barrier = threading.Barrier(10)
    errors = []

    def worker(i):
        try:
            with psycopg.connect(db_env.app, autocommit=True) as conn:
                barrier.wait()
                patch(conn, u, {"type_preferences": {f"type{i}": {"email": False}}})
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert get(db_app, u)["type_preferences"] == {f"type{i}": {"email": False} for i in range(10)}
