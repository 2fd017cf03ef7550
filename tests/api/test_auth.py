"""Every JWT failure mode and the service-token rules of API.md."""
import base64
import json
import time
import uuid

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from test_errors import assert_problem

COUNT = "/api/v1/notifications/unread/count"
CREATE = "/api/v1/notifications"


def token(app, sub, secret=None, algorithm="HS256", **claims):
    now = int(time.time())
    payload = {"sub": sub, "iat": now, "exp": now + 600, **claims}
    payload = {k: v for k, v in payload.items() if v is not None}
    return jwt.encode(payload, secret or app.config["JWT_SECRET"], algorithm=algorithm)


def bearer(value):
    return {"Authorization": f"Bearer {value}"}


def b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def test_valid_token(client, app, user):
    response = client.get(COUNT, headers=bearer(token(app, user)))
    assert response.status_code == 200


def test_missing_token(client):
    response = client.get(COUNT)
    assert_problem(response, 401, "missing_token")
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_wrong_scheme_is_missing_token(client, app, user):
    assert_problem(client.get(COUNT, headers={"Authorization": f"Basic {token(app, user)}"}),
                   401, "missing_token")


def test_alg_none_refused(client, user):
    unsigned = b64({"alg": "none", "typ": "JWT"}) + "." + b64(
        {"sub": user, "exp": int(time.time()) + 600}) + "."
    assert_problem(client.get(COUNT, headers=bearer(unsigned)), 401, "invalid_token")


def test_wrong_secret_refused(client, app, user):
    bad = token(app, user, secret="another-secret-that-is-long-enough-0123456789")
    assert_problem(client.get(COUNT, headers=bearer(bad)), 401, "invalid_token")


def test_algorithm_from_header_not_trusted(client, app, user):
    """HS512 signed with the right secret is still refused: the algorithm is pinned."""
    other_alg = token(app, user, algorithm="HS512")
    assert_problem(client.get(COUNT, headers=bearer(other_alg)), 401, "invalid_token")


def test_rs256_hs256_confusion_refused(client, app, user):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public_pem = key.public_key().public_bytes(serialization.Encoding.PEM,
                                               serialization.PublicFormat.SubjectPublicKeyInfo)
    rs = jwt.encode({"sub": user, "exp": int(time.time()) + 600}, key, algorithm="RS256")
    assert_problem(client.get(COUNT, headers=bearer(rs)), 401, "invalid_token")
    # the classic attack: HS256 keyed with the public key text
    import hashlib
    import hmac
    header_payload = b64({"alg": "HS256", "typ": "JWT"}) + "." + b64(
        {"sub": user, "exp": int(time.time()) + 600})
    signature = base64.urlsafe_b64encode(
        hmac.new(public_pem, header_payload.encode(), hashlib.sha256).digest()).rstrip(b"=").decode()
    forged = header_payload + "." + signature
    assert_problem(client.get(COUNT, headers=bearer(forged)), 401, "invalid_token")


def test_expired(client, app, user):
    old = token(app, user, exp=int(time.time()) - 3600, iat=int(time.time()) - 7200)
    assert_problem(client.get(COUNT, headers=bearer(old)), 401, "token_expired")


def test_expired_within_leeway_accepted(client, app, user):
    recent = token(app, user, exp=int(time.time()) - 5)
    assert client.get(COUNT, headers=bearer(recent)).status_code == 200


def test_not_yet_valid(client, app, user):
    future = token(app, user, nbf=int(time.time()) + 3600)
    assert_problem(client.get(COUNT, headers=bearer(future)), 401, "invalid_token")


def test_issued_in_the_future(client, app, user):
    future = token(app, user, iat=int(time.time()) + 3600)
    assert_problem(client.get(COUNT, headers=bearer(future)), 401, "invalid_token")


def test_missing_exp(client, app, user):
    no_exp = jwt.encode({"sub": user}, app.config["JWT_SECRET"], algorithm="HS256")
    assert_problem(client.get(COUNT, headers=bearer(no_exp)), 401, "invalid_token")


