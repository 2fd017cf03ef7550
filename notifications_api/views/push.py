"""Web Push subscriptions (endpoints 16-19): the VAPID public key, and the user's browsers.

When push is not configured (VAPID_PRIVATE_KEY unset) every one of them answers 404 not_found, before
any credential is looked at (API.md ranks routing 404s first). Endpoints and keys are capabilities:
never returned, logged or put in a metric; log lines name the endpoint's origin only.
"""
from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from uuid import UUID

from flask import Blueprint, Response, current_app, g, request
from werkzeug.exceptions import NotFound

from ..channels.push_crypto import b64url, public_key_bytes
from ..channels.push_sender import EndpointPolicy
from ..config import load_vapid_private_key
from ..db import push_store
from ..db.pool import get_db
from ..errors import validation_error
from ..web import openapi, ratelimit
from ..web.auth import user_required
from ..web.body import load_body, load_query
from ..web.push_schemas import (PushSubscribeSchema, PushSubscriptionListSchema, PushSubscriptionSchema,
                                PushUnsubscribeQuerySchema, VapidPublicKeySchema)
from ..web.responses import json_response
from ..web.schemas import EmptyQuerySchema

log = logging.getLogger(__name__)
bp = Blueprint("push", __name__)

subscribe_body = PushSubscribeSchema()
unsubscribe_query = PushUnsubscribeQuerySchema()
no_query = EmptyQuerySchema()
PUSH_STATE = "push"  # app.extensions key: (public key text, EndpointPolicy), built on first use
EXAMPLE_SUBSCRIPTION = {
    "subscription_id": "6c8e1f0a-2b3d-4e5f-8a9b-0c1d2e3f4a5b",
    "endpoint_origin": "https://fcm.googleapis.com", "user_agent": "Firefox 133 on Linux",
    "created_at": "2026-11-26T03:42:21.123456Z", "expiration_time": None, "last_success_at": None,
    "consecutive_failures": 0}
EXAMPLE_KEY = "BEl62iUYgUivxIkv69yViEuiBIa-Ib9-SkvMeAtA3LFgDzkrxZJjSgSnfckjBJuBkr3qBUYIHBQFLXYp5Nksh8U"
EXAMPLE_P256DH = "BNcRdreALRFXTkOOUHK1EtK2wtaz5Ry4YfYCA_0QTpQtUbVlUls0VJXg7A8u-Ts1XbjhazAkj7I99e8QcYP7DkM"
NO_CONTENT = {"description": "Forgotten.", "headers": openapi.response_headers(*openapi.RATE_HEADERS)}
NOT_CONFIGURED = " When push is not configured (no VAPID_PRIVATE_KEY) this answers 404 `not_found`."


def _state() -> tuple[str, EndpointPolicy]:
    app = current_app._get_current_object()
    state = app.extensions.get(PUSH_STATE)
    if state is None:
        key = load_vapid_private_key(app.config["VAPID_PRIVATE_KEY"])  # validated by load_config
        state = app.extensions.setdefault(PUSH_STATE, (
            b64url(public_key_bytes(key)), EndpointPolicy(tuple(app.config["PUSH_ALLOWED_HOSTS"]))))
    return state


def push_configured(view: Callable) -> Callable:
    """404 not_found unless VAPID_PRIVATE_KEY is set (outermost: before credentials)."""
    @functools.wraps(view)
    def wrapper(*args, **kwargs):
        if not current_app.config.get("VAPID_PRIVATE_KEY"):
            raise NotFound()
        return view(*args, **kwargs)
    return wrapper


def _allowed(endpoint: str) -> str:
    refusal = _state()[1].refusal(endpoint)
    if refusal:
        raise validation_error({"endpoint": [f"The endpoint {refusal}."]})
    return endpoint


@bp.get("/push/vapid-public-key")
@openapi.doc(
    "getVapidPublicKey", "The server's VAPID public key (application server key)", tag="push", security=[],
    query=no_query,
    description="Pass it to `pushManager.subscribe({userVisibleOnly: true, applicationServerKey})`. The "
                "same for every user; it changes only when the operators rotate VAPID_PRIVATE_KEY (then "
                "every browser must subscribe again)." + NOT_CONFIGURED,
    responses={200: openapi.ok("The key.", VapidPublicKeySchema, {"public_key": EXAMPLE_KEY}, headers=())},
    errors=(404, 422, 429))
@push_configured
def get_vapid_public_key():
    load_query(no_query)
    return json_response({"public_key": _state()[0]})


