"""Rate limits in one process: budgets, keys, headers, the 429 document, anonymous traffic, precedence."""
from __future__ import annotations

import json
import logging

import pytest

from notifications_api.web import ratelimit

COUNT = "/api/v1/notifications/unread/count"
SETTINGS = "/api/v1/notifications/settings"
CREATE = "/api/v1/notifications"


def remaining(response) -> int:
    return int(response.headers["RateLimit-Remaining"])


def assert_rate_limited(response, limit: int):
    assert response.status_code == 429
    assert response.mimetype == "application/problem+json"
    body = response.get_json()
    assert body["code"] == "rate_limited" and body["status"] == 429 and body["title"] == "Too Many Requests"
    assert body["request_id"] == response.headers["X-Request-ID"]
    assert 1 <= int(response.headers["Retry-After"]) <= 60
    assert response.headers["RateLimit-Limit"] == str(limit)
    assert response.headers["RateLimit-Remaining"] == "0"
    assert 0 <= int(response.headers["RateLimit-Reset"]) <= 60


def rate_limited_events(caplog):
    return [record for record in caplog.records if getattr(record, "event", None) == "rate_limited"]


def test_user_reads_reach_the_limit(make_app, make_user, bearer, caplog):
    client = make_app(RATE_LIMIT_USER_READ="3/minute").test_client()
    headers = bearer(make_user())
    for expected in (2, 1, 0):
        response = client.get(COUNT, headers=headers)
        assert response.status_code == 200
        assert response.headers["RateLimit-Limit"] == "3"
        assert remaining(response) == expected
        assert 1 <= int(response.headers["RateLimit-Reset"]) <= 60
        assert "Retry-After" not in response.headers
    with caplog.at_level(logging.INFO, logger="notifications_api"):
        response = client.get(COUNT, headers=headers)
    assert_rate_limited(response, 3)
    [event] = rate_limited_events(caplog)
    assert event.scope == "user-read" and event.rate_limit_key and event.route.endswith("/unread/count")
    token = headers["Authorization"].split()[1]
    assert all(token not in json.dumps(record.__dict__, default=str) for record in caplog.records)


def test_a_304_is_counted_and_carries_the_headers(make_app, make_user, bearer):
    client = make_app(RATE_LIMIT_USER_READ="5/minute").test_client()
    headers = bearer(make_user())
    etag = client.get(COUNT, headers=headers).headers["ETag"]
    response = client.get(COUNT, headers={**headers, "If-None-Match": etag})
    assert response.status_code == 304 and remaining(response) == 3


def test_read_budget_is_per_user_and_shared_by_the_read_endpoints(make_app, make_user, bearer):
    client = make_app(RATE_LIMIT_USER_READ="2/minute", RATE_LIMIT_USER_WRITE="2/minute").test_client()
    alice, bob = bearer(make_user()), bearer(make_user())
    assert client.get(COUNT, headers=alice).status_code == 200
    assert client.get(SETTINGS, headers=alice).status_code == 200
    assert_rate_limited(client.get("/api/v1/notifications", headers=alice), 2)
    # Writes have their own budget, and other users are untouched.
    response = client.patch(SETTINGS, json={"email_enabled": False}, headers=alice)
    assert response.status_code == 200 and response.headers["RateLimit-Limit"] == "2" and remaining(response) == 1
    assert remaining(client.get(COUNT, headers=bob)) == 1


def test_user_writes_reach_their_limit(make_app, make_user, bearer):
    client = make_app(RATE_LIMIT_USER_WRITE="2/minute").test_client()
    headers = bearer(make_user())
    for _ in range(2):
        assert client.post("/api/v1/notifications/mark-read", json={"all": True}, headers=headers).status_code == 200
    assert_rate_limited(client.post("/api/v1/notifications/mark-read", json={"all": True}, headers=headers), 2)


