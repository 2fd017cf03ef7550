"""`make bench-stream`: live updates through a real Pushpin in front of gunicorn (docs/PERFORMANCE.md).

Measures (1) the publish overhead on a create: create latency with publishing off, with Pushpin
up, and with Pushpin down; (2) events per second through one Pushpin instance to N open streams
(published straight to Pushpin, so this is Pushpin's delivery rate, plus one fan-out create through
the API to all N); (3) the latency from commit to event at the client, p50/p99 (the event's
`created_at` is the transaction's time on the same clock, so this slightly overstates it).
Needs the pushpin package; the database as in bench/run.py.
"""
from __future__ import annotations

import argparse
import json
import os
import secrets
import selectors
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run as bench  # noqa: E402  (bench/run.py: database, gunicorn and helpers)

from notifications_api.ops import devpushpin  # noqa: E402
from notifications_api.web.auth import issue_token  # noqa: E402

STREAM = "/api/v1/notifications/stream"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


class Streams:
    """Many raw SSE connections read by one selector loop; counts events per connection."""

    def __init__(self, host: str, port: int, tokens: list[str], step: int = 50):
        self.selector = selectors.DefaultSelector()
        self.buffers: dict[socket.socket, bytes] = {}
        self.events: list[tuple[float, str, dict]] = []  # (arrival, event name, data)
        self.count = 0
        # opened `step` at a time, each group's first events awaited: a thousand stream requests
        # at once would queue behind gunicorn's threads and time out in the proxy
        for start in range(0, len(tokens), step):
            for token in tokens[start:start + step]:
                sock = socket.create_connection((host, port), timeout=10)
                sock.sendall(f"GET {STREAM} HTTP/1.1\r\nHost: {host}\r\nAccept: text/event-stream\r\n"
                             f"Authorization: Bearer {token}\r\n\r\n".encode())
                sock.setblocking(False)
                self.selector.register(sock, selectors.EVENT_READ)
                self.buffers[sock] = b""
            self.wait_for_count(min(start + step, len(tokens)), 30)

    @property
    def open(self) -> int:
        return len(self.selector.get_map())

    def pump(self, seconds: float, keep: bool = False) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            for key, _ in self.selector.select(timeout=0.05):
                sock = key.fileobj
                try:
                    chunk = sock.recv(65536)
                except BlockingIOError:
                    continue
                if not chunk:
                    self.selector.unregister(sock)
                    continue
                now = time.time()
                buffer = self.buffers[sock] + chunk
                *blocks, self.buffers[sock] = buffer.split(b"\n\n")
                for block in blocks:
                    if b"event: " in block:
                        self.count += 1
                        if keep:
                            lines = dict(line.split(": ", 1) for line in block.decode(errors="replace")
                                         .splitlines() if ": " in line)
                            if "data" in lines and lines.get("event") == "notification":
                                self.events.append((now, lines["event"], json.loads(lines["data"])))

    def wait_for_count(self, target: int, timeout: float, idle: float = 5.0) -> float:
        """Pump until `target` events in all, `timeout` passes, or nothing arrives for `idle` seconds;
        the seconds until the last event counted."""
        started = last = time.monotonic()
        seen = self.count
        while self.count < target and time.monotonic() - started < timeout and time.monotonic() - last < idle:
            self.pump(0.05)
            if self.count != seen:
                seen, last = self.count, time.monotonic()
        return last - started

    def close(self) -> None:
        for sock in list(self.buffers):
            sock.close()


def session_rss_kib(pid: int) -> int:
    """Resident memory of a process session (Pushpin's runner and its condure, proxy, handler)."""
    out = subprocess.run(["ps", "-s", str(pid), "-o", "rss="], capture_output=True, text=True).stdout
    return sum(int(value) for value in out.split())


def create(client: bench.Client, service: str, body: dict) -> float:
    started = time.perf_counter()
    status, _, _ = client.request("POST", "/api/v1/notifications",
                                  {"X-Service-Token": service, "Content-Type": "application/json"},
                                  json.dumps(body))
    assert status == 201, status
    return (time.perf_counter() - started) * 1000


