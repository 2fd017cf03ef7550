"""End-user endpoints 1-6 against the real database (inbox v2 additions: test_inbox_v2.py)."""
import re
import time
import uuid
from datetime import datetime, timedelta, timezone
from urllib.parse import parse_qs, urlparse

import psycopg
import pytest

from test_errors import assert_problem

P = "/api/v1/notifications"
TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")
FIELDS = {"notification_id", "user_id", "notification_type", "title", "message", "actor_user_id",
          "target_type", "target_id", "action_url", "payload", "priority", "group_key", "status",
          "created_at", "delivered_at", "seen_at", "read_at", "archived_at", "snoozed_until", "expires_at"}


def test_notification_object_shape(client, user, user_headers, notify):
    actor = str(uuid.uuid4())
    created = notify(user, message="Nice route!", actor_user_id=actor, target_type="post",
                     target_id="post-812", action_url="https://app.example.com/posts/812#c-9",
                     payload={"comment_id": 9}, group_key="post-812-comments")
    response = client.get(f"{P}/{created['notification_id']}", headers=user_headers(user))
    assert response.status_code == 200
    body = response.get_json()
    assert set(body) == FIELDS
    assert body == created
    assert body["user_id"] == user and body["actor_user_id"] == actor
    assert body["status"] == "unread" and body["priority"] == "normal"
    assert body["payload"] == {"comment_id": 9}
    assert TIMESTAMP.match(body["created_at"]) and body["delivered_at"] == body["created_at"]
    assert body["read_at"] is None and body["archived_at"] is None and body["expires_at"] is None
    assert body["seen_at"] is None and body["snoozed_until"] is None
    assert list(body) == ["notification_id", "user_id", "notification_type", "title", "message", "actor_user_id",
                          "target_type", "target_id", "action_url", "payload", "priority", "group_key", "status",
                          "created_at", "delivered_at", "seen_at", "read_at", "archived_at", "snoozed_until",
                          "expires_at"]  # API.md's order


def test_list_newest_first_with_pagination(client, user, user_headers, notify):
    ids = [notify(user, title=f"n{i}")["notification_id"] for i in range(5)]
    seen, url, pages = [], f"{P}?limit=2", 0
    while url:
        response = client.get(url, headers=user_headers(user))
        assert response.status_code == 200
        body = response.get_json()
        seen += [item["notification_id"] for item in body["items"]]
        pages += 1
        if body["next_cursor"]:
            link = response.headers["Link"]
            target = re.match(r'<([^>]+)>; rel="next"', link).group(1)
            parsed = urlparse(target)
            assert parsed.scheme == "http" and parsed.netloc == "localhost"
            assert parse_qs(parsed.query)["cursor"] == [body["next_cursor"]]
            url = f"{parsed.path}?{parsed.query}"
        else:
            assert "Link" not in response.headers
            url = None
    assert seen == list(reversed(ids))
    assert pages == 3


def test_cursor_bound_to_filters_and_user(client, user, make_user, user_headers, notify):
    for i in range(3):
        notify(user, title=f"n{i}")
    first = client.get(f"{P}?limit=1", headers=user_headers(user)).get_json()
    cursor = first["next_cursor"]
    assert client.get(f"{P}?limit=1&cursor={cursor}", headers=user_headers(user)).status_code == 200
    # limit may change; filters and user may not
    assert client.get(f"{P}?limit=5&cursor={cursor}", headers=user_headers(user)).status_code == 200
    assert_problem(client.get(f"{P}?status=all&cursor={cursor}", headers=user_headers(user)),
                   422, "validation_error")
    assert_problem(client.get(f"{P}?type=comment&cursor={cursor}", headers=user_headers(user)),
                   422, "validation_error")
    other = make_user()
    assert_problem(client.get(f"{P}?cursor={cursor}", headers=user_headers(other)), 422, "validation_error")
    tampered = cursor[:-2] + ("A" if cursor[-2] != "A" else "B") + cursor[-1]
    body = assert_problem(client.get(f"{P}?cursor={tampered}", headers=user_headers(user)),
                          422, "validation_error")
    assert "cursor" in body["errors"]


