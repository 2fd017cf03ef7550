"""Which login group may execute which stored function: the one list of their names.

The migrations grant exactly these (tests/db/test_db_security.py compares them with the database);
metrics pre-creates its series from them, preflight checks them, admin.py provisions the logins.
"""
from __future__ import annotations

APP_GROUP = "notifications_api"
WORKER_GROUP = "notifications_worker"
PUSH_WORKER_GROUP = "notifications_push_worker"
RETENTION_GROUP = "notifications_retention"
OWNER_ROLE = "notifications_owner"

# What the API calls (store.py), and sp_schema_version() for preflight's "migrations current".
API_FUNCTIONS = (
    "sp_get_user_notifications", "sp_get_notification_by_id", "sp_mark_notification_as_read",
    "sp_mark_notifications_as_read_bulk", "sp_delete_notification", "sp_get_unread_count",
    "sp_create_notification", "sp_get_notification_settings", "sp_update_notification_settings",
    "sp_schema_version",
    # inbox v2 and groups (docs/INBOX.md); the v1 names above stay for the previous release
    "sp_inbox_list", "sp_inbox_get", "sp_inbox_mark_read", "sp_bulk_update", "sp_inbox_snooze",
    "sp_inbox_create", "sp_retract_notifications", "sp_get_unread_counts_many", "sp_advance_clocks",
    "sp_inbox_groups",
    # e-mail digests (issue 25): the settings with email_digest (the v1 names stay for the previous release)
    "sp_settings_get", "sp_settings_update",
    # reads on standbys (repeatable/0300_replica_reads.sql): the write floor and a standby's position
    "sp_wal_position", "sp_replica_status",
    # Web Push subscriptions, endpoints 17-19 (migrations_sql/repeatable/0210_push.sql)
    "sp_push_subscribe", "sp_push_subscriptions", "sp_push_unsubscribe",
)
# The e-mail delivery worker's (migrations_sql/repeatable/0200_email.sql).
EMAIL_FUNCTIONS = (
    "sp_claim_emails", "sp_claim_email_deliveries", "sp_complete_email_delivery", "sp_retry_email_delivery",
    "sp_fail_email_delivery", "sp_release_email_deliveries", "sp_email_queue_stats",
)
# The Web Push worker's (migrations_sql/repeatable/0210_push.sql); sp_expand_push_queue is also called by
# the claim, and granted for draining the queue on its own.
PUSH_FUNCTIONS = (
    "sp_expand_push_queue", "sp_claim_push_deliveries", "sp_complete_push_deliveries",
    "sp_retry_push_delivery", "sp_fail_push_delivery", "sp_gone_push_subscription",
    "sp_release_push_deliveries", "sp_push_queue_stats",
)
# The retention job's (migrations_sql/repeatable/0150_retention.sql): never the API's.
RETENTION_FUNCTIONS = ("sp_purge_notifications", "sp_purge_email_outbox", "sp_purge_push_outbox")

GRANTS = {APP_GROUP: API_FUNCTIONS, WORKER_GROUP: EMAIL_FUNCTIONS, PUSH_WORKER_GROUP: PUSH_FUNCTIONS,
          RETENTION_GROUP: RETENTION_FUNCTIONS}
