"""The OpenAPI document and Swagger UI: valid, complete, local-only, off by default; schemathesis over it."""
from __future__ import annotations

import re
import zlib

import hypothesis
import pytest
import schemathesis
from hypothesis import HealthCheck
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
    ("get", "/health"),
    ("get", "/health/live"),
    ("get", "/metrics"),
    ("get", "/openapi.json"),
    ("get", "/docs"),
}
# Routes that are not API operations: Flask's static route and Swagger UI's asset files.
NOT_OPERATIONS = re.compile(r"^/static/|^/docs/")
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


def test_bodies_state_their_alternatives_in_words_not_in_oneof(app):
    """A top-level oneOf/anyOf of required-only branches makes generators lose the body's types; the
    rule is in the description and the server enforces it (422)."""
    spec = openapi.spec_for(app)
    schemas = spec["components"]["schemas"]
    for name, component in schemas.items():
        assert not {"oneOf", "anyOf", "allOf"} & set(component), name
    assert "Exactly one of `user_id` and `user_ids`" in schemas["CreateNotification"]["description"]
    assert "At least one selector" in schemas["MarkRead"]["description"]
    assert set(schemas["MarkRead"]["properties"]) == {"notification_ids", "notification_type", "all", "before"}


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


# ---- schemathesis over the document ------------------------------------------------------------
# The document needs no database, so it is loaded at collection time from an app that never connects;
# every request then goes to the test's real app (`app=`). (schemathesis.pytest.from_fixture would be
# the natural fit, but it breaks on pytest 9: it sets Function._nodeid, which no longer exists.)

def _offline_app():
    from notifications_api import create_app
    return create_app({"DATABASE_URL": "postgresql://nobody@127.0.0.1:1/never", "ENVIRONMENT": "test",
                       "JWT_SECRET": "x" * 48, "SERVICE_TOKEN": "y" * 48, "ENABLE_DOCS": True,
                       "RATE_LIMIT_ENABLED": False, "LOG_LEVEL": "WARNING", "REDIS_HOST": ""})


schema = schemathesis.openapi.from_wsgi("/openapi.json", _offline_app())
schema.config.generation.update(deterministic=True, database="none", with_security_parameters=False)
CREATE = f"POST {PREFIX}/notifications"


@pytest.fixture
def fuzz_user(make_user):
    return make_user()


@pytest.fixture
def fuzz_headers(app, fuzz_user):
    """Both credentials on every request: user endpoints read the JWT, the internal one the token."""
    return {"Authorization": f"Bearer {issue_token(app.config, fuzz_user)}",
            "X-Service-Token": app.config["SERVICE_TOKEN"]}


@pytest.fixture
def seeded_ids(client, service_headers, fuzz_user):
    ids = []
    for index, kind in enumerate(("comment", "mention", "reaction")):
        response = client.post(f"{PREFIX}/notifications", headers=service_headers, json={
            "user_id": fuzz_user, "notification_type": kind, "title": f"seed {index}", "payload": {"n": index}})
        assert response.status_code == 201, response.get_json()
        ids.append(response.get_json()["results"][0]["notification"]["notification_id"])
    return ids


def _aim_at_real_data(case, user_id: str, notification_ids: list[str]) -> None:
    """Random UUIDs only ever reach 404 / user_not_found: swap in the real user and notifications for
    about half of the cases, chosen by a checksum of the generated value (deterministic, shrinkable)."""
    generated = (case.path_parameters or {}).get("notification_id")
    if generated is not None and zlib.crc32(str(generated).encode()) % 2 == 0:
        case.path_parameters["notification_id"] = notification_ids[zlib.crc32(str(generated).encode()) % 3]
    if case.operation.label == CREATE and isinstance(case.body, dict) and "user_id" in case.body \
            and zlib.crc32(str(case.body["user_id"]).encode()) % 2 == 0:
        case.body["user_id"] = user_id


@schema.parametrize()
@hypothesis.settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_every_operation_conforms_to_the_document(case, app, fuzz_user, fuzz_headers, seeded_ids):
    _aim_at_real_data(case, fuzz_user, seeded_ids)
    case.call_and_validate(app=app, headers=fuzz_headers, checks=CONFORMANCE)


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


def test_stateful_sequences_conform(app, fuzz_user, fuzz_headers, seeded_ids):
    """Chains of calls along the document's links (create -> get -> mark read -> archive ...)."""
    failures = []

    class Machine(schema.as_state_machine()):
        def before_call(self, case):
            if case.operation.label == CREATE and isinstance(case.body, dict) and "user_id" in case.body:
                case.body["user_id"] = fuzz_user  # so links from the created notification lead somewhere

        def get_call_kwargs(self, case):
            return {"app": app, "headers": fuzz_headers}

        def validate_response(self, response, case, **kwargs):
            try:
                case.validate_response(response, checks=CONFORMANCE)
            except Exception as exc:
                failures.append(f"{case.as_curl_command()}\n-> {response.status_code} {response.text[:500]}\n{exc}")
                raise

    try:
        Machine.run(settings=hypothesis.settings(
            max_examples=60, stateful_step_count=8, deadline=None, derandomize=True, database=None,
            suppress_health_check=list(HealthCheck)))
    except hypothesis.errors.Flaky:
        # The server keeps state (a retried dedupe_key becomes a duplicate), so Hypothesis's replays can
        # diverge from the first run; what counts is whether any step failed a check (as schemathesis's
        # own runner decides).
        pass
    assert not failures, "\n\n".join(failures[:3])
