-- Stored functions of the Notifications API: the app's only way into the data.
-- Re-applied by the migration runner whenever this file changes.
--
-- Every function is SECURITY DEFINER, owned by notifications_owner, with a
-- pinned search_path; EXECUTE is revoked from PUBLIC (see the end of the file).
--
-- Errors (SQLSTATE, MESSAGE = human text, DETAIL = field path for NA422):
--   NA401 user not found, NA403 user inactive, NA404 notification not found,
--   NA422 invalid argument.
--
-- Locking discipline (deadlock freedom): every function that changes a user's
-- notifications first locks that user's notification_counters row, then the
-- notification rows. Fan-outs lock users in ascending user_id order.

-- ---------------------------------------------------------------------------
-- internal helpers (not granted to the app)
-- ---------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION activity._invalid(p_field text, p_message text)
RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = activity, pg_temp
AS $$
BEGIN
    RAISE EXCEPTION USING ERRCODE = 'NA422', MESSAGE = p_message, DETAIL = p_field;
END
$$;

CREATE OR REPLACE FUNCTION activity._check_user(p_user_id uuid)
RETURNS void
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = activity, pg_temp
AS $$
DECLARE
    v_active boolean;
BEGIN
    SELECT u.is_active INTO v_active FROM users u WHERE u.user_id = p_user_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'NA401', MESSAGE = 'user not found';
    END IF;
    IF v_active IS NOT TRUE THEN
        RAISE EXCEPTION USING ERRCODE = 'NA403', MESSAGE = 'user inactive';
    END IF;
END
$$;

-- Lock the user's counters row (creating it when missing): the per-user
-- serialisation point of every writer.
CREATE OR REPLACE FUNCTION activity._lock_counters(p_user_id uuid)
RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = activity, pg_temp
AS $$
BEGIN
    PERFORM 1 FROM notification_counters c WHERE c.user_id = p_user_id FOR UPDATE;
    IF NOT FOUND THEN
        INSERT INTO notification_counters (user_id) VALUES (p_user_id) ON CONFLICT (user_id) DO NOTHING;
        PERFORM 1 FROM notification_counters c WHERE c.user_id = p_user_id FOR UPDATE;
    END IF;
END
$$;

-- Apply an unread delta (-1, 0, +1) and bump the version. Caller holds the lock.
CREATE OR REPLACE FUNCTION activity._bump(p_user_id uuid, p_type text, p_delta integer, p_expires_at timestamptz)
RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = activity, pg_temp
AS $$
BEGIN
    UPDATE notification_counters c
       SET unread_count = c.unread_count + p_delta,
           version = c.version + 1,
           next_expiry = CASE WHEN p_delta > 0 THEN LEAST(c.next_expiry, p_expires_at) ELSE c.next_expiry END
     WHERE c.user_id = p_user_id;
    -- (CHECK constraints apply to the proposed row of INSERT .. ON CONFLICT, so a
    -- decrement is a plain UPDATE: the row exists whenever the count is positive)
    IF p_delta > 0 THEN
        INSERT INTO notification_type_counters AS t (user_id, notification_type, unread_count)
        VALUES (p_user_id, p_type, p_delta)
        ON CONFLICT (user_id, notification_type) DO UPDATE SET unread_count = t.unread_count + p_delta;
    ELSIF p_delta < 0 THEN
        UPDATE notification_type_counters t SET unread_count = t.unread_count + p_delta
         WHERE t.user_id = p_user_id AND t.notification_type = p_type;
    END IF;
END
$$;

-- Unread count as reported: the counter minus unread rows that have expired
-- (only looked at when next_expiry says one may have).
CREATE OR REPLACE FUNCTION activity._visible_unread(p_user_id uuid)
RETURNS bigint
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = activity, pg_temp
AS $$
DECLARE
    v_count bigint;
    v_next timestamptz;
    v_expired bigint := 0;
BEGIN
    SELECT c.unread_count, c.next_expiry INTO v_count, v_next
      FROM notification_counters c WHERE c.user_id = p_user_id;
    IF NOT FOUND THEN
        RETURN 0;
    END IF;
    IF v_next <= now() THEN
        SELECT count(*) INTO v_expired FROM notifications n
         WHERE n.user_id = p_user_id AND n.status = 'unread'
           AND n.expires_at IS NOT NULL AND n.expires_at <= now();
    END IF;
    RETURN v_count - v_expired;
END
$$;

-- ---------------------------------------------------------------------------
-- 11. quiet hours
-- ---------------------------------------------------------------------------

-- NULL when p_at is outside the quiet window [start, end) of local time in p_tz,
-- else the instant the window ends. Windows may span midnight (22:00-07:00).
CREATE OR REPLACE FUNCTION activity.quiet_hours_end(p_start time, p_end time, p_tz text, p_at timestamptz)
RETURNS timestamptz
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = activity, pg_temp
AS $$
DECLARE
    v_local timestamp;
    v_time time;
    v_day date;
    v_end timestamptz;
BEGIN
    IF p_start IS NULL OR p_end IS NULL OR p_tz IS NULL OR p_at IS NULL OR p_start = p_end THEN
        RETURN NULL;
    END IF;
    v_local := p_at AT TIME ZONE p_tz;
    v_time := v_local::time;
    v_day := v_local::date;
    IF p_start < p_end THEN
        IF v_time >= p_start AND v_time < p_end THEN
            v_end := (v_day + p_end) AT TIME ZONE p_tz;
        END IF;
    ELSIF v_time >= p_start THEN
        v_end := (v_day + 1 + p_end) AT TIME ZONE p_tz;
    ELSIF v_time < p_end THEN
        v_end := (v_day + p_end) AT TIME ZONE p_tz;
    END IF;
    -- a DST jump can put the local end before p_at: the window is then over
    IF v_end <= p_at THEN
        RETURN NULL;
    END IF;
    RETURN v_end;
END
$$;

-- ---------------------------------------------------------------------------
-- 1. list
-- ---------------------------------------------------------------------------

