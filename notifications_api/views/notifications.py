"""The end user's notifications: list, read one, mark read/unread, bulk mark, archive/delete, count."""
from __future__ import annotations

import logging
from urllib.parse import urlencode
from uuid import UUID

from flask import Blueprint, Response, current_app, g, request

from .. import cursors, publisher, ratelimit, store
from ..auth import user_required
from ..db import get_db
from ..schemas import (NOTIFICATION_FIELDS, DeleteQuerySchema, EmptyQuerySchema, ListQuerySchema,
                       MarkReadSchema, notification_dict)
from ..web import (conditional_json, json_response, known_version, load_body, load_query,
                   not_modified_or_json, version_etag)

log = logging.getLogger(__name__)
bp = Blueprint("notifications", __name__)

list_query = ListQuerySchema()
delete_query = DeleteQuerySchema()
no_query = EmptyQuerySchema()
mark_read_body = MarkReadSchema()
# positions in an activity.notification_out row (the keyset of the next page)
CREATED_AT = NOTIFICATION_FIELDS.index("created_at")
NOTIFICATION_ID = NOTIFICATION_FIELDS.index("notification_id")


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
    rows = store.list_notifications(get_db(), g.user_id, status, types, limit + 1, after)
    items = [notification_dict(row) for row in rows[:limit]]
    headers = {}
    next_cursor = None
    if len(rows) > limit:
        last = rows[limit - 1]
        next_cursor = cursors.encode(current_app.config["JWT_SECRET"], g.user_id, status, types,
                                     last[CREATED_AT], last[NOTIFICATION_ID])
        params = {"cursor": next_cursor, "limit": limit}
        if status:
            params["status"] = status
        if types:
            params["type"] = ",".join(types)
        headers["Link"] = f'<{request.base_url}?{urlencode(params)}>; rel="next"'
    return conditional_json({"items": items, "next_cursor": next_cursor}, headers)


@bp.get("/notifications/<uuid:notification_id>")
@user_required
@ratelimit.user_read
def get_notification(notification_id: UUID):
    load_query(no_query)
    return json_response(notification_dict(store.get_notification(get_db(), g.user_id, notification_id)))


@bp.route("/notifications/<uuid:notification_id>/read", methods=["PUT", "PATCH"])
@user_required
@ratelimit.user_write
def mark_read(notification_id: UUID):
    load_query(no_query)
    row = store.mark_read(get_db(), g.user_id, notification_id, True)
    publisher.changed([g.user_id])
    log.info("notification marked read", extra={
        "event": "notification_marked_read", "user_id": g.user_id, "notification_id": str(notification_id)})
    return json_response(notification_dict(row))


@bp.delete("/notifications/<uuid:notification_id>/read")
@user_required
@ratelimit.user_write
def mark_unread(notification_id: UUID):
    load_query(no_query)
    row = store.mark_read(get_db(), g.user_id, notification_id, False)
    publisher.changed([g.user_id])
    return json_response(notification_dict(row))


@bp.post("/notifications/mark-read")
@user_required
@ratelimit.user_write
def mark_read_bulk():
    body = load_body(mark_read_body)
    updated, unread = store.mark_read_bulk(
        get_db(), g.user_id, body.get("notification_ids"), body.get("notification_type"),
        body.get("all", False), body.get("before"))
    publisher.changed([g.user_id] if updated else [])
    log.info("notifications marked read", extra={
        "event": "notification_marked_read", "user_id": g.user_id, "updated_count": updated})
    return json_response({"updated_count": updated, "unread_count": unread})


@bp.delete("/notifications/<uuid:notification_id>")
@user_required
@ratelimit.user_write
def delete_notification(notification_id: UUID):
    permanent = load_query(delete_query)["permanent"]
    store.delete_notification(get_db(), g.user_id, notification_id, permanent)
    publisher.changed([g.user_id])
    return Response(status=204)


@bp.get("/notifications/unread/count")
@user_required
@ratelimit.user_read
def unread_count():
    load_query(no_query)
    user_id = g.user_id
    # The ETag comes from (version, count), not from the body: a revalidation whose pair still
    # holds skips the per-type counters in the database (by_type comes back None) and gets a 304.
    count, by_type, version = store.unread_counts(get_db(), user_id, True, known_version(user_id))
    etag = version_etag(user_id, version, count)
    headers = {"X-Poll-Interval": str(current_app.config["POLL_INTERVAL_SECONDS"])}
    if by_type is None:  # the pair from If-None-Match still holds: that tag is `etag`
        return Response(status=304, headers={"ETag": etag, **headers})
    return not_modified_or_json(etag, {"unread_count": count, "by_type": by_type}, headers)
