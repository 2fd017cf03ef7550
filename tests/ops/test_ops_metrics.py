"""GET /metrics in one process: authentication, every metric family, labels by route template."""
from __future__ import annotations

import time
import uuid

import pytest

from notifications_api import metrics
from notifications_api.web.auth import issue_token
from ops_helpers import sample

FAMILIES = (
    "notifications_api_http_request_duration_seconds",
    "notifications_api_db_function_duration_seconds",
    "notifications_api_db_pool_size",
    "notifications_api_db_pool_max_size",
    "notifications_api_db_pool_in_use",
    "notifications_api_db_pool_waiting",
    "notifications_api_db_pool_timeouts_total",
    "notifications_api_rate_limited_total",
    "notifications_api_notifications_created_total",
    "notifications_api_errors_total",
)


def scrape(client, token: str | None = None) -> str:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = client.get("/metrics", headers=headers)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.content_type.startswith("text/plain")
    return response.get_data(as_text=True)


def test_metrics_lists_every_family_outside_the_api_prefix(ops_app):
    client = ops_app().test_client()
    text = scrape(client)
    for family in FAMILIES:
        assert f"# TYPE {family.removesuffix('_total')}" in text, family
    assert client.get("/api/v1/metrics").status_code == 404


@pytest.mark.parametrize("header, code", [
    (None, "missing_token"),
    ("Basic abc", "missing_token"),
    ("Bearer wrong-token", "invalid_token"),
])
def test_metrics_token_required_when_configured(ops_app, ops_secrets, header, code):
    client = ops_app(METRICS_TOKEN=ops_secrets["METRICS_TOKEN"]).test_client()
    response = client.get("/metrics", headers={"Authorization": header} if header else {})
    assert response.status_code == 401
    assert response.mimetype == "application/problem+json"
    assert response.get_json()["code"] == code
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert ops_secrets["METRICS_TOKEN"] not in response.get_data(as_text=True)
    scrape(client, ops_secrets["METRICS_TOKEN"])


def test_request_latency_by_route_template_and_errors_by_code(ops_app, make_user):
    app = ops_app()
    client = app.test_client()
    user = make_user()
    headers = {"Authorization": f"Bearer {issue_token(app.config, user)}"}
    route = "/api/v1/notifications/<uuid:notification_id>"
    name = "notifications_api_http_request_duration_seconds_count"
    before = scrape(client)
    for _ in range(3):
        assert client.get(f"/api/v1/notifications/{uuid.uuid4()}", headers=headers).status_code == 404
    assert client.get("/api/v1/notifications/unread/count", headers=headers).status_code == 200
    assert client.get("/no/such/path").status_code == 404
    after = scrape(client)

    def delta(metric, **labels):
        return sample(after, metric, **labels) - sample(before, metric, **labels)

    assert delta(name, route=route, method="GET", status="404") == 3
    assert delta(name, route="/api/v1/notifications/unread/count", method="GET", status="200") == 1
    assert delta(name, route="<unmatched>", method="GET", status="404") == 1
    assert "/api/v1/notifications/" + "0" not in after  # raw paths never become labels
    assert delta("notifications_api_errors_total", code="notification_not_found") == 3
    assert delta("notifications_api_errors_total", code="not_found") == 1
    assert delta("notifications_api_db_function_duration_seconds_count", function="sp_inbox_get") == 3
    assert delta("notifications_api_db_function_duration_seconds_count", function="sp_get_unread_count") == 1


def test_notifications_created_by_type(ops_app, make_user):
    app = ops_app()
    client = app.test_client()
    users = [make_user(), make_user()]
    before = scrape(client)
    body = {"user_ids": users, "notification_type": "ops_metrics", "title": "hello"}
    headers = {"X-Service-Token": app.config["SERVICE_TOKEN"]}
    assert client.post("/api/v1/notifications", json=body, headers=headers).status_code == 201
    # duplicates are not new notifications
    body["dedupe_key"] = "ops-metrics-1"
    assert client.post("/api/v1/notifications", json=body, headers=headers).status_code == 201
    assert client.post("/api/v1/notifications", json=body, headers=headers).status_code == 200
    after = scrape(client)
    name = "notifications_api_notifications_created_total"
    assert sample(after, name, notification_type="ops_metrics") \
        - sample(before, name, notification_type="ops_metrics") == 4


def test_rate_limit_rejections_counter():
    from prometheus_client import REGISTRY

    name = "notifications_api_rate_limited_total"
    before = REGISTRY.get_sample_value(name) or 0
    metrics.record_rate_limited()
    metrics.record_rate_limited()
    assert REGISTRY.get_sample_value(name) - before == 2


def settled(client) -> str:
    """A scrape once returned connections are back in the pool (the pool resets them in the background)."""
    deadline = time.monotonic() + 5
    while True:
        text = scrape(client)
        if sample(text, "notifications_api_db_pool_in_use") == 0 or time.monotonic() > deadline:
            assert sample(text, "notifications_api_db_pool_in_use") == 0
            return text
        time.sleep(0.05)


def test_pool_gauges_and_timeouts(ops_app):
    app = ops_app(DB_POOL_MIN_SIZE=1, DB_POOL_MAX_SIZE=1, DB_POOL_TIMEOUT=0.2)
    client = app.test_client()
    assert client.get("/health").status_code == 200
    text = settled(client)
    assert sample(text, "notifications_api_db_pool_max_size") == 1
    assert sample(text, "notifications_api_db_pool_size") == 1
    timeouts_before = sample(text, "notifications_api_db_pool_timeouts_total")
    unavailable_before = sample(text, "notifications_api_errors_total", code="database_unavailable")

    pool = app.extensions["notifications_db"].pool
    with pool.connection():  # the only connection is taken: the next request waits, then gets a 503
        response = client.get(f"/api/v1/notifications/{uuid.uuid4()}", headers={
            "Authorization": f"Bearer {issue_token(app.config, str(uuid.uuid4()))}"})
        assert response.status_code == 503
        busy = scrape(client)
        assert sample(busy, "notifications_api_db_pool_in_use") == 1
    text = settled(client)
    assert sample(text, "notifications_api_db_pool_timeouts_total") - timeouts_before == 1
    assert sample(text, "notifications_api_errors_total", code="database_unavailable") - unavailable_before == 1


def test_metrics_is_never_rate_limited(ops_app, redis_url):
    from urllib.parse import urlsplit

    redis = urlsplit(redis_url)
    app = ops_app(RATE_LIMIT_ENABLED=True, RATE_LIMIT_ANONYMOUS="2/minute", REDIS_HOST=redis.hostname,
                  REDIS_PORT=redis.port or 6379, REDIS_DB=int((redis.path or "/0").lstrip("/") or 0))
    client = app.test_client()
    for _ in range(5):
        scrape(client)
