"""Inbox v2 over HTTP (API.md: the notification object, 1, 3/3b, 4, 6, 10, 11/11b, 13)."""
from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import psycopg
import pytest

from test_errors import assert_problem

P = "/api/v1/notifications"
TIMES = ["created_at", "delivered_at", "seen_at", "read_at", "archived_at", "snoozed_until", "expires_at"]


def iso(dt: datetime) -> str:
    return dt.isoformat().replace("+00:00", "Z")


def ahead(seconds: float) -> str:
    return iso(datetime.now(timezone.utc) + timedelta(seconds=seconds))


def travel(database, user_id: str, seconds: float) -> None:
    """The clock moves `seconds` forward for this user: every stored instant moves back by that much."""
    shift = ", ".join(f"{c} = {c} - make_interval(secs => %(s)s)" for c in TIMES)
    counters = ", ".join(f"{c} = {c} - make_interval(secs => %(s)s)"
                         for c in ("folded_at", "next_change_at", "next_expiry"))
    with psycopg.connect(database.admin, autocommit=True) as conn, conn.transaction():
        conn.execute("SET LOCAL activity.inbox_v2 = 'on'")  # as this release's functions write
        conn.execute(f"UPDATE activity.notifications SET {shift} WHERE user_id = %(u)s", {"s": seconds, "u": user_id})
        conn.execute(f"UPDATE activity.notification_counters SET {counters} WHERE user_id = %(u)s",
                     {"s": seconds, "u": user_id})
        conn.execute("UPDATE activity.notification_groups"
                     " SET latest_delivered_at = latest_delivered_at - make_interval(secs => %(s)s),"
                     " oldest_delivered_at = oldest_delivered_at - make_interval(secs => %(s)s)"
                     " WHERE user_id = %(u)s", {"s": seconds, "u": user_id})


@pytest.fixture
def api(client, user, user_headers):
    """Shortcuts for one user: get/put/post/delete with its JWT."""
    h = user_headers(user)

    class Api:
        def get(self, path, **headers):
            return client.get(P + path, headers={**h, **headers})

        def put(self, path, json=None):
            return client.put(P + path, json=json, headers=h)

        def post(self, path, json):
            return client.post(P + path, json=json, headers=h)

        def delete(self, path):
            return client.delete(P + path, headers=h)

        def counts(self):
            return self.get("/unread/count").get_json()

        def ids(self, query=""):
            return [i["notification_id"] for i in self.get(query).get_json()["items"]]
    return Api()


# -- seen vs read -------------------------------------------------------------------------------

def test_seen_read_unread(api, user, notify):
    a, b = notify(user)["notification_id"], notify(user, notification_type="mention")["notification_id"]
    assert api.counts() == {"unread_count": 2, "unseen_count": 2, "by_type": {"comment": 1, "mention": 1}}
    read = api.put(f"/{a}/read").get_json()
    assert read["status"] == "read" and read["seen_at"] == read["read_at"] is not None
    again = api.put(f"/{a}/read").get_json()
    assert again["read_at"] == read["read_at"] and again["seen_at"] == read["seen_at"]
    unread = api.delete(f"/{a}/read").get_json()
    assert unread["status"] == "unread" and unread["read_at"] is None and unread["seen_at"] == read["seen_at"]
    assert api.counts() == {"unread_count": 2, "unseen_count": 1, "by_type": {"comment": 1, "mention": 1}}
    r = api.post("/bulk", {"action": "seen", "all": True}).get_json()
    assert r == {"updated_count": 1, "unread_count": 2, "unseen_count": 0}
    seen = api.get(f"/{b}").get_json()
    assert seen["status"] == "unread" and seen["seen_at"] is not None and seen["read_at"] is None
    assert api.post("/bulk", {"action": "seen", "all": True}).get_json()["updated_count"] == 0


