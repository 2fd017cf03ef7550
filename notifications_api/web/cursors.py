"""Opaque, signed keyset cursors bound to the user and to the status/type filters."""
from __future__ import annotations

import base64
import hashlib
import hmac
import uuid
from datetime import datetime, timedelta, timezone

from ..errors import ApiError

_VERSION = "1"
_SIG_BYTES = 16
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def _key(secret: str) -> bytes:
    return hashlib.sha256(b"notifications-api/cursor\x00" + secret.encode()).digest()


def _scope(user_id: str, status: str | None, types: list[str] | None) -> bytes:
    return f"{user_id}|{status or 'inbox'}|{','.join(sorted(types or ()))}".encode()


def _sign(secret: str, body: bytes, scope: bytes) -> bytes:
    return hmac.new(_key(secret), body + b"\x00" + scope, hashlib.sha256).digest()[:_SIG_BYTES]


def encode(secret: str, user_id: str, status: str | None, types: list[str] | None,
           created_at: datetime | str, notification_id: uuid.UUID | str) -> str:
    if isinstance(created_at, str):  # the API's text, as the pool loads timestamptz
        created_at = datetime.fromisoformat(created_at)
    micros = (created_at - EPOCH) // timedelta(microseconds=1)  # exact, unlike float timestamp()
    body = f"{_VERSION}.{micros}.{uuid.UUID(str(notification_id)).hex}".encode()
    token = body + b"." + base64.urlsafe_b64encode(_sign(secret, body, _scope(user_id, status, types)))
    return base64.urlsafe_b64encode(token).decode().rstrip("=")


def decode(secrets: list[str], cursor: str, user_id: str, status: str | None,
           types: list[str] | None) -> tuple[datetime, uuid.UUID]:
    """The (created_at, notification_id) position, or 422 if tampered with or out of scope."""
    invalid = ApiError(422, "validation_error", "cursor: Invalid or expired cursor.",
                       errors={"cursor": ["Invalid or expired cursor."]})
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        body, _, signature = raw.rpartition(b".")
        signature = base64.urlsafe_b64decode(signature)
        scope = _scope(user_id, status, types)
        if not any(hmac.compare_digest(signature, _sign(s, body, scope)) for s in secrets if s):
            raise invalid
        version, micros, hex_id = body.decode().split(".")
        if version != _VERSION:
            raise invalid
        created_at = EPOCH + timedelta(microseconds=int(micros))
        return created_at, uuid.UUID(hex=hex_id)
    except ApiError:
        raise
    except (ValueError, TypeError, OverflowError):
        raise invalid from None
