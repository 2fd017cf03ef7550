"""The web inbox in a real browser: Playwright driving Debian's Chromium (no browser download),
headless, against gunicorn + PostgreSQL, with Pushpin in front where it is installed.

Two origins, as in production: the API (gunicorn, directly or through Pushpin) and a host page on
another origin (`HostSite`, with a strict CSP) that embeds `<notification-inbox>` with one script tag
and hands it a user's JWT through its token callback. Missing chromium, pushpin or the playwright
package: skipped locally, a failure under CI=true (.ci/run installs them).
"""
from __future__ import annotations

import http.client
import json
import os
import secrets
import shutil
import subprocess
import sys
import threading
import time
import urllib.parse
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from machine_tools import skip_unless_ci, stop_process

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / ".ci" / "artifacts"  # CI keeps them (.gitignore'd)
PREFIX = "/api/v1"
POLL_SECONDS = 3  # the stream's `retry:` without Pushpin; short so the fallback test is quick
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]

pytestmark = pytest.mark.e2e


def _free_port() -> int:
    import socket
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Api:
    """The test's own HTTP calls to the API (not the browser's): a service and users."""

    def __init__(self, url: str, env: dict[str, str]):
        self.url = url
        self.env = env
        parts = urllib.parse.urlsplit(url)
        self.host, self.port = parts.hostname, parts.port

    def token(self, user_id: str) -> str:
        from notifications_api.web.auth import issue_token
        return issue_token({"JWT_SECRET": self.env["JWT_SECRET"], "JWT_ALGORITHM": "HS256"}, user_id)

    def call(self, method: str, path: str, body=None, user: str | None = None, service: bool = False,
             expect: int | tuple[int, ...] | None = None):
        headers = {"Content-Type": "application/json"} if body is not None else {}
        if user:
            headers["Authorization"] = f"Bearer {self.token(user)}"
        if service:
            headers["X-Service-Token"] = self.env["SERVICE_TOKEN"]
        connection = http.client.HTTPConnection(self.host, self.port, timeout=15)
        try:
            connection.request(method, PREFIX + path, body=None if body is None else json.dumps(body),
                               headers=headers)
            response = connection.getresponse()
            raw = response.read()
        finally:
            connection.close()
        if expect is not None:
            expected = expect if isinstance(expect, tuple) else (expect,)
            assert response.status in expected, (method, path, response.status, raw[:500])
        return json.loads(raw) if raw else None

    def create(self, user_id: str, title: str = "Hello", **fields) -> dict:
        body = {"user_id": user_id, "notification_type": fields.pop("notification_type", "comment"),
                "title": title, **fields}
        result = self.call("POST", "/notifications", body, service=True, expect=(200, 201))
        return result["results"][0]["notification"]

    def counts(self, user_id: str) -> dict:
        return self.call("GET", "/notifications/unread/count", user=user_id, expect=200)

    def get(self, user_id: str, notification_id: str) -> dict:
        return self.call("GET", f"/notifications/{notification_id}", user=user_id, expect=200)


class Gunicorn:
    """The API under gunicorn as deployed (the package's settings), on a free loopback port."""

    def __init__(self, env: dict[str, str], log_path: Path):
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self._log = log_path.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", "python:notifications_api.ops.gunicorn_conf",
             "-b", f"127.0.0.1:{self.port}", "notifications_api.wsgi:app"],
            cwd=ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 60
        while True:
            try:
                connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                connection.request("GET", "/health/live")
                if connection.getresponse().status == 200:
                    connection.close()
                    return
            except OSError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("gunicorn did not start:\n" + log_path.read_text(errors="replace")[-3000:])
            time.sleep(0.1)

    def stop(self) -> None:
        stop_process(self.process, timeout=15)
        self._log.close()


class Stack:
    """gunicorn (+ Pushpin in front when installed): `direct` always, `live` = through Pushpin or None."""

    def __init__(self, direct: Api, live: Api | None, env: dict[str, str], demo_user: str):
        self.direct, self.live, self.env, self.demo_user = direct, live, env, demo_user


