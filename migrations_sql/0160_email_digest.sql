-- migrate:no-transaction
-- 0160: e-mail digests (issue 25): the delay, one e-mail per user, the daily digest setting.
--
-- Online, as 0130/0131: each statement between "-- migrate:split" lines runs alone, every ALTER is
-- metadata only (a constant default, NOT VALID checks validated under SHARE UPDATE EXCLUSIVE) and
-- holds its table's lock for an instant (lock_timeout: a queued ALTER gives up rather than stall the
-- queries behind it); the indexes are built CONCURRENTLY; the backfill touches only the unfinished
-- rows, in small committed batches. Every statement can run again. The previous release's functions
-- keep working over this schema (every new column has a default or is nullable).
--
-- email_outbox, new columns:
--   kind             'batched' (waits EMAIL_DIGEST_DELAY_SECONDS after available_at, then goes in
--                    its user's digest), 'daily' (available_at is the user's next daily slot) or
--                    'urgent' (at once, alone). Rows the previous release queues get 'batched'.
--   digest_id        the delivery_id of the row that carries the e-mail this row is part of (its
--                    leader; a leader's digest_id is its own delivery_id); NULL until claimed.
--   notification_ids on a leader: every notification of its e-mail, newest first. Set when the
--                    e-mail is first claimed and never changed after: a retry sends the same e-mail
--                    under the same idempotency key (the leader's delivery_id).
SET lock_timeout = '5s';
-- migrate:split
ALTER TABLE activity.email_outbox
    ADD COLUMN IF NOT EXISTS kind text NOT NULL DEFAULT 'batched',
    ADD COLUMN IF NOT EXISTS digest_id uuid,
    ADD COLUMN IF NOT EXISTS notification_ids uuid[];
-- migrate:split
ALTER TABLE activity.email_outbox DROP CONSTRAINT IF EXISTS email_outbox_kind_enum,
    ADD CONSTRAINT email_outbox_kind_enum CHECK (kind IN ('batched', 'daily', 'urgent')) NOT VALID;
-- migrate:split
ALTER TABLE activity.email_outbox VALIDATE CONSTRAINT email_outbox_kind_enum;
-- migrate:split
-- The daily digest (API.md, settings 8/9 "email_digest"): all NULL/'batched' until a user asks.
ALTER TABLE activity.notification_settings
    ADD COLUMN IF NOT EXISTS email_digest_frequency text NOT NULL DEFAULT 'batched',
    ADD COLUMN IF NOT EXISTS email_digest_at time,
    ADD COLUMN IF NOT EXISTS email_digest_timezone text;
-- migrate:split
ALTER TABLE activity.notification_settings DROP CONSTRAINT IF EXISTS notification_settings_email_digest,
    ADD CONSTRAINT notification_settings_email_digest CHECK (
        (email_digest_frequency = 'batched' AND email_digest_at IS NULL AND email_digest_timezone IS NULL)
        OR (email_digest_frequency = 'daily' AND email_digest_at IS NOT NULL
            AND email_digest_timezone IS NOT NULL)) NOT VALID;
-- migrate:split
ALTER TABLE activity.notification_settings VALIDATE CONSTRAINT notification_settings_email_digest;
-- migrate:split
RESET lock_timeout;
-- migrate:split
-- Claiming: new e-mails per kind in due order, retries in due order; building one user's digest:
-- only that user's unfinished rows. All partial on the unfinished statuses, so neither cost grows
-- with the outbox's history (sent and cancelled rows are never in them).
CREATE INDEX CONCURRENTLY IF NOT EXISTS email_outbox_new_due
    ON activity.email_outbox (kind, available_at) WHERE status = 'pending' AND notification_ids IS NULL;
-- migrate:split
CREATE INDEX CONCURRENTLY IF NOT EXISTS email_outbox_retry_due
    ON activity.email_outbox (available_at) WHERE status = 'pending' AND notification_ids IS NOT NULL;
-- migrate:split
CREATE INDEX CONCURRENTLY IF NOT EXISTS email_outbox_user_open
    ON activity.email_outbox (user_id) WHERE status IN ('pending', 'sending');
-- migrate:split
-- The v1 rows still queued go out under the new rules: an urgent one at once and alone; one that a
-- v1 worker already tried (attempts > 0, or leased right now) is already an e-mail of its own, sent
-- again as it was (same idempotency key), never folded into a digest. Unfinished rows only (a
-- queue: few), 1 000 per transaction, rows locked by a worker right now skipped and taken by the
-- next round.
DO $$
DECLARE
    v_done integer;
BEGIN
    LOOP
        WITH todo AS (
            SELECT o.user_id, o.delivery_id FROM activity.email_outbox o
              JOIN activity.notifications n ON n.user_id = o.user_id AND n.notification_id = o.notification_id
             WHERE o.status IN ('pending', 'sending') AND o.notification_ids IS NULL AND o.digest_id IS NULL
               AND (o.attempts > 0 OR o.status = 'sending' OR (n.priority = 'urgent' AND o.kind <> 'urgent'))
             LIMIT 1000
               FOR UPDATE OF o SKIP LOCKED
        )
        UPDATE activity.email_outbox o
           SET kind = CASE WHEN o.attempts > 0 OR o.status = 'sending' THEN o.kind ELSE 'urgent' END,
               notification_ids = CASE WHEN o.attempts > 0 OR o.status = 'sending'
                                       THEN ARRAY[o.notification_id] END,
               digest_id = CASE WHEN o.attempts > 0 OR o.status = 'sending' THEN o.delivery_id END
          FROM todo t
         WHERE o.user_id = t.user_id AND o.delivery_id = t.delivery_id;
        GET DIAGNOSTICS v_done = ROW_COUNT;
        COMMIT;
        EXIT WHEN v_done = 0;
    END LOOP;
END
$$;
