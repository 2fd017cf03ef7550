"""The delivery worker against a local HTTP server standing in for the Email API."""
from __future__ import annotations

import random
import time
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime

import psycopg
import pytest
from psycopg import errors
from werkzeug import Response

from email_helpers import API_KEY, drain, fast_settings, metric, outbox, run_together
from notifications_api.channels import email_outbox
from notifications_api.channels.email_client import Outcome, backoff_delay, classify, parse_retry_after
from notifications_api.channels.email_worker import (EmailWorker, WorkerMetrics, WorkerSettings,
                                                     WorkerSetupError)

UTC = timezone.utc


def statuses(conn, users) -> list[str]:
    return [r["status"] for r in outbox(conn, users)]


def settled(conn, users, final=("sent", "failed", "dead", "cancelled")):
    return lambda: all(s in final for s in statuses(conn, users))


# --- the request ------------------------------------------------------------------------------------

def test_the_request_the_email_api_gets(queue_emails, make_worker, email_api, admin_db):
    ((user, nid),) = queue_emails(1, title="Ana commented on your post", message="Nice route! ✓")
    worker = make_worker()
    assert worker.run(once=True) == 1
    (got,) = email_api.received
    (row,) = outbox(admin_db, [user])
    assert got.body == {"to": f"{user}@example.test", "subject": "Ana commented on your post",
                        "text": "Nice route! ✓", "notification_id": nid, "notification_ids": [nid],
                        "idempotency_key": str(row["delivery_id"])}
    assert got.headers["Authorization"] == f"Bearer {API_KEY}"
    assert got.headers["Idempotency-Key"] == str(row["delivery_id"])
    assert got.headers["Content-Type"] == "application/json; charset=utf-8"
    assert got.headers["User-Agent"].startswith("notifications-api-email-worker/")
    assert (row["status"], row["attempts"], row["lease_owner"]) == ("sent", 1, worker.name)
    assert row["sent_at"] is not None and row["lease_expires_at"] is None
    assert metric(worker, "emails_sent_total") == 1


def test_without_an_api_key_no_authorization_header(queue_emails, make_worker, email_api):
    queue_emails(1)
    make_worker(email_api_key="").run(once=True)
    (got,) = email_api.received
    assert "Authorization" not in got.headers


# --- retries, failures ------------------------------------------------------------------------------

def test_503_then_200_is_sent_on_the_second_attempt_with_the_same_key(
        queue_emails, make_worker, email_api, admin_db):
    email_api.policy = lambda r, n: Response("busy", 503) if n == 1 else Response("{}", 200)
    users = [u for u, _ in queue_emails(1)]
    worker = make_worker()
    drain(worker, settled(admin_db, users))
    (row,) = outbox(admin_db, users)
    assert (row["status"], row["attempts"]) == ("sent", 2)
    assert row["last_error"] == "HTTP 503: busy"  # the history stays visible
    first, second = email_api.received
    assert first.key == second.key == str(row["delivery_id"])
    assert first.headers["Idempotency-Key"] == second.headers["Idempotency-Key"]
    assert metric(worker, "emails_retried_total") == 1 and metric(worker, "emails_sent_total") == 1


def test_always_503_is_dead_after_the_maximum(queue_emails, make_worker, email_api, admin_db):
    email_api.policy = lambda r, n: Response("down", 503)
    users = [u for u, _ in queue_emails(1)]
    worker = make_worker(max_attempts=3)
    drain(worker, settled(admin_db, users))
    (row,) = outbox(admin_db, users)
    assert (row["status"], row["attempts"], row["last_error"]) == ("dead", 3, "HTTP 503: down")
    assert len(email_api.received) == 3
    assert metric(worker, "emails_dead_total") == 1 and metric(worker, "emails_retried_total") == 2
    worker.run(once=True)  # a dead delivery is never claimed again
    assert len(email_api.received) == 3


