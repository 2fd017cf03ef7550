"""Web Push pieces without a database or a push service: the RFC 8291 test vector, VAPID signing and its
cache, the payload's size rule, the answers' meaning, the configuration guardrails."""
from __future__ import annotations

import base64
import json
import uuid
from datetime import datetime, timedelta, timezone

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from notifications_api.channels.push_crypto import (MAX_PLAINTEXT, VapidSigner, b64url, encrypt,
                                                    generate_vapid_keys, public_key_bytes)
from notifications_api.channels.push_outbox import PushDelivery
from notifications_api.channels.push_worker import MAX_PAYLOAD_BYTES, classify, payload, topic, ttl_seconds
from notifications_api.config import ConfigError, load_config, load_vapid_private_key


def d(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def test_rfc8291_appendix_a_test_vector():
    """The RFC's own example, byte for byte (a second implementation: the RFC authors')."""
    eph = ec.derive_private_key(int.from_bytes(d("yfWPiYE-n46HLnH0KqZOF1fJJU3MYrct3AELtAQ-oRw"), "big"),
                                ec.SECP256R1())
    ua_public = d("BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4")
    body = encrypt(b"When I grow up, I want to be a watermelon", ua_public, d("BTBZMqHH6r4Tts7J_aSIgg"),
                   _ephemeral=eph, _salt=d("DGv6ra1nlYgDCS1FRnbzlw"))
    assert b64url(body) == (
        "DGv6ra1nlYgDCS1FRnbzlwAAEABBBP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27mlmlMoZIIgDll6e3vCYLocInmYWAmS6TlzAC8wEqKK6"
        "PBru3jl7A_yl95bQpu6cVPTpK4Mqgkf1CXztLVBSt2Ks3oZwbuwXPXLWyouBWLVWGNWQexSgSxsj_Qulcy4a-fN")


def test_each_message_gets_a_fresh_key_and_salt_and_stays_within_4096_bytes():
    ua = public_key_bytes(ec.generate_private_key(ec.SECP256R1()))
    a, b = encrypt(b"x", ua, b"a" * 16), encrypt(b"x", ua, b"a" * 16)
    assert a[:16] != b[:16] and a[21:86] != b[21:86]
    assert len(encrypt(b"x" * MAX_PLAINTEXT, ua, b"a" * 16)) == 4096
    with pytest.raises(ValueError):
        encrypt(b"x" * (MAX_PLAINTEXT + 1), ua, b"a" * 16)


def test_vapid_header_is_cached_per_origin_and_resigned_near_expiry():
    now = [1_000_000.0]
    signer = VapidSigner(ec.generate_private_key(ec.SECP256R1()), "mailto:ops@acme.io", clock=lambda: now[0])
    first = signer.header("https://fcm.googleapis.com")
    assert signer.header("https://fcm.googleapis.com") == first and signer.signatures == 1
    signer.header("https://web.push.apple.com")
    assert signer.signatures == 2
    token = first.split("t=", 1)[1].split(",", 1)[0]
    claims = jwt.decode(token, options={"verify_signature": False, "verify_exp": False})
    assert claims == {"aud": "https://fcm.googleapis.com", "exp": 1_000_000 + 12 * 3600, "sub": "mailto:ops@acme.io"}
    now[0] += 10 * 3600  # 2 h left: still used
    assert signer.header("https://fcm.googleapis.com") == first
    now[0] += 1.5 * 3600  # 30 min left: signed again
    assert signer.header("https://fcm.googleapis.com") != first and signer.signatures == 3


def _delivery(**fields) -> PushDelivery:
    base = dict(user_id=uuid.uuid4(), delivery_id=uuid.uuid4(), notification_id=uuid.uuid4(),
                subscription_id=uuid.uuid4(), endpoint="https://fcm.googleapis.com/x", p256dh=b"", auth=b"",
                attempts=1, queued_at=datetime.now(timezone.utc), notification_type="comment", title="T",
                message="M", action_url=None, priority="normal", group_key=None,
                created_at=datetime(2026, 11, 26, 3, 42, 21, 123456, tzinfo=timezone.utc), expires_at=None,
                unread_count=3, unseen_count=1)
    return PushDelivery(**{**base, **fields})


@pytest.mark.parametrize("message", ["a" * 5000, "é" * 3000, "😀" * 2000, '"\\' * 2000, "\u2028" * 3000])
def test_payload_is_at_most_3072_bytes_with_the_message_shortened(message):
    data = payload(_delivery(message=message, title="t" * 200, action_url="https://a.example/" + "p" * 1900))
    body = json.loads(data)
    assert len(data) <= MAX_PAYLOAD_BYTES
    assert body["message"].endswith("…") and message.startswith(body["message"][:-1])
    assert len(data) > MAX_PAYLOAD_BYTES - 16  # as much of the message as fits
    assert body["created_at"] == "2026-11-26T03:42:21.123456Z" and body["unread_count"] == 3


def test_a_short_payload_is_untouched_and_compact():
    data = payload(_delivery(message="Nice route!"))
    assert b" " not in data.replace(b"Nice route!", b"") and json.loads(data)["message"] == "Nice route!"


def test_topic_is_stable_short_and_url_safe():
    nid = uuid.uuid4()
    assert topic(nid) == topic(str(nid)) and topic(nid) != topic(uuid.uuid4())
    assert len(topic(nid)) == 32 and set(topic(nid)) <= set(
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def test_ttl_is_cut_to_the_time_left_before_expiry():
    now = datetime.now(timezone.utc)
    assert ttl_seconds(_delivery(), 86400) == 86400
    assert ttl_seconds(_delivery(expires_at=now + timedelta(seconds=600)), 86400, now) == 600
    assert ttl_seconds(_delivery(expires_at=now - timedelta(seconds=5)), 86400, now) == 0


@pytest.mark.parametrize("status, kind", [
    (201, "sent"), (202, "sent"), (200, "sent"), (404, "gone"), (410, "gone"), (429, "retry"), (500, "retry"),
    (503, "retry"), (408, "retry"), (400, "failed"), (401, "failed"), (403, "failed"), (413, "failed"),
    (301, "failed"), (307, "failed"),
])
def test_what_each_answer_means(status, kind):
    assert classify(status, None).kind == kind


def test_retry_after_is_read():
    assert classify(429, "30").retry_after == 30
    assert classify(503, "garbage").retry_after is None


# --- configuration -------------------------------------------------------------------------------

BASE = {"JWT_SECRET": "j" * 40, "SERVICE_TOKEN": "s" * 40}


def _problems(env: dict) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(env={**BASE, **env})
    return str(info.value)


def test_vapid_keys_print_a_pair_that_loads(tmp_path):
    private, public = generate_vapid_keys()
    key = load_vapid_private_key(private)
    assert b64url(public_key_bytes(key)) == public
    from cryptography.hazmat.primitives import serialization

    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    assert b64url(public_key_bytes(load_vapid_private_key(pem))) == public


def test_the_cli_prints_a_key_pair():
    from click.testing import CliRunner

    from notifications_api.ops.cli import cli

    result = CliRunner().invoke(cli, ["vapid-keys"])
    assert result.exit_code == 0
    private = result.output.split("VAPID_PRIVATE_KEY=", 1)[1].split()[0]
    public = result.output.rsplit(" ", 1)[1].strip()
    assert b64url(public_key_bytes(load_vapid_private_key(private))) == public


def test_config_guardrails_for_push():
    private, _ = generate_vapid_keys()
    ok = load_config(env={**BASE, "VAPID_PRIVATE_KEY": private, "VAPID_SUBJECT": "mailto:ops@acme.io"})
    assert ok["PUSH_ALLOWED_HOSTS"] == ("fcm.googleapis.com", "updates.push.services.mozilla.com",
                                        "*.push.apple.com", "*.notify.windows.com")
    assert (ok["PUSH_TTL_SECONDS"], ok["PUSH_MAX_ATTEMPTS"]) == (86400, 5)
    assert "VAPID_SUBJECT is required" in _problems({"VAPID_PRIVATE_KEY": private})
    bad = _problems({"VAPID_PRIVATE_KEY": "not-a-key-" + "A" * 30, "VAPID_SUBJECT": "mailto:ops@acme.io"})
    assert "VAPID_PRIVATE_KEY" in bad and "not-a-key" not in bad  # never the value
    assert "mailto:" in _problems({"VAPID_PRIVATE_KEY": private, "VAPID_SUBJECT": "ops@acme.io"})
    assert "PUSH_ALLOWED_HOSTS" in _problems({"PUSH_ALLOWED_HOSTS": "fcm.googleapis.com/path"})


def test_production_refuses_placeholder_subjects_and_plain_http_push_services():
    private, _ = generate_vapid_keys()
    production = {"ENVIRONMENT": "production", "METRICS_PUBLIC": "true", "DB_PASSWORD": "p" * 40,
                  "DB_SSLMODE": "require", "VAPID_PRIVATE_KEY": private}
    for subject in ("mailto:ops@example.com", "https://example.org/contact", "mailto:me@push.test"):
        assert "placeholder" in _problems({**production, "VAPID_SUBJECT": subject})
    assert "VAPID_SUBJECT" in _problems({**production, "VAPID_SUBJECT": "https://localhost"})
    plain = _problems({**production, "VAPID_SUBJECT": "mailto:ops@acme.io",
                       "PUSH_ALLOWED_HOSTS": "fcm.googleapis.com,http://127.0.0.1:8090"})
    assert "plain HTTP" in plain
    load_config(env={**BASE, **production, "VAPID_SUBJECT": "mailto:ops@acme.io"})  # no problem
