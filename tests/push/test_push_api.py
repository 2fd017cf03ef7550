"""Endpoints 16-19: the VAPID public key and the user's browsers."""
from __future__ import annotations

import base64
import logging
import os
import uuid

import pytest

from notifications_api import create_app


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _keys() -> dict:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    point = ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    return {"p256dh": _b64(point), "auth": _b64(os.urandom(16))}


def _fcm() -> str:
    return f"https://fcm.googleapis.com/fcm/send/{uuid.uuid4().hex}"


def test_vapid_public_key_is_the_configured_keys_point(api, vapid):
    response = api.get("/api/v1/push/vapid-public-key")
    assert response.status_code == 200
    assert response.get_json() == {"public_key": vapid[1]}
    raw = base64.urlsafe_b64decode(vapid[1] + "=" * (-len(vapid[1]) % 4))
    assert len(raw) == 65 and raw[0] == 4
    assert response.headers["Cache-Control"] == "no-store"


def test_every_push_endpoint_is_404_when_push_is_not_configured(push_config, auth, make_user):
    app = create_app({**push_config, "VAPID_PRIVATE_KEY": "", "VAPID_SUBJECT": ""})
    try:
        client = app.test_client()
        for method, path in (("get", "/api/v1/push/vapid-public-key"), ("get", "/api/v1/push/subscriptions"),
                             ("post", "/api/v1/push/subscriptions"),
                             ("delete", f"/api/v1/push/subscriptions/{uuid.uuid4()}"),
                             ("delete", "/api/v1/push/subscriptions?endpoint=x")):
            response = getattr(client, method)(path)  # no credential: 404 outranks 401
            assert response.status_code == 404, (method, path)
            assert response.get_json()["code"] == "not_found"
        user = make_user()
        token = {"Authorization": auth(user)["Authorization"]}
        assert client.patch("/api/v1/notifications/settings", json={"push_enabled": True},
                            headers=token).status_code == 200  # settings still accept push
    finally:
        app.extensions["notifications_db"].close()


def test_register_list_update_and_forget(api, auth, make_user, caplog):
    user = make_user()
    url = _fcm()
    keys = _keys()
    with caplog.at_level(logging.INFO, logger="notifications_api"):
        created = api.post("/api/v1/push/subscriptions", headers=auth(user), json={
            "endpoint": url, "expirationTime": 1893456000000, "keys": keys, "user_agent": "Firefox 133 on Linux"})
    assert created.status_code == 201
    body = created.get_json()
    assert set(body) == {"subscription_id", "endpoint_origin", "user_agent", "created_at", "expiration_time",
                         "last_success_at", "consecutive_failures"}
    assert body["endpoint_origin"] == "https://fcm.googleapis.com"
    assert body["expiration_time"] == "2030-01-01T00:00:00.000000Z"
    assert (body["last_success_at"], body["consecutive_failures"]) == (None, 0)
    assert url not in created.get_data(as_text=True) and keys["auth"] not in created.get_data(as_text=True)
    [event] = [r for r in caplog.records if getattr(r, "event", None) == "push_subscription_registered"]
    assert event.endpoint_origin == "https://fcm.googleapis.com" and url not in str(event.__dict__)

    again = api.post("/api/v1/push/subscriptions", headers=auth(user), json={
        "endpoint": url, "expiration_time": "2031-01-01T00:00:00Z", "keys": _keys()})
    assert again.status_code == 200
    assert again.get_json()["subscription_id"] == body["subscription_id"]
    assert again.get_json()["expiration_time"] == "2031-01-01T00:00:00.000000Z"
    assert again.get_json()["user_agent"] is None

    second = api.post("/api/v1/push/subscriptions", headers=auth(user),
                      json={"endpoint": "https://web.push.apple.com/QGuQ", "keys": _keys()}).get_json()
    listed = api.get("/api/v1/push/subscriptions", headers=auth(user)).get_json()["items"]
    assert [s["subscription_id"] for s in listed] == [second["subscription_id"], body["subscription_id"]]

    assert api.delete(f"/api/v1/push/subscriptions/{body['subscription_id']}",
                      headers=auth(user)).status_code == 204
    assert api.delete("/api/v1/push/subscriptions", query_string={"endpoint": "https://web.push.apple.com/QGuQ"},
                      headers=auth(user)).status_code == 204
    assert api.get("/api/v1/push/subscriptions", headers=auth(user)).get_json() == {"items": []}


def test_forgetting_another_users_or_an_unknown_subscription_is_404(api, auth, make_user):
    ana, ben = make_user(), make_user()
    url = _fcm()
    sub = api.post("/api/v1/push/subscriptions", headers=auth(ana), json={"endpoint": url, "keys": _keys()})
    sid = sub.get_json()["subscription_id"]
    for response in (api.delete(f"/api/v1/push/subscriptions/{sid}", headers=auth(ben)),
                     api.delete("/api/v1/push/subscriptions", query_string={"endpoint": url}, headers=auth(ben)),
                     api.delete(f"/api/v1/push/subscriptions/{uuid.uuid4()}", headers=auth(ana))):
        assert response.status_code == 404
        assert response.get_json()["code"] == "subscription_not_found"
    assert api.delete("/api/v1/push/subscriptions/not-a-uuid", headers=auth(ana)).get_json()["code"] == "not_found"
    assert len(api.get("/api/v1/push/subscriptions", headers=auth(ana)).get_json()["items"]) == 1