def test_mark_read_bulk_answers_unseen_count(api, user, notify):
    notify(user)
    notify(user)
    assert api.post("/mark-read", {"all": True}).get_json() == {"updated_count": 2, "unread_count": 0,
                                                                "unseen_count": 0}


# -- delivery order -----------------------------------------------------------------------------

def test_lists_are_in_delivery_order_and_before_compares_delivered_at(api, user, notify, database):
    first = notify(user, title="first")["notification_id"]
    second = notify(user, title="second")["notification_id"]
    travel(database, user, 600)
    third = notify(user, title="third")["notification_id"]
    assert api.ids() == [third, second, first]
    api.put(f"/{first}/snooze", {"until": ahead(120)})
    assert api.ids() == [third, second]
    travel(database, user, 180)  # the snooze ended by the clock: first is back on top
    assert api.ids() == [first, third, second]
    item = api.get(f"/{first}").get_json()
    assert item["status"] == "unread" and item["delivered_at"] == item["snoozed_until"]
    assert item["delivered_at"] > item["created_at"]
    # before: delivered at or before it (the woken one was delivered after `second`)
    r = api.post("/mark-read", {"all": True, "before": api.get(f"/{second}").get_json()["delivered_at"]})
    assert r.get_json()["updated_count"] == 1
    assert api.get(f"/{first}").get_json()["status"] == "unread"


def test_pages_follow_delivery_order(api, user, notify):
    made = [notify(user, title=f"n{i}")["notification_id"] for i in range(5)]
    api.put(f"/{made[0]}/snooze", {"until": ahead(3600)})
    api.delete(f"/{made[0]}/snooze")  # woken now: delivered now, on top
    seen, url = [], "?limit=2"
    while url:
        response = api.get(url)
        body = response.get_json()
        seen += [i["notification_id"] for i in body["items"]]
        url = "?" + response.headers["Link"].split("?", 1)[1].split(">", 1)[0] if body["next_cursor"] else None
    assert seen == [made[0], made[4], made[3], made[2], made[1]]


# -- snooze ------------------------------------------------------------------------------------

def test_snooze_hides_and_counts_nothing_until_the_end(api, user, notify, database):
    nid = notify(user)["notification_id"]
    other = notify(user, notification_type="mention")["notification_id"]
    api.post("/bulk", {"action": "seen", "notification_ids": [nid]})
    api.put(f"/{nid}/read")
    until = ahead(3600)
    snoozed = api.put(f"/{nid}/snooze", {"until": until})
    assert snoozed.status_code == 200
    body = snoozed.get_json()
    assert body["status"] == "snoozed" and body["seen_at"] is None and body["read_at"] is None
    assert body["delivered_at"] == body["snoozed_until"]
    assert datetime.fromisoformat(body["snoozed_until"]) == datetime.fromisoformat(until)
    assert api.ids() == [other] and api.ids("?status=unread") == [other]
    assert api.ids("?status=snoozed") == [nid] and api.ids("?status=all") == [nid, other]
    assert api.ids("?status=read") == []
    assert api.counts() == {"unread_count": 1, "unseen_count": 1, "by_type": {"mention": 1}}
    for path in (f"/{nid}/read",):
        assert_problem(api.put(path), 409, "notification_snoozed")
        assert_problem(api.delete(path), 409, "notification_snoozed")
    # bulk read/unread/seen skip it; archive and delete do not
    assert api.post("/bulk", {"action": "read", "all": True}).get_json()["updated_count"] == 1
    assert api.post("/bulk", {"action": "seen", "notification_ids": [nid]}).get_json()["updated_count"] == 0
    # snoozing again moves until
    later = api.put(f"/{nid}/snooze", {"until": ahead(7200)}).get_json()
    assert later["snoozed_until"] > body["snoozed_until"]
    travel(database, user, 7300)
    woken = api.get(f"/{nid}").get_json()
    assert woken["status"] == "unread" and woken["seen_at"] is None
    assert api.counts() == {"unread_count": 1, "unseen_count": 1, "by_type": {"comment": 1}}
    assert api.ids()[0] == nid


