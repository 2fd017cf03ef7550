"""What the hostile-input tests share (a module of its own: `from conftest import` picks whichever
conftest was imported first when several test folders run together)."""
from __future__ import annotations

PREFIX = "/api/v1"


def assert_problem(response, *statuses: int) -> dict:
    """A 4xx (or one of `statuses`) problem document whose request_id is the X-Request-ID header."""
    assert response.status_code < 500, (response.status_code, response.get_data()[:300])
    if statuses:
        assert response.status_code in statuses, (response.status_code, response.get_data()[:300])
    assert 400 <= response.status_code < 500, (response.status_code, response.get_data()[:300])
    assert response.mimetype == "application/problem+json", response.get_data()[:300]
    body = response.get_json()
    assert body["status"] == response.status_code and body["code"] and body["detail"]
    assert body["request_id"] == response.headers["X-Request-ID"]
    return body