-- One static query per status: each matches the predicate of its partial keyset
-- index, and a missing cursor is (infinity, max uuid) so the cursor is always an
-- index condition.
CREATE OR REPLACE FUNCTION activity.sp_get_user_notifications(
    p_user_id uuid,
    p_status text DEFAULT NULL,
    p_types text[] DEFAULT NULL,
    p_limit integer DEFAULT 20,
    p_cursor_created_at timestamptz DEFAULT NULL,
    p_cursor_id uuid DEFAULT NULL)
RETURNS SETOF activity.notification_out
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = activity, pg_temp
AS $$
DECLARE
    v_ts timestamptz := COALESCE(p_cursor_created_at, 'infinity');
    v_id uuid := COALESCE(p_cursor_id, 'ffffffff-ffff-ffff-ffff-ffffffffffff');
    v_types text[] := CASE WHEN cardinality(p_types) > 0 THEN p_types END;
BEGIN
    PERFORM _check_user(p_user_id);
    IF p_status IS NOT NULL AND p_status NOT IN ('unread', 'read', 'archived', 'all') THEN
        PERFORM _invalid('status', 'status must be one of unread, read, archived, all');
    END IF;
    IF p_limit IS NULL OR p_limit < 1 OR p_limit > 101 THEN
        PERFORM _invalid('limit', 'limit must be between 1 and 101');
    END IF;
    IF (p_cursor_created_at IS NULL) <> (p_cursor_id IS NULL) THEN
        PERFORM _invalid('cursor', 'cursor needs both created_at and notification_id');
    END IF;

    IF p_status IS NULL THEN
        RETURN QUERY
        SELECT n.notification_id, n.user_id, n.notification_type, n.title, n.message, n.actor_user_id,
               n.target_type, n.target_id, n.action_url, n.payload, n.priority, n.group_key, n.status,
               n.created_at, n.read_at, n.archived_at, n.expires_at
          FROM notifications n
         WHERE n.user_id = p_user_id AND n.status <> 'archived'
           AND (n.created_at, n.notification_id) < (v_ts, v_id)
           AND (n.expires_at IS NULL OR n.expires_at > now())
           AND (v_types IS NULL OR n.notification_type = ANY (v_types))
         ORDER BY n.created_at DESC, n.notification_id DESC
         LIMIT p_limit;
    ELSIF p_status = 'unread' THEN
        RETURN QUERY
        SELECT n.notification_id, n.user_id, n.notification_type, n.title, n.message, n.actor_user_id,
               n.target_type, n.target_id, n.action_url, n.payload, n.priority, n.group_key, n.status,
               n.created_at, n.read_at, n.archived_at, n.expires_at
          FROM notifications n
         WHERE n.user_id = p_user_id AND n.status = 'unread'
           AND (n.created_at, n.notification_id) < (v_ts, v_id)
           AND (n.expires_at IS NULL OR n.expires_at > now())
           AND (v_types IS NULL OR n.notification_type = ANY (v_types))
         ORDER BY n.created_at DESC, n.notification_id DESC
         LIMIT p_limit;
    ELSIF p_status = 'read' THEN
        RETURN QUERY
        SELECT n.notification_id, n.user_id, n.notification_type, n.title, n.message, n.actor_user_id,
               n.target_type, n.target_id, n.action_url, n.payload, n.priority, n.group_key, n.status,
               n.created_at, n.read_at, n.archived_at, n.expires_at
          FROM notifications n
         WHERE n.user_id = p_user_id AND n.status = 'read'
           AND (n.created_at, n.notification_id) < (v_ts, v_id)
           AND (n.expires_at IS NULL OR n.expires_at > now())
           AND (v_types IS NULL OR n.notification_type = ANY (v_types))
         ORDER BY n.created_at DESC, n.notification_id DESC
         LIMIT p_limit;
    ELSIF p_status = 'archived' THEN
        RETURN QUERY
        SELECT n.notification_id, n.user_id, n.notification_type, n.title, n.message, n.actor_user_id,
               n.target_type, n.target_id, n.action_url, n.payload, n.priority, n.group_key, n.status,
               n.created_at, n.read_at, n.archived_at, n.expires_at
          FROM notifications n
         WHERE n.user_id = p_user_id AND n.status = 'archived'
           AND (n.created_at, n.notification_id) < (v_ts, v_id)
           AND (n.expires_at IS NULL OR n.expires_at > now())
           AND (v_types IS NULL OR n.notification_type = ANY (v_types))
         ORDER BY n.created_at DESC, n.notification_id DESC
         LIMIT p_limit;
    ELSE
        RETURN QUERY
        SELECT n.notification_id, n.user_id, n.notification_type, n.title, n.message, n.actor_user_id,
               n.target_type, n.target_id, n.action_url, n.payload, n.priority, n.group_key, n.status,
               n.created_at, n.read_at, n.archived_at, n.expires_at
          FROM notifications n
         WHERE n.user_id = p_user_id
           AND (n.created_at, n.notification_id) < (v_ts, v_id)
           AND (n.expires_at IS NULL OR n.expires_at > now())
           AND (v_types IS NULL OR n.notification_type = ANY (v_types))
         ORDER BY n.created_at DESC, n.notification_id DESC
         LIMIT p_limit;
    END IF;
END
$$;

-- ---------------------------------------------------------------------------
-- 2. one notification
-- ---------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION activity.sp_get_notification_by_id(p_user_id uuid, p_notification_id uuid)
RETURNS SETOF activity.notification_out
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = activity, pg_temp
AS $$
BEGIN
    PERFORM _check_user(p_user_id);
    RETURN QUERY
    SELECT n.notification_id, n.user_id, n.notification_type, n.title, n.message, n.actor_user_id,
           n.target_type, n.target_id, n.action_url, n.payload, n.priority, n.group_key, n.status,
           n.created_at, n.read_at, n.archived_at, n.expires_at
      FROM notifications n
     WHERE n.user_id = p_user_id AND n.notification_id = p_notification_id
       AND (n.expires_at IS NULL OR n.expires_at > now());
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'NA404', MESSAGE = 'notification not found';
    END IF;
END
$$;

-- ---------------------------------------------------------------------------
-- 3. mark one read / unread
-- ---------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION activity.sp_mark_notification_as_read(
    p_user_id uuid, p_notification_id uuid, p_read boolean DEFAULT true)
