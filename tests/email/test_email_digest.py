"""E-mail digests (issue 25): the delay, one e-mail per user, the inbox checked at send time, faults.

Time passing is simulated by moving a user's pending rows back (`age`): the worker's delay is real,
the rows are older. The fake Email API records every request (email_helpers.FakeEmailApi).
"""
from __future__ import annotations

import logging
import threading
import time
import uuid

import psycopg
import pytest
from werkzeug import Response

from email_helpers import drain, metric, outbox, run_together
from notifications_api.channels import email_outbox
from notifications_api.channels.email_client import EmailApiClient

DELAY = 600


@pytest.fixture
def notify(database):
    """notify(user, title=..., **create args) -> notification_id: one notification, e-mail queued."""
    def create(user: str, title: str = "Ana liked your post", message: str | None = "Nice route!",
               priority: str = "normal", action_url: str | None = None, dedupe_key: str | None = None) -> str:
        with psycopg.connect(database.admin, autocommit=True) as conn:
            (nid,) = conn.execute(
                "SELECT notification_id::text FROM activity.sp_inbox_create(%s::uuid[], 'like', %s, %s,"
                " p_action_url => %s, p_priority => %s, p_dedupe_key => %s, p_queue_email => true)",
                ([user], title, message, action_url, priority, dedupe_key)).fetchone()
        return nid
    return create


def age(conn, users, seconds: int = DELAY + 1) -> None:
    """As if `seconds` had passed for these users' pending rows."""
    conn.execute("UPDATE activity.email_outbox SET available_at = available_at - make_interval(secs => %s)"
                 " WHERE user_id = ANY(%s::uuid[]) AND status = 'pending'", (seconds, [str(u) for u in users]))


def mails_to(email_api, user: str) -> list[dict]:
    return [r.body for r in email_api.received if r.body.get("to") == f"{user}@example.test"]


def by_nid(conn, user) -> dict[str, dict]:
    return {str(r["notification_id"]): r for r in outbox(conn, [user])}


# --- the delay and the digest -----------------------------------------------------------------------

def test_nothing_goes_before_the_delay(make_user, notify, make_worker, email_api, admin_db):
    user = make_user()
    for i in range(3):
        notify(user, title=f"like {i}")
    age(admin_db, [user], DELAY - 30)  # not quite there yet
    assert make_worker(digest_delay_seconds=DELAY).run(once=True) == 0
    assert email_api.received == [] and {r["status"] for r in outbox(admin_db, [user])} == {"pending"}


def test_one_email_with_every_pending_notification_newest_first(
        make_user, notify, make_worker, email_api, admin_db):
    user = make_user()
    nids = [notify(user, title=f"Like {i}", message=f"m{i}", action_url=f"https://app.example/p/{i}")
            for i in range(3)]
    admin_db.execute("UPDATE activity.email_outbox SET available_at = available_at - interval '601 seconds'"
                     " WHERE user_id = %s AND notification_id = %s", (user, nids[0]))  # only the oldest is due
    worker = make_worker(digest_delay_seconds=DELAY)
    assert worker.run(once=True) == 1
    (mail,) = email_api.received
    rows = by_nid(admin_db, user)
    leader = rows[nids[2]]
    assert mail.body == {
        "to": f"{user}@example.test", "subject": "3 new notifications",
        "text": "Like 2\nm2\nhttps://app.example/p/2\n\nLike 1\nm1\nhttps://app.example/p/1\n\n"
                "Like 0\nm0\nhttps://app.example/p/0",
        "notification_id": nids[2], "notification_ids": nids[::-1],
        "idempotency_key": str(leader["delivery_id"])}
    assert mail.headers["Idempotency-Key"] == str(leader["delivery_id"])
    assert {(r["status"], r["digest_id"]) for r in rows.values()} == {("sent", leader["delivery_id"])}
    assert all(r["sent_at"] is not None for r in rows.values())
    assert metric(worker, "emails_sent_total") == 1
    assert metric(worker, "email_notifications_per_email_sum") == 3
    assert make_worker(digest_delay_seconds=DELAY).run(once=True) == 0  # nothing goes twice


