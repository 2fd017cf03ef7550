"""Credentials: user JWTs from the Auth API and the internal service token."""
from __future__ import annotations

import functools
import hmac
import logging
import time
import uuid
from typing import Any, Callable

import jwt
from flask import current_app, g, request
from werkzeug.exceptions import HTTPException

from ..db import store
from ..db.pool import get_db
from ..errors import ApiError

log = logging.getLogger(__name__)


def _unauthorized(code: str, detail: str) -> ApiError:
    return ApiError(401, code, detail)


def bearer_token() -> str | None:
    """The token of an `Authorization: Bearer <token>` header (any case of "Bearer"), else None."""
    credentials = request.authorization
    if credentials is None or credentials.type != "bearer":
        return None
    if credentials.token is None:
        # Werkzeug reads a value with an inner "=" as auth-params (RFC 7235), not a token. It is
        # still the token the client sent, to be refused as invalid (401 invalid_token), not missing.
        return request.headers["Authorization"].partition(" ")[2].strip() or None
    return credentials.token.strip() or None


def _reject(reason: str, code: str = "invalid_token", detail: str = "The token is invalid.") -> ApiError:
    log.info("invalid jwt", extra={"event": "invalid_jwt_token", "reason": reason})
    return _unauthorized(code, detail)


# Tokens that passed every check, so a client polling with the same token is not verified
# again on each request (PyJWT's decode with its HMAC key checks is ~100 us, the largest
# per-request cost of the unread count). Keyed by the whole token, signature included; a hit
# is only valid until exp + leeway, after which the full decode runs (and rejects it, logged
# as usual). nbf/iat, once passed, stay passed; iss/aud/secrets are fixed per app.
TOKEN_CACHE = "verified_user_tokens"
TOKEN_CACHE_MAX = 10_000


def cached_user_id(token: str, config: dict[str, Any], cache: dict[str, tuple[str, float]]) -> str:
    """decode_user_token through `cache` (token -> (user id, valid until))."""
    hit = cache.get(token)
    if hit is not None and time.time() < hit[1]:
        return hit[0]
    user_id, exp = decode_user_token(token, config)
    if len(cache) >= TOKEN_CACHE_MAX:
        cache.clear()  # bounded; a full cache is rebuilt by the next requests
    try:
        valid_until = float(exp) + config["JWT_LEEWAY_SECONDS"]
    except (OverflowError, TypeError, ValueError):
        return user_id  # an absurd (yet signed) exp: correct, just not cached
    cache[token] = (user_id, valid_until)
    return user_id


def decode_user_token(token: str, config: dict[str, Any]) -> tuple[str, Any]:
    """The token's user id (canonical UUID string) and its verified `exp` claim, or ApiError(401)."""
    options = {"require": ["exp", "sub"], "verify_aud": bool(config["JWT_AUDIENCE"]),
               "verify_iss": bool(config["JWT_ISSUER"])}
    keys = [k for k in (config["JWT_SECRET"], config["JWT_SECRET_PREVIOUS"]) if k]
    claims = None
    for index, key in enumerate(keys):
        try:
            claims = jwt.decode(
                token, key, algorithms=[config["JWT_ALGORITHM"]], options=options,
                leeway=config["JWT_LEEWAY_SECONDS"],
                audience=config["JWT_AUDIENCE"] or None, issuer=config["JWT_ISSUER"] or None,
            )
            break
        except jwt.InvalidSignatureError:
            if index == len(keys) - 1:
                raise _reject("bad_signature") from None
        except jwt.ExpiredSignatureError:
            raise _reject("expired", "token_expired", "The token has expired.") from None
        except jwt.ImmatureSignatureError:
            raise _reject("not_yet_valid") from None
        except jwt.MissingRequiredClaimError as exc:
            raise _reject(f"missing_{exc.claim}") from None
        except jwt.InvalidAudienceError:
            raise _reject("bad_audience") from None
        except jwt.InvalidIssuerError:
            raise _reject("bad_issuer") from None
        except jwt.InvalidTokenError:
            raise _reject("malformed") from None
    try:
        return str(uuid.UUID(str(claims["sub"]))), claims["exp"]
    except ValueError:
        raise _reject("sub_not_uuid") from None


