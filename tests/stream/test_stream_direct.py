"""Endpoints 14 and 15 without a proxy: tickets (bound to the user, stream only, expiring,
never logged) and the GRIP check (a forged, expired or missing Grip-Sig is never held)."""
from __future__ import annotations

import time

import jwt
import pytest

from notifications_api.live import grip, tickets
from notifications_api.errors import ApiError
from notifications_api.web.auth import issue_token

TICKET = "/api/v1/notifications/stream/ticket"
STREAM = "/api/v1/notifications/stream"


@pytest.fixture(scope="module")
def app(stream_config):
    from notifications_api import create_app
    app = create_app({**stream_config, "LOG_LEVEL": "INFO"})
    yield app
    app.extensions["notifications_db"].close()


@pytest.fixture
def client(app):
    return app.test_client()


def bearer(config, user_id):
    return {"Authorization": f"Bearer {issue_token(config, user_id)}"}


def grip_sig(key: str, **claims) -> str:
    return jwt.encode({"iss": "pushpin", "exp": int(time.time()) + 3600, **claims}, key, algorithm="HS256")


def test_ticket_is_issued_for_the_user_and_opens_their_stream(client, app, make_user):
    user = make_user()
    response = client.post(TICKET, headers=bearer(app.config, user))
    assert response.status_code == 201
    body = response.get_json()
    assert set(body) == {"ticket", "expires_at"} and body["expires_at"].endswith("Z")
    assert response.headers["Cache-Control"] == "no-store"
    stream = client.get(f"{STREAM}?ticket={body['ticket']}")
    assert stream.status_code == 200
    assert stream.mimetype == "text/event-stream"
    text = stream.get_data(as_text=True)
    assert text.startswith("id: ") and "\nevent: counts\ndata: {\"unread_count\":0,\"unseen_count\":0}\n\n" in text
    assert text.endswith(f"retry: {app.config['POLL_INTERVAL_SECONDS'] * 1000}\n\n")  # then it ends
    assert "Grip-Hold" not in stream.headers
    assert tickets.verify(app.config, body["ticket"]) == user


def test_bad_expired_and_misused_tickets(client, app, make_user):
    user = make_user()
    good, _ = tickets.issue(app.config, user)
    expired, _ = tickets.issue(app.config, user, now=time.time() - app.config["STREAM_TICKET_TTL_SECONDS"]
                               - app.config["JWT_LEEWAY_SECONDS"] - 1)
    cases = {
        good[:-2] + ("AA" if not good.endswith("AA") else "BB"): "invalid_token",  # tampered signature
        "not-a-ticket": "invalid_token",
        issue_token(app.config, user): "invalid_token",  # a user JWT is not a ticket
        expired: "token_expired",
    }
    for ticket, code in cases.items():
        response = client.get(f"{STREAM}?ticket={ticket}")
        assert response.status_code == 401, (ticket, response.get_json())
        assert response.get_json()["code"] == code
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
    # ... and a ticket is good for the stream only, never as a JWT elsewhere
    for path in ("/api/v1/notifications", "/api/v1/notifications/unread/count"):
        assert client.get(path, headers={"Authorization": f"Bearer {good}"}).status_code == 401
    assert client.post(TICKET, headers={"Authorization": f"Bearer {good}"}).status_code == 401


def test_ticket_rules_missing_credentials_and_unknown_users(client, app, make_user):
    assert client.post(TICKET).get_json()["code"] == "missing_token"
    assert client.get(STREAM).get_json()["code"] == "missing_token"
    ghost = "00000000-0000-4000-8000-00000000dead"
    assert client.post(TICKET, headers=bearer(app.config, ghost)).get_json()["code"] == "user_not_found"
    ghost_ticket, _ = tickets.issue(app.config, ghost)
    assert client.get(f"{STREAM}?ticket={ghost_ticket}").get_json()["code"] == "user_not_found"
    inactive = make_user(active=False)
    inactive_ticket, _ = tickets.issue(app.config, inactive)
    assert client.get(f"{STREAM}?ticket={inactive_ticket}").status_code == 403
    user = make_user()
    assert client.get(f"{STREAM}?other=1", headers=bearer(app.config, user)).status_code == 422
    assert client.post(f"{TICKET}?x=1", headers=bearer(app.config, user)).status_code == 422


