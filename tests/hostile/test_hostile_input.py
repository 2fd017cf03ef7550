"""Hostile input: every malformed, mistyped, oversized or mis-encoded request is a 4xx problem, never a 500."""
from __future__ import annotations

import json
import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hostile_helpers import PREFIX, assert_problem

ID = "00000000-0000-4000-8000-00000000abcd"
BODY_ENDPOINTS = [
    ("POST", f"{PREFIX}/notifications", "service"),
    ("POST", f"{PREFIX}/notifications/mark-read", "user"),
    ("PATCH", f"{PREFIX}/notifications/settings", "user"),
]
# Every string-valued field of every body, as (endpoint index, path in the body).
STRING_FIELDS = [
    (0, ("notification_type",)), (0, ("title",)), (0, ("message",)), (0, ("target_type",)),
    (0, ("target_id",)), (0, ("action_url",)), (0, ("group_key",)), (0, ("dedupe_key",)),
    (0, ("priority",)), (0, ("expires_at",)), (0, ("user_id",)), (0, ("actor_user_id",)),
    (0, ("user_ids", 0)), (0, ("payload", "note")),
    (1, ("notification_type",)), (1, ("before",)), (1, ("notification_ids", 0)),
    (2, ("quiet_hours", "start")), (2, ("quiet_hours", "end")), (2, ("quiet_hours", "timezone")),
]
NASTY_STRINGS = {
    "nul": "a\x00b", "lone high surrogate": "a\ud800b", "lone low surrogate": "\udfff",
    "escape": "\x1b[31mred\x1b[0m", "bidi override": "\u202egnp.exe", "bom": "\ufeffx", "del": "\x7f",
    "crlf": "a\r\nSet-Cookie: x=1", "tab": "\t", "noncharacter": "\uffff", "astral": "\U0001f4a9",
    "empty": "", "spaces": "   ", "very long": "x" * 20000, "sql": "'; DROP TABLE activity.users; --",
}
WRONG_TYPES = {
    "null": None, "true": True, "zero": 0, "negative": -1, "float": 1.5, "huge int": 2 ** 70,
    "tiny float": 1e-300, "string": "x", "list": [1, "a"], "empty list": [], "object": {"a": 1}, "empty object": {},
}


def _valid_bodies(user: str) -> list[dict]:
    return [
        {"user_id": user, "notification_type": "comment", "title": "t", "message": "m",
         "target_type": "post", "target_id": "p1", "action_url": "https://example.com/x", "group_key": "g",
         "dedupe_key": str(uuid.uuid4()), "priority": "high", "expires_at": "2999-01-01T00:00:00Z",
         "actor_user_id": ID, "payload": {"note": "n"}},
        {"notification_type": "comment", "before": "2026-01-01T00:00:00Z", "notification_ids": [ID]},
        {"quiet_hours": {"start": "22:00", "end": "07:00", "timezone": "Europe/Amsterdam"}},
    ]


def _set(body: dict, path: tuple, value) -> dict:
    target = body
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return body


def _send(client, method, path, auth, headers_by_kind, body=None, raw: bytes | None = None, **kwargs):
    headers = {**headers_by_kind[auth], **kwargs.pop("headers", {})}
    if raw is not None:
        return client.open(path, method=method, data=raw, headers=headers,
                           content_type=kwargs.pop("content_type", "application/json"), **kwargs)
    data = json.dumps(body, ensure_ascii=True)  # lone surrogates travel as \ud800 escapes, as in a real body
    return client.open(path, method=method, data=data, headers=headers, content_type="application/json", **kwargs)


@pytest.fixture
def auth(user_headers, service_headers, user):
    return {"user": user_headers(user), "service": service_headers, "none": {}}


# ---- malformed and deeply nested JSON ---------------------------------------------------------

MALFORMED = {
    "empty": b"", "open brace": b"{", "open bracket": b"[", "truncated": b'{"title": "x"',
    "single quotes": b"{'a': 1}", "trailing comma": b'{"a": 1,}', "two documents": b'{"a":1}{"b":2}',
    "NaN": b'{"title": NaN}', "Infinity": b"Infinity", "-Infinity": b'{"a": -Infinity}',
    "bare word": b"nul", "comment": b'{"a": 1 /* x */}', "invalid utf-8": b'{"title": "\xff\xfe"}',
    "overlong utf-8": b'{"title": "\xc0\xaf"}', "utf-16": '{"a": 1}'.encode("utf-16"),
    "bad escape": b'{"title": "\\x41"}', "short unicode escape": b'{"title": "\\u00"}',
    "huge exponent": b'{"a": 1e999999}', "huge integer": b'{"a": ' + b"9" * 5000 + b"}",
    "deep arrays": b"[" * 30000 + b"]" * 30000, "deep objects": b'{"a":' * 10000 + b"1" + b"}" * 10000,
    "deep unclosed": b"[" * 60000,
}


