"""The end user's notifications: list, one, mark read/unread, bulk actions, snooze, archive/delete, counts."""
from __future__ import annotations

import logging
from urllib.parse import urlencode
from uuid import UUID

from flask import Blueprint, Response, current_app, g, request

from .. import cursors, metrics, publisher, ratelimit, store
from ..auth import user_required
from ..body import load_body, load_query
from ..db import get_db
from ..schemas import (NOTIFICATION_FIELDS, BulkSchema, DeleteQuerySchema, EmptyQuerySchema,
                       GroupsQuerySchema, ListQuerySchema, MarkReadSchema, SnoozeSchema)
from ..etags import conditional_json, known_version, not_modified_or_json, version_etag
from ..responses import json_response

log = logging.getLogger(__name__)
bp = Blueprint("notifications", __name__)

list_query = ListQuerySchema()
groups_query = GroupsQuerySchema()
delete_query = DeleteQuerySchema()
no_query = EmptyQuerySchema()
mark_read_body = MarkReadSchema()
bulk_body = BulkSchema()
snooze_body = SnoozeSchema()
# The unread count's ETag owner: inbox v2 bodies (with unseen_count) never validate a tag made for
# a v1 body of the same version, and one user's tag never validates another's copy.
COUNTS_TAG = "{}#inbox-v2"


def _cursor_secrets() -> list[str]:
    return [current_app.config["JWT_SECRET"], current_app.config["JWT_SECRET_PREVIOUS"]]


@bp.get("/notifications")
@user_required
@ratelimit.user_read
def list_notifications():
    query = load_query(list_query, multi=("type",))
    status, types, limit = query.get("status"), query.get("type"), query["limit"]
    after = None
    if "cursor" in query:
        after = cursors.decode(_cursor_secrets(), query["cursor"], g.user_id, status, types)
    items = store.list_notifications(get_db(), g.user_id, status, types, limit + 1, after)
    headers = {}
    next_cursor = None
    if len(items) > limit:
        del items[limit:]
        last = items[-1]
        next_cursor = cursors.encode(current_app.config["JWT_SECRET"], g.user_id, status, types,
                                     last["delivered_at"], last["notification_id"])
        params = {"cursor": next_cursor, "limit": limit}
        if status:
            params["status"] = status
        if types:
            params["type"] = ",".join(types)
        headers["Link"] = f'<{request.base_url}?{urlencode(params)}>; rel="next"'
    return conditional_json({"items": items, "next_cursor": next_cursor}, headers)


@bp.get("/notifications/groups")
@user_required
@ratelimit.user_read
def list_groups():
    query = load_query(groups_query)
    unread, limit = query["unread"], query["limit"]
    scope = "groups:unread" if unread else "groups"  # a cursor is bound to the user and the filter
    after = None
    if "cursor" in query:
        after = cursors.decode(_cursor_secrets(), query["cursor"], g.user_id, scope, None)
    rows = store.list_groups(get_db(), g.user_id, unread, limit + 1, after)
    items = [{"group_key": row["group_key"], "notifications_count": row["notifications_count"],
              "unread_count": row["unread_count"], "sample_actor_user_ids": row["sample_actor_user_ids"],
              "latest": {name: row[name] for name in NOTIFICATION_FIELDS},
              "oldest_delivered_at": row["oldest_delivered_at"]} for row in rows[:limit]]
    headers = {}
    next_cursor = None
    if len(rows) > limit:
        last = items[-1]["latest"]
        next_cursor = cursors.encode(current_app.config["JWT_SECRET"], g.user_id, scope, None,
                                     last["delivered_at"], last["notification_id"])
        params = {"cursor": next_cursor, "limit": limit, **({"unread": "true"} if unread else {})}
        headers["Link"] = f'<{request.base_url}?{urlencode(params)}>; rel="next"'
    return conditional_json({"items": items, "next_cursor": next_cursor}, headers)


@bp.get("/notifications/<uuid:notification_id>")
@user_required
@ratelimit.user_read
def get_notification(notification_id: UUID):
    load_query(no_query)
    return json_response(store.get_notification(get_db(), g.user_id, notification_id))


def _changed(action: str, count: int, **fields) -> None:
    metrics.record_notifications_changed(action, count)
    if count:
        log.info("notifications updated", extra={
            "event": "notifications_bulk_updated", "action": action, "user_id": g.user_id,
            "updated_count": count, **fields})


