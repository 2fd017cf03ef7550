"""Live updates through a real Pushpin: held streams get each user's own events within 1 s of
the commit; a fan-out publishes in batched calls; Pushpin down never fails a request; a forged
Grip-Sig is never held."""
from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.request
import uuid

import psycopg
import pytest
from pushpin_helpers import STREAM, start_behind_pushpin
from pushpin_helpers import data

pytestmark = pytest.mark.e2e

WITHIN = 1.0  # API.md: within 1 s of the commit


def http(base_url: str, method: str, path: str, headers: dict[str, str], body=None):
    request = urllib.request.Request(base_url + path, method=method, headers=dict(headers),
                                     data=None if body is None else json.dumps(body).encode())
    if body is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            raw = response.read()
            return response.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def ticket_for(api, bearer, user_id: str) -> str:
    status, body = http(api.url, "POST", "/api/v1/notifications/stream/ticket", bearer(user_id))
    assert status == 201, body
    return body["ticket"]


def open_held(streams, pushpin, api, bearer, user_id: str):
    """A stream through Pushpin authenticated by a ticket, its first (counts) event read."""
    client = streams(pushpin.url, f"{STREAM}?ticket={ticket_for(api, bearer, user_id)}")
    assert client.response.status == 200
    assert client.response.getheader("Content-Type").startswith("text/event-stream")
    first = client.wait_for(lambda e: True, 5)
    assert first["event"] == "counts"
    # the counts re-sent once Pushpin surely holds the stream (views/stream.py): waited for, so
    # that what a test publishes next is all that arrives
    client.wait_for(lambda e: e is not first and e.get("event") == "counts", 3)
    return client, first


def counts_after(client, version: int):
    return lambda e: e.get("event") == "counts" and int(e["id"]) > version


def test_own_events_within_a_second_of_each_write_and_never_another_users(
        pushpin, api, streams, bearer, service, make_user):
    ana, ben = make_user(), make_user()
    stream_a, first_a = open_held(streams, pushpin, api, bearer, ana)
    stream_b, first_b = open_held(streams, pushpin, api, bearer, ben)
    assert data(first_a) == {"unread_count": 0, "unseen_count": 0}
    seen_version = int(first_a["id"])

    def wait_counts(write_done: float):
        nonlocal seen_version
        event = stream_a.wait_for(counts_after(stream_a, seen_version), WITHIN)
        assert time.monotonic() - write_done <= WITHIN
        seen_version = int(event["id"])
        return data(event)

    def create(title: str) -> tuple[dict, float]:
        status, body = http(api.url, "POST", "/api/v1/notifications", service,
                            {"user_id": ana, "notification_type": "comment", "title": title})
        assert status == 201, body
        return body["results"][0]["notification"], time.monotonic()

    # create: the notification itself, then the counts; ids = the user's version
    created, done = create("Ana, look")
    event = stream_a.wait_for(lambda e: e.get("event") == "notification", WITHIN)
    assert time.monotonic() - done <= WITHIN
    assert data(event)["notification_id"] == created["notification_id"]
    assert data(event)["title"] == "Ana, look"
    assert wait_counts(done) == {"unread_count": 1, "unseen_count": 1}

    n = "/api/v1/notifications"
    steps = [  # (method, path, body, counts after it)
        ("PUT", f"{n}/{created['notification_id']}/read", None, {"unread_count": 0, "unseen_count": 0}),
        # (marking unread: inbox v1 has no seen state, so unseen follows unread; v2 keeps it seen)
        ("DELETE", f"{n}/{created['notification_id']}/read", None, {"unread_count": 1}),
        ("POST", f"{n}/mark-read", {"all": True}, {"unread_count": 0, "unseen_count": 0}),
    ]
    for method, path, body, expected in steps:
        status, answer = http(api.url, method, path, bearer(ana), body)
        done = time.monotonic()
        assert status == 200, (path, answer)
        counts = wait_counts(done)
        assert {key: counts[key] for key in expected} == expected, path
    second, _ = create("another")
    assert wait_counts(done) == {"unread_count": 1, "unseen_count": 1}
    status, _ = http(api.url, "DELETE", f"{n}/{second['notification_id']}", bearer(ana))  # archive
    done = time.monotonic()
    assert status == 204
    assert wait_counts(done) == {"unread_count": 0, "unseen_count": 0}

    # Ben's stream saw only his first event: nothing of Ana's ever reached it
    time.sleep(0.3)
    assert stream_b.events == [first_b, first_b]  # the first counts, and the same re-sent once held
    assert not stream_b.ended