def test_the_digest_is_logged_with_user_and_count_never_the_address(
        make_user, notify, make_worker, email_api, admin_db, caplog):
    user = make_user()
    for _ in range(4):
        notify(user)
    age(admin_db, [user])
    with caplog.at_level(logging.INFO, logger="notifications_api.channels.email_worker"):
        make_worker(digest_delay_seconds=DELAY).run(once=True)
    (event,) = [r for r in caplog.records if getattr(r, "event", None) == "email_digest_sent"]
    assert (event.user_id, event.count) == (user, 4)
    assert "@example.test" not in caplog.text


def test_a_single_notification_has_its_title_as_subject(make_user, notify, make_worker, email_api, admin_db):
    user = make_user()
    notify(user, title="Ana commented", message=None)
    age(admin_db, [user])
    make_worker(digest_delay_seconds=DELAY).run(once=True)
    (mail,) = email_api.received
    assert (mail.body["subject"], mail.body["text"]) == ("Ana commented", "Ana commented")


def test_the_text_lists_ten_then_how_many_more(make_user, notify, make_worker, email_api, admin_db):
    user = make_user()
    for i in range(13):
        notify(user, title=f"t{i}", message=None)
    age(admin_db, [user])
    make_worker(digest_delay_seconds=DELAY).run(once=True)
    (mail,) = email_api.received
    assert mail.body["subject"] == "13 new notifications" and len(mail.body["notification_ids"]) == 13
    assert mail.body["text"] == "\n\n".join(f"t{i}" for i in range(12, 2, -1)) + "\n\nand 3 more"


def test_each_user_gets_their_own(make_user, notify, make_worker, email_api, admin_db):
    users = [make_user() for _ in range(3)]
    for user in users:
        notify(user)
        notify(user)
    age(admin_db, users)
    assert make_worker(digest_delay_seconds=DELAY).run(once=True) == 3
    assert sorted(len(mails_to(email_api, u)) for u in users) == [1, 1, 1]
    assert all(len(mails_to(email_api, u)[0]["notification_ids"]) == 2 for u in users)


def test_urgent_goes_at_once_and_alone(make_user, notify, make_worker, email_api, admin_db):
    user = make_user()
    notify(user, title="normal")
    urgent = notify(user, title="Your password was changed", message="If it was not you…", priority="urgent")
    worker = make_worker(digest_delay_seconds=DELAY)
    assert worker.run(once=True) == 1
    (mail,) = email_api.received
    assert mail.body["notification_ids"] == [urgent] and mail.body["subject"] == "Your password was changed"
    assert mail.body["text"] == "If it was not you…"
    age(admin_db, [user])
    worker.run(once=True)
    assert [m.body["subject"] for m in email_api.received] == ["Your password was changed", "normal"]


def test_delay_zero_is_one_email_per_notification(make_user, notify, make_worker, email_api, admin_db):
    user = make_user()
    nids = [notify(user) for _ in range(3)]
    assert make_worker(digest_delay_seconds=0).run(once=True) == 3
    assert sorted(m.body["notification_id"] for m in email_api.received) == sorted(nids)
    assert all(len(m.body["notification_ids"]) == 1 for m in email_api.received)


# --- respect the inbox at send time -----------------------------------------------------------------

