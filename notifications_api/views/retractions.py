"""Retractions: an internal service takes back the notifications it created (by service token)."""
from __future__ import annotations

import logging

from flask import Blueprint, g

from .. import metrics
from ..web import openapi, ratelimit
from ..live import publisher
from ..db import store
from ..web.auth import service_required
from ..db.pool import get_db
from ..web.schemas import RetractResultSchema, RetractSchema
from ..web.body import load_body
from ..web.responses import json_response

log = logging.getLogger(__name__)
bp = Blueprint("retractions", __name__)

retract_body = RetractSchema()


@bp.post("/notifications/retract")
@openapi.doc(
    "retractNotifications", "The producer takes notifications back (internal services)",
    tag="internal", security=openapi.SERVICE,
    description="Exactly one of `dedupe_key` or the pair `target_type` + `target_id`; `notification_type`, "
                "`actor_user_id` and `user_ids` (1-1000) narrow. Every matching notification of every user "
                "(or of `user_ids`), in any state, is deleted for good; e-mails it queued and not yet sent "
                "are cancelled; counts follow; the `dedupe_key` is free again (like, unlike, like notifies "
                "twice). At most 10 000 per call: call again while `has_more`. Reads only the matching rows "
                "(an index).",
    request=openapi.body(RetractSchema, "What to take back.",
                         {"target_type": "post", "target_id": "post-812", "notification_type": "like",
                          "actor_user_id": openapi.EXAMPLE_NOTIFICATION["actor_user_id"]}),
    responses={200: openapi.ok("How many were retracted; `has_more`: call again.", RetractResultSchema,
                               {"retracted_count": 10000, "has_more": True})})
@service_required
@ratelimit.service
def retract_notifications():
    body = load_body(retract_body)
    result = store.retract(get_db(), body)
    metrics.record_notifications_changed("retract", result["retracted_count"])
    publisher.changed(result.pop("user_ids"))  # (theirs to publish, not part of the response)
    log.info("notifications retracted", extra={
        "event": "notifications_retracted", "service": g.service,
        "retracted_count": result["retracted_count"], "has_more": result["has_more"],
        "by": "dedupe_key" if "dedupe_key" in body else "target"})
    return json_response(result)
