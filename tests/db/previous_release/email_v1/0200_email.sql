-- E-mail outbox: the functions of the delivery worker (`notifications-api deliver-emails`).
-- Re-applied by the migration runner whenever this file changes.
--
-- Rows are queued by sp_inbox_create (0109_create.sql) in the transaction that creates the
-- notification, and cancelled by sp_delete_notification while still pending. A worker
-- leases due rows (FOR UPDATE SKIP LOCKED, so any number of workers can run), POSTs them
-- to the Email API and records the outcome; a worker that dies leaves a lease that expires,
-- and the next claim takes the row again (same delivery_id = same idempotency key).
--
-- Life of a row: pending -> sending -> sent | pending (retry) | failed (permanent 4xx)
--                | dead (attempts exhausted); pending -> cancelled (notification archived,
--                deleted or expired before it was sent).
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

-- Lease up to p_limit deliveries for p_lease_seconds: first rows whose lease expired (their
-- worker died or hung), then due pending rows, oldest first. Each claimed row becomes
-- `sending`, owned by p_worker, with attempts + 1; the caller sends them before the lease
-- ends. Rows whose notification was archived, deleted or has expired are cancelled instead
-- of returned; an expired lease on a row that already used p_max_attempts (a delivery that
-- keeps killing its worker) makes it dead. Indexes: email_outbox_due (status, available_at)
-- serves both scans (the `sending` rows are few: at most the workers' batches).
CREATE OR REPLACE FUNCTION activity.sp_claim_email_deliveries(
    p_worker text, p_limit integer, p_lease_seconds integer, p_max_attempts integer DEFAULT NULL)
RETURNS TABLE(user_id uuid, delivery_id uuid, notification_id uuid, recipient text, subject text,
              body text, attempts integer, created_at timestamptz)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = activity, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    v_uids uuid[];
    v_dids uuid[];
    v_more_uids uuid[];
    v_more_dids uuid[];
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

    -- (FOR UPDATE is not allowed under UNION: two statements)
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
                 WHERE o.status = 'pending' AND o.available_at <= now()
                 ORDER BY o.available_at
                 LIMIT p_limit - cardinality(v_uids)
                   FOR UPDATE SKIP LOCKED) k;
        v_uids := v_uids || v_more_uids;
        v_dids := v_dids || v_more_dids;
    END IF;
    IF cardinality(v_uids) = 0 THEN
        RETURN;
    END IF;

    RETURN QUERY
    WITH picked AS (
        SELECT o.user_id, o.delivery_id,
               CASE WHEN n.notification_id IS NULL OR n.status = 'archived' OR n.expires_at <= now()
                        THEN 'cancelled'
                    WHEN o.status = 'sending' AND o.attempts >= p_max_attempts THEN 'dead'
                    ELSE 'sending' END AS next_status
          FROM unnest(v_uids, v_dids) AS k(uid, did)
          JOIN email_outbox o ON o.user_id = k.uid AND o.delivery_id = k.did
          LEFT JOIN notifications n ON n.user_id = o.user_id AND n.notification_id = o.notification_id
    ), changed AS (
        UPDATE email_outbox o
           SET status = p.next_status,
               attempts = o.attempts + CASE WHEN p.next_status = 'sending' THEN 1 ELSE 0 END,
               lease_owner = CASE WHEN p.next_status = 'sending' THEN p_worker ELSE o.lease_owner END,
               lease_expires_at = CASE WHEN p.next_status = 'sending'
                                       THEN now() + make_interval(secs => p_lease_seconds) END,
               last_error = CASE p.next_status
                   WHEN 'cancelled' THEN 'notification archived, deleted or expired before sending'
                   WHEN 'dead' THEN format('lease expired after attempt %s (worker died or hung while sending)',
                                           o.attempts)
                   ELSE o.last_error END
          FROM picked p
         WHERE o.user_id = p.user_id AND o.delivery_id = p.delivery_id
        RETURNING o.user_id, o.delivery_id, o.notification_id, o.recipient, o.subject, o.body, o.attempts,
                  o.created_at, o.status
    )
    SELECT c.user_id, c.delivery_id, c.notification_id, c.recipient, c.subject, c.body, c.attempts, c.created_at
      FROM changed c
     WHERE c.status = 'sending'
     ORDER BY c.created_at, c.delivery_id;
END
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
    RETURN FOUND;
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
    RETURN FOUND;
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
                AND p.proname IN ('sp_claim_email_deliveries', 'sp_complete_email_delivery',
                                  'sp_retry_email_delivery', 'sp_fail_email_delivery',
                                  'sp_release_email_deliveries', 'sp_email_queue_stats') LOOP
        EXECUTE format('ALTER FUNCTION %s OWNER TO notifications_owner', f);
        EXECUTE format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', f);
    END LOOP;
END
$$;

GRANT EXECUTE ON FUNCTION
    activity.sp_claim_email_deliveries(text, integer, integer, integer),
    activity.sp_complete_email_delivery(uuid, uuid, text),
    activity.sp_retry_email_delivery(uuid, uuid, text, text, double precision, integer),
    activity.sp_fail_email_delivery(uuid, uuid, text, text),
    activity.sp_release_email_deliveries(text),
    activity.sp_email_queue_stats()
TO notifications_worker;
