"""Marshmallow schemas of the Web Push endpoints (16-19): the browser's PushSubscription in, ours out.

The endpoint's host is checked against PUSH_ALLOWED_HOSTS by the view (it needs the configuration);
its shape, the keys and the label are checked here. Nothing here resolves or fetches the endpoint.
"""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any
from urllib.parse import urlsplit

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from ..channels.push_crypto import b64url_decode, valid_p256_point
from .schemas import LATEST_TIMESTAMP, Text

MAX_ENDPOINT_LENGTH = 2048
MAX_USER_AGENT_LENGTH = 200
# What the document promises of an endpoint's shape (the host allow-list is the view's): an http(s)
# URL of printable ASCII, no fragment, a port below 10000 when given.
ENDPOINT_PATTERN = r"^https?://[A-Za-z0-9.-]+(:[1-9][0-9]{0,3})?(/[!-\"$-~]*)?$"


def check_endpoint(value: str) -> None:
    """An absolute https:// URL of printable ASCII (no spaces, no fragment), ≤ 2048 characters."""
    if len(value) > MAX_ENDPOINT_LENGTH:
        raise ValidationError(f"Must be at most {MAX_ENDPOINT_LENGTH} characters.")
    if not value.isascii() or any(c <= " " or c == "\x7f" for c in value) or "#" in value:
        raise ValidationError("Must be a URL of printable ASCII characters without a fragment.")
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 (raises ValueError for a port that is not a number)
    except ValueError:
        raise ValidationError("Must be an https:// URL.") from None
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ValidationError("Must be an https:// URL.")


class Endpoint(fields.String):
    def _deserialize(self, value, attr, data, **kwargs):
        text = super()._deserialize(value, attr, data, **kwargs)
        check_endpoint(text)
        return text


class Base64Url(fields.String):
    """base64url text (padding optional) decoded to bytes of a fixed length; p256dh must be a point."""

    def __init__(self, length: int, point: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.length = length
        self.point = point

    def _deserialize(self, value, attr, data, **kwargs):
        text = super()._deserialize(value, attr, data, **kwargs)
        try:
            raw = b64url_decode(text) if len(text) <= 200 else b""
        except ValueError:
            raise ValidationError("Must be base64url.") from None
        if len(raw) != self.length:
            raise ValidationError(f"Must be the base64url of {self.length} bytes.")
        if self.point and not valid_p256_point(raw):
            raise ValidationError("Must be an uncompressed P-256 public key (65 bytes, on the curve).")
        return raw


class ExpirationTime(fields.Field):
    """PushSubscription.expirationTime: null, epoch milliseconds (a number, as browsers send it) or an
    RFC 3339 string with an offset."""

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, bool):
            raise ValidationError("Must be null, epoch milliseconds or an RFC 3339 timestamp.")
        if isinstance(value, (int, float)):
            if not 0 <= value <= LATEST_TIMESTAMP.timestamp() * 1000:
                raise ValidationError("Must be epoch milliseconds before year 10000.")
            return datetime.fromtimestamp(value / 1000, tz=timezone.utc)
        if isinstance(value, str):
            try:
                when = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
            except ValueError:
                when = None
            if when is None or when.tzinfo is None or len(value) > 40:
                raise ValidationError("Must be an RFC 3339 timestamp with an offset.")
            return when
        raise ValidationError("Must be null, epoch milliseconds or an RFC 3339 timestamp.")


class PushKeysSchema(Schema):
    p256dh = Base64Url(65, point=True, required=True, metadata={
        "description": "base64url of the browser's uncompressed P-256 public key (65 bytes)."})
    auth = Base64Url(16, required=True, metadata={"description": "base64url of the 16-byte auth secret."})


class PushSubscribeSchema(Schema):
    """`PushSubscription.toJSON()` plus an optional label."""

    endpoint = Endpoint(required=True, validate=validate.Length(1, MAX_ENDPOINT_LENGTH), metadata={
        "description": "The push service URL the browser got: https://, at most 2048 characters, its host "
                       "allowed by PUSH_ALLOWED_HOSTS.", "pattern": ENDPOINT_PATTERN})
    expirationTime = ExpirationTime(allow_none=True, load_default=None, metadata={
        "description": "null, epoch milliseconds (as the browser gives it) or RFC 3339."})
    expiration_time = ExpirationTime(allow_none=True, load_default=None, metadata={
        "description": "The same as expirationTime (send one of them)."})
    keys = fields.Nested(PushKeysSchema, required=True)
    user_agent = Text(allow_none=True, load_default=None, validate=validate.Length(max=MAX_USER_AGENT_LENGTH),
                      metadata={"description": "A label for the user's list of browsers."})

    @validates_schema
    def one_expiration(self, data: dict, **kwargs: Any) -> None:
        if data.get("expirationTime") is not None and data.get("expiration_time") is not None \
                and data["expirationTime"] != data["expiration_time"]:
            raise ValidationError("Send expirationTime or expiration_time, not two different values.",
                                  "expiration_time")


class PushUnsubscribeQuerySchema(Schema):
    endpoint = Endpoint(required=True, validate=validate.Length(1, MAX_ENDPOINT_LENGTH),
                        metadata={"pattern": ENDPOINT_PATTERN})


class VapidPublicKeySchema(Schema):
    public_key = fields.String(required=True, metadata={
        "description": "base64url (no padding) of the 65-byte uncompressed P-256 point: the "
                       "applicationServerKey for pushManager.subscribe()."})


class PushSubscriptionSchema(Schema):
    subscription_id = fields.UUID(required=True)
    endpoint_origin = fields.String(required=True, metadata={
        "description": "scheme://host[:port] of the endpoint; the endpoint itself and the keys are never "
                       "returned."})
    user_agent = fields.String(allow_none=True, required=True)
    created_at = fields.String(required=True, metadata={"format": "date-time"})
    expiration_time = fields.String(allow_none=True, required=True, metadata={"format": "date-time"})
    last_success_at = fields.String(allow_none=True, required=True, metadata={
        "format": "date-time", "description": "The last push the push service accepted."})
    consecutive_failures = fields.Integer(required=True, metadata={
        "description": "Failed deliveries in a row; at 10 the subscription is deleted."})


class PushSubscriptionListSchema(Schema):
    items = fields.List(fields.Nested(PushSubscriptionSchema), required=True)
