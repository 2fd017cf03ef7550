"""Publishing at its limits (issue 26, items 1 and 2): maximum-size notifications fanned out
through the real Pushpin all arrive; the setting Pushpin 1.36 really reads; a hung Pushpin delays
only itself; what waits to be published is bounded in bytes."""
from __future__ import annotations

import http.server as http_server
import json
import socket
import threading
import time
import uuid

import psycopg
import pytest
from pushpin_helpers import data
from test_stream_pushpin import http, open_held

from notifications_api.live import publisher as publisher_module
from notifications_api.live.publisher import Publisher, chunk_bodies, post_json

# The largest notification the contract allows (API.md §7): every field at its maximum, the
# payload full of quotes (each escaped once in the event's JSON and again in the publish body)
# and the message of two-byte characters.
PAYLOAD = {"q": 'x"' * 5450}
BIGGEST = {"notification_type": "release", "title": "T" * 200, "message": "é" * 2000,
           "action_url": "https://example.test/" + "a" * 2000, "target_type": "t" * 100,
           "target_id": "i" * 255, "payload": PAYLOAD}


def _make_users(database, count: int) -> list[str]:
    ids = sorted(str(uuid.uuid4()) for _ in range(count))
    with psycopg.connect(database.admin) as conn:
        conn.execute("INSERT INTO activity.users (user_id, email, is_active) "
                     "SELECT u, u::text || '@example.test', true FROM unnest(%s::uuid[]) AS u", (ids,))
    return ids


@pytest.mark.e2e
def test_a_fan_out_of_maximum_size_notifications_reaches_every_stream(
        pushpin, api, streams, bearer, service, database):
    assert len(json.dumps(PAYLOAD, separators=(",", ":"))) <= 16384
    users = _make_users(database, 500)
    first_stream, first = open_held(streams, pushpin, api, bearer, users[0])
    last_stream, last = open_held(streams, pushpin, api, bearer, users[-1])
    publisher = api.publisher
    time.sleep(0.6)  # streams other tests opened have had their counts re-sent (views/stream.py)
    published, dropped = publisher.published, publisher.dropped
    status, body = http(api.url, "POST", "/api/v1/notifications", service, {"user_ids": users, **BIGGEST})
    assert status == 201 and body["created_count"] == 500, body.get("errors")
    for stream in (first_stream, last_stream):
        event = stream.wait_for(lambda e: e.get("event") == "notification", 10)
        assert data(event)["payload"] == PAYLOAD and data(event)["message"] == BIGGEST["message"]
    deadline = time.monotonic() + 10
    while publisher.published - published < 500 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert publisher.dropped == dropped  # nothing cut by Pushpin's body limit
    assert publisher.published - published == 500


@pytest.mark.e2e
def test_pushpin_1_36_reads_push_in_max_body_size(pushpin):
    """devpushpin (like deploy/) sets push_in_max_body_size=10000000: a 2 MB body is accepted,
    which the default (1 000 000) and push_in_http_max_body_size alone would refuse."""
    item = {"channel": "nobody", "formats": {"http-stream": {"content": "x" * 1000}}}
    body = json.dumps({"items": [item] * 1900}).encode()
    assert len(body) > 1_900_000
    assert post_json(pushpin.publish_url, body, timeout=10) == 200


def test_publish_bodies_stay_under_the_chunk_size_and_keep_each_users_order():
    events = [[f"event: notification\ndata: {{\"n\":{n},\"x\":\"{'y' * 3000}\"}}\n\n" for n in range(5)]
              + ["event: counts\n\n"] for _ in range(40)]
    users = [f"user-{n}" for n in range(40)]
    bodies = chunk_bodies(events, users, limit=20_000)
    assert len(bodies) > 5
    seen: dict[str, str] = {}
    for body, count in bodies:
        assert len(body) <= 20_000
        items = json.loads(body)["items"]
        assert len(items) == count
        for item in items:
            user = item["channel"].removeprefix("notifications.user.")
            seen[user] = seen.get(user, "") + item["formats"]["http-stream"]["content"]
    assert seen == {user: "".join(user_events) for user, user_events in zip(users, events)}


