"""The end user's notification preferences: channels, per-type overrides, quiet hours."""
from __future__ import annotations

import logging

from flask import Blueprint, g

from ..web import openapi, ratelimit
from ..db import store
from ..web.auth import user_required
from ..web.body import load_body, load_query
from ..db.pool import get_db
from ..web.schemas import MAX_TYPE_PREFERENCES, EmptyQuerySchema, SettingsPatchSchema, SettingsSchema
from ..web.responses import json_response

log = logging.getLogger(__name__)
bp = Blueprint("settings", __name__)

patch_body = SettingsPatchSchema()
no_query = EmptyQuerySchema()
EXAMPLE_SETTINGS = {
    "in_app_enabled": True, "email_enabled": True, "push_enabled": False,
    "type_preferences": {"reaction": {"in_app": False, "email": False}, "comment": {"email": False}},
    "quiet_hours": {"start": "22:00", "end": "07:00", "timezone": "Europe/Amsterdam"},
    "updated_at": "2026-11-26T03:42:21.123456Z",
    "email_digest": {"frequency": "daily", "at": "08:30", "timezone": "Europe/Amsterdam"},
}


def _settings_dict(row: tuple) -> dict:
    in_app, email, push, type_preferences, quiet_hours, updated_at, email_digest = row
    return {"in_app_enabled": in_app, "email_enabled": email, "push_enabled": push,
            "type_preferences": type_preferences or {}, "quiet_hours": quiet_hours,
            "updated_at": updated_at,  # API text already (db_types.configure)
            "email_digest": email_digest}


@bp.get("/notifications/settings")
@openapi.doc(
    "getSettings", "The caller's notification settings", tag="settings",
    description="A user who never saved settings gets the defaults: every channel on, no type preferences, "
                "`quiet_hours` and `updated_at` null, `email_digest` "
                "`{\"frequency\": \"batched\", \"at\": null, \"timezone\": null}`. Only the type overrides "
                "that are set are returned.",
    query=no_query, responses={200: openapi.ok("The settings.", SettingsSchema, EXAMPLE_SETTINGS)})
@user_required
@ratelimit.user_read
def get_settings():
    load_query(no_query)
    return json_response(_settings_dict(store.get_settings(get_db(), g.user_id)))


@bp.patch("/notifications/settings")
@openapi.doc(
    "updateSettings", "Change some settings (merge)", tag="settings",
    description="Only the fields sent change. `quiet_hours: null` turns quiet hours off; in "
                "`type_preferences` a type set to `null` removes its override and a channel map is merged "
                "channel by channel. Channels: `in_app`, `email`, `push`. Quiet hours `start` must differ "
                f"from `end`; time zones are IANA names; at most {MAX_TYPE_PREFERENCES} type entries. "
                "`email_digest` is replaced whole (`null` restores `batched`): `daily` needs `at` "
                "(HH:MM) and `timezone` (IANA), `batched` takes them null; errors are keyed by path "
                "(`email_digest.at`). "
                "A daily digest goes once a day at that local time with what is still unseen (nothing when "
                "nothing is), whatever the server's digest delay; quiet hours do not apply to it; `urgent` "
                "notifications still go at once. Changing it moves the e-mails already waiting to the new "
                "schedule. For `push`, `push_enabled`, the type's `push` override and the quiet hours are "
                "applied when the push worker picks a create up (normally within a second after it), as "
                "they are then.",
    request=openapi.body(SettingsPatchSchema, "The fields to change.", {
        "push_enabled": False, "type_preferences": {"reaction": {"in_app": False}, "mention": None},
        "quiet_hours": {"start": "22:00", "end": "07:00", "timezone": "Europe/Amsterdam"}}),
    responses={200: openapi.ok("The full settings after the change.", SettingsSchema, EXAMPLE_SETTINGS)})
@user_required
@ratelimit.user_write
def update_settings():
    patch = load_body(patch_body)
    row = store.update_settings(get_db(), g.user_id, patch)
    log.info("settings updated", extra={
        "event": "settings_updated", "user_id": g.user_id, "fields": sorted(patch)})
    return json_response(_settings_dict(row))