@pytest.mark.parametrize("status", [400, 401, 404, 422])
def test_a_4xx_fails_at_once(queue_emails, make_worker, email_api, admin_db, status):
    email_api.policy = lambda r, n: Response('{"error": "bad recipient"}', status)
    users = [u for u, _ in queue_emails(1)]
    worker = make_worker()
    worker.run(once=True)
    (row,) = outbox(admin_db, users)
    assert (row["status"], row["attempts"]) == ("failed", 1)
    assert row["last_error"] == f'HTTP {status}: {{"error": "bad recipient"}}'
    assert len(email_api.received) == 1 and metric(worker, "emails_failed_total") == 1


def test_429_honours_retry_after(queue_emails, make_worker, email_api, admin_db):
    email_api.policy = lambda r, n: (Response("slow down", 429, headers={"Retry-After": "30"}) if n == 1
                                     else Response("{}", 200))
    users = [u for u, _ in queue_emails(1)]
    before = datetime.now(UTC)
    make_worker().run(once=True)
    (row,) = outbox(admin_db, users)
    assert (row["status"], row["attempts"]) == ("pending", 1)
    assert row["available_at"] >= before + timedelta(seconds=29)  # not the millisecond test backoff
    assert row["lease_owner"] is not None and row["lease_expires_at"] is None


def test_a_timeout_is_retried(queue_emails, make_worker, email_api, admin_db):
    def slow_first(received, n):
        if n == 1:
            time.sleep(1.0)
        return Response("{}", 200)
    email_api.policy = slow_first
    users = [u for u, _ in queue_emails(1)]
    worker = make_worker(read_timeout=0.3)
    drain(worker, settled(admin_db, users))
    (row,) = outbox(admin_db, users)
    assert (row["status"], row["attempts"], row["last_error"]) == ("sent", 2, "timeout")


def test_a_refused_connection_is_retried(queue_emails, make_worker, admin_db):
    import socket

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    users = [u for u, _ in queue_emails(1)]
    # the retry far enough ahead that the same --once pass cannot try again (fast_settings caps it at 0.02 s)
    make_worker(email_api_url=f"http://127.0.0.1:{port}/v1/send", retry_base=60, retry_cap=60).run(once=True)
    (row,) = outbox(admin_db, users)
    assert row["status"] == "pending" and row["last_error"].startswith("ConnectionRefusedError")


def test_retry_after_parsing():
    now = time.time()
    assert parse_retry_after("120") == 120.0
    assert parse_retry_after(format_datetime(datetime.fromtimestamp(now + 90, UTC), usegmt=True), now) == \
        pytest.approx(90, abs=1)
    assert parse_retry_after(format_datetime(datetime.fromtimestamp(now - 90, UTC), usegmt=True), now) == 0
    for garbage in (None, "", "soon", "-5", "1.5"):
        assert parse_retry_after(garbage) is None


def test_classification():
    assert classify(200).kind == classify(202).kind == "sent"
    assert classify(503, b"x", "7") == Outcome("retry", 503, "HTTP 503: x", 7.0)
    assert classify(500, b"", "7").retry_after is None  # Retry-After only means something on 429/503
    assert classify(429).kind == "retry" and classify(408).kind == "failed" and classify(302).kind == "retry"


def test_backoff_is_exponential_with_full_jitter_and_a_cap():
    rng = random.Random(7)
    for attempt, ceiling in [(1, 2), (2, 4), (3, 8), (12, 3600), (500, 3600)]:
        draws = [backoff_delay(attempt, 2.0, 3600.0, rng) for _ in range(200)]
        assert all(0 <= d <= ceiling for d in draws)
        assert max(draws) > ceiling * 0.8 and min(draws) < ceiling * 0.2  # spread over the whole range


# --- many workers, leases ---------------------------------------------------------------------------

def test_three_workers_send_each_of_200_emails_exactly_once(queue_emails, make_worker, email_api, admin_db):
    def slow(received, n):
        time.sleep(0.003)
        return Response("{}", 202)
    email_api.policy = slow
    users = [u for u, _ in queue_emails(200)]
    workers = [make_worker(name=f"w{i}", batch_size=10) for i in range(3)]
    run_together(workers)
    rows = outbox(admin_db, users)
    assert len(rows) == 200 and {r["status"] for r in rows} == {"sent"}
    assert {r["attempts"] for r in rows} == {1}
    keys = email_api.keys()
    assert len(keys) == 200 and set(keys) == {str(r["delivery_id"]) for r in rows}
    by_worker = {w.name: metric(w, "emails_sent_total") for w in workers}
    assert sum(by_worker.values()) == 200
    assert sum(1 for n in by_worker.values() if n) >= 2, by_worker  # they really shared the work
    assert {r["lease_owner"] for r in rows} == {name for name, n in by_worker.items() if n}


