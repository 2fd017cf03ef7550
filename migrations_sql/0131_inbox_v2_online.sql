-- migrate:no-transaction
-- 0131: inbox v2, online part: backfill delivered_at/seen_at in batches, make delivered_at NOT NULL
-- without a table scan under an exclusive lock, and build the new indexes CONCURRENTLY.
--
-- Runs outside a transaction (the marker above; notifications_api/migrate.py): each statement
-- between "-- migrate:split" lines is sent alone, and the backfill commits every batch, so no
-- lock is held for long and the service keeps serving (docs/PRODUCTION.md, "Inbox v2 migration").
-- Every statement can run again: a run that failed half-way is simply started again.

-- Backfill in primary-key order, 5 000 rows per transaction: O(rows) in total, each batch locks
-- only its own rows for a few milliseconds. SKIP LOCKED: a row a writer holds right now is left
-- for the second loop (waiting for it could deadlock with that writer, which may want a row of
-- this batch next); the rows the previous release inserts meanwhile get delivered_at by default.
DO $$
DECLARE
    v_uid uuid := '00000000-0000-0000-0000-000000000000';
    v_nid uuid := '00000000-0000-0000-0000-000000000000';
    v_first boolean := true;
    v_done integer;
BEGIN
    LOOP
        WITH batch AS (
            SELECT n.user_id, n.notification_id FROM activity.notifications n
             WHERE v_first OR (n.user_id, n.notification_id) > (v_uid, v_nid)
             ORDER BY n.user_id, n.notification_id
             LIMIT 5000
        ), free AS (
            SELECT n.user_id, n.notification_id FROM activity.notifications n
              JOIN batch b ON n.user_id = b.user_id AND n.notification_id = b.notification_id
             WHERE n.delivered_at IS NULL
               FOR UPDATE OF n SKIP LOCKED
        ), done AS (
            UPDATE activity.notifications n
               SET delivered_at = n.created_at, seen_at = COALESCE(n.seen_at, n.read_at)
              FROM free f
             WHERE n.user_id = f.user_id AND n.notification_id = f.notification_id
        )
        SELECT b.user_id, b.notification_id INTO v_uid, v_nid
          FROM batch b ORDER BY b.user_id DESC, b.notification_id DESC LIMIT 1;
        EXIT WHEN NOT FOUND;
        v_first := false;
        COMMIT;
    END LOOP;
    LOOP  -- what was locked during the pass (a scan per round; normally one short round)
        WITH free AS (
            SELECT n.user_id, n.notification_id FROM activity.notifications n
             WHERE n.delivered_at IS NULL LIMIT 5000 FOR UPDATE SKIP LOCKED
        )
        UPDATE activity.notifications n
           SET delivered_at = n.created_at, seen_at = COALESCE(n.seen_at, n.read_at)
          FROM free f
         WHERE n.user_id = f.user_id AND n.notification_id = f.notification_id;
        GET DIAGNOSTICS v_done = ROW_COUNT;
        COMMIT;
        EXIT WHEN NOT EXISTS (SELECT 1 FROM activity.notifications n WHERE n.delivered_at IS NULL);
        IF v_done = 0 THEN
            PERFORM pg_sleep(0.1);  -- only locked rows left: their writers finish in milliseconds
        END IF;
    END LOOP;
END
$$;
-- migrate:split
SET lock_timeout = '5s';
-- migrate:split
-- NOT NULL without a scan under ACCESS EXCLUSIVE: a NOT VALID check (instant), validated under
-- SHARE UPDATE EXCLUSIVE (reads and writes go on), then SET NOT NULL uses the valid check.
ALTER TABLE activity.notifications DROP CONSTRAINT IF EXISTS notifications_delivered_at_present;
-- migrate:split
ALTER TABLE activity.notifications
    ADD CONSTRAINT notifications_delivered_at_present CHECK (delivered_at IS NOT NULL) NOT VALID;
-- migrate:split
ALTER TABLE activity.notifications VALIDATE CONSTRAINT notifications_delivered_at_present;
-- migrate:split
ALTER TABLE activity.notifications ALTER COLUMN delivered_at SET NOT NULL;
-- migrate:split
ALTER TABLE activity.notifications DROP CONSTRAINT notifications_delivered_at_present;
-- migrate:split
RESET lock_timeout;
-- migrate:split
-- Keyset pages in delivery order, one index per status filter (the snoozed rows of the inbox
-- and unread indexes sit above now() and are never inside an inbox page's range).
CREATE INDEX CONCURRENTLY IF NOT EXISTS notifications_all_delivered
    ON activity.notifications (user_id, delivered_at DESC, notification_id DESC);
-- migrate:split
CREATE INDEX CONCURRENTLY IF NOT EXISTS notifications_inbox_delivered
    ON activity.notifications (user_id, delivered_at DESC, notification_id DESC) WHERE status <> 'archived';
-- migrate:split
CREATE INDEX CONCURRENTLY IF NOT EXISTS notifications_unread_delivered
    ON activity.notifications (user_id, delivered_at DESC, notification_id DESC) WHERE status = 'unread';
-- migrate:split
CREATE INDEX CONCURRENTLY IF NOT EXISTS notifications_read_delivered
    ON activity.notifications (user_id, delivered_at DESC, notification_id DESC) WHERE status = 'read';
-- migrate:split
CREATE INDEX CONCURRENTLY IF NOT EXISTS notifications_archived_delivered
    ON activity.notifications (user_id, delivered_at DESC, notification_id DESC) WHERE status = 'archived';
-- migrate:split
-- Folding the clock into the counts: the rows of a user whose expiry or snooze end falls in
-- (folded_at, now()] (each row is folded once; old expired rows are never read again).
CREATE INDEX CONCURRENTLY IF NOT EXISTS notifications_fold_expiry
    ON activity.notifications (user_id, expires_at) WHERE expires_at IS NOT NULL AND status <> 'archived';
-- migrate:split
CREATE INDEX CONCURRENTLY IF NOT EXISTS notifications_fold_snooze
    ON activity.notifications (user_id, snoozed_until) WHERE snoozed_until IS NOT NULL AND status <> 'archived';
-- migrate:split
-- Retraction (endpoint 13) across users: by dedupe key, or by target.
CREATE INDEX CONCURRENTLY IF NOT EXISTS notifications_retract_dedupe
    ON activity.notifications (dedupe_key) WHERE dedupe_key IS NOT NULL;
-- migrate:split
CREATE INDEX CONCURRENTLY IF NOT EXISTS notifications_retract_target
    ON activity.notifications (target_type, target_id) WHERE target_id IS NOT NULL;
-- migrate:split
-- The clock job (sp_advance_clocks): users whose counts the clock changes next.
CREATE INDEX CONCURRENTLY IF NOT EXISTS notification_counters_next_change
    ON activity.notification_counters (next_change_at) WHERE next_change_at IS NOT NULL;