@pytest.mark.parametrize("endpoint", range(len(BODY_ENDPOINTS)))
@pytest.mark.parametrize("name", MALFORMED)
def test_malformed_json_is_a_400(client, auth, endpoint, name):
    method, path, kind = BODY_ENDPOINTS[endpoint]
    body = assert_problem(_send(client, method, path, kind, auth, raw=MALFORMED[name]), 400, 422)
    if name not in ("huge exponent",):  # 1e999999 is valid JSON (a float overflow): the schema decides
        assert body["code"] in ("invalid_json", "validation_error")


@pytest.mark.parametrize("depth", [50, 500, 900, 2000, 5000])
def test_deeply_nested_payload_inside_a_valid_body(client, auth, user, depth):
    payload = '{"n":' * depth + '"leaf"' + "}" * depth
    raw = ('{"user_id": "%s", "notification_type": "comment", "title": "deep", "payload": %s}'
           % (user, payload)).encode()
    response = _send(client, "POST", f"{PREFIX}/notifications", "service", auth, raw=raw)
    if response.status_code >= 400:
        assert_problem(response, 400, 413, 422)
    else:
        assert response.status_code == 201


@pytest.mark.parametrize("value", ["1e400", "-1e400", "1E+999"])
def test_numbers_that_overflow_a_float_in_the_payload(client, auth, user, value):
    """1e400 is legal JSON but becomes inf, which jsonb cannot store: 422, not a database error."""
    raw = ('{"user_id": "%s", "notification_type": "comment", "title": "t", "payload": {"x": %s}}'
           % (user, value)).encode()
    assert_problem(_send(client, "POST", f"{PREFIX}/notifications", "service", auth, raw=raw), 400, 422)


# ---- wrong types everywhere -------------------------------------------------------------------

@pytest.mark.parametrize("endpoint", range(len(BODY_ENDPOINTS)))
@pytest.mark.parametrize("name", WRONG_TYPES)
def test_wrong_type_for_the_whole_body(client, auth, endpoint, name):
    method, path, kind = BODY_ENDPOINTS[endpoint]
    value = WRONG_TYPES[name]
    response = _send(client, method, path, kind, auth, value)
    if name == "empty object" and endpoint == 2:
        assert response.status_code == 200  # an empty settings patch changes nothing
    else:
        assert_problem(response, 422)


def _every_field(user: str):
    for index, body in enumerate(_valid_bodies(user)):
        for key in body:
            yield index, key
    yield 2, "in_app_enabled"
    yield 2, "type_preferences"
    yield 1, "all"


@pytest.mark.parametrize("name", WRONG_TYPES)
def test_wrong_type_in_every_field(client, auth, user, name):
    value = WRONG_TYPES[name]
    seen = []
    for index, key in _every_field(user):
        method, path, kind = BODY_ENDPOINTS[index]
        body = _valid_bodies(user)[index]
        body[key] = value
        response = _send(client, method, path, kind, auth, body)
        seen.append((key, response.status_code))
        if response.status_code >= 400:
            assert_problem(response, 422)
    # Nullable fields take null, booleans take true, "payload" any object; every other field refuses.
    accepted = {key for key, status in seen if status < 400}
    allowed = {"null": {"message", "target_type", "target_id", "action_url", "group_key", "expires_at",
                        "dedupe_key", "actor_user_id", "quiet_hours", "notification_ids", "before",
                        "notification_type", "all", "in_app_enabled", "type_preferences"},
               "true": {"all", "in_app_enabled"},
               "object": {"payload"}, "empty object": {"payload", "type_preferences"}}.get(name, set())
    if name != "string":  # "x" is a fine title, message, target ...
        assert accepted <= allowed, seen


