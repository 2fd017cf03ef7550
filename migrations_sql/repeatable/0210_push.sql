-- Web Push (issue 24; API.md "Delivery channels (v3)", docs/PUSH.md): the browsers' subscriptions
-- (endpoints 17-19, the API's), the queueing of pushes by the create (_queue_push, called by
-- sp_inbox_create in 0109_create.sql: one push_queue row), the push worker's expansion of that queue
-- into per-browser deliveries and its outbox functions
-- (`notifications-api deliver-push`) and the retention purge of finished deliveries.
-- Re-applied by the migration runner whenever this file or an earlier repeatable one changes.
--
-- Privileges: every function is SECURITY DEFINER, owned by notifications_owner, with a pinned
-- search_path; EXECUTE is revoked from PUBLIC and granted to exactly one NOLOGIN group: the
-- subscription functions to notifications_api, the outbox ones to notifications_push_worker
-- (0165_push.sql), the purge to notifications_retention (notifications_api/db/grants.py lists them).
-- Errors: NA422 invalid argument (DETAIL = argument name), NA401/NA403 as in 0100_helpers.sql,
-- NAP04 subscription not found.
--
-- Locks: sp_push_subscribe takes a transaction advisory lock on the endpoint, then one on the user
-- (always in that order): one endpoint belongs to one user, and the 20-per-user cap is exact under
-- concurrent registrations.

-- ---------------------------------------------------------------------------
-- subscriptions (the API's)
-- ---------------------------------------------------------------------------

-- The API's view of a subscription: never the endpoint nor the keys, only the endpoint's origin.
CREATE OR REPLACE FUNCTION activity._push_origin(p_endpoint text)
RETURNS text
LANGUAGE sql IMMUTABLE SECURITY DEFINER SET search_path = activity, pg_temp
AS $$
    SELECT lower(substring(p_endpoint FROM '^[A-Za-z][A-Za-z0-9+.-]*://[^/?#]+'))
$$;

-- A deleted subscription's unfinished deliveries go with it (push_outbox has no foreign key: see
-- 0165_push.sql). Reads the user's rows through the primary key. Returns how many were dropped.
CREATE OR REPLACE FUNCTION activity._drop_push_deliveries(p_user_id uuid, p_subscription_ids uuid[])
RETURNS integer
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = activity, pg_temp
AS $$
DECLARE
    v_dropped integer;
BEGIN
    DELETE FROM push_outbox o
     WHERE o.user_id = p_user_id AND o.subscription_id = ANY (p_subscription_ids)
       AND o.status IN ('pending', 'sending');
    GET DIAGNOSTICS v_dropped = ROW_COUNT;
    RETURN v_dropped;
END
$$;

-- 17. Register (or refresh) a browser for the user. result: 'created' (new), 'updated' (the caller's
-- endpoint already: keys, label and expiration replaced), 'moved' (it was another user's: that row
-- and its pending deliveries are gone, a new subscription_id). removed_count: subscriptions of the
-- caller removed by the 20-per-user cap (registered longest ago first).
CREATE OR REPLACE FUNCTION activity.sp_push_subscribe(
    p_user_id uuid, p_endpoint text, p_p256dh bytea, p_auth bytea, p_user_agent text DEFAULT NULL,
    p_expiration_time timestamptz DEFAULT NULL, p_max_per_user integer DEFAULT 20)
RETURNS TABLE(result text, removed_count integer, subscription_id uuid, endpoint_origin text,
              user_agent text, created_at timestamptz, expiration_time timestamptz,
              last_success_at timestamptz, consecutive_failures integer)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = activity, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    v_result text;
    v_row push_subscriptions%ROWTYPE;
    v_removed integer := 0;
    v_old_user uuid;
    v_old_id uuid;
    v_capped uuid[];
