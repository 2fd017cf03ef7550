"""A real browser: headless Chromium on a page from a listed origin calls the API with an
Authorization header (so it sends a preflight) and reads ETag and X-Request-ID; from an
unlisted origin the same call is blocked."""
from __future__ import annotations

import functools
import html
import json
import re
import shutil
import subprocess
import threading
import urllib.request
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import pytest
from machine_tools import skip_unless_ci

pytestmark = pytest.mark.e2e

PAGE = """<!doctype html>
<html><head><title>pending</title></head><body><pre id="out">pending</pre><script>
function show(value) {
  document.getElementById("out").textContent = JSON.stringify(value);
  document.title = "done";
}
fetch("%(api)s/api/v1/notifications/unread/count",
      {headers: {"Authorization": "Bearer %(token)s", "X-Request-ID": "from-the-browser"}})
  .then(async (r) => show({status: r.status, etag: r.headers.get("ETag"),
                           requestId: r.headers.get("X-Request-ID"),
                           remaining: r.headers.get("RateLimit-Remaining"), body: await r.json()}))
  .catch((e) => show({error: String(e)}));
</script></body></html>
"""
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run",
                  "--virtual-time-budget=10000", "--dump-dom"]


@pytest.fixture
def chromium():
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    if binary is None:
        reason = "chromium is not installed (apt-get install -y chromium); skipping the browser CORS test"
        skip_unless_ci(reason)
    return binary


@pytest.fixture
def page_server(tmp_path):
    """A static file server on a free loopback port: the page's origin."""
    site = tmp_path / "site"
    site.mkdir()
    handler = functools.partial(_QuietHandler, directory=str(site))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield site, server.server_address[1]
    server.shutdown()
    server.server_close()


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format, *args):
        pass


def run_page(chromium: str, url: str, profile) -> dict:
    result = subprocess.run([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", url],
                            capture_output=True, text=True, timeout=90)
    match = re.search(r'<pre id="out">(.*?)</pre>', result.stdout, re.S)
    assert match, f"no result in the page (exit {result.returncode}):\n{result.stdout}\n{result.stderr[-2000:]}"
    assert match.group(1) != "pending", "the page's fetch did not finish"
    return json.loads(html.unescape(match.group(1)))


def test_browser_on_a_listed_origin_reads_etag_and_request_id(
        chromium, page_server, start_server, make_user, bearer, tmp_path):
    site, page_port = page_server
    listed = f"http://127.0.0.1:{page_port}"
    api = start_server(CORS_ORIGINS=listed, LOG_LEVEL="INFO")
    token = bearer(make_user())["Authorization"].split()[1]
    (site / "index.html").write_text(PAGE % {"api": api.url, "token": token})

    seen = run_page(chromium, f"{listed}/index.html", tmp_path / "profile-listed")
    assert seen["status"] == 200, seen
    assert re.fullmatch(r'"[^"]+"', seen["etag"]), seen
    assert seen["requestId"] == "from-the-browser"
    assert seen["remaining"] is not None and seen["body"]["unread_count"] == 0

    # The same page from an origin that is not listed (localhost is another origin): blocked.
    blocked = run_page(chromium, f"http://localhost:{page_port}/index.html", tmp_path / "profile-unlisted")
    assert "error" in blocked and "fetch" in blocked["error"].lower(), blocked

    requests = [json.loads(line) for line in api.log().splitlines()
                if line.startswith("{") and '"message": "request"' in line]
    count = [entry for entry in requests if entry.get("route") == "/api/v1/notifications/unread/count"]
    methods = [entry["method"] for entry in count]
    assert methods.count("OPTIONS") == 2, methods  # a real preflight each time ...
    assert methods.count("GET") == 1, methods  # ... and the unlisted origin's GET was never sent

    # the ETag the page read is the one the server gives this user's count outside a browser
    direct = urllib.request.urlopen(urllib.request.Request(
        f"{api.url}/api/v1/notifications/unread/count", headers={"Authorization": f"Bearer {token}"}))
    assert seen["etag"] == direct.headers["ETag"], seen
