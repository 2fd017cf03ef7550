-- E-mail outbox: the functions of the delivery worker (`notifications-api deliver-emails`).
-- Re-applied by the migration runner whenever this file changes.
--
-- Rows are queued by sp_inbox_create (0109_create.sql) in the transaction that creates the
-- notification (one per notification; `kind` batched, daily or urgent), and cancelled by archive,
-- delete and retraction while still pending. A worker claims due e-mails (sp_claim_emails): a
-- user's due rows become ONE e-mail, a digest (docs/EMAIL.md), after the inbox is checked again at
-- send time; it POSTs each to the Email API and records the outcome; a worker that dies leaves a
-- lease that expires, and the next claim takes the same e-mail again (same leader row = same
-- idempotency key, same notifications).
--
-- Life of a row: pending -> sending -> sent | pending (retry) | failed (permanent 4xx)
--                | dead (attempts exhausted); pending -> cancelled (notification seen, read,
--                archived, snoozed, deleted, expired or retracted before it was sent). A digest's
--                member rows are `sending` while their leader is, and end as it ends.
--
-- Privileges: every function is SECURITY DEFINER, owned by notifications_owner, with a
-- pinned search_path; EXECUTE is revoked from PUBLIC and granted only to the NOLOGIN group
-- notifications_worker (the worker's login is a member). The API group notifications_api
-- gets none of them, and the worker none of the API's functions: each login can do its own
-- job only. Errors: NA422 invalid argument (DETAIL = argument name), as in 0100_helpers.sql.

-- The group notifications_worker is created by 0002_roles.sql (numbered files run first).
GRANT USAGE ON SCHEMA activity TO notifications_worker;

-- ---------------------------------------------------------------------------
-- claim
-- ---------------------------------------------------------------------------

-- An e-mail is carried by one outbox row, its leader (the newest notification's row): the
-- leader holds the lease, the attempts, the frozen list notification_ids and the text; the other
-- rows of a digest (members) are `sending` with digest_id = the leader's delivery_id, no lease,
-- and end as their leader ends (_email_follow). The idempotency key is the leader's delivery_id.

-- Members end as their leader did (sent, failed, dead, cancelled). Reads only the user's
-- unfinished rows (email_outbox_user_open).
-- (plpgsql: its body is checked when it runs, so this file also loads over an older schema)
-- plan_cache_mode: planned for the actual user each time (see _email_compose).
CREATE OR REPLACE FUNCTION activity._email_follow(p_user_id uuid, p_leader uuid, p_status text, p_error text)
RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = activity, pg_temp
SET plan_cache_mode = force_custom_plan
AS $$
BEGIN
    UPDATE email_outbox m
       SET status = p_status, sent_at = CASE WHEN p_status = 'sent' THEN now() END, lease_expires_at = NULL,
           last_error = COALESCE(left(p_error, 1000), m.last_error)
     WHERE m.user_id = p_user_id AND m.digest_id = p_leader AND m.delivery_id <> p_leader
       AND m.status IN ('pending', 'sending');
END
$$;

-- Make one user's new e-mails (the caller holds the user's advisory lock, so no other worker
-- composes for this user meanwhile). Reads only the user's unfinished rows. At send time the
-- inbox decides (API.md "respect the inbox"): a row whose notification is seen, read, archived,
-- snoozed, deleted, expired or retracted is cancelled. Of the rest that may go now
-- (available_at <= now()):
--   * urgent ones, and with p_delay_seconds = 0 the batched ones (v1), are an e-mail each;
--   * the others (batched with a delay, daily) are one digest, made once any of them is due
--     (batched: available_at + p_delay_seconds; daily: available_at, the user's slot).
-- A row a creator has not committed yet is not seen here: it goes in the next e-mail.
-- Returns the leaders' delivery_ids (each leased to p_worker).
-- plan_cache_mode = force_custom_plan: a pooled session reuses a generic plan after five calls, and
-- the generic plan of "this user's pending rows" may combine the primary key's user_id range with
-- the status index (a BitmapAnd that reads every row the user ever had: measured 5.9 ms of CPU per
-- claim for a user with 100 000 rows against 1.0 ms); planned for the actual user, it reads that
-- user's unfinished rows only (bench/email_digest.py, "flat cost").
CREATE OR REPLACE FUNCTION activity._email_compose(
    p_user_id uuid, p_worker text, p_lease_seconds integer, p_delay_seconds integer)
RETURNS SETOF uuid
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = activity, pg_temp
SET plan_cache_mode = force_custom_plan
AS $$
#variable_conflict use_column
DECLARE
    v_now timestamptz := now();
    v_gone uuid[];
    v_alone uuid[];
    v_digest uuid[];
    v_nids uuid[];
    v_titles text[];
    v_messages text[];
    v_urls text[];
    v_due boolean;
    v_count integer;
    v_subject text;
    v_body text;
BEGIN
    WITH mine AS (
        SELECT o.delivery_id, o.notification_id, o.kind, o.available_at,
               COALESCE(n.status = 'unread' AND n.seen_at IS NULL
                        AND _in_inbox(n.status, n.snoozed_until, n.expires_at, v_now), false) AS wanted,
               (o.kind = 'urgent' OR n.priority = 'urgent') AS urgent,
               n.delivered_at, n.title, n.message, n.action_url
          FROM email_outbox o
          -- one primary-key lookup per pending row (LIMIT 1: never a join over the user's history,
          -- which the planner may pick for a user with many notifications)
          LEFT JOIN LATERAL (SELECT x.* FROM notifications x
                              WHERE x.user_id = o.user_id AND x.notification_id = o.notification_id
                              LIMIT 1) n ON true
         WHERE o.user_id = p_user_id AND o.status = 'pending' AND o.notification_ids IS NULL
           AND o.available_at <= v_now
           FOR UPDATE OF o
    ), classified AS (
        SELECT m.*, m.wanted AND (m.urgent OR (p_delay_seconds = 0 AND m.kind = 'batched')) AS alone,
               m.wanted AND NOT m.urgent AND (p_delay_seconds > 0 OR m.kind = 'daily') AS digested
          FROM mine m
    )
    SELECT array_agg(c.delivery_id) FILTER (WHERE NOT c.wanted),
           array_agg(c.delivery_id) FILTER (WHERE c.alone),
           array_agg(c.delivery_id ORDER BY c.delivered_at DESC, c.notification_id DESC) FILTER (WHERE c.digested),
           array_agg(c.notification_id ORDER BY c.delivered_at DESC, c.notification_id DESC) FILTER (WHERE c.digested),
           array_agg(c.title ORDER BY c.delivered_at DESC, c.notification_id DESC) FILTER (WHERE c.digested),
           array_agg(c.message ORDER BY c.delivered_at DESC, c.notification_id DESC) FILTER (WHERE c.digested),
           array_agg(c.action_url ORDER BY c.delivered_at DESC, c.notification_id DESC) FILTER (WHERE c.digested),
           COALESCE(bool_or(c.kind <> 'batched' OR c.available_at <= v_now - make_interval(secs => p_delay_seconds))
                        FILTER (WHERE c.digested), false)
      INTO v_gone, v_alone, v_digest, v_nids, v_titles, v_messages, v_urls, v_due
      FROM classified c;

    IF v_gone IS NOT NULL THEN
        UPDATE email_outbox o
           SET status = 'cancelled',
               last_error = 'seen, read, archived, snoozed, deleted, expired or retracted before sending'
         WHERE o.user_id = p_user_id AND o.delivery_id = ANY (v_gone);
    END IF;

    IF v_alone IS NOT NULL THEN
        UPDATE email_outbox o
           SET status = 'sending', attempts = o.attempts + 1, lease_owner = p_worker,
               lease_expires_at = v_now + make_interval(secs => p_lease_seconds),
               digest_id = o.delivery_id, notification_ids = ARRAY[o.notification_id]
         WHERE o.user_id = p_user_id AND o.delivery_id = ANY (v_alone);
        RETURN QUERY SELECT unnest(v_alone);
    END IF;

    IF v_due THEN
        v_count := cardinality(v_digest);
        v_subject := CASE WHEN v_count = 1 THEN v_titles[1] ELSE format('%s new notifications', v_count) END;
        SELECT string_agg(concat_ws(E'\n', k.title, k.message, k.url), E'\n\n' ORDER BY k.ord)
               || CASE WHEN v_count > 10 THEN format(E'\n\nand %s more', v_count - 10) ELSE '' END
          INTO v_body
          FROM unnest(v_titles[1:10], v_messages[1:10], v_urls[1:10]) WITH ORDINALITY AS k(title, message, url, ord);
        UPDATE email_outbox o
           SET status = 'sending',
               digest_id = v_digest[1],
               attempts = CASE WHEN o.delivery_id = v_digest[1] THEN o.attempts + 1 ELSE o.attempts END,
               lease_owner = CASE WHEN o.delivery_id = v_digest[1] THEN p_worker END,
               lease_expires_at = CASE WHEN o.delivery_id = v_digest[1]
                                       THEN v_now + make_interval(secs => p_lease_seconds) END,
               notification_ids = CASE WHEN o.delivery_id = v_digest[1] THEN v_nids END,
               subject = CASE WHEN o.delivery_id = v_digest[1] THEN v_subject ELSE o.subject END,
               body = CASE WHEN o.delivery_id = v_digest[1] THEN v_body ELSE o.body END
         WHERE o.user_id = p_user_id AND o.delivery_id = ANY (v_digest);
        RETURN NEXT v_digest[1];
    END IF;
END
$$;

-- Lease up to p_limit e-mails for p_lease_seconds (p_delay_seconds: the worker's
-- EMAIL_DIGEST_DELAY_SECONDS, read at send time).
--   1. E-mails already made: a lease that expired (its worker died or hung) or a retry that is
--      due. The same e-mail goes again (same notifications, text and idempotency key: a retried
--      digest is one e-mail); cancelled when every notification in it is archived, deleted or
--      expired; dead when an expired lease had used p_max_attempts (it keeps killing workers).
--   2. New e-mails: the users with a due row (batched: available_at + delay; urgent, daily:
--      available_at), oldest first, in one indexed query over the pending rows only
--      (email_outbox_new_due: a range per kind, never the outbox's history); each user under a
--      transaction-level advisory lock (taken with try: a user another worker is composing is
--      skipped, not waited for), its e-mails made by _email_compose.
-- Each claimed e-mail comes back as its leader: delivery_id is the idempotency key,
-- notification_id the newest notification, notification_ids all of them, newest first.
CREATE OR REPLACE FUNCTION activity.sp_claim_emails(
    p_worker text, p_limit integer, p_lease_seconds integer, p_max_attempts integer, p_delay_seconds integer)
RETURNS TABLE(user_id uuid, delivery_id uuid, notification_id uuid, recipient text, subject text,
              body text, attempts integer, created_at timestamptz, notification_ids uuid[])
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = activity, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    v_uids uuid[];
    v_dids uuid[];
    v_more_uids uuid[];
    v_more_dids uuid[];
    v_ended record;
    v_user uuid;
    v_did uuid;
    v_delay interval;
    v_busy boolean;
BEGIN
    IF p_worker IS NULL OR char_length(p_worker) NOT BETWEEN 1 AND 200 THEN
        PERFORM _invalid('worker', 'worker must be 1 to 200 characters');
    END IF;
    IF p_limit IS NULL OR p_limit NOT BETWEEN 1 AND 1000 THEN
        PERFORM _invalid('limit', 'limit must be between 1 and 1000');
    END IF;
    IF p_lease_seconds IS NULL OR p_lease_seconds NOT BETWEEN 1 AND 3600 THEN
        PERFORM _invalid('lease_seconds', 'lease_seconds must be between 1 and 3600');
    END IF;
    IF p_max_attempts IS NOT NULL AND p_max_attempts < 1 THEN
        PERFORM _invalid('max_attempts', 'max_attempts must be at least 1');
    END IF;
    IF p_delay_seconds IS NULL OR p_delay_seconds NOT BETWEEN 0 AND 604800 THEN
        PERFORM _invalid('delay_seconds', 'delay_seconds must be between 0 and 604800');
    END IF;
    v_delay := make_interval(secs => p_delay_seconds);

    -- 1. e-mails already made (FOR UPDATE is not allowed under UNION: two statements)
    SELECT COALESCE(array_agg(k.user_id), '{}'), COALESCE(array_agg(k.delivery_id), '{}')
      INTO v_uids, v_dids
      FROM (SELECT o.user_id, o.delivery_id FROM email_outbox o
             WHERE o.status = 'sending' AND o.lease_expires_at <= now()
             ORDER BY o.lease_expires_at
             LIMIT p_limit
               FOR UPDATE SKIP LOCKED) k;
    IF cardinality(v_uids) < p_limit THEN
        SELECT COALESCE(array_agg(k.user_id), '{}'), COALESCE(array_agg(k.delivery_id), '{}')
          INTO v_more_uids, v_more_dids
          FROM (SELECT o.user_id, o.delivery_id FROM email_outbox o
                 WHERE o.status = 'pending' AND o.notification_ids IS NOT NULL AND o.available_at <= now()
                 ORDER BY o.available_at
                 LIMIT p_limit - cardinality(v_uids)
                   FOR UPDATE SKIP LOCKED) k;
        v_uids := v_uids || v_more_uids;
        v_dids := v_dids || v_more_dids;
    END IF;
    IF cardinality(v_uids) > 0 THEN
        FOR v_ended IN
            WITH picked AS (
                SELECT o.user_id, o.delivery_id,
                       CASE WHEN NOT EXISTS (
                                SELECT 1 FROM unnest(COALESCE(o.notification_ids, ARRAY[o.notification_id])) AS i(nid)
                                  JOIN notifications n ON n.user_id = o.user_id AND n.notification_id = i.nid
                                 WHERE n.status <> 'archived' AND (n.expires_at IS NULL OR n.expires_at > now()))
                                THEN 'cancelled'
                            WHEN o.status = 'sending' AND o.attempts >= p_max_attempts THEN 'dead'
                            ELSE 'sending' END AS next_status
                  FROM unnest(v_uids, v_dids) AS k(uid, did)
                  JOIN email_outbox o ON o.user_id = k.uid AND o.delivery_id = k.did
            )
            UPDATE email_outbox o
               SET status = p.next_status,
                   attempts = o.attempts + CASE WHEN p.next_status = 'sending' THEN 1 ELSE 0 END,
                   lease_owner = CASE WHEN p.next_status = 'sending' THEN p_worker ELSE o.lease_owner END,
                   lease_expires_at = CASE WHEN p.next_status = 'sending'
                                           THEN now() + make_interval(secs => p_lease_seconds) END,
                   digest_id = o.delivery_id,
                   notification_ids = COALESCE(o.notification_ids, ARRAY[o.notification_id]),
                   last_error = CASE p.next_status
                       WHEN 'cancelled' THEN 'notification archived, deleted or expired before sending'
                       WHEN 'dead' THEN format('lease expired after attempt %s (worker died or hung while sending)',
                                               o.attempts)
                       ELSE o.last_error END
              FROM picked p
             WHERE o.user_id = p.user_id AND o.delivery_id = p.delivery_id
            RETURNING o.user_id, o.delivery_id, o.status, o.last_error
        LOOP
            IF v_ended.status <> 'sending' THEN
                PERFORM _email_follow(v_ended.user_id, v_ended.delivery_id, v_ended.status, v_ended.last_error);
            END IF;
        END LOOP;
    END IF;

    -- 2. new e-mails, user by user, oldest due first. A claim that finds only users another worker is
    --    composing (it started at the same moment and saw the same oldest rows) looks again a little
    --    later, up to three times: by then that worker has committed and the window has moved on.
    --    (A short sleep, not a wait on that worker's lock: two claims waiting on each other's users
    --    would deadlock.)
    FOR v_round IN 1..3 LOOP
        EXIT WHEN cardinality(v_uids) >= p_limit;
        v_busy := false;
        FOR v_user IN
            SELECT c.user_id FROM (
                (SELECT o.user_id, o.available_at + v_delay AS due FROM email_outbox o
                  WHERE o.status = 'pending' AND o.notification_ids IS NULL AND o.kind = 'batched'
                    AND o.available_at <= now() - v_delay
                  ORDER BY o.available_at LIMIT p_limit * 4)
                UNION ALL
                (SELECT o.user_id, o.available_at FROM email_outbox o
                  WHERE o.status = 'pending' AND o.notification_ids IS NULL AND o.kind = 'urgent'
                    AND o.available_at <= now()
                  ORDER BY o.available_at LIMIT p_limit * 4)
                UNION ALL
                (SELECT o.user_id, o.available_at FROM email_outbox o
                  WHERE o.status = 'pending' AND o.notification_ids IS NULL AND o.kind = 'daily'
                    AND o.available_at <= now()
                  ORDER BY o.available_at LIMIT p_limit * 4)
            ) c
             GROUP BY c.user_id
             ORDER BY min(c.due)
             LIMIT p_limit * 4
        LOOP
            EXIT WHEN cardinality(v_uids) >= p_limit;
            IF NOT pg_try_advisory_xact_lock(25, hashtext(v_user::text)) THEN
                v_busy := true;
                CONTINUE;
            END IF;
            FOR v_did IN SELECT * FROM _email_compose(v_user, p_worker, p_lease_seconds, p_delay_seconds) LOOP
                v_uids := v_uids || v_user;
                v_dids := v_dids || v_did;
            END LOOP;
        END LOOP;
        EXIT WHEN NOT v_busy OR cardinality(v_uids) > 0;
        PERFORM pg_sleep(0.02 * v_round);
    END LOOP;

    RETURN QUERY
    SELECT o.user_id, o.delivery_id, o.notification_ids[1], o.recipient, o.subject, o.body, o.attempts,
           o.created_at, o.notification_ids
      FROM unnest(v_uids, v_dids) AS k(uid, did)
      JOIN email_outbox o ON o.user_id = k.uid AND o.delivery_id = k.did
     WHERE o.status = 'sending' AND o.lease_owner = p_worker
     ORDER BY o.created_at, o.delivery_id;
END
$$;

-- The previous release's worker (a rolling deploy): the same claim, one e-mail per notification
-- (delay 0), without the list.
CREATE OR REPLACE FUNCTION activity.sp_claim_email_deliveries(
    p_worker text, p_limit integer, p_lease_seconds integer, p_max_attempts integer DEFAULT NULL)
RETURNS TABLE(user_id uuid, delivery_id uuid, notification_id uuid, recipient text, subject text,
              body text, attempts integer, created_at timestamptz)
LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = activity, pg_temp
AS $$
    SELECT c.user_id, c.delivery_id, c.notification_id, c.recipient, c.subject, c.body, c.attempts, c.created_at
      FROM activity.sp_claim_emails(p_worker, p_limit, p_lease_seconds, p_max_attempts, 0) c
$$;

-- ---------------------------------------------------------------------------
-- outcomes: each applies only while the row is still leased by p_worker (false / NULL
-- otherwise: the lease expired and another worker took the row over)
-- ---------------------------------------------------------------------------

-- The Email API accepted it.
CREATE OR REPLACE FUNCTION activity.sp_complete_email_delivery(p_user_id uuid, p_delivery_id uuid, p_worker text)
RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = activity, pg_temp
AS $$
BEGIN
    UPDATE email_outbox o
       SET status = 'sent', sent_at = now(), lease_expires_at = NULL
     WHERE o.user_id = p_user_id AND o.delivery_id = p_delivery_id
       AND o.status = 'sending' AND o.lease_owner = p_worker;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    PERFORM _email_follow(p_user_id, p_delivery_id, 'sent', NULL);
    RETURN true;
END
$$;

-- A transient failure (5xx, 429, timeout, connection error): pending again after
-- p_delay_seconds, or dead once it has used p_max_attempts. The delay is relative to the
-- database clock (not a worker's timestamp: worker clocks may be skewed).
-- Returns the new status ('pending' or 'dead'), NULL when the lease is not ours any more.
CREATE OR REPLACE FUNCTION activity.sp_retry_email_delivery(
    p_user_id uuid, p_delivery_id uuid, p_worker text, p_error text, p_delay_seconds double precision,
    p_max_attempts integer)
RETURNS text
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = activity, pg_temp
AS $$
DECLARE
    v_status text;
BEGIN
    IF p_delay_seconds IS NULL OR p_delay_seconds < 0 OR p_delay_seconds > 86400 THEN
        PERFORM _invalid('delay_seconds', 'delay_seconds must be between 0 and 86400');
    END IF;
    IF p_max_attempts IS NULL OR p_max_attempts < 1 THEN
        PERFORM _invalid('max_attempts', 'max_attempts must be at least 1');
    END IF;
    UPDATE email_outbox o
       SET status = CASE WHEN o.attempts >= p_max_attempts THEN 'dead' ELSE 'pending' END,
           available_at = CASE WHEN o.attempts >= p_max_attempts THEN o.available_at
                               ELSE now() + make_interval(secs => p_delay_seconds) END,
           lease_expires_at = NULL,
           last_error = left(p_error, 1000)
     WHERE o.user_id = p_user_id AND o.delivery_id = p_delivery_id
       AND o.status = 'sending' AND o.lease_owner = p_worker
    RETURNING o.status INTO v_status;
    IF v_status = 'dead' THEN
        PERFORM _email_follow(p_user_id, p_delivery_id, 'dead', p_error);
    END IF;
    RETURN v_status;
END
$$;

-- A permanent failure (a 4xx other than 429): never retried; stays visible as `failed`.
CREATE OR REPLACE FUNCTION activity.sp_fail_email_delivery(
    p_user_id uuid, p_delivery_id uuid, p_worker text, p_error text)
RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = activity, pg_temp
AS $$
BEGIN
    UPDATE email_outbox o
       SET status = 'failed', lease_expires_at = NULL, last_error = left(p_error, 1000)
     WHERE o.user_id = p_user_id AND o.delivery_id = p_delivery_id
       AND o.status = 'sending' AND o.lease_owner = p_worker;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    PERFORM _email_follow(p_user_id, p_delivery_id, 'failed', p_error);
    RETURN true;
END
$$;

-- Shutdown: hand back every row p_worker still leases and has not sent (due at once, the
-- attempt it did not make not counted). Returns how many were released.
CREATE OR REPLACE FUNCTION activity.sp_release_email_deliveries(p_worker text)
RETURNS integer
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = activity, pg_temp
AS $$
DECLARE
    v_released integer;
BEGIN
    UPDATE email_outbox o
       SET status = 'pending', lease_owner = NULL, lease_expires_at = NULL,
           attempts = GREATEST(o.attempts - 1, 0)
     WHERE o.status = 'sending' AND o.lease_owner = p_worker;
    GET DIAGNOSTICS v_released = ROW_COUNT;
    RETURN v_released;
END
$$;

-- ---------------------------------------------------------------------------
-- metrics
-- ---------------------------------------------------------------------------

-- Queue state for the worker's gauges: rows per unfinished or given-up status and the age of
-- the oldest due pending row (0 when none is due). `sent` and `cancelled` are not counted:
-- they only grow. Index-only range scans of email_outbox_due.
CREATE OR REPLACE FUNCTION activity.sp_email_queue_stats()
RETURNS TABLE(pending bigint, due bigint, sending bigint, failed bigint, dead bigint,
              oldest_due_age_seconds double precision)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = activity, pg_temp
AS $$
    SELECT (SELECT count(*) FROM activity.email_outbox o WHERE o.status = 'pending'),
           (SELECT count(*) FROM activity.email_outbox o WHERE o.status = 'pending' AND o.available_at <= now()),
           (SELECT count(*) FROM activity.email_outbox o WHERE o.status = 'sending'),
           (SELECT count(*) FROM activity.email_outbox o WHERE o.status = 'failed'),
           (SELECT count(*) FROM activity.email_outbox o WHERE o.status = 'dead'),
           COALESCE((SELECT extract(epoch FROM now() - min(o.available_at))::double precision
                       FROM activity.email_outbox o
                      WHERE o.status = 'pending' AND o.available_at <= now()), 0)
$$;

-- ---------------------------------------------------------------------------
-- ownership and privileges
-- ---------------------------------------------------------------------------

DO $$
DECLARE
    f regprocedure;
BEGIN
    FOR f IN SELECT p.oid::regprocedure FROM pg_proc p
              WHERE p.pronamespace = 'activity'::regnamespace
                AND p.proname IN ('sp_claim_emails', '_email_compose', '_email_follow',
                                  'sp_claim_email_deliveries', 'sp_complete_email_delivery',
                                  'sp_retry_email_delivery', 'sp_fail_email_delivery',
                                  'sp_release_email_deliveries', 'sp_email_queue_stats') LOOP
        EXECUTE format('ALTER FUNCTION %s OWNER TO notifications_owner', f);
        EXECUTE format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', f);
    END LOOP;
END
$$;

GRANT EXECUTE ON FUNCTION
    activity.sp_claim_emails(text, integer, integer, integer, integer),
    activity.sp_claim_email_deliveries(text, integer, integer, integer),
    activity.sp_complete_email_delivery(uuid, uuid, text),
    activity.sp_retry_email_delivery(uuid, uuid, text, text, double precision, integer),
    activity.sp_fail_email_delivery(uuid, uuid, text, text),
    activity.sp_release_email_deliveries(text),
    activity.sp_email_queue_stats()
TO notifications_worker;
