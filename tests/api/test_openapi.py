"""The OpenAPI document and Swagger UI: valid, complete, local-only, off by default; schemathesis over it."""
from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone

import jsonschema
import pytest
import schemathesis
from marshmallow.validate import Length
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from notifications_api.web import openapi
from notifications_api.web.auth import issue_token
from notifications_api.web.schemas import CreateNotificationSchema

PREFIX = "/api/v1"
# Every operation of API.md, as (method, OpenAPI path).
CONTRACT = {
    ("get", f"{PREFIX}/notifications"),
    ("post", f"{PREFIX}/notifications"),
    ("get", f"{PREFIX}/notifications/{{notification_id}}"),
    ("delete", f"{PREFIX}/notifications/{{notification_id}}"),
    ("put", f"{PREFIX}/notifications/{{notification_id}}/read"),
    ("patch", f"{PREFIX}/notifications/{{notification_id}}/read"),
    ("delete", f"{PREFIX}/notifications/{{notification_id}}/read"),
    ("post", f"{PREFIX}/notifications/mark-read"),
    ("post", f"{PREFIX}/notifications/bulk"),
    ("get", f"{PREFIX}/notifications/groups"),
    ("put", f"{PREFIX}/notifications/{{notification_id}}/snooze"),
    ("delete", f"{PREFIX}/notifications/{{notification_id}}/snooze"),
    ("post", f"{PREFIX}/notifications/retract"),
    ("get", f"{PREFIX}/notifications/unread/count"),
    ("post", f"{PREFIX}/notifications/stream/ticket"),
    ("get", f"{PREFIX}/notifications/stream"),
    ("get", f"{PREFIX}/notifications/settings"),
    ("patch", f"{PREFIX}/notifications/settings"),
    ("get", f"{PREFIX}/push/vapid-public-key"),
    ("post", f"{PREFIX}/push/subscriptions"),
    ("get", f"{PREFIX}/push/subscriptions"),
    ("delete", f"{PREFIX}/push/subscriptions"),
    ("delete", f"{PREFIX}/push/subscriptions/{{subscription_id}}"),
    ("get", "/"),
    ("get", "/health"),
    ("get", "/health/live"),
    ("get", "/metrics"),
    ("get", "/openapi.json"),
    ("get", "/docs"),
}
# Routes that are not API operations: Flask's static route, Swagger UI's asset files and the web
# inbox's (/ui/<path:filename>, views/ui.py; its demo page and endpoints are documented when enabled).
NOT_OPERATIONS = re.compile(r"^/static/|^/docs/|^/ui/<")
CONFORMANCE = [not_a_server_error, status_code_conformance, content_type_conformance,
               response_headers_conformance, response_schema_conformance]


def _operations(spec: dict) -> set[tuple[str, str]]:
    return {(method, path) for path, item in spec["paths"].items() for method in item
            if method in ("get", "put", "post", "delete", "patch")}


def _routes(app) -> set[tuple[str, str]]:
    routes = set()
    for rule in app.url_map.iter_rules():
        if NOT_OPERATIONS.match(rule.rule):
            continue
        path = re.sub(r"<(?:[^<>:]+:)?([^<>]+)>", r"{\1}", rule.rule)
        routes |= {(method.lower(), path) for method in rule.methods - {"HEAD", "OPTIONS"}}
    return routes


# ---- the document --------------------------------------------------------------------------

def test_spec_is_valid_openapi(app, client):
    response = client.get("/openapi.json")
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    spec = response.get_json()
    assert spec["openapi"].startswith("3.1")
    validator = pytest.importorskip("openapi_spec_validator")
    validator.validate(spec)


def test_schemathesis_loads_every_operation(app):
    """schemathesis validates the document against the OpenAPI 3.1 meta-schema and resolves every operation."""
    schema = schemathesis.openapi.from_wsgi("/openapi.json", app)
    schema.validate()
    labels = {result.ok().label for result in schema.get_all_operations()}  # .ok() raises on a broken one
    # schemathesis leaves out the operation that serves the document itself
    assert labels == {f"{method.upper()} {path}" for method, path in CONTRACT} - {"GET /openapi.json"}