def test_the_first_event_is_the_current_counts_with_the_version_as_id(
        pushpin, api, streams, bearer, service, make_user):
    user = make_user()
    for number in range(3):
        http(api.url, "POST", "/api/v1/notifications", service,
             {"user_id": user, "notification_type": "comment", "title": f"n{number}"})
    _, first = open_held(streams, pushpin, api, bearer, user)
    assert data(first) == {"unread_count": 3, "unseen_count": 3}
    assert int(first["id"]) >= 3
    # a JWT in the Authorization header works too (for clients that can send headers)
    client = streams(pushpin.url, STREAM, bearer(user))
    assert client.wait_for(lambda e: True, 5) == first
    assert client.wait_for(lambda e: len(client.events) > 1, 3) == first  # re-sent once held


def _make_users(database, count: int) -> list[str]:
    ids = [str(uuid.uuid4()) for _ in range(count)]
    with psycopg.connect(database.admin) as conn:
        conn.execute("INSERT INTO activity.users (user_id, email, is_active) "
                     "SELECT u, u::text || '@example.test', true FROM unnest(%s::uuid[]) AS u", (ids,))
    return ids


def test_a_fan_out_to_1000_users_publishes_in_a_few_batched_calls(
        pushpin, api, streams, bearer, service, database):
    users = _make_users(database, 1000)
    watched, first = open_held(streams, pushpin, api, bearer, users[-1])
    publisher = api.publisher
    time.sleep(0.6)  # streams other tests opened have had their counts re-sent (views/stream.py)
    posts, published = publisher.posts, publisher.published
    status, body = http(api.url, "POST", "/api/v1/notifications", service,
                        {"user_ids": users, "notification_type": "release", "title": "v2 is out"})
    assert status == 201 and body["created_count"] == 1000
    event = watched.wait_for(lambda e: e.get("event") == "notification", 5)
    assert data(event)["title"] == "v2 is out"
    assert data(watched.wait_for(lambda e: e.get("event") == "counts" and int(e["id"]) > int(first["id"]), 5)) == {
        "unread_count": 1, "unseen_count": 1}
    deadline = time.monotonic() + 5
    while publisher.published - published < 1000 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert publisher.published - published == 1000  # one item (both events) per user
    assert publisher.posts - posts <= 4, publisher.posts - posts  # batched: not one call per user


def _dropped_metric(api) -> float:
    with urllib.request.urlopen(api.url + "/metrics", timeout=5) as response:
        text = response.read().decode()
    match = re.search(r"^notifications_api_stream_publish_dropped_total (\S+)$", text, re.M)
    assert match, "the drop counter is not exported"
    return float(match.group(1))


def test_pushpin_down_requests_still_succeed_and_the_drop_counter_rises(
        tmp_path, stream_config, make_user, bearer, service):
    user = make_user()
    pushpin, api = start_behind_pushpin(tmp_path, stream_config, user)
    try:
        pushpin.stop()
        before_metric, before = _dropped_metric(api), api.publisher.dropped
        for number in range(3):
            status, body = http(api.url, "POST", "/api/v1/notifications", service,
                                {"user_id": user, "notification_type": "comment", "title": f"n{number}"})
            assert status == 201, body
        status, body = http(api.url, "POST", "/api/v1/notifications/mark-read", bearer(user), {"all": True})
        assert status == 200 and body["unread_count"] == 0, body
        # Every write succeeded; what it would have published is counted as dropped (items that
        # share a batch count once: several writes of one user within ~5 ms are one publish).
        deadline = time.monotonic() + 5
        while api.publisher.dropped - before < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        dropped = api.publisher.dropped - before
        assert dropped >= 2  # at least the creations' batch(es) and the bulk's
        assert _dropped_metric(api) - before_metric >= dropped  # (the metric is the process's)
    finally:
        pushpin.stop()
        api.stop()


def test_preflight_checks_every_publish_url(pushpin):
    from notifications_api.ops.devpushpin import free_port
    from notifications_api.ops.preflight import _publish_check
    assert _publish_check({"GRIP_PUBLISH_URL": (pushpin.publish_url,)}).ok
    dead = f"http://127.0.0.1:{free_port()}/publish/"
    check = _publish_check({"GRIP_PUBLISH_URL": (pushpin.publish_url, dead)})
    assert not check.ok and check.item == "Pushpin publish"
    assert dead in check.reason and pushpin.publish_url not in check.reason


def test_a_ticket_reaches_no_log_of_pushpin_or_the_app(pushpin, api, streams, bearer, make_user, capsys):
    ticket = ticket_for(api, bearer, make_user())
    client = streams(pushpin.url, f"{STREAM}?ticket={ticket}")
    assert client.wait_for(lambda e: True, 5)["event"] == "counts"
    assert ticket not in pushpin.log()
    app_lines = [line for line in capsys.readouterr().out.splitlines() if '"logger": "werkzeug"' not in line]
    assert not [line for line in app_lines if ticket in line]  # (werkzeug's dev server is the test's own)
