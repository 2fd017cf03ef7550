-- Creating notifications: the fan-out to many users (counts: 0101_counts.sql).

-- ---------------------------------------------------------------------------
-- 7. create (fan-out)
-- ---------------------------------------------------------------------------

-- Repeated user ids: each distinct user is handled once; a repeated occurrence
-- reports the first occurrence's outcome, with `created` turned into `duplicate`
-- (same notification). So a repeated id never stores two notifications, with or
-- without a dedupe key.
-- Set-based rather than a statement per user: a per-row INSERT re-initialises the
-- table's CHECK constraints and nine indexes each time, too slow for a 1000-user
-- fan-out (docs/PERFORMANCE.md, "Figures moved out of the SQL comments"); each
-- statement still writes the users in ascending user_id order, so concurrent
-- fan-outs cannot deadlock. The counts: one _apply of every new row's _row_delta,
-- as any writer (0101_counts.sql).
CREATE OR REPLACE FUNCTION activity.sp_inbox_create(
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
              delivered_at timestamptz, seen_at timestamptz, read_at timestamptz, archived_at timestamptz,
              snoozed_until timestamptz, expires_at timestamptz)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = activity, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    v_payload jsonb := COALESCE(p_payload, '{}'::jsonb);
    v_priority text := COALESCE(p_priority, 'normal');
    v_users uuid[];
    v_results text[];
    v_created uuid[];
    v_rows inbox_notification[];
    v_now timestamptz;  -- created_at = delivered_at: stamped once the users' rows are locked
    v_found bigint;
    v_eligible uuid[];
    v_deltas count_delta[];
BEGIN
    PERFORM _writing_counts();
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
    IF jsonb_typeof(v_payload) <> 'object' OR _compact_json_octets(v_payload) > 16384 THEN  -- as the API measures
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

    -- 2. lock the eligible users' counters rows in ascending user_id, creating the missing ones
    --    (as _lock_counters: a user without one has no rows, its counts are zero as of now)
    SELECT array_agg(k.uid ORDER BY k.uid) INTO v_eligible
      FROM unnest(v_users, v_results) AS k(uid, res) WHERE k.res = 'eligible';
    INSERT INTO notification_counters (user_id, inbox_unread, inbox_unseen, folded_at)
    SELECT u, 0, 0, now() FROM unnest(v_eligible) AS u ORDER BY u
    ON CONFLICT (user_id) DO NOTHING;
    PERFORM 1 FROM notification_counters c WHERE c.user_id = ANY (v_eligible) ORDER BY c.user_id FOR UPDATE;
    -- Stamped under every eligible user's lock, not at entry: whatever committed for these users
    -- before it is earlier, whatever commits after is later, so delivery order is commit order per
    -- user and mark-read `before` a shown row never reaches one committed after it (API.md §4).
    v_now := clock_timestamp();

    -- 3. store and queue in one statement, user by user in ascending order; a taken dedupe key
    --    (ON CONFLICT waits for a concurrent inserter) stores nothing. Each new row's contribution
    --    at its user's folded instant is counted as every writer counts (_row_delta, _apply).
    WITH ins AS (
        INSERT INTO notifications AS n (user_id, notification_type, title, message, actor_user_id, target_type,
                                        target_id, action_url, payload, priority, group_key, expires_at, dedupe_key,
                                        created_at, delivered_at)
        SELECT u, p_notification_type, p_title, p_message, p_actor_user_id, p_target_type,
               p_target_id, p_action_url, v_payload, v_priority, p_group_key, p_expires_at, p_dedupe_key,
               v_now, v_now
          FROM unnest(v_eligible) AS u
         ORDER BY u
        ON CONFLICT (user_id, dedupe_key) WHERE dedupe_key IS NOT NULL DO NOTHING
        RETURNING n.*
    ), mail AS (
        -- e-mail when the channel is on globally and not turned off for the type; quiet
        -- hours defer it to their end unless the notification is urgent; a daily digest's row
        -- waits for the user's next slot (kind: 0200_email.sql, the e-mail digests)
        INSERT INTO email_outbox (user_id, notification_id, recipient, subject, body, available_at, kind)
        SELECT i.user_id, i.notification_id, x.email, p_title, COALESCE(p_message, p_title),
               CASE WHEN v_priority = 'urgent' THEN now()
                    WHEN s.email_digest_frequency = 'daily'
                        THEN email_daily_slot(s.email_digest_at, s.email_digest_timezone, now())
                    WHEN s.quiet_hours_start IS NULL THEN now()
                    ELSE COALESCE(quiet_hours_end(s.quiet_hours_start, s.quiet_hours_end,
                                                  s.quiet_hours_timezone, now()), now()) END,
               CASE WHEN v_priority = 'urgent' THEN 'urgent'
                    WHEN s.email_digest_frequency = 'daily' THEN 'daily'
                    ELSE 'batched' END
          FROM ins i
          JOIN users x ON x.user_id = i.user_id
          LEFT JOIN notification_settings s ON s.user_id = i.user_id
         WHERE p_queue_email AND x.email IS NOT NULL AND s.email_enabled IS NOT FALSE
           AND (s.type_preferences -> p_notification_type ->> 'email') IS DISTINCT FROM 'false'
         ORDER BY i.user_id
    )
    SELECT COALESCE(array_agg(i.user_id), '{}'), COALESCE(array_agg(_out(i::notifications)), '{}'),
           array_agg(_row_delta(NULL::notifications, i::notifications, c.folded_at))
      INTO v_created, v_rows, v_deltas
      FROM ins i JOIN notification_counters c ON c.user_id = i.user_id;
    PERFORM _apply(v_deltas);

    -- 3b. Web Push: one push_queue row for the users it was created for; the push worker fans it out
    --     to their browsers (0210_push.sql)
    PERFORM _queue_push(v_rows);

    -- 4. the originals behind taken dedupe keys: a new statement (READ COMMITTED) sees
    --    what a concurrent creator committed. A suppressed user's retry is `duplicate` too.
    --    A key stays taken until its notification is deleted or purged, even once it has
    --    expired (the expired original is then what a retry gets back).
    IF p_dedupe_key IS NOT NULL THEN
        SELECT v_rows || COALESCE(array_agg(_out(n)), '{}'),
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

    -- 5. one row per input id, in input order; a repeated id reports the first
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
           r.target_id, r.action_url, r.payload, r.priority, r.group_key, r.status, r.created_at,
           r.delivered_at, r.seen_at, r.read_at, r.archived_at, r.snoozed_until, r.expires_at
      FROM input i
      JOIN unnest(v_users, v_results) AS o(uid, res) ON o.uid = i.uid
      LEFT JOIN unnest(v_created) AS c(uid) ON c.uid = i.uid
      LEFT JOIN unnest(v_rows) AS r ON r.user_id = i.uid
     ORDER BY i.ord;
END
$$;

-- The previous release's form: the same, with its object.
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
LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = activity, pg_temp
AS $$
    SELECT r.result, r.notification_id, r.user_id, r.notification_type, r.title, r.message, r.actor_user_id,
           r.target_type, r.target_id, r.action_url, r.payload, r.priority, r.group_key,
           CASE WHEN r.status = 'snoozed' THEN 'unread' ELSE r.status END, r.created_at, r.read_at,
           r.archived_at, r.expires_at
      FROM activity.sp_inbox_create(p_user_ids, p_notification_type, p_title, p_message, p_actor_user_id,
                                    p_target_type, p_target_id, p_action_url, p_payload, p_priority, p_group_key,
                                    p_expires_at, p_dedupe_key, p_queue_email) r
$$;