def test_spec_documents_every_route_of_the_app_and_of_the_contract(app):
    spec = openapi.spec_for(app)
    assert _operations(spec) == _routes(app)
    assert _operations(spec) == CONTRACT


def test_a_route_without_docs_is_left_out_and_fails_the_test_above(make_app):
    app = make_app()
    app.add_url_rule(f"{PREFIX}/undocumented", "undocumented", lambda: "", methods=["GET", "POST"])
    spec = openapi.spec_for(app)
    assert _routes(app) - _operations(spec) == {("get", f"{PREFIX}/undocumented"), ("post", f"{PREFIX}/undocumented")}


def test_docs_cost_nothing_per_request(app):
    """`openapi.doc` hands back the view itself: no wrapper runs per request."""
    def view():
        return ""
    assert openapi.doc("someOperation", "Summary", responses={})(view) is view
    for endpoint, function in app.view_functions.items():
        for operation in getattr(function, openapi.DOCS_ATTRIBUTE, {}).values():
            assert isinstance(operation, openapi.Operation), endpoint


def test_each_method_of_a_route_has_its_own_operation(app):
    read = openapi.spec_for(app)["paths"][f"{PREFIX}/notifications/{{notification_id}}/read"]
    assert {method: operation["operationId"] for method, operation in read.items()} == {
        "put": "markNotificationRead", "patch": "markNotificationReadPatch", "delete": "markNotificationUnread"}


def test_spec_follows_the_configured_prefix(make_app):
    spec = openapi.spec_for(make_app(API_V1_PREFIX="/notify/v2"))
    assert "/notify/v2/notifications/{notification_id}/read" in spec["paths"]
    assert not any(path.startswith(PREFIX) for path in spec["paths"])


def test_spec_is_built_once_per_app(make_app, monkeypatch):
    built = []
    real = openapi.build_spec
    monkeypatch.setattr(openapi, "build_spec", lambda app: built.append(app) or real(app))
    app = make_app()
    client = app.test_client()
    first, second = client.get("/openapi.json"), client.get("/openapi.json")
    assert first.data == second.data
    assert openapi.spec_for(app) is openapi.spec_for(app)
    assert built == [app]