@bp.post("/push/subscriptions")
@openapi.doc(
    "createPushSubscription", "Register this browser for Web Push", tag="push",
    description=("The body is `PushSubscription.toJSON()` (plus an optional `user_agent` label, at most "
                 "200 characters). `201` for a new browser; `200` when the caller had this endpoint "
                 "already (keys, label and expiration replaced: browsers re-subscribe). An endpoint "
                 "registered by another user moves to the caller (`201`, a new `subscription_id`; the "
                 "other user's subscription and its pending pushes are gone). At most 20 per user: the "
                 "21st removes the one registered longest ago. The endpoint's host must be allowed by "
                 "PUSH_ALLOWED_HOSTS (default: the push services of Chrome/Edge, Firefox, Safari and "
                 "Windows), over https; it is never fetched or resolved here. Errors are `422` keyed by "
                 "path (`endpoint`, `keys.p256dh`, `keys.auth`). The endpoint and keys are never "
                 "returned or logged. A notification is fanned out to the user's browsers when the push "
                 "worker picks its create up (normally within a second), not at the create: a browser "
                 "registered in between receives it, one that moved to another user in between does not."
                 + NOT_CONFIGURED),
    request=openapi.body(PushSubscribeSchema, "The browser's subscription.", {
        "endpoint": "https://fcm.googleapis.com/fcm/send/c1KrmpTuRm0:APA91bGq", "expirationTime": None,
        "keys": {"p256dh": EXAMPLE_P256DH, "auth": "tBHItJI5svbpez7KI4CCXg"},
        "user_agent": "Firefox 133 on Linux"}),
    responses={201: openapi.ok("Registered (new, or moved from another user).", PushSubscriptionSchema,
                               EXAMPLE_SUBSCRIPTION),
               200: openapi.ok("Already the caller's: updated.", PushSubscriptionSchema,
                               EXAMPLE_SUBSCRIPTION)},
    errors=(404,))
@push_configured
@user_required
@ratelimit.user_write
def create_subscription():
    body = load_body(subscribe_body)
    endpoint = _allowed(body["endpoint"])
    expiration = body["expirationTime"] if body["expirationTime"] is not None else body["expiration_time"]
    row = push_store.subscribe(get_db(), g.user_id, endpoint, body["keys"]["p256dh"], body["keys"]["auth"],
                               body["user_agent"], expiration)
    result, removed = row.pop("result"), row.pop("removed_count")
    log.info("push subscription registered", extra={
        "event": "push_subscription_registered", "user_id": g.user_id, "result": result,
        "subscription_id": row["subscription_id"], "endpoint_origin": row["endpoint_origin"]})
    if removed:
        log.info("push subscriptions removed: the per-user limit", extra={
            "event": "push_subscription_removed", "user_id": g.user_id, "reason": "limit",
            "removed_count": removed})
    return json_response(row, 200 if result == "updated" else 201)


@bp.get("/push/subscriptions")
@openapi.doc(
    "listPushSubscriptions", "The caller's browsers", tag="push", query=no_query,
    description="Newest first; at most 20." + NOT_CONFIGURED,
    responses={200: openapi.ok("The subscriptions.", PushSubscriptionListSchema,
                               {"items": [EXAMPLE_SUBSCRIPTION]})},
    errors=(404,))
@push_configured
@user_required
@ratelimit.user_read
def list_subscriptions():
    load_query(no_query)
    return json_response({"items": push_store.subscriptions(get_db(), g.user_id)})


def _forgotten(removed: dict) -> Response:
    log.info("push subscription removed", extra={
        "event": "push_subscription_removed", "user_id": g.user_id, "reason": "user",
        "subscription_id": removed["subscription_id"], "endpoint_origin": removed["endpoint_origin"]})
    return Response(status=204)


@bp.delete("/push/subscriptions/<uuid:subscription_id>")
@openapi.doc(
    "deletePushSubscription", "Forget one browser", tag="push", query=no_query,
    description="`204`; its pending pushes are dropped. Another user's or an unknown id: `404 "
                "subscription_not_found`." + NOT_CONFIGURED,
    responses={204: NO_CONTENT},
    errors=(404,))
@push_configured
@user_required
@ratelimit.user_write
def delete_subscription(subscription_id: UUID):
    load_query(no_query)
    return _forgotten(push_store.unsubscribe(get_db(), g.user_id, subscription_id=subscription_id))


@bp.delete("/push/subscriptions")
@openapi.doc(
    "deletePushSubscriptionByEndpoint", "Forget this browser by its endpoint", tag="push",
    query=unsubscribe_query, query_docs={"endpoint": "The browser's endpoint URL, URL-encoded."},
    description="For a browser that lost its `subscription_id` (e.g. after `pushManager` unsubscribed "
                "it): `204`, or `404 subscription_not_found` when the caller has no such endpoint."
                + NOT_CONFIGURED,
    responses={204: NO_CONTENT},
    errors=(404,))
@push_configured
@user_required
@ratelimit.user_write
def delete_subscription_by_endpoint():
    if not request.args:  # (load_query reads an empty query as the schema's defaults: there is none here)
        raise validation_error({"endpoint": ["Missing data for required field."]})
    query = load_query(unsubscribe_query)
    return _forgotten(push_store.unsubscribe(get_db(), g.user_id, endpoint=query["endpoint"]))
