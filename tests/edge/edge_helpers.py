"""Edge test helpers: free ports, a bare HTTP client, a Redis server and API servers as processes."""
from __future__ import annotations

import http.client
import json
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from machine_tools import stop_process

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(predicate, timeout: float, message: str, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(message)
        time.sleep(interval)


@dataclass
class Response:
    status: int
    headers: http.client.HTTPMessage
    body: bytes
    seconds: float

    def json(self):
        return json.loads(self.body)


def call(base_url: str, method: str, path: str, headers: dict[str, str] | None = None,
         body: bytes | None = None, timeout: float = 5.0) -> Response:
    """One HTTP request on a fresh connection; 4xx/5xx are returned, not raised."""
    host, port = base_url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=timeout)
    started = time.perf_counter()
    try:
        connection.request(method, path, body=body, headers=headers or {})
        reply = connection.getresponse()
        data = reply.read()
        return Response(reply.status, reply.headers, data, time.perf_counter() - started)
    finally:
        connection.close()


class RedisServer:
    """redis-server on a free loopback port, without persistence: a restart starts empty."""

    def __init__(self, directory: Path):
        self.port = free_port()
        self.directory = directory
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.directory), "--protected-mode", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(self.ping, 5, f"redis-server on port {self.port} did not start")

    def ping(self) -> bool:
        import redis
        client = redis.Redis(port=self.port, socket_timeout=0.5, socket_connect_timeout=0.5)
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False
        finally:
            client.close()

    def client(self):
        import redis
        return redis.Redis(port=self.port, socket_timeout=2, socket_connect_timeout=2)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)  # a frozen server cannot act on SIGTERM
            stop_process(self.process)
        self.process = None

    def freeze(self) -> None:
        self.process.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        self.process.send_signal(signal.SIGCONT)


class RedisSentinel:
    """One sentinel (`redis-server CONF --sentinel`, never the Debian service on 26379) on a free
    port, monitoring `primary` as `mymaster` with a quorum of one."""

    SERVICE = "mymaster"

    def __init__(self, directory: Path, primary: RedisServer):
        self.port = free_port()
        self.conf = directory / f"sentinel-{self.port}.conf"
        self.conf.write_text("\n".join([
            f"port {self.port}", "bind 127.0.0.1", "protected-mode no", f"dir {directory}",
            f"sentinel monitor {self.SERVICE} 127.0.0.1 {primary.port} 1",
            f"sentinel down-after-milliseconds {self.SERVICE} 1000", ""]))
        self.process = subprocess.Popen(["redis-server", str(self.conf), "--sentinel"],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(self._knows_the_primary, 5, f"the sentinel on port {self.port} did not start")

    @property
    def url(self) -> str:
        return f"redis+sentinel://127.0.0.1:{self.port}/{self.SERVICE}"

    def _knows_the_primary(self) -> bool:
        import redis
        client = redis.Redis(port=self.port, socket_timeout=0.5, socket_connect_timeout=0.5)
        try:
            return bool(client.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.SERVICE))
        except redis.RedisError:
            return False
        finally:
            client.close()

    def freeze(self) -> None:
        self.process.send_signal(signal.SIGSTOP)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
            stop_process(self.process)


SERVE = """
import sys
from werkzeug.serving import run_simple
from notifications_api import create_app
run_simple("127.0.0.1", int(sys.argv[1]), create_app(), threaded=True)
"""


class ApiServer:
    """The app under werkzeug's threaded server in its own process, configured by environment."""

    def __init__(self, env: dict[str, str], directory: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = directory / f"api-{self.port}.log"
        log = self.log_path.open("wb")
        self.process = subprocess.Popen([sys.executable, "-c", SERVE, str(self.port)], env=env,
                                        cwd=directory, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        wait_for(self._ready, 20, f"the API on port {self.port} did not start:\n{self.log()}")

    def _ready(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"the API server exited:\n{self.log()}")
        try:
            return call(self.url, "GET", "/health/live", timeout=1).status == 200
        except OSError:
            return False

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def get(self, path: str, headers: dict[str, str] | None = None) -> Response:
        return call(self.url, "GET", path, headers)

    def stop(self) -> None:
        stop_process(self.process)
