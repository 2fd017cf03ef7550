"""Reads on a real streaming standby: where they land (proved by what the server answered), read-your-
writes while replay is paused, the ETag as a floor, lag and a stopped standby skipped with no failed read."""
from __future__ import annotations

import threading
import time
from contextlib import contextmanager

import psycopg
import pytest
from prometheus_client import REGISTRY

import pgpair
from notifications_api.db import replica as replica_module
from notifications_api.web.auth import issue_token

P = "/api/v1"
DIRECT_CREATE = ("SELECT result FROM activity.sp_inbox_create(ARRAY[%s]::uuid[], 'comment', %s, NULL, NULL,"
                 " NULL, NULL, NULL, '{}'::jsonb, 'normal', NULL, NULL, NULL, false)")


def reads(target: str, reason: str) -> float:
    return REGISTRY.get_sample_value("notifications_api_db_reads_total",
                                     {"target": target, "reason": reason}) or 0.0


def skips(reason: str) -> float:
    return REGISTRY.get_sample_value("notifications_api_db_replica_skips_total", {"reason": reason}) or 0.0


def auth(app, user_id: str, **extra: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {issue_token(app.config, user_id)}", **extra}


def create(client, app, user_id: str, title: str = "Ana commented") -> str:
    """Through the API: a write, which records the user's floor."""
    response = client.post(f"{P}/notifications", headers={"X-Service-Token": app.config["SERVICE_TOKEN"]},
                           json={"user_id": user_id, "notification_type": "comment", "title": title})
    assert response.status_code in (200, 201), response.get_json()
    return response.get_json()["results"][0]["notification"]["notification_id"]


def create_behind_the_apps_back(servers, user_id: str, title: str) -> None:
    """On the primary, not through an app: no floor anywhere. A read that misses it came from the standby."""
    with psycopg.connect(servers.primary, autocommit=True) as conn:
        assert conn.execute(DIRECT_CREATE, (user_id, title)).fetchone()[0] == "created"


def titles(client, app, user_id: str) -> list[str]:
    response = client.get(f"{P}/notifications", headers=auth(app, user_id))
    assert response.status_code == 200, response.get_json()
    return [item["title"] for item in response.get_json()["items"]]


@contextmanager
def replay_paused(servers):
    with psycopg.connect(servers.standby, autocommit=True) as conn:
        conn.execute("SELECT pg_wal_replay_pause()")
        try:
            yield
        finally:
            conn.execute("SELECT pg_wal_replay_resume()")
    pgpair.wait_replayed(servers.primary, servers.standby)


def test_the_standby_answers_every_read_only_call(servers, replica_app, make_user):
    app = replica_app()
    client = app.test_client()
    user = make_user()
    notification_id = create(client, app, user)
    pgpair.wait_replayed(servers.primary, servers.standby)
    before = reads("standby", "replayed")
    headers = auth(app, user)
    for path in ("/notifications/unread/count", "/notifications", f"/notifications/{notification_id}",
                 "/notifications/groups", "/notifications/settings", "/notifications/stream"):
        response = client.get(P + path, headers=headers)
        assert response.status_code == 200, (path, response.get_data())
    assert reads("standby", "replayed") - before == 6
    # proved by the answer: what the primary has and the paused standby has not is not in it
    with replay_paused(servers):
        create_behind_the_apps_back(servers, user, "only on the primary")
        assert titles(client, app, user) == ["Ana commented"]
        counts = client.get(f"{P}/notifications/unread/count", headers=headers).get_json()
        assert counts["unread_count"] == 1
    assert titles(client, app, user) == ["only on the primary", "Ana commented"]


def test_a_writer_reads_its_write_while_others_keep_the_standby(servers, replica_app, make_user):
    app = replica_app()
    client = app.test_client()
    a, b = make_user(), make_user()
    mine = create(client, app, a, "for A")
    create(client, app, b, "for B")
    pgpair.wait_replayed(servers.primary, servers.standby)
    old_tag = client.get(f"{P}/notifications/unread/count", headers=auth(app, a)).headers["ETag"]
    with replay_paused(servers):
        assert client.put(f"{P}/notifications/{mine}/read", headers=auth(app, a)).status_code == 200
        own = reads("primary", "own_write")
        # A: the list, the count and the revalidation are current (the primary's)
        listed = client.get(f"{P}/notifications", headers=auth(app, a)).get_json()["items"]
        assert [item["status"] for item in listed] == ["read"]
        polled = client.get(f"{P}/notifications/unread/count", headers=auth(app, a, **{"If-None-Match": old_tag}))
        assert polled.status_code == 200 and polled.get_json()["unread_count"] == 0
        again = client.get(f"{P}/notifications/unread/count",
                           headers=auth(app, a, **{"If-None-Match": polled.headers["ETag"]}))
        assert again.status_code == 304
        assert reads("primary", "own_write") - own == 3
        # B: still the standby (it has not replayed what only the primary has)
        create_behind_the_apps_back(servers, b, "B, only on the primary")
        standby = reads("standby", "replayed")
        assert titles(client, app, b) == ["for B"]
        assert reads("standby", "replayed") - standby == 1
    # replayed past A's write: A's reads are the standby's again
    with replay_paused(servers):
        create_behind_the_apps_back(servers, a, "A, only on the primary")
        assert titles(client, app, a) == ["for A"]


def test_the_etag_a_client_sends_is_a_floor(servers, replica_app, make_user):
    """Two processes (no shared floors): the one that did not see the write still never answers a
    version older than the client's ETag."""
    writer, reader = replica_app(), replica_app()
    a = make_user()
    mine = create(writer.test_client(), writer, a)
    pgpair.wait_replayed(servers.primary, servers.standby)
    with replay_paused(servers):
        assert writer.test_client().put(f"{P}/notifications/{mine}/read", headers=auth(writer, a)).status_code == 200
        fresh = writer.test_client().get(f"{P}/notifications/unread/count", headers=auth(writer, a))
        assert fresh.get_json()["unread_count"] == 0
        version = reads("primary", "version")
        polled = reader.test_client().get(f"{P}/notifications/unread/count",
                                          headers=auth(reader, a, **{"If-None-Match": fresh.headers["ETag"]}))
        assert polled.status_code == 304 and polled.headers["ETag"] == fresh.headers["ETag"]
        assert reads("primary", "version") - version == 1


def test_floors_shared_through_redis_hold_across_processes(servers, replica_app, make_user, redis_url):
    writer, reader = replica_app(REDIS_URL=redis_url), replica_app(REDIS_URL=redis_url)
    a = make_user()
    mine = create(writer.test_client(), writer, a)
    pgpair.wait_replayed(servers.primary, servers.standby)
    reader.test_client().get(f"{P}/notifications/unread/count", headers=auth(reader, a))
    # a process that just subscribed has missed earlier floors: the primary's for one lag limit
    time.sleep(max(reader.config["DB_MAX_REPLICA_LAG_SECONDS"], replica_module.SKIP_SECONDS) + 0.1)
    standby = reads("standby", "replayed")
    tag = reader.test_client().get(f"{P}/notifications/unread/count", headers=auth(reader, a)).headers["ETag"]
    assert reads("standby", "replayed") - standby == 1
    with replay_paused(servers):
        assert writer.test_client().put(f"{P}/notifications/{mine}/read", headers=auth(writer, a)).status_code == 200
        # another device, another process: its ETag is still the standby's current one, yet the
        # answer is the new body (a 304 here would be a body that is no longer current)
        own = reads("primary", "own_write")
        polled = reader.test_client().get(f"{P}/notifications/unread/count",
                                          headers=auth(reader, a, **{"If-None-Match": tag}))
        assert polled.status_code == 200 and polled.get_json()["unread_count"] == 0
        assert reads("primary", "own_write") - own == 1


def test_a_standby_too_far_behind_is_skipped_then_used_again(servers, replica_app, make_user):
    app = replica_app(DB_MAX_REPLICA_LAG_SECONDS=0.3)
    client = app.test_client()
    b = make_user()
    create(client, app, b, "first")
    pgpair.wait_replayed(servers.primary, servers.standby)
    skipped = skips("lag")
    with replay_paused(servers):
        create_behind_the_apps_back(servers, b, "while paused")
        assert titles(client, app, b) == ["first"]  # behind, but not for long yet: the standby
        time.sleep(replica_module.STATUS_SECONDS + 0.4)
        assert titles(client, app, b) == ["while paused", "first"]  # too far behind: the primary
        assert skips("lag") - skipped == 1
        health = client.get("/health")
        assert health.status_code == 200
        assert health.get_json()["checks"]["database_replica"] == "degraded"
    time.sleep(replica_module.SKIP_SECONDS + 0.1)
    standby = reads("standby", "replayed")
    titles(client, app, b)
    assert reads("standby", "replayed") - standby == 1
    assert client.get("/health").get_json()["checks"]["database_replica"] == "ok"


def test_a_poll_that_must_fold_the_clock_goes_to_the_primary_once(servers, replica_app, make_user):
    """A notification expired: the count must fold it in (a write). The standby refuses (25006),
    the primary folds; once the fold is replayed the next poll is the standby's again."""
    app = replica_app()
    client = app.test_client()
    user = make_user()
    create(client, app, user, "stays")
    with psycopg.connect(servers.primary, autocommit=True) as conn:
        conn.execute("SELECT * FROM activity.sp_inbox_create(ARRAY[%s]::uuid[], 'comment', 'expires', NULL, "
                     "NULL, NULL, NULL, NULL, '{}'::jsonb, 'normal', NULL, now() + interval '1 second', NULL, "
                     "false)", (user,))
    pgpair.wait_replayed(servers.primary, servers.standby)
    assert client.get(f"{P}/notifications/unread/count", headers=auth(app, user)).get_json()["unread_count"] == 2
    time.sleep(1.2)
    folds = reads("primary", "fold")
    counted = client.get(f"{P}/notifications/unread/count", headers=auth(app, user)).get_json()
    assert counted["unread_count"] == 1 and reads("primary", "fold") - folds == 1
    pgpair.wait_replayed(servers.primary, servers.standby)
    standby = reads("standby", "replayed")
    assert client.get(f"{P}/notifications/unread/count", headers=auth(app, user)).get_json()["unread_count"] == 1
    assert reads("standby", "replayed") - standby == 1 and reads("primary", "fold") - folds == 1


def test_the_replica_functions_on_each_server(servers):
    with psycopg.connect(servers.app_primary, autocommit=True) as p, \
            psycopg.connect(servers.app_standby, autocommit=True) as s:
        first = p.execute("SELECT activity.sp_wal_position()").fetchone()[0]
        with psycopg.connect(servers.primary, autocommit=True) as admin:
            admin.execute("CREATE TABLE IF NOT EXISTS wal_probe (i int)")
            admin.execute("INSERT INTO wal_probe VALUES (1)")
        second = p.execute("SELECT activity.sp_wal_position()").fetchone()[0]
        assert second > first > 0
        in_recovery, written, receive, receiving = p.execute("SELECT * FROM activity.sp_replica_status()").fetchone()
        assert (in_recovery, receive, receiving) == (False, None, False) and written >= second  # a primary: written
        pgpair.wait_replayed(servers.primary, servers.standby)
        in_recovery, replay, receive, receiving = s.execute("SELECT * FROM activity.sp_replica_status()").fetchone()
        assert in_recovery and receiving and receive >= replay >= second
        with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState):
            s.execute("SELECT activity.sp_wal_position()")  # a standby has no insert position


def test_a_standby_stopped_under_load_fails_no_read(servers, replica_app, make_user):
    app = replica_app()
    users = [make_user() for _ in range(3)]
    for user in users:
        create(app.test_client(), app, user)
    pgpair.wait_replayed(servers.primary, servers.standby)
    statuses: list[int] = []
    stop = threading.Event()

    def load(user: str) -> None:
        client = app.test_client()
        headers = auth(app, user)
        while not stop.is_set():
            for path in ("/notifications/unread/count", "/notifications"):
                statuses.append(client.get(P + path, headers=headers).status_code)

    threads = [threading.Thread(target=load, args=(user,)) for user in users]
    down = skips("down")
    for thread in threads:
        thread.start()
    try:
        time.sleep(0.5)
        served_by_standby = reads("standby", "replayed")
        servers.pair.stop_standby()
        time.sleep(1.5)
        assert app.test_client().get("/health").get_json()["checks"]["database_replica"] == "degraded"
    finally:
        stop.set()
        for thread in threads:
            thread.join(10)
        servers.pair.start_standby()
    assert served_by_standby > 0 and skips("down") - down >= 1
    assert statuses and set(statuses) == {200}, {s: statuses.count(s) for s in set(statuses)}
    assert reads("primary", "down") > 0