def test_the_endpoint_query_is_required_to_forget_by_endpoint(api, auth, make_user):
    response = api.delete("/api/v1/push/subscriptions", headers=auth(make_user()))
    assert response.status_code == 422 and "endpoint" in response.get_json()["errors"]


def test_credentials_are_required(api):
    assert api.get("/api/v1/push/subscriptions").status_code == 401
    assert api.post("/api/v1/push/subscriptions", json={}).status_code == 401


@pytest.mark.parametrize("change, field", [
    ({"endpoint": "http://fcm.googleapis.com/fcm/send/x"}, "endpoint"),  # plain http
    ({"endpoint": "https://evil.example.net/push"}, "endpoint"),  # not a push service
    ({"endpoint": "https://169.254.169.254/latest/meta-data"}, "endpoint"),
    ({"endpoint": "https://fcm.googleapis.com:8443/fcm/send/x"}, "endpoint"),
    ({"endpoint": "https://user:pw@fcm.googleapis.com/fcm/send/x"}, "endpoint"),
    ({"endpoint": "https://fcm.googleapis.com/" + "x" * 2048}, "endpoint"),
    ({"endpoint": "https://fcm.googleapis.com/a b"}, "endpoint"),
    ({"endpoint": "not a url"}, "endpoint"),
    ({"endpoint": None}, "endpoint"),
    ({"keys": {"p256dh": _b64(b"\x04" + b"\x01" * 64), "auth": _b64(os.urandom(16))}}, "keys.p256dh"),
    ({"keys": {"p256dh": "!!!", "auth": _b64(os.urandom(16))}}, "keys.p256dh"),
    ({"keys": {"p256dh": _keys()["p256dh"], "auth": _b64(os.urandom(15))}}, "keys.auth"),
    ({"keys": {"p256dh": _keys()["p256dh"]}}, "keys.auth"),
    ({"keys": None}, "keys"),
    ({"user_agent": "x" * 201}, "user_agent"),
    ({"expirationTime": "tomorrow"}, "expirationTime"),
    ({"expirationTime": True}, "expirationTime"),
    ({"expirationTime": 1, "expiration_time": 2}, "expiration_time"),
    ({"surprise": 1}, "surprise"),
])
def test_validation_is_keyed_by_path(api, auth, make_user, change, field):
    body = {"endpoint": _fcm(), "keys": _keys(), **change}
    response = api.post("/api/v1/push/subscriptions", headers=auth(make_user()), json=body)
    assert response.status_code == 422, response.get_json()
    assert field in response.get_json()["errors"], response.get_json()


def test_the_allow_list_takes_wildcards_and_exact_test_origins(api, auth, make_user, push_service):
    user = make_user()
    for url in ("https://web.push.apple.com/x", "https://a.b.push.apple.com/x",
                f"{push_service.origin}/notify/abc"):
        response = api.post("/api/v1/push/subscriptions", headers=auth(user), json={"endpoint": url, "keys": _keys()})
        assert response.status_code == 201, (url, response.get_json())
    for url in ("https://push.apple.com/x", "https://notpush.apple.com.evil.net/x",
                f"http://127.0.0.1:{push_service.port + 1}/notify/abc"):
        response = api.post("/api/v1/push/subscriptions", headers=auth(user), json={"endpoint": url, "keys": _keys()})
        assert response.status_code == 422, url


def test_registration_never_resolves_or_fetches_the_endpoint(api, auth, make_user, monkeypatch):
    import socket

    def refuse(*args, **kwargs):
        raise AssertionError("the endpoint was resolved while validating")
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    response = api.post("/api/v1/push/subscriptions", headers=auth(make_user()),
                        json={"endpoint": "https://fcm.googleapis.com/fcm/send/zzz", "keys": _keys()})
    assert response.status_code == 201


def test_the_openapi_document_describes_the_push_endpoints(push_config):
    app = create_app({**push_config, "ENABLE_DOCS": True})
    try:
        spec = app.test_client().get("/openapi.json").get_json()
    finally:
        app.extensions["notifications_db"].close()
    paths = spec["paths"]
    assert set(paths["/api/v1/push/subscriptions"]) == {"get", "post", "delete"}
    assert "delete" in paths["/api/v1/push/subscriptions/{subscription_id}"]
    assert paths["/api/v1/push/vapid-public-key"]["get"]["security"] == []
    assert "moves to the caller" in paths["/api/v1/push/subscriptions"]["post"]["description"]