def test_status_and_type_filters(client, user, user_headers, notify):
    a = notify(user, notification_type="comment")["notification_id"]
    b = notify(user, notification_type="mention")["notification_id"]
    c = notify(user, notification_type="reaction")["notification_id"]
    h = user_headers(user)
    client.put(f"{P}/{b}/read", headers=h)
    client.delete(f"{P}/{c}", headers=h)

    def ids(query):
        response = client.get(f"{P}?{query}", headers=h)
        assert response.status_code == 200, response.get_json()
        return [item["notification_id"] for item in response.get_json()["items"]]

    assert ids("") == [b, a]
    assert ids("status=unread") == [a]
    assert ids("status=read") == [b]
    assert ids("status=archived") == [c]
    assert ids("status=all") == [c, b, a]
    assert ids("status=all&type=comment,reaction") == [c, a]
    assert ids("status=all&type=comment&type=mention") == [b, a]


@pytest.mark.parametrize("query", ["status=bogus", "limit=101", "limit=abc", "limit=1.5", "limit=-1",
                                   "type=Bad Type", "limit=1&limit=2",
                                   "type=" + ",".join(f"t{i}" for i in range(21))])
def test_list_query_validation(client, user, user_headers, query):
    assert_problem(client.get(f"{P}?{query}", headers=user_headers(user)), 422, "validation_error")


def test_list_etag_and_304(client, user, user_headers, notify):
    notify(user)
    h = user_headers(user)
    first = client.get(P, headers=h)
    etag = first.headers["ETag"]
    assert first.headers["Cache-Control"] == "private, no-cache"
    again = client.get(P, headers={**h, "If-None-Match": etag})
    assert again.status_code == 304 and again.get_data() == b"" and again.headers["ETag"] == etag
    notify(user, title="another")
    changed = client.get(P, headers={**h, "If-None-Match": etag})
    assert changed.status_code == 200 and changed.headers["ETag"] != etag


def test_get_mark_read_unread_idempotent(client, user, user_headers, notify):
    nid = notify(user)["notification_id"]
    h = user_headers(user)
    first = client.put(f"{P}/{nid}/read", headers=h).get_json()
    assert first["status"] == "read" and first["read_at"]
    second = client.patch(f"{P}/{nid}/read", headers=h).get_json()
    assert second["read_at"] == first["read_at"]
    unread = client.delete(f"{P}/{nid}/read", headers=h)
    assert unread.status_code == 200
    assert unread.get_json()["status"] == "unread" and unread.get_json()["read_at"] is None


def test_other_users_notification_is_not_found(client, user, make_user, user_headers, notify):
    nid = notify(user)["notification_id"]
    intruder = user_headers(make_user())
    for response in (client.get(f"{P}/{nid}", headers=intruder),
                     client.put(f"{P}/{nid}/read", headers=intruder),
                     client.delete(f"{P}/{nid}/read", headers=intruder),
                     client.delete(f"{P}/{nid}", headers=intruder),
                     client.delete(f"{P}/{nid}?permanent=true", headers=intruder)):
        assert_problem(response, 404, "notification_not_found")
    assert client.get(f"{P}/{nid}", headers=user_headers(user)).get_json()["status"] == "unread"


def test_unknown_id_is_not_found(client, user, user_headers):
    assert_problem(client.get(f"{P}/{uuid.uuid4()}", headers=user_headers(user)),
                   404, "notification_not_found")


def test_bulk_mark_read(client, user, make_user, user_headers, notify):
    h = user_headers(user)
    comments = [notify(user, notification_type="comment")["notification_id"] for _ in range(3)]
    mention = notify(user, notification_type="mention")["notification_id"]
    other_users = notify(make_user())["notification_id"]
    response = client.post(f"{P}/mark-read", json={"notification_ids": comments[:2] + [other_users]},
                           headers=h)
    assert response.get_json() == {"updated_count": 2, "unread_count": 2, "unseen_count": 2}
    response = client.post(f"{P}/mark-read", json={"notification_type": "comment"}, headers=h)
    assert response.get_json() == {"updated_count": 1, "unread_count": 1, "unseen_count": 1}
    response = client.post(f"{P}/mark-read", json={"all": True}, headers=h)
    assert response.get_json() == {"updated_count": 1, "unread_count": 0, "unseen_count": 0}
    assert client.get(f"{P}/{mention}", headers=h).get_json()["status"] == "read"