def test_spec_covers_the_contract_details(app):
    spec = openapi.spec_for(app)
    paths, components = spec["paths"], spec["components"]
    schemes = components["securitySchemes"]
    assert schemes["bearerAuth"] == {**schemes["bearerAuth"], "type": "http", "scheme": "bearer",
                                     "bearerFormat": "JWT"}
    assert schemes["serviceToken"] == {**schemes["serviceToken"], "type": "apiKey", "in": "header",
                                       "name": "X-Service-Token"}
    assert "Authorization: Bearer" in schemes["serviceToken"]["description"]

    listing = paths[f"{PREFIX}/notifications"]["get"]
    params = {p.get("name") or p["$ref"].rsplit("/", 1)[1]: p for p in listing["parameters"]}
    assert {"status", "type", "limit", "cursor", "If-None-Match", "X-Request-ID"} <= set(params)
    assert params["type"]["schema"]["type"] == "array" and params["type"]["explode"] is True
    assert params["limit"]["schema"] == {**params["limit"]["schema"], "minimum": 1, "maximum": 100,
                                         "default": 20}
    assert listing["security"] == [{"bearerAuth": []}]
    assert set(listing["responses"]["200"]["headers"]) >= {"ETag", "Link", "X-Request-ID", "RateLimit-Limit"}
    assert "304" in listing["responses"]

    count = paths[f"{PREFIX}/notifications/unread/count"]["get"]["responses"]
    assert {"ETag", "X-Poll-Interval"} <= set(count["200"]["headers"]) & set(count["304"]["headers"])

    create = paths[f"{PREFIX}/notifications"]["post"]
    assert create["security"] == [{"serviceToken": []}]
    assert {"200", "201", "400", "401", "403", "413", "415", "422", "429", "500", "503"} <= set(create["responses"])
    assert "Location" in create["responses"]["201"]["headers"]
    assert "Idempotent-Replayed" in create["responses"]["200"]["headers"]
    assert any(p.get("$ref", "").endswith("/Idempotency-Key") for p in create["parameters"])

    delete = paths[f"{PREFIX}/notifications/{{notification_id}}"]["delete"]
    assert "204" in delete["responses"] and "404" in delete["responses"]
    assert any(p.get("name") == "permanent" for p in delete["parameters"])

    for status in ("400", "401", "403", "404", "405", "413", "415", "422", "429", "500", "503"):
        name = {"400": "BadRequest", "401": "Unauthorized", "403": "Forbidden", "404": "NotFound",
                "405": "MethodNotAllowed", "413": "PayloadTooLarge", "415": "UnsupportedMediaType",
                "422": "ValidationFailed", "429": "TooManyRequests", "500": "InternalError",
                "503": "ServiceUnavailable"}[status]
        response = components["responses"][name]
        assert list(response["content"]) == ["application/problem+json"]
        assert response["content"]["application/problem+json"]["schema"] == {
            "$ref": "#/components/schemas/Problem"}
        assert response["content"]["application/problem+json"]["example"]["status"] == int(status)
    assert "Retry-After" in components["responses"]["TooManyRequests"]["headers"]
    assert "Retry-After" in components["responses"]["ServiceUnavailable"]["headers"]

    body = components["schemas"]["CreateNotification"]
    assert body["additionalProperties"] is False
    assert body["properties"]["user_ids"]["uniqueItems"] is True
    description = spec["info"]["description"]
    for name in ("target_type", "target_id", "group_key"):  # the schema's limits, in the schema and the prose
        limit = next(v.max for v in CreateNotificationSchema._declared_fields[name].validators
                     if isinstance(v, Length))
        assert body["properties"][name]["maxLength"] == limit
        assert f"`{name}` {'is ' if name == 'target_type' else ''}1-{limit}" in description
    for decision in ("Unknown query parameters are `422`", "more than once", "repeated user id",
                     "must differ from `end`"):
        assert decision in description


def test_bodies_state_their_alternatives_in_the_schema_and_in_words(app):
    """The rules are JSON Schema (inside allOf, so generators keep one typed model: see
    test_generated_client) and stay in the prose."""
    schemas = openapi.spec_for(app)["components"]["schemas"]
    for name, component in schemas.items():
        assert not {"oneOf", "anyOf"} & set(component), name  # top level: the body would become Any
    assert schemas["CreateNotification"]["allOf"] == [{"oneOf": [{"required": ["user_id"]},
                                                                 {"required": ["user_ids"]}]}]
    assert schemas["Retract"]["dependentRequired"] == {"target_type": ["target_id"], "target_id": ["target_type"]}
    assert "Exactly one of `user_id` and `user_ids`" in schemas["CreateNotification"]["description"]
    assert "Exactly one of `dedupe_key`" in schemas["Retract"]["description"]
    assert "At least one selector" in schemas["MarkRead"]["description"]
    assert "at least one selector" in schemas["Bulk"]["description"]
    assert set(schemas["MarkRead"]["properties"]) == {"notification_ids", "notification_type", "all", "before"}


# (component, endpoint, credential, fixed fields, {variant: the schema and the server accept it})
ALTERNATIVES = [
    ("CreateNotification", "", "service", {"notification_type": "comment", "title": "x"},
     {"user_id": True, "user_ids": True, "user_id+user_ids": False, "": False}),
    ("Retract", "/retract", "service", {},
     {"dedupe_key": True, "target_type+target_id": True, "dedupe_key+target_type+target_id": False,
      "dedupe_key+target_type": False, "target_type": False, "target_id": False, "notification_type": False,
      "": False}),
    ("MarkRead", "/mark-read", "user", {},
     {"all": True, "notification_type": True, "notification_ids": True, "all=false": False, "before": False,
      "": False}),
    ("Bulk", "/bulk", "user", {"action": "archive"},
     {"status": True, "group_key": True, "notification_ids": True, "notification_type": True, "all": True,
      "all=false": False, "before": False, "": False}),
]


