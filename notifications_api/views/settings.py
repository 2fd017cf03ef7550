"""The end user's notification preferences: channels, per-type overrides, quiet hours."""
from __future__ import annotations

import logging

from flask import Blueprint, g

from .. import ratelimit, store
from ..auth import user_required
from ..body import load_body, load_query
from ..db import get_db
from ..schemas import EmptyQuerySchema, SettingsPatchSchema
from ..responses import json_response

log = logging.getLogger(__name__)
bp = Blueprint("settings", __name__)

patch_body = SettingsPatchSchema()
no_query = EmptyQuerySchema()


def _settings_dict(row: tuple) -> dict:
    in_app, email, push, type_preferences, quiet_hours, updated_at = row
    return {"in_app_enabled": in_app, "email_enabled": email, "push_enabled": push,
            "type_preferences": type_preferences or {}, "quiet_hours": quiet_hours,
            "updated_at": updated_at}  # API text already (db._configure)


@bp.get("/notifications/settings")
@user_required
@ratelimit.user_read
def get_settings():
    load_query(no_query)
    return json_response(_settings_dict(store.get_settings(get_db(), g.user_id)))


@bp.patch("/notifications/settings")
@user_required
@ratelimit.user_write
def update_settings():
    patch = load_body(patch_body)
    row = store.update_settings(get_db(), g.user_id, patch)
    log.info("settings updated", extra={
        "event": "settings_updated", "user_id": g.user_id, "fields": sorted(patch)})
    return json_response(_settings_dict(row))