def test_service_limit_is_keyed_by_the_service(make_app, make_user, secrets_config):
    client = make_app(RATE_LIMIT_SERVICE="2/minute").test_client()
    service = {"X-Service-Token": secrets_config["SERVICE_TOKEN"]}
    body = {"user_id": make_user(), "notification_type": "comment", "title": "Hi"}
    for _ in range(2):
        response = client.post(CREATE, json=body, headers=service)
        assert response.status_code == 201 and response.headers["RateLimit-Limit"] == "2"
    # Over the limit, 429 comes before anything about the body (413/415/400/422).
    assert_rate_limited(client.post(CREATE, data="{", content_type="text/plain", headers=service), 2)


def test_precedence_routing_and_credentials_before_429_before_the_body(make_app, make_user, bearer):
    client = make_app(RATE_LIMIT_USER_WRITE="1/minute", RATE_LIMIT_ANONYMOUS="100/minute").test_client()
    headers = bearer(make_user())
    assert client.patch(SETTINGS, json={}, headers=headers).status_code in (200, 422)
    # Over budget: a bad body is still 429 ...
    assert_rate_limited(client.patch(SETTINGS, data="{", content_type="application/json", headers=headers), 1)
    assert_rate_limited(client.patch(SETTINGS, data="x", content_type="text/plain", headers=headers), 1)
    # ... but routing errors and bad credentials come first.
    assert client.delete("/api/v1/notifications/not-a-uuid", headers=headers).status_code == 404
    assert client.post(SETTINGS, json={}, headers=headers).status_code == 405
    assert client.patch(SETTINGS, json={}, headers={"Authorization": "Bearer nope"}).status_code == 401


def test_a_missing_or_inactive_user_outranks_the_limit(make_app, make_user, bearer):
    """401 user_not_found / 403 user_inactive come before 429 (API.md): clients log out, not back off."""
    import uuid
    client = make_app(RATE_LIMIT_USER_READ="1/minute").test_client()
    for headers, status, code in ((bearer(str(uuid.uuid4())), 401, "user_not_found"),
                                  (bearer(make_user(active=False)), 403, "user_inactive")):
        for _ in range(3):
            response = client.get(COUNT, headers=headers)
            assert response.status_code == status and response.get_json()["code"] == code


def test_failed_authentication_spends_the_anonymous_ip_budget(make_app, make_user, bearer, caplog):
    app = make_app(RATE_LIMIT_ANONYMOUS="3/minute")
    app.add_url_rule("/openapi-like", "openapi_like", lambda: {"openapi": "3.1.0"})  # e.g. /openapi.json
    client = app.test_client()
    stuffing = {"Authorization": "Bearer not.a.token"}
    for expected in (2, 1):
        response = client.get(COUNT, headers=stuffing)
        assert response.status_code == 401 and remaining(response) == expected
    response = client.post(CREATE, json={}, headers={"X-Service-Token": "guess"})
    assert response.status_code == 401 and remaining(response) == 0
    # Spent: the anonymous endpoints are refused ...
    assert_rate_limited(client.get("/openapi-like"), 3)
    assert "not.a.token" not in caplog.text
    # ... but a failure keeps its own status: API.md ranks 401/403 and 404/405 above 429.
    with caplog.at_level(logging.INFO, logger="notifications_api"):
        response = client.get(COUNT, headers=stuffing)
        assert response.status_code == 401 and response.get_json()["code"] == "invalid_token"
        assert remaining(response) == 0 and "Retry-After" not in response.headers
        assert client.get("/wp-login.php").status_code == 404
        assert client.delete(SETTINGS, headers=stuffing).status_code == 405
    assert rate_limited_events(caplog) == []
    # ... /health never counts nor is limited ...
    for _ in range(5):
        for path in ("/health", "/health/live"):
            response = client.get(path)
            assert response.status_code == 200 and "RateLimit-Limit" not in response.headers
    # ... a valid credential from the same address is judged by its own budget ...
    assert client.get(COUNT, headers=bearer(make_user())).status_code == 200
    # ... and another address has its own budget.
    other = client.get(COUNT, headers=stuffing, environ_base={"REMOTE_ADDR": "192.0.2.7"})
    assert other.status_code == 401 and remaining(other) == 2


