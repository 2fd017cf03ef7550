"""A real push service for the tests: web-push-testing (npm) on a free loopback port.

It speaks the protocol: it verifies the VAPID JWT and key, decrypts aes128gcm with the subscription's
private key (http_ece in Node: not our code, so a shared bug cannot pass), and answers 201, 400 or
410 (an expired subscription). tests/push/node/wpt_server.js wraps it to bind 127.0.0.1 on an
ephemeral port, record each request's headers and inject answers (429, 5xx, 404).
"""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import urllib3

from machine_tools import skip_unless_ci, stop_process

NODE_DIR = Path(__file__).resolve().parent / "node"
MODULE = NODE_DIR / "node_modules" / "web-push-testing"


def ensure_installed() -> None:
    """node and web-push-testing, installed from the lock file when missing (npm ci): skip locally
    without node/npm, fail under CI=true."""
    if shutil.which("node") is None:
        skip_unless_ci("node is not installed (the Web Push tests run web-push-testing)")
    if MODULE.is_dir():
        return
    if shutil.which("npm") is None:
        skip_unless_ci("npm is not installed and tests/push/node/node_modules is missing")
    result = subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=NODE_DIR, capture_output=True,
                            text=True, timeout=300)
    if result.returncode != 0 or not MODULE.is_dir():
        skip_unless_ci(f"npm ci in {NODE_DIR} failed: {result.stderr[-500:]}")


class PushService:
    def __init__(self) -> None:
        ensure_installed()
        self.process = subprocess.Popen(["node", str(NODE_DIR / "wpt_server.js"), "0", "127.0.0.1"],
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.process.stdout.readline()
        if not line.startswith("Server running on port "):
            stop_process(self.process)
            raise RuntimeError(f"web-push-testing did not start: {line!r} {self.process.stderr.read()[-500:]}")
        self.port = int(line.rsplit(" ", 1)[1])
        self.origin = f"http://127.0.0.1:{self.port}"
        self.http = urllib3.PoolManager(retries=False, timeout=urllib3.Timeout(connect=2, read=10))

    def _post(self, path: str, body: dict | None = None) -> tuple[int, object]:
        response = self.http.request("POST", self.origin + path, json=body)
        data = response.data
        return response.status, (json.loads(data) if data[:1] in (b"{", b"[") else data)

    def subscribe(self, application_server_key: str) -> dict:
        """A new browser: {endpoint, keys: {p256dh, auth}, clientHash}."""
        status, body = self._post("/subscribe", {"applicationServerKey": application_server_key,
                                                 "userVisibleOnly": "true"})
        assert status == 200, (status, body)
        return body["data"]

    def messages(self, client_hash: str) -> list[str]:
        """The decrypted payloads this browser received."""
        status, body = self._post("/get-notifications", {"clientHash": client_hash})
        assert status == 200, (status, body)
        return body["data"]["messages"]

    def requests(self, client_hash: str) -> list[dict]:
        """Every notify request for this browser: headers, bodyLength, status."""
        return self._post("/get-requests", {"clientHash": client_hash})[1]["data"]["requests"]

    def expire(self, client_hash: str) -> None:
        assert self._post(f"/expire-subscription/{client_hash}")[0] == 200

    def inject(self, client_hash: str, status: int, headers: dict | None = None, times: int = 1) -> None:
        assert self._post("/inject", {"clientHash": client_hash, "status": status, "headers": headers or {},
                                      "times": times})[0] == 200

    def stop(self) -> None:
        stop_process(self.process)
        self.http.clear()
