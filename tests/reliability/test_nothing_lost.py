"""Concurrent creates with retries that reuse their dedupe key, PostgreSQL restarted in the middle:
every create is stored exactly once, and a 503 never hides a write that a retry would duplicate."""
from __future__ import annotations

import http.client
import threading
import time
from collections import Counter, defaultdict

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from harness import ReplyCuttingProxy, request

API = "/api/v1"
THREADS = 8
CREATES_PER_THREAD = 60
MAX_ATTEMPTS = 40

pytestmark = pytest.mark.e2e


def test_creates_survive_a_restart_exactly_once(pg, start_gunicorn):
    server = start_gunicorn()
    users = [pg.create_user() for _ in range(4)]
    service = {"X-Service-Token": server.env["SERVICE_TOKEN"]}
    attempts: dict[str, list] = defaultdict(list)  # key -> [(status or error, result, notification_id)]
    targets: dict[str, str] = {}
    progress = Counter()

    def create_all(index: int) -> None:
        for n in range(CREATES_PER_THREAD):
            key = f"lost-{index}-{n}"
            user_id = users[(index + n) % len(users)]
            targets[key] = user_id
            body = {"user_id": user_id, "notification_type": "comment", "title": f"create {n}",
                    "payload": {"thread": index, "n": n}}
            # Half send the key in the body, half as Idempotency-Key: the same thing.
            headers = {**service, "Idempotency-Key": key} if n % 2 else service
            if not n % 2:
                body["dedupe_key"] = key
            for _ in range(MAX_ATTEMPTS):
                try:
                    r = request(server.port, "POST", f"{API}/notifications", body, headers, timeout=10)
                except (OSError, http.client.HTTPException) as exc:
                    attempts[key].append((repr(exc), None, None))
                    time.sleep(0.1)
                    continue
                if r.status in (200, 201):
                    result = r.body["results"][0]
                    attempts[key].append((r.status, result["result"], result["notification"]["notification_id"]))
                    break
                attempts[key].append((r.status, r.body.get("code"), None))
                assert r.status == 503, r.body
                time.sleep(float(r.headers.get("retry-after", "1")) / 10)  # a hurried client
            progress["done"] += 1

    threads = [threading.Thread(target=create_all, args=(i,), daemon=True) for i in range(THREADS)]
    for thread in threads:
        thread.start()
    total = THREADS * CREATES_PER_THREAD
    while progress["done"] < total // 3:
        time.sleep(0.02)
    pg.restart(down_seconds=1.5)
    while progress["done"] < total * 2 // 3:
        time.sleep(0.02)
    assert pg.terminate_app_backends() >= 1  # and a second, sharper cut: live sessions killed
    for thread in threads:
        thread.join(120)

    with psycopg.connect(pg.admin) as conn:
        stored = {key: (str(user_id), str(nid), count) for key, user_id, nid, count in conn.execute(
            "SELECT dedupe_key, user_id, min(notification_id::text), count(*) FROM activity.notifications"
            " WHERE dedupe_key LIKE 'lost-%' GROUP BY dedupe_key, user_id").fetchall()}
        counters = dict(conn.execute(
            "SELECT c.user_id::text, c.unread_count - (SELECT count(*) FROM activity.notifications n"
            "  WHERE n.user_id = c.user_id AND n.read_at IS NULL AND n.archived_at IS NULL)"
            " FROM activity.notification_counters c WHERE c.user_id = ANY(%s::uuid[])", (users,)).fetchall())

    statuses = Counter(a[0] if isinstance(a[0], int) else "connection error" for tries in attempts.values()
                       for a in tries)
    retried = [key for key, tries in attempts.items() if len(tries) > 1]
    replayed = [key for key, tries in attempts.items() if tries[-1][1] == "duplicate"]
    print(f"\n{total} creates, {sum(statuses.values())} attempts: {dict(statuses)}; "
          f"{len(retried)} retried; {len(replayed)} retries found their write already stored (duplicate)")

    assert len(attempts) == total
    for key, tries in attempts.items():
        final_status, result, notification_id = tries[-1]
        assert final_status in (200, 201), (key, tries)  # every create eventually succeeded
        assert key in stored, (key, tries)
        user_id, stored_id, count = stored[key]
        assert count == 1 and user_id == targets[key], (key, stored[key])
        assert notification_id == stored_id, (key, tries)  # the client holds the stored one
        # created only on the attempt that got 201; a duplicate means an earlier attempt's
        # write committed although its client saw a 503 or a dropped connection.
        assert result == ("created" if final_status == 201 else "duplicate"), tries
        assert all(a[1] != "created" for a in tries[:-1])
        if result == "duplicate":
            assert len(tries) > 1, (key, tries)
    assert len(stored) == total
    assert set(counters.values()) == {0}, counters  # the unread counters agree with the rows
    assert statuses[503] > 0, "the restart was not observed"


def test_a_create_whose_reply_was_lost_is_found_as_duplicate_on_retry(pg, start_gunicorn):
    """The hard case: the write committed but the reply never reached the app (a 503 to the client)."""
    proxy = ReplyCuttingProxy(f"{pg.socket_dir}/.s.PGSQL.{pg.port}", marker=b"cut-me")
    try:
        server = start_gunicorn(WEB_CONCURRENCY="1",
                                DATABASE_URL=make_conninfo(pg.app, host="127.0.0.1", port=proxy.port))
        user_id = pg.create_user()
        service = {"X-Service-Token": server.env["SERVICE_TOKEN"]}
        for n in range(3):
            key = f"cut-{n}"
            body = {"user_id": user_id, "notification_type": "comment", "title": f"cut-me {n}",
                    "dedupe_key": key}
            proxy.budget = 1
            first = request(server.port, "POST", f"{API}/notifications", body, service)
            assert first.status == 503 and first.body["code"] == "database_unavailable", first.body
            assert proxy.cut == n + 1
            retry = request(server.port, "POST", f"{API}/notifications", body, service)
            assert retry.status == 200, retry.body
            assert retry.body["results"][0]["result"] == "duplicate"
            assert retry.headers["idempotent-replayed"] == "true"
        with psycopg.connect(pg.admin) as conn:
            rows = conn.execute("SELECT dedupe_key, count(*) FROM activity.notifications"
                                " WHERE user_id = %s GROUP BY dedupe_key ORDER BY 1", (user_id,)).fetchall()
        assert rows == [("cut-0", 1), ("cut-1", 1), ("cut-2", 1)]
    finally:
        proxy.close()