BEGIN
    PERFORM _check_user(p_user_id);
    IF p_endpoint IS NULL OR char_length(p_endpoint) NOT BETWEEN 1 AND 2048
       OR p_endpoint !~ '^https?://[^/?#[:space:]]+' THEN
        PERFORM _invalid('endpoint', 'endpoint must be an http(s) URL of at most 2048 characters');
    END IF;
    IF p_p256dh IS NULL OR octet_length(p_p256dh) <> 65 OR get_byte(p_p256dh, 0) <> 4 THEN
        PERFORM _invalid('keys.p256dh', 'p256dh must be an uncompressed P-256 point (65 bytes)');
    END IF;
    IF p_auth IS NULL OR octet_length(p_auth) <> 16 THEN
        PERFORM _invalid('keys.auth', 'auth must be 16 bytes');
    END IF;
    IF char_length(p_user_agent) > 200 THEN
        PERFORM _invalid('user_agent', 'user_agent must be at most 200 characters');
    END IF;
    IF p_max_per_user IS NULL OR p_max_per_user NOT BETWEEN 1 AND 1000 THEN
        PERFORM _invalid('max_per_user', 'max_per_user must be between 1 and 1000');
    END IF;

    PERFORM pg_advisory_xact_lock(hashtextextended('push_endpoint:' || p_endpoint, 0));
    PERFORM pg_advisory_xact_lock(hashtextextended('push_user:' || p_user_id::text, 0));

    -- another user's browser moves to the caller (its pending deliveries go with the old row)
    DELETE FROM push_subscriptions s WHERE s.endpoint = p_endpoint AND s.user_id <> p_user_id
    RETURNING s.user_id, s.subscription_id INTO v_old_user, v_old_id;
    IF v_old_id IS NOT NULL THEN
        PERFORM _drop_push_deliveries(v_old_user, ARRAY[v_old_id]);
        v_result := 'moved';
    END IF;

    UPDATE push_subscriptions s
       SET p256dh = p_p256dh, auth = p_auth, user_agent = p_user_agent,
           expiration_time = p_expiration_time, updated_at = now()
     WHERE s.user_id = p_user_id AND s.endpoint = p_endpoint
    RETURNING s.* INTO v_row;
    IF FOUND THEN
        v_result := 'updated';
    ELSE
        INSERT INTO push_subscriptions AS s (user_id, endpoint, p256dh, auth, user_agent, expiration_time)
        VALUES (p_user_id, p_endpoint, p_p256dh, p_auth, p_user_agent, p_expiration_time)
        RETURNING s.* INTO v_row;
        v_result := COALESCE(v_result, 'created');
        -- the cap: the ones registered longest ago make room (never the one just registered)
        WITH old AS (
            SELECT s.subscription_id FROM push_subscriptions s
             WHERE s.user_id = p_user_id
             ORDER BY s.created_at DESC, s.subscription_id DESC
            OFFSET p_max_per_user
        ), gone AS (
            DELETE FROM push_subscriptions s USING old
             WHERE s.user_id = p_user_id AND s.subscription_id = old.subscription_id
               AND s.subscription_id <> v_row.subscription_id
            RETURNING s.subscription_id
        )
        SELECT count(*), array_agg(gone.subscription_id) INTO v_removed, v_capped FROM gone;
        IF v_removed > 0 THEN
            PERFORM _drop_push_deliveries(p_user_id, v_capped);
        END IF;
    END IF;

    RETURN QUERY SELECT v_result, v_removed, v_row.subscription_id, _push_origin(v_row.endpoint),
                        v_row.user_agent, v_row.created_at, v_row.expiration_time, v_row.last_success_at,
                        v_row.consecutive_failures;
END
$$;

-- 18. The user's browsers, newest first.
CREATE OR REPLACE FUNCTION activity.sp_push_subscriptions(p_user_id uuid)
RETURNS TABLE(subscription_id uuid, endpoint_origin text, user_agent text, created_at timestamptz,
              expiration_time timestamptz, last_success_at timestamptz, consecutive_failures integer)
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = activity, pg_temp
AS $$
#variable_conflict use_column
BEGIN
    PERFORM _check_user(p_user_id);
    RETURN QUERY
    SELECT s.subscription_id, _push_origin(s.endpoint), s.user_agent, s.created_at, s.expiration_time,
           s.last_success_at, s.consecutive_failures
      FROM push_subscriptions s
     WHERE s.user_id = p_user_id
     ORDER BY s.created_at DESC, s.subscription_id DESC;