def _variant(spelling: str, user: str) -> dict:
    values = {"user_id": user, "user_ids": [user], "dedupe_key": "d-1", "target_type": "post", "target_id": "p-1",
              "notification_type": "comment", "notification_ids": [user], "all": True, "all=false": False,
              "before": "2026-01-01T00:00:00Z", "status": "read", "group_key": "g-1"}
    return {name.split("=")[0]: values[name] for name in spelling.split("+") if name}


@pytest.mark.parametrize("component, path, credential, fixed, variants", ALTERNATIVES,
                         ids=[case[0] for case in ALTERNATIVES])
def test_the_schema_and_the_server_agree_on_the_alternatives(app, client, service_headers, user, user_headers,
                                                             component, path, credential, fixed, variants):
    spec = openapi.spec_for(app)
    validator = jsonschema.Draft202012Validator({"$ref": f"#/components/schemas/{component}",
                                                 "components": spec["components"]})
    headers = service_headers if credential == "service" else user_headers(user)
    for spelling, valid in variants.items():
        body = {**fixed, **_variant(spelling, user)}
        assert validator.is_valid(body) is valid, (component, body)
        response = client.post(f"{PREFIX}/notifications{path}", json=body, headers=headers)
        assert (response.status_code in (200, 201)) is valid, (component, body, response.get_json())
        if not valid:
            assert response.status_code == 422, (component, body, response.get_json())


def test_the_server_enforces_what_the_descriptions_say(client, service_headers, user, user_headers):
    both = {"user_id": user, "user_ids": [user], "notification_type": "comment", "title": "x"}
    neither = {"notification_type": "comment", "title": "x"}
    for body in (both, neither):
        response = client.post(f"{PREFIX}/notifications", json=body, headers=service_headers)
        assert response.status_code == 422 and "user_id" in response.get_json()["errors"], body
    for body in ({}, {"all": False}, {"before": "2026-01-01T00:00:00Z"}):
        response = client.post(f"{PREFIX}/notifications/mark-read", json=body, headers=user_headers(user))
        assert response.status_code == 422, body


def test_every_field_a_notification_always_has_is_required(app, client, notify, user, user_headers):
    spec = openapi.spec_for(app)
    document = spec["components"]["schemas"]["Notification"]
    sent = client.get(f"{PREFIX}/notifications/{notify(user)['notification_id']}",
                      headers=user_headers(user)).get_json()
    assert set(document["required"]) == set(document["properties"]) == set(sent)
    nullable = {name for name, prop in document["properties"].items() if "null" in prop.get("type", ())}
    assert {name for name, value in sent.items() if value is None} <= nullable
    assert spec["components"]["schemas"]["QuietHours"]["properties"]["timezone"]["minLength"] == 1


def test_problem_examples_pair_codes_with_their_real_details(app, client):
    """The documented example of a 401 is what the server really answers with that code."""
    example = openapi.spec_for(app)["components"]["responses"]["Unauthorized"]["content"][
        "application/problem+json"]["example"]
    real = client.get(f"{PREFIX}/notifications").get_json()
    assert (example["code"], example["detail"]) == (real["code"], real["detail"])


def test_metrics_401_example_matches_the_server(make_app):
    app = make_app(METRICS_TOKEN="m" * 40)
    example = openapi.spec_for(app)["components"]["responses"]["MetricsUnauthorized"]["content"][
        "application/problem+json"]["example"]
    real = app.test_client().get("/metrics").get_json()
    assert (example["code"], example["detail"]) == (real["code"], real["detail"])


def test_every_operation_documents_414_and_431(app):
    spec = openapi.spec_for(app)
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            assert {"414", "431"} <= set(operation["responses"]), (method, path)
    assert spec["components"]["responses"]["UriTooLong"]["content"]["application/problem+json"][
        "example"]["code"] == "uri_too_long"