RETURNS SETOF activity.notification_out
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = activity, pg_temp
AS $$
DECLARE
    v_read boolean := COALESCE(p_read, true);
    v_row notifications%ROWTYPE;
BEGIN
    PERFORM _check_user(p_user_id);
    PERFORM _lock_counters(p_user_id);
    SELECT * INTO v_row FROM notifications n
     WHERE n.user_id = p_user_id AND n.notification_id = p_notification_id
       AND (n.expires_at IS NULL OR n.expires_at > now())
       FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'NA404', MESSAGE = 'notification not found';
    END IF;

    IF v_read AND v_row.status = 'unread' THEN
        UPDATE notifications n SET status = 'read', read_at = now()
         WHERE n.user_id = p_user_id AND n.notification_id = p_notification_id;
        PERFORM _bump(p_user_id, v_row.notification_type, -1, NULL);
    ELSIF v_read AND v_row.status = 'archived' AND v_row.read_at IS NULL THEN
        -- archived wins: the status stays, only the read state is recorded
        UPDATE notifications n SET read_at = now()
         WHERE n.user_id = p_user_id AND n.notification_id = p_notification_id;
        PERFORM _bump(p_user_id, v_row.notification_type, 0, NULL);
    ELSIF NOT v_read AND v_row.status = 'read' THEN
        UPDATE notifications n SET status = 'unread', read_at = NULL
         WHERE n.user_id = p_user_id AND n.notification_id = p_notification_id;
        PERFORM _bump(p_user_id, v_row.notification_type, 1, v_row.expires_at);
    ELSIF NOT v_read AND v_row.status = 'archived' AND v_row.read_at IS NOT NULL THEN
        UPDATE notifications n SET read_at = NULL
         WHERE n.user_id = p_user_id AND n.notification_id = p_notification_id;
        PERFORM _bump(p_user_id, v_row.notification_type, 0, NULL);
    END IF;
    -- anything else is already in the requested state: nothing changes, no version bump

    RETURN QUERY
    SELECT n.notification_id, n.user_id, n.notification_type, n.title, n.message, n.actor_user_id,
           n.target_type, n.target_id, n.action_url, n.payload, n.priority, n.group_key, n.status,
           n.created_at, n.read_at, n.archived_at, n.expires_at
      FROM notifications n
     WHERE n.user_id = p_user_id AND n.notification_id = p_notification_id;
END
$$;

-- ---------------------------------------------------------------------------
-- 4. bulk mark read
-- ---------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION activity.sp_mark_notifications_as_read_bulk(
    p_user_id uuid,
    p_notification_ids uuid[] DEFAULT NULL,
    p_notification_type text DEFAULT NULL,
    p_all boolean DEFAULT false,
    p_before timestamptz DEFAULT NULL)
RETURNS TABLE(updated_count integer, unread_count bigint)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = activity, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    v_updated integer;
BEGIN
    PERFORM _check_user(p_user_id);
    IF p_notification_ids IS NOT NULL
       AND (cardinality(p_notification_ids) < 1 OR cardinality(p_notification_ids) > 1000) THEN
        PERFORM _invalid('notification_ids', 'notification_ids must hold 1 to 1000 ids');
    END IF;
    IF p_notification_ids IS NULL AND p_notification_type IS NULL AND p_all IS NOT TRUE THEN
        PERFORM _invalid('all', 'give notification_ids, notification_type or all=true');
    END IF;

    PERFORM _lock_counters(p_user_id);
    -- one UPDATE; its WHERE status = 'unread' is re-checked on concurrently
    -- changed rows, so only real unread->read transitions are returned
    WITH changed AS (
        UPDATE notifications n SET status = 'read', read_at = now()
         WHERE n.user_id = p_user_id AND n.status = 'unread'
           AND (n.expires_at IS NULL OR n.expires_at > now())
           AND (p_notification_ids IS NULL OR n.notification_id = ANY (p_notification_ids))
           AND (p_notification_type IS NULL OR n.notification_type = p_notification_type)
           AND (p_before IS NULL OR n.created_at <= p_before)
        RETURNING n.notification_type
    ), per_type AS (
        SELECT c.notification_type, count(*) AS cnt FROM changed c GROUP BY c.notification_type
    ), type_counters AS (
        UPDATE notification_type_counters t SET unread_count = t.unread_count - p.cnt
          FROM per_type p
         WHERE t.user_id = p_user_id AND t.notification_type = p.notification_type
    )
    SELECT COALESCE(sum(p.cnt), 0)::integer INTO v_updated FROM per_type p;

    IF v_updated > 0 THEN
        UPDATE notification_counters c
           SET unread_count = c.unread_count - v_updated, version = c.version + 1
         WHERE c.user_id = p_user_id;
    END IF;
    RETURN QUERY SELECT v_updated, _visible_unread(p_user_id);
END
$$;

-- ---------------------------------------------------------------------------
-- 5. archive / delete
-- ---------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION activity.sp_delete_notification(
    p_user_id uuid, p_notification_id uuid, p_permanent boolean DEFAULT false)
RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = activity, pg_temp
AS $$
DECLARE
    v_status text;
    v_type text;
BEGIN
    PERFORM _check_user(p_user_id);
    PERFORM _lock_counters(p_user_id);
    SELECT n.status, n.notification_type INTO v_status, v_type FROM notifications n
     WHERE n.user_id = p_user_id AND n.notification_id = p_notification_id
       AND (n.expires_at IS NULL OR n.expires_at > now())
       FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'NA404', MESSAGE = 'notification not found';
    END IF;

    IF p_permanent IS TRUE THEN
        DELETE FROM notifications n WHERE n.user_id = p_user_id AND n.notification_id = p_notification_id;
    ELSIF v_status = 'archived' THEN
        RETURN;  -- archiving an archived notification: nothing to do
    ELSE
        UPDATE notifications n SET status = 'archived', archived_at = now()
         WHERE n.user_id = p_user_id AND n.notification_id = p_notification_id;
    END IF;
    PERFORM _bump(p_user_id, v_type, CASE WHEN v_status = 'unread' THEN -1 ELSE 0 END, NULL);

    UPDATE email_outbox o SET status = 'cancelled'
     WHERE o.user_id = p_user_id AND o.notification_id = p_notification_id AND o.status = 'pending';
