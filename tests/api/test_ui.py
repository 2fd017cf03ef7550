"""/ui/: the web inbox's files (content-hashed names, strong ETags, long caching, no CSP conflicts) and,
only with ENABLE_UI_DEMO, the demo page and its development endpoints. The browser side: tests/web_ui."""
from __future__ import annotations

import hashlib
import re

import pytest

from notifications_api.views import ui

VERSIONED = re.compile(r"^/ui/(notification-inbox|demo)\.[0-9a-f]{12}\.(js|css)$")


@pytest.fixture
def demo_app(make_app, user):
    return make_app(ENABLE_UI_DEMO=True, UI_DEMO_USER_ID=user)


def _manifest(client) -> dict:
    response = client.get("/ui/manifest.json")
    assert response.status_code == 200
    return response.get_json()


def test_the_component_has_a_content_hashed_immutable_url_with_a_strong_etag(client):
    url = _manifest(client)["notification-inbox.js"]
    assert VERSIONED.match(url), url
    response = client.get(url)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/javascript; charset=utf-8"
    assert response.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    body = response.get_data()
    digest = hashlib.sha256(body).hexdigest()
    assert url.split(".")[-2] == digest[:12]  # the name is the content's hash
    assert response.headers["ETag"] == f'"{digest[:32]}"'  # strong (no W/)
    again = client.get(url, headers={"If-None-Match": response.headers["ETag"]})
    assert again.status_code == 304 and again.get_data() == b""
    assert again.headers["ETag"] == response.headers["ETag"]
    assert again.headers["Cache-Control"] == "public, max-age=31536000, immutable"


def test_the_manifest_gives_each_versioned_file_its_subresource_integrity(client):
    import base64
    manifest = _manifest(client)
    for name in ("notification-inbox.js", "demo.js", "demo.css"):
        response = client.get(manifest[name])
        digest = base64.b64encode(hashlib.sha384(response.get_data()).digest()).decode()
        assert manifest["integrity"][name] == f"sha384-{digest}", name
        assert response.headers["Access-Control-Allow-Origin"] == "*"  # readable with `crossorigin`


def test_the_stable_names_are_revalidated_every_time(client):
    for name in ("/ui/notification-inbox.js", "/ui/sw.js", "/ui/manifest.json"):
        response = client.get(name)
        assert response.status_code == 200, name
        assert response.headers["Cache-Control"] == "public, no-cache", name
        assert client.get(name, headers={"If-None-Match": response.headers["ETag"]}).status_code == 304
    assert client.get("/ui/notification-inbox.js").get_data() == \
        client.get(_manifest(client)["notification-inbox.js"]).get_data()
    assert client.get("/ui/sw.js").headers["Service-Worker-Allowed"] == "/"


def test_the_files_are_csp_compatible():
    """No eval, no Function(), no inline handlers, no innerHTML (Trusted Types), no document.write."""
    for name in ("notification-inbox.js", "sw.js", "demo.js"):
        source = (ui.resources.files("notifications_api.views") / "ui_assets" / name).read_text()
        source = re.sub(r"/\*.*?\*/", "", source, flags=re.S)  # the code, not its comments
        source = re.sub(r"(^|\s)//\s.*$", "", source, flags=re.M)
        for forbidden in ("eval(", "new Function", "innerHTML", "outerHTML", "document.write",
                          "insertAdjacentHTML", "setAttribute(\"on", ".style.cssText", "localStorage"):
            assert forbidden not in source, (name, forbidden)
    page = (ui.resources.files("notifications_api.views") / "ui_assets" / "demo.html").read_text()
    assert "<style" not in page and " style=" not in page
    assert re.search(r"<[^>]+\son[a-z]+=", page) is None  # no inline event handler
    assert re.findall(r"<script[^>]*>([^<]+)</script>", page) == []  # no inline script


