"""The push worker against a real push service (web-push-testing decrypts what we encrypted)."""
from __future__ import annotations

import json
import logging
import threading
import time
from datetime import datetime, timedelta, timezone

import jwt
import pytest

from notifications_api.channels import push_outbox
from notifications_api.channels.push_sender import EndpointPolicy, PushSender
from notifications_api.channels.push_worker import MAX_PAYLOAD_BYTES, topic


def _decoded(message: str) -> dict:
    return json.loads(message)


def _run_until(worker, predicate, timeout=10.0):
    """Run the worker in a thread until predicate() holds; stop it; return the seconds it took."""
    thread = threading.Thread(target=worker.run, daemon=True)
    started = time.monotonic()
    thread.start()
    try:
        while not predicate():
            assert time.monotonic() - started < timeout, "the worker did not deliver in time"
            time.sleep(0.05)
        return time.monotonic() - started
    finally:
        worker.stop()
        thread.join(10)


def test_a_notification_reaches_both_browsers_decrypted_within_2_seconds(
        make_user, browser, notify, push_service, make_worker):
    user = make_user()
    laptop, phone = browser(user, "Firefox on Linux"), browser(user, "Chrome on Android")
    worker = make_worker()
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        time.sleep(0.3)  # the worker is polling, as in production
        created_at = time.monotonic()
        [result] = notify(user, priority="high")
        while not (push_service.messages(laptop["clientHash"]) and push_service.messages(phone["clientHash"])):
            assert time.monotonic() - created_at < 2.0, "not delivered to both browsers within 2 s"
            time.sleep(0.02)
    finally:
        worker.stop()
        thread.join(10)
    notification = result["notification"]
    for b in (laptop, phone):
        [message] = push_service.messages(b["clientHash"])
        body = _decoded(message)
        assert body == {
            "notification_id": notification["notification_id"], "notification_type": "comment",
            "title": "Ana commented on your post", "message": "Nice route!",
            "action_url": "https://app.example.com/posts/812#c-9", "priority": "high", "group_key": None,
            "created_at": notification["created_at"], "unread_count": 1, "unseen_count": 1}
        assert message == json.dumps(body, ensure_ascii=False, separators=(",", ":"))  # compact


