"""Pushpin (with zurl and condure, from the Debian packages) as a child process for development
(`make run`), the tests and the benchmark: its own run/log directories, config and ports."""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

INTERNAL_CONF = Path("/usr/lib/pushpin/internal.conf")
PUBLISH_URL_FILE = "publish-url"  # written while it runs, so that other commands find it
BINARIES = ("pushpin", "zurl", "condure")


def available() -> bool:
    """The Debian packages are installed (`apt-get install pushpin` brings zurl and condure)."""
    return all(shutil.which(name) for name in BINARIES) and INTERNAL_CONF.exists()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


PUSHPIN_CONF = """\
[global]
include={rundir}/internal.conf
rundir={rundir}
ipc_prefix=pp-
port_offset=0
stats_connection_ttl=120

[runner]
services=condure,pushpin-proxy,pushpin-handler
http_port={host}:{http_port}
logdir={logdir}
log_level={log_level}
client_buffer_size=8192
client_maxconn={maxconn}
condure_bin=condure
zurl_bin=zurl

[proxy]
routesfile={rundir}/routes
debug=false
auto_cross_origin=false
accept_x_forwarded_protocol=false
set_x_forwarded_protocol=proto-only
x_forwarded_for=
x_forwarded_for_trusted=
orig_headers_need_mark=
accept_pushpin_route=false
log_from=false
log_user_agent=false
sig_iss=pushpin
sig_key={sig_key}
upstream_key=
updates_check=off

[handler]
push_in_spec=tcp://127.0.0.1:{push_in}
push_in_sub_specs=tcp://127.0.0.1:{push_in_sub}
push_in_sub_connect=false
push_in_http_addr=127.0.0.1
push_in_http_port={publish_port}
# Pushpin 1.36 (Debian's) reads only push_in_max_headers_size and push_in_max_body_size; later
# releases read the push_in_http_ names (fastly/pushpin#48086). Both are set (unknown keys are ignored).
push_in_http_max_headers_size=10000
push_in_http_max_body_size=10000000
push_in_max_headers_size=10000
push_in_max_body_size=10000000
stats_spec=ipc://{rundir}/pp-stats
command_spec=tcp://127.0.0.1:{command}
message_rate=100000
message_hwm=100000
message_wait=5000
id_cache_ttl=60
connection_subscription_max=20
subscription_linger=60
stats_subscription_ttl=60
stats_report_interval=10
stats_format=tnetstring
"""

# zurl (Pushpin's HTTP client towards the origin). Its packaged config denies loopback
# upstreams (deny=127.*,...): the test's origin is on loopback, so the list is cleared.
ZURL_CONF = """\
[General]
instance_id=zurl-test
in_spec=ipc://{rundir}/zurl-in
in_stream_spec=ipc://{rundir}/zurl-in-stream
out_spec=ipc://{rundir}/zurl-out
in_req_spec=
defpolicy=allow
allow=
deny=
max_open_requests=2000
buffer_size=200000
timeout=600
in_hwm=1000
out_hwm=1000
"""