END
$$;

-- ---------------------------------------------------------------------------
-- 6. unread counts
-- ---------------------------------------------------------------------------

-- One counters row read (plus the user's per-type rows); notification rows are
-- only touched when an unread row may have expired, via its partial index.
--
-- (version, unread_count) identifies what the user sees: every change to the
-- unread set bumps the version, and at a fixed version the only change left is
-- expiry, which only ever lowers the visible count. A caller revalidating its copy
-- passes the pair it has (p_known_version, p_known_count): when both still hold,
-- the per-type rows are not read and by_type comes back NULL ("unchanged"), so a
-- 304 costs the user check and one counters row by primary key. The app always
-- calls this four-argument form (NULLs when it knows nothing).
CREATE OR REPLACE FUNCTION activity.sp_get_unread_count(
    p_user_id uuid, p_by_type boolean, p_known_version bigint, p_known_count bigint)
RETURNS TABLE(unread_count bigint, by_type jsonb, version bigint)
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = activity, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    v_count bigint;
    v_version bigint;
    v_next timestamptz;
    v_expired jsonb := '{}';
    v_expired_total bigint := 0;
    v_by_type jsonb;
BEGIN
    PERFORM _check_user(p_user_id);
    SELECT c.unread_count, c.version, c.next_expiry INTO v_count, v_version, v_next
      FROM notification_counters c WHERE c.user_id = p_user_id;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 0::bigint, CASE WHEN p_by_type IS NOT FALSE THEN '{}'::jsonb END, 0::bigint;
        RETURN;
    END IF;

    IF v_next <= now() THEN
        SELECT COALESCE(jsonb_object_agg(e.notification_type, e.cnt), '{}'), COALESCE(sum(e.cnt), 0)
          INTO v_expired, v_expired_total
          FROM (SELECT n.notification_type, count(*) AS cnt
                  FROM notifications n
                 WHERE n.user_id = p_user_id AND n.status = 'unread'
                   AND n.expires_at IS NOT NULL AND n.expires_at <= now()
                 GROUP BY n.notification_type) e;
    END IF;

    IF p_by_type IS NOT FALSE
       AND (p_known_version IS DISTINCT FROM v_version
            OR p_known_count IS DISTINCT FROM v_count - v_expired_total) THEN
        SELECT COALESCE(jsonb_object_agg(t.notification_type, t.visible), '{}')
          INTO v_by_type
          FROM (SELECT t.notification_type,
                       t.unread_count - COALESCE((v_expired ->> t.notification_type)::bigint, 0) AS visible
                  FROM notification_type_counters t
                 WHERE t.user_id = p_user_id AND t.unread_count > 0) t
         WHERE t.visible > 0;
    END IF;

    RETURN QUERY SELECT v_count - v_expired_total, v_by_type, v_version;
END
$$;

-- The two-argument form of the first release (kept for its code during a rollback, and
-- for probes): the same answer with nothing known. A separate overload, not defaults on
-- the form above: re-applying the previous release's file (rollback) re-creates this
-- signature, and two forms that both accept two arguments would make every such call
-- ambiguous.
CREATE OR REPLACE FUNCTION activity.sp_get_unread_count(p_user_id uuid, p_by_type boolean DEFAULT true)
RETURNS TABLE(unread_count bigint, by_type jsonb, version bigint)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = activity, pg_temp
AS $$
    SELECT * FROM activity.sp_get_unread_count(p_user_id, p_by_type, NULL::bigint, NULL::bigint)
$$;

-- ---------------------------------------------------------------------------
-- 7. create (fan-out)
-- ---------------------------------------------------------------------------

-- Repeated user ids: each distinct user is handled once; a repeated occurrence
-- reports the first occurrence's outcome, with `created` turned into `duplicate`
-- (same notification). So a repeated id never stores two notifications, with or
-- without a dedupe key.
-- Set-based rather than a statement per user: a per-row INSERT re-initialises the
-- table's CHECK constraints and nine indexes each time (~0.2 ms per user, too slow
-- for a 1000-user fan-out); each statement still writes the users in ascending
-- user_id order, so concurrent fan-outs cannot deadlock.
CREATE OR REPLACE FUNCTION activity.sp_create_notification(
    p_user_ids uuid[],
    p_notification_type text,
    p_title text,
    p_message text DEFAULT NULL,
    p_actor_user_id uuid DEFAULT NULL,
    p_target_type text DEFAULT NULL,
    p_target_id text DEFAULT NULL,
    p_action_url text DEFAULT NULL,
    p_payload jsonb DEFAULT '{}',
    p_priority text DEFAULT 'normal',
    p_group_key text DEFAULT NULL,
    p_expires_at timestamptz DEFAULT NULL,
    p_dedupe_key text DEFAULT NULL,
    p_queue_email boolean DEFAULT false)
RETURNS TABLE(result text, notification_id uuid, user_id uuid, notification_type text, title text,
              message text, actor_user_id uuid, target_type text, target_id text, action_url text,
              payload jsonb, priority text, group_key text, status text, created_at timestamptz,
              read_at timestamptz, archived_at timestamptz, expires_at timestamptz)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = activity, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    v_payload jsonb := COALESCE(p_payload, '{}'::jsonb);
    v_priority text := COALESCE(p_priority, 'normal');
    v_users uuid[];
    v_results text[];
    v_created uuid[];
    v_rows notification_out[];
    v_found bigint;
