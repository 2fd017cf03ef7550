"""Live updates: a ticket for the stream (14) and the stream itself (15), held by Pushpin (GRIP).

The stream view answers once and is done: through Pushpin (a Grip-Sig that verifies) it sends
the first `counts` event plus the instructions to hold the stream on the user's channel; without
Pushpin it sends that event and `retry:`, so EventSource reconnects after the poll interval.
Events after the first are published by live/publisher.py, never written by a worker thread.
"""
from __future__ import annotations

import functools
from typing import Callable

from flask import Blueprint, Response, current_app, g, request
from marshmallow import Schema, fields, validate

from ..live import grip, publisher, tickets
from ..web import openapi, ratelimit
from ..db import store
from ..web.auth import user_required
from ..web.body import load_query
from ..db.pool import get_db
from ..db.rows import format_timestamp
from ..web.schemas import EmptyQuerySchema
from ..web.responses import json_response

bp = Blueprint("stream", __name__)

EVENT_STREAM = "text/event-stream"
RESUBSCRIBE_SECONDS = 0.5  # after a hold, when the counts are published again


class StreamQuerySchema(Schema):
    ticket = fields.String(validate=validate.Length(1, 2048))


stream_query = StreamQuerySchema()
no_query = EmptyQuerySchema()


STREAM_EXAMPLE = ('id: 4711\nevent: counts\ndata: {"unread_count":7,"unseen_count":2}\n\n'
                  'id: 4712\nevent: notification\ndata: {"notification_id":"3f0e…","title":"…",…}\n\n'
                  'id: 4712\nevent: counts\ndata: {"unread_count":8,"unseen_count":3}\n\n')
STREAM_DESCRIPTION = """\
Server-sent events (`text/event-stream`). Authenticate with `?ticket=` (from
`POST {prefix}/notifications/stream/ticket`; what a browser's `EventSource` can send) or with the
`Authorization: Bearer` JWT. A bad ticket is `401 invalid_token`, an expired one `401 token_expired`
(ask for a new ticket); a user JWT in `ticket` is not a ticket. Any other query parameter is `422`.

Events (`data` is one line of JSON; `id` is the user's change version, so a client can tell order:
events from different API processes may arrive out of order, and a `counts` event whose `id` is
lower than one already shown is stale and should be ignored. The `Last-Event-ID` a reconnecting
EventSource sends is not needed: every connection starts with the current counts):

- `counts` — `{"unread_count": int, "unseen_count": int}` (the inbox's, as endpoint 6). Always the
  first event, then after every change of the counts (create, read, unread, seen, archive, unarchive,
  delete, snooze, wake, retract, bulk) within 1 s of the commit, and within 60 s of a change only the
  clock makes (a snooze ending, an expiry). Through Pushpin the counts are sent once more about 0.5 s
  after the stream opens (possibly the same as the first): a change committed while the stream was
  being set up is never missed.
- `notification` — the notification object, for each notification created for the user; it comes
  just before the `counts` event that includes it. It may come twice (the same `notification_id`):
  when a producer retries a create whose answer it lost, the `duplicate` is published again if it is
  less than 60 s old (whether the first attempt got to publish cannot be known). Clients keep one
  per `notification_id`.

Through Pushpin (a `Grip-Sig` verifying with `GRIP_SIG_KEY`) the stream stays open (a comment line
keeps it alive every 20 s). Otherwise (no proxy, or a `Grip-Sig` that does not verify) the response
is the first event, then `retry: <POLL_INTERVAL_SECONDS × 1000>`, and it ends: EventSource reconnects
after that interval, so the stream degrades to polling. Events are best-effort: when Pushpin is
down or slow they are dropped (the request that caused them still succeeds) and the next event or
reconnection carries the current counts."""


TICKET_SCHEMA = {"type": "object", "required": ["ticket", "expires_at"], "additionalProperties": False,
                 "properties": {"ticket": {"type": "string",
                                           "description": "Opaque; reusable until expires_at."},
                                "expires_at": {"type": "string", "format": "date-time"}}}


