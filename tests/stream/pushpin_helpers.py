"""The test side of Pushpin: the app in-process behind a real Pushpin, and a small SSE client."""
from __future__ import annotations

import http.client
import json
import socket
import threading
import time

from machine_tools import skip_unless_ci
from werkzeug.serving import make_server

from notifications_api import create_app
from notifications_api.web.auth import issue_token
from notifications_api.ops.devpushpin import Pushpin, available


def require_pushpin() -> None:
    if not available():
        skip_unless_ci("pushpin, zurl or condure is not installed (apt-get install -y pushpin)")


class SseClient:
    """A raw text/event-stream reader on its own thread: events as dicts, in arrival order."""

    def __init__(self, base_url: str, path: str, headers: dict[str, str] | None = None,
                 timeout: float = 10):
        host, port = base_url.removeprefix("http://").split(":")
        self.connection = http.client.HTTPConnection(host, int(port), timeout=timeout)
        self.connection.request("GET", path, headers={"Accept": "text/event-stream", **(headers or {})})
        self.response = self.connection.getresponse()
        self.events: list[dict] = []
        self.ended = False
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        fields: dict[str, str] = {}
        try:
            while True:
                raw = self.response.readline()
                if not raw:
                    break
                line = raw.decode().rstrip("\n")
                if line == "":
                    if fields:
                        with self._cond:
                            self.events.append(fields)
                            self._cond.notify_all()
                    fields = {}
                elif not line.startswith(":"):
                    name, _, value = line.partition(":")
                    fields[name] = value.removeprefix(" ")
        except (OSError, ValueError, AttributeError):  # AttributeError: closed under our feet
            pass
        finally:
            with self._cond:
                self.ended = True
                self._cond.notify_all()

    def wait_for(self, predicate, timeout: float) -> dict:
        """The first event (from the start) that satisfies predicate, within timeout seconds."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for event in self.events:
                    if predicate(event):
                        return event
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self.ended:
                    raise AssertionError(f"no matching event within {timeout}s; got {self.events}")
                self._cond.wait(remaining)

    def close(self) -> None:
        try:
            self.connection.sock and self.connection.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.connection.close()


def data(event: dict) -> dict:
    return json.loads(event["data"])


STREAM = "/api/v1/notifications/stream"


class AppServer:
    """An app under werkzeug's threaded server on a free port, in a thread of this process."""

    def __init__(self, app, server=None):
        self.app = app
        self.server = server or make_server("127.0.0.1", 0, app, threaded=True)
        self.port = self.server.server_port
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def publisher(self):
        return self.app.extensions["notifications_publisher"]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.publisher.close()
        self.app.extensions["notifications_db"].close()


def start_behind_pushpin(directory, config: dict, user_id: str) -> tuple[Pushpin, AppServer]:
    """A Pushpin, and an app publishing to it; ready once a stream through it is held."""
    require_pushpin()
    pushpin = Pushpin(directory, config["GRIP_SIG_KEY"])
    app = create_app({**config, "GRIP_PUBLISH_URL": (pushpin.publish_url,)})
    server = AppServer(app)
    token = issue_token(config, user_id)

    def held() -> bool:
        try:  # right after start, a request can hang until the proxy and handler have connected
            client = SseClient(pushpin.url, STREAM, {"Authorization": f"Bearer {token}"}, timeout=1)
        except OSError:
            return False
        try:
            return client.response.status == 200 and client.response.getheader("Transfer-Encoding") == "chunked"
        finally:
            client.close()
    try:
        pushpin.start(f"127.0.0.1:{server.port}", ready=held)
    except BaseException:
        pushpin.stop()
        server.stop()
        raise
    return pushpin, server
