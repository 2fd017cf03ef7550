"""The notifications resource: services create them; the end user lists, reads, changes and counts theirs."""
from __future__ import annotations

import datetime as dt
import logging
from datetime import timedelta
from urllib.parse import urlencode
from uuid import UUID

from flask import Blueprint, Response, current_app, g, request, url_for

from ..web import cursors, openapi, ratelimit
from .. import metrics
from ..live import publisher
from ..db import store
from ..db.rows import NOTIFICATION_FIELDS
from ..web.auth import service_required, user_required
from ..web.body import load_body, load_query
from ..db.pool import get_db
from ..errors import validation_error
from ..web.etags import conditional_json, known_version, not_modified_or_json, version_etag
from ..web.responses import json_response
from ..web.schemas import (MAX_TYPE_FILTERS, BulkResultSchema, BulkSchema,
                           CreateNotificationSchema, CreateResponseSchema, DeleteQuerySchema,
                           EmptyQuerySchema, GroupListSchema, GroupsQuerySchema, ListQuerySchema,
                           MarkReadResultSchema, MarkReadSchema, NotificationListSchema, NotificationSchema,
                           SnoozeSchema, UnreadCountSchema, check_text)

log = logging.getLogger(__name__)
bp = Blueprint("notifications", __name__)

list_query = ListQuerySchema()
groups_query = GroupsQuerySchema()
delete_query = DeleteQuerySchema()
no_query = EmptyQuerySchema()
create_body = CreateNotificationSchema()
mark_read_body = MarkReadSchema()
bulk_body = BulkSchema()
snooze_body = SnoozeSchema()
# The unread count's ETag owner: inbox v2 bodies (with unseen_count) never validate a tag made for
# a v1 body of the same version, and one user's tag never validates another's copy.
COUNTS_TAG = "{}#inbox-v2"
# The log line of a change to one notification, by action (the other actions are counted, not logged).
LOGGED_CHANGES = {"read": ("notification marked read", "notification_marked_read"),
                  "snooze": ("notification snoozed", "notification_snoozed"),
                  "wake": ("notification woken", "notification_woken")}

# Docs shared by several operations.
ONE = {200: openapi.ok("The notification.", NotificationSchema, openapi.EXAMPLE_NOTIFICATION,
                       links=openapi.links_from("/notification_id"))}
EXAMPLE_SNOOZED = {**openapi.EXAMPLE_NOTIFICATION, "status": "snoozed",
                   "delivered_at": "2026-11-27T08:00:00.000000Z",
                   "snoozed_until": "2026-11-27T08:00:00.000000Z"}
PAGE_SIZE_DOC = "Page size, 1-100."
PAGE_HEADERS = ("ETag", "Link") + openapi.RATE_HEADERS


def _cursor_secrets() -> list[str]:
    return [current_app.config["JWT_SECRET"], current_app.config["JWT_SECRET_PREVIOUS"]]


@bp.get("/notifications")
@openapi.doc(
    "listNotifications", "List the caller's notifications, newest first",
    description="Keyset-paginated, ordered by `(delivered_at, notification_id)` descending (`delivered_at`: "
                "when it entered the inbox, its `created_at` or the end of its last snooze; a woken "
                "notification is on top). Snoozed notifications are only listed under `status=snoozed` (and "
                "`all`). Expired notifications are never returned. The cost of a page does not grow with its "
                "depth.",
    query=list_query,
    query_docs={"status": "`unread`, `read`, `archived`, `snoozed` or `all`. Absent: the inbox (unread and "
                          "read; not archived, not snoozed); `all` includes archived and snoozed.",
                "type": "Notification types: repeat the parameter and/or comma-separate; at most "
                        f"{MAX_TYPE_FILTERS}.",
                "limit": PAGE_SIZE_DOC,
                "cursor": "Opaque `next_cursor` of the previous page; bound to the user and to "
                          "`status`/`type` (not to `limit`). Tampered with or out of scope: 422."},
    parameters=("If-None-Match",),
    responses={200: openapi.ok("A page of notifications.", NotificationListSchema,
                               {"items": [openapi.EXAMPLE_NOTIFICATION], "next_cursor": None},
                               headers=PAGE_HEADERS, links=openapi.links_from("/items/0/notification_id")),
               304: openapi.not_modified()})
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