def test_wake_now(api, user, notify):
    nid = notify(user)["notification_id"]
    plain = notify(user)["notification_id"]
    unchanged = api.get(f"/{plain}").get_json()
    assert api.delete(f"/{plain}/snooze").get_json() == unchanged  # not snoozed: changes nothing
    api.put(f"/{nid}/snooze", {"until": ahead(3600)})
    woken = api.delete(f"/{nid}/snooze")
    assert woken.status_code == 200
    body = woken.get_json()
    assert body["status"] == "unread" and body["delivered_at"] == body["snoozed_until"]
    assert body["delivered_at"] > unchanged["delivered_at"] and body["seen_at"] is None
    assert api.ids() == [nid, plain]
    assert api.counts()["unread_count"] == 2


def test_snooze_validation_and_conflicts(api, user, notify):
    nid = notify(user, expires_at=ahead(3600))["notification_id"]
    for until in (ahead(30), ahead(91 * 86400), "2030-01-01T00:00:00", "soon", None):
        assert_problem(api.put(f"/{nid}/snooze", {"until": until}), 422, "validation_error")
    assert_problem(api.put(f"/{nid}/snooze", {}), 422, "validation_error")
    assert_problem(api.put(f"/{nid}/snooze", {"until": ahead(120), "extra": 1}), 422, "validation_error")
    body = assert_problem(api.put(f"/{nid}/snooze", {"until": ahead(7200)}), 422, "validation_error")
    assert "until" in body["errors"]  # after the notification's expires_at
    # 422 (content) outranks 404 (the id), which outranks 409 (its state)
    assert_problem(api.put(f"/{uuid.uuid4()}/snooze", {"until": ahead(30)}), 422, "validation_error")
    assert_problem(api.put(f"/{uuid.uuid4()}/snooze", {"until": ahead(120)}), 404, "notification_not_found")
    assert_problem(api.delete(f"/{uuid.uuid4()}/snooze"), 404, "notification_not_found")
    api.delete(f"/{nid}")
    assert_problem(api.put(f"/{nid}/snooze", {"until": ahead(120)}), 409, "notification_archived")


def test_archiving_a_snoozed_notification_wakes_it(api, user, notify):
    nid = notify(user)["notification_id"]
    snoozed = api.put(f"/{nid}/snooze", {"until": ahead(3600)}).get_json()
    assert api.delete(f"/{nid}").status_code == 204
    archived = api.get(f"/{nid}").get_json()
    assert archived["status"] == "archived" and archived["read_at"] is None and archived["seen_at"] is None
    assert archived["delivered_at"] == archived["snoozed_until"] < snoozed["snoozed_until"]
    unarchived = api.post("/bulk", {"action": "unarchive", "all": True}).get_json()
    assert unarchived == {"updated_count": 1, "unread_count": 1, "unseen_count": 1}
    assert api.get(f"/{nid}").get_json()["status"] == "unread"


# -- bulk --------------------------------------------------------------------------------------

def test_bulk_actions_change_only_what_they_apply_to(api, user, make_user, notify):
    a = notify(user, group_key="g1")["notification_id"]
    b = notify(user, group_key="g1", notification_type="like")["notification_id"]
    c = notify(user, notification_type="like")["notification_id"]
    theirs = notify(make_user())["notification_id"]
    assert api.post("/bulk", {"action": "read", "group_key": "g1"}).get_json() == {
        "updated_count": 2, "unread_count": 1, "unseen_count": 1}
    assert api.post("/bulk", {"action": "unread", "notification_ids": [a, c, theirs]}).get_json() == {
        "updated_count": 1, "unread_count": 2, "unseen_count": 1}  # c was unread already; theirs skipped
    assert api.post("/bulk", {"action": "archive", "notification_type": "like", "group_key": "g1"}).get_json() \
        == {"updated_count": 1, "unread_count": 2, "unseen_count": 1}
    assert api.get(f"/{b}").get_json()["status"] == "archived"
    assert api.post("/bulk", {"action": "unarchive", "status": "archived"}).get_json()["updated_count"] == 1
    assert api.get(f"/{b}").get_json()["status"] == "read"  # back to its read state
    assert api.post("/bulk", {"action": "archive", "status": "unread"}).get_json() == {
        "updated_count": 2, "unread_count": 0, "unseen_count": 0}
    assert api.post("/bulk", {"action": "delete", "all": True}).get_json() == {
        "updated_count": 3, "unread_count": 0, "unseen_count": 0}
    assert api.ids("?status=all") == []
    assert_problem(api.get(f"/{a}"), 404, "notification_not_found")