END
$$;

-- 19. Forget one browser of the user, by id or (a browser that lost its id) by endpoint; its
-- pending deliveries go with it. NAP04 when the user has no such subscription. Returns the
-- removed subscription's id and origin (for the log line).
CREATE OR REPLACE FUNCTION activity.sp_push_unsubscribe(
    p_user_id uuid, p_subscription_id uuid DEFAULT NULL, p_endpoint text DEFAULT NULL)
RETURNS TABLE(subscription_id uuid, endpoint_origin text)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = activity, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    v_id uuid;
    v_origin text;
BEGIN
    PERFORM _check_user(p_user_id);
    IF (p_subscription_id IS NULL) = (p_endpoint IS NULL) THEN
        PERFORM _invalid('subscription_id', 'give exactly one of subscription_id and endpoint');
    END IF;
    DELETE FROM push_subscriptions s
     WHERE s.user_id = p_user_id
       AND (s.subscription_id = p_subscription_id OR s.endpoint = p_endpoint)
    RETURNING s.subscription_id, _push_origin(s.endpoint) INTO v_id, v_origin;
    IF v_id IS NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'NAP04', MESSAGE = 'subscription not found';
    END IF;
    PERFORM _drop_push_deliveries(p_user_id, ARRAY[v_id]);
    RETURN QUERY SELECT v_id, v_origin;
END
$$;

-- ---------------------------------------------------------------------------
-- queueing (called by sp_inbox_create, in the create's transaction)
-- ---------------------------------------------------------------------------

-- One push_queue row (0166_push_queue.sql) holding the created rows' (user, notification) pairs: the
-- fan-out to browsers, the settings and the quiet hours are the worker's (sp_expand_push_queue), off
-- the create's path. Nothing when no row was created, or when no browser is registered at all (push
-- not configured: no worker would ever take the row). Returns the pairs queued. Not granted to anyone:
-- only sp_inbox_create (SECURITY DEFINER, same owner) calls it.
CREATE OR REPLACE FUNCTION activity._queue_push(p_rows activity.inbox_notification[])
RETURNS integer
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = activity, pg_temp
AS $$
BEGIN
    IF cardinality(p_rows) IS NULL OR cardinality(p_rows) = 0
       OR NOT EXISTS (SELECT 1 FROM push_subscriptions) THEN
        RETURN 0;
    END IF;
    -- one create: one type and one priority (min() only picks it)
    INSERT INTO push_queue (user_ids, notification_ids, user_count, notification_type, priority)
    SELECT array_agg(r.user_id), array_agg(r.notification_id), cardinality(p_rows), min(r.notification_type),
           min(r.priority)
      FROM unnest(p_rows) AS r;
    RETURN cardinality(p_rows);
END
$$;

-- The expansion: takes the oldest push_queue rows (FOR UPDATE SKIP LOCKED, one at a time, until they
-- hold p_limit users; at least one row), queues one pending push_outbox row per subscription of each
-- of their users when push is on for the user and not turned off for the type, deferred to the end
-- of the user's quiet hours unless urgent (settings and quiet hours as they are now), and deletes the
-- rows, all in the caller's transaction: two workers never expand a row twice, and a crash rolls the
-- whole expansion back. An outbox row's created_at is its queue row's (the TTL counts from the
-- create); one due at once is available from then too (oldest first). Called by the claim; granted to
-- the push worker on its own for the tests and for draining by hand.
-- Returns expanded (queue rows taken) and queued (push_outbox rows made).
CREATE OR REPLACE FUNCTION activity.sp_expand_push_queue(p_limit integer DEFAULT 200)
RETURNS TABLE(expanded integer, queued integer)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = activity, pg_temp
AS $$
DECLARE
    -- an explicit cursor FETCHes (and so locks) one row at a time: only the rows it keeps
    v_oldest CURSOR FOR
        SELECT q.queue_id, q.user_count FROM push_queue q
         ORDER BY q.created_at
           FOR UPDATE SKIP LOCKED;
    v_row record;
    v_ids uuid[] := '{}';
    v_users integer := 0;
    v_queued integer;