def _dedupe_key(body: dict) -> str | None:
    """The body's dedupe_key and the Idempotency-Key header are the same thing; they must agree."""
    header = request.headers.get("Idempotency-Key")
    key = body.get("dedupe_key")
    if header is not None:
        problem = None
        if not 1 <= len(header) <= 128:
            problem = "Idempotency-Key must be 1-128 characters."
        elif key is not None and key != header:
            problem = "dedupe_key and the Idempotency-Key header must be equal."
        else:
            try:
                check_text(header)
            except Exception:
                problem = "Idempotency-Key must be valid text."
        if problem:
            raise validation_error({"dedupe_key": [problem]})
        key = header
    return key


RETRY_PUBLISH_SECONDS = 60  # a `duplicate` this young may be a retry after a lost answer


def _to_publish(results: list[dict]) -> list[dict]:
    """The notifications to publish: each created one, and each `duplicate` created within the last
    RETRY_PUBLISH_SECONDS. A producer whose create committed but whose answer was lost retries and
    gets `duplicate`: whether the first attempt got to publish is unknown (its worker may have died
    after the commit), so it is published again; streams may see a notification twice (same
    notification_id; the stream's description says so) but never miss one."""
    young = dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=RETRY_PUBLISH_SECONDS)
    chosen: dict[str, dict] = {}
    for result in results:
        notification = result["notification"]
        retried = (result["result"] == "duplicate"
                   and dt.datetime.fromisoformat(notification["created_at"]) > young)
        if result["result"] == "created" or retried:
            chosen.setdefault(notification["notification_id"], notification)  # a repeated user id: once
    return list(chosen.values())


@bp.post("/notifications")
@openapi.doc(
    "createNotifications", "Create a notification for one user or fan out to many (internal services)",
    tag="internal", security=openapi.SERVICE,
    description="Exactly one of `user_id` / `user_ids`. Each target user gets one result: `created`, "
                "`duplicate` (same `dedupe_key` already stored: the original is returned), `suppressed` "
                "(in-app off for this type), `user_not_found` or `user_inactive`.",
    parameters=("Idempotency-Key",),
    request=openapi.body(CreateNotificationSchema, "The notification and its targets.", {
        "user_id": openapi.EXAMPLE_USER, "notification_type": "comment",
        "title": "Ana commented on your post", "message": "Nice route!",
        "actor_user_id": openapi.EXAMPLE_NOTIFICATION["actor_user_id"],
        "target_type": "post", "target_id": "post-812", "action_url": "https://app.example.com/posts/812#c-9",
        "payload": {"comment_id": 9}, "priority": "normal", "group_key": "post-812-comments",
        "dedupe_key": "comment-9"}),
    responses={
        201: openapi.ok("At least one notification was created.", CreateResponseSchema,
                        {"created_count": 1,
                         "results": [{"user_id": openapi.EXAMPLE_USER, "result": "created",
                                      "notification": openapi.EXAMPLE_NOTIFICATION}]},
                        headers=("Location",) + openapi.RATE_HEADERS,
                        links=openapi.links_from("/results/0/notification/notification_id")),
        200: openapi.ok("Nothing was created (duplicates, suppressed, unknown or inactive users).",
                        CreateResponseSchema,
                        {"created_count": 0,
                         "results": [{"user_id": openapi.EXAMPLE_USER, "result": "duplicate",
                                      "notification": openapi.EXAMPLE_NOTIFICATION}]},
                        headers=("Idempotent-Replayed",) + openapi.RATE_HEADERS)})
