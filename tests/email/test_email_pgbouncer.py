"""The e-mail worker through a real PgBouncer in transaction pooling (DB_PREPARE_THRESHOLD empty, as
documented): three workers share one server connection and every e-mail is sent exactly once. The
worker sends no startup options (PgBouncer refuses them): its session settings are its login role's."""
from __future__ import annotations


from email_helpers import fast_settings, metric, outbox, run_together

from notifications_api.channels.email_worker import EmailWorker, WorkerMetrics


def test_three_workers_through_pgbouncer_send_each_email_once(queue_emails, email_api, admin_db,
                                                              worker_conninfo, pgbouncer):
    [bounced] = pgbouncer(worker_conninfo)
    users = [u for u, _ in queue_emails(60)]
    # small batches: many claims and outcomes per worker, all over the one server connection (with
    # prepared statements on, two clients would prepare the same statement name on it)
    workers = [EmailWorker(bounced, fast_settings(email_api.url, batch_size=4, prepare_threshold=None),
                           name=f"bounced-{i}", metrics=WorkerMetrics()) for i in range(3)]
    run_together(workers)
    rows = outbox(admin_db, users)
    assert len(rows) == 60 and {r["status"] for r in rows} == {"sent"}
    keys = email_api.keys()
    assert len(keys) == 60 and set(keys) == {str(r["delivery_id"]) for r in rows}
    assert sum(metric(w, "emails_sent_total") for w in workers) == 60