BEGIN
    IF p_limit IS NULL OR p_limit NOT BETWEEN 1 AND 1000 THEN
        PERFORM _invalid('limit', 'limit must be between 1 and 1000');
    END IF;
    OPEN v_oldest;
    LOOP
        FETCH v_oldest INTO v_row;
        EXIT WHEN NOT FOUND;
        v_ids := v_ids || v_row.queue_id;
        v_users := v_users + v_row.user_count;
        EXIT WHEN v_users >= p_limit;
    END LOOP;
    CLOSE v_oldest;
    IF cardinality(v_ids) = 0 THEN
        RETURN QUERY SELECT 0, 0;
        RETURN;
    END IF;

    INSERT INTO push_outbox (user_id, notification_id, subscription_id, available_at, created_at)
    SELECT k.uid, k.nid, s.subscription_id,
           CASE WHEN q.priority = 'urgent' OR ns.quiet_hours_start IS NULL THEN q.created_at
                ELSE COALESCE(quiet_hours_end(ns.quiet_hours_start, ns.quiet_hours_end,
                                              ns.quiet_hours_timezone, now()), q.created_at) END,
           q.created_at
      FROM push_queue q
     CROSS JOIN LATERAL unnest(q.user_ids, q.notification_ids) AS k(uid, nid)
      JOIN push_subscriptions s ON s.user_id = k.uid
      LEFT JOIN notification_settings ns ON ns.user_id = k.uid
     WHERE q.queue_id = ANY (v_ids)
       AND ns.push_enabled IS NOT FALSE
       AND (ns.type_preferences -> q.notification_type ->> 'push') IS DISTINCT FROM 'false';
    GET DIAGNOSTICS v_queued = ROW_COUNT;
    DELETE FROM push_queue q WHERE q.queue_id = ANY (v_ids);
    RETURN QUERY SELECT cardinality(v_ids), v_queued;
END
$$;

-- ---------------------------------------------------------------------------
-- the worker's
-- ---------------------------------------------------------------------------