@service_required
@ratelimit.service
def create_notification():
    body = load_body(create_body)
    body["dedupe_key"] = _dedupe_key(body)
    single = "user_id" in body
    user_ids = [body["user_id"]] if single else body["user_ids"]
    rows = store.create_notifications(get_db(), user_ids, body,
                                      queue_email=bool(current_app.config["EMAIL_API_URL"]))
    results = []
    created = duplicates = 0
    for row in rows:
        result = row.pop("result")
        created += result == "created"
        duplicates += result == "duplicate"
        results.append({"user_id": str(row["user_id"]), "result": result,
                        "notification": row if result in ("created", "duplicate") else None})
    metrics.record_notifications_created(body["notification_type"], created)
    publisher.changed((), _to_publish(results))
    headers = {}
    if duplicates == len(results):
        headers["Idempotent-Replayed"] = "true"
    if single and results[0]["notification"] is not None and created:
        headers["Location"] = url_for("notifications.get_notification", _external=True,
                                      notification_id=results[0]["notification"]["notification_id"])
    if created:
        log.info("notifications created", extra={
            "event": "notification_created", "service": g.service,
            "notification_type": body["notification_type"], "created_count": created,
            "target_count": len(results)})
    return json_response({"created_count": created, "results": results},
                         status=201 if created else 200, headers=headers)


@bp.get("/notifications/groups")
@openapi.doc(
    "listNotificationGroups", "The inbox, grouped, newest group first",
    description="Inbox notifications that share a non-null `group_key` form one group; a notification "
                "without one is a group of its own (`group_key` null). Groups are ordered by their `latest` "
                "member, newest first (a group that gains a member moves to the top). `unread=true` keeps "
                "the groups with an unread member; each group's numbers, `latest` and sample still cover all "
                "its inbox members. Keyset-paginated like the list (cursor bound to the user and to "
                "`unread`); a walk never shows a group twice unless its members changed meanwhile. The "
                "counts follow every state change and the clock (snooze ends, expiry). A page costs the same "
                "whatever the size of a group or the depth of the page.",
    query=groups_query,
    query_docs={"limit": PAGE_SIZE_DOC,
                "cursor": "Opaque `next_cursor` of the previous page; bound to the user and to `unread`. "
                          "Tampered with or out of scope: 422.",
                "unread": "`true`: only groups with an unread member. `false` (default). Also `1`/`0`."},
    parameters=("If-None-Match",),
    responses={200: openapi.ok("A page of groups.", GroupListSchema, {
        "items": [{"group_key": "post-812-likes", "notifications_count": 50, "unread_count": 3,
                   "sample_actor_user_ids": [openapi.EXAMPLE_NOTIFICATION["actor_user_id"]],
                   "latest": {**openapi.EXAMPLE_NOTIFICATION, "group_key": "post-812-likes",
                              "notification_type": "like"},
                   "oldest_delivered_at": "2026-11-20T08:00:00.000000Z"}],
        "next_cursor": None}, headers=PAGE_HEADERS),
        304: openapi.not_modified()})
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
@openapi.doc("getNotification", "One notification", query=no_query, responses=ONE)
@user_required
@ratelimit.user_read
def get_notification(notification_id: UUID):
    load_query(no_query)
    return json_response(store.get_notification(get_db(), g.user_id, notification_id))


def _changed_one(action: str, notification_id: UUID, **fields) -> None:
    """After a change to one of the caller's notifications: count it, tell their stream, log it."""
    metrics.record_notifications_changed(action, 1)
    publisher.changed([g.user_id])
    if action in LOGGED_CHANGES:
        message, event = LOGGED_CHANGES[action]
        log.info(message, extra={"event": event, "user_id": g.user_id,
                                 "notification_id": str(notification_id), **fields})


def _changed_many(action: str, count: int,
                  line: tuple[str, str] = ("notifications updated", "notifications_bulk_updated")) -> None:
    """After a bulk change of the caller's notifications: count them, tell their stream, log it
    (one line: `line` is its message and event)."""
    metrics.record_notifications_changed(action, count)
    publisher.changed([g.user_id] if count else [])
    if count:
        message, event = line
        log.info(message, extra={"event": event, "action": action, "user_id": g.user_id,
                                 "updated_count": count})