def test_bulk_archive_snoozed_by_status(api, user, notify):
    nid = notify(user)["notification_id"]
    keep = notify(user)["notification_id"]
    api.put(f"/{nid}/snooze", {"until": ahead(3600)})
    assert api.post("/bulk", {"action": "read", "status": "snoozed"}).get_json()["updated_count"] == 0
    assert api.post("/bulk", {"action": "archive", "status": "snoozed"}).get_json() == {
        "updated_count": 1, "unread_count": 1, "unseen_count": 1}
    assert api.ids("?status=archived") == [nid] and api.ids() == [keep]


@pytest.mark.parametrize("body", [
    {"all": True}, {"action": "explode", "all": True}, {"action": "read"}, {"action": "read", "all": False},
    {"action": "read", "before": "2026-01-01T00:00:00Z"}, {"action": "read", "notification_ids": []},
    {"action": "read", "notification_ids": [str(uuid.uuid4())] * 1001}, {"action": "read", "status": "all"},
    {"action": "read", "group_key": ""}, {"action": "read", "all": True, "extra": 1},
    {"action": "read", "all": "yes"}, {"action": "read", "notification_type": "Bad Type"}, [1],
])
def test_bulk_validation(api, body):
    assert_problem(api.post("/bulk", body), 422, "validation_error")


# -- the unread count's ETag: two devices ----------------------------------------------------------

@pytest.mark.parametrize("change", ["seen", "read", "snooze", "snooze_ends", "expiry", "retract"])
def test_two_devices_never_a_304_for_a_stale_body(change, api, user, notify, database, client, service_headers):
    nid = notify(user, expires_at=ahead(3600), dedupe_key=f"k-{uuid.uuid4()}")["notification_id"]
    other = notify(user, notification_type="mention")["notification_id"]
    if change == "snooze_ends":
        api.put(f"/{other}/snooze", {"until": ahead(600)})
    device_a = api.get("/unread/count")
    etag = device_a.headers["ETag"]
    assert api.get("/unread/count", **{"If-None-Match": etag}).status_code == 304
    if change == "seen":  # device B
        api.post("/bulk", {"action": "seen", "notification_ids": [nid]})
    elif change == "read":
        api.put(f"/{nid}/read")
    elif change == "snooze":
        api.put(f"/{nid}/snooze", {"until": ahead(600)})
    elif change == "snooze_ends":  # nobody writes: the clock moves past the snooze's end
        travel(database, user, 700)
    elif change == "expiry":  # nobody writes: the clock moves past the expiry
        travel(database, user, 3700)
    else:
        key = api.get(f"/{nid}").get_json()
        client.post(f"{P}/retract", json={"target_type": "post", "target_id": "none"}, headers=service_headers)
        client.post(f"{P}/retract", json={"dedupe_key": _dedupe_key(database, key["notification_id"])},
                    headers=service_headers)
    again = api.get("/unread/count", **{"If-None-Match": etag})
    assert again.status_code == 200 and again.headers["ETag"] != etag
    assert again.get_json() != device_a.get_json()
    assert again.get_json() == api.get("/unread/count").get_json()