def test_bulk_before_keeps_newer_unread(client, user, user_headers, notify, database):
    h = user_headers(user)
    old = notify(user)
    with psycopg.connect(database.admin, autocommit=True) as conn:
        conn.execute("UPDATE activity.notifications SET created_at = created_at - interval '1 hour',"
                     " delivered_at = delivered_at - interval '1 hour' "
                     "WHERE notification_id = %s", (old["notification_id"],))
    fresh = notify(user)
    cutoff = (datetime.now(timezone.utc) - timedelta(minutes=30)).isoformat()
    response = client.post(f"{P}/mark-read", json={"all": True, "before": cutoff}, headers=h)
    assert response.get_json() == {"updated_count": 1, "unread_count": 1, "unseen_count": 1}
    assert client.get(f"{P}/{fresh['notification_id']}", headers=h).get_json()["status"] == "unread"


@pytest.mark.parametrize("body", [{}, {"all": False}, {"before": "2026-01-01T00:00:00Z"},
                                  {"all": "yes"}, {"all": 1}, {"notification_ids": []},
                                  {"notification_ids": ["nope"]}, {"before": "2026-01-01T00:00:00"},
                                  {"all": True, "extra": 1}, [1, 2]])
def test_bulk_validation(client, user, user_headers, body):
    assert_problem(client.post(f"{P}/mark-read", json=body, headers=user_headers(user)),
                   422, "validation_error")


def test_bulk_field_path_of_bad_id(client, user, user_headers):
    body = {"notification_ids": [str(uuid.uuid4()), str(uuid.uuid4()), str(uuid.uuid4()), "bad"]}
    problem = assert_problem(client.post(f"{P}/mark-read", json=body, headers=user_headers(user)),
                             422, "validation_error")
    assert "notification_ids.3" in problem["errors"]


def test_archive_and_delete(client, user, user_headers, notify):
    h = user_headers(user)
    nid = notify(user)["notification_id"]
    response = client.delete(f"{P}/{nid}", headers=h)
    assert response.status_code == 204 and response.get_data() == b""
    archived = client.get(f"{P}/{nid}", headers=h).get_json()
    assert archived["status"] == "archived" and archived["archived_at"]
    assert client.delete(f"{P}/{nid}", headers=h).status_code == 204
    assert client.get(f"{P}/unread/count", headers=h).get_json()["unread_count"] == 0
    assert client.delete(f"{P}/{nid}?permanent=1", headers=h).status_code == 204
    assert_problem(client.get(f"{P}/{nid}", headers=h), 404, "notification_not_found")
    assert_problem(client.delete(f"{P}/{nid}", headers=h), 404, "notification_not_found")


def test_permanent_flag_validation(client, user, user_headers, notify):
    nid = notify(user)["notification_id"]
    assert_problem(client.delete(f"{P}/{nid}?permanent=yes", headers=user_headers(user)),
                   422, "validation_error")


def test_unread_count_with_etag_and_poll_interval(client, user, user_headers, notify):
    h = user_headers(user)
    empty = client.get(f"{P}/unread/count", headers=h)
    assert empty.get_json() == {"unread_count": 0, "unseen_count": 0, "by_type": {}}
    assert empty.headers["X-Poll-Interval"] == "30"
    notify(user, notification_type="comment")
    notify(user, notification_type="comment")
    mention = notify(user, notification_type="mention")["notification_id"]
    response = client.get(f"{P}/unread/count", headers=h)
    assert response.get_json() == {"unread_count": 3, "unseen_count": 3, "by_type": {"comment": 2, "mention": 1}}
    etag = response.headers["ETag"]
    cached = client.get(f"{P}/unread/count", headers={**h, "If-None-Match": etag})
    assert cached.status_code == 304 and cached.get_data() == b""
    assert cached.headers["ETag"] == etag and cached.headers["X-Poll-Interval"] == "30"
    client.put(f"{P}/{mention}/read", headers=h)
    after = client.get(f"{P}/unread/count", headers={**h, "If-None-Match": etag})
    assert after.status_code == 200 and after.headers["ETag"] != etag
    assert after.get_json() == {"unread_count": 2, "unseen_count": 2, "by_type": {"comment": 2}}