def test_an_expired_token_gets_401_even_when_its_ip_budget_is_spent(make_app, make_user, secrets_config):
    """Behind a NAT the budget may be spent by others: the browser must refresh, not back off."""
    from notifications_api.web.auth import issue_token
    client = make_app(RATE_LIMIT_ANONYMOUS="2/minute").test_client()
    for _ in range(3):
        client.get("/wp-login.php")
    expired = issue_token({"JWT_SECRET": secrets_config["JWT_SECRET"], "JWT_ALGORITHM": "HS256"},
                          make_user(), hours=-1)
    for _ in range(3):
        response = client.get(COUNT, headers={"Authorization": f"Bearer {expired}"})
        assert response.status_code == 401 and response.get_json()["code"] == "token_expired"
        assert response.headers["WWW-Authenticate"] == "Bearer" and "Retry-After" not in response.headers
        assert remaining(response) == 0
    assert client.get(COUNT, headers={}).get_json()["code"] == "missing_token"


def test_scrapes_are_never_limited_but_a_wrong_metrics_token_counts(make_app):
    token = "m" * 40
    app = make_app(RATE_LIMIT_ANONYMOUS="3/minute", METRICS_TOKEN=token)
    app.add_url_rule("/openapi-like", "openapi_like", lambda: {"openapi": "3.1.0"})
    client = app.test_client()
    for _ in range(4):
        response = client.get("/metrics", headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 200 and "RateLimit-Limit" not in response.headers
    assert remaining(client.get("/metrics")) == 2
    assert remaining(client.get("/nope")) == 1
    response = client.get("/metrics", headers={"Authorization": "Bearer guess"})
    assert response.status_code == 401 and remaining(response) == 0
    assert_rate_limited(client.get("/openapi-like"), 3)
    assert client.get("/metrics", headers={"Authorization": f"Bearer {token}"}).status_code == 200


def test_other_endpoints_are_limited_by_ip(make_app):
    app = make_app(RATE_LIMIT_ANONYMOUS="2/minute")
    app.add_url_rule("/openapi-like", "openapi_like", lambda: {"openapi": "3.1.0"})  # e.g. /docs, /openapi.json
    client = app.test_client()
    assert [client.get("/openapi-like").status_code for _ in range(3)] == [200, 200, 429]


def test_a_guarded_route_spends_its_own_budget_not_the_ip_budget(make_app, make_user, bearer):
    # ratelimit._route_limit counts a user route itself; Flask-Limiter's defaults (the IP budget)
    # must skip it, or every user read would also spend the anonymous budget of the user's address.
    app = make_app(RATE_LIMIT_USER_READ="5/minute", RATE_LIMIT_ANONYMOUS="2/minute")
    app.add_url_rule("/openapi-like", "openapi_like", lambda: {"openapi": "3.1.0"})
    client = app.test_client()
    headers = bearer(make_user())
    responses = [client.get(COUNT, headers=headers) for _ in range(4)]
    assert [r.status_code for r in responses] == [200] * 4
    assert [remaining(r) for r in responses] == [4, 3, 2, 1]
    assert all(r.headers["RateLimit-Limit"] == "5" for r in responses)
    assert [client.get("/openapi-like").status_code for _ in range(3)] == [200, 200, 429]


def test_each_limit_of_a_setting_counts_and_the_spent_one_is_reported(make_app, make_user, bearer):
    # Several limits in one setting: every hit counts against each; the headers show the most
    # restrictive one's (the fewest left: here the hour's 1, not the minute's 2; issue 26), then the
    # spent one's.
    client = make_app(RATE_LIMIT_USER_READ="3/minute;2/hour").test_client()
    headers = bearer(make_user())
    first = client.get(COUNT, headers=headers)
    assert first.status_code == 200 and first.headers["RateLimit-Limit"] == "2" and remaining(first) == 1
    assert client.get(COUNT, headers=headers).status_code == 200
    response = client.get(COUNT, headers=headers)
    assert response.status_code == 429
    assert response.headers["RateLimit-Limit"] == "2" and remaining(response) == 0
    assert int(response.headers["RateLimit-Reset"]) > 60  # the hour's window, not the minute's


DOCS_ASSETS = ("index.css", "swagger-ui.css", "favicon-32x32.png", "favicon-16x16.png",
               "swagger-ui-bundle.js", "swagger-ui-standalone-preset.js")


def test_a_docs_page_load_counts_the_page_and_the_document_not_the_assets(make_app):
    client = make_app(ENABLE_DOCS=True, RATE_LIMIT_ANONYMOUS="4/minute").test_client()
    page = client.get("/docs")
    assert page.status_code == 200 and remaining(page) == 3
    assert all(f"/docs/{asset}" in page.get_data(as_text=True) for asset in DOCS_ASSETS)  # the page's list
    for load in range(2):
        if load:
            assert remaining(client.get("/docs/")) == 1
        for asset in DOCS_ASSETS:
            response = client.get(f"/docs/{asset}")
            assert response.status_code == 200 and "RateLimit-Limit" not in response.headers, asset
        assert remaining(client.get("/openapi.json")) == 2 - 2 * load
    assert_rate_limited(client.get("/docs"), 4)
    assert client.get("/docs/swagger-ui-bundle.js").status_code == 200  # assets of a cached page still load
    assert client.get("/docs/index.html").status_code == 429  # the page under its other name counts
    assert remaining(client.get("/docs/no-such-asset.js")) == 0  # a miss is a scan: it counts


def test_ipv6_clients_are_counted_per_64(make_app):
    client = make_app(RATE_LIMIT_ANONYMOUS="3/minute").test_client()
    seen = [remaining(client.get("/nope", environ_base={"REMOTE_ADDR": address}))
            for address in ("2001:db8:1:2::1", "2001:db8:1:2::ffff", "2001:db8:1:2:abcd::9", "2001:db8:1:3::1")]
    assert seen == [2, 1, 0, 2]


def test_disabled_means_no_limits_no_headers_no_state(make_app, make_user, bearer):
    app = make_app(RATE_LIMIT_ENABLED=False, RATE_LIMIT_USER_READ="1/minute", RATE_LIMIT_ANONYMOUS="1/minute")
    client = app.test_client()
    headers = bearer(make_user())
    for _ in range(3):
        response = client.get(COUNT, headers=headers)
        assert response.status_code == 200 and "RateLimit-Limit" not in response.headers
        assert client.get("/nope").status_code == 404
    assert ratelimit.EXTENSION not in app.extensions and ratelimit.STORAGE_CHECK not in app.extensions
    assert "limiter" not in app.extensions


def test_apps_in_one_process_keep_their_own_budgets(make_app, make_user, bearer):
    headers = bearer(make_user())
    first = make_app(RATE_LIMIT_USER_READ="1/minute").test_client()
    second = make_app(RATE_LIMIT_USER_READ="5/minute").test_client()
    assert first.get(COUNT, headers=headers).status_code == 200
    assert remaining(second.get(COUNT, headers=headers)) == 4
    assert first.get(COUNT, headers=headers).status_code == 429


def test_health_reports_the_storage_only_when_redis_is_configured(make_app, redis_server):
    memory = make_app()
    assert ratelimit.STORAGE_CHECK not in memory.extensions
    assert "rate_limit_storage" not in memory.test_client().get("/health").get_json()["checks"]
    on_redis = make_app(REDIS_HOST="127.0.0.1", REDIS_PORT=redis_server.port)
    body = on_redis.test_client().get("/health").get_json()
    assert body["status"] == "ok" and body["checks"]["rate_limit_storage"] == "ok"


@pytest.mark.redis
def test_one_redis_round_trip_per_limited_request(make_app, make_user, bearer, redis_server):
    client = make_app(REDIS_HOST="127.0.0.1", REDIS_PORT=redis_server.port,
                      RATE_LIMIT_USER_READ="2/minute").test_client()
    headers = bearer(make_user())
    assert client.get(COUNT, headers=headers).status_code == 200  # connects and loads the script
    redis = redis_server.client()
    for expected_status in (200, 429):
        redis.config_resetstat()
        response = client.get(COUNT, headers=headers)
        assert response.status_code == expected_status and "RateLimit-Reset" in response.headers
        stats = {name: value["calls"] for name, value in redis.info("commandstats").items()
                 if name not in ("cmdstat_config|resetstat", "cmdstat_info")}
        # One EVALSHA from the app; the rest ran inside that script.
        assert stats.pop("cmdstat_evalsha") == 1
        assert set(stats) <= {"cmdstat_incrby", "cmdstat_pttl", "cmdstat_expire"}
    # The counter is in Redis, under the service's prefix.
    assert any(key.startswith(b"notifications-api:LIMITER/") for key in redis.keys("*"))
    redis.close()


def _stored_function_calls(app) -> list[str]:
    """Names of the stored functions the app calls from now on (the app's own metric hook)."""
    from notifications_api.db import pool as db
    calls: list[str] = []
    app.extensions[db.EXTENSION].observers.append(lambda function, seconds: calls.append(function))
    return calls


def test_a_client_past_its_budget_costs_the_database_nothing(make_app, make_user, bearer):
    app = make_app(RATE_LIMIT_USER_READ="2/minute", RATE_LIMIT_USER_WRITE="100/minute")
    client = app.test_client()
    calls = _stored_function_calls(app)
    headers = bearer(make_user())
    assert [client.get(COUNT, headers=headers).status_code for _ in range(2)] == [200, 200]
    assert len(calls) == 2
    calls.clear()
    assert_rate_limited(client.get(COUNT, headers=headers), 2)
    assert len(calls) == 1  # the first refusal checks the user exists and is active ...
    calls.clear()
    for _ in range(20):
        assert_rate_limited(client.get(COUNT, headers=headers), 2)
    assert calls == []  # ... and the next ones, within USER_CHECK_SECONDS, cost PostgreSQL nothing
    # A body refused before any stored function is alike (it shares the user's check).
    for _ in range(5):
        response = client.patch(SETTINGS, data="{", content_type="application/json", headers=headers)
        assert response.status_code == 400
    assert calls == []


def test_the_user_check_is_repeated_once_its_window_has_passed(make_app, make_user, bearer, monkeypatch):
    from notifications_api.web import auth
    monkeypatch.setattr(auth, "USER_CHECK_SECONDS", 0.0)
    app = make_app(RATE_LIMIT_USER_READ="1/minute")
    client = app.test_client()
    headers = bearer(make_user())
    assert client.get(COUNT, headers=headers).status_code == 200
    calls = _stored_function_calls(app)
    for _ in range(3):
        assert_rate_limited(client.get(COUNT, headers=headers), 1)
    assert len(calls) == 3


def test_a_refused_user_is_remembered_as_refused(make_app, make_user, bearer):
    """401 user_not_found / 403 user_inactive stay ahead of 429 when the check comes from the cache."""
    import uuid
    app = make_app(RATE_LIMIT_USER_READ="1/minute")
    client = app.test_client()
    calls = _stored_function_calls(app)
    for headers, status, code in ((bearer(str(uuid.uuid4())), 401, "user_not_found"),
                                  (bearer(make_user(active=False)), 403, "user_inactive")):
        calls.clear()
        for _ in range(5):
            response = client.get(COUNT, headers=headers)
            assert response.status_code == status and response.get_json()["code"] == code
        if status == 401:
            assert response.headers["WWW-Authenticate"] == "Bearer"
        assert len(calls) == 2  # the view's own call, then one check for all the refusals after it


def test_the_headers_report_the_most_restrictive_window_on_every_path(make_app, make_user, bearer):
    """With a per-minute and a per-hour limit, the hour's is the one that will refuse first:
    Remaining must not promise the minute's 9 when the hour leaves 2 (routed, Flask-Limiter's
    anonymous defaults, and an anonymous failure alike)."""
    app = make_app(RATE_LIMIT_USER_READ="10/minute;3/hour", RATE_LIMIT_ANONYMOUS="10/minute;3/hour")
    app.add_url_rule("/openapi-like", "openapi_like", lambda: {"openapi": "3.1.0"})  # anonymous defaults
    client = app.test_client()
    headers = bearer(make_user())
    for expected in (2, 1, 0):
        response = client.get(COUNT, headers=headers)
        assert response.status_code == 200
        assert (response.headers["RateLimit-Limit"], remaining(response)) == ("3", expected)
        assert int(response.headers["RateLimit-Reset"]) > 60  # the hour's window
    assert_rate_limited_by_the_hour(client.get(COUNT, headers=headers))
    response = client.get("/openapi-like")
    assert (response.headers["RateLimit-Limit"], remaining(response)) == ("3", 2)
    response = client.get(COUNT, headers={"Authorization": "Bearer not.a.token"})  # an anonymous failure
    assert response.status_code == 401
    assert (response.headers["RateLimit-Limit"], remaining(response)) == ("3", 1)


def assert_rate_limited_by_the_hour(response):
    assert response.status_code == 429
    assert response.headers["RateLimit-Limit"] == "3" and remaining(response) == 0
    assert int(response.headers["Retry-After"]) > 60


def test_the_previous_service_token_shares_the_services_budget(make_app, secrets_config):
    """Rotating SERVICE_TOKEN must not double the service's budget for the overlap."""
    previous = "previous-" + "p" * 40
    client = make_app(RATE_LIMIT_SERVICE="3/minute", SERVICE_TOKEN_PREVIOUS=previous).test_client()
    current = {"X-Service-Token": secrets_config["SERVICE_TOKEN"]}
    old = {"X-Service-Token": previous}
    answers = [client.post(CREATE, json={}, headers=which) for which in (current, old, current, old)]
    assert [r.status_code for r in answers] == [422, 422, 422, 429]
    assert [remaining(r) for r in answers] == [2, 1, 0, 0]


def test_flask_limiters_check_runs_only_where_its_default_limits_apply(make_app, make_user, bearer,
                                                                       monkeypatch):
    """Guarded and unmetered routes skip Flask-Limiter's evaluation and its after_request and
    teardown hooks (their cost, issue 30); the anonymous endpoints still get all three, in the same
    place among the hooks."""
    import flask_limiter
    from flask import request
    checked: list[str | None] = []
    finished: list[str | None] = []
    released: list[str | None] = []
    original = flask_limiter.Limiter._check_request_limit
    inject = flask_limiter.Limiter._Limiter__inject_headers
    release = flask_limiter.Limiter._Limiter__release_context

    def counting(self, *args, **kwargs):
        checked.append(request.endpoint)
        return original(self, *args, **kwargs)

    def counting_inject(self, response):
        finished.append(request.endpoint)
        return inject(self, response)

    def counting_release(self, *args):
        released.append(request.endpoint)
        return release(self, *args)
    monkeypatch.setattr(flask_limiter.Limiter, "_check_request_limit", counting)
    monkeypatch.setattr(flask_limiter.Limiter, "_Limiter__inject_headers", counting_inject)
    monkeypatch.setattr(flask_limiter.Limiter, "_Limiter__release_context", counting_release)
    app = make_app(RATE_LIMIT_ANONYMOUS="2/minute")
    app.add_url_rule("/openapi-like", "openapi_like", lambda: {"openapi": "3.1.0"})
    hooks = app.before_request_funcs[None]
    assert not any(getattr(hook, "__func__", None) is counting for hook in hooks)  # replaced ...
    gate = [hook for hook in hooks if hook.__name__ == "check_default_limits"]
    assert len(gate) == 1  # ... by the gate, once
    client = app.test_client()
    headers = bearer(make_user())
    assert [client.get(COUNT, headers=headers).status_code for _ in range(3)] == [200] * 3
    assert client.get("/health/live").status_code == 200
    assert checked == finished == released == []
    assert [client.get("/openapi-like").status_code for _ in range(3)] == [200, 200, 429]
    assert checked == finished == released == ["openapi_like"] * 3