def test_what_the_user_already_has_or_lost_is_dropped(make_user, notify, make_worker, email_api, admin_db):
    user = make_user()
    names = ["kept", "seen", "read", "archived", "snoozed", "deleted", "expired", "retracted"]
    n = {name: notify(user, title=name, dedupe_key=f"{name}-{uuid.uuid4()}") for name in names}
    admin_db.execute("SELECT activity.sp_bulk_update(%s, 'seen', ARRAY[%s]::uuid[])", (user, n["seen"]))
    admin_db.execute("SELECT activity.sp_inbox_mark_read(%s, %s)", (user, n["read"]))
    admin_db.execute("SELECT activity.sp_bulk_update(%s, 'archive', ARRAY[%s]::uuid[])", (user, n["archived"]))
    admin_db.execute("SELECT activity.sp_inbox_snooze(%s, %s, now() + interval '1 hour')", (user, n["snoozed"]))
    admin_db.execute("SELECT activity.sp_delete_notification(%s, %s, true)", (user, n["deleted"]))
    admin_db.execute("UPDATE activity.notifications SET expires_at = now() - interval '1 second'"
                     " WHERE user_id = %s AND notification_id = %s", (user, n["expired"]))
    (key,) = admin_db.execute("SELECT dedupe_key FROM activity.notifications WHERE notification_id = %s",
                              (n["retracted"],)).fetchone().values()
    admin_db.execute("SELECT * FROM activity.sp_retract_notifications(p_dedupe_key => %s)", (key,))
    age(admin_db, [user])
    make_worker(digest_delay_seconds=DELAY).run(once=True)
    (mail,) = email_api.received
    assert mail.body["notification_ids"] == [n["kept"]] and mail.body["subject"] == "kept"
    statuses = {nid: r["status"] for nid, r in by_nid(admin_db, user).items()}
    assert statuses == {**{n[name]: "cancelled" for name in names}, n["kept"]: "sent"}


def test_nothing_left_nothing_sent(make_user, notify, make_worker, email_api, admin_db):
    user = make_user()
    for _ in range(3):
        notify(user)
    admin_db.execute("SELECT activity.sp_bulk_update(%s, 'seen', p_all => true)", (user,))
    age(admin_db, [user])
    assert make_worker(digest_delay_seconds=DELAY).run(once=True) == 0
    assert email_api.received == [] and {r["status"] for r in outbox(admin_db, [user])} == {"cancelled"}


def test_a_notification_created_while_its_digest_is_sent_goes_in_the_next(
        make_user, notify, make_worker, email_api, admin_db):
    user = make_user()
    first = [notify(user), notify(user)]
    age(admin_db, [user])
    late = []
    worker = make_worker(digest_delay_seconds=DELAY)
    worker.before_send = lambda delivery: late.append(notify(user, title="late"))
    assert worker.run(once=True) == 1
    worker.before_send = None
    assert sorted(email_api.received[0].body["notification_ids"]) == sorted(first)
    assert by_nid(admin_db, user)[late[0]]["status"] == "pending"  # not lost, not in the sent one
    age(admin_db, [user])
    worker.run(once=True)
    assert [m.body["notification_ids"] for m in email_api.received[1:]] == [late]


# --- exactly once under faults ----------------------------------------------------------------------

def test_three_workers_racing_send_one_email_per_user(make_user, notify, make_worker, email_api, admin_db):
    def slow(received, n):
        time.sleep(0.002)
        return Response("{}", 202)
    email_api.policy = slow
    users = [make_user() for _ in range(40)]
    nids = {u: {notify(u) for _ in range(4)} for u in users}
    age(admin_db, users)
    workers = [make_worker(name=f"r{i}", batch_size=5, digest_delay_seconds=DELAY) for i in range(3)]
    run_together(workers)
    for user in users:
        (mail,) = mails_to(email_api, user)
        assert set(mail["notification_ids"]) == nids[user]
    assert sum(1 for w in workers if metric(w, "emails_sent_total")) >= 2  # they really raced
    assert {r["status"] for r in outbox(admin_db, users)} == {"sent"}