BEGIN
    IF p_user_ids IS NULL OR cardinality(p_user_ids) < 1 OR cardinality(p_user_ids) > 1000 THEN
        PERFORM _invalid('user_ids', 'user_ids must hold 1 to 1000 user ids');
    END IF;
    IF array_position(p_user_ids, NULL) IS NOT NULL THEN
        PERFORM _invalid('user_ids', 'user_ids must not contain null');
    END IF;
    IF p_notification_type IS NULL OR p_notification_type !~ '^[a-z][a-z0-9_.:-]{0,63}$' THEN
        PERFORM _invalid('notification_type', 'notification_type must match ^[a-z][a-z0-9_.:-]{0,63}$');
    END IF;
    IF p_title IS NULL OR char_length(p_title) NOT BETWEEN 1 AND 200 THEN
        PERFORM _invalid('title', 'title must be 1 to 200 characters');
    END IF;
    IF char_length(p_message) > 2000 THEN
        PERFORM _invalid('message', 'message must be at most 2000 characters');
    END IF;
    IF char_length(p_target_type) > 100 THEN
        PERFORM _invalid('target_type', 'target_type must be at most 100 characters');
    END IF;
    IF char_length(p_target_id) > 255 THEN
        PERFORM _invalid('target_id', 'target_id must be at most 255 characters');
    END IF;
    IF char_length(p_action_url) > 2048 OR p_action_url !~* '^https?://[^[:space:]]+$' THEN
        PERFORM _invalid('action_url', 'action_url must be an http(s) URL of at most 2048 characters');
    END IF;
    IF jsonb_typeof(v_payload) <> 'object' OR octet_length(v_payload::text) > 16384 THEN
        PERFORM _invalid('payload', 'payload must be a JSON object of at most 16 KiB');
    END IF;
    IF v_priority NOT IN ('low', 'normal', 'high', 'urgent') THEN
        PERFORM _invalid('priority', 'priority must be one of low, normal, high, urgent');
    END IF;
    IF char_length(p_group_key) > 255 THEN
        PERFORM _invalid('group_key', 'group_key must be at most 255 characters');
    END IF;
    IF p_expires_at <= now() THEN
        PERFORM _invalid('expires_at', 'expires_at must be in the future');
    END IF;
    -- year 10000 and later are storable but not readable by clients (RFC 3339 has 4-digit years)
    IF p_expires_at >= '10000-01-01 00:00:00+00'::timestamptz THEN
        PERFORM _invalid('expires_at', 'expires_at must be before 10000-01-01T00:00:00Z');
    END IF;
    IF char_length(p_dedupe_key) NOT BETWEEN 1 AND 128 THEN
        PERFORM _invalid('dedupe_key', 'dedupe_key must be 1 to 128 characters');
    END IF;

    -- 1. classify each distinct user (ascending user_id: the lock order of every write below)
    SELECT array_agg(d.u ORDER BY d.u),
           array_agg(CASE WHEN x.user_id IS NULL THEN 'user_not_found'
                          WHEN x.is_active IS NOT TRUE THEN 'user_inactive'
                          WHEN s.in_app_enabled IS FALSE
                               OR (s.type_preferences -> p_notification_type ->> 'in_app') = 'false' THEN 'suppressed'
                          ELSE 'eligible' END ORDER BY d.u)
      INTO v_users, v_results
      FROM (SELECT DISTINCT u FROM unnest(p_user_ids) AS u) d
      LEFT JOIN users x ON x.user_id = d.u
      LEFT JOIN notification_settings s ON s.user_id = d.u;

    -- 2. store, count and queue in one statement, user by user in ascending order;
    --    a taken dedupe key (ON CONFLICT waits for a concurrent inserter) stores nothing
    WITH ins AS (
        INSERT INTO notifications AS n (user_id, notification_type, title, message, actor_user_id, target_type,
                                        target_id, action_url, payload, priority, group_key, expires_at, dedupe_key)
        SELECT k.uid, p_notification_type, p_title, p_message, p_actor_user_id, p_target_type,
               p_target_id, p_action_url, v_payload, v_priority, p_group_key, p_expires_at, p_dedupe_key
          FROM unnest(v_users, v_results) AS k(uid, res)
         WHERE k.res = 'eligible'
         ORDER BY k.uid
        ON CONFLICT (user_id, dedupe_key) WHERE dedupe_key IS NOT NULL DO NOTHING
        RETURNING n.notification_id, n.user_id, n.notification_type, n.title, n.message,
                  n.actor_user_id, n.target_type, n.target_id, n.action_url, n.payload, n.priority,
                  n.group_key, n.status, n.created_at, n.read_at, n.archived_at, n.expires_at
    ), counters AS (
        INSERT INTO notification_counters AS c (user_id, unread_count, version, next_expiry)
        SELECT i.user_id, 1, 1, i.expires_at FROM ins i ORDER BY i.user_id
        ON CONFLICT (user_id) DO UPDATE
           SET unread_count = c.unread_count + 1, version = c.version + 1,
               next_expiry = LEAST(c.next_expiry, EXCLUDED.next_expiry)
        RETURNING c.user_id
    ), type_counters AS (
        -- reads `counters`, so each user's counters row is locked before its type row
        -- (unreferenced data-modifying CTEs run in no useful order)
        INSERT INTO notification_type_counters AS t (user_id, notification_type, unread_count)
        SELECT c.user_id, p_notification_type, 1 FROM counters c
        ON CONFLICT (user_id, notification_type) DO UPDATE SET unread_count = t.unread_count + 1
    ), mail AS (
        -- e-mail when the channel is on globally and not turned off for the type; quiet
        -- hours defer it to their end unless the notification is urgent
        INSERT INTO email_outbox (user_id, notification_id, recipient, subject, body, available_at)
        SELECT i.user_id, i.notification_id, x.email, p_title, COALESCE(p_message, p_title),
               CASE WHEN v_priority = 'urgent' OR s.quiet_hours_start IS NULL THEN now()
                    ELSE COALESCE(quiet_hours_end(s.quiet_hours_start, s.quiet_hours_end,
                                                  s.quiet_hours_timezone, now()), now()) END
          FROM ins i
          JOIN users x ON x.user_id = i.user_id
          LEFT JOIN notification_settings s ON s.user_id = i.user_id
         WHERE p_queue_email AND x.email IS NOT NULL AND s.email_enabled IS NOT FALSE
           AND (s.type_preferences -> p_notification_type ->> 'email') IS DISTINCT FROM 'false'
         ORDER BY i.user_id
    )
    SELECT COALESCE(array_agg(i.user_id), '{}'), COALESCE(array_agg(i::notification_out), '{}')
      INTO v_created, v_rows
      FROM ins i;

    -- 3. the originals behind taken dedupe keys: a new statement (READ COMMITTED) sees
    --    what a concurrent creator committed. A suppressed user's retry is `duplicate` too.
    --    A key stays taken until its notification is deleted or purged, even once it has
    --    expired (the expired original is then what a retry gets back).
    IF p_dedupe_key IS NOT NULL THEN
        SELECT v_rows || COALESCE(array_agg((n.notification_id, n.user_id, n.notification_type, n.title, n.message,
                       n.actor_user_id, n.target_type, n.target_id, n.action_url, n.payload, n.priority,
                       n.group_key, n.status, n.created_at, n.read_at, n.archived_at,
                       n.expires_at)::notification_out), '{}'),
               count(*) FILTER (WHERE k.res = 'eligible')
          INTO v_rows, v_found
          FROM unnest(v_users, v_results) AS k(uid, res)
          JOIN notifications n ON n.user_id = k.uid AND n.dedupe_key = p_dedupe_key
         WHERE k.res IN ('eligible', 'suppressed') AND NOT (k.uid = ANY (v_created));
        IF v_found <> (SELECT count(*) FROM unnest(v_results) AS r WHERE r = 'eligible') - cardinality(v_created) THEN
            RAISE EXCEPTION USING ERRCODE = 'serialization_failure',
                MESSAGE = 'concurrent create with the same dedupe_key; retry';
        END IF;
    END IF;

    -- 4. one row per input id, in input order; a repeated id reports the first
    --    occurrence's outcome, `created` becoming `duplicate`
    RETURN QUERY
    WITH input AS (
        SELECT i.uid, i.ord, row_number() OVER (PARTITION BY i.uid ORDER BY i.ord) AS occurrence
          FROM unnest(p_user_ids) WITH ORDINALITY AS i(uid, ord)
    )
    SELECT CASE WHEN r.notification_id IS NULL THEN
                    CASE WHEN o.res = 'eligible' THEN 'duplicate' ELSE o.res END
                WHEN o.res = 'eligible' AND c.uid IS NOT NULL AND i.occurrence = 1 THEN 'created'
                ELSE 'duplicate' END,
           r.notification_id, i.uid, r.notification_type, r.title, r.message, r.actor_user_id, r.target_type,
           r.target_id, r.action_url, r.payload, r.priority, r.group_key, r.status, r.created_at, r.read_at,
           r.archived_at, r.expires_at
      FROM input i
      JOIN unnest(v_users, v_results) AS o(uid, res) ON o.uid = i.uid
      LEFT JOIN unnest(v_created) AS c(uid) ON c.uid = i.uid
      LEFT JOIN unnest(v_rows) AS r ON r.user_id = i.uid
     ORDER BY i.ord;