def test_a_ticket_survives_secret_rotation_and_expires_after_its_ttl(app):
    user = "00000000-0000-4000-8000-000000000001"
    old, expires_at = tickets.issue(app.config, user)
    assert abs(expires_at.timestamp() - time.time() - app.config["STREAM_TICKET_TTL_SECONDS"]) < 5
    rotated = {**app.config, "JWT_SECRET": "a-new-secret-" + "x" * 40, "JWT_SECRET_PREVIOUS": app.config["JWT_SECRET"]}
    assert tickets.verify(rotated, old) == user
    retired = {**app.config, "JWT_SECRET": "a-new-secret-" + "x" * 40, "JWT_SECRET_PREVIOUS": ""}
    with pytest.raises(ApiError) as raised:
        tickets.verify(retired, old)
    assert raised.value.code == "invalid_token"


def test_a_ticket_from_a_pod_whose_clock_is_off_verifies_within_the_leeway(app):
    """Tickets get the leeway of user tokens (JWT_LEEWAY_SECONDS): minted on a pod 20 s ahead
    (iat in this pod's future) or long enough ago to be 20 s expired here, they still verify."""
    user = "00000000-0000-4000-8000-000000000001"
    leeway = app.config["JWT_LEEWAY_SECONDS"]
    assert leeway >= 20
    ahead, _ = tickets.issue(app.config, user, now=time.time() + 20)
    assert tickets.verify(app.config, ahead) == user
    ttl = app.config["STREAM_TICKET_TTL_SECONDS"]
    just_expired, _ = tickets.issue(app.config, user, now=time.time() - ttl - 20)
    assert tickets.verify(app.config, just_expired) == user
    long_expired, _ = tickets.issue(app.config, user, now=time.time() - ttl - leeway - 5)
    with pytest.raises(ApiError) as raised:
        tickets.verify(app.config, long_expired)
    assert raised.value.code == "token_expired"


def test_only_a_grip_sig_signed_with_our_key_is_held(client, app, make_user):
    user = make_user()
    key = app.config["GRIP_SIG_KEY"]
    headers = bearer(app.config, user)
    held = client.get(STREAM, headers={**headers, "Grip-Sig": grip_sig(key)})
    assert held.status_code == 200
    assert held.headers["Grip-Hold"] == "stream"
    assert held.headers["Grip-Channel"] == f"notifications.user.{user}"
    timeout = int(held.headers["Grip-Keep-Alive"].rsplit("timeout=", 1)[1])
    assert 0 < timeout <= 25
    assert "retry:" not in held.get_data(as_text=True)

    forged = {
        "wrong key": grip_sig("not-the-key-" + "y" * 30),
        "expired": grip_sig(key, exp=int(time.time()) - 60),
        "alg none": jwt.encode({"iss": "pushpin", "exp": int(time.time()) + 60}, None, algorithm="none"),
        "garbage": "abc.def.ghi",
        "empty": "",
    }
    for name, sig in forged.items():
        response = client.get(STREAM, headers={**headers, "Grip-Sig": sig})
        assert response.status_code == 200, name
        assert not any(h.lower().startswith("grip-") for h in response.headers.keys()), name
        assert response.get_data(as_text=True).endswith("retry: 2000\n\n"), name
    assert not any(h.lower().startswith("grip-") for h in client.get(STREAM, headers=headers).headers.keys())
    # without GRIP_SIG_KEY configured nothing is ever held, whatever the request says
    assert not grip.from_proxy(grip_sig(key), "")


def test_a_ticket_never_appears_in_a_log_line(client, app, make_user, capsys):
    user = make_user()
    ticket, _ = tickets.issue(app.config, user)
    capsys.readouterr()
    assert client.get(f"{STREAM}?ticket={ticket}").status_code == 200
    assert client.get(f"{STREAM}?ticket={ticket}x").status_code == 401
    out = capsys.readouterr().out
    assert '"route": "/api/v1/notifications/stream"' in out  # the request was logged ...
    assert ticket not in out and ticket.split(".")[2] not in out  # ... without its ticket
