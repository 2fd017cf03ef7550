"""Endpoint 12, the grouped inbox, over HTTP."""
from __future__ import annotations

import uuid

import pytest

from test_errors import assert_problem
from test_inbox_v2 import ahead, travel

P = "/api/v1/notifications"


@pytest.fixture
def get(client, user, user_headers):
    def fetch(query="", **headers):
        return client.get(f"{P}/groups{query}", headers={**user_headers(user), **headers})
    return fetch


def walk(get, query="limit=2"):
    keys, url = [], "?" + query
    while url:
        response = get(url)
        assert response.status_code == 200, response.get_json()
        body = response.get_json()
        keys += [g["group_key"] or g["latest"]["notification_id"] for g in body["items"]]
        url = "?" + response.headers["Link"].split("?", 1)[1].split(">", 1)[0] if body["next_cursor"] else None
        assert (body["next_cursor"] is None) == ("Link" not in response.headers)
    return keys


def test_groups_page_by_page(get, user, notify, client, user_headers):
    actors = [str(uuid.uuid4()) for _ in range(4)]
    for i, actor in enumerate(actors + [actors[0], None]):
        notify(user, notification_type="like", group_key="post-1-likes", actor_user_id=actor, title=f"like {i}")
    alone = notify(user, notification_type="mention")["notification_id"]
    notify(user, group_key="post-2-comments")
    keys = walk(get)
    assert keys == ["post-2-comments", alone, "post-1-likes"]  # never twice, latest first
    assert len(set(keys)) == len(keys)
    likes = next(g for g in get().get_json()["items"] if g["group_key"] == "post-1-likes")
    assert likes["notifications_count"] == likes["unread_count"] == 6
    assert likes["sample_actor_user_ids"] == [actors[0], actors[3], actors[2]]  # distinct, newest first, no null
    assert likes["latest"] == client.get(f"{P}/{likes['latest']['notification_id']}",
                                         headers=user_headers(user)).get_json()
    assert likes["latest"]["title"] == "like 5" and likes["oldest_delivered_at"] < likes["latest"]["delivered_at"]
    single = next(g for g in get().get_json()["items"] if g["group_key"] is None)
    assert single["notifications_count"] == 1 and single["latest"]["notification_id"] == alone
    assert single["oldest_delivered_at"] == single["latest"]["delivered_at"]


def test_a_group_that_gains_a_member_moves_to_the_top(get, user, notify):
    notify(user, group_key="a")
    notify(user, group_key="b")
    assert walk(get) == ["b", "a"]
    notify(user, group_key="a")
    assert walk(get) == ["a", "b"]


def test_unread_filter_hides_fully_read_groups_but_counts_all_members(get, user, notify, client, user_headers):
    h = user_headers(user)
    read_group = [notify(user, group_key="done")["notification_id"] for _ in range(2)]
    mixed = [notify(user, group_key="mixed")["notification_id"] for _ in range(3)]
    for nid in read_group + mixed[:2]:
        client.put(f"{P}/{nid}/read", headers=h)
    items = get("?unread=true").get_json()["items"]
    assert [g["group_key"] for g in items] == ["mixed"]
    assert (items[0]["notifications_count"], items[0]["unread_count"]) == (3, 1)
    assert walk(get, "limit=1&unread=true") == ["mixed"]


def test_bulk_by_group_key_and_the_clock(get, user, notify, client, user_headers, database):
    h = user_headers(user)
    members = [notify(user, group_key="g", expires_at=ahead(3600 if i else 600))["notification_id"]
               for i in range(3)]
    client.put(f"{P}/{members[1]}/snooze", json={"until": ahead(1200)}, headers=h)
    (group,) = get().get_json()["items"]
    assert group["notifications_count"] == 2 and group["latest"]["notification_id"] == members[2]
    travel(database, user, 900)  # the first member expires
    (group,) = get().get_json()["items"]
    assert group["notifications_count"] == 1
    travel(database, user, 400)  # the snoozed one wakes: on top of its group
    (group,) = get().get_json()["items"]
    assert group["notifications_count"] == 2 and group["latest"]["notification_id"] == members[1]
    r = client.post(f"{P}/bulk", json={"action": "archive", "group_key": "g"}, headers=h).get_json()
    assert r["updated_count"] == 2
    assert get().get_json() == {"items": [], "next_cursor": None}  # a group with no inbox member is gone


def test_etag_and_cursor_scope(get, user, notify, client, make_user, user_headers):
    for key in ("a", "b", "c"):
        notify(user, group_key=key)
    first = get("?limit=1")
    etag = first.headers["ETag"]
    assert get("?limit=1", **{"If-None-Match": etag}).status_code == 304
    notify(user, group_key="a")
    assert get("?limit=1", **{"If-None-Match": etag}).status_code == 200
    cursor = get("?limit=1").get_json()["next_cursor"]
    assert_problem(get(f"?limit=1&unread=true&cursor={cursor}"), 422, "validation_error")
    other = make_user()
    assert_problem(client.get(f"{P}/groups?cursor={cursor}", headers=user_headers(other)), 422, "validation_error")


@pytest.mark.parametrize("query", ["?limit=0", "?limit=101", "?unread=yes", "?status=read", "?cursor=x",
                                   "?limit=1&limit=2"])
def test_groups_validation(get, query):
    assert_problem(get(query), 422, "validation_error")