END
$$;

-- ---------------------------------------------------------------------------
-- 8. / 9. settings
-- ---------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION activity._settings_out(p_user_id uuid)
RETURNS TABLE(in_app_enabled boolean, email_enabled boolean, push_enabled boolean,
              type_preferences jsonb, quiet_hours jsonb, updated_at timestamptz)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = activity, pg_temp
AS $$
    SELECT COALESCE(s.in_app_enabled, true), COALESCE(s.email_enabled, true), COALESCE(s.push_enabled, true),
           COALESCE(s.type_preferences, '{}'::jsonb),
           CASE WHEN s.quiet_hours_start IS NOT NULL THEN
               jsonb_build_object('start', to_char(s.quiet_hours_start, 'HH24:MI'),
                                  'end', to_char(s.quiet_hours_end, 'HH24:MI'),
                                  'timezone', s.quiet_hours_timezone)
           END,
           s.updated_at
      FROM (SELECT 1) AS one
      LEFT JOIN activity.notification_settings s ON s.user_id = p_user_id
$$;

CREATE OR REPLACE FUNCTION activity.sp_get_notification_settings(p_user_id uuid)
RETURNS TABLE(in_app_enabled boolean, email_enabled boolean, push_enabled boolean,
              type_preferences jsonb, quiet_hours jsonb, updated_at timestamptz)
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = activity, pg_temp
AS $$
BEGIN
    PERFORM _check_user(p_user_id);
    RETURN QUERY SELECT * FROM _settings_out(p_user_id);
END
$$;

-- An IANA zone name known to this server. Name shape first (rejects POSIX
-- specs such as 'XYZ+3'), then PostgreSQL must accept it.
CREATE OR REPLACE FUNCTION activity._valid_timezone(p_tz text)
RETURNS boolean
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = activity, pg_temp
AS $$
BEGIN
    IF p_tz IS NULL OR p_tz !~ '^[A-Za-z][A-Za-z0-9_+-]*(/[A-Za-z0-9_+-]+)*$' OR char_length(p_tz) > 64 THEN
        RETURN false;
    END IF;
    IF strpos(p_tz, '/') = 0 AND p_tz NOT IN ('UTC', 'GMT') THEN
        -- rare single-word names (EST5EDT, Japan): look them up in the tz database
        RETURN EXISTS (SELECT 1 FROM pg_timezone_names WHERE name = p_tz);
    END IF;
    PERFORM now() AT TIME ZONE p_tz;
    RETURN true;
EXCEPTION WHEN invalid_parameter_value THEN
    RETURN false;
END
$$;

-- PATCH semantics (API.md §9): only keys present change; "quiet_hours": null
-- turns quiet hours off; in type_preferences a type set to null drops its
-- overrides, a type's channel map merges channel by channel, and a channel set
-- to null drops that channel's override (an override map left empty is removed).
CREATE OR REPLACE FUNCTION activity.sp_update_notification_settings(p_user_id uuid, p_patch jsonb)
RETURNS TABLE(in_app_enabled boolean, email_enabled boolean, push_enabled boolean,
              type_preferences jsonb, quiet_hours jsonb, updated_at timestamptz)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = activity, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    v_key text;
    v_value jsonb;
    v_channel text;
    v_flag jsonb;
    v_tp jsonb;
    v_qh jsonb;
    v_prefs jsonb;
    v_merged jsonb;
    v_start time;
    v_end time;
    v_tz text;