def test_an_expired_lease_goes_to_another_worker(queue_emails, make_worker, email_api, admin_db,
                                                 worker_conninfo):
    users = [u for u, _ in queue_emails(3)]
    with psycopg.connect(worker_conninfo, autocommit=True) as conn:  # a worker that then dies silently
        claimed = email_outbox.claim(conn, "crashed-worker", 10, 1, 3)
    assert len(claimed) == 3
    other = make_worker(name="survivor")
    assert other.run(once=True) == 0  # still leased
    time.sleep(1.1)
    assert other.run(once=True) == 3
    rows = outbox(admin_db, users)
    assert [(r["status"], r["attempts"], r["lease_owner"]) for r in rows] == [("sent", 2, "survivor")] * 3
    # the late "crashed" worker can no longer record anything for those rows
    with psycopg.connect(worker_conninfo, autocommit=True) as conn:
        assert email_outbox.complete(conn, claimed[0], "crashed-worker") is False
        assert email_outbox.retry(conn, claimed[0], "crashed-worker", "x", 0, 3) is None
        assert email_outbox.fail(conn, claimed[0], "crashed-worker", "x") is False


def test_a_delivery_that_keeps_killing_workers_ends_dead(queue_emails, admin_db, worker_conninfo):
    users = [u for u, _ in queue_emails(1)]
    with psycopg.connect(worker_conninfo, autocommit=True) as conn:
        for attempt in range(3):
            assert len(email_outbox.claim(conn, f"doomed-{attempt}", 10, 1, 3)) == 1
            time.sleep(1.05)
        assert email_outbox.claim(conn, "next", 10, 1, 3) == []
    (row,) = outbox(admin_db, users)
    assert (row["status"], row["attempts"]) == ("dead", 3)
    assert row["last_error"].startswith("lease expired after attempt 3")


def test_a_notification_gone_before_its_retry_is_not_sent(queue_emails, make_worker, email_api, admin_db):
    """sp_delete_notification cancels pending rows; the claim also checks (archived while leased, expired)."""
    rows = queue_emails(3)
    users = [u for u, _ in rows]
    admin_db.execute("UPDATE activity.email_outbox SET status = 'sending', lease_owner = 'gone',"
                     " lease_expires_at = now() - interval '1 second' WHERE user_id = ANY(%s::uuid[])", (users,))
    (u0, n0), (u1, n1), (u2, n2) = rows
    admin_db.execute("UPDATE activity.notifications SET status = 'archived', archived_at = now()"
                     " WHERE user_id = %s AND notification_id = %s", (u0, n0))
    admin_db.execute("UPDATE activity.notifications SET expires_at = now() - interval '1 second'"
                     " WHERE user_id = %s AND notification_id = %s", (u1, n1))
    make_worker().run(once=True)
    assert {str(r["user_id"]): r["status"] for r in outbox(admin_db, users)} == {
        u0: "cancelled", u1: "cancelled", u2: "sent"}
    assert email_api.keys() == [str(outbox(admin_db, [u2])[0]["delivery_id"])]


def test_quiet_hours_rows_wait_until_due(queue_emails, make_worker, email_api, admin_db):
    users = [u for u, _ in queue_emails(2)]
    admin_db.execute("UPDATE activity.email_outbox SET available_at = now() + interval '1 hour'"
                     " WHERE user_id = %s", (users[0],))
    make_worker().run(once=True)
    assert {str(r["user_id"]): r["status"] for r in outbox(admin_db, users)} == {
        users[0]: "pending", users[1]: "sent"}
    assert len(email_api.received) == 1


# --- queue gauges -----------------------------------------------------------------------------------

