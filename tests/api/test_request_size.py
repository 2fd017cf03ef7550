"""Over-long request lines and headers are 414/431 problem documents, checked before anything else."""
from notifications_api.web import http_limits

PREFIX = "/api/v1"
LIST = f"{PREFIX}/notifications"


def _problem(response, status, code):
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/problem+json"
    body = response.get_json()
    assert (body["status"], body["code"]) == (status, code)
    assert body["request_id"] == response.headers["X-Request-ID"]
    assert response.headers["Cache-Control"] == "no-store"
    return body


def _query_for_line(method: str, path: str, length: int) -> str:
    """A query string making `METHOD path?q HTTP/1.1` exactly `length` bytes."""
    fixed = len(method) + 1 + len(path) + 1 + len(" HTTP/1.1") - 1 + len("?a=")
    return "a=" + "x" * (length - fixed)


def test_a_request_line_over_the_limit_is_414_before_auth_and_routing(client):
    query = _query_for_line("GET", LIST, http_limits.MAX_REQUEST_LINE + 1)
    body = _problem(client.get(f"{LIST}?{query}"), 414, "uri_too_long")  # no token: 414 comes first
    assert str(http_limits.MAX_REQUEST_LINE) in body["detail"]
    _problem(client.get(f"/nope?{_query_for_line('GET', '/nope', http_limits.MAX_REQUEST_LINE + 1)}"),
             414, "uri_too_long")


def test_a_request_line_at_the_limit_goes_on(client, user, user_headers):
    query = _query_for_line("GET", LIST, http_limits.MAX_REQUEST_LINE)
    response = client.get(f"{LIST}?{query}", headers=user_headers(user))
    assert response.status_code == 422  # reached the view: `a` is an unknown query parameter
    assert response.get_json()["errors"] == {"a": ["Unknown field."]}


def test_a_header_over_the_limit_is_431_without_echoing_it(client, user, user_headers):
    value_length = http_limits.MAX_HEADER_FIELD - len("X-Big: ") - 2
    ok = client.get(f"{LIST}/unread/count", headers={**user_headers(user), "X-Big": "b" * value_length})
    assert ok.status_code == 200
    response = client.get(f"{LIST}/unread/count",
                          headers={**user_headers(user), "X-Big": "b" * (value_length + 1)})
    body = _problem(response, 431, "header_too_large")
    assert "bbbb" not in response.get_data(as_text=True) and "X-Big" not in body["detail"]


def test_a_long_authorization_header_is_431_not_401(client):
    _problem(client.get(LIST, headers={"Authorization": "Bearer " + "t" * 9000}), 431, "header_too_large")


def test_too_many_headers_is_431(client, user, user_headers):
    many = {f"X-H{i}": "1" for i in range(http_limits.MAX_HEADER_FIELDS + 1)}
    _problem(client.get(f"{LIST}/unread/count", headers={**user_headers(user), **many}), 431,
             "header_too_large")


def test_the_app_limits_sit_below_gunicorns():
    """gunicorn answers above its own limits with an HTML page: its limits must leave room for the app's."""
    import runpy
    from pathlib import Path

    settings = runpy.run_path(str(Path(__file__).resolve().parents[2] / "gunicorn.conf.py"))
    assert settings["limit_request_line"] == http_limits.GUNICORN_LIMIT_REQUEST_LINE > http_limits.MAX_REQUEST_LINE
    assert settings["limit_request_field_size"] == http_limits.GUNICORN_LIMIT_REQUEST_FIELD_SIZE \
        > http_limits.MAX_HEADER_FIELD
    assert settings["limit_request_fields"] == http_limits.GUNICORN_LIMIT_REQUEST_FIELDS \
        > http_limits.MAX_HEADER_FIELDS