BEGIN
    PERFORM _check_user(p_user_id);
    IF p_patch IS NULL OR jsonb_typeof(p_patch) <> 'object' THEN
        PERFORM _invalid('_schema', 'settings patch must be a JSON object');
    END IF;
    FOR v_key IN SELECT jsonb_object_keys(p_patch) LOOP
        IF v_key NOT IN ('in_app_enabled', 'email_enabled', 'push_enabled', 'type_preferences', 'quiet_hours') THEN
            PERFORM _invalid(v_key, 'unknown field');
        END IF;
    END LOOP;
    FOREACH v_key IN ARRAY ARRAY['in_app_enabled', 'email_enabled', 'push_enabled'] LOOP
        IF p_patch ? v_key AND jsonb_typeof(p_patch -> v_key) <> 'boolean' THEN
            PERFORM _invalid(v_key, 'must be a boolean');
        END IF;
    END LOOP;

    IF p_patch ? 'type_preferences' THEN
        v_tp := p_patch -> 'type_preferences';
        IF jsonb_typeof(v_tp) <> 'object' THEN
            PERFORM _invalid('type_preferences', 'type_preferences must be an object');
        END IF;
        IF (SELECT count(*) FROM jsonb_object_keys(v_tp)) > 200 THEN
            PERFORM _invalid('type_preferences', 'at most 200 notification types');
        END IF;
        FOR v_key, v_value IN SELECT e.key, e.value FROM jsonb_each(v_tp) AS e LOOP
            IF v_key !~ '^[a-z][a-z0-9_.:-]{0,63}$' THEN
                PERFORM _invalid('type_preferences.' || v_key, 'not a valid notification type');
            END IF;
            CONTINUE WHEN jsonb_typeof(v_value) = 'null';
            IF jsonb_typeof(v_value) <> 'object' THEN
                PERFORM _invalid('type_preferences.' || v_key, 'must be an object of channel: boolean');
            END IF;
            FOR v_channel, v_flag IN SELECT e.key, e.value FROM jsonb_each(v_value) AS e LOOP
                IF v_channel NOT IN ('in_app', 'email', 'push') THEN
                    PERFORM _invalid('type_preferences.' || v_key || '.' || v_channel, 'unknown channel');
                END IF;
                IF jsonb_typeof(v_flag) NOT IN ('boolean', 'null') THEN
                    PERFORM _invalid('type_preferences.' || v_key || '.' || v_channel, 'must be a boolean');
                END IF;
            END LOOP;
        END LOOP;
    END IF;

    IF p_patch ? 'quiet_hours' THEN
        v_qh := p_patch -> 'quiet_hours';
        IF jsonb_typeof(v_qh) = 'object' THEN
            FOR v_key IN SELECT jsonb_object_keys(v_qh) LOOP
                IF v_key NOT IN ('start', 'end', 'timezone') THEN
                    PERFORM _invalid('quiet_hours.' || v_key, 'unknown field');
                END IF;
            END LOOP;
            FOREACH v_key IN ARRAY ARRAY['start', 'end'] LOOP
                IF jsonb_typeof(v_qh -> v_key) IS DISTINCT FROM 'string'
                   OR (v_qh ->> v_key) !~ '^([01][0-9]|2[0-3]):[0-5][0-9]$' THEN
                    PERFORM _invalid('quiet_hours.' || v_key, 'must be a time HH:MM');
                END IF;
            END LOOP;
            IF jsonb_typeof(v_qh -> 'timezone') IS DISTINCT FROM 'string'
               OR NOT _valid_timezone(v_qh ->> 'timezone') THEN
                PERFORM _invalid('quiet_hours.timezone', 'must be an IANA time zone name');
            END IF;
            v_start := (v_qh ->> 'start')::time;
            v_end := (v_qh ->> 'end')::time;
            v_tz := v_qh ->> 'timezone';
            IF v_start = v_end THEN
                PERFORM _invalid('quiet_hours.end', 'end must differ from start');
            END IF;
        ELSIF jsonb_typeof(v_qh) <> 'null' THEN
            PERFORM _invalid('quiet_hours', 'quiet_hours must be an object or null');
        END IF;
    END IF;

    -- row lock: concurrent patches apply one after the other, none is lost
    INSERT INTO notification_settings (user_id) VALUES (p_user_id) ON CONFLICT (user_id) DO NOTHING;
    SELECT s.type_preferences INTO v_prefs FROM notification_settings s WHERE s.user_id = p_user_id FOR UPDATE;

    IF v_tp IS NOT NULL THEN
        FOR v_key, v_value IN SELECT e.key, e.value FROM jsonb_each(v_tp) AS e LOOP
            IF jsonb_typeof(v_value) = 'null' THEN
                v_prefs := v_prefs - v_key;
            ELSE
                v_merged := jsonb_strip_nulls(COALESCE(v_prefs -> v_key, '{}'::jsonb) || v_value);
                IF v_merged = '{}'::jsonb THEN
                    v_prefs := v_prefs - v_key;
                ELSE
                    v_prefs := v_prefs || jsonb_build_object(v_key, v_merged);
                END IF;
            END IF;
        END LOOP;
        IF (SELECT count(*) FROM jsonb_object_keys(v_prefs)) > 200 THEN
            PERFORM _invalid('type_preferences', 'at most 200 notification types');
        END IF;
    END IF;

    UPDATE notification_settings s
       SET in_app_enabled = COALESCE((p_patch ->> 'in_app_enabled')::boolean, s.in_app_enabled),
           email_enabled = COALESCE((p_patch ->> 'email_enabled')::boolean, s.email_enabled),
           push_enabled = COALESCE((p_patch ->> 'push_enabled')::boolean, s.push_enabled),
           type_preferences = v_prefs,
           quiet_hours_start = CASE WHEN p_patch ? 'quiet_hours' THEN v_start ELSE s.quiet_hours_start END,
           quiet_hours_end = CASE WHEN p_patch ? 'quiet_hours' THEN v_end ELSE s.quiet_hours_end END,
           quiet_hours_timezone = CASE WHEN p_patch ? 'quiet_hours' THEN v_tz ELSE s.quiet_hours_timezone END,
           updated_at = now()
     WHERE s.user_id = p_user_id;

    RETURN QUERY SELECT * FROM _settings_out(p_user_id);