def test_the_read_operations_document_the_409_of_a_snoozed_notification(app, client, notify, user, user_headers):
    spec = openapi.spec_for(app)
    read = spec["paths"][f"{PREFIX}/notifications/{{notification_id}}/read"]
    notification_id = notify(user)["notification_id"]
    until = (datetime.now(timezone.utc) + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert client.put(f"{PREFIX}/notifications/{notification_id}/snooze", json={"until": until},
                      headers=user_headers(user)).status_code == 200
    for method in ("put", "patch", "delete"):
        assert read[method]["responses"]["409"] == {"$ref": "#/components/responses/Conflict"}, method
        response = client.open(f"{PREFIX}/notifications/{notification_id}/read", method=method.upper(),
                               headers=user_headers(user))
        assert response.status_code == 409 and response.get_json()["code"] == "notification_snoozed"
        case = schema[f"{PREFIX}/notifications/{{notification_id}}/read"][method].Case(
            path_parameters={"notification_id": notification_id})
        case.validate_response(response, checks=CONFORMANCE)


def _request_examples(spec: dict):
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            content = operation.get("requestBody", {}).get("content", {})
            for media in content.values():
                if "example" in media:
                    yield method, path, operation, media["example"]


def test_every_request_example_is_accepted_by_the_server(app, client, notify, user, user_headers,
                                                         service_headers, make_app):
    """Examples are what example-based tools send first: none may be refused (an expired `until`)."""
    from notifications_api.channels.push_crypto import generate_vapid_keys

    # the push endpoints answer only with push configured (else 404 by design)
    push_client = make_app(VAPID_PRIVATE_KEY=generate_vapid_keys()[0],
                           VAPID_SUBJECT="mailto:push@notifications-api.dev").test_client()
    seen = []
    for method, path, operation, example in _request_examples(openapi.spec_for(app)):
        credential = service_headers if operation["security"] == openapi.SERVICE else user_headers(user)
        url = path.replace("{notification_id}", notify(user)["notification_id"])
        sender = push_client if f"{PREFIX}/push/" in path else client
        response = sender.open(url, method=method.upper(), json=example, headers=credential)
        assert response.status_code in (200, 201), (method, path, example, response.get_json())
        seen.append(operation["operationId"])
    assert {"snoozeNotification", "createNotifications", "retractNotifications", "markNotificationsReadBulk",
            "bulkUpdateNotifications", "updateSettings", "createPushSubscription"} <= set(seen)


def test_an_example_that_must_lie_ahead_is_computed_when_the_document_is_built(app, monkeypatch):
    later = datetime(2031, 5, 6, 7, 8, 9, tzinfo=timezone.utc)
    spec = openapi.build_spec(app, now=later)
    example = spec["paths"][f"{PREFIX}/notifications/{{notification_id}}/snooze"]["put"]["requestBody"][
        "content"]["application/json"]["example"]
    assert example == {"until": "2031-05-13T07:00:00Z"}  # 7 days after the hour it was built in
    # The served document is rebuilt once REBUILD_AFTER has passed, so the example never falls behind.
    document = openapi._Document()
    clock = [1000.0]
    monkeypatch.setattr(openapi.time, "monotonic", lambda: clock[0])
    first = document.get(app)[0]
    assert document.get(app)[0] is first
    clock[0] += openapi.REBUILD_AFTER + 1
    assert document.get(app)[0] is not first


def test_the_stream_is_text_and_its_events_are_schemas(app):
    """openapi-python-client returns a text/event-stream `string` as the text (an object schema made
    its generated parser raise on every 200); the events are component schemas."""
    spec = openapi.spec_for(app)
    media = spec["paths"][f"{PREFIX}/notifications/stream"]["get"]["responses"]["200"]["content"]
    assert list(media) == ["text/event-stream"]
    assert media["text/event-stream"]["schema"]["type"] == "string"
    schemas = spec["components"]["schemas"]
    counts_event = jsonschema.Draft202012Validator({"$ref": "#/components/schemas/StreamCountsEvent",
                                                    "components": spec["components"]})
    assert counts_event.is_valid({"event": "counts", "id": "7", "data": '{"unread_count":1,"unseen_count":1}'})
    assert not counts_event.is_valid({"event": "notification", "id": "7", "data": "{}"})
    assert schemas["StreamCountsEvent"]["properties"]["data"]["contentSchema"] == {
        "$ref": "#/components/schemas/StreamCounts"}
    assert schemas["StreamNotificationEvent"]["properties"]["data"]["contentSchema"] == {
        "$ref": "#/components/schemas/Notification"}


def test_the_414_says_what_gunicorns_own_answer_is(app):
    response = openapi.spec_for(app)["components"]["responses"]["UriTooLong"]
    assert "8190" in response["description"] and "`text/html`" in response["description"]
    assert "no `X-Request-ID`" in response["description"]
    assert set(response["content"]) == {"application/problem+json", "text/html"}
    assert response["headers"]["X-Request-ID"]["required"] is False


# ---- serving --------------------------------------------------------------------------------

def test_docs_off_means_404_problems(make_app):
    app = make_app(ENABLE_DOCS=False)
    client = app.test_client()
    for url in ("/openapi.json", "/docs", "/docs/", "/docs/swagger-ui-bundle.js"):
        response = client.get(url)
        assert response.status_code == 404, url
        assert response.mimetype == "application/problem+json"
        assert response.get_json()["code"] == "not_found"
    assert "openapi" not in app.extensions


def test_docs_page_uses_only_local_assets(client):
    response = client.get("/docs")
    assert response.status_code == 200
    assert response.mimetype == "text/html"
    page = response.get_data(as_text=True)
    assert "http://" not in page and "https://" not in page
    assert '"validatorUrl": null' in page
    assert '"url": "/openapi.json"' in page
    assets = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert assets and all(asset.startswith("/docs/") for asset in assets), assets
    for asset in assets:
        served = client.get(asset)
        assert served.status_code == 200, asset
        assert served.mimetype in ("text/css", "text/javascript", "application/javascript", "image/png"), asset
        # a static file comes with Flask's own Cache-Control (and an ETag): replaced, not doubled
        for name in ("Cache-Control", "X-Content-Type-Options", "X-Request-ID"):
            assert len(served.headers.getlist(name)) == 1, (asset, name, served.headers)
        assert served.headers["Cache-Control"] == "private, no-cache", asset
        served.close()
    assert client.get("/docs/").status_code == 200


def _page_settings(page: str) -> dict:
    found = re.search(r'<script type="application/json" id="swagger-ui-settings">(.*?)</script>', page, re.S)
    return json.loads(found.group(1))


def test_docs_page_runs_no_inline_script_and_is_never_cached(client):
    response = client.get("/docs")
    page = response.get_data(as_text=True)
    csp = response.headers["Content-Security-Policy"]
    assert "script-src 'self';" in csp and "default-src 'none'" in csp and "unsafe-eval" not in csp
    assert response.headers["Cache-Control"] == "no-store"
    # every <script> is a file of this origin, or data (application/json), never code in the page
    assert re.findall(r"<script(?![^>]*\bsrc=)([^>]*)>", page) == [' type="application/json" id="swagger-ui-settings"']
    script = client.get(f"/docs/{openapi.DOCS_SCRIPT}")
    assert script.status_code == 200 and script.mimetype == "text/javascript" and script.headers["ETag"]
    assert client.get(f"/docs/{openapi.DOCS_SCRIPT}",
                      headers={"If-None-Match": script.headers["ETag"]}).status_code == 304


def test_docs_page_settings_are_safe_inside_the_page():
    assert openapi._json_in_html({"a": "</script><!-- & >"}) == \
        '{"a": "\\u003c/script\\u003e\\u003c!-- \\u0026 \\u003e"}'


def test_docs_page_names_the_demo_token_endpoint_only_with_the_demo(make_app, make_user):
    """ENABLE_UI_DEMO (development only: production refuses it, and ENABLE_DOCS) is the one gate, as for
    the endpoint itself: with it the page names the endpoint (the browser fetches the token,
    tests/web_ui/test_web_docs.py); without it (a staging-like config too) the page names none. Either
    way the page holds no token."""
    user = make_user()
    demo = make_app(ENABLE_UI_DEMO=True, UI_DEMO_USER_ID=user).test_client()
    page = demo.get("/docs").get_data(as_text=True)
    assert _page_settings(page)["preauthorize"] == {"scheme": "bearerAuth", "token_url": "/ui/demo/token"}
    assert demo.post("/ui/demo/token").status_code == 200
    assert "eyJ" not in page  # no JWT in the page: a cached copy carries none
    for client in (make_app(ENABLE_UI_DEMO=False, UI_DEMO_USER_ID=user).test_client(),
                   make_app(ENVIRONMENT="staging", ENABLE_UI_DEMO=False).test_client()):
        page = client.get("/docs").get_data(as_text=True)
        settings = _page_settings(page)
        assert settings["preauthorize"] is None and settings["config"]["url"] == "/openapi.json"
        assert "/ui/demo" not in page and "eyJ" not in page
        assert client.post("/ui/demo/token").status_code == 405  # unrouted (/ui/<file> is GET only)


# ---- schemathesis over the document ------------------------------------------------------------
# (The full run, every check and phase, is tests/api/test_schemathesis.py.) The document needs no
# database, so it is loaded at collection time from an app that never connects; every request then
# goes to the test's real app (`app=`). (schemathesis.pytest.from_fixture would be the natural fit,
# but it breaks on pytest 9: it sets Function._nodeid, which no longer exists.)

def _offline_app():
    from notifications_api import create_app
    return create_app({"DATABASE_URL": "postgresql://nobody@127.0.0.1:1/never", "ENVIRONMENT": "test",
                       "JWT_SECRET": "x" * 48, "SERVICE_TOKEN": "y" * 48, "ENABLE_DOCS": True,
                       "RATE_LIMIT_ENABLED": False, "LOG_LEVEL": "WARNING", "REDIS_HOST": ""})


schema = schemathesis.openapi.from_wsgi("/openapi.json", _offline_app())
schema.config.generation.update(deterministic=True, database="none", with_security_parameters=False)
CREATE = f"POST {PREFIX}/notifications"


def test_rate_limited_responses_conform(make_app, make_user):
    """The 429 problem and the RateLimit-* headers as documented (the fuzzing app runs without limits)."""
    app = make_app(RATE_LIMIT_ENABLED=True, RATE_LIMIT_USER_READ="1/minute", RATE_LIMIT_USER_WRITE="1/minute",
                   RATE_LIMIT_SERVICE="1/minute", RATE_LIMIT_ANONYMOUS="1/minute")
    client = app.test_client()
    user = make_user()
    jwt = {"Authorization": f"Bearer {issue_token(app.config, user)}"}
    service = {"X-Service-Token": app.config["SERVICE_TOKEN"]}
    create = {"user_id": user, "notification_type": "comment", "title": "limited"}
    for method, path, kwargs in (
        ("GET", f"{PREFIX}/notifications", {"headers": jwt}),
        ("PATCH", f"{PREFIX}/notifications/settings", {"headers": jwt, "json": {"push_enabled": False}}),
        ("POST", f"{PREFIX}/notifications", {"headers": service, "json": create}),
        ("GET", "/docs", {}),
    ):
        allowed, limited = (client.open(path, method=method, **kwargs) for _ in range(2))
        assert (allowed.status_code, limited.status_code) in ((200, 429), (201, 429)), path
        assert int(limited.headers["Retry-After"]) > 0 and limited.headers["RateLimit-Remaining"] == "0"
        body = {"body": kwargs["json"], "media_type": "application/json"} if "json" in kwargs else {}
        case = schema[path][method].Case(headers=kwargs.get("headers"), **body)
        for response in (allowed, limited):
            case.validate_response(response, checks=CONFORMANCE)
