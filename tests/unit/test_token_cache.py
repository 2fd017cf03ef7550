"""The verified-token cache behind user_required: same answers as a full decode, fewer decodes."""
from __future__ import annotations

import time
import uuid

import jwt
import pytest

from notifications_api.web import auth
from notifications_api.errors import ApiError

CONFIG = {"JWT_SECRET": "s" * 40, "JWT_SECRET_PREVIOUS": "", "JWT_ALGORITHM": "HS256", "JWT_ISSUER": "",
          "JWT_AUDIENCE": "", "JWT_LEEWAY_SECONDS": 30}


def token(exp_in: float, secret: str = CONFIG["JWT_SECRET"], sub: str | None = None) -> str:
    now = int(time.time())
    return jwt.encode({"sub": sub or str(uuid.uuid4()), "iat": now, "exp": int(now + exp_in)}, secret, "HS256")


def test_a_valid_token_is_verified_once(monkeypatch):
    calls = []
    verify = auth.decode_user_token
    monkeypatch.setattr(auth, "decode_user_token", lambda t, c: calls.append(t) or verify(t, c))
    cache: dict = {}
    user = str(uuid.uuid4())
    good = token(3600, sub=user)
    assert auth.cached_user_id(good, CONFIG, cache) == user
    assert auth.cached_user_id(good, CONFIG, cache) == user
    assert calls == [good]


def test_a_cached_token_past_exp_plus_leeway_is_decoded_again_and_rejected(monkeypatch):
    cache: dict = {}
    expiring = token(3600)
    auth.cached_user_id(expiring, CONFIG, cache)
    cache[expiring] = (cache[expiring][0], time.time() - 1)  # as if exp + leeway had passed
    calls = []
    monkeypatch.setattr(auth, "decode_user_token", lambda t, c: calls.append(t) or (_ for _ in ()).throw(
        ApiError(401, "token_expired", "The token has expired.")))
    with pytest.raises(ApiError) as exc:
        auth.cached_user_id(expiring, CONFIG, cache)
    assert exc.value.code == "token_expired" and calls == [expiring]


def test_the_cache_holds_only_verified_tokens_and_stays_bounded(monkeypatch):
    cache: dict = {}
    with pytest.raises(ApiError):
        auth.cached_user_id(token(3600, secret="x" * 40), CONFIG, cache)
    with pytest.raises(ApiError) as exc:
        auth.cached_user_id(token(-3600), CONFIG, cache)
    assert exc.value.code == "token_expired" and cache == {}
    monkeypatch.setattr(auth, "TOKEN_CACHE_MAX", 3)
    for _ in range(7):
        auth.cached_user_id(token(3600), CONFIG, cache)
    assert len(cache) <= 3


def test_valid_until_is_exp_plus_leeway():
    cache: dict = {}
    t = token(100)
    auth.cached_user_id(t, CONFIG, cache)
    exp = jwt.decode(t, options={"verify_signature": False})["exp"]
    assert cache[t][1] == exp + CONFIG["JWT_LEEWAY_SECONDS"]