END
$$;

-- ---------------------------------------------------------------------------
-- 10. retention
-- ---------------------------------------------------------------------------

-- Deletes up to p_batch_size expired notifications and archived ones older than
-- the given days; call until it returns 0. Counters stay exact: the affected
-- users' counters rows are locked first (ascending user_id, like every writer).
CREATE OR REPLACE FUNCTION activity.sp_purge_notifications(
    p_archived_older_than_days integer DEFAULT 90, p_batch_size integer DEFAULT 1000)
RETURNS TABLE(deleted_count bigint)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = activity, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    v_cutoff timestamptz;
    v_uids uuid[];
    v_nids uuid[];
    v_users uuid[];
    v_deleted bigint;
BEGIN
    IF p_archived_older_than_days IS NULL OR p_archived_older_than_days < 0 THEN
        PERFORM _invalid('archived_older_than_days', 'must be a non-negative number of days');
    END IF;
    IF p_batch_size IS NULL OR p_batch_size < 1 OR p_batch_size > 100000 THEN
        PERFORM _invalid('batch_size', 'batch_size must be between 1 and 100000');
    END IF;
    v_cutoff := now() - make_interval(days => p_archived_older_than_days);

    SELECT array_agg(k.user_id), array_agg(k.notification_id) INTO v_uids, v_nids
      FROM (SELECT c.user_id, c.notification_id
              FROM ((SELECT n.user_id, n.notification_id FROM notifications n
                      WHERE n.expires_at IS NOT NULL AND n.expires_at <= now()
                      ORDER BY n.expires_at LIMIT p_batch_size)
                    UNION
                    (SELECT n.user_id, n.notification_id FROM notifications n
                      WHERE n.status = 'archived' AND n.archived_at < v_cutoff
                      ORDER BY n.archived_at LIMIT p_batch_size)) c
             LIMIT p_batch_size) k;
    IF v_uids IS NULL THEN
        RETURN QUERY SELECT 0::bigint;
        RETURN;
    END IF;
    SELECT array_agg(DISTINCT u ORDER BY u) INTO v_users FROM unnest(v_uids) AS u;
    PERFORM 1 FROM notification_counters c WHERE c.user_id = ANY (v_users) ORDER BY c.user_id FOR UPDATE;

    WITH gone AS (
        DELETE FROM notifications n
         USING unnest(v_uids, v_nids) AS k(uid, nid)
         WHERE n.user_id = k.uid AND n.notification_id = k.nid
           AND ((n.expires_at IS NOT NULL AND n.expires_at <= now())
                OR (n.status = 'archived' AND n.archived_at < v_cutoff))
        RETURNING n.user_id, n.notification_id, n.notification_type, n.status
    ), outbox AS (
        DELETE FROM email_outbox o USING gone g
         WHERE o.user_id = g.user_id AND o.notification_id = g.notification_id AND o.status <> 'pending'
    ), unread AS (
        SELECT g.user_id, g.notification_type, count(*) AS cnt
          FROM gone g WHERE g.status = 'unread' GROUP BY g.user_id, g.notification_type
    ), type_counters AS (
        UPDATE notification_type_counters t SET unread_count = t.unread_count - u.cnt
          FROM unread u WHERE t.user_id = u.user_id AND t.notification_type = u.notification_type
    ), per_user AS (
        SELECT g.user_id, count(*) FILTER (WHERE g.status = 'unread') AS cnt FROM gone g GROUP BY g.user_id
    ), counters AS (
        UPDATE notification_counters c SET unread_count = c.unread_count - p.cnt, version = c.version + 1
          FROM per_user p WHERE c.user_id = p.user_id
    )
    SELECT count(*) INTO v_deleted FROM gone;

    -- tighten the expiry bound of the touched users (their unread expiring rows)
    UPDATE notification_counters c
       SET next_expiry = (SELECT min(n.expires_at) FROM notifications n
                           WHERE n.user_id = c.user_id AND n.status = 'unread' AND n.expires_at IS NOT NULL)
     WHERE c.user_id = ANY (v_users);

    RETURN QUERY SELECT v_deleted;
END
$$;

-- ---------------------------------------------------------------------------
-- 12. schema version (for the preflight)
-- ---------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION activity.sp_schema_version()
RETURNS TABLE(filename text, checksum text)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = activity, pg_temp
AS $$
    SELECT m.filename, m.checksum FROM activity.schema_migrations m ORDER BY m.filename
$$;

-- ---------------------------------------------------------------------------
-- ownership and privileges
-- ---------------------------------------------------------------------------

DO $$
DECLARE
    f regprocedure;
BEGIN
    FOR f IN SELECT p.oid::regprocedure FROM pg_proc p WHERE p.pronamespace = 'activity'::regnamespace LOOP
        EXECUTE format('ALTER FUNCTION %s OWNER TO notifications_owner', f);
        EXECUTE format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', f);
    END LOOP;
END
$$;

GRANT EXECUTE ON FUNCTION
    activity.sp_get_user_notifications(uuid, text, text[], integer, timestamptz, uuid),
    activity.sp_get_notification_by_id(uuid, uuid),
    activity.sp_mark_notification_as_read(uuid, uuid, boolean),
    activity.sp_mark_notifications_as_read_bulk(uuid, uuid[], text, boolean, timestamptz),
    activity.sp_delete_notification(uuid, uuid, boolean),
    activity.sp_get_unread_count(uuid, boolean),
    activity.sp_get_unread_count(uuid, boolean, bigint, bigint),
    activity.sp_create_notification(uuid[], text, text, text, uuid, text, text, text, jsonb, text, text,
                                    timestamptz, text, boolean),
    activity.sp_get_notification_settings(uuid),
    activity.sp_update_notification_settings(uuid, jsonb),
    activity.sp_purge_notifications(integer, integer),
    activity.sp_schema_version()
TO notifications_api;
