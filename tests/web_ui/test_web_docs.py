"""Swagger UI at /docs in a real browser. With the web inbox demo on (ENABLE_UI_DEMO, development only)
it starts authorized as the demo user: "Try it out" on an authenticated endpoint answers 200 with
nothing pasted. Without the demo nothing is set, and the page never asks for a token. The page's CSP
(scripts from its own origin only) is kept: no violation.

The app runs in this process (werkzeug's threaded server): the browser's side is what is tested here;
the page and its headers as HTTP are tests/api/test_openapi.py's."""
from __future__ import annotations

import base64
import json
import secrets
import threading

import pytest
from web_ui_helpers import expect
from werkzeug.serving import WSGIRequestHandler, make_server

pytestmark = pytest.mark.e2e

VIOLATIONS = """window.violations = [];
document.addEventListener('securitypolicyviolation', (e) => window.violations.push(e.violatedDirective));"""
COUNT = "#operations-notifications-getUnreadCount"
AUTHORIZE = ".auth-wrapper .btn.authorize"


class Quiet(WSGIRequestHandler):
    def log_request(self, *args, **kwargs):  # (the app's own access log is on: one line per request)
        pass


@pytest.fixture
def serve(database, app_factory):
    """serve(**config) -> the base URL of the app on a free loopback port, stopped at teardown."""
    servers = []

    def start(**overrides) -> str:
        app = app_factory({
            "DATABASE_URL": database.app, "JWT_SECRET": secrets.token_urlsafe(36),
            "SERVICE_TOKEN": secrets.token_urlsafe(36), "ENVIRONMENT": "development", "ENABLE_DOCS": True,
            "RATE_LIMIT_ENABLED": False, "LOG_LEVEL": "WARNING", "REDIS_HOST": "", "METRICS_TOKEN": "",
            "EMAIL_API_URL": "", **overrides})
        server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=Quiet)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_port}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def _open_docs(context, url: str) -> tuple[object, list[str]]:
    """/docs loaded, Swagger UI rendered; the URLs of every request the page made."""
    context.add_init_script(VIOLATIONS)
    page = context.new_page()
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    response = page.goto(f"{url}/docs")
    assert "script-src 'self'" in response.headers["content-security-policy"]
    expect(page.locator(COUNT)).to_be_visible()
    return page, requests


def _try_unread_count(page):
    """Try it out → Execute on GET unread count: the response panel's status and body."""
    operation = page.locator(COUNT)
    operation.locator(".opblock-summary-control").click()
    operation.locator("button.try-out__btn").click()
    operation.locator("button.execute").click()
    status = operation.locator(".live-responses-table .response .response-col_status")
    expect(status).to_be_visible()
    return status.inner_text().strip(), operation.locator(".live-responses-table .microlight").first.inner_text()


def _subject(jwt: str) -> str:
    payload = jwt.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["sub"]


def test_docs_start_authorized_as_the_demo_user(context, serve, make_user):
    demo_user = make_user()
    url = serve(ENABLE_UI_DEMO=True, UI_DEMO_USER_ID=demo_user)
    page, requests = _open_docs(context, url)
    expect(page.locator(AUTHORIZE)).to_have_class("btn authorize locked")  # Authorize shows a credential set
    authorized = page.evaluate("() => window.ui.authSelectors.authorized().toJS()")
    assert list(authorized) == ["bearerAuth"], authorized  # the user JWT only, never the service token
    assert _subject(authorized["bearerAuth"]["value"]) == demo_user
    assert requests.count(f"{url}/ui/demo/token") == 1
    status, body = _try_unread_count(page)
    assert status == "200", body
    assert set(json.loads(body)) >= {"unread_count", "unseen_count"}
    page.locator(AUTHORIZE).click()  # the dialog: bearerAuth authorized, serviceToken still to fill in
    dialog = page.locator(".dialog-ux .modal-ux")
    expect(dialog.locator(".auth-container").first).to_contain_text("bearerAuth")
    expect(dialog.locator(".auth-container").first).to_contain_text("Logout")
    expect(dialog.locator(".auth-container", has_text="serviceToken").locator("input")).to_have_value("")
    assert page.evaluate("() => window.violations") == []


def test_docs_without_the_demo_set_nothing_and_ask_for_no_token(context, serve, make_user):
    url = serve(ENABLE_UI_DEMO=False, UI_DEMO_USER_ID=make_user())
    page, requests = _open_docs(context, url)
    expect(page.locator(AUTHORIZE)).to_have_class("btn authorize unlocked")
    assert page.evaluate("() => window.ui.authSelectors.authorized().toJS()") == {}
    status, _ = _try_unread_count(page)
    assert status == "401"
    assert not [r for r in requests if "/demo" in r], requests
    assert "/ui/demo" not in page.content()
    assert page.evaluate("() => window.violations") == []