class _Recorder(http_server.BaseHTTPRequestHandler):
    received: list[tuple[float, int]] = []

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.received.append((time.monotonic(), len(json.loads(body)["items"])))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def healthy_and_hung():
    """A Pushpin stand-in that answers, and one that accepts connections but never answers."""
    healthy = http_server.ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    _Recorder.received = []
    threading.Thread(target=healthy.serve_forever, daemon=True).start()
    hung = socket.socket()
    hung.bind(("127.0.0.1", 0))
    hung.listen(100)  # connections complete in the backlog; nobody ever reads or answers
    yield (f"http://127.0.0.1:{healthy.server_port}/publish/",
           f"http://127.0.0.1:{hung.getsockname()[1]}/publish/")
    healthy.shutdown()
    healthy.server_close()
    hung.close()


def test_a_hung_pushpin_delays_only_its_own_streams(monkeypatch, healthy_and_hung):
    healthy_url, hung_url = healthy_and_hung
    monkeypatch.setattr(publisher_module, "CHUNK_BYTES", 2_000, raising=False)
    publisher = Publisher((hung_url, healthy_url), database=None)
    rows = [{"user_id": uuid.uuid4(), "unread_count": n, "unseen_count": n, "version": n} for n in range(90)]
    started = time.monotonic()
    publisher.publish_counts(rows)
    deadline = started + 5
    while sum(count for _, count in _Recorder.received) < 90 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert sum(count for _, count in _Recorder.received) == 90
    assert len(_Recorder.received) >= 3  # several bodies, each one a 1 s timeout on the hung one
    assert _Recorder.received[-1][0] - started < 0.5  # none of them waited for the hung Pushpin
    publisher.close(timeout=0.1)


def test_the_queue_is_bounded_in_bytes_and_drops_rather_than_grows(monkeypatch):
    monkeypatch.setattr(publisher_module, "QUEUE_BYTES", 100_000, raising=False)
    publisher = Publisher(("http://127.0.0.1:9/publish/",), database=None)
    publisher._ensure_thread = lambda: None  # nothing drains: the queue stays full
    notifications = [{"user_id": f"user-{n}", "payload": {"q": "x" * 20_000}} for n in range(10)]
    publisher.changed((), notifications)
    assert len(publisher._queue) == 4 and publisher.dropped == 6
    publisher.changed(["one-more"])  # small entries still fit in what is left
    assert len(publisher._queue) == 5 and publisher.dropped == 6


@pytest.mark.e2e
def test_a_change_committed_while_the_stream_is_set_up_still_reaches_it(
        monkeypatch, pushpin, api, streams, bearer, service, make_user):
    """Item 5: the view reads the counts, then answers Grip-Hold; a create committed and
    published in between (before Pushpin has subscribed the channel) must still reach the stream."""
    from notifications_api.views import stream as stream_view
    user = make_user()
    hold_headers = stream_view.grip.hold_headers
    interleaved = []

    def create_then_hold(user_id):
        if user_id == user and not interleaved:
            published = api.publisher.published
            status, body = http(api.url, "POST", "/api/v1/notifications", service,
                                {"user_id": user, "notification_type": "comment", "title": "meanwhile"})
            assert status == 201, body
            deadline = time.monotonic() + 5
            while api.publisher.published == published and time.monotonic() < deadline:
                time.sleep(0.01)
            interleaved.append(api.publisher.published > published)  # published, to nobody yet
        return hold_headers(user_id)
    monkeypatch.setattr(stream_view.grip, "hold_headers", create_then_hold)
    client, first = open_held(streams, pushpin, api, bearer, user)
    assert interleaved == [True]
    assert data(first) == {"unread_count": 0, "unseen_count": 0}
    newer = client.wait_for(lambda e: e.get("event") == "counts" and int(e["id"]) > int(first["id"]), 3)
    assert data(newer) == {"unread_count": 1, "unseen_count": 1}


def test_an_items_measured_size_is_its_encoded_size():
    from notifications_api.live.publisher import _encode_item, _items
    events = ['event: notification\\ndata: {"t":"é\\"\\u0001"}\\n\\n', "x" * 50, "ü" * 30, "\x00\n\t"]
    [whole] = _items("u", events, limit=10_000)
    assert whole == _encode_item("u", "".join(events))
    parts = _items("u", events, limit=len(_encode_item("u", events[0] + events[1])))
    assert parts[0] == _encode_item("u", events[0] + events[1]) and len(parts) == 2