def test_unknown_files_and_the_template_are_not_served(client):
    for path in ("/ui/nope.js", "/ui/demo.html", "/ui/notification-inbox.000000000000.js", "/ui/../config.py"):
        assert client.get(path).status_code == 404, path


def test_without_ui_demo_the_demo_routes_do_not_exist(client, user_headers, user):
    assert client.get("/ui/demo").status_code == 404
    # (a POST to a /ui/ path meets the files' GET-only route: 405, which reveals nothing either)
    assert client.post("/ui/demo/token").status_code in (404, 405)
    assert client.post("/ui/demo/notifications", json={}, headers=user_headers(user)).status_code in (404, 405)


def test_the_demo_page_loads_only_its_own_files_under_a_strict_csp(demo_app):
    client = demo_app.test_client()
    response = client.get("/ui/demo")
    assert response.status_code == 200 and response.mimetype == "text/html"
    csp = response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe" not in csp and "frame-ancestors 'none'" in csp
    assert response.headers["Cache-Control"] == "no-store"
    page = response.get_data(as_text=True)
    manifest = _manifest(client)
    for name in ("notification-inbox.js", "demo.js", "demo.css"):
        assert f'"{manifest[name]}"' in page
        assert client.get(manifest[name]).status_code == 200
    assert 'api-base="/api/v1"' in page and "{{" not in page


def test_the_demo_token_is_the_demo_users_and_the_button_sends_the_caller_a_notification(demo_app, user):
    import jwt
    client = demo_app.test_client()
    token = client.post("/ui/demo/token").get_json()["token"]
    claims = jwt.decode(token, demo_app.config["JWT_SECRET"], algorithms=["HS256"])
    assert claims["sub"] == user and claims["exp"] - claims["iat"] == 3600
    response = client.post("/ui/demo/notifications", json={"title": "Test notification #1"},
                           headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 201
    created = response.get_json()["results"][0]["notification"]
    assert created["user_id"] == user and created["title"] == "Test notification #1"
    assert created["notification_type"] == "demo" and created["action_url"] == "http://localhost/ui/demo"
    listed = client.get("/api/v1/notifications", headers={"Authorization": f"Bearer {token}"}).get_json()
    assert listed["items"][0]["notification_id"] == created["notification_id"]
    assert client.post("/ui/demo/notifications", json={}).status_code == 401  # a JWT is required
    refused = client.post("/ui/demo/notifications", json={"title": "x", "user_id": user},
                          headers={"Authorization": f"Bearer {token}"})
    assert refused.status_code == 422 and "user_id" in refused.get_json()["errors"]  # only for the caller
    assert client.post("/ui/demo/notifications", json={"title": ""},
                       headers={"Authorization": f"Bearer {token}"}).status_code == 422


def test_the_demo_routes_are_documented_when_enabled(demo_app):
    from notifications_api.web import openapi
    spec = openapi.spec_for(demo_app)
    assert spec["paths"]["/ui/demo"]["get"]["operationId"] == "getUiDemo"
    assert spec["paths"]["/ui/demo/token"]["post"]["operationId"] == "issueUiDemoToken"
    assert spec["paths"]["/ui/demo/notifications"]["post"]["operationId"] == "sendUiDemoNotification"
    assert not any(path.startswith("/ui/<") or path == "/ui/{filename}" for path in spec["paths"])


def test_the_files_are_outside_the_anonymous_rate_limit_and_the_demo_page_is_not(make_app, user):
    client = make_app(RATE_LIMIT_ENABLED=True, RATE_LIMIT_ANONYMOUS="2/minute", ENABLE_UI_DEMO=True,
                      UI_DEMO_USER_ID=user).test_client()
    for _ in range(5):  # one page load fetches several files; cached for a year afterwards
        response = client.get("/ui/notification-inbox.js")
        assert response.status_code == 200 and "RateLimit-Limit" not in response.headers
    assert [client.get("/ui/demo").status_code for _ in range(3)] == [200, 200, 429]