def test_wrong_types_inside_lists_and_maps(client, auth, user):
    cases = [
        (0, {"user_ids": [ID, 1]}), (0, {"user_ids": [[ID]]}), (0, {"user_ids": [None]}),
        (0, {"user_ids": {"0": ID}}), (1, {"notification_ids": [{"id": ID}]}),
        (2, {"type_preferences": {"comment": {"email": "false"}}}),
        (2, {"type_preferences": {"comment": {"email": 0}}}), (2, {"type_preferences": {"comment": []}}),
        (2, {"type_preferences": {"comment": {"fax": True}}}), (2, {"type_preferences": []}),
        (2, {"type_preferences": {"": {"email": True}}}), (2, {"quiet_hours": {"start": 2200}}),
        (2, {"quiet_hours": []}), (2, {"quiet_hours": {"start": "22:00", "end": "07:00", "timezone": 1}}),
        (0, {"payload": []}), (0, {"payload": "x"}), (0, {"payload": {"k": float("1e308") * 10 - 1}}),
    ]
    for index, patch in cases:
        method, path, kind = BODY_ENDPOINTS[index]
        body = _valid_bodies(user)[index]
        if index == 0 and "user_ids" in patch:
            body.pop("user_id")
        body.update(patch)
        raw = json.dumps(body).encode()  # NaN/inf written as the bare words Python emits
        assert_problem(_send(client, method, path, kind, auth, raw=raw), 400, 422)


# ---- control characters and invalid Unicode in every string -----------------------------------

@pytest.mark.parametrize("field", STRING_FIELDS, ids=lambda f: f"{f[0]}:{'.'.join(map(str, f[1]))}")
def test_nasty_strings_in_every_string_field(client, auth, user, field):
    index, path = field
    method, url, kind = BODY_ENDPOINTS[index]
    for name, value in NASTY_STRINGS.items():
        body = _valid_bodies(user)[index]
        if path[0] == "user_ids":
            body.pop("user_id")
            body["user_ids"] = [ID]
        body = _set(body, path, value)
        if path[-1] == "dedupe_key":
            body["dedupe_key"] = value + str(uuid.uuid4()) if value else value
        response = _send(client, method, url, kind, auth, body)
        if name in ("nul", "lone high surrogate", "lone low surrogate"):
            assert_problem(response, 422)  # PostgreSQL text cannot hold them
        elif response.status_code >= 400:
            assert_problem(response, 422)
        else:
            assert response.status_code in (200, 201), (name, path)
            # What was stored comes back as sent (no mangling on the way through PostgreSQL).
            stored = response.get_json()
            if index == 0 and path[0] in ("title", "message", "target_id", "group_key"):
                assert stored["results"][0]["notification"][path[0]] == value, name


def test_nasty_strings_in_keys(client, auth, user):
    for name, value in NASTY_STRINGS.items():
        body = _valid_bodies(user)[0]
        body["payload"] = {value: 1}
        response = _send(client, "POST", f"{PREFIX}/notifications", "service", auth, body)
        if name in ("nul", "lone high surrogate", "lone low surrogate"):
            assert_problem(response, 422)
        else:
            assert response.status_code < 500, name
        patch = {"type_preferences": {value: {"email": False}}}
        assert_problem(_send(client, "PATCH", f"{PREFIX}/notifications/settings", "user", auth, patch), 422)
        unknown = _send(client, "PATCH", f"{PREFIX}/notifications/settings", "user", auth, {value: True})
        assert_problem(unknown, 422)


QUERY_VALUES = ["%00", "a%00b", "%FF", "%C0%AF", "%ED%A0%80", "%0D%0ASet-Cookie:%20x", "%1B%5B31m",
                "%E2%80%AE", "'%20OR%201=1--", "-1", "1e3", "0x10", "%20", "", "x" * 3900, "%", "%zz", "%%",
                "true&", "[]", "%5B%5D"]
QUERY_ENDPOINTS = [
    ("GET", f"{PREFIX}/notifications", ("status", "type", "limit", "cursor", "other")),
    ("GET", f"{PREFIX}/notifications/unread/count", ("other",)),
    ("GET", f"{PREFIX}/notifications/settings", ("other",)),
    ("DELETE", f"{PREFIX}/notifications/{{id}}", ("permanent", "other")),
    ("GET", f"{PREFIX}/notifications/{{id}}", ("other",)),
    ("PUT", f"{PREFIX}/notifications/{{id}}/read", ("other",)),
    ("POST", f"{PREFIX}/notifications/mark-read", ("other",)),
    ("POST", f"{PREFIX}/notifications", ("other",)),
]


