-- migrate:no-transaction
-- 0140: the grouped inbox (issue 14, endpoint 12). Per (user, group_key) the number of inbox
-- members and unread ones as of the user's folded instant (the same instant and the same writers
-- as the inbox counts, docs/INBOX.md), and the group's latest and oldest inbox member, kept by
-- the writers (an index probe per touched group). A user whose counts are "not computed" has
-- its groups rebuilt with them. Each statement alone; all can run again.
SET lock_timeout = '5s';
-- migrate:split
CREATE TABLE IF NOT EXISTS activity.notification_groups (
    user_id             uuid NOT NULL,
    group_key           text NOT NULL,
    notifications_count bigint NOT NULL DEFAULT 0 CHECK (notifications_count >= 0),
    unread_count        bigint NOT NULL DEFAULT 0 CHECK (unread_count >= 0),
    latest_delivered_at timestamptz,
    latest_id           uuid,
    oldest_delivered_at timestamptz,
    PRIMARY KEY (user_id, group_key)
);
-- migrate:split
ALTER TABLE activity.notification_groups OWNER TO notifications_owner;
-- migrate:split
REVOKE ALL ON activity.notification_groups FROM PUBLIC;
-- migrate:split
-- The groups page: a keyset range on the latest member, only groups with inbox members.
CREATE INDEX IF NOT EXISTS notification_groups_latest
    ON activity.notification_groups (user_id, latest_delivered_at DESC, latest_id DESC)
    WHERE notifications_count > 0;
-- migrate:split
CREATE INDEX IF NOT EXISTS notification_groups_latest_unread
    ON activity.notification_groups (user_id, latest_delivered_at DESC, latest_id DESC)
    WHERE notifications_count > 0 AND unread_count > 0;
-- migrate:split
RESET lock_timeout;
-- migrate:split
-- A group's members newest first (latest/oldest probes, the sample of recent actors).
CREATE INDEX CONCURRENTLY IF NOT EXISTS notifications_group_members
    ON activity.notifications (user_id, group_key, delivered_at DESC, notification_id DESC)
    WHERE status <> 'archived' AND group_key IS NOT NULL;
-- migrate:split
-- Notifications without a group_key are groups of one, merged into the page from these.
CREATE INDEX CONCURRENTLY IF NOT EXISTS notifications_ungrouped_delivered
    ON activity.notifications (user_id, delivered_at DESC, notification_id DESC)
    WHERE status <> 'archived' AND group_key IS NULL;
-- migrate:split
CREATE INDEX CONCURRENTLY IF NOT EXISTS notifications_ungrouped_unread_delivered
    ON activity.notifications (user_id, delivered_at DESC, notification_id DESC)
    WHERE status = 'unread' AND group_key IS NULL;
-- migrate:split
-- count_delta carries the row's group and its inbox membership change (writers and folds keep
-- the groups with the counts).
DO $do$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = 'activity.count_delta'::regclass
                                              AND attname = 'group_key' AND NOT attisdropped) THEN
        ALTER TYPE activity.count_delta ADD ATTRIBUTE group_key text, ADD ATTRIBUTE d_member integer;
    END IF;
END
$do$;
