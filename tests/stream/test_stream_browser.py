"""A real browser: headless Chromium opens a page whose EventSource follows the stream with a
ticket; a service creates a notification; the page's badge shows the new unseen count within 2 s
through Pushpin, and within one poll interval without it."""
from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from pushpin_helpers import STREAM, AppServer, start_behind_pushpin
from machine_tools import skip_unless_ci, stop_process

from notifications_api import create_app

pytestmark = pytest.mark.e2e

PAGE = """<!doctype html>
<html><head><title>badge</title></head><body><span id="badge">?</span><script>
const stream = new EventSource(%(url)s);
stream.addEventListener("counts", (event) => {
  const counts = JSON.parse(event.data);
  document.getElementById("badge").textContent = String(counts.unseen_count);
  // tell the test what the badge shows now
  fetch("/report", {method: "POST", body: JSON.stringify({badge: counts.unseen_count, id: event.lastEventId})});
});
</script></body></html>
"""
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run",
                  "--remote-debugging-port=0"]


@pytest.fixture
def chromium():
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    if binary is None:
        skip_unless_ci("chromium is not installed (apt-get install -y chromium)")
    return binary


class PageSite:
    """Serves the page and collects the page's reports (the badge values it shows)."""

    def __init__(self):
        self.page = b""
        self.reports: list[tuple[float, dict]] = []
        self.changed = threading.Condition()
        site = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(site.page)))
                self.end_headers()
                self.wfile.write(site.page)

            def do_POST(self):
                report = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with site.changed:
                    site.reports.append((time.monotonic(), report))
                    site.changed.notify_all()
                self.send_response(204)
                self.end_headers()

            def log_message(self, format, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.origin = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait_for_badge(self, value: int, timeout: float) -> float:
        """When (monotonic) the page first showed `value`, waiting at most `timeout` seconds."""
        deadline = time.monotonic() + timeout
        with self.changed:
            while True:
                for at, report in self.reports:
                    if report["badge"] == value:
                        return at
                if time.monotonic() > deadline:
                    raise AssertionError(f"the badge never showed {value}: {self.reports}")
                self.changed.wait(max(0.01, deadline - time.monotonic()))

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def site():
    page_site = PageSite()
    yield page_site
    page_site.close()


def _create(api_url: str, config: dict, user: str) -> float:
    request = urllib.request.Request(
        f"{api_url}/api/v1/notifications", method="POST",
        data=json.dumps({"user_id": user, "notification_type": "comment", "title": "new"}).encode(),
        headers={"Content-Type": "application/json", "X-Service-Token": config["SERVICE_TOKEN"]})
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 201
    return time.monotonic()


def _ticket(api_url: str, config: dict, user: str) -> str:
    from notifications_api.web.auth import issue_token
    request = urllib.request.Request(f"{api_url}/api/v1/notifications/stream/ticket", method="POST",
                                     headers={"Authorization": f"Bearer {issue_token(config, user)}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())["ticket"]


def _open_page(chromium: str, site: PageSite, stream_url: str, profile) -> subprocess.Popen:
    site.page = (PAGE % {"url": json.dumps(stream_url)}).encode()
    return subprocess.Popen([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", site.origin + "/"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def test_the_badge_follows_a_create_through_pushpin_and_without_it(
        chromium, site, tmp_path, stream_config, make_user):
    user = make_user()
    config = {**stream_config, "CORS_ORIGINS": (site.origin,)}
    pushpin, api = start_behind_pushpin(tmp_path / "pushpin", config, user)
    browser = None
    try:
        browser = _open_page(chromium, site, f"{pushpin.url}{STREAM}?ticket={_ticket(api.url, config, user)}",
                             tmp_path / "profile-pushpin")
        site.wait_for_badge(0, 30)  # the first event: the page is up and the stream held
        created = _create(api.url, config, user)
        assert site.wait_for_badge(1, 5) - created <= 2.0
    finally:
        if browser is not None:
            stop_process(browser)
        pushpin.stop()
        api.stop()

    # Without Pushpin: the app answers one event and `retry:`; EventSource polls at that interval.
    site.reports.clear()
    direct = AppServer(create_app({**config, "GRIP_PUBLISH_URL": ()}))
    try:
        browser = _open_page(chromium, site, f"{direct.url}{STREAM}?ticket={_ticket(direct.url, config, user)}",
                             tmp_path / "profile-direct")
        site.wait_for_badge(1, 30)
        created = _create(direct.url, config, user)
        interval = config["POLL_INTERVAL_SECONDS"]
        assert site.wait_for_badge(2, interval + 5) - created <= interval + 1.0
    finally:
        stop_process(browser)
        direct.stop()