@pytest.mark.parametrize("endpoint", QUERY_ENDPOINTS, ids=lambda e: f"{e[0]} {e[1]}")
def test_hostile_query_parameters(client, auth, user, notification, endpoint):
    method, path, params = endpoint
    path = path.replace("{id}", notification["notification_id"])
    kind = "service" if path.endswith("/notifications") and method == "POST" else "user"
    body = ({"user_id": user, "notification_type": "comment", "title": "q"} if kind == "service"
            else {"all": True} if method == "POST" else None)
    for param in params:
        for value in QUERY_VALUES:
            for name in (param, f"{param}%00", "%FF"):
                response = _send(client, method, f"{path}?{name}={value}", kind, auth, body)
                if response.status_code >= 400:
                    assert_problem(response, 422)
                else:  # e.g. type=%20 (no type filter), permanent=true& (an empty extra parameter)
                    assert name == param and value in ("%20", "", "true&", "-1", "%5B%5D"), (name, value)


def test_hostile_path_segments(client, auth):
    for segment in ("%00", "%FF", "%ED%A0%80", "..%2F..%2Fetc%2Fpasswd", "x" * 3900, ID.upper() + "%00",
                    "{" + ID + "}", "urn:uuid:" + ID, ID.replace("-", "")):
        for suffix in ("", "/read"):
            response = client.get(f"{PREFIX}/notifications/{segment}{suffix}", headers=auth["user"])
            body = assert_problem(response, 404, 405)
            assert body["code"] in ("not_found", "method_not_allowed")


# ---- huge arrays and strings, oversized headers and query strings ----------------------------

def test_huge_arrays_and_strings(client, auth, user):
    many = [str(uuid.uuid4()) for _ in range(1001)]
    cases = [
        (0, {"user_ids": many}), (1, {"notification_ids": many}),
        (0, {"title": "t" * 201}), (0, {"message": "m" * 2001}), (0, {"dedupe_key": "k" * 129}),
        (0, {"action_url": "https://e.com/" + "a" * 2048}), (0, {"payload": {"k": "v" * 17000}}),
        (0, {"payload": {str(i): i for i in range(3000)}}), (0, {"target_id": "x" * 257}),
        (2, {"type_preferences": {f"t{i}": {"email": False} for i in range(201)}}),
        (0, {"title": "t" * 70000}), (0, {"payload": {"a": [0] * 40000}}),
    ]
    for index, patch in cases:
        method, path, kind = BODY_ENDPOINTS[index]
        body = _valid_bodies(user)[index]
        if "user_ids" in patch:
            body.pop("user_id")
        body.update(patch)
        assert_problem(_send(client, method, path, kind, auth, body), 413, 422)


def test_largest_legal_fan_out_is_answered(client, auth):
    """1000 unknown users: a legal request, every result user_not_found, no error."""
    body = {"user_ids": [str(uuid.uuid4()) for _ in range(1000)], "notification_type": "comment", "title": "t"}
    response = _send(client, "POST", f"{PREFIX}/notifications", "service", auth, body)
    assert response.status_code == 200
    assert {r["result"] for r in response.get_json()["results"]} == {"user_not_found"}


def test_oversized_headers_and_query_strings(client, auth, user):
    huge = "x" * 100_000  # past the request-line and header limits: 414 / 431 before anything else
    url = f"{PREFIX}/notifications/unread/count"
    for headers in ({"Authorization": f"Bearer {huge}"}, {**auth["user"], "X-Junk": huge}):
        assert_problem(client.get(url, headers=headers), 431)
    assert_problem(client.post(f"{PREFIX}/notifications", headers={"X-Service-Token": huge}, json={}), 431)
    for query in (f"{huge}=1", f"cursor={huge}", f"type={'a,' * 50000}"):
        assert_problem(client.get(f"{url}?{query}", headers=auth["user"]), 414)
    big = "x" * 8000  # just under the limits: each reaches the check it is about
    assert_problem(client.get(url, headers={"Authorization": f"Bearer {big}"}), 401)
    assert_problem(client.get(url, headers={"Authorization": big}), 401)
    assert_problem(client.post(f"{PREFIX}/notifications", headers={"X-Service-Token": big}, json={}), 401)
    long = big[:3900]
    assert_problem(client.get(f"{url}?{long}=1", headers=auth["user"]), 422)
    assert_problem(client.get(f"{PREFIX}/notifications?cursor={long}", headers=auth["user"]), 422)
    assert_problem(client.get(f"{PREFIX}/notifications?type={'a,' * 1900}", headers=auth["user"]), 422)
    many = "&".join(f"p{i}=1" for i in range(500))
    assert_problem(client.get(f"{url}?{many}", headers=auth["user"]), 422)
    ok = client.get(url, headers={**auth["user"], "X-Request-ID": big, "If-None-Match": big, "X-Junk": big})
    assert ok.status_code == 200 and len(ok.headers["X-Request-ID"]) == 36  # replaced, not echoed
    body = {"user_id": user, "notification_type": "comment", "title": "t"}
    for key in (big[:129], "a\x01b" * 10, " "):
        headers = {"Idempotency-Key": key}
        response = _send(client, "POST", f"{PREFIX}/notifications", "service", auth, body, headers=headers)
        assert response.status_code < 500
        if len(key) > 128:
            assert_problem(response, 422)