def test_headers_ttl_urgency_topic_and_vapid(make_user, browser, notify, push_service, make_worker, vapid):
    user = make_user()
    b = browser(user)
    expires = (datetime.now(timezone.utc) + timedelta(hours=1)).isoformat().replace("+00:00", "Z")
    [result] = notify(user, priority="urgent", expires_at=expires)
    make_worker().run(once=True)
    [request] = push_service.requests(b["clientHash"])
    headers = request["headers"]
    assert request["status"] == 201
    assert headers["content-encoding"] == "aes128gcm"
    assert headers["content-type"] == "application/octet-stream"
    assert headers["urgency"] == "high"  # urgent -> high
    assert headers["topic"] == topic(result["notification"]["notification_id"])
    assert len(headers["topic"]) <= 32 and set(headers["topic"]) <= set(
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    assert 3500 <= int(headers["ttl"]) <= 3600  # PUSH_TTL_SECONDS (86400) cut to expires_at
    scheme, params = headers["authorization"].split(" ", 1)
    fields = dict(part.strip().split("=", 1) for part in params.split(","))
    assert scheme == "vapid" and fields["k"] == vapid[1]
    claims = jwt.decode(fields["t"], options={"verify_signature": False})
    assert claims["aud"] == push_service.origin
    assert claims["sub"].startswith("mailto:")
    assert 0 < claims["exp"] - time.time() <= 24 * 3600
    assert jwt.get_unverified_header(fields["t"])["alg"] == "ES256"
    assert request["bodyLength"] <= 4096


def test_urgency_follows_priority_and_payload_is_at_most_3072_bytes(
        make_user, browser, notify, push_service, make_worker):
    user = make_user()
    b = browser(user)
    notify(user, priority="low", message="é" * 2000, title="t" * 200)
    make_worker().run(once=True)
    [request] = push_service.requests(b["clientHash"])
    assert request["headers"]["urgency"] == "low" and request["headers"]["ttl"] == "86400"
    [message] = push_service.messages(b["clientHash"])
    assert len(message.encode()) <= MAX_PAYLOAD_BYTES
    body = _decoded(message)
    assert body["message"].endswith("…") and body["message"].startswith("é" * 100)
    assert body["title"] == "t" * 200


def test_vapid_is_signed_once_per_push_service_and_connections_are_reused(
        make_user, browser, notify, push_service, make_worker, push_config):
    users = [make_user() for _ in range(5)]
    browsers = [browser(u) for u in users for _ in range(2)]
    notify(users)
    sender = PushSender(EndpointPolicy(push_config["PUSH_ALLOWED_HOSTS"]), per_origin=2)
    worker = make_worker(concurrency=2, sender=sender)
    worker.run(once=True)
    assert all(len(push_service.messages(b["clientHash"])) == 1 for b in browsers)
    assert worker.signer.signatures == 1
    [(origin, connections)] = list(worker.sender.connections())
    assert origin == push_service.origin and connections <= 2


def test_410_deletes_the_subscription_and_nothing_is_retried(
        make_user, browser, notify, push_service, make_worker, api, auth, admin_db, caplog):
    user = make_user()
    gone, alive = browser(user), browser(user)
    push_service.expire(gone["clientHash"])
    notify(user)
    worker = make_worker()
    with caplog.at_level(logging.INFO, logger="notifications_api"):
        worker.run(once=True)
    listed = api.get("/api/v1/push/subscriptions", headers=auth(user)).get_json()["items"]
    assert [s["subscription_id"] for s in listed] == [alive["subscription_id"]]
    assert [r["status"] for r in push_service.requests(gone["clientHash"])] == [410]
    assert len(push_service.messages(alive["clientHash"])) == 1
    assert worker.metrics.subscriptions_removed.labels("gone")._value.get() == 1
    assert worker.metrics.deliveries.labels("gone")._value.get() == 1
    removed = [r for r in caplog.records if getattr(r, "event", None) == "push_subscription_removed"]
    assert len(removed) == 1 and removed[0].endpoint_origin == push_service.origin
    notify(user)
    make_worker().run(once=True)
    assert len(push_service.requests(gone["clientHash"])) == 1  # never tried again


def test_404_deletes_the_subscription_too(make_user, browser, notify, push_service, make_worker, api, auth):
    user = make_user()
    b = browser(user)
    push_service.inject(b["clientHash"], 404)
    notify(user)
    make_worker().run(once=True)
    assert api.get("/api/v1/push/subscriptions", headers=auth(user)).get_json()["items"] == []


def test_5xx_is_retried_with_backoff_from_15_seconds(
        make_user, browser, notify, push_service, make_worker, admin_db):
    user = make_user()
    b = browser(user)
    push_service.inject(b["clientHash"], 503)
    notify(user)
    worker = make_worker()
    worker.run(once=True)
    [(status, attempts, wait, error)] = admin_db.execute(
        "SELECT status, attempts, extract(epoch FROM available_at - now()), last_error"
        " FROM activity.push_outbox WHERE user_id = %s", (user,)).fetchall()
    assert (status, attempts, error) == ("pending", 1, "HTTP 503")
    assert 13 <= wait <= 15 * 1.25
    assert push_service.messages(b["clientHash"]) == []
    admin_db.execute("UPDATE activity.push_outbox SET available_at = now() WHERE user_id = %s", (user,))
    make_worker().run(once=True)
    assert len(push_service.messages(b["clientHash"])) == 1
    [(status, attempts)] = admin_db.execute(
        "SELECT status, attempts FROM activity.push_outbox WHERE user_id = %s", (user,)).fetchall()
    assert (status, attempts) == ("sent", 2)
    assert worker.metrics.deliveries.labels("retried")._value.get() == 1


def test_a_longer_retry_after_wins_and_429_is_retried(
        make_user, browser, notify, push_service, make_worker, admin_db):
    user = make_user()
    b = browser(user)
    push_service.inject(b["clientHash"], 429, {"Retry-After": "120"})
    notify(user)
    make_worker().run(once=True)
    [(status, wait)] = admin_db.execute(
        "SELECT status, extract(epoch FROM available_at - now()) FROM activity.push_outbox"
        " WHERE user_id = %s", (user,)).fetchall()
    assert status == "pending" and 115 <= wait <= 120


def test_attempts_run_out_at_push_max_attempts(make_user, browser, notify, push_service, make_worker, admin_db):
    user = make_user()
    b = browser(user)
    push_service.inject(b["clientHash"], 500, times=3)
    notify(user)
    for _ in range(3):
        make_worker(max_attempts=3).run(once=True)
        admin_db.execute("UPDATE activity.push_outbox SET available_at = now() WHERE user_id = %s"
                         " AND status = 'pending'", (user,))
    [(status, attempts)] = admin_db.execute(
        "SELECT status, attempts FROM activity.push_outbox WHERE user_id = %s", (user,)).fetchall()
    assert (status, attempts) == ("failed", 3)
    assert push_service.messages(b["clientHash"]) == []


def test_other_4xx_fails_at_once_and_is_counted_against_the_subscription(
        make_user, browser, notify, push_service, make_worker, admin_db, api, auth):
    user = make_user()
    b = browser(user)
    push_service.inject(b["clientHash"], 403)
    notify(user)
    worker = make_worker()
    worker.run(once=True)
    [(status, error)] = admin_db.execute("SELECT status, last_error FROM activity.push_outbox WHERE user_id = %s",
                                         (user,)).fetchall()
    assert (status, error) == ("failed", "HTTP 403")
    [listed] = api.get("/api/v1/push/subscriptions", headers=auth(user)).get_json()["items"]
    assert listed["consecutive_failures"] == 1
    assert worker.metrics.deliveries.labels("failed")._value.get() == 1


def test_ten_consecutive_failures_remove_the_browser(make_user, browser, notify, push_service, make_worker,
                                                     api, auth):
    user = make_user()
    b = browser(user)
    push_service.inject(b["clientHash"], 400, times=10)
    for i in range(10):
        notify(user, title=f"n{i}")
    worker = make_worker()
    worker.run(once=True)
    assert api.get("/api/v1/push/subscriptions", headers=auth(user)).get_json()["items"] == []
    assert worker.metrics.subscriptions_removed.labels("failures")._value.get() == 1


def test_quiet_hours_defer_and_urgent_goes_through(make_user, browser, notify, push_service, make_worker,
                                                   api, auth, admin_db):
    user = make_user()
    b = browser(user)
    now = datetime.now(timezone.utc)
    quiet = {"start": (now - timedelta(hours=1)).strftime("%H:%M"),
             "end": (now + timedelta(hours=2)).strftime("%H:%M"), "timezone": "UTC"}
    assert api.patch("/api/v1/notifications/settings", json={"quiet_hours": quiet},
                     headers=auth(user)).status_code == 200
    notify(user, title="can wait")
    notify(user, title="now!", priority="urgent")
    make_worker().run(once=True)
    assert [_decoded(m)["title"] for m in push_service.messages(b["clientHash"])] == ["now!"]
    admin_db.execute("UPDATE activity.push_outbox SET available_at = now() WHERE user_id = %s"
                     " AND status = 'pending'", (user,))  # the quiet hours end
    make_worker().run(once=True)
    assert [_decoded(m)["title"] for m in push_service.messages(b["clientHash"])] == ["now!", "can wait"]


def test_preferences_push_off_globally_or_for_the_type(
        make_user, browser, notify, push_service, make_worker, api, auth):
    off, type_off = make_user(), make_user()
    b_off, b_type = browser(off), browser(type_off)
    api.patch("/api/v1/notifications/settings", json={"push_enabled": False}, headers=auth(off))
    api.patch("/api/v1/notifications/settings", json={"type_preferences": {"comment": {"push": False}}},
              headers=auth(type_off))
    notify([off, type_off])
    notify([off, type_off], notification_type="mention", title="mentioned")
    make_worker().run(once=True)
    assert push_service.messages(b_off["clientHash"]) == []
    assert [_decoded(m)["title"] for m in push_service.messages(b_type["clientHash"])] == ["mentioned"]


def test_respects_the_inbox_what_was_seen_or_read_is_never_pushed(
        make_user, browser, notify, push_service, make_worker, api, auth):
    user = make_user()
    b = browser(user)
    seen = notify(user, title="seen")[0]["notification"]["notification_id"]
    read = notify(user, title="read")[0]["notification"]["notification_id"]
    archived = notify(user, title="archived")[0]["notification"]["notification_id"]
    notify(user, title="fresh")
    h = auth(user)
    assert api.post("/api/v1/notifications/bulk", json={"action": "seen", "notification_ids": [seen]},
                    headers=h).status_code == 200
    assert api.put(f"/api/v1/notifications/{read}/read", headers=h).status_code == 200
    assert api.delete(f"/api/v1/notifications/{archived}", headers=h).status_code == 204
    make_worker().run(once=True)
    assert [_decoded(m)["title"] for m in push_service.messages(b["clientHash"])] == ["fresh"]


def test_the_moved_browser_gets_only_the_new_users_pushes(
        make_user, browser, notify, push_service, make_worker, vapid, api, auth):
    ana, ben = make_user(), make_user()
    b = browser(ana)
    notify(ana, title="for Ana")  # queued, not sent yet
    body = {"endpoint": b["endpoint"], "keys": b["keys"]}
    moved = api.post("/api/v1/push/subscriptions", json=body, headers=auth(ben))
    assert moved.status_code == 201 and moved.get_json()["subscription_id"] != b["subscription_id"]
    notify(ben, title="for Ben")
    make_worker().run(once=True)
    assert [_decoded(m)["title"] for m in push_service.messages(b["clientHash"])] == ["for Ben"]
    assert api.get("/api/v1/push/subscriptions", headers=auth(ana)).get_json()["items"] == []


def test_settings_and_browsers_are_the_pick_ups_not_the_creates(
        make_user, browser, notify, push_service, make_worker, api, auth):
    """The fan-out to browsers happens when the worker picks the create up: a browser registered in
    between gets the push, and push turned off in between means none."""
    user, quiet = make_user(), make_user()
    laptop, muted = browser(user), browser(quiet)
    notify([user, quiet], title="before the pick-up")
    phone = browser(user)  # registered after the create, before any worker ran
    assert api.patch("/api/v1/notifications/settings", json={"push_enabled": False},
                     headers=auth(quiet)).status_code == 200
    make_worker().run(once=True)
    for b in (laptop, phone):
        assert [_decoded(m)["title"] for m in push_service.messages(b["clientHash"])] == ["before the pick-up"]
    assert push_service.messages(muted["clientHash"]) == []


def test_the_21st_browser_replaces_the_oldest(make_user, browser, api, auth, notify, push_service, make_worker):
    user = make_user()
    browsers = [browser(user) for _ in range(21)]
    listed = api.get("/api/v1/push/subscriptions", headers=auth(user)).get_json()["items"]
    assert len(listed) == 20
    assert browsers[0]["subscription_id"] not in {s["subscription_id"] for s in listed}
    notify(user)
    make_worker().run(once=True)
    assert push_service.messages(browsers[0]["clientHash"]) == []
    assert all(len(push_service.messages(b["clientHash"])) == 1 for b in browsers[1:])


def test_fan_out_to_many_users_and_browsers_exactly_once_with_two_workers(
        make_user, browser, notify, push_service, make_worker):
    users = [make_user() for _ in range(25)]
    browsers = [browser(u) for u in users for _ in range(3)]
    notify(users)
    notify(users, title="second")
    workers = [make_worker(name=f"w{i}", batch_size=10) for i in range(2)]
    threads = [threading.Thread(target=w.run, kwargs={"once": True}) for w in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for b in browsers:
        titles = sorted(_decoded(m)["title"] for m in push_service.messages(b["clientHash"]))
        assert titles == ["Ana commented on your post", "second"], b["clientHash"]
    assert all(w.metrics.deliveries.labels("sent")._value.get() > 0 for w in workers)
    assert sum(w.metrics.deliveries.labels("sent")._value.get() for w in workers) == 150


def test_a_worker_killed_mid_batch_loses_nothing_and_resends_only_the_in_flight(
        make_user, browser, notify, push_service, make_worker, admin_db):
    users = [make_user() for _ in range(6)]
    browsers = [browser(u) for u in users]
    notify(users)
    victim = make_worker(name="victim")
    batch = victim._db(push_outbox.claim, "victim", 100, 20, 5)
    assert len(batch) == 6
    for delivery in batch[:3]:  # sent and recorded
        victim._record(delivery, victim._send(delivery, time.monotonic() + 60))
    assert victim._send(batch[3], time.monotonic() + 60).kind == "sent"  # sent; killed before recording
    victim._close()  # killed: no release, its leases stay until they expire
    make_worker(name="early").run(once=True)
    assert sum(len(push_service.messages(b["clientHash"])) for b in browsers) == 4  # leases still held
    admin_db.execute("UPDATE activity.push_outbox SET lease_expires_at = now() - interval '1 second'"
                     " WHERE lease_owner = 'victim' AND status = 'sending'")
    make_worker(name="survivor").run(once=True)
    counts = sorted(len(push_service.messages(b["clientHash"])) for b in browsers)
    assert counts == [1, 1, 1, 1, 1, 2]  # every push arrived; only the one in flight twice


def test_no_endpoint_key_or_vapid_private_key_reaches_a_log(
        make_user, browser, notify, push_service, make_worker, vapid, caplog, api, auth):
    user = make_user()
    with caplog.at_level(logging.DEBUG):
        b = browser(user)
        gone = browser(user)
        push_service.expire(gone["clientHash"])
        retry = browser(user)
        push_service.inject(retry["clientHash"], 502)
        notify(user)
        make_worker().run(once=True)
        api.delete(f"/api/v1/push/subscriptions/{b['subscription_id']}", headers=auth(user))
        api.delete("/api/v1/push/subscriptions", query_string={"endpoint": retry["endpoint"]}, headers=auth(user))
    text = "\n".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records)
    assert "push_batch" in text and "push_subscription_registered" in text
    assert "push_subscription_removed" in text
    for secret in (vapid[0], b["keys"]["p256dh"], b["keys"]["auth"], b["clientHash"], gone["clientHash"],
                   retry["clientHash"], retry["keys"]["auth"]):
        assert secret not in text
    assert "/notify/" not in text


def test_deliver_push_cli_once(make_user, browser, notify, push_service, push_worker_conninfo, push_config,
                               tmp_path):
    import os
    import subprocess
    import sys

    user = make_user()
    b = browser(user)
    notify(user)
    env = {**os.environ, "ENV_FILE": str(tmp_path / "none.env"), "ENVIRONMENT": "test",
           "WORKER_DATABASE_URL": push_worker_conninfo, "VAPID_PRIVATE_KEY": push_config["VAPID_PRIVATE_KEY"],
           "VAPID_SUBJECT": push_config["VAPID_SUBJECT"], "DATABASE_URL": push_worker_conninfo,
           "PUSH_ALLOWED_HOSTS": ",".join(push_config["PUSH_ALLOWED_HOSTS"]), "LOG_LEVEL": "INFO"}
    result = subprocess.run([sys.executable, "-m", "notifications_api.ops.cli", "deliver-push", "--once"],
                            env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr[-2000:]
    assert len(push_service.messages(b["clientHash"])) == 1
    assert "push_batch" in result.stdout + result.stderr
    assert b["keys"]["auth"] not in result.stdout + result.stderr
    assert push_config["VAPID_PRIVATE_KEY"] not in result.stdout + result.stderr
    wrong = subprocess.run([sys.executable, "-m", "notifications_api.ops.cli", "deliver-push", "--once"],
                           env={**env, "VAPID_PRIVATE_KEY": ""}, capture_output=True, text=True, timeout=60)
    assert wrong.returncode == 2 and "VAPID_PRIVATE_KEY" in wrong.stderr


@pytest.mark.parametrize("status", [201, 202])
def test_2xx_is_sent(make_user, browser, notify, push_service, make_worker, admin_db, status):
    user = make_user()
    b = browser(user)
    if status != 201:
        push_service.inject(b["clientHash"], status)
    notify(user)
    make_worker().run(once=True)
    [(state,)] = admin_db.execute("SELECT status FROM activity.push_outbox WHERE user_id = %s",
                                  (user,)).fetchall()
    assert state == "sent"


def test_the_endpoint_is_not_in_any_worker_metric(make_user, browser, notify, push_service, make_worker):
    from prometheus_client import generate_latest

    user = make_user()
    b = browser(user)
    notify(user)
    worker = make_worker()
    worker.run(once=True)
    text = generate_latest(worker.metrics.registry).decode()
    assert "notifications_api_push_deliveries_total{outcome=\"sent\"} 1.0" in text
    assert "notifications_api_push_send_duration_seconds_count 1.0" in text
    assert b["clientHash"] not in text and "127.0.0.1" not in text
