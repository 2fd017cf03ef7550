"""The web inbox's test side: the API under gunicorn (+ Pushpin), the test's own API calls, the host page
on another origin (strict CSP, the component by one script tag), and what the tests ask the page."""
from __future__ import annotations

import http.client
import json
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from machine_tools import stop_process

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / ".ci" / "artifacts"  # CI keeps them (.gitignore'd)
PREFIX = "/api/v1"
POLL_SECONDS = 3  # the stream's `retry:` without Pushpin; short so the fallback test is quick
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def free_port() -> int:
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
        self.port = free_port()
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


def held(url: str, env: dict[str, str], user: str) -> bool:
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


HOST_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>host page</title>
<script src="{inbox_js}" integrity="{integrity}" crossorigin="anonymous" defer></script>
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
                                integrity=self.manifest["integrity"]["notification-inbox.js"],
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


# ---- the page, as the tests see it ---------------------------------------------------------------

INBOX = "notification-inbox"
BELL = f"{INBOX} .bell"
BADGE = f"{INBOX} .badge"
ITEMS = f"{INBOX} li.item"


def expect(locator):
    from playwright.sync_api import expect as playwright_expect
    return playwright_expect(locator)


def item(page, notification_id: str):
    return page.locator(f"{INBOX} li.item[data-id='{notification_id}']")


def ready(page, mode: str | None = None) -> None:
    """The component has its counts and its live connection (`live-mode`: stream, polling)."""
    page.wait_for_function(f"""() => {{ const el = document.querySelector('{INBOX}');
        const live = el && el.counts && el.getAttribute('live-mode');
        if ({json.dumps(mode)} === 'any') return !!live;
        return {json.dumps(mode)} === null ? ['stream', 'polling'].includes(live) : live === {json.dumps(mode)}; }}""")


def counts(page) -> dict:
    return page.evaluate(f"() => document.querySelector('{INBOX}').counts")


def open_panel(page) -> None:
    page.locator(BELL).click()
    expect(page.locator(f"{INBOX} .panel")).to_be_visible()


def wait_status(api, user, notification_id, status, timeout=5.0) -> dict:
    """The API's copy reaches `status` (the browser's request may still be on its way)."""
    deadline = time.monotonic() + timeout
    while True:
        found = api.get(user, notification_id)
        if found["status"] == status:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"{notification_id} is {found['status']}, not {status}")
        time.sleep(0.05)


def wait_counts_match(page, api, user, timeout=5.0) -> dict:
    """The component's counts equal the API's (each change settles within `timeout`)."""
    deadline = time.monotonic() + timeout
    while True:
        truth = api.counts(user)
        shown = counts(page)
        if shown == {"unread_count": truth["unread_count"], "unseen_count": truth["unseen_count"]}:
            return shown
        if time.monotonic() > deadline:
            raise AssertionError(f"component {shown} != API {truth}")
        page.wait_for_timeout(100)
