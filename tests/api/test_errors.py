"""The problem-document envelope and the headers every response carries."""
import json
import uuid

import pytest

PREFIX = "/api/v1"
TITLES = {400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 409: "Conflict",
          405: "Method Not Allowed", 413: "Content Too Large", 415: "Unsupported Media Type",
          422: "Unprocessable Content", 429: "Too Many Requests", 500: "Internal Server Error",
          503: "Service Unavailable"}


def assert_problem(response, status, code):
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/problem+json"
    body = response.get_json(force=True)
    assert body["status"] == status
    assert body["code"] == code
    assert body["type"] == "about:blank"
    assert body["title"] == TITLES[status]
    assert body["detail"]
    assert body["request_id"] == response.headers["X-Request-ID"]
    return body


def test_unknown_route_is_not_found(client):
    assert_problem(client.get("/nope"), 404, "not_found")


def test_non_uuid_path_id_is_not_found(client, user, user_headers):
    assert_problem(client.get(f"{PREFIX}/notifications/not-a-uuid", headers=user_headers(user)),
                   404, "not_found")


@pytest.mark.parametrize("order", ["as the app registers them", "reversed"])
def test_no_literal_path_reads_as_a_notification_id_whatever_the_blueprint_order(app, order):
    """/notifications/settings, /stream, /groups... go to their own views, however the blueprints are registered."""
    from flask import Flask

    from notifications_api.views import notifications, push, retractions, settings, stream
    resources = [notifications, retractions, settings, stream, push]
    routed = Flask(__name__)
    for resource in resources if order != "reversed" else reversed(resources):
        routed.register_blueprint(resource.bp, url_prefix=PREFIX)
    adapter = routed.url_map.bind("localhost")
    literal = [rule for rule in routed.url_map.iter_rules() if not rule.arguments]
    assert len(literal) >= 8
    for rule in literal:
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            assert adapter.match(rule.rule, method)[0] == rule.endpoint, (rule.rule, method)
    assert {rule.rule: rule.endpoint for rule in app.url_map.iter_rules() if rule.rule.startswith(PREFIX)} == {
        rule.rule: rule.endpoint for rule in routed.url_map.iter_rules() if rule.rule.startswith(PREFIX)}


def test_wrong_method_keeps_allow(client):
    response = client.put(f"{PREFIX}/notifications/unread/count")
    assert_problem(response, 405, "method_not_allowed")
    assert "GET" in response.headers["Allow"]


def test_invalid_json(client, user, user_headers):
    response = client.post(f"{PREFIX}/notifications/mark-read", data="{not json",
                           content_type="application/json", headers=user_headers(user))
    assert_problem(response, 400, "invalid_json")


@pytest.mark.parametrize("raw", ["NaN", '{"all": Infinity}', "[" * 20000 + "]" * 20000,
                                 b'{"all": "\xff"}'])
def test_hostile_json_is_a_400(client, user, user_headers, raw):
    response = client.post(f"{PREFIX}/notifications/mark-read", data=raw,
                           content_type="application/json", headers=user_headers(user))
    assert_problem(response, 400, "invalid_json")


def test_wrong_content_type(client, user, user_headers):
    response = client.post(f"{PREFIX}/notifications/mark-read", data="all=true",
                           content_type="application/x-www-form-urlencoded", headers=user_headers(user))
    assert_problem(response, 415, "unsupported_media_type")


def test_body_too_large(client, user, user_headers):
    body = json.dumps({"notification_ids": [str(uuid.uuid4())] * 3000})
    assert len(body) > 64 * 1024
    response = client.post(f"{PREFIX}/notifications/mark-read", data=body,
                           content_type="application/json", headers=user_headers(user))
    assert_problem(response, 413, "payload_too_large")


def test_credentials_outrank_body_problems(client):
    response = client.post(f"{PREFIX}/notifications/mark-read", data="{bad",
                           content_type="application/json")
    assert_problem(response, 401, "missing_token")


def test_missing_user_outranks_validation(client, user_headers):
    ghost = str(uuid.uuid4())
    response = client.get(f"{PREFIX}/notifications?limit=0", headers=user_headers(ghost))
    assert_problem(response, 401, "user_not_found")


