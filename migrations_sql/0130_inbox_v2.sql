-- migrate:no-transaction
-- 0130: inbox v2 (issue 13), expand step: delivery order, seen state, snooze, clock-folded counts.
--
-- Only metadata changes here, each statement in its own transaction (the marker above): each
-- ALTER holds its one table's ACCESS EXCLUSIVE lock for an instant. In a single transaction the
-- migration would hold notifications' lock while waiting for the counters' one, which a writer of
-- the previous release holds while it waits for notifications: a deadlock (measured with
-- bench/migrate_v2.py). lock_timeout makes a queued ALTER give up instead of stalling every query
-- behind a long transaction; every statement can run again. The backfill of delivered_at and the
-- new indexes run online in 0131 (batches, CONCURRENTLY). The previous release's functions keep
-- working over this schema: every new column is nullable or has a default, the old columns keep
-- their meaning (see notification_counters below).
SET lock_timeout = '5s';
-- migrate:split

-- delivered_at: when the row entered the inbox (its created_at, or the end of its last snooze);
-- NULL only until 0131 backfills it (0131 also makes it NOT NULL). The default covers rows the
-- previous release inserts meanwhile (a SET DEFAULT touches no existing row).
ALTER TABLE activity.notifications
    ADD COLUMN IF NOT EXISTS delivered_at timestamptz,
    ADD COLUMN IF NOT EXISTS seen_at timestamptz,
    ADD COLUMN IF NOT EXISTS snoozed_until timestamptz;
-- migrate:split
ALTER TABLE activity.notifications ALTER COLUMN delivered_at SET DEFAULT clock_timestamp();
-- migrate:split

-- The inbox counts of the user "as of folded_at" (inbox_unread, inbox_unseen; per type in
-- notification_type_counters.inbox_unread): rows that are not archived, not snoozed and not
-- expired at that instant. next_change_at bounds from below the next instant at which the clock
-- alone changes them (an expiry or a snooze end of a non-archived row); readers and writers fold
-- the clock in once now() reaches it (repeatable/0100_functions.sql, _fold).
-- inbox_unread IS NULL means "not computed": recounted from the rows, once, under the row lock.
-- The legacy columns (unread_count: unread rows, expired or not; next_expiry) keep the previous
-- release's meaning and are still maintained, so that release can be rolled back to.
ALTER TABLE activity.notification_counters
    ADD COLUMN IF NOT EXISTS inbox_unread bigint,
    ADD COLUMN IF NOT EXISTS inbox_unseen bigint,
    ADD COLUMN IF NOT EXISTS folded_at timestamptz,
    ADD COLUMN IF NOT EXISTS next_change_at timestamptz;
-- migrate:split
ALTER TABLE activity.notification_counters DROP CONSTRAINT IF EXISTS notification_counters_inbox_nonnegative,
    ADD CONSTRAINT notification_counters_inbox_nonnegative
    CHECK (inbox_unread >= 0 AND inbox_unseen >= 0) NOT VALID;
-- migrate:split
ALTER TABLE activity.notification_type_counters
    ADD COLUMN IF NOT EXISTS inbox_unread bigint NOT NULL DEFAULT 0;
-- migrate:split
ALTER TABLE activity.notification_type_counters
    DROP CONSTRAINT IF EXISTS notification_type_counters_inbox_nonnegative,
    ADD CONSTRAINT notification_type_counters_inbox_nonnegative CHECK (inbox_unread >= 0) NOT VALID;
-- migrate:split

-- A write that does not come from this release's functions (the previous release's, during a
-- rolling deploy or after a rollback; an operator's manual UPDATE) cannot keep the inbox counts
-- exact: it marks them "not computed", and the next access recounts that user once. This
-- release's counter-writing functions set activity.inbox_v2 = 'on' for their transaction
-- (repeatable/0100_functions.sql, _writing_counts).
CREATE OR REPLACE FUNCTION activity._counters_written_by_old_code()
RETURNS trigger
LANGUAGE plpgsql SET search_path = activity, pg_temp
AS $$
BEGIN
    NEW.inbox_unread := NULL;
    NEW.inbox_unseen := NULL;
    RETURN NEW;
END
$$;
-- migrate:split
ALTER FUNCTION activity._counters_written_by_old_code() OWNER TO notifications_owner;
-- migrate:split
REVOKE ALL ON FUNCTION activity._counters_written_by_old_code() FROM PUBLIC;
-- migrate:split
CREATE OR REPLACE TRIGGER notification_counters_old_writer
    BEFORE INSERT OR UPDATE ON activity.notification_counters
    FOR EACH ROW WHEN (current_setting('activity.inbox_v2', true) IS DISTINCT FROM 'on')
    EXECUTE FUNCTION activity._counters_written_by_old_code();
-- migrate:split
RESET lock_timeout;
-- migrate:split

-- What every v2 read returns: the stored row plus the derived state. (DO: a type has no
-- CREATE IF NOT EXISTS, and this file may run again.)
DO $do$
BEGIN
IF to_regtype('activity.inbox_notification') IS NULL THEN
CREATE TYPE activity.inbox_notification AS (
    notification_id   uuid,
    user_id           uuid,
    notification_type text,
    title             text,
    message           text,
    actor_user_id     uuid,
    target_type       text,
    target_id         text,
    action_url        text,
    payload           jsonb,
    priority          text,
    group_key         text,
    status            text,
    created_at        timestamptz,
    delivered_at      timestamptz,
    seen_at           timestamptz,
    read_at           timestamptz,
    archived_at       timestamptz,
    snoozed_until     timestamptz,
    expires_at        timestamptz
);
END IF;
END
$do$;
-- migrate:split
ALTER TYPE activity.inbox_notification OWNER TO notifications_owner;
-- migrate:split

-- One counts change of one row (writers collect them, activity._apply sums them up).
DO $do$
BEGIN
IF to_regtype('activity.count_delta') IS NULL THEN
CREATE TYPE activity.count_delta AS (
    user_id           uuid,
    notification_type text,
    d_legacy          integer,      -- unread rows, expired or not (previous release's unread_count)
    d_unread          integer,      -- inbox unread as of the folded instant
    d_unseen          integer,      -- inbox unseen as of the folded instant
    next_at           timestamptz,  -- the row's next clock change after the folded instant, if any
    legacy_expires_at timestamptz   -- expires_at of a row that became unread (legacy next_expiry)
);
END IF;
END
$do$;
-- migrate:split
ALTER TYPE activity.count_delta OWNER TO notifications_owner;