@bp.route("/notifications/<uuid:notification_id>/read", methods=["PUT", "PATCH"])
@user_required
@ratelimit.user_write
def mark_read(notification_id: UUID):
    load_query(no_query)
    item = store.mark_read(get_db(), g.user_id, notification_id, True)
    metrics.record_notifications_changed("read", 1)
    publisher.changed([g.user_id])
    log.info("notification marked read", extra={
        "event": "notification_marked_read", "user_id": g.user_id, "notification_id": str(notification_id)})
    return json_response(item)


@bp.delete("/notifications/<uuid:notification_id>/read")
@user_required
@ratelimit.user_write
def mark_unread(notification_id: UUID):
    load_query(no_query)
    item = store.mark_read(get_db(), g.user_id, notification_id, False)
    metrics.record_notifications_changed("unread", 1)
    publisher.changed([g.user_id])
    return json_response(item)


@bp.post("/notifications/mark-read")
@user_required
@ratelimit.user_write
def mark_read_bulk():
    body = load_body(mark_read_body)
    result = store.bulk_update(get_db(), g.user_id, "read", body)
    _changed("read", result["updated_count"])
    publisher.changed([g.user_id] if result["updated_count"] else [])
    log.info("notifications marked read", extra={
        "event": "notification_marked_read", "user_id": g.user_id, "updated_count": result["updated_count"]})
    return json_response(result)


@bp.post("/notifications/bulk")
@user_required
@ratelimit.user_write
def bulk_update():
    body = load_body(bulk_body)
    action = body.pop("action")
    result = store.bulk_update(get_db(), g.user_id, action, body)
    _changed(action, result["updated_count"])
    publisher.changed([g.user_id] if result["updated_count"] else [])
    return json_response(result)


@bp.put("/notifications/<uuid:notification_id>/snooze")
@user_required
@ratelimit.user_write
def snooze(notification_id: UUID):
    until = load_body(snooze_body)["until"]
    item = store.snooze(get_db(), g.user_id, notification_id, until)
    metrics.record_notifications_changed("snooze", 1)
    publisher.changed([g.user_id])
    log.info("notification snoozed", extra={
        "event": "notification_snoozed", "user_id": g.user_id, "notification_id": str(notification_id),
        "snoozed_until": item["snoozed_until"]})
    return json_response(item)


@bp.delete("/notifications/<uuid:notification_id>/snooze")
@user_required
@ratelimit.user_write
def wake(notification_id: UUID):
    load_query(no_query)
    item = store.snooze(get_db(), g.user_id, notification_id, None)
    metrics.record_notifications_changed("wake", 1)
    publisher.changed([g.user_id])
    log.info("notification woken", extra={
        "event": "notification_woken", "user_id": g.user_id, "notification_id": str(notification_id)})
    return json_response(item)


@bp.delete("/notifications/<uuid:notification_id>")
@user_required
@ratelimit.user_write
def delete_notification(notification_id: UUID):
    permanent = load_query(delete_query)["permanent"]
    store.delete_notification(get_db(), g.user_id, notification_id, permanent)
    metrics.record_notifications_changed("delete" if permanent else "archive", 1)
    publisher.changed([g.user_id])
    return Response(status=204)


@bp.get("/notifications/unread/count")
@user_required
@ratelimit.user_read
def unread_count():
    load_query(no_query)
    owner = COUNTS_TAG.format(g.user_id)
    # The version identifies the body: every write bumps it, and so does every fold of the clock
    # (an expiry, a snooze end) into the counts. A revalidation whose version still holds skips the
    # per-type counters in the database (by_type comes back None) and gets a 304.
    known = known_version(owner)
    counts = store.unread_counts(get_db(), g.user_id, known[0] if known else None)
    etag = version_etag(owner, counts["version"], counts["unread_count"])
    headers = {"X-Poll-Interval": str(current_app.config["POLL_INTERVAL_SECONDS"])}
    if counts["by_type"] is None:  # the version from If-None-Match still holds: that tag is `etag`
        return Response(status=304, headers={"ETag": etag, **headers})
    return not_modified_or_json(etag, {"unread_count": counts["unread_count"],
                                       "unseen_count": counts["unseen_count"], "by_type": counts["by_type"]},
                                headers)
