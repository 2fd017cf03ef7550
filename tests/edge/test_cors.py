"""CORS from CORS_ORIGINS: listed origins get preflights and Access-Control-Allow-Origin, others nothing."""
from __future__ import annotations

import pytest

LISTED = "https://app.example.com"
COUNT = "/api/v1/notifications/unread/count"


def preflight(client, origin: str, method: str = "GET",
              headers: str = "authorization, if-none-match, x-request-id"):
    return client.options(COUNT, headers={"Origin": origin, "Access-Control-Request-Method": method,
                                          "Access-Control-Request-Headers": headers})


def header_set(response, name: str) -> set[str]:
    return {part.strip().lower() for part in response.headers.get(name, "").split(",") if part.strip()}


@pytest.fixture
def client(make_app):
    return make_app(CORS_ORIGINS=(LISTED, "http://localhost:3000"), RATE_LIMIT_USER_READ="2/minute").test_client()


def test_a_listed_origin_gets_its_preflight(client):
    response = preflight(client, LISTED)
    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] == LISTED
    assert {"get", "post", "put", "patch", "delete"} <= header_set(response, "Access-Control-Allow-Methods")
    assert header_set(response, "Access-Control-Allow-Headers") == {"authorization", "if-none-match", "x-request-id"}
    assert response.headers["Access-Control-Max-Age"] == "600"
    assert "Origin" in response.headers["Vary"]
    assert "Access-Control-Allow-Credentials" not in response.headers
    assert "RateLimit-Limit" not in response.headers  # preflights spend no budget


def test_every_request_header_of_the_api_is_allowed(client):
    asked = "authorization, content-type, if-none-match, idempotency-key, x-request-id"
    response = preflight(client, LISTED, "POST", asked)
    assert header_set(response, "Access-Control-Allow-Headers") == set(asked.split(", "))


def test_the_service_token_header_is_not_allowed_from_browsers(client):
    """Only internal services send X-Service-Token; a browser page asking to send it is not allowed to."""
    response = preflight(client, LISTED, "POST", "content-type, x-service-token")
    assert "x-service-token" not in header_set(response, "Access-Control-Allow-Headers")


def test_an_unlisted_origin_gets_nothing(client, make_user, bearer):
    for origin in ("https://evil.example.com", "https://app.example.com.evil.com", "http://app.example.com"):
        response = preflight(client, origin)
        assert "Access-Control-Allow-Origin" not in response.headers
        assert "Access-Control-Allow-Methods" not in response.headers
        actual = client.get(COUNT, headers=bearer(make_user(), Origin=origin))
        assert actual.status_code == 200 and "Access-Control-Allow-Origin" not in actual.headers


def test_actual_responses_expose_the_api_headers(client, make_user, bearer):
    headers = bearer(make_user(), Origin=LISTED)
    response = client.get(COUNT, headers=headers)
    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] == LISTED
    assert header_set(response, "Access-Control-Expose-Headers") == {
        "etag", "link", "retry-after", "x-request-id", "x-poll-interval",
        "ratelimit-limit", "ratelimit-remaining", "ratelimit-reset"}
    assert "Origin" in response.headers["Vary"]
    client.get(COUNT, headers=headers)
    # A 429 (and any error) can be read by the page too: it needs Retry-After.
    limited = client.get(COUNT, headers=headers)
    assert limited.status_code == 429 and limited.headers["Access-Control-Allow-Origin"] == LISTED
    unauthorized = client.get(COUNT, headers={"Origin": LISTED})
    assert unauthorized.status_code == 401 and unauthorized.headers["Access-Control-Allow-Origin"] == LISTED


def test_no_origin_header_no_cors_headers(client):
    response = client.get("/api/v1/nope")
    assert not [name for name in response.headers.keys() if name.startswith("Access-Control-")]


def test_operations_endpoints_are_not_cross_origin(client):
    assert "Access-Control-Allow-Origin" not in client.get("/health/live", headers={"Origin": LISTED}).headers


def test_empty_cors_origins_allows_no_origin(make_app):
    client = make_app(CORS_ORIGINS=()).test_client()
    response = preflight(client, LISTED)
    assert not [name for name in response.headers.keys() if name.startswith("Access-Control-")]
    assert "Access-Control-Allow-Origin" not in client.get(COUNT, headers={"Origin": LISTED}).headers


def test_an_anonymous_failure_is_readable_by_a_listed_origin(make_app):
    """Past the IP's budget a 401 stays a 401 (API.md), with CORS and its RateLimit-* exposed."""
    client = make_app(CORS_ORIGINS=(LISTED,), RATE_LIMIT_ANONYMOUS="1/minute").test_client()
    for _ in range(2):
        response = client.get(COUNT, headers={"Origin": LISTED})
        assert response.status_code == 401 and response.headers["Access-Control-Allow-Origin"] == LISTED
        assert response.headers["RateLimit-Remaining"] == "0"
        assert "ratelimit-remaining" in header_set(response, "Access-Control-Expose-Headers")


def test_flask_cors_still_registers_the_hook_cors_py_wraps():
    """cors.only_with_origin replaces Flask-CORS's after_request hook in place (a measured gain, see its
    docstring). It relies on CORS(app) appending exactly one after_request hook, named
    cors_after_request, that takes the response and returns it: this fails when Flask-CORS changes that."""
    import inspect

    from flask import Flask, Response
    from flask_cors import CORS

    app = Flask(__name__)
    CORS(app, origins=[LISTED], always_send=False, vary_header=False, intercept_exceptions=False)
    [hook] = app.after_request_funcs[None]
    assert hook.__name__ == "cors_after_request"
    assert len(inspect.signature(hook).parameters) == 1
    with app.test_request_context("/x", headers={"Origin": LISTED}):
        response = Response("x")
        assert hook(response) is response and response.headers["Access-Control-Allow-Origin"] == LISTED


def test_the_app_runs_the_cors_hook_only_with_an_origin(make_app):
    names = [getattr(hook, "__name__", None) for hook in make_app(CORS_ORIGINS=(LISTED,)).after_request_funcs[None]]
    assert "cors_if_origin" in names and "cors_after_request" not in names