@pytest.mark.parametrize("sub", ["not-a-uuid", "", "123"])
def test_sub_must_be_uuid(client, app, sub):
    assert_problem(client.get(COUNT, headers=bearer(token(app, sub))), 401, "invalid_token")


def test_garbage_token(client):
    assert_problem(client.get(COUNT, headers=bearer("a.b.c")), 401, "invalid_token")
    assert_problem(client.get(COUNT, headers=bearer("garbage")), 401, "invalid_token")


@pytest.mark.parametrize("value", ["a=b", "x.y=z.w", "realm=x, token=y"])
def test_a_bearer_value_werkzeug_reads_as_parameters_is_an_invalid_token(client, value):
    """request.authorization parses "Bearer a=b" as auth-params, not a token: still a token sent, and invalid."""
    assert_problem(client.get(COUNT, headers=bearer(value)), 401, "invalid_token")


@pytest.mark.parametrize("header", ["Bearer", "Bearer ", "Bearer \t ", "bearer"])
def test_an_empty_bearer_is_a_missing_token(client, header):
    assert_problem(client.get(COUNT, headers={"Authorization": header}), 401, "missing_token")


def test_unknown_user(client, app):
    assert_problem(client.get(COUNT, headers=bearer(token(app, str(uuid.uuid4())))),
                   401, "user_not_found")


def test_inactive_user(client, app, make_user):
    inactive = make_user(active=False)
    assert_problem(client.get(COUNT, headers=bearer(token(app, inactive))), 403, "user_inactive")


def test_issuer_and_audience_checked_when_configured(make_app, user):
    app = make_app(JWT_ISSUER="https://auth.example.com", JWT_AUDIENCE="notifications")
    client = app.test_client()
    good = token(app, user, iss="https://auth.example.com", aud="notifications")
    assert client.get(COUNT, headers=bearer(good)).status_code == 200
    for bad in (token(app, user, iss="https://evil.example.com", aud="notifications"),
                token(app, user, iss="https://auth.example.com", aud="other"),
                token(app, user)):
        assert_problem(client.get(COUNT, headers=bearer(bad)), 401, "invalid_token")


def test_previous_secret_accepted_during_rotation(make_app, app_config, user):
    old_secret = "the-previous-secret-that-is-long-enough-012345"
    app = make_app(JWT_SECRET_PREVIOUS=old_secret)
    client = app.test_client()
    assert client.get(COUNT, headers=bearer(token(app, user, secret=old_secret))).status_code == 200
    assert client.get(COUNT, headers=bearer(token(app, user))).status_code == 200


def test_service_token_header_forms(client, app):
    body = {"user_id": str(uuid.uuid4()), "notification_type": "comment", "title": "x"}
    for headers in ({"X-Service-Token": app.config["SERVICE_TOKEN"]},
                    bearer(app.config["SERVICE_TOKEN"])):
        response = client.post(CREATE, json=body, headers=headers)
        assert response.status_code == 200, response.get_json()
        assert response.get_json()["results"][0]["result"] == "user_not_found"


def test_service_token_missing_and_wrong(client):
    body = {"user_id": str(uuid.uuid4()), "notification_type": "comment", "title": "x"}
    assert_problem(client.post(CREATE, json=body), 401, "missing_token")
    assert_problem(client.post(CREATE, json=body, headers={"X-Service-Token": "nope"}),
                   401, "invalid_service_token")


def test_user_jwt_on_internal_endpoint(client, app, user):
    body = {"user_id": user, "notification_type": "comment", "title": "x"}
    assert_problem(client.post(CREATE, json=body, headers=bearer(token(app, user))),
                   403, "service_token_required")


def test_previous_service_token_accepted(make_app):
    app = make_app(SERVICE_TOKEN_PREVIOUS="previous-service-token-long-enough-0123456789")
    body = {"user_id": str(uuid.uuid4()), "notification_type": "comment", "title": "x"}
    response = app.test_client().post(
        CREATE, json=body, headers={"X-Service-Token": "previous-service-token-long-enough-0123456789"})
    assert response.status_code == 200


def test_service_token_is_not_a_user_credential(client, app):
    assert_problem(client.get(COUNT, headers=bearer(app.config["SERVICE_TOKEN"])), 401, "invalid_token")