@pytest.fixture(scope="session")
def host_origin_port():
    return _free_port()


@pytest.fixture(scope="session")
def stack(database, tmp_path_factory, host_origin_port):
    from notifications_api.db import admin
    from notifications_api.ops import devpushpin

    work = tmp_path_factory.mktemp("web-ui")
    demo_user = str(uuid.uuid4())
    admin.create_user(database.admin, user_id=demo_user, email=f"{demo_user}@example.test", active=True)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("DB_", "REDIS_", "JWT_", "GUNICORN_", "RATE_LIMIT", "SERVICE_TOKEN", "GRIP_",
                                "METRICS_TOKEN", "DATABASE_URL", "PROMETHEUS_MULTIPROC_DIR", "PORT",
                                "ENABLE_", "CORS_"))}
    env.update({
        "ENV_FILE": os.devnull, "ENVIRONMENT": "test", "LOG_LEVEL": "WARNING", "DATABASE_URL": database.app,
        "JWT_SECRET": secrets.token_urlsafe(36), "SERVICE_TOKEN": secrets.token_urlsafe(36), "METRICS_TOKEN": "",
        "WEB_CONCURRENCY": "1", "GUNICORN_THREADS": "8", "DB_POOL_MIN_SIZE": "1", "DB_POOL_MAX_SIZE": "8",
        "RATE_LIMIT_ENABLED": "false", "EMAIL_API_URL": "", "POLL_INTERVAL_SECONDS": str(POLL_SECONDS),
        "ENABLE_UI_DEMO": "true", "UI_DEMO_USER_ID": demo_user,
        "CORS_ORIGINS": f"http://127.0.0.1:{host_origin_port}",
    })
    pushpin = None
    if devpushpin.available():
        env["GRIP_SIG_KEY"] = secrets.token_urlsafe(36)
        pushpin = devpushpin.Pushpin(work / "pushpin", env["GRIP_SIG_KEY"])
        env["GRIP_PUBLISH_URL"] = pushpin.publish_url
    server = Gunicorn(env, work / "gunicorn.log")
    try:
        if pushpin is not None:
            pushpin.start(f"127.0.0.1:{server.port}", ready=lambda: _held(pushpin.url, env, demo_user))
        yield Stack(Api(server.url, env), Api(pushpin.url, env) if pushpin else None, env, demo_user)
    finally:
        if pushpin is not None:
            pushpin.stop()
        server.stop()


def _held(url: str, env: dict[str, str], user: str) -> bool:
    """A stream through Pushpin is held (the proxy, handler and zurl have found each other)."""
    api = Api(url, env)
    try:
        connection = http.client.HTTPConnection(api.host, api.port, timeout=1)
        connection.request("GET", f"{PREFIX}/notifications/stream",
                           headers={"Authorization": f"Bearer {api.token(user)}"})
        response = connection.getresponse()
        held = response.status == 200 and response.getheader("Transfer-Encoding") == "chunked"
        connection.close()
        return held
    except OSError:
        return False


@pytest.fixture
def live_api(stack) -> Api:
    """The API through Pushpin: required (skipped locally without it, a failure under CI=true)."""
    if stack.live is None:
        skip_unless_ci("pushpin, zurl or condure is not installed (apt-get install -y pushpin)")
    return stack.live


@pytest.fixture
def api(stack) -> Api:
    """Through Pushpin where installed, else gunicorn directly (the component then polls)."""
    return stack.live or stack.direct


# ---- the host page ---------------------------------------------------------------------------

HOST_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>host page</title>
<script src="{inbox_js}" defer></script>
<script src="/host.js" defer></script>
</head><body>
<button id="before" type="button">before</button>
<notification-inbox api-base="{api_base}" token-provider="hostPage.token" page-size="{size}"{extra}></notification-inbox>
<a id="after" href="#after">after</a>
</body></html>
"""
HOST_JS = """
window.hostPage = {
  violations: [], events: [],
  token: async () => (await fetch("/token" + location.search, {cache: "no-store"})).text(),
};
document.addEventListener("securitypolicyviolation",
  (e) => window.hostPage.violations.push(e.violatedDirective + " " + e.blockedURI));