@bp.route("/notifications/<uuid:notification_id>/read", methods=["PUT", "PATCH", "DELETE"])
@openapi.doc(
    "markNotificationRead", "Mark read", method="put",
    description="Idempotent: a read notification keeps its first `read_at`. Reading sets `seen_at` when it "
                "is null. On an archived notification only `read_at` is recorded (it stays archived). A "
                "snoozed notification is `409 notification_snoozed`.",
    query=no_query, responses=ONE, errors=(409,))
@openapi.doc("markNotificationReadPatch", "Mark read (PATCH spelling)", method="patch",
             description="Same as PUT (a snoozed notification is `409 notification_snoozed`).",
             query=no_query, responses=ONE, errors=(409,))
@openapi.doc("markNotificationUnread", "Mark unread", method="delete",
             description="Clears the read state; `seen_at` is kept. A snoozed notification is "
                         "`409 notification_snoozed`.",
             query=no_query, responses=ONE, errors=(409,))
@user_required
@ratelimit.user_write
def set_read(notification_id: UUID):
    """The read state is a sub-resource: PUT (or PATCH) sets it, DELETE clears it."""
    load_query(no_query)
    read = request.method != "DELETE"
    item = store.mark_read(get_db(), g.user_id, notification_id, read)
    _changed_one("read" if read else "unread", notification_id)
    return json_response(item)


@bp.post("/notifications/mark-read")
@openapi.doc(
    "markNotificationsReadBulk", "Mark many notifications read in one statement",
    description="Action `read` of `POST /notifications/bulk`. At least one of `notification_ids`, "
                "`notification_type`, `all: true`; they combine as AND. `before` narrows any of them "
                "(delivered at or before it) but is not a selector alone; `all: false` is the same as "
                "leaving `all` out. Ids that are not the caller's or do not exist are skipped; snoozed ones "
                "are not changed.",
    request=openapi.body(MarkReadSchema, "What to mark read.",
                         {"all": True, "before": "2026-11-26T03:40:00Z"}),
    responses={200: openapi.ok("`updated_count` counts unread -> read transitions; `unread_count` and "
                               "`unseen_count` are the caller's after it.", MarkReadResultSchema,
                               {"updated_count": 12, "unread_count": 3, "unseen_count": 0})})
@user_required
@ratelimit.user_write
def mark_read_bulk():
    body = load_body(mark_read_body)
    result = store.bulk_update(get_db(), g.user_id, "read", body)
    # v1's named event for this endpoint, instead of (not beside) the generic bulk one
    _changed_many("read", result["updated_count"], LOGGED_CHANGES["read"])
    return json_response(result)


@bp.post("/notifications/bulk")
@openapi.doc(
    "bulkUpdateNotifications", "One action on many notifications, in one transaction",
    description="`action`: `seen` (unseen notifications of the inbox), `read` (unread ones; sets `read_at` "
                "and, when null, `seen_at`), `unread` (read ones of the inbox), `archive` (unread, read or "
                "snoozed ones; archiving a snoozed one ends the snooze as a wake would), `unarchive` "
                "(archived ones, back to their read state), `delete` (any, for good). Snoozed notifications "
                "are changed only by `archive` and `delete`. Selectors combine as AND; at least one of "
                "`notification_ids` (1-1000; others' or unknown ids are skipped), `notification_type`, "
                "`group_key`, `status` (the state to act on) or `all: true`; `before` narrows "
                "(`delivered_at` at or before it) but is not a selector alone; `all: false` is the same as "
                "leaving `all` out. A user with 100 000 notifications can archive them all in one call.",
    request=openapi.body(BulkSchema, "The action and what it applies to.",
                         {"action": "archive", "notification_type": "like", "group_key": "post-812-likes",
                          "before": "2026-11-26T03:40:00Z"}),
    responses={200: openapi.ok("`updated_count` counts the notifications whose state changed; the counts are "
                               "the caller's after it.", BulkResultSchema,
                               {"updated_count": 40, "unread_count": 3, "unseen_count": 0})})
