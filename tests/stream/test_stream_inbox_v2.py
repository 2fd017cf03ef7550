"""Live updates for what inbox v2 adds: bulk actions, retraction, snooze and wake, seen state, and
the clock (an expiry pushed by `stream-clock`), each within 1 s of the commit (the clock: of its tick)."""
from __future__ import annotations

import time

import pytest
from pushpin_helpers import data
from test_stream_pushpin import WITHIN, counts_after, http, open_held

pytestmark = pytest.mark.e2e


def test_bulk_and_retraction_within_a_second_and_never_another_users(
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

    # create: the notification itself, then the counts, ids = the user's version
    status, body = http(api.url, "POST", "/api/v1/notifications", service,
                        {"user_id": ana, "notification_type": "comment", "title": "Ana, look",
                         "dedupe_key": "stream-1"})
    done = time.monotonic()
    assert status == 201, body
    created = body["results"][0]["notification"]
    event = stream_a.wait_for(lambda e: e.get("event") == "notification", WITHIN)
    assert time.monotonic() - done <= WITHIN
    assert data(event)["notification_id"] == created["notification_id"]
    assert data(event)["title"] == "Ana, look"
    assert wait_counts(done) == {"unread_count": 1, "unseen_count": 1}

    # read
    status, _ = http(api.url, "PUT", f"/api/v1/notifications/{created['notification_id']}/read", bearer(ana))
    done = time.monotonic()
    assert status == 200
    assert wait_counts(done) == {"unread_count": 0, "unseen_count": 0}

    # bulk: mark it unread again
    status, body = http(api.url, "POST", "/api/v1/notifications/bulk", bearer(ana),
                        {"action": "unread", "all": True})
    done = time.monotonic()
    assert status == 200, body
    assert wait_counts(done) == {"unread_count": 1, "unseen_count": 0}

    # retraction by the producer
    status, body = http(api.url, "POST", "/api/v1/notifications/retract", service, {"dedupe_key": "stream-1"})
    done = time.monotonic()
    assert status == 200 and body == {"retracted_count": 1, "has_more": False}, body  # (no user_ids)
    assert wait_counts(done) == {"unread_count": 0, "unseen_count": 0}

    # Ben's stream saw only his first event: nothing of Ana's ever reached it
    time.sleep(0.3)
    assert stream_b.events == [first_b, first_b]  # the first counts, and the same re-sent once held
    assert not stream_b.ended


def test_the_clock_pushes_an_expiry(pushpin, api, streams, bearer, service, make_user):
    from datetime import datetime, timedelta, timezone

    from notifications_api.live import clock
    user = make_user()
    expires = (datetime.now(timezone.utc) + timedelta(seconds=2)).isoformat().replace("+00:00", "Z")
    http(api.url, "POST", "/api/v1/notifications", service,
         {"user_id": user, "notification_type": "comment", "title": "soon gone", "expires_at": expires})
    stream, first = open_held(streams, pushpin, api, bearer, user)
    assert data(first)["unread_count"] == 1
    time.sleep(2.2)
    database = api.app.extensions["notifications_db"]
    deadline = time.monotonic() + 5
    while clock.tick(database, api.publisher) == 0 and time.monotonic() < deadline:
        time.sleep(0.2)  # the row is due once its expires_at has passed on the server's clock
    # (the create's own events may reach the stream after its first event, with the same id)
    event = stream.wait_for(lambda e: e.get("event") == "counts" and int(e["id"]) > int(first["id"]), WITHIN)
    assert data(event) == {"unread_count": 0, "unseen_count": 0}


def test_every_other_write_publishes_the_new_counts(pushpin, api, streams, bearer, service, make_user):
    from datetime import datetime, timedelta, timezone
    user = make_user()
    made = [http(api.url, "POST", "/api/v1/notifications", service,
                 {"user_id": user, "notification_type": "comment", "title": f"n{n}"})[1]
            for n in range(2)]
    first_id, second_id = (body["results"][0]["notification"]["notification_id"] for body in made)
    stream, first = open_held(streams, pushpin, api, bearer, user)
    assert data(first) == {"unread_count": 2, "unseen_count": 2}
    version = int(first["id"])
    later = (datetime.now(timezone.utc) + timedelta(minutes=5)).isoformat().replace("+00:00", "Z")
    n = "/api/v1/notifications"
    steps = [  # (method, path, body, counts after it)
        ("POST", f"{n}/bulk", {"action": "seen", "all": True}, {"unread_count": 2, "unseen_count": 0}),
        ("POST", f"{n}/mark-read", {"notification_ids": [first_id]}, {"unread_count": 1, "unseen_count": 0}),
        ("DELETE", f"{n}/{first_id}/read", None, {"unread_count": 2, "unseen_count": 0}),
        ("PUT", f"{n}/{second_id}/snooze", {"until": later}, {"unread_count": 1, "unseen_count": 0}),
        ("DELETE", f"{n}/{second_id}/snooze", None, {"unread_count": 2, "unseen_count": 1}),
        ("DELETE", f"{n}/{second_id}", None, {"unread_count": 1, "unseen_count": 0}),
        ("DELETE", f"{n}/{first_id}?permanent=true", None, {"unread_count": 0, "unseen_count": 0}),
    ]
    for method, path, body, expected in steps:
        status, answer = http(api.url, method, path, bearer(user), body)
        assert status in (200, 204), (path, answer)
        event = stream.wait_for(lambda e: e.get("event") == "counts" and int(e["id"]) > version, WITHIN)
        assert data(event) == expected, (method, path)
        version = int(event["id"])