def _event_schemas() -> dict[str, dict]:
    """The stream's events as component schemas. The 200's body is a text/event-stream string (what
    generated clients return as text); these say what each event in it is, for readers and tests."""
    event_id = {"type": "string", "pattern": "^[0-9]+$", "description": "The user's change version."}
    retry = {"type": "integer", "minimum": 0, "description": "Milliseconds before EventSource reconnects."}

    def event(name: str, data: str, description: str) -> dict:
        return {"type": "object", "required": ["event", "data", "id"], "description": description,
                "properties": {"event": {"const": name}, "id": event_id,
                               "data": {"type": "string", "contentMediaType": "application/json",
                                        "contentSchema": {"$ref": f"#/components/schemas/{data}"}},
                               "retry": retry}}
    return {
        "StreamCounts": {"type": "object", "required": ["unread_count", "unseen_count"],
                         "additionalProperties": False,
                         "description": "The `data` of a `counts` event: the inbox's counts (as endpoint 6).",
                         "properties": {"unread_count": {"type": "integer", "minimum": 0},
                                        "unseen_count": {"type": "integer", "minimum": 0}}},
        "StreamCountsEvent": event("counts", "StreamCounts", "A `counts` event, as its fields: `data` is "
                                                             "one line of JSON, a StreamCounts."),
        "StreamNotificationEvent": event("notification", "Notification",
                                         "A `notification` event, as its fields: `data` is one line of "
                                         "JSON, a Notification."),
    }


def ticket_or_user_required(view: Callable) -> Callable:
    """`?ticket=` (what EventSource can send) or, without one, the usual Bearer JWT."""
    with_jwt = user_required(view)

    @functools.wraps(view)
    def wrapper(*args, **kwargs):
        ticket = request.args.get("ticket")
        if ticket is None:
            return with_jwt(*args, **kwargs)
        g.user_id = tickets.verify(current_app.config, ticket)
        return view(*args, **kwargs)
    return wrapper


@bp.post("/notifications/stream/ticket")
@openapi.doc(
    "createStreamTicket", "A ticket for the live-update stream",
    description="For `GET .../notifications/stream?ticket=…` only (browsers' EventSource cannot send "
                "headers), bound to the caller, valid `STREAM_TICKET_TTL_SECONDS` (default 3600) and "
                "reusable until then (checked with the `JWT_LEEWAY_SECONDS` leeway of user tokens, for "
                "clock skew between API pods). Never logged. No body; any query parameter is `422`.",
    responses={201: {"description": "The ticket.", "headers": openapi.response_headers(*openapi.RATE_HEADERS),
                     "content": {"application/json": {
                         "schema": TICKET_SCHEMA,
                         "example": {"ticket": "eyJhbGciOiJIUzI1NiJ9.…",
                                     "expires_at": "2026-11-26T04:42:21.000000Z"}}}}})
@user_required
@ratelimit.user_write
def create_ticket():
    load_query(no_query)
    store.unread_counts(get_db(), g.user_id, by_type=False)  # 401/403 for a missing/inactive user
    ticket, expires_at = tickets.issue(current_app.config, g.user_id)
    return json_response({"ticket": ticket, "expires_at": format_timestamp(expires_at)}, status=201)


@bp.get("/notifications/stream")
@openapi.doc(
    "streamNotifications", "Live updates (server-sent events)",
    security=[{"bearerAuth": []}, {"streamTicket": []}], description=STREAM_DESCRIPTION,
    parameters=({"in": "query", "name": "ticket", "required": False,
                 "schema": {"type": "string", "maxLength": 2048},
                 "description": "A stream ticket (instead of the Authorization header)."},),
    schemas=_event_schemas(),
    responses={200: {"description": "An event stream: `counts` first, then `notification` and `counts` "
                                    "events (held by Pushpin), or one event and `retry:`. The body is "
                                    "`text/event-stream` text; each event is a StreamCountsEvent or a "
                                    "StreamNotificationEvent (component schemas).",
                     "headers": openapi.response_headers(*openapi.RATE_HEADERS),
                     "content": {EVENT_STREAM: {
                         "schema": {"type": "string",
                                    "description": "Server-sent events (the WHATWG text/event-stream "
                                                   "format): blank-line separated `id:`/`event:`/`data:` "
                                                   "blocks and a final `retry:` when the stream ends."},
                         "example": STREAM_EXAMPLE}}}})
@ticket_or_user_required
@ratelimit.user_read
def stream():
    load_query(stream_query)
    config = current_app.config
    counts = store.unread_counts(get_db(), g.user_id, by_type=False)
    first = grip.counts_event(counts)
    headers = {"X-Accel-Buffering": "no"}  # nginx in front must not buffer an event stream
    if grip.from_proxy(request.headers.get("Grip-Sig"), config["GRIP_SIG_KEY"]):
        headers.update(grip.hold_headers(g.user_id))
        body = first
        # Pushpin subscribes the channel only once it has this response: an event published since
        # the counts above were read is lost to this stream. The counts again, once it surely
        # holds it (an older one is ignored by its id), close that gap.
        publisher.changed_later(g.user_id, RESUBSCRIBE_SECONDS)
    else:  # nobody will hold this stream: one event, then EventSource retries after the interval
        body = first + f"retry: {config['POLL_INTERVAL_SECONDS'] * 1000}\n\n"
    return Response(body, status=200, headers=headers, mimetype=EVENT_STREAM)