def user_required(view: Callable) -> Callable:
    """Authenticate the end user; sets g.user_id. Existence is checked by the stored function."""
    @functools.wraps(view)
    def wrapper(*args, **kwargs):
        token = bearer_token()
        if token is None:
            raise _unauthorized("missing_token", "An Authorization: Bearer token is required.")
        app = current_app._get_current_object()
        cache = app.extensions.get(TOKEN_CACHE)
        if cache is None:
            cache = app.extensions.setdefault(TOKEN_CACHE, {})
        g.user_id = cached_user_id(token, app.config, cache)
        try:
            return view(*args, **kwargs)
        except (ApiError, HTTPException) as exc:
            status = exc.status if isinstance(exc, ApiError) else exc.code
            if status in BELOW_CREDENTIALS:
                _check_user(app, g.user_id)  # a missing/inactive user (401/403) outranks these
            raise
    return wrapper


# Problems that API.md ranks below the credential checks: the rate limit, then the body.
# Only on these error paths does the user's existence cost a separate (indexed) lookup.
BELOW_CREDENTIALS = frozenset({400, 413, 415, 422, 429})
# Outcomes of that lookup, per user, reused for USER_CHECK_SECONDS: a client past its budget
# (or repeating a bad body) then costs PostgreSQL one call per window, not one per request, so
# the rate limit protects the database. A user deactivated meanwhile is told 429/4xx instead of
# 403 for at most that long; every request that reaches a stored function is checked there.
USER_CHECKS = "checked_users"
USER_CHECK_SECONDS = 10.0
USER_CHECKS_MAX = 10_000


def _check_user(app: Any, user_id: str) -> None:
    """Raise the stored function's 401/403 if the user is missing or inactive (error paths only)."""
    checks = app.extensions.get(USER_CHECKS)
    if checks is None:
        checks = app.extensions.setdefault(USER_CHECKS, {})
    now = time.monotonic()
    hit = checks.get(user_id)
    if hit is None or now >= hit[0]:
        refusal = None
        try:
            store.check_user(get_db(), user_id)
        except ApiError as exc:
            if exc.status not in (401, 403):
                raise  # e.g. 503: nothing learnt about the user, nothing cached
            refusal = (exc.status, exc.code, exc.detail)
        if len(checks) >= USER_CHECKS_MAX:
            checks.clear()  # bounded; a full cache is rebuilt by the next error paths
        hit = checks[user_id] = (now + USER_CHECK_SECONDS, refusal)
    if hit[1] is not None:
        raise ApiError(*hit[1])


def _matches(candidate: str, secrets: tuple[str, ...]) -> int | None:
    """Index of the secret the candidate equals (constant-time per comparison), else None."""
    found = None
    encoded = candidate.encode()
    for index, secret in enumerate(secrets):
        if secret and hmac.compare_digest(encoded, secret.encode()) and found is None:
            found = index
    return found


def service_required(view: Callable) -> Callable:
    """Authenticate an internal service by its token; sets g.service."""
    @functools.wraps(view)
    def wrapper(*args, **kwargs):
        config = current_app.config
        token = request.headers.get("X-Service-Token") or bearer_token()
        if not token:
            raise _unauthorized("missing_token", "An X-Service-Token header is required.")
        which = _matches(token, (config["SERVICE_TOKEN"], config["SERVICE_TOKEN_PREVIOUS"]))
        if which is None:
            if _is_user_token(token, config):
                raise ApiError(403, "service_token_required", "This endpoint is for internal services.")
            raise _unauthorized("invalid_service_token", "The service token is invalid.")
        g.service = "service" if which == 0 else "service-previous-token"
        return view(*args, **kwargs)
    return wrapper


def _is_user_token(token: str, config: dict[str, Any]) -> bool:
    if token.count(".") != 2:
        return False
    try:
        decode_user_token(token, config)
    except ApiError:
        return False
    return True


def issue_token(config: dict[str, Any], user_id: str, hours: float = 24) -> str:
    """A user JWT as the Auth API would sign it (development and tests)."""
    now = int(time.time())
    claims: dict[str, Any] = {"sub": str(uuid.UUID(str(user_id))), "iat": now, "nbf": now,
                              "exp": now + int(hours * 3600)}
    if config.get("JWT_ISSUER"):
        claims["iss"] = config["JWT_ISSUER"]
    if config.get("JWT_AUDIENCE"):
        claims["aud"] = config["JWT_AUDIENCE"]
    return jwt.encode(claims, config["JWT_SECRET"], algorithm=config["JWT_ALGORITHM"])
