"""Stream tickets (endpoint 14): short-lived, signed, bound to one user, good for the stream only.

A ticket is a JWT signed with a key derived from JWT_SECRET for this one purpose, so a user JWT
(signed with JWT_SECRET itself) never verifies as a ticket, and a ticket never as a user JWT.
Clients treat it as opaque; it carries nothing but the user id and the expiry.
"""
from __future__ import annotations

import hashlib
import hmac
import logging
import time
import uuid
from datetime import datetime, timezone
from typing import Any

import jwt

from ..errors import ApiError

log = logging.getLogger(__name__)

PURPOSE = b"notifications-api stream ticket v1"
AUDIENCE = "notifications-stream"
ALGORITHM = "HS256"


def _key(secret: str) -> bytes:
    return hmac.new(secret.encode(), PURPOSE, hashlib.sha256).digest()


def _keys(config: dict[str, Any]) -> list[bytes]:
    return [_key(secret) for secret in (config["JWT_SECRET"], config["JWT_SECRET_PREVIOUS"]) if secret]


def issue(config: dict[str, Any], user_id: str, now: float | None = None) -> tuple[str, datetime]:
    """(ticket, expires_at) for this user, valid STREAM_TICKET_TTL_SECONDS."""
    issued = int(time.time() if now is None else now)
    expires = issued + config["STREAM_TICKET_TTL_SECONDS"]
    ticket = jwt.encode({"sub": user_id, "aud": AUDIENCE, "iat": issued, "exp": expires},
                        _key(config["JWT_SECRET"]), algorithm=ALGORITHM)
    return ticket, datetime.fromtimestamp(expires, timezone.utc)


def verify(config: dict[str, Any], ticket: str) -> str:
    """The ticket's user id, or ApiError 401 (`token_expired` when only its time is up)."""
    for key in _keys(config):
        try:
            # the leeway of user tokens: a ticket minted on a pod whose clock runs ahead (iat in
            # our future) or behind (exp already past here) still verifies on this one
            claims = jwt.decode(ticket, key, algorithms=[ALGORITHM], audience=AUDIENCE,
                                leeway=config["JWT_LEEWAY_SECONDS"],
                                options={"require": ["exp", "sub", "aud"]})
        except jwt.InvalidSignatureError:
            continue  # maybe signed with the previous secret
        except jwt.ExpiredSignatureError:
            raise _reject("ticket_expired", "token_expired", "The stream ticket has expired.") from None
        except jwt.InvalidTokenError:
            break
        try:
            return str(uuid.UUID(str(claims["sub"])))
        except ValueError:
            break
    raise _reject("bad_ticket", "invalid_token", "The stream ticket is invalid.")


def _reject(reason: str, code: str, detail: str) -> ApiError:
    log.info("invalid stream ticket", extra={"event": "invalid_jwt_token", "reason": reason})
    return ApiError(401, code, detail)