def _dedupe_key(database, notification_id: str) -> str:
    with psycopg.connect(database.admin) as conn:
        return conn.execute("SELECT dedupe_key FROM activity.notifications WHERE notification_id = %s",
                            (notification_id,)).fetchone()[0]


def test_expiry_and_wake_at_the_same_count_still_change_the_tag(api, user, notify, database):
    """One expires while another wakes: the same unread_count, a different body, a different tag."""
    notify(user, expires_at=ahead(3600))
    sleeper = notify(user, notification_type="mention")["notification_id"]
    api.put(f"/{sleeper}/snooze", {"until": ahead(3000)})
    before = api.get("/unread/count")
    assert before.get_json() == {"unread_count": 1, "unseen_count": 1, "by_type": {"comment": 1}}
    travel(database, user, 3700)
    after = api.get("/unread/count", **{"If-None-Match": before.headers["ETag"]})
    assert after.status_code == 200
    assert after.get_json() == {"unread_count": 1, "unseen_count": 1, "by_type": {"mention": 1}}


# -- retraction ---------------------------------------------------------------------------------

def test_retract_by_dedupe_key_across_users_frees_the_key(client, make_user, user_headers, service_headers, notify):
    users = [make_user() for _ in range(3)]
    body = {"user_ids": users, "notification_type": "like", "title": "Ana liked your post",
            "dedupe_key": "like-812-ana", "target_type": "post", "target_id": "post-812"}
    assert client.post(P, json=body, headers=service_headers).get_json()["created_count"] == 3
    notify(users[0], dedupe_key="other")
    r = client.post(f"{P}/retract", json={"dedupe_key": "like-812-ana"}, headers=service_headers)
    assert r.status_code == 200 and r.get_json() == {"retracted_count": 3, "has_more": False}
    for u in users:
        assert client.get(f"{P}/unread/count", headers=user_headers(u)).get_json()["unread_count"] == (
            1 if u == users[0] else 0)
    again = client.post(P, json=body, headers=service_headers).get_json()  # like, unlike, like
    assert again["created_count"] == 3 and {x["result"] for x in again["results"]} == {"created"}
    assert client.post(f"{P}/retract", json={"dedupe_key": "nothing"}, headers=service_headers).get_json() == {
        "retracted_count": 0, "has_more": False}


def test_retract_by_target_narrowed(client, make_user, user_headers, service_headers, notify):
    a, b = make_user(), make_user()
    actor = str(uuid.uuid4())
    a_comment = notify(a, target_type="post", target_id="p1", notification_type="comment")["notification_id"]
    b_like = notify(b, target_type="post", target_id="p1", notification_type="like")["notification_id"]
    a_other_post = notify(a, target_type="post", target_id="p2", notification_type="like",
                          actor_user_id=actor)["notification_id"]
    a_like = notify(a, target_type="post", target_id="p1", notification_type="like",
                    actor_user_id=actor)["notification_id"]

    def exists(user, nid):
        return client.get(f"{P}/{nid}", headers=user_headers(user)).status_code == 200

    body = {"target_type": "post", "target_id": "p1", "notification_type": "like", "actor_user_id": actor,
            "user_ids": [a, b]}
    assert client.post(f"{P}/retract", json=body, headers=service_headers).get_json() == {
        "retracted_count": 1, "has_more": False}
    assert not exists(a, a_like) and exists(a, a_comment) and exists(b, b_like) and exists(a, a_other_post)
    client.put(f"{P}/{b_like}/read", headers=user_headers(b))  # any state
    only_b = {"target_type": "post", "target_id": "p1", "user_ids": [b]}
    assert client.post(f"{P}/retract", json=only_b, headers=service_headers).get_json() == {
        "retracted_count": 1, "has_more": False}
    assert not exists(b, b_like) and exists(a, a_comment)