def test_unread_count_etag_is_per_user(client, make_user, user_headers, notify):
    first, second = make_user(), make_user()
    for someone in (first, second):  # the same counts and version for both
        notify(someone, notification_type="comment")
    a = client.get(f"{P}/unread/count", headers=user_headers(first))
    b = client.get(f"{P}/unread/count", headers=user_headers(second))
    assert a.get_json() == b.get_json() and a.headers["ETag"] != b.headers["ETag"]
    # one user's tag never validates another's copy (a browser cache shared by two logins)
    crossed = client.get(f"{P}/unread/count", headers={**user_headers(second), "If-None-Match": a.headers["ETag"]})
    assert crossed.status_code == 200 and crossed.headers["ETag"] == b.headers["ETag"]


@pytest.mark.parametrize("sent", ["{etag}", "W/{etag}", '"x", {etag}', "*"])
def test_unread_count_if_none_match_forms(client, user, user_headers, notify, sent):
    notify(user)
    etag = client.get(f"{P}/unread/count", headers=user_headers(user)).headers["ETag"]
    headers = {**user_headers(user), "If-None-Match": sent.format(etag=etag)}
    response = client.get(f"{P}/unread/count", headers=headers)
    assert response.status_code == 304 and response.headers["ETag"] == etag


@pytest.mark.parametrize("mangle", [
    lambda tag: tag.replace('"v', '"v0'),  # same numbers, not our spelling
    lambda tag: tag[:-2] + ('0"' if tag[-2] != "0" else '1"'),  # another owner tag
    lambda tag: tag.strip('"'),  # unquoted
    lambda tag: '"v1.999999999999999999999999.x"',
    # our own owner tag with numbers past bigint: a plain miss, never a database error
    lambda tag: '"v99999999999999999999999.1.' + tag.rsplit(".", 1)[1],
    lambda tag: '"v1.99999999999999999999999.' + tag.rsplit(".", 1)[1],
    lambda tag: '"v\u0661.1.abc"',
])
def test_unread_count_foreign_or_mangled_tags_get_a_200(client, user, user_headers, notify, mangle):
    notify(user)
    first = client.get(f"{P}/unread/count", headers=user_headers(user))
    headers = {**user_headers(user), "If-None-Match": mangle(first.headers["ETag"])}
    response = client.get(f"{P}/unread/count", headers=headers)
    assert response.status_code == 200
    assert response.get_json() == first.get_json() and response.headers["ETag"] == first.headers["ETag"]


def test_unread_count_etag_changes_when_one_expires(client, user, user_headers, notify):
    h = user_headers(user)
    notify(user, expires_at=(datetime.now(timezone.utc) + timedelta(seconds=1)).isoformat())
    notify(user, notification_type="mention")
    before = client.get(f"{P}/unread/count", headers=h)
    time.sleep(1.1)  # nothing written: only the clock moved
    after = client.get(f"{P}/unread/count", headers={**h, "If-None-Match": before.headers["ETag"]})
    assert after.status_code == 200 and after.headers["ETag"] != before.headers["ETag"]
    assert after.get_json() == {"unread_count": 1, "unseen_count": 1, "by_type": {"mention": 1}}


def test_expired_notifications_are_invisible(client, user, user_headers, notify):
    h = user_headers(user)
    soon = datetime.now(timezone.utc) + timedelta(seconds=1)
    nid = notify(user, expires_at=soon.isoformat())["notification_id"]
    notify(user, title="stays")
    assert client.get(f"{P}/unread/count", headers=h).get_json()["unread_count"] == 2
    time.sleep(max(0.0, (soon - datetime.now(timezone.utc)).total_seconds()) + 0.05)
    expected = {"unread_count": 1, "unseen_count": 1, "by_type": {"comment": 1}}
    assert client.get(f"{P}/unread/count", headers=h).get_json() == expected
    assert [i["title"] for i in client.get(P, headers=h).get_json()["items"]] == ["stays"]
    assert_problem(client.get(f"{P}/{nid}", headers=h), 404, "notification_not_found")
    assert_problem(client.put(f"{P}/{nid}/read", headers=h), 404, "notification_not_found")
    assert client.post(f"{P}/mark-read", json={"all": True}, headers=h).get_json() == {
        "updated_count": 1, "unread_count": 0, "unseen_count": 0}


def test_bulk_type_rejects_trailing_newline(client, user, user_headers):
    assert_problem(client.post(f"{P}/mark-read", json={"notification_type": "comment\n"},
                               headers=user_headers(user)), 422, "validation_error")