def test_queue_gauges(queue_emails, make_worker, email_api, admin_db):
    users = [u for u, _ in queue_emails(3)]
    admin_db.execute("UPDATE activity.email_outbox SET available_at = now() - interval '90 seconds'"
                     " WHERE user_id = ANY(%s::uuid[])", (users[:2],))
    admin_db.execute("UPDATE activity.email_outbox SET available_at = now() + interval '1 hour'"
                     " WHERE user_id = %s", (users[2],))
    worker = make_worker()
    stats = worker.refresh_stats()
    assert stats.pending >= 3 and stats.due >= 2 and stats.oldest_due_age_seconds >= 89
    assert metric(worker, "email_queue_oldest_due_age_seconds") >= 89
    assert metric(worker, "email_queue_deliveries", status="pending") == stats.pending
    worker.run(once=True)
    stats = worker.refresh_stats()
    assert stats.due == 0 and stats.oldest_due_age_seconds == 0


# --- privileges -------------------------------------------------------------------------------------

def test_the_app_role_cannot_run_the_worker(database, email_api):
    worker = EmailWorker(database.app, fast_settings(email_api.url), metrics=WorkerMetrics())
    with pytest.raises(WorkerSetupError, match="notifications_worker"):
        worker.check()
    with psycopg.connect(database.app, autocommit=True) as conn:
        with pytest.raises(errors.InsufficientPrivilege):
            email_outbox.claim(conn, "app", 10, 60, 3)


def test_the_worker_role_can_do_nothing_else(worker_conninfo, make_user):
    user = make_user()
    with psycopg.connect(worker_conninfo, autocommit=True) as conn:
        for query, args in [("SELECT * FROM activity.email_outbox", ()),
                            ("SELECT * FROM activity.users", ()),
                            ("SELECT * FROM activity.sp_get_unread_count(%s)", (user,)),
                            ("SELECT * FROM activity.sp_create_notification(%s::uuid[], 'x', 'y')", ([user],))]:
            with pytest.raises(errors.InsufficientPrivilege):
                conn.execute(query, args)


def test_worker_function_privileges(admin_db):
    rows = admin_db.execute(
        """SELECT p.proname, p.prosecdef, pg_get_userbyid(p.proowner) AS owner, p.proconfig,
                  has_function_privilege('notifications_worker', p.oid, 'EXECUTE') AS worker,
                  has_function_privilege('notifications_api', p.oid, 'EXECUTE') AS api,
                  has_function_privilege('public', p.oid, 'EXECUTE') AS public
             FROM pg_proc p WHERE p.pronamespace = 'activity'::regnamespace""").fetchall()
    worker_functions = {r["proname"] for r in rows if r["worker"]}
    assert worker_functions == {"sp_claim_emails", "sp_claim_email_deliveries", "sp_complete_email_delivery",
                                "sp_retry_email_delivery", "sp_fail_email_delivery",
                                "sp_release_email_deliveries", "sp_email_queue_stats"}
    for r in rows:
        if r["proname"] in worker_functions:
            assert r["prosecdef"] and r["owner"] == "notifications_owner" and not r["api"] and not r["public"]
            assert "search_path=activity, pg_temp" in r["proconfig"]


def test_provision_worker_user_refuses_the_app_role(database):
    from notifications_api.db import admin

    app_role = psycopg.conninfo.conninfo_to_dict(database.app)["user"]
    for name in (app_role, "postgres"):
        with pytest.raises(ValueError):
            admin.provision_worker_user(database.admin, name, "x")


def test_invalid_settings_are_reported_together():
    problems = WorkerSettings(email_api_url="", lease_seconds=10, connect_timeout=5, read_timeout=10).problems()
    assert len(problems) == 2 and "EMAIL_API_URL" in problems[0] and "--lease-seconds" in problems[1]
    assert WorkerSettings(email_api_url="ftp://x").problems() == ["EMAIL_API_URL must be an http:// or https:// URL"]
    assert WorkerSettings(email_api_url="https://mail.example/v1/send").problems() == []


def test_claim_arguments_are_checked(worker_conninfo):
    with psycopg.connect(worker_conninfo, autocommit=True) as conn:
        for args in [("", 10, 60, 3), ("w", 0, 60, 3), ("w", 10, 0, 3), ("w", 10, 60, 0)]:
            with pytest.raises(psycopg.Error) as info:
                email_outbox.claim(conn, *args)
            assert info.value.sqlstate == "NA422"