def create_latency(url: str, service: str, user: str, count: int) -> dict:
    client = bench.Client(url)
    for _ in range(20):  # warm-up
        create(client, service, {"user_id": user, "notification_type": "bench", "title": "warm"})
    samples = [create(client, service, {"user_id": user, "notification_type": "bench", "title": "t"})
               for _ in range(count)]
    return {"p50_ms": round(percentile(samples, 0.5), 2), "p99_ms": round(percentile(samples, 0.99), 2)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--creates", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=20, help="publishes per stream for events/s")
    args = parser.parse_args(argv)
    if not devpushpin.available():
        raise SystemExit("pushpin is not installed (apt-get install pushpin)")
    work = Path(tempfile.mkdtemp(prefix="bench-stream-"))
    db = bench.open_database(args)
    servers, pushpin = [], None
    report: dict = {"machine": bench.machine(), "streams": args.streams}
    try:
        users = [str(uuid.uuid4()) for _ in range(args.streams)]
        import psycopg
        with psycopg.connect(db.admin) as conn:
            conn.execute("INSERT INTO activity.users (user_id, email, is_active) "
                         "SELECT u, u::text || '@bench.test', true FROM unnest(%s::uuid[]) u", (users,))
        keys = {"jwt": secrets.token_urlsafe(40), "service": secrets.token_urlsafe(40),
                "metrics": secrets.token_urlsafe(40)}
        sig_key = secrets.token_urlsafe(40)
        pushpin = devpushpin.Pushpin(work / "pushpin", sig_key, maxconn=max(5000, 4 * args.streams))
        port, plain_port = bench.free_port(), bench.free_port()
        env = bench.server_env(db, port, keys, {"GRIP_SIG_KEY": sig_key,
                                                "GRIP_PUBLISH_URL": pushpin.publish_url})
        servers.append(bench.start_server("notifications_api.wsgi:app", env, port, [], work))
        servers.append(bench.start_server("notifications_api.wsgi:app", bench.server_env(
            db, plain_port, keys, {}), plain_port, [], work))
        pushpin.start(f"127.0.0.1:{port}")
        time.sleep(1.0)  # the proxy, handler and zurl connect over ZeroMQ
        config = {"JWT_SECRET": keys["jwt"], "JWT_ALGORITHM": "HS256"}
        tokens = [issue_token(config, user) for user in users]

        bench.say("publish overhead on a create ...")
        report["create_publishing_off"] = create_latency(servers[1].url, keys["service"], users[0],
                                                         args.creates)
        report["create_pushpin_up"] = create_latency(servers[0].url, keys["service"], users[0], args.creates)

        bench.say(f"{args.streams} streams ...")
        rss_before = session_rss_kib(pushpin.processes[-1].pid)
        streams = Streams("127.0.0.1", pushpin.http_port, tokens)
        report["streams_open"] = opened = streams.open
        rss_after = session_rss_kib(pushpin.processes[-1].pid)
        report["pushpin_rss_mib"] = round(rss_after / 1024, 1)
        report["pushpin_kib_per_stream"] = round((rss_after - rss_before) / max(opened, 1), 1)
        base = streams.count
        items = [{"channel": f"notifications.user.{u}",
                  "formats": {"http-stream": {"content": "event: counts\ndata: {}\n\n"}}} for u in users]
        started = time.monotonic()
        for _ in range(args.rounds):
            for chunk in range(0, len(items), 500):
                devpushpin_post(pushpin.publish_url, items[chunk:chunk + 500])
        published = time.monotonic() - started
        seconds = max(streams.wait_for_count(base + args.rounds * opened, 120), published)
        delivered = streams.count - base
        report["pushpin_events_per_second"] = round(delivered / max(seconds, 1e-9))
        report["pushpin_events_delivered"] = delivered

        bench.say("fan-out create to every stream ...")
        base = streams.count
        client = bench.Client(servers[0].url)
        started = time.monotonic()
        create(client, keys["service"], {"user_ids": users, "notification_type": "bench", "title": "fan"})
        created = time.monotonic()
        waited = streams.wait_for_count(base + 2 * opened, 60)  # a notification and a counts event each
        report["fanout_last_event_seconds"] = round(created - started + waited, 3)
        report["fanout_events_delivered"] = streams.count - base

        bench.say("commit -> client latency ...")
        latencies = []
        for _ in range(args.creates):
            streams.events.clear()
            create(client, keys["service"], {"user_id": users[0], "notification_type": "bench", "title": "l"})
            deadline = time.monotonic() + 5
            while not streams.events and time.monotonic() < deadline:
                streams.pump(0.01, keep=True)
            if streams.events:
                arrival, _, data = streams.events[0]
                committed = datetime.fromisoformat(data["created_at"].replace("Z", "+00:00")).timestamp()
                latencies.append((arrival - committed) * 1000)
        report["commit_to_client_ms"] = {"p50": round(percentile(latencies, 0.5), 1),
                                         "p99": round(percentile(latencies, 0.99), 1),
                                         "samples": len(latencies)}
        streams.close()

        bench.say("publish overhead with Pushpin down ...")
        pushpin.stop()
        report["create_pushpin_down"] = create_latency(servers[0].url, keys["service"], users[0],
                                                       args.creates)
    finally:
        if pushpin is not None:
            pushpin.stop()
        for server in servers:
            bench.stop_server(server)
        bench.drop_database(db)
    print(json.dumps(report, indent=2))
    return 0


def devpushpin_post(url: str, items: list[dict]) -> None:
    from notifications_api.live.publisher import post_json
    status = post_json(url, json.dumps({"items": items}).encode(), timeout=10)
    assert status < 300, status


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