for (const name of ["inbox-counts", "inbox-open", "inbox-close", "inbox-notification", "inbox-click",
                    "inbox-change", "inbox-error", "inbox-push"]) {
  document.addEventListener(name, (e) => window.hostPage.events.push({type: name, detail: e.detail}));
}
"""
LANDING = b"<!doctype html><title>landing</title><p id='landed'>landed</p>"


class HostSite:
    """Another origin's page: strict CSP (no inline anything, Trusted Types required), the component
    from the API's /ui/ by one script tag, a token callback backed by this server's /token."""

    def __init__(self, port: int, stack: Stack):
        site = self
        self.stack = stack
        self.origin = f"http://127.0.0.1:{port}"

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                url = urllib.parse.urlsplit(self.path)
                query = dict(urllib.parse.parse_qsl(url.query))
                if url.path == "/":
                    self._send(200, "text/html; charset=utf-8", site.page(query).encode(), site.csp(query))
                elif url.path == "/host.js":
                    self._send(200, "text/javascript", HOST_JS.encode())
                elif url.path == "/token":
                    self._send(200, "text/plain", stack.direct.token(query["user"]).encode())
                elif url.path == "/sw.js":  # the host serves the service worker from its own origin
                    self._send(200, "text/javascript", site.fetch_api("/ui/sw.js"))
                elif url.path == "/landing":
                    self._send(200, "text/html", LANDING)
                else:
                    self._send(404, "text/plain", b"not found")

            def _send(self, status, content_type, body, csp=None):
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                if csp:
                    self.send_header("Content-Security-Policy", csp)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.manifest = json.loads(self.fetch_api("/ui/manifest.json"))

    def fetch_api(self, path: str) -> bytes:
        connection = http.client.HTTPConnection(self.stack.direct.host, self.stack.direct.port, timeout=10)
        connection.request("GET", path)
        body = connection.getresponse().read()
        connection.close()
        return body

    @staticmethod
    def _api_origin(query: dict) -> str:
        return query["api"]

    def page(self, query: dict) -> str:
        extra = "".join(f' {name}="{query[name]}"' for name in ("service-worker",) if name in query)
        return HOST_PAGE.format(inbox_js=query["api"] + self.manifest["notification-inbox.js"],
                                api_base=query["api"] + PREFIX, size=query.get("size", "20"), extra=extra)

    def csp(self, query: dict) -> str:
        api = query["api"]
        return (f"default-src 'none'; script-src 'self' {api}; connect-src 'self' {api}; "
                "style-src 'self'; img-src 'self'; worker-src 'self'; base-uri 'none'; form-action 'none'; "
                "require-trusted-types-for 'script'; trusted-types notification-inbox")

    def url(self, user: str, api: Api, size: int = 20, **extra: str) -> str:
        query = {"user": user, "api": api.url, "size": str(size), **extra}
        return f"{self.origin}/?{urllib.parse.urlencode(query)}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="session")
def host(stack, host_origin_port):
    site = HostSite(host_origin_port, stack)
    yield site
    site.close()


# ---- the browser ------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def browser():
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    if binary is None:
        skip_unless_ci("chromium is not installed (apt-get install -y chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        skip_unless_ci("the playwright package is not installed (pip install -e '.[test]')")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=binary, args=CHROMIUM_ARGS, headless=True)
        yield launched
        launched.close()


@pytest.fixture
def context(browser):
    ctx = browser.new_context(viewport={"width": 1000, "height": 760}, locale="en-US")
    ctx.set_default_timeout(10000)
    yield ctx
    ctx.close()


@pytest.fixture
def page(context):
    return context.new_page()


@pytest.fixture
def user(database):
    from notifications_api.db import admin
    user_id = str(uuid.uuid4())
    admin.create_user(database.admin, user_id=user_id, email=f"{user_id}@example.test", active=True)
    return user_id
