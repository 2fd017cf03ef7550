"""Internal services create notifications (one user or a fan-out) and retract them, by service token."""
from __future__ import annotations

import logging

from flask import Blueprint, current_app, g, request, url_for

from .. import metrics, publisher, ratelimit, store
from ..auth import service_required
from ..body import load_body
from ..db import get_db
from ..errors import validation_error
from ..schemas import CreateNotificationSchema, RetractSchema, check_text
from ..responses import json_response

log = logging.getLogger(__name__)
bp = Blueprint("internal", __name__)

create_body = CreateNotificationSchema()
retract_body = RetractSchema()


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


@bp.post("/notifications")
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
    publisher.changed((), [r["notification"] for r in results if r["result"] == "created"])
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


@bp.post("/notifications/retract")
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