-- Lease up to p_limit deliveries for p_lease_seconds. First the push queue is expanded
-- (sp_expand_push_queue(p_limit): about p_limit users' worth of creates, oldest first), in this
-- transaction; then rows whose lease expired (their worker
-- died or hung: at most the in-flight ones are sent again), then due pending rows, oldest first.
-- Each claimed row becomes `sending`, owned by p_worker, with attempts + 1, and is returned with
-- what the push needs: the subscription's endpoint and keys, the notification's fields and the
-- user's counts (as last folded: a snooze end or expiry not folded yet is not in them).
-- Respects the inbox: a row whose notification is gone (deleted, retracted, purged), seen, read,
-- archived, snoozed or expired is cancelled, never returned; one whose subscription is gone (an expansion
-- that read it just before it was deleted) is dropped. An expired lease on a row that already
-- used p_max_attempts (a push that keeps killing its worker) fails it.
-- Indexes: push_outbox_leased and push_outbox_due (partial): the cost does not grow with history.
CREATE OR REPLACE FUNCTION activity.sp_claim_push_deliveries(
    p_worker text, p_limit integer, p_lease_seconds integer, p_max_attempts integer)
RETURNS TABLE(user_id uuid, delivery_id uuid, notification_id uuid, subscription_id uuid, endpoint text,
              p256dh bytea, auth bytea, attempts integer, queued_at timestamptz,
              notification_type text, title text, message text, action_url text, priority text,
              group_key text, created_at timestamptz, expires_at timestamptz,
              unread_count bigint, unseen_count bigint)
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
    IF p_max_attempts IS NULL OR p_max_attempts < 1 THEN
        PERFORM _invalid('max_attempts', 'max_attempts must be at least 1');
    END IF;

    PERFORM sp_expand_push_queue(p_limit);

    -- (FOR UPDATE is not allowed under UNION: two statements)
    SELECT COALESCE(array_agg(k.user_id), '{}'), COALESCE(array_agg(k.delivery_id), '{}')
      INTO v_uids, v_dids
      FROM (SELECT o.user_id, o.delivery_id FROM push_outbox o
             WHERE o.status = 'sending' AND o.lease_expires_at <= now()
             ORDER BY o.lease_expires_at
             LIMIT p_limit
               FOR UPDATE SKIP LOCKED) k;
    IF cardinality(v_uids) < p_limit THEN
        SELECT COALESCE(array_agg(k.user_id), '{}'), COALESCE(array_agg(k.delivery_id), '{}')
          INTO v_more_uids, v_more_dids
          FROM (SELECT o.user_id, o.delivery_id FROM push_outbox o
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
               CASE WHEN n.notification_id IS NULL OR n.status <> 'unread'
                         OR n.seen_at IS NOT NULL OR n.read_at IS NOT NULL
                         OR n.snoozed_until > now() OR n.expires_at <= now()
                        THEN 'cancelled'
                    WHEN s.subscription_id IS NULL THEN 'gone'
                    WHEN o.status = 'sending' AND o.attempts >= p_max_attempts THEN 'failed'
                    ELSE 'sending' END AS next_status
          FROM unnest(v_uids, v_dids) AS k(uid, did)
          JOIN push_outbox o ON o.user_id = k.uid AND o.delivery_id = k.did
          LEFT JOIN notifications n ON n.user_id = o.user_id AND n.notification_id = o.notification_id
          LEFT JOIN push_subscriptions s ON s.user_id = o.user_id AND s.subscription_id = o.subscription_id
    ), dropped AS (
        -- queued by an expansion that read the subscription just before it was deleted
        DELETE FROM push_outbox o USING picked p
         WHERE o.user_id = p.user_id AND o.delivery_id = p.delivery_id AND p.next_status = 'gone'
    ), changed AS (
        UPDATE push_outbox o
           SET status = p.next_status,
               attempts = o.attempts + CASE WHEN p.next_status = 'sending' THEN 1 ELSE 0 END,
               lease_owner = CASE WHEN p.next_status = 'sending' THEN p_worker ELSE o.lease_owner END,
               lease_expires_at = CASE WHEN p.next_status = 'sending'
                                       THEN now() + make_interval(secs => p_lease_seconds) END,
               finished_at = CASE WHEN p.next_status = 'sending' THEN NULL ELSE now() END,
               last_error = CASE p.next_status
                   WHEN 'cancelled' THEN 'the notification was seen, read, archived, snoozed, deleted or '
                                         'expired before it was pushed'
                   WHEN 'failed' THEN format('lease expired after attempt %s (worker died or hung while '
                                             'sending)', o.attempts)
                   ELSE o.last_error END
          FROM picked p
         WHERE o.user_id = p.user_id AND o.delivery_id = p.delivery_id AND p.next_status <> 'gone'
        RETURNING o.user_id, o.delivery_id, o.notification_id, o.subscription_id, o.attempts, o.created_at,
                  o.status
    )
    SELECT c.user_id, c.delivery_id, c.notification_id, c.subscription_id, s.endpoint, s.p256dh, s.auth,
           c.attempts, c.created_at, n.notification_type, n.title, n.message, n.action_url, n.priority,
           n.group_key, n.created_at, n.expires_at, COALESCE(nc.inbox_unread, 0), COALESCE(nc.inbox_unseen, 0)
      FROM changed c
      JOIN push_subscriptions s ON s.user_id = c.user_id AND s.subscription_id = c.subscription_id
      JOIN notifications n ON n.user_id = c.user_id AND n.notification_id = c.notification_id
      LEFT JOIN notification_counters nc ON nc.user_id = c.user_id
     WHERE c.status = 'sending'
     ORDER BY c.created_at, c.delivery_id;
END
$$;

-- Outcomes: each applies only while the row is still leased by p_worker (FALSE / NULL otherwise:
-- the lease expired and another worker took the row over).

-- 2xx: sent; the subscriptions work (last_success_at, failures reset). Set-based, one call for the
-- sent part of a batch: a call per push would cost a database round trip each. Returns the
-- delivery ids that were still leased by p_worker (the others were taken over: their lease expired).
CREATE OR REPLACE FUNCTION activity.sp_complete_push_deliveries(
    p_worker text, p_user_ids uuid[], p_delivery_ids uuid[])
RETURNS TABLE(delivery_id uuid)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = activity, pg_temp
AS $$
#variable_conflict use_column
BEGIN
    IF cardinality(p_user_ids) IS DISTINCT FROM cardinality(p_delivery_ids) OR cardinality(p_user_ids) > 1000 THEN
        PERFORM _invalid('delivery_ids', 'user_ids and delivery_ids must pair up, at most 1000');
    END IF;
    RETURN QUERY
    WITH done AS (
        UPDATE push_outbox o
           SET status = 'sent', finished_at = now(), lease_expires_at = NULL
          FROM unnest(p_user_ids, p_delivery_ids) AS k(uid, did)
         WHERE o.user_id = k.uid AND o.delivery_id = k.did
           AND o.status = 'sending' AND o.lease_owner = p_worker
        RETURNING o.user_id, o.delivery_id, o.subscription_id
    ), works AS (
        UPDATE push_subscriptions s SET last_success_at = now(), consecutive_failures = 0
          FROM (SELECT DISTINCT d.user_id, d.subscription_id FROM done d) d
         WHERE s.user_id = d.user_id AND s.subscription_id = d.subscription_id
    )
    SELECT d.delivery_id FROM done d;
END
$$;

-- A failed delivery counts against its subscription: at p_max_failures consecutive ones the
-- subscription is deleted (with its pending deliveries). Returns whether it was.
CREATE OR REPLACE FUNCTION activity._push_failure(p_user_id uuid, p_subscription_id uuid, p_max_failures integer)
RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = activity, pg_temp
AS $$
DECLARE
    v_failures integer;
BEGIN
    UPDATE push_subscriptions s SET consecutive_failures = s.consecutive_failures + 1
     WHERE s.user_id = p_user_id AND s.subscription_id = p_subscription_id
    RETURNING s.consecutive_failures INTO v_failures;
    IF v_failures >= p_max_failures THEN
        DELETE FROM push_subscriptions s WHERE s.user_id = p_user_id AND s.subscription_id = p_subscription_id;
        PERFORM _drop_push_deliveries(p_user_id, ARRAY[p_subscription_id]);
        RETURN true;
    END IF;
    RETURN false;
END
$$;

-- 429, 5xx, a timeout, a connection error: pending again after p_delay_seconds (from the database
-- clock), or failed once it has used p_max_attempts or p_give_up is set (the worker's TTL check).
-- status: 'pending', 'failed', or NULL when the lease is not ours any more; subscription_removed:
-- the failure was the subscription's p_max_failures-th in a row and it was deleted.
CREATE OR REPLACE FUNCTION activity.sp_retry_push_delivery(
    p_user_id uuid, p_delivery_id uuid, p_worker text, p_error text, p_delay_seconds double precision,
    p_max_attempts integer, p_give_up boolean DEFAULT false, p_max_failures integer DEFAULT 10)
RETURNS TABLE(status text, subscription_removed boolean)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = activity, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    v_status text;
    v_subscription uuid;
BEGIN
    IF p_delay_seconds IS NULL OR p_delay_seconds < 0 OR p_delay_seconds > 86400 THEN
        PERFORM _invalid('delay_seconds', 'delay_seconds must be between 0 and 86400');
    END IF;
    IF p_max_attempts IS NULL OR p_max_attempts < 1 THEN
        PERFORM _invalid('max_attempts', 'max_attempts must be at least 1');
    END IF;
    IF p_max_failures IS NULL OR p_max_failures < 1 THEN
        PERFORM _invalid('max_failures', 'max_failures must be at least 1');
    END IF;
    UPDATE push_outbox o
       SET status = CASE WHEN o.attempts >= p_max_attempts OR p_give_up THEN 'failed' ELSE 'pending' END,
           available_at = CASE WHEN o.attempts >= p_max_attempts OR p_give_up THEN o.available_at
                               ELSE now() + make_interval(secs => p_delay_seconds) END,
           finished_at = CASE WHEN o.attempts >= p_max_attempts OR p_give_up THEN now() END,
           lease_expires_at = NULL,
           last_error = left(p_error, 1000)
     WHERE o.user_id = p_user_id AND o.delivery_id = p_delivery_id
       AND o.status = 'sending' AND o.lease_owner = p_worker
    RETURNING o.status, o.subscription_id INTO v_status, v_subscription;
    IF v_status IS NULL THEN
        RETURN QUERY SELECT NULL::text, false;
    ELSIF v_status = 'failed' THEN
        RETURN QUERY SELECT v_status, _push_failure(p_user_id, v_subscription, p_max_failures);
    ELSE
        RETURN QUERY SELECT v_status, false;
    END IF;
END
$$;

-- Any other 4xx (or a refused destination): failed at once, never retried.
CREATE OR REPLACE FUNCTION activity.sp_fail_push_delivery(
    p_user_id uuid, p_delivery_id uuid, p_worker text, p_error text, p_max_failures integer DEFAULT 10)
RETURNS TABLE(failed boolean, subscription_removed boolean)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = activity, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    v_subscription uuid;
BEGIN
    IF p_max_failures IS NULL OR p_max_failures < 1 THEN
        PERFORM _invalid('max_failures', 'max_failures must be at least 1');
    END IF;
    UPDATE push_outbox o
       SET status = 'failed', finished_at = now(), lease_expires_at = NULL, last_error = left(p_error, 1000)
     WHERE o.user_id = p_user_id AND o.delivery_id = p_delivery_id
       AND o.status = 'sending' AND o.lease_owner = p_worker
    RETURNING o.subscription_id INTO v_subscription;
    IF v_subscription IS NULL THEN
        RETURN QUERY SELECT false, false;
    ELSE
        RETURN QUERY SELECT true, _push_failure(p_user_id, v_subscription, p_max_failures);
    END IF;
END
$$;

-- 404 / 410: the browser unsubscribed. The subscription is deleted, and with it this delivery and
-- every other unfinished one queued for it. FALSE when the lease is not ours any more.
CREATE OR REPLACE FUNCTION activity.sp_gone_push_subscription(p_user_id uuid, p_delivery_id uuid, p_worker text)
RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = activity, pg_temp
AS $$
DECLARE
    v_subscription uuid;
BEGIN
    SELECT o.subscription_id INTO v_subscription FROM push_outbox o
     WHERE o.user_id = p_user_id AND o.delivery_id = p_delivery_id
       AND o.status = 'sending' AND o.lease_owner = p_worker
       FOR UPDATE;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    DELETE FROM push_subscriptions s WHERE s.user_id = p_user_id AND s.subscription_id = v_subscription;
    PERFORM _drop_push_deliveries(p_user_id, ARRAY[v_subscription]);
    RETURN true;
END
$$;

-- Shutdown: hand back every row p_worker still leases (due at once, the attempt not made not
-- counted). Returns how many were released.
CREATE OR REPLACE FUNCTION activity.sp_release_push_deliveries(p_worker text)
RETURNS integer
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = activity, pg_temp
AS $$
DECLARE
    v_released integer;
BEGIN
    UPDATE push_outbox o
       SET status = 'pending', lease_owner = NULL, lease_expires_at = NULL,
           attempts = GREATEST(o.attempts - 1, 0)
     WHERE o.status = 'sending' AND o.lease_owner = p_worker;
    GET DIAGNOSTICS v_released = ROW_COUNT;
    RETURN v_released;
END
$$;

-- Queue state for the worker's gauges (partial-index scans: not the history). Work not expanded yet
-- counts too: each (user, notification) pair of push_queue is one pending delivery, due at once (its
-- browsers are not known before the expansion), waiting since its create.
CREATE OR REPLACE FUNCTION activity.sp_push_queue_stats()
RETURNS TABLE(pending bigint, due bigint, sending bigint, oldest_due_age_seconds double precision)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = activity, pg_temp
AS $$
    WITH queued AS (
        SELECT COALESCE(sum(q.user_count), 0)::bigint AS pairs, min(q.created_at) AS oldest
          FROM activity.push_queue q
    ), outbox_due AS (
        SELECT count(*) AS due, min(o.available_at) AS oldest
          FROM activity.push_outbox o WHERE o.status = 'pending' AND o.available_at <= now()
    )
    SELECT (SELECT count(*) FROM activity.push_outbox o WHERE o.status = 'pending') + queued.pairs,
           outbox_due.due + queued.pairs,
           (SELECT count(*) FROM activity.push_outbox o WHERE o.status = 'sending'),
           COALESCE(extract(epoch FROM now() - LEAST(outbox_due.oldest, queued.oldest))::double precision, 0)
      FROM queued, outbox_due
$$;

-- ---------------------------------------------------------------------------
-- retention
-- ---------------------------------------------------------------------------

-- Deletes up to p_batch_size sent, failed and cancelled deliveries finished more than
-- p_older_than_days ago; call until it returns 0.
CREATE OR REPLACE FUNCTION activity.sp_purge_push_outbox(
    p_older_than_days integer DEFAULT 7, p_batch_size integer DEFAULT 1000)
RETURNS TABLE(deleted_count bigint)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = activity, pg_temp
AS $$
DECLARE
    v_deleted bigint;
BEGIN
    PERFORM _check_days('older_than_days', p_older_than_days);
    PERFORM _check_batch_size(p_batch_size);
    WITH picked AS (
        SELECT o.user_id, o.delivery_id FROM push_outbox o
         WHERE o.status IN ('sent', 'failed', 'cancelled')
           AND o.finished_at < now() - make_interval(days => p_older_than_days)
         ORDER BY o.finished_at
         LIMIT p_batch_size
           FOR UPDATE SKIP LOCKED
    ), gone AS (
        DELETE FROM push_outbox o USING picked p
         WHERE o.user_id = p.user_id AND o.delivery_id = p.delivery_id
        RETURNING 1
    )
    SELECT count(*) INTO v_deleted FROM gone;
    RETURN QUERY SELECT v_deleted;
END
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
                AND p.proname IN ('_push_origin', '_drop_push_deliveries', 'sp_push_subscribe', 'sp_push_subscriptions',
                                  'sp_push_unsubscribe', '_queue_push', 'sp_expand_push_queue',
                                  'sp_claim_push_deliveries',
                                  'sp_complete_push_deliveries', '_push_failure', 'sp_retry_push_delivery',
                                  'sp_fail_push_delivery', 'sp_gone_push_subscription',
                                  'sp_release_push_deliveries', 'sp_push_queue_stats',
                                  'sp_purge_push_outbox') LOOP
        EXECUTE format('ALTER FUNCTION %s OWNER TO notifications_owner', f);
        EXECUTE format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', f);
    END LOOP;
END
$$;

GRANT EXECUTE ON FUNCTION
    activity.sp_push_subscribe(uuid, text, bytea, bytea, text, timestamptz, integer),
    activity.sp_push_subscriptions(uuid),
    activity.sp_push_unsubscribe(uuid, uuid, text)
TO notifications_api;

GRANT EXECUTE ON FUNCTION
    activity.sp_expand_push_queue(integer),
    activity.sp_claim_push_deliveries(text, integer, integer, integer),
    activity.sp_complete_push_deliveries(text, uuid[], uuid[]),
    activity.sp_retry_push_delivery(uuid, uuid, text, text, double precision, integer, boolean, integer),
    activity.sp_fail_push_delivery(uuid, uuid, text, text, integer),
    activity.sp_gone_push_subscription(uuid, uuid, text),
    activity.sp_release_push_deliveries(text),
    activity.sp_push_queue_stats()
TO notifications_push_worker;

GRANT EXECUTE ON FUNCTION activity.sp_purge_push_outbox(integer, integer) TO notifications_retention;