@user_required
@ratelimit.user_write
def bulk_update():
    body = load_body(bulk_body)
    action = body.pop("action")
    result = store.bulk_update(get_db(), g.user_id, action, body)
    _changed_many(action, result["updated_count"])
    return json_response(result)


@bp.put("/notifications/<uuid:notification_id>/snooze")
@openapi.doc(
    "snoozeNotification", "Snooze: hide it from the inbox and every count until `until`",
    description="`until` must be at least 60 s and at most 90 days ahead and not after the notification's "
                "`expires_at` (else 422). While snoozed: `status: snoozed`, unread, unseen, `delivered_at` = "
                "`snoozed_until` = `until`; listed under `status=snoozed` only. At `until` it is back in the "
                "inbox as if just delivered (on top, unread, unseen); nothing needs to be called. Snoozing a "
                "snoozed notification moves `until`; an archived one is `409 notification_archived`.",
    request=openapi.body(SnoozeSchema, "When it comes back.", {"until": openapi.Ahead(timedelta(days=7))}),
    responses={200: openapi.ok("The snoozed notification.", NotificationSchema, EXAMPLE_SNOOZED,
                               links=openapi.links_from("/notification_id"))},
    errors=(409,))
@user_required
@ratelimit.user_write
def snooze(notification_id: UUID):
    until = load_body(snooze_body)["until"]
    item = store.snooze(get_db(), g.user_id, notification_id, until)
    _changed_one("snooze", notification_id, snoozed_until=item["snoozed_until"])
    return json_response(item)


@bp.delete("/notifications/<uuid:notification_id>/snooze")
@openapi.doc(
    "wakeNotification", "Wake now: end a snooze at once",
    description="The notification is back in the inbox at once: `delivered_at` = `snoozed_until` = now, "
                "unread, unseen. On a notification that is not snoozed it changes nothing (200 with it).",
    query=no_query, responses=ONE)
@user_required
@ratelimit.user_write
def wake(notification_id: UUID):
    load_query(no_query)
    item = store.snooze(get_db(), g.user_id, notification_id, None)
    _changed_one("wake", notification_id)
    return json_response(item)


@bp.delete("/notifications/<uuid:notification_id>")
@openapi.doc(
    "deleteNotification", "Archive a notification, or delete it for good",
    description="Archiving sets `status: archived` and `archived_at`; it leaves the inbox and the unread "
                "count. Archiving an archived notification is 204 again.",
    query=delete_query,
    query_docs={"permanent": "`false` (default) archives; `true` deletes for good. Also `1`/`0`; anything "
                             "else is 422."},
    responses={204: {"description": "Archived or deleted; no body.",
                     "headers": openapi.response_headers(*openapi.RATE_HEADERS)}})
@user_required
@ratelimit.user_write
def delete_notification(notification_id: UUID):
    permanent = load_query(delete_query)["permanent"]
    store.delete_notification(get_db(), g.user_id, notification_id, permanent)
    _changed_one("delete" if permanent else "archive", notification_id)
    return Response(status=204)


@bp.get("/notifications/unread/count")
@openapi.doc(
    "getUnreadCount", "Unread counts (the polled endpoint)",
    description="Only the inbox counts: archived, snoozed and expired notifications do not. `by_type` counts "
                "unread ones and leaves out types with none; `unseen_count` counts the inbox's notifications "
                "never seen (a badge). Poll with If-None-Match and honour X-Poll-Interval. The ETag changes "
                "whenever this body would: after any write, and when the clock alone changes it (a snooze "
                "ends, a notification expires) - a 304 is never answered for a body that is no longer "
                "current.",
    query=no_query, parameters=("If-None-Match",),
    responses={200: openapi.ok("The counts.", UnreadCountSchema,
                               {"unread_count": 7, "unseen_count": 2,
                                "by_type": {"comment": 4, "mention": 3}},
                               headers=("ETag", "X-Poll-Interval") + openapi.RATE_HEADERS),
               304: openapi.not_modified("X-Poll-Interval")})
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
