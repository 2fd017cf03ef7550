"""Proxy trust (client address and scheme) and the security headers."""
from __future__ import annotations

import secrets

SPOOFED = {"X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proto": "https"}
BALANCER = {"REMOTE_ADDR": "10.0.0.2"}


def remaining(response) -> int:
    return int(response.headers["RateLimit-Remaining"])


def test_forwarded_for_is_ignored_without_a_trusted_proxy(make_app):
    client = make_app(TRUSTED_PROXY_HOPS=0, RATE_LIMIT_ANONYMOUS="5/minute").test_client()
    seen = [remaining(client.get("/nope", headers={"X-Forwarded-For": f"198.51.100.{n}"}, environ_base=BALANCER))
            for n in range(3)]
    assert seen == [4, 3, 2]  # one budget: the socket's peer


def test_forwarded_for_decides_the_key_behind_a_trusted_proxy(make_app):
    client = make_app(TRUSTED_PROXY_HOPS=1, RATE_LIMIT_ANONYMOUS="5/minute").test_client()

    def hit(forwarded_for: str) -> int:
        return remaining(client.get("/nope", headers={"X-Forwarded-For": forwarded_for}, environ_base=BALANCER))
    assert [hit("198.51.100.1"), hit("198.51.100.2"), hit("198.51.100.1")] == [4, 4, 3]
    # One hop trusted: a client-supplied entry in front of the proxy's own is not believed.
    assert hit("6.6.6.6, 198.51.100.1") == 2


def test_two_hops(make_app):
    client = make_app(TRUSTED_PROXY_HOPS=2, RATE_LIMIT_ANONYMOUS="5/minute").test_client()
    response = client.get("/nope", headers={"X-Forwarded-For": "6.6.6.6, 198.51.100.1, 10.0.0.3"},
                          environ_base=BALANCER)
    again = client.get("/nope", headers={"X-Forwarded-For": "7.7.7.7, 198.51.100.1, 10.0.0.4"},
                       environ_base=BALANCER)
    assert remaining(response) == 4 and remaining(again) == 3


def _next_link(make_app, secrets_config, make_user, bearer, **overrides) -> str:
    app = make_app(**overrides)
    client = app.test_client()
    user = make_user()
    for title in ("one", "two"):
        created = client.post("/api/v1/notifications", headers={"X-Service-Token": secrets_config["SERVICE_TOKEN"]},
                              json={"user_id": user, "notification_type": "comment", "title": title})
        assert created.status_code == 201
    response = client.get("/api/v1/notifications?limit=1", headers={**bearer(user), **SPOOFED},
                          environ_base=BALANCER, base_url="http://api.example.com")
    assert response.status_code == 200
    return response.headers["Link"]


def test_scheme_comes_from_the_proxy_only_when_trusted(make_app, secrets_config, make_user, bearer):
    assert _next_link(make_app, secrets_config, make_user, bearer, TRUSTED_PROXY_HOPS=1).startswith(
        "<https://api.example.com/api/v1/notifications?")
    assert _next_link(make_app, secrets_config, make_user, bearer, TRUSTED_PROXY_HOPS=0).startswith(
        "<http://api.example.com/api/v1/notifications?")


def test_hsts_in_production_only(make_app):
    production = make_app(ENVIRONMENT="production", JWT_SECRET=secrets.token_urlsafe(40),
                          SERVICE_TOKEN=secrets.token_urlsafe(40), METRICS_TOKEN=secrets.token_urlsafe(40),
                          DB_ALLOW_WEAK_SSLMODE=True, RATE_LIMIT_ENABLED=False)
    for path in ("/health/live", "/nope"):
        response = production.test_client().get(path)
        assert response.headers["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains"
    assert "Strict-Transport-Security" not in make_app().test_client().get("/health/live").headers


def test_json_responses_forbid_rendering_and_framing(make_app):
    client = make_app().test_client()
    for path in ("/health/live", "/nope"):
        assert client.get(path).headers["Content-Security-Policy"] == "default-src 'none'; frame-ancestors 'none'"