def test_duplicate_query_parameters(client, auth, notification):
    user = auth["user"]
    nid = notification["notification_id"]
    for url in (f"{PREFIX}/notifications?limit=1&limit=2", f"{PREFIX}/notifications?status=read&status=unread",
                f"{PREFIX}/notifications?cursor=a&cursor=b", f"{PREFIX}/notifications?limit=5&limit=5",
                f"{PREFIX}/notifications/unread/count?x=1&x=1"):
        body = assert_problem(client.get(url, headers=user), 422)
        assert body["errors"]
    assert_problem(client.delete(f"{PREFIX}/notifications/{nid}?permanent=1&permanent=0", headers=user), 422)
    # `type` is the one parameter that may repeat.
    assert client.get(f"{PREFIX}/notifications?type=comment&type=comment,mention", headers=user).status_code == 200
    assert client.get(f"{PREFIX}/notifications/{nid}", headers=user).status_code == 200  # not deleted


def test_wrong_content_types_and_encodings(client, auth, user):
    body = json.dumps({"user_id": user, "notification_type": "comment", "title": "t"}).encode()
    url = f"{PREFIX}/notifications"
    for content_type in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data",
                         "application/json-patch+json", "", "application/xml", "*/*"):
        response = _send(client, "POST", url, "service", auth, raw=body, content_type=content_type)
        assert_problem(response, 415)
    for encoding in ("gzip", "br", "x-garbage"):
        response = _send(client, "POST", url, "service", auth, raw=b"\x1f\x8b garbage",
                         headers={"Content-Encoding": encoding})
        assert_problem(response, 400, 415)
    latin1 = _send(client, "POST", url, "service", auth, raw=body.replace(b'"t"', '"é"'.encode("latin-1")),
                   content_type="application/json; charset=latin-1")
    assert_problem(latin1, 400)


# ---- every method on every path ---------------------------------------------------------------

METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "PROPFIND", "CONNECT", "BREW")


def test_every_method_on_every_path(app, client, auth, notification):
    paths = set()
    for rule in app.url_map.iter_rules():
        path = rule.rule.replace("<uuid:notification_id>", notification["notification_id"])
        path = path.replace("<path:filename>", "swagger-ui.css")
        if "<" not in path:
            paths.add(path)
    paths |= {"/", f"{PREFIX}", f"{PREFIX}/", f"{PREFIX}/notifications/", "/nope", "/health/"}
    checked = 0
    for path in sorted(paths):
        for method in METHODS:
            for credentials in ("none", "user", "service"):
                body = b"{}" if method in ("POST", "PUT", "PATCH") else None
                response = client.open(path, method=method, headers=auth[credentials], data=body,
                                       content_type="application/json" if body else None)
                checked += 1
                assert response.status_code < 500, (method, path, credentials, response.get_data()[:300])
                if response.status_code >= 400 and method != "HEAD":
                    assert_problem(response)
                if response.status_code == 405:
                    assert response.headers.get("Allow"), (method, path)
    assert checked > 300


# ---- anything at all in the body --------------------------------------------------------------

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=20)
FIELD_NAMES = st.sampled_from(["user_id", "user_ids", "notification_type", "title", "message", "payload",
                               "priority", "expires_at", "dedupe_key", "action_url", "notification_ids",
                               "all", "before", "in_app_enabled", "type_preferences", "quiet_hours"])


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck), database=None,
          derandomize=True)
@given(endpoint=st.sampled_from(range(len(BODY_ENDPOINTS))),
       body=st.dictionaries(FIELD_NAMES, JSON, max_size=6) | JSON)
def test_any_json_body_is_never_a_server_error(client, auth, endpoint, body):
    method, path, kind = BODY_ENDPOINTS[endpoint]
    response = _send(client, method, path, kind, auth, body)
    assert response.status_code < 500, response.get_data()[:300]
    if response.status_code >= 400:
        assert_problem(response)