@pytest.mark.parametrize("body", [
    {}, {"dedupe_key": "k", "target_type": "post", "target_id": "p"}, {"target_type": "post"},
    {"target_id": "p"}, {"dedupe_key": ""}, {"dedupe_key": "k", "user_ids": []}, {"dedupe_key": "k", "x": 1},
    {"dedupe_key": "k" * 129}, {"dedupe_key": "k", "actor_user_id": "nope"},
])
def test_retract_validation(client, service_headers, body):
    assert_problem(client.post(f"{P}/retract", json=body, headers=service_headers), 422, "validation_error")


def test_retract_needs_the_service_token(client, user, user_headers):
    assert_problem(client.post(f"{P}/retract", json={"dedupe_key": "k"}, headers=user_headers(user)),
                   403, "service_token_required")
    assert_problem(client.post(f"{P}/retract", json={"dedupe_key": "k"}), 401, "missing_token")


def test_retraction_cancels_pending_emails(client, make_user, service_headers, database):
    u = make_user()
    with psycopg.connect(database.admin, autocommit=True) as conn:
        created = client.post(P, json={"user_id": u, "notification_type": "comment", "title": "t",
                                       "dedupe_key": "mail-1"}, headers=service_headers).get_json()
        nid = created["results"][0]["notification"]["notification_id"]
        conn.execute("INSERT INTO activity.email_outbox (user_id, notification_id, recipient, subject, body)"
                     " VALUES (%s, %s, 'x@example.test', 's', 'b')", (u, nid))
        client.post(f"{P}/retract", json={"dedupe_key": "mail-1"}, headers=service_headers)
        assert conn.execute("SELECT status FROM activity.email_outbox WHERE notification_id = %s",
                            (nid,)).fetchone()[0] == "cancelled"


# -- log events and metrics by action ---------------------------------------------------------------

def test_events_and_metrics_by_action(make_app, make_user, capfd):
    import json

    from prometheus_client import REGISTRY

    from notifications_api.web.auth import issue_token
    app = make_app(LOG_LEVEL="INFO")
    client, user = app.test_client(), make_user()
    h = {"Authorization": f"Bearer {issue_token(app.config, user)}"}
    service = {"X-Service-Token": app.config["SERVICE_TOKEN"]}

    def changed(action):
        return REGISTRY.get_sample_value("notifications_api_notifications_changed_total", {"action": action}) or 0
    before = {a: changed(a) for a in ("archive", "snooze", "wake", "retract", "seen")}
    ids = [client.post(P, json={"user_id": user, "notification_type": "like", "title": "t", "target_type": "post",
                                "target_id": f"p-{i}", "dedupe_key": f"log-{i}"}, headers=service).get_json()
           ["results"][0]["notification"]["notification_id"] for i in range(3)]
    capfd.readouterr()
    client.post(f"{P}/bulk", json={"action": "seen", "all": True}, headers=h)
    client.put(f"{P}/{ids[0]}/snooze", json={"until": ahead(600)}, headers=h)
    client.delete(f"{P}/{ids[0]}/snooze", headers=h)
    client.post(f"{P}/bulk", json={"action": "archive", "notification_ids": ids[:2]}, headers=h)
    client.post(f"{P}/retract", json={"target_type": "post", "target_id": "p-2"}, headers=service)
    lines = [json.loads(line) for line in capfd.readouterr().out.splitlines() if line.startswith("{")]
    events = [(e["event"], e.get("action"), e.get("updated_count", e.get("retracted_count")))
              for e in lines if e.get("event") and e.get("message") != "request"]
    assert ("notifications_bulk_updated", "seen", 3) in events
    assert ("notifications_bulk_updated", "archive", 2) in events
    assert ("notifications_retracted", None, 1) in events
    assert {"notification_snoozed", "notification_woken"} <= {e[0] for e in events}
    retracted = next(e for e in lines if e.get("event") == "notifications_retracted")
    assert retracted["service"] and retracted["has_more"] is False
    assert {a: changed(a) - before[a] for a in before} == {"archive": 2, "snooze": 1, "wake": 1, "retract": 1,
                                                           "seen": 3}