def test_concurrent_claims_of_one_user_compose_one_email(make_user, notify, worker_conninfo, admin_db):
    """The claim itself, many rounds: two connections released together on the same due user."""
    for _ in range(15):
        user = make_user()
        for _ in range(3):
            notify(user)
        age(admin_db, [user])
        start, got = threading.Barrier(2), []

        def claim(name):
            with psycopg.connect(worker_conninfo, autocommit=True) as conn:
                start.wait()
                got.extend(email_outbox.claim(conn, name, 10, 60, 3, DELAY))
        threads = [threading.Thread(target=claim, args=(f"c{i}",)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        mine = [d for d in got if str(d.user_id) == user]
        assert len(mine) == 1 and len(mine[0].notification_ids) == 3


def test_a_worker_killed_after_the_answer_is_resent_as_the_same_email(
        make_user, notify, make_worker, email_api, admin_db, worker_conninfo):
    user = make_user()
    nids = {notify(user) for _ in range(3)}
    age(admin_db, [user])
    with psycopg.connect(worker_conninfo, autocommit=True) as conn:
        (claimed,) = email_outbox.claim(conn, "killed", 10, 1, 3, DELAY)
    # the Email API answers 202 ... and the worker dies before recording it
    assert EmailApiClient(email_api.url, "").send(claimed).kind == "sent"
    late = notify(user, title="late")  # arrives meanwhile: not part of the e-mail already made
    time.sleep(1.1)
    survivor = make_worker(name="survivor", digest_delay_seconds=DELAY)
    assert survivor.run(once=True) == 1
    first, again = email_api.received
    assert again.body == first.body and set(first.body["notification_ids"]) == nids
    assert again.headers["Idempotency-Key"] == first.headers["Idempotency-Key"] == str(claimed.delivery_id)
    rows = by_nid(admin_db, user)
    assert {rows[n]["status"] for n in nids} == {"sent"} and rows[late]["status"] == "pending"
    with psycopg.connect(worker_conninfo, autocommit=True) as conn:  # the dead worker's record is refused
        assert email_outbox.complete(conn, claimed, "killed") is False


def test_503_then_200_is_one_email_with_the_same_key_and_content(make_user, notify, make_worker, email_api,
                                                                 admin_db):
    email_api.policy = lambda r, n: Response("busy", 503) if n == 1 else Response("{}", 200)
    user = make_user()
    nids = [notify(user) for _ in range(3)]
    age(admin_db, [user])
    seen_meanwhile = []

    def between(delivery):
        if delivery.attempts == 2:  # the retry: one notification was seen in between
            seen_meanwhile.append(nids[0])
            admin_db.execute("SELECT activity.sp_bulk_update(%s, 'seen', ARRAY[%s]::uuid[])", (user, nids[0]))
    worker = make_worker(digest_delay_seconds=DELAY)
    worker.before_send = between
    drain(worker, lambda: {r["status"] for r in outbox(admin_db, [user])} == {"sent"})
    first, second = email_api.received
    assert first.body == second.body and first.key == second.key  # the same e-mail: one, for the Email API
    assert seen_meanwhile and sorted(first.body["notification_ids"]) == sorted(nids)
    leader = by_nid(admin_db, user)[nids[2]]
    assert (leader["attempts"], leader["last_error"]) == (2, "HTTP 503: busy")
    assert metric(worker, "emails_retried_total") == 1 and metric(worker, "emails_sent_total") == 1


def test_a_refused_digest_fails_whole_and_a_dead_one_dies_whole(make_user, notify, make_worker, email_api,
                                                                admin_db):
    failing, dying = make_user(), make_user()
    email_api.policy = lambda r, n: (Response("no such mailbox", 422) if r.body["to"].startswith(failing)
                                     else Response("down", 503))
    for _ in range(2):
        notify(failing)
        notify(dying)
    age(admin_db, [failing, dying])
    drain(make_worker(digest_delay_seconds=DELAY, max_attempts=2),
          lambda: not {"pending", "sending"} & {r["status"] for r in outbox(admin_db, [failing, dying])})
    assert {r["status"] for r in outbox(admin_db, [failing])} == {"failed"}
    assert {r["status"] for r in outbox(admin_db, [dying])} == {"dead"}


def test_archiving_one_notification_of_a_digest_awaiting_its_retry_keeps_the_rest(
        make_user, notify, make_worker, email_api, admin_db):
    email_api.policy = lambda r, n: Response("busy", 503) if n == 1 else Response("{}", 200)
    user = make_user()
    nids = [notify(user) for _ in range(2)]
    age(admin_db, [user])
    worker = make_worker(digest_delay_seconds=DELAY, retry_base=0.5, retry_cap=0.5)
    worker.run(once=True)
    admin_db.execute("SELECT activity.sp_delete_notification(%s, %s, false)", (user, nids[1]))  # the leader's
    drain(worker, lambda: {r["status"] for r in outbox(admin_db, [user])} == {"sent"})
    assert len(email_api.received) == 2 and email_api.received[0].body == email_api.received[1].body