class Pushpin:
    """pushpin + zurl in `directory`, routing every request to `origin` (host:port)."""

    def __init__(self, directory: Path, sig_key: str, maxconn: int = 5000, http_port: int = 0,
                 log_level: int = 1, host: str = "127.0.0.1"):
        self.directory = directory
        self.host = host  # the client port's address (Pushpin's default is every interface)
        # 1: warnings only. 2 also logs each request line, query string (a stream ticket) included.
        self.log_level = log_level
        self.origin = ""
        self.sig_key = sig_key
        self.maxconn = maxconn
        self.http_port = http_port or free_port()
        self.publish_port = free_port()
        self.ports = {"push_in": free_port(), "push_in_sub": free_port(), "command": free_port()}
        self.processes: list[subprocess.Popen] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def publish_url(self) -> str:
        return f"http://127.0.0.1:{self.publish_port}/publish/"

    def _write_config(self) -> tuple[Path, Path]:
        rundir, logdir = self.directory / "run", self.directory / "log"
        rundir.mkdir(parents=True, exist_ok=True)
        logdir.mkdir(parents=True, exist_ok=True)
        # The packaged internal.conf points the proxy at the system zurl's sockets: ours instead.
        internal = INTERNAL_CONF.read_text().replace("ipc:///var/run/zurl/zurl-", f"ipc://{rundir}/zurl-")
        (rundir / "internal.conf").write_text(internal)
        (rundir / "routes").write_text(f"* {self.origin}\n")
        conf = rundir / "pushpin.conf"
        conf.write_text(PUSHPIN_CONF.format(rundir=rundir, logdir=logdir, http_port=self.http_port,
                                            publish_port=self.publish_port, sig_key=self.sig_key,
                                            host=f"[{self.host}]" if ":" in self.host else self.host,
                                            maxconn=self.maxconn, log_level=self.log_level, **self.ports))
        zurl_conf = rundir / "zurl.conf"
        zurl_conf.write_text(ZURL_CONF.format(rundir=rundir))
        return conf, zurl_conf

    def start(self, origin: str, ready=None) -> None:
        """Start in front of `origin` (host:port); `ready()` -> bool says when a held stream works
        (the proxy, handler and zurl find each other over ZeroMQ a moment after they listen)."""
        self.origin = origin
        conf, zurl_conf = self._write_config()
        logdir = self.directory / "log"
        with (logdir / "zurl.out").open("ab") as out:
            self.processes.append(subprocess.Popen(["zurl", f"--config={zurl_conf}",
                                                    f"--loglevel={self.log_level}"], stdout=out,
                                                   stderr=subprocess.STDOUT, cwd=self.directory,
                                                   start_new_session=True))
        with (logdir / "pushpin.out").open("ab") as out:
            self.processes.append(subprocess.Popen(
                ["pushpin", f"--config={conf}", "--merge-output"], stdout=out, stderr=subprocess.STDOUT,
                cwd=self.directory, start_new_session=True))
        deadline = time.monotonic() + 20
        while not (self._listening(self.http_port) and self._listening(self.publish_port)):
            for process in self.processes:
                if process.poll() is not None:
                    raise PushpinError(f"pushpin/zurl exited:\n{self.log()}")
            if time.monotonic() > deadline:
                raise PushpinError(f"pushpin did not start:\n{self.log()}")
            time.sleep(0.05)
        while ready is not None and not ready():
            if time.monotonic() > deadline:
                raise PushpinError(f"pushpin did not hold a stream:\n{self.log()}")
            time.sleep(0.1)
        (self.directory / PUBLISH_URL_FILE).write_text(self.publish_url + "\n")

    @staticmethod
    def _listening(port: int) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return True
        except OSError:
            return False

    def log(self) -> str:
        logdir = self.directory / "log"
        return "\n".join(f"== {p.name}\n{p.read_text(errors='replace')}"
                         for p in sorted(logdir.glob("*")) if p.is_file())

    def stop(self) -> None:
        (self.directory / PUBLISH_URL_FILE).unlink(missing_ok=True)
        for process in reversed(self.processes):
            if process.poll() is None:
                try:  # the runner's children (condure, proxy, handler) are in its session
                    os.killpg(process.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
                try:
                    process.wait(5)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait(5)
        self.processes = []


def running_publish_url(directory: Path) -> str | None:
    """The publish URL of the Pushpin started in `directory` (by another process: `make run`) while it
    listens there, else None."""
    try:
        url = (directory / PUBLISH_URL_FILE).read_text().strip()
        port = int(url.rsplit(":", 1)[1].split("/", 1)[0])
    except (OSError, IndexError, ValueError):
        return None
    return url if Pushpin._listening(port) else None


class PushpinError(Exception):
    """Pushpin did not start (the message holds its log)."""