def test_validation_error_names_the_field(client, user, user_headers):
    response = client.get(f"{PREFIX}/notifications?limit=0", headers=user_headers(user))
    body = assert_problem(response, 422, "validation_error")
    assert body["errors"] == {"limit": ["Must be between 1 and 100."]}
    assert body["detail"] == "limit: Must be between 1 and 100."


def test_unknown_query_parameter_is_rejected(client, user, user_headers):
    response = client.get(f"{PREFIX}/notifications/unread/count?foo=1", headers=user_headers(user))
    body = assert_problem(response, 422, "validation_error")
    assert "foo" in body["errors"]


def test_internal_error_hides_internals(make_app):
    app = make_app()

    @app.get("/boom")
    def boom():
        raise RuntimeError("secret internals SELECT * FROM activity.notifications")

    response = app.test_client().get("/boom")
    body = assert_problem(response, 500, "internal_error")
    assert "SELECT" not in response.get_data(as_text=True)
    assert "RuntimeError" not in body["detail"]


def test_request_id_is_echoed_when_valid(client):
    response = client.get("/health/live", headers={"X-Request-ID": "abc.DEF_123-x"})
    assert response.headers["X-Request-ID"] == "abc.DEF_123-x"


@pytest.mark.parametrize("bad", ["has space", "x" * 129, "semi;colon", ""])
def test_request_id_is_replaced_when_invalid(client, bad):
    response = client.get("/health/live", headers={"X-Request-ID": bad})
    assert str(uuid.UUID(response.headers["X-Request-ID"])) == response.headers["X-Request-ID"]


def test_security_headers_on_every_response(client):
    for response in (client.get("/health/live"), client.get("/nope")):
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["Cache-Control"] == "no-store"


@pytest.mark.parametrize("problem", [
    ({"data": "{bad"}, 400, "invalid_json"),
    ({"data": "{}", "content_type": "text/plain"}, 415, "unsupported_media_type"),
    ({"data": "[" + "0," * 40000 + "0]"}, 413, "payload_too_large"),
])
def test_body_bytes_outrank_a_bad_query(client, user, user_headers, problem):
    kwargs, status, code = problem
    kwargs.setdefault("content_type", "application/json")
    response = client.post(f"{PREFIX}/notifications/mark-read?x=1", headers=user_headers(user), **kwargs)
    assert_problem(response, status, code)


def test_unknown_query_on_a_body_endpoint(client, user, user_headers):
    response = client.post(f"{PREFIX}/notifications/mark-read?x=1", json={"all": True},
                           headers=user_headers(user))
    assert "x" in assert_problem(response, 422, "validation_error")["errors"]


def test_no_content_type_without_a_body(client, user, user_headers, notify):
    nid = notify(user)["notification_id"]
    response = client.delete(f"{PREFIX}/notifications/{nid}", headers=user_headers(user))
    assert response.status_code == 204 and "Content-Type" not in response.headers
    count = client.get(f"{PREFIX}/notifications/unread/count", headers=user_headers(user))
    cached = client.get(f"{PREFIX}/notifications/unread/count",
                        headers=user_headers(user, **{"If-None-Match": count.headers["ETag"]}))
    assert cached.status_code == 304 and "Content-Type" not in cached.headers


def test_a_werkzeug_400_is_bad_request_not_invalid_json(make_app):
    """A 400 that Werkzeug raises (malformed HTTP, not a body) must not claim the body is bad JSON."""
    from werkzeug.exceptions import BadRequest

    app = make_app()

    @app.get("/test-only/bad-request")
    def bad_request():
        raise BadRequest()

    body = assert_problem(app.test_client().get("/test-only/bad-request"), 400, "bad_request")
    assert "JSON" not in body["detail"]


def test_an_unparseable_body_is_still_invalid_json(client, service_headers):
    response = client.post(f"{PREFIX}/notifications", data=b"{nope", headers=service_headers,
                           content_type="application/json")
    assert_problem(response, 400, "invalid_json")
