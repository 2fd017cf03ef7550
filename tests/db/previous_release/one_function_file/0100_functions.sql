-- Stored functions of the Notifications API: the app's only way into the data.
-- Re-applied by the migration runner whenever this file changes.
--
-- Every function is SECURITY DEFINER, owned by notifications_owner, with a
-- pinned search_path; EXECUTE is revoked from PUBLIC (see the end of the file).
--
-- Errors (SQLSTATE, MESSAGE = human text, DETAIL = field path for NA422):
--   NA401 user not found, NA403 user inactive, NA404 notification not found,
--   NA422 invalid argument, NAS09 notification snoozed, NAA09 notification archived (409s).
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

-- The arguments of the retention functions (here and in 0150_retention.sql).
CREATE OR REPLACE FUNCTION activity._check_days(p_field text, p_days integer)
RETURNS void
LANGUAGE plpgsql IMMUTABLE SECURITY DEFINER SET search_path = activity, pg_temp
AS $$
BEGIN
    IF p_days IS NULL OR p_days < 0 THEN
        PERFORM _invalid(p_field, 'must be a non-negative number of days');
    END IF;
END
$$;

CREATE OR REPLACE FUNCTION activity._check_batch_size(p_batch_size integer)
RETURNS void
LANGUAGE plpgsql IMMUTABLE SECURITY DEFINER SET search_path = activity, pg_temp
AS $$
BEGIN
    IF p_batch_size IS NULL OR p_batch_size < 1 OR p_batch_size > 100000 THEN
        PERFORM _invalid('batch_size', 'batch_size must be between 1 and 100000');
    END IF;
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

-- Mark this transaction's counter writes as this release's (0130's trigger marks the counts of
-- any other writer "not computed"). A transaction-local setting: a function SET clause on a
-- custom parameter would need a superuser to create the function.
CREATE OR REPLACE FUNCTION activity._writing_counts()
RETURNS void
LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = activity, pg_temp
AS $$
    SELECT set_config('activity.inbox_v2', 'on', true)
$$;

-- Lock the user's counters row (creating it when missing): the per-user
-- serialisation point of every writer.
CREATE OR REPLACE FUNCTION activity._lock_counters(p_user_id uuid)
RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = activity, pg_temp
AS $$
BEGIN
    PERFORM _writing_counts();
    PERFORM 1 FROM notification_counters c WHERE c.user_id = p_user_id FOR UPDATE;
    IF NOT FOUND THEN
        -- a user without a counters row has no rows: counts computed (zero) as of now
        INSERT INTO notification_counters (user_id, inbox_unread, inbox_unseen, folded_at)
        VALUES (p_user_id, 0, 0, now()) ON CONFLICT (user_id) DO NOTHING;
        PERFORM 1 FROM notification_counters c WHERE c.user_id = p_user_id FOR UPDATE;
    END IF;
END
$$;

-- ---------------------------------------------------------------------------
-- inbox counts folded with the clock (migrations_sql/0130_inbox_v2.sql)
-- ---------------------------------------------------------------------------
--
-- Invariant, per user with inbox_unread NOT NULL: inbox_unread / inbox_unseen and the per-type
-- inbox_unread equal the sums of _c_unread / _c_unseen over the user's current rows evaluated at
-- the counters' folded_at (F); next_change_at <= every instant > F at which the clock alone
-- changes a row's contribution (an expiry, a snooze end). So while now() < next_change_at the
-- stored counts are the counts of now, and reading them costs one row.
-- Writers keep the invariant by applying, for every row they change, its contribution after
-- minus before, both at F (activity._delta, activity._apply). Nothing needs folding first for
-- that; writers that report counts fold first (activity._fold_locked) so the counts are current.
-- Folding F -> T = max(F, now()) re-evaluates only the rows with a change point in (F, T]
-- (partial indexes on (user_id, expires_at) and (user_id, snoozed_until)): each expiry and
-- snooze end is folded once, rows that expired long ago are never read again.
-- The pure helpers below are plain SQL (no SECURITY DEFINER, no SET) so they are inlined.

-- A row is in the inbox at p_at: not archived, not snoozed, not expired.
CREATE OR REPLACE FUNCTION activity._in_inbox(
    p_status text, p_snoozed_until timestamptz, p_expires_at timestamptz, p_at timestamptz)
RETURNS boolean
LANGUAGE sql IMMUTABLE
AS $$
    SELECT p_status <> 'archived' AND (p_snoozed_until IS NULL OR p_snoozed_until <= p_at)
           AND (p_expires_at IS NULL OR p_expires_at > p_at)
$$;

CREATE OR REPLACE FUNCTION activity._c_unread(
    p_status text, p_snoozed_until timestamptz, p_expires_at timestamptz, p_at timestamptz)
RETURNS integer
LANGUAGE sql IMMUTABLE
AS $$
    SELECT COALESCE((p_status = 'unread' AND activity._in_inbox(p_status, p_snoozed_until, p_expires_at, p_at))::integer, 0)
$$;

-- Unseen: never seen and never read (a row the previous release marked read has no seen_at).
CREATE OR REPLACE FUNCTION activity._c_unseen(
    p_status text, p_seen_at timestamptz, p_read_at timestamptz, p_snoozed_until timestamptz,
    p_expires_at timestamptz, p_at timestamptz)
RETURNS integer
LANGUAGE sql IMMUTABLE
AS $$
    SELECT COALESCE((p_seen_at IS NULL AND p_read_at IS NULL
                     AND activity._in_inbox(p_status, p_snoozed_until, p_expires_at, p_at))::integer, 0)
$$;

-- The row's next change point after p_at (NULL: none; an archived row never changes a count).
CREATE OR REPLACE FUNCTION activity._next_at(
    p_status text, p_snoozed_until timestamptz, p_expires_at timestamptz, p_at timestamptz)
RETURNS timestamptz
LANGUAGE sql IMMUTABLE
AS $$
    SELECT CASE WHEN p_status <> 'archived' THEN
                LEAST(CASE WHEN p_expires_at > p_at THEN p_expires_at END,
                      CASE WHEN p_snoozed_until > p_at THEN p_snoozed_until END) END
$$;

-- The counts change of one row going from o_* to n_* (NULL status: no row; insert or delete).
-- (an earlier form had no group; two forms would make calls ambiguous)
DROP FUNCTION IF EXISTS activity._delta(uuid, text, text, timestamptz, timestamptz, timestamptz, timestamptz,
                                        text, timestamptz, timestamptz, timestamptz, timestamptz, timestamptz);
CREATE OR REPLACE FUNCTION activity._delta(
    p_user_id uuid, p_type text, p_group_key text,
    o_status text, o_seen_at timestamptz, o_read_at timestamptz, o_snoozed_until timestamptz, o_expires_at timestamptz,
    n_status text, n_seen_at timestamptz, n_read_at timestamptz, n_snoozed_until timestamptz, n_expires_at timestamptz,
    p_at timestamptz)
RETURNS activity.count_delta
LANGUAGE sql IMMUTABLE
AS $$
    SELECT ROW(p_user_id, p_type,
               COALESCE((n_status = 'unread')::integer, 0) - COALESCE((o_status = 'unread')::integer, 0),
               activity._c_unread(n_status, n_snoozed_until, n_expires_at, p_at)
                 - activity._c_unread(o_status, o_snoozed_until, o_expires_at, p_at),
               activity._c_unseen(n_status, n_seen_at, n_read_at, n_snoozed_until, n_expires_at, p_at)
                 - activity._c_unseen(o_status, o_seen_at, o_read_at, o_snoozed_until, o_expires_at, p_at),
               activity._next_at(n_status, n_snoozed_until, n_expires_at, p_at),
               CASE WHEN n_status = 'unread' AND o_status IS DISTINCT FROM 'unread' THEN n_expires_at END,
               p_group_key,
               COALESCE(activity._in_inbox(n_status, n_snoozed_until, n_expires_at, p_at)::integer, 0)
                 - COALESCE(activity._in_inbox(o_status, o_snoozed_until, o_expires_at, p_at)::integer, 0)
           )::activity.count_delta
$$;

-- Set each given group's latest and oldest inbox member (now: not archived, not snoozed, not
-- expired) from the group's member index; a group with none keeps no latest.
CREATE OR REPLACE FUNCTION activity._probe_groups(p_user_ids uuid[], p_group_keys text[])
RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = activity, pg_temp
AS $$
BEGIN
    UPDATE notification_groups x
       SET latest_delivered_at = l.delivered_at, latest_id = l.notification_id, oldest_delivered_at = o.delivered_at
      FROM unnest(p_user_ids, p_group_keys) AS k(uid, gkey)
      LEFT JOIN LATERAL (
          SELECT n.delivered_at, n.notification_id FROM notifications n
           WHERE n.user_id = k.uid AND n.group_key = k.gkey AND n.status <> 'archived'
             AND n.delivered_at <= now() AND (n.expires_at IS NULL OR n.expires_at > now())
           ORDER BY n.delivered_at DESC, n.notification_id DESC LIMIT 1) l ON true
      LEFT JOIN LATERAL (
          SELECT n.delivered_at FROM notifications n
           WHERE n.user_id = k.uid AND n.group_key = k.gkey AND n.status <> 'archived'
             AND n.delivered_at <= now() AND (n.expires_at IS NULL OR n.expires_at > now())
           ORDER BY n.delivered_at, n.notification_id LIMIT 1) o ON true
     WHERE x.user_id = k.uid AND x.group_key = k.gkey;
END
$$;

-- (an earlier form of this branch had no p_at; two forms would make every call ambiguous)
DROP FUNCTION IF EXISTS activity._apply(activity.count_delta[]);

-- Apply row deltas (of one or many users, whose counters rows the caller has locked) and bump
-- each touched user's version. Counts of a user whose inbox counts are "not computed" stay NULL.
-- p_at: the instant the deltas were evaluated at, when later than the folded instant (what
-- _fold_locked returned: nothing changes by the clock between the two), becomes the new one.
CREATE OR REPLACE FUNCTION activity._apply(p_deltas activity.count_delta[], p_at timestamptz DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = activity, pg_temp
AS $$
BEGIN
    PERFORM _writing_counts();
    IF p_deltas IS NULL OR cardinality(p_deltas) = 0 THEN
        RETURN;
    END IF;
    UPDATE notification_counters c
       SET unread_count = c.unread_count + u.d_legacy,
           inbox_unread = c.inbox_unread + u.d_unread,
           inbox_unseen = c.inbox_unseen + u.d_unseen,
           next_change_at = LEAST(c.next_change_at, u.next_at),
           next_expiry = LEAST(c.next_expiry, u.legacy_expires_at),
           folded_at = GREATEST(c.folded_at, p_at),
           version = c.version + 1
      FROM (SELECT d.user_id, sum(d.d_legacy) AS d_legacy, sum(d.d_unread) AS d_unread,
                   sum(d.d_unseen) AS d_unseen, min(d.next_at) AS next_at,
                   min(d.legacy_expires_at) AS legacy_expires_at
              FROM unnest(p_deltas) AS d GROUP BY d.user_id) u
     WHERE c.user_id = u.user_id;
    -- (CHECK constraints apply to the proposed row of INSERT .. ON CONFLICT, so decrements are a
    -- plain UPDATE: a type row exists whenever one of its counts is positive)
    -- (the per-type inbox counts of a user whose counts are "not computed" are recounted too)
    WITH t AS (
        SELECT d.user_id, d.notification_type, sum(d.d_legacy) AS d_legacy,
               COALESCE(sum(d.d_unread) FILTER (WHERE c.inbox_unread IS NOT NULL), 0) AS d_unread
          FROM unnest(p_deltas) AS d JOIN notification_counters c ON c.user_id = d.user_id
         GROUP BY d.user_id, d.notification_type
        HAVING sum(d.d_legacy) <> 0 OR COALESCE(sum(d.d_unread) FILTER (WHERE c.inbox_unread IS NOT NULL), 0) <> 0
    ), updated AS (
        UPDATE notification_type_counters x
           SET unread_count = x.unread_count + t.d_legacy, inbox_unread = x.inbox_unread + t.d_unread
          FROM t WHERE x.user_id = t.user_id AND x.notification_type = t.notification_type
        RETURNING x.user_id, x.notification_type
    )
    INSERT INTO notification_type_counters AS x (user_id, notification_type, unread_count, inbox_unread)
    SELECT t.user_id, t.notification_type, t.d_legacy, t.d_unread
      FROM t WHERE NOT EXISTS (SELECT 1 FROM updated u
                                WHERE u.user_id = t.user_id AND u.notification_type = t.notification_type)
     ORDER BY t.user_id, t.notification_type;

    -- groups (users whose counts are computed): member and unread counts add up; each group whose
    -- membership changed gets its latest and oldest inbox member probed again (index, newest first)
    WITH t AS (
        SELECT d.user_id, d.group_key, sum(d.d_member) AS d_member, sum(d.d_unread) AS d_unread
          FROM unnest(p_deltas) AS d JOIN notification_counters c ON c.user_id = d.user_id
         WHERE d.group_key IS NOT NULL AND c.inbox_unread IS NOT NULL
         GROUP BY d.user_id, d.group_key
        HAVING bool_or(d.d_member <> 0 OR d.d_unread <> 0)
    ), updated AS (
        UPDATE notification_groups x
           SET notifications_count = x.notifications_count + t.d_member, unread_count = x.unread_count + t.d_unread
          FROM t WHERE x.user_id = t.user_id AND x.group_key = t.group_key
        RETURNING x.user_id, x.group_key
    )
    INSERT INTO notification_groups AS x (user_id, group_key, notifications_count, unread_count)
    SELECT t.user_id, t.group_key, t.d_member, t.d_unread
      FROM t WHERE NOT EXISTS (SELECT 1 FROM updated u WHERE u.user_id = t.user_id AND u.group_key = t.group_key)
     ORDER BY t.user_id, t.group_key;
    PERFORM _probe_groups(array_agg(d.user_id), array_agg(d.group_key))
       FROM (SELECT DISTINCT d.user_id, d.group_key FROM unnest(p_deltas) AS d
               JOIN notification_counters c ON c.user_id = d.user_id
              WHERE d.group_key IS NOT NULL AND d.d_member <> 0 AND c.inbox_unread IS NOT NULL) d
     HAVING count(*) > 0;
END
$$;

-- Recount a user's inbox counts from the rows, as of p_at (caller holds the counters row lock):
-- once after the migration, and after a write by older code (0130's trigger).
CREATE OR REPLACE FUNCTION activity._recount(p_user_id uuid, p_at timestamptz)
RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = activity, pg_temp
AS $$
BEGIN
    PERFORM _writing_counts();
    -- the legacy counts too (unread rows, expired or not): exact again after hand edits
    WITH per_type AS (
        SELECT n.notification_type,
               count(*) FILTER (WHERE _c_unread(n.status, n.snoozed_until, n.expires_at, p_at) = 1) AS inbox,
               count(*) AS legacy
          FROM notifications n
         WHERE n.user_id = p_user_id AND n.status = 'unread'
         GROUP BY n.notification_type
    ), cleared AS (
        UPDATE notification_type_counters x
           SET inbox_unread = COALESCE(p.inbox, 0), unread_count = COALESCE(p.legacy, 0)
          FROM notification_type_counters y
          LEFT JOIN per_type p ON p.notification_type = y.notification_type
         WHERE y.user_id = p_user_id AND x.user_id = y.user_id AND x.notification_type = y.notification_type
        RETURNING x.notification_type
    )
    INSERT INTO notification_type_counters (user_id, notification_type, unread_count, inbox_unread)
    SELECT p_user_id, p.notification_type, p.legacy, p.inbox FROM per_type p
     WHERE p.notification_type NOT IN (SELECT c.notification_type FROM cleared c)
     ORDER BY p.notification_type;

    UPDATE notification_counters c
       SET inbox_unread = r.unread, inbox_unseen = r.unseen, folded_at = p_at,
           unread_count = r.legacy, next_expiry = r.legacy_expiry,
           next_change_at = LEAST(
               (SELECT min(n.expires_at) FROM notifications n
                 WHERE n.user_id = p_user_id AND n.status <> 'archived' AND n.expires_at > p_at),
               (SELECT min(n.snoozed_until) FROM notifications n
                 WHERE n.user_id = p_user_id AND n.status <> 'archived' AND n.snoozed_until > p_at))
      FROM (SELECT count(*) FILTER (WHERE _c_unread(n.status, n.snoozed_until, n.expires_at, p_at) = 1) AS unread,
                   count(*) FILTER (WHERE _c_unseen(n.status, n.seen_at, n.read_at, n.snoozed_until,
                                                    n.expires_at, p_at) = 1) AS unseen,
                   count(*) FILTER (WHERE n.status = 'unread') AS legacy,
                   min(n.expires_at) FILTER (WHERE n.status = 'unread') AS legacy_expiry
              FROM notifications n WHERE n.user_id = p_user_id AND n.status <> 'archived') r
     WHERE c.user_id = p_user_id;

    -- the groups: rebuilt from the inbox rows at p_at
    DELETE FROM notification_groups g WHERE g.user_id = p_user_id;
    INSERT INTO notification_groups (user_id, group_key, notifications_count, unread_count,
                                     latest_delivered_at, latest_id, oldest_delivered_at)
    SELECT DISTINCT ON (n.group_key) p_user_id, n.group_key, count(*) OVER w,
           count(*) FILTER (WHERE n.status = 'unread') OVER w, n.delivered_at, n.notification_id,
           min(n.delivered_at) OVER w
      FROM notifications n
     WHERE n.user_id = p_user_id AND n.group_key IS NOT NULL
       AND _in_inbox(n.status, n.snoozed_until, n.expires_at, p_at)
    WINDOW w AS (PARTITION BY n.group_key)
     ORDER BY n.group_key, n.delivered_at DESC, n.notification_id DESC;
END
$$;

-- Bring a user's counts to now (caller holds the counters row lock); returns the instant at which
-- writers evaluate row contributions (and pass to _apply): max(folded_at, now()), equivalent to
-- folded_at when nothing was due. Writes only when the counts were not computed or the clock has
-- changed them (now() >= next_change_at).
CREATE OR REPLACE FUNCTION activity._fold_locked(p_user_id uuid)
RETURNS timestamptz
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = activity, pg_temp
AS $$
DECLARE
    v_valid boolean;
    v_from timestamptz;
    v_next timestamptz;
    v_to timestamptz;
    v_deltas count_delta[];
BEGIN
    PERFORM _writing_counts();
    SELECT c.inbox_unread IS NOT NULL, c.folded_at, c.next_change_at INTO v_valid, v_from, v_next
      FROM notification_counters c WHERE c.user_id = p_user_id;
    IF NOT FOUND THEN
        RETURN now();  -- no counters row: no rows were ever counted
    END IF;
    v_to := GREATEST(v_from, now());
    IF NOT v_valid OR v_from IS NULL THEN
        PERFORM _recount(p_user_id, v_to);
        RETURN v_to;
    END IF;
    IF v_next IS NULL OR v_next > now() THEN
        RETURN v_to;  -- no row changes by the clock in (folded_at, v_to]
    END IF;

    SELECT array_agg(ROW(p_user_id, n.notification_type, 0,
                         _c_unread(n.status, n.snoozed_until, n.expires_at, v_to)
                           - _c_unread(n.status, n.snoozed_until, n.expires_at, v_from),
                         _c_unseen(n.status, n.seen_at, n.read_at, n.snoozed_until, n.expires_at, v_to)
                           - _c_unseen(n.status, n.seen_at, n.read_at, n.snoozed_until, n.expires_at, v_from),
                         NULL, NULL, n.group_key,
                         _in_inbox(n.status, n.snoozed_until, n.expires_at, v_to)::integer
                           - _in_inbox(n.status, n.snoozed_until, n.expires_at, v_from)::integer)::count_delta)
      INTO v_deltas
      FROM notifications n
     WHERE n.user_id = p_user_id
       AND n.notification_id IN (
           SELECT e.notification_id FROM notifications e
            WHERE e.user_id = p_user_id AND e.status <> 'archived' AND e.expires_at IS NOT NULL
              AND e.expires_at > v_from AND e.expires_at <= v_to
           UNION
           SELECT w.notification_id FROM notifications w
            WHERE w.user_id = p_user_id AND w.status <> 'archived' AND w.snoozed_until IS NOT NULL
              AND w.snoozed_until > v_from AND w.snoozed_until <= v_to);

    UPDATE notification_counters c
       SET folded_at = v_to,
           next_change_at = LEAST(
               (SELECT min(n.expires_at) FROM notifications n
                 WHERE n.user_id = p_user_id AND n.status <> 'archived' AND n.expires_at IS NOT NULL
                   AND n.expires_at > v_to),
               (SELECT min(n.snoozed_until) FROM notifications n
                 WHERE n.user_id = p_user_id AND n.status <> 'archived' AND n.snoozed_until IS NOT NULL
                   AND n.snoozed_until > v_to))
     WHERE c.user_id = p_user_id;
    PERFORM _apply(v_deltas);  -- bumps the version when a row changed state
    RETURN v_to;
END
$$;

-- Lock and fold: the first step of a writer that reports the counts.
CREATE OR REPLACE FUNCTION activity._lock_and_fold(p_user_id uuid)
RETURNS timestamptz
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = activity, pg_temp
AS $$
BEGIN
    PERFORM _lock_counters(p_user_id);
    RETURN _fold_locked(p_user_id);
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

-- The previous release's page: as _inbox_page (below), in (created_at, notification_id) order over
-- the created_at keyset indexes, with its statuses ('inbox': not archived, snoozed or not).
CREATE OR REPLACE FUNCTION activity._page_v1(
    p_user_id uuid, p_status text, p_types text[], p_limit integer, p_cursor_created_at timestamptz,
    p_cursor_id uuid, p_now timestamptz)
RETURNS SETOF activity.notifications
LANGUAGE sql STABLE
AS $$
    SELECT n.* FROM activity.notifications n
     WHERE n.user_id = p_user_id
       AND CASE p_status WHEN 'inbox' THEN n.status <> 'archived' WHEN 'all' THEN true
                         ELSE n.status = p_status END
       AND (n.created_at, n.notification_id) < (p_cursor_created_at, p_cursor_id)
       AND (n.expires_at IS NULL OR n.expires_at > p_now)
       AND (p_types IS NULL OR n.notification_type = ANY (p_types))
     ORDER BY n.created_at DESC, n.notification_id DESC
     LIMIT p_limit
$$;

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
    v_now timestamptz := now();
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
    -- a literal status per query: see _inbox_page
    CASE COALESCE(p_status, 'inbox')
    WHEN 'inbox' THEN
        RETURN QUERY SELECT (_out_v1(n)).* FROM _page_v1(p_user_id, 'inbox', v_types, p_limit, v_ts, v_id, v_now) n;
    WHEN 'unread' THEN
        RETURN QUERY SELECT (_out_v1(n)).* FROM _page_v1(p_user_id, 'unread', v_types, p_limit, v_ts, v_id, v_now) n;
    WHEN 'read' THEN
        RETURN QUERY SELECT (_out_v1(n)).* FROM _page_v1(p_user_id, 'read', v_types, p_limit, v_ts, v_id, v_now) n;
    WHEN 'archived' THEN
        RETURN QUERY SELECT (_out_v1(n)).* FROM _page_v1(p_user_id, 'archived', v_types, p_limit, v_ts, v_id, v_now) n;
    ELSE
        RETURN QUERY SELECT (_out_v1(n)).* FROM _page_v1(p_user_id, 'all', v_types, p_limit, v_ts, v_id, v_now) n;
    END CASE;
END
$$;

-- One page of a user's notifications, ordered by (delivered_at, notification_id) descending: the one
-- query behind every status of sp_inbox_list. Plain SQL (no SECURITY DEFINER, no SET), so it is
-- inlined into the caller's query; every caller passes p_status as a literal, so the CASE folds to
-- that status's predicate when the query is planned (generic plans too) and the planner matches its
-- partial keyset index. The caller passes a missing cursor as (infinity, max uuid) so the cursor
-- is always an index condition, and no types as NULL. Snoozed rows sit above now() in the inbox
-- and unread indexes (delivered_at = their until): `delivered_at <= now()` keeps them out of the
-- scanned range, and status=snoozed is exactly the range above now(). 'inbox': not archived (no
-- status given); 'all': every row.
CREATE OR REPLACE FUNCTION activity._inbox_page(
    p_user_id uuid, p_status text, p_types text[], p_limit integer, p_cursor_delivered_at timestamptz,
    p_cursor_id uuid, p_now timestamptz)
RETURNS SETOF activity.notifications
LANGUAGE sql STABLE
AS $$
    SELECT n.* FROM activity.notifications n
     WHERE n.user_id = p_user_id
       AND CASE p_status
           WHEN 'inbox' THEN n.status <> 'archived' AND n.delivered_at <= p_now
           WHEN 'unread' THEN n.status = 'unread' AND n.delivered_at <= p_now
           WHEN 'read' THEN n.status = 'read'
           WHEN 'archived' THEN n.status = 'archived'
           -- a snooze sets both; nothing else is delivered later (COALESCE: not a proof of
           -- "snoozed_until IS NOT NULL", so the unbounded fold index is never chosen for a page)
           WHEN 'snoozed' THEN n.status <> 'archived' AND n.delivered_at > p_now
                               AND n.delivered_at = COALESCE(n.snoozed_until, '-infinity')
           ELSE true END
       AND (n.delivered_at, n.notification_id) < (p_cursor_delivered_at, p_cursor_id)
       AND (n.expires_at IS NULL OR n.expires_at > p_now)
       AND (p_types IS NULL OR n.notification_type = ANY (p_types))
     ORDER BY n.delivered_at DESC, n.notification_id DESC
     LIMIT p_limit
$$;

-- The inbox v2 list (_inbox_page: one static query per status).
CREATE OR REPLACE FUNCTION activity.sp_inbox_list(
    p_user_id uuid,
    p_status text DEFAULT NULL,
    p_types text[] DEFAULT NULL,
    p_limit integer DEFAULT 20,
    p_cursor_delivered_at timestamptz DEFAULT NULL,
    p_cursor_id uuid DEFAULT NULL)
RETURNS SETOF activity.inbox_notification
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = activity, pg_temp
AS $$
DECLARE
    v_ts timestamptz := COALESCE(p_cursor_delivered_at, 'infinity');
    v_id uuid := COALESCE(p_cursor_id, 'ffffffff-ffff-ffff-ffff-ffffffffffff');
    v_types text[] := CASE WHEN cardinality(p_types) > 0 THEN p_types END;
    v_now timestamptz := now();
BEGIN
    PERFORM _check_user(p_user_id);
    IF p_status IS NOT NULL AND p_status NOT IN ('unread', 'read', 'archived', 'snoozed', 'all') THEN
        PERFORM _invalid('status', 'status must be one of unread, read, archived, snoozed, all');
    END IF;
    IF p_limit IS NULL OR p_limit < 1 OR p_limit > 101 THEN
        PERFORM _invalid('limit', 'limit must be between 1 and 101');
    END IF;
    IF (p_cursor_delivered_at IS NULL) <> (p_cursor_id IS NULL) THEN
        PERFORM _invalid('cursor', 'cursor needs both delivered_at and notification_id');
    END IF;
    CASE COALESCE(p_status, 'inbox')
    WHEN 'inbox' THEN
        RETURN QUERY SELECT (_out(n)).* FROM _inbox_page(p_user_id, 'inbox', v_types, p_limit, v_ts, v_id, v_now) n;
    WHEN 'unread' THEN
        RETURN QUERY SELECT (_out(n)).* FROM _inbox_page(p_user_id, 'unread', v_types, p_limit, v_ts, v_id, v_now) n;
    WHEN 'read' THEN
        RETURN QUERY SELECT (_out(n)).* FROM _inbox_page(p_user_id, 'read', v_types, p_limit, v_ts, v_id, v_now) n;
    WHEN 'archived' THEN
        RETURN QUERY SELECT (_out(n)).* FROM _inbox_page(p_user_id, 'archived', v_types, p_limit, v_ts, v_id, v_now) n;
    WHEN 'snoozed' THEN
        RETURN QUERY SELECT (_out(n)).* FROM _inbox_page(p_user_id, 'snoozed', v_types, p_limit, v_ts, v_id, v_now) n;
    ELSE
        RETURN QUERY SELECT (_out(n)).* FROM _inbox_page(p_user_id, 'all', v_types, p_limit, v_ts, v_id, v_now) n;
    END CASE;
END
$$;

CREATE OR REPLACE FUNCTION activity.sp_inbox_get(p_user_id uuid, p_notification_id uuid)
RETURNS SETOF activity.inbox_notification
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = activity, pg_temp
AS $$
BEGIN
    PERFORM _check_user(p_user_id);
    RETURN QUERY
    SELECT (_out(n)).* FROM notifications n
     WHERE n.user_id = p_user_id AND n.notification_id = p_notification_id
       AND (n.expires_at IS NULL OR n.expires_at > now());
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'NA404', MESSAGE = 'notification not found';
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
    SELECT (_out_v1(n)).* FROM notifications n
     WHERE n.user_id = p_user_id AND n.notification_id = p_notification_id
       AND (n.expires_at IS NULL OR n.expires_at > now());
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'NA404', MESSAGE = 'notification not found';
    END IF;
END
$$;

-- ---------------------------------------------------------------------------
-- the v2 notification object
-- ---------------------------------------------------------------------------

-- One definition of what a read returns (inlined: plain SQL, no SECURITY DEFINER). "snoozed" is
-- derived: not archived and snoozed_until still ahead. seen_at falls back to read_at for rows the
-- previous release marked read (it had no seen state; reading implies seeing).
CREATE OR REPLACE FUNCTION activity._out(n activity.notifications)
RETURNS activity.inbox_notification
LANGUAGE sql STABLE
AS $$
    SELECT ROW(n.notification_id, n.user_id, n.notification_type, n.title, n.message, n.actor_user_id,
               n.target_type, n.target_id, n.action_url, n.payload, n.priority, n.group_key,
               CASE WHEN n.status <> 'archived' AND n.snoozed_until > now() THEN 'snoozed' ELSE n.status END,
               n.created_at, n.delivered_at, COALESCE(n.seen_at, n.read_at), n.read_at, n.archived_at,
               n.snoozed_until, n.expires_at)::activity.inbox_notification
$$;

-- The previous release's object (its functions' return type).
CREATE OR REPLACE FUNCTION activity._out_v1(n activity.notifications)
RETURNS activity.notification_out
LANGUAGE sql STABLE
AS $$
    SELECT ROW(n.notification_id, n.user_id, n.notification_type, n.title, n.message, n.actor_user_id,
               n.target_type, n.target_id, n.action_url, n.payload, n.priority, n.group_key, n.status,
               n.created_at, n.read_at, n.archived_at, n.expires_at)::activity.notification_out
$$;

-- A notification of the user that is not expired, locked (caller holds the counters row lock).
CREATE OR REPLACE FUNCTION activity._lock_notification(p_user_id uuid, p_notification_id uuid)
RETURNS activity.notifications
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = activity, pg_temp
AS $$
DECLARE
    v_row notifications%ROWTYPE;
BEGIN
    SELECT * INTO v_row FROM notifications n
     WHERE n.user_id = p_user_id AND n.notification_id = p_notification_id
       AND (n.expires_at IS NULL OR n.expires_at > now())
       FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'NA404', MESSAGE = 'notification not found';
    END IF;
    RETURN v_row;
END
$$;

CREATE OR REPLACE FUNCTION activity._row_delta(o activity.notifications, n activity.notifications, p_at timestamptz)
RETURNS activity.count_delta
LANGUAGE sql IMMUTABLE
AS $$
    SELECT activity._delta(COALESCE(n.user_id, o.user_id), COALESCE(n.notification_type, o.notification_type),
                           COALESCE(n.group_key, o.group_key),
                           o.status, o.seen_at, o.read_at, o.snoozed_until, o.expires_at,
                           n.status, n.seen_at, n.read_at, n.snoozed_until, n.expires_at, p_at)
$$;

-- ---------------------------------------------------------------------------
-- 3. mark one read / unread
-- ---------------------------------------------------------------------------

-- Reading sets read_at (kept when already read) and seen_at when null; marking unread keeps
-- seen_at. On an archived notification only the read state is recorded (archived wins). A
-- snoozed one is NAS09 notification_snoozed.
CREATE OR REPLACE FUNCTION activity.sp_inbox_mark_read(
    p_user_id uuid, p_notification_id uuid, p_read boolean DEFAULT true)
RETURNS SETOF activity.inbox_notification
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = activity, pg_temp
AS $$
DECLARE
    v_at timestamptz;
    v_read boolean := COALESCE(p_read, true);
    v_old notifications%ROWTYPE;
    v_new notifications%ROWTYPE;
BEGIN
    PERFORM _check_user(p_user_id);
    v_at := _lock_and_fold(p_user_id);
    v_old := _lock_notification(p_user_id, p_notification_id);
    IF v_old.status <> 'archived' AND v_old.snoozed_until > now() THEN
        RAISE EXCEPTION USING ERRCODE = 'NAS09', MESSAGE = 'notification is snoozed', DETAIL = 'notification_snoozed';
    END IF;
    IF v_read AND v_old.read_at IS NULL THEN
        UPDATE notifications n
           SET status = CASE WHEN n.status = 'unread' THEN 'read' ELSE n.status END,
               read_at = now(), seen_at = COALESCE(n.seen_at, now())
         WHERE n.user_id = p_user_id AND n.notification_id = p_notification_id
        RETURNING * INTO v_new;
    ELSIF NOT v_read AND v_old.read_at IS NOT NULL THEN
        UPDATE notifications n
           SET status = CASE WHEN n.status = 'read' THEN 'unread' ELSE n.status END,
               read_at = NULL, seen_at = COALESCE(n.seen_at, n.read_at)
         WHERE n.user_id = p_user_id AND n.notification_id = p_notification_id
        RETURNING * INTO v_new;
    ELSE
        v_new := v_old;  -- already in the requested state: nothing changes, no version bump
    END IF;
    IF v_new IS DISTINCT FROM v_old THEN
        PERFORM _apply(ARRAY[_row_delta(v_old, v_new, v_at)], v_at);
    END IF;
    RETURN QUERY SELECT (_out(v_new)).*;
END
$$;

-- The previous release's form (same rules, its object).
CREATE OR REPLACE FUNCTION activity.sp_mark_notification_as_read(
    p_user_id uuid, p_notification_id uuid, p_read boolean DEFAULT true)
RETURNS SETOF activity.notification_out
LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = activity, pg_temp
AS $$
    SELECT r.notification_id, r.user_id, r.notification_type, r.title, r.message, r.actor_user_id,
           r.target_type, r.target_id, r.action_url, r.payload, r.priority, r.group_key,
           CASE WHEN r.status = 'snoozed' THEN 'unread' ELSE r.status END,
           r.created_at, r.read_at, r.archived_at, r.expires_at
      FROM activity.sp_inbox_mark_read(p_user_id, p_notification_id, p_read) r
$$;

-- ---------------------------------------------------------------------------
-- 10. one action on many (and 4., bulk mark read, as its action `read`)
-- ---------------------------------------------------------------------------

-- Selectors combine as AND; `status` is the derived state to act on. One UPDATE (or DELETE) whose
-- WHERE names exactly the rows the action changes, so updated_count counts state changes and the
-- counts follow from the rows it returns (old and new state, at the folded instant).
CREATE OR REPLACE FUNCTION activity.sp_bulk_update(
    p_user_id uuid,
    p_action text,
    p_notification_ids uuid[] DEFAULT NULL,
    p_notification_type text DEFAULT NULL,
    p_group_key text DEFAULT NULL,
    p_status text DEFAULT NULL,
    p_all boolean DEFAULT false,
    p_before timestamptz DEFAULT NULL)
RETURNS TABLE(updated_count integer, unread_count bigint, unseen_count bigint)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = activity, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    v_at timestamptz;
    v_now timestamptz := now();
    v_deltas count_delta[];
BEGIN
    PERFORM _check_user(p_user_id);
    IF p_action IS NULL OR p_action NOT IN ('seen', 'read', 'unread', 'archive', 'unarchive', 'delete') THEN
        PERFORM _invalid('action', 'action must be one of seen, read, unread, archive, unarchive, delete');
    END IF;
    IF p_notification_ids IS NOT NULL
       AND (cardinality(p_notification_ids) < 1 OR cardinality(p_notification_ids) > 1000) THEN
        PERFORM _invalid('notification_ids', 'notification_ids must hold 1 to 1000 ids');
    END IF;
    IF p_status IS NOT NULL AND p_status NOT IN ('unread', 'read', 'archived', 'snoozed') THEN
        PERFORM _invalid('status', 'status must be one of unread, read, archived, snoozed');
    END IF;
    IF p_notification_ids IS NULL AND p_notification_type IS NULL AND p_group_key IS NULL
       AND p_status IS NULL AND p_all IS NOT TRUE THEN
        PERFORM _invalid('all', 'give notification_ids, notification_type, group_key, status or all=true');
    END IF;

    v_at := _lock_and_fold(p_user_id);
    IF p_action = 'delete' THEN
        WITH sel AS (
            SELECT n.ctid, n.* FROM notifications n
             WHERE n.user_id = p_user_id
               AND (n.expires_at IS NULL OR n.expires_at > v_now)
               AND (p_notification_ids IS NULL OR n.notification_id = ANY (p_notification_ids))
               AND (p_notification_type IS NULL OR n.notification_type = p_notification_type)
               AND (p_group_key IS NULL OR n.group_key = p_group_key)
               AND (p_before IS NULL OR n.delivered_at <= p_before)
               AND (p_status IS NULL
                    OR (p_status = 'archived' AND n.status = 'archived')
                    OR (p_status = 'snoozed' AND n.status <> 'archived' AND n.snoozed_until > v_now)
                    OR (p_status IN ('unread', 'read') AND n.status = p_status
                        AND (n.snoozed_until IS NULL OR n.snoozed_until <= v_now)))
               FOR UPDATE
        ), gone AS (
            DELETE FROM notifications n USING sel o
             WHERE n.ctid = o.ctid AND n.user_id = p_user_id
            RETURNING n.*
        ), mail AS (
            UPDATE email_outbox m SET status = 'cancelled'
              FROM gone g
             WHERE m.user_id = g.user_id AND m.notification_id = g.notification_id AND m.status = 'pending'
        )
        SELECT array_agg(_row_delta(g::notifications, NULL::notifications, v_at)) INTO v_deltas FROM gone g;
    ELSE
        WITH sel AS (
            SELECT n.ctid, n.* FROM notifications n
             WHERE n.user_id = p_user_id
               AND (n.expires_at IS NULL OR n.expires_at > v_now)
               AND (p_notification_ids IS NULL OR n.notification_id = ANY (p_notification_ids))
               AND (p_notification_type IS NULL OR n.notification_type = p_notification_type)
               AND (p_group_key IS NULL OR n.group_key = p_group_key)
               AND (p_before IS NULL OR n.delivered_at <= p_before)
               AND (p_status IS NULL
                    OR (p_status = 'archived' AND n.status = 'archived')
                    OR (p_status = 'snoozed' AND n.status <> 'archived' AND n.snoozed_until > v_now)
                    OR (p_status IN ('unread', 'read') AND n.status = p_status
                        AND (n.snoozed_until IS NULL OR n.snoozed_until <= v_now)))
               AND CASE p_action
                   WHEN 'seen' THEN n.status <> 'archived' AND n.seen_at IS NULL AND n.read_at IS NULL
                                    AND (n.snoozed_until IS NULL OR n.snoozed_until <= v_now)
                   WHEN 'read' THEN n.status = 'unread' AND (n.snoozed_until IS NULL OR n.snoozed_until <= v_now)
                   WHEN 'unread' THEN n.status = 'read'
                   WHEN 'archive' THEN n.status <> 'archived'
                   ELSE n.status = 'archived' END
               FOR UPDATE
        ), changed AS (
            UPDATE notifications n
               SET status = CASE p_action WHEN 'read' THEN 'read' WHEN 'unread' THEN 'unread'
                                          WHEN 'archive' THEN 'archived'
                                          WHEN 'unarchive' THEN CASE WHEN n.read_at IS NULL THEN 'unread' ELSE 'read' END
                                          ELSE n.status END,
                   read_at = CASE p_action WHEN 'read' THEN v_now WHEN 'unread' THEN NULL ELSE n.read_at END,
                   seen_at = CASE WHEN p_action IN ('seen', 'read') THEN COALESCE(n.seen_at, v_now)
                                  WHEN p_action = 'unread' THEN COALESCE(n.seen_at, n.read_at)
                                  ELSE n.seen_at END,
                   archived_at = CASE p_action WHEN 'archive' THEN v_now WHEN 'unarchive' THEN NULL
                                               ELSE n.archived_at END,
                   -- archiving a snoozed notification ends the snooze as a wake would
                   delivered_at = CASE WHEN p_action = 'archive' AND n.snoozed_until > v_now THEN v_now
                                       ELSE n.delivered_at END,
                   snoozed_until = CASE WHEN p_action = 'archive' AND n.snoozed_until > v_now THEN v_now
                                        ELSE n.snoozed_until END
              FROM sel o
             -- the locked row itself, by its tuple id (a join on the key could hash-scan the table)
             WHERE n.ctid = o.ctid AND n.user_id = p_user_id
            RETURNING _delta(n.user_id, n.notification_type, n.group_key,
                             o.status, o.seen_at, o.read_at, o.snoozed_until, o.expires_at,
                             n.status, n.seen_at, n.read_at, n.snoozed_until, n.expires_at, v_at) AS d
        )
        SELECT array_agg(c.d) INTO v_deltas FROM changed c;
    END IF;

    PERFORM _apply(v_deltas, v_at);
    RETURN QUERY
    SELECT COALESCE(cardinality(v_deltas), 0), c.inbox_unread, c.inbox_unseen
      FROM notification_counters c WHERE c.user_id = p_user_id;
END
$$;

-- The previous release's endpoint 4 (`read` with its selectors).
CREATE OR REPLACE FUNCTION activity.sp_mark_notifications_as_read_bulk(
    p_user_id uuid,
    p_notification_ids uuid[] DEFAULT NULL,
    p_notification_type text DEFAULT NULL,
    p_all boolean DEFAULT false,
    p_before timestamptz DEFAULT NULL)
RETURNS TABLE(updated_count integer, unread_count bigint)
LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = activity, pg_temp
AS $$
    SELECT r.updated_count, r.unread_count
      FROM activity.sp_bulk_update(p_user_id, 'read', p_notification_ids, p_notification_type, NULL, NULL,
                                   COALESCE(p_all, false), p_before) r
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
    v_at timestamptz;
    v_old notifications%ROWTYPE;
    v_new notifications%ROWTYPE;
BEGIN
    PERFORM _check_user(p_user_id);
    v_at := _lock_and_fold(p_user_id);
    v_old := _lock_notification(p_user_id, p_notification_id);
    IF p_permanent IS TRUE THEN
        DELETE FROM notifications n WHERE n.user_id = p_user_id AND n.notification_id = p_notification_id;
    ELSIF v_old.status = 'archived' THEN
        RETURN;  -- archiving an archived notification: nothing to do
    ELSE
        -- archiving a snoozed notification ends the snooze as a wake would
        UPDATE notifications n
           SET status = 'archived', archived_at = now(),
               delivered_at = CASE WHEN n.snoozed_until > now() THEN now() ELSE n.delivered_at END,
               snoozed_until = CASE WHEN n.snoozed_until > now() THEN now() ELSE n.snoozed_until END
         WHERE n.user_id = p_user_id AND n.notification_id = p_notification_id
        RETURNING * INTO v_new;
    END IF;
    PERFORM _apply(ARRAY[_row_delta(v_old, v_new, v_at)], v_at);

    UPDATE email_outbox o SET status = 'cancelled'
     WHERE o.user_id = p_user_id AND o.notification_id = p_notification_id AND o.status = 'pending';
END
$$;

-- ---------------------------------------------------------------------------
-- 12. the inbox, grouped
-- ---------------------------------------------------------------------------

-- One page of groups, newest latest member first: the non-null groups from notification_groups
-- (a keyset range on the latest member) merged with the ungrouped inbox notifications (groups of
-- one, a keyset range on their own index), each side at most p_limit rows: the cost does not
-- depend on the size of a group nor on the depth of the page. Counts are folded first when the
-- clock has changed them (as the unread count does). The page query is _groups_page, planned once
-- per `unread` value (a literal), each matching its partial indexes.
CREATE OR REPLACE FUNCTION activity.sp_inbox_groups(
    p_user_id uuid,
    p_unread boolean DEFAULT false,
    p_limit integer DEFAULT 20,
    p_cursor_delivered_at timestamptz DEFAULT NULL,
    p_cursor_id uuid DEFAULT NULL)
RETURNS TABLE(notifications_count bigint, unread_count bigint, sample_actor_user_ids uuid[],
              oldest_delivered_at timestamptz, notification_id uuid, user_id uuid, notification_type text,
              title text, message text, actor_user_id uuid, target_type text, target_id text, action_url text,
              payload jsonb, priority text, group_key text, status text, created_at timestamptz,
              delivered_at timestamptz, seen_at timestamptz, read_at timestamptz, archived_at timestamptz,
              snoozed_until timestamptz, expires_at timestamptz)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = activity, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    v_ts timestamptz := COALESCE(p_cursor_delivered_at, 'infinity');
    v_id uuid := COALESCE(p_cursor_id, 'ffffffff-ffff-ffff-ffff-ffffffffffff');
    v_now timestamptz := now();
    v_due boolean;
BEGIN
    PERFORM _check_user(p_user_id);
    IF p_limit IS NULL OR p_limit < 1 OR p_limit > 101 THEN
        PERFORM _invalid('limit', 'limit must be between 1 and 101');
    END IF;
    IF (p_cursor_delivered_at IS NULL) <> (p_cursor_id IS NULL) THEN
        PERFORM _invalid('cursor', 'cursor needs both delivered_at and notification_id');
    END IF;
    SELECT c.inbox_unread IS NULL OR c.next_change_at <= now() INTO v_due
      FROM notification_counters c WHERE c.user_id = p_user_id;
    IF v_due THEN
        PERFORM _lock_and_fold(p_user_id);
    END IF;

    IF p_unread IS TRUE THEN
        RETURN QUERY SELECT * FROM _groups_page(p_user_id, true, p_limit, v_ts, v_id, v_now);
    ELSE
        RETURN QUERY SELECT * FROM _groups_page(p_user_id, false, p_limit, v_ts, v_id, v_now);
    END IF;
END
$$;

-- The distinct non-null actors among a group's 10 most recent inbox members, newest first, at
-- most 3 (a group of one: its own actor).
CREATE OR REPLACE FUNCTION activity._sample_actors(p_user_id uuid, p_group_key text, p_actor uuid, p_now timestamptz)
RETURNS uuid[]
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = activity, pg_temp
AS $$
    SELECT CASE WHEN p_group_key IS NULL THEN
                CASE WHEN p_actor IS NULL THEN '{}'::uuid[] ELSE ARRAY[p_actor] END
           ELSE (SELECT COALESCE(array_agg(s.actor ORDER BY s.first), '{}')
                   FROM (SELECT r.actor_user_id AS actor, min(r.rn) AS first
                           FROM (SELECT m.actor_user_id,
                                        row_number() OVER (ORDER BY m.delivered_at DESC, m.notification_id DESC) AS rn
                                   FROM (SELECT m.actor_user_id, m.delivered_at, m.notification_id
                                           FROM activity.notifications m
                                          WHERE m.user_id = p_user_id AND m.group_key = p_group_key
                                            AND m.status <> 'archived' AND m.delivered_at <= p_now
                                            AND (m.expires_at IS NULL OR m.expires_at > p_now)
                                          ORDER BY m.delivered_at DESC, m.notification_id DESC
                                          LIMIT 10) m) r
                          WHERE r.actor_user_id IS NOT NULL
                          GROUP BY r.actor_user_id
                          ORDER BY min(r.rn)
                          LIMIT 3) s) END
$$;

-- The page query of sp_inbox_groups, written once: plain SQL, inlined into the caller, which
-- passes p_unread as a literal so each side's predicate folds to its partial index's when the
-- query is planned (notification_groups_latest[_unread], notifications_ungrouped[_unread]_delivered).
CREATE OR REPLACE FUNCTION activity._groups_page(
    p_user_id uuid, p_unread boolean, p_limit integer, p_cursor_delivered_at timestamptz, p_cursor_id uuid,
    p_now timestamptz)
RETURNS TABLE(notifications_count bigint, unread_count bigint, sample_actor_user_ids uuid[],
              oldest_delivered_at timestamptz, notification_id uuid, user_id uuid, notification_type text,
              title text, message text, actor_user_id uuid, target_type text, target_id text, action_url text,
              payload jsonb, priority text, group_key text, status text, created_at timestamptz,
              delivered_at timestamptz, seen_at timestamptz, read_at timestamptz, archived_at timestamptz,
              snoozed_until timestamptz, expires_at timestamptz)
LANGUAGE sql STABLE
AS $$
    WITH page AS (
        (SELECT g.group_key AS gkey, g.notifications_count AS cnt, g.unread_count AS unread,
                g.latest_delivered_at AS d, g.latest_id AS id, g.oldest_delivered_at AS oldest
           FROM activity.notification_groups g
          WHERE g.user_id = p_user_id AND g.notifications_count > 0 AND (NOT p_unread OR g.unread_count > 0)
            AND (g.latest_delivered_at, g.latest_id) < (p_cursor_delivered_at, p_cursor_id)
          ORDER BY g.latest_delivered_at DESC, g.latest_id DESC LIMIT p_limit)
        UNION ALL
        (SELECT NULL, 1::bigint, (n.status = 'unread')::integer::bigint, n.delivered_at, n.notification_id,
                n.delivered_at
           FROM activity.notifications n
          WHERE n.user_id = p_user_id AND n.group_key IS NULL
            AND CASE WHEN p_unread THEN n.status = 'unread' ELSE n.status <> 'archived' END
            AND (n.delivered_at, n.notification_id) < (p_cursor_delivered_at, p_cursor_id)
            AND n.delivered_at <= p_now AND (n.expires_at IS NULL OR n.expires_at > p_now)
          ORDER BY n.delivered_at DESC, n.notification_id DESC LIMIT p_limit)
    ), top AS (SELECT * FROM page ORDER BY page.d DESC, page.id DESC LIMIT p_limit)
    SELECT t.cnt, t.unread, activity._sample_actors(p_user_id, t.gkey, n.actor_user_id, p_now), t.oldest,
           (activity._out(n)).*
      FROM top t JOIN activity.notifications n ON n.user_id = p_user_id AND n.notification_id = t.id
     ORDER BY t.d DESC, t.id DESC
$$;

-- ---------------------------------------------------------------------------
-- 11. / 11b. snooze, wake now
-- ---------------------------------------------------------------------------

-- p_until NULL: wake now. Snoozing makes the row unread and unseen with delivered_at =
-- snoozed_until = until: at until it simply is an inbox row again, delivered then (no write at
-- wake-up time; the counts fold it in by the clock). Waking now: delivered_at = snoozed_until =
-- now. Errors in the API's order: until out of range (NA422), not found (NA404), until after the
-- expiry (NA422), archived (NAA09 notification_archived).
CREATE OR REPLACE FUNCTION activity.sp_inbox_snooze(p_user_id uuid, p_notification_id uuid, p_until timestamptz)
RETURNS SETOF activity.inbox_notification
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = activity, pg_temp
AS $$
DECLARE
    v_at timestamptz;
    v_old notifications%ROWTYPE;
    v_new notifications%ROWTYPE;
BEGIN
    PERFORM _check_user(p_user_id);
    IF p_until IS NOT NULL AND (p_until < now() + interval '60 seconds' OR p_until > now() + interval '90 days') THEN
        PERFORM _invalid('until', 'until must be at least 60 seconds and at most 90 days ahead');
    END IF;
    v_at := _lock_and_fold(p_user_id);
    v_old := _lock_notification(p_user_id, p_notification_id);
    v_new := v_old;
    IF p_until IS NOT NULL THEN
        IF p_until > v_old.expires_at THEN
            PERFORM _invalid('until', 'until must not be after the notification''s expires_at');
        END IF;
        IF v_old.status = 'archived' THEN
            RAISE EXCEPTION USING ERRCODE = 'NAA09', MESSAGE = 'notification is archived',
                DETAIL = 'notification_archived';
        END IF;
        UPDATE notifications n
           SET status = 'unread', read_at = NULL, seen_at = NULL, delivered_at = p_until, snoozed_until = p_until
         WHERE n.user_id = p_user_id AND n.notification_id = p_notification_id
        RETURNING * INTO v_new;
    ELSIF v_old.status <> 'archived' AND v_old.snoozed_until > now() THEN
        UPDATE notifications n SET delivered_at = now(), snoozed_until = now()
         WHERE n.user_id = p_user_id AND n.notification_id = p_notification_id
        RETURNING * INTO v_new;
    END IF;
    IF v_new IS DISTINCT FROM v_old THEN
        PERFORM _apply(ARRAY[_row_delta(v_old, v_new, v_at)], v_at);
    END IF;
    RETURN QUERY SELECT (_out(v_new)).*;
END
$$;

-- ---------------------------------------------------------------------------
-- 13. retraction by the producer
-- ---------------------------------------------------------------------------

-- Exactly one of p_dedupe_key or (p_target_type, p_target_id); the others narrow. Reads only
-- the matching rows (indexes leading with dedupe_key / (target_type, target_id)), locks the
-- affected users' counters rows in ascending user_id (every multi-user writer's order), deletes
-- up to p_limit rows, cancels their pending e-mails; counts follow at each user's folded instant.
-- (user_ids: the users whose counts changed, for the live-update publisher; added after the
-- first version, hence the DROP: a changed result type cannot be replaced in place.)
DROP FUNCTION IF EXISTS activity.sp_retract_notifications(text, text, text, text, uuid, uuid[], integer)
    CASCADE;
CREATE OR REPLACE FUNCTION activity.sp_retract_notifications(
    p_dedupe_key text DEFAULT NULL,
    p_target_type text DEFAULT NULL,
    p_target_id text DEFAULT NULL,
    p_notification_type text DEFAULT NULL,
    p_actor_user_id uuid DEFAULT NULL,
    p_user_ids uuid[] DEFAULT NULL,
    p_limit integer DEFAULT 10000)
RETURNS TABLE(retracted_count integer, has_more boolean, user_ids uuid[])
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = activity, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    v_uids uuid[];
    v_nids uuid[];
    v_users uuid[];
    v_more boolean;
    v_deleted integer;
    v_deltas count_delta[];
BEGIN
    IF (p_dedupe_key IS NULL) = (p_target_type IS NULL AND p_target_id IS NULL) THEN
        PERFORM _invalid('dedupe_key', 'give exactly one of dedupe_key or target_type with target_id');
    END IF;
    IF p_dedupe_key IS NULL AND (p_target_type IS NULL OR p_target_id IS NULL) THEN
        PERFORM _invalid(CASE WHEN p_target_type IS NULL THEN 'target_type' ELSE 'target_id' END,
                         'target_type and target_id go together');
    END IF;
    IF p_user_ids IS NOT NULL AND (cardinality(p_user_ids) < 1 OR cardinality(p_user_ids) > 1000) THEN
        PERFORM _invalid('user_ids', 'user_ids must hold 1 to 1000 user ids');
    END IF;
    IF p_limit IS NULL OR p_limit < 1 OR p_limit > 10000 THEN
        PERFORM _invalid('limit', 'limit must be between 1 and 10000');
    END IF;

    IF p_dedupe_key IS NOT NULL THEN
        SELECT array_agg(m.user_id), array_agg(m.notification_id) INTO v_uids, v_nids
          FROM (SELECT n.user_id, n.notification_id FROM notifications n
                 WHERE n.dedupe_key = p_dedupe_key
                   AND (p_notification_type IS NULL OR n.notification_type = p_notification_type)
                   AND (p_actor_user_id IS NULL OR n.actor_user_id = p_actor_user_id)
                   AND (p_user_ids IS NULL OR n.user_id = ANY (p_user_ids))
                 LIMIT p_limit + 1) m;
    ELSE
        SELECT array_agg(m.user_id), array_agg(m.notification_id) INTO v_uids, v_nids
          FROM (SELECT n.user_id, n.notification_id FROM notifications n
                 WHERE n.target_type = p_target_type AND n.target_id = p_target_id
                   AND (p_notification_type IS NULL OR n.notification_type = p_notification_type)
                   AND (p_actor_user_id IS NULL OR n.actor_user_id = p_actor_user_id)
                   AND (p_user_ids IS NULL OR n.user_id = ANY (p_user_ids))
                 LIMIT p_limit + 1) m;
    END IF;
    IF v_uids IS NULL THEN
        RETURN QUERY SELECT 0, false, '{}'::uuid[];
        RETURN;
    END IF;
    v_more := cardinality(v_uids) > p_limit;
    v_uids := v_uids[1:p_limit];
    v_nids := v_nids[1:p_limit];

    PERFORM _writing_counts();
    SELECT array_agg(DISTINCT u ORDER BY u) INTO v_users FROM unnest(v_uids) AS u;
    PERFORM 1 FROM notification_counters c WHERE c.user_id = ANY (v_users) ORDER BY c.user_id FOR UPDATE;
    -- counts not computed (older code wrote, rows edited by hand) are recounted first, due folds done
    PERFORM _fold_locked(c.user_id) FROM notification_counters c
      WHERE c.user_id = ANY (v_users) AND (c.inbox_unread IS NULL OR c.next_change_at <= now());

    -- the rows picked above, found again through the same index (never a join that could scan)
    WITH gone AS (
        DELETE FROM notifications n
         WHERE ((p_dedupe_key IS NOT NULL AND n.dedupe_key = p_dedupe_key)
                OR (p_dedupe_key IS NULL AND n.target_type = p_target_type AND n.target_id = p_target_id))
           AND n.notification_id = ANY (v_nids) AND n.user_id = ANY (v_users)
        RETURNING n.*
    ), mail AS (
        UPDATE email_outbox o SET status = 'cancelled'
          FROM gone g
         WHERE o.user_id = g.user_id AND o.notification_id = g.notification_id AND o.status = 'pending'
    )
    SELECT count(*), array_agg(_row_delta(g::notifications, NULL::notifications, c.folded_at))
                         FILTER (WHERE c.user_id IS NOT NULL)
      INTO v_deleted, v_deltas
      FROM gone g LEFT JOIN notification_counters c ON c.user_id = g.user_id;
    PERFORM _apply(v_deltas);
    RETURN QUERY SELECT v_deleted, v_more, v_users;
END
$$;

-- ---------------------------------------------------------------------------
-- 6. unread counts
-- ---------------------------------------------------------------------------

-- The counts of the inbox (not archived, not snoozed, not expired): one counters row read, plus
-- the per-type rows. When the clock has changed them (now() >= next_change_at) or they are not
-- computed, they are folded first (then this writes, under the counters row lock); each fold bumps
-- the version, so the version alone identifies the body (the ETag of endpoint 6).
-- A caller revalidating passes the version it has: when it still holds, by_type comes back NULL
-- ("unchanged") and the per-type rows are not read, so a 304 costs the user check and one
-- counters row by primary key.
CREATE OR REPLACE FUNCTION activity.sp_get_unread_count(
    p_user_id uuid, p_by_type boolean, p_known_version bigint)
RETURNS TABLE(unread_count bigint, unseen_count bigint, by_type jsonb, version bigint)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = activity, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    v_unread bigint;
    v_unseen bigint;
    v_version bigint;
    v_next timestamptz;
    v_by_type jsonb;
BEGIN
    PERFORM _check_user(p_user_id);
    SELECT c.inbox_unread, c.inbox_unseen, c.version, c.next_change_at INTO v_unread, v_unseen, v_version, v_next
      FROM notification_counters c WHERE c.user_id = p_user_id;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 0::bigint, 0::bigint,
                            CASE WHEN p_by_type IS NOT FALSE AND p_known_version IS DISTINCT FROM 0 THEN '{}'::jsonb END,
                            0::bigint;
        RETURN;
    END IF;
    IF v_unread IS NULL OR v_next <= now() THEN
        PERFORM _lock_and_fold(p_user_id);
        SELECT c.inbox_unread, c.inbox_unseen, c.version INTO v_unread, v_unseen, v_version
          FROM notification_counters c WHERE c.user_id = p_user_id;
    END IF;
    IF p_by_type IS NOT FALSE AND p_known_version IS DISTINCT FROM v_version THEN
        SELECT COALESCE(jsonb_object_agg(t.notification_type, t.inbox_unread), '{}') INTO v_by_type
          FROM notification_type_counters t WHERE t.user_id = p_user_id AND t.inbox_unread > 0;
    END IF;
    RETURN QUERY SELECT v_unread, v_unseen, v_by_type, v_version;
END
$$;

-- The previous release's forms: (user, by_type, known version, known count) answering
-- (unread_count, by_type, version), and the two-argument form of the first release. Separate
-- overloads, never defaults on a wider form: re-applying an older release's file (rollback)
-- re-creates its signatures, and two forms that both accept the same arguments make every such
-- call ambiguous (docs/PRODUCTION.md, "Rollback").
CREATE OR REPLACE FUNCTION activity.sp_get_unread_count(
    p_user_id uuid, p_by_type boolean, p_known_version bigint, p_known_count bigint)
RETURNS TABLE(unread_count bigint, by_type jsonb, version bigint)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = activity, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    r record;
BEGIN
    SELECT * INTO r FROM sp_get_unread_count(p_user_id, p_by_type, p_known_version);
    IF r.by_type IS NULL AND p_by_type IS NOT FALSE AND p_known_count IS DISTINCT FROM r.unread_count THEN
        SELECT * INTO r FROM sp_get_unread_count(p_user_id, p_by_type, NULL::bigint);
    END IF;
    RETURN QUERY SELECT r.unread_count, r.by_type, r.version;
END
$$;

CREATE OR REPLACE FUNCTION activity.sp_get_unread_count(p_user_id uuid, p_by_type boolean DEFAULT true)
RETURNS TABLE(unread_count bigint, by_type jsonb, version bigint)
LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = activity, pg_temp
AS $$
    SELECT * FROM activity.sp_get_unread_count(p_user_id, p_by_type, NULL::bigint, NULL::bigint)
$$;

-- The current counts of many users in one call (the live-updates stream), folded like the
-- single form; a user without any counters row counts zero at version 0. Users are folded in
-- ascending user_id order (the lock order of every multi-user writer).
CREATE OR REPLACE FUNCTION activity.sp_get_unread_counts_many(p_user_ids uuid[])
RETURNS TABLE(user_id uuid, unread_count bigint, unseen_count bigint, version bigint)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = activity, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    v_uid uuid;
BEGIN
    IF p_user_ids IS NULL OR cardinality(p_user_ids) > 10000 THEN
        PERFORM _invalid('user_ids', 'user_ids must hold at most 10000 user ids');
    END IF;
    FOR v_uid IN
        SELECT c.user_id FROM notification_counters c
         WHERE c.user_id = ANY (p_user_ids) AND (c.inbox_unread IS NULL OR c.next_change_at <= now())
         ORDER BY c.user_id
    LOOP
        PERFORM _lock_counters(v_uid);
        PERFORM _fold_locked(v_uid);
    END LOOP;
    RETURN QUERY
    SELECT u.uid, COALESCE(c.inbox_unread, 0), COALESCE(c.inbox_unseen, 0), COALESCE(c.version, 0)
      FROM (SELECT DISTINCT x AS uid FROM unnest(p_user_ids) AS x WHERE x IS NOT NULL) u
      LEFT JOIN notification_counters c ON c.user_id = u.uid
     ORDER BY u.uid;
END
$$;

-- The clock job: for up to p_limit users whose counts the clock has changed (a snooze ended, a
-- notification expired) and that nobody has folded yet, fold it in and return the new counts of
-- those whose counts changed. Several replicas may run it at once: SKIP LOCKED hands each user
-- to one of them, and a user a writer holds is left for the next run (the writer folds it).
CREATE OR REPLACE FUNCTION activity.sp_advance_clocks(p_limit integer)
RETURNS TABLE(user_id uuid, unread_count bigint, unseen_count bigint, version bigint)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = activity, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    v_users uuid[];
    v_versions bigint[];
    v_uid uuid;
BEGIN
    IF p_limit IS NULL OR p_limit < 1 OR p_limit > 10000 THEN
        PERFORM _invalid('limit', 'limit must be between 1 and 10000');
    END IF;
    SELECT array_agg(d.user_id ORDER BY d.user_id), array_agg(d.version ORDER BY d.user_id)
      INTO v_users, v_versions
      FROM (SELECT c.user_id, c.version FROM notification_counters c
             WHERE c.next_change_at <= now()
             ORDER BY c.next_change_at
             LIMIT p_limit
             FOR UPDATE SKIP LOCKED) d;
    IF v_users IS NULL THEN
        RETURN;
    END IF;
    FOREACH v_uid IN ARRAY v_users LOOP
        PERFORM _fold_locked(v_uid);
    END LOOP;
    RETURN QUERY
    SELECT c.user_id, c.inbox_unread, c.inbox_unseen, c.version
      FROM unnest(v_users, v_versions) AS b(uid, version)
      JOIN notification_counters c ON c.user_id = b.uid
     WHERE c.version <> b.version
     ORDER BY c.user_id;
END
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
    v_now timestamptz := clock_timestamp();
    v_found bigint;
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
                                        target_id, action_url, payload, priority, group_key, expires_at, dedupe_key,
                                        created_at, delivered_at)
        SELECT k.uid, p_notification_type, p_title, p_message, p_actor_user_id, p_target_type,
               p_target_id, p_action_url, v_payload, v_priority, p_group_key, p_expires_at, p_dedupe_key,
               v_now, v_now
          FROM unnest(v_users, v_results) AS k(uid, res)
         WHERE k.res = 'eligible'
         ORDER BY k.uid
        ON CONFLICT (user_id, dedupe_key) WHERE dedupe_key IS NOT NULL DO NOTHING
        RETURNING n.*
    ), counters AS (
        -- a new counters row: the user had no rows, its counts are this one row's, as of now
        INSERT INTO notification_counters AS c (user_id, unread_count, version, next_expiry,
                                                inbox_unread, inbox_unseen, folded_at, next_change_at)
        SELECT i.user_id, 1, 1, i.expires_at, 1, 1, now(), i.expires_at FROM ins i ORDER BY i.user_id
        ON CONFLICT (user_id) DO UPDATE
           SET unread_count = c.unread_count + 1, version = c.version + 1,
               next_expiry = LEAST(c.next_expiry, EXCLUDED.next_expiry),
               -- the new row's contribution at the user's folded instant
               inbox_unread = c.inbox_unread + _c_unread('unread', NULL, EXCLUDED.next_expiry, c.folded_at),
               inbox_unseen = c.inbox_unseen + _c_unseen('unread', NULL, NULL, NULL, EXCLUDED.next_expiry, c.folded_at),
               next_change_at = LEAST(c.next_change_at, _next_at('unread', NULL, EXCLUDED.next_expiry, c.folded_at))
        RETURNING c.user_id, c.folded_at, c.inbox_unread IS NOT NULL AS computed
    ), groups AS (
        -- the new row joins its group (as the latest member: it was delivered just now)
        INSERT INTO notification_groups AS g (user_id, group_key, notifications_count, unread_count,
                                              latest_delivered_at, latest_id, oldest_delivered_at)
        SELECT c.user_id, p_group_key, 1, 1, i.delivered_at, i.notification_id, i.delivered_at
          FROM counters c JOIN ins i ON i.user_id = c.user_id
         WHERE p_group_key IS NOT NULL AND c.computed
           AND _in_inbox('unread', NULL, p_expires_at, c.folded_at)
         ORDER BY c.user_id
        ON CONFLICT (user_id, group_key) DO UPDATE
           SET notifications_count = g.notifications_count + 1, unread_count = g.unread_count + 1,
               latest_delivered_at = CASE WHEN g.latest_id IS NULL
                                            OR (EXCLUDED.latest_delivered_at, EXCLUDED.latest_id)
                                               > (g.latest_delivered_at, g.latest_id)
                                          THEN EXCLUDED.latest_delivered_at ELSE g.latest_delivered_at END,
               latest_id = CASE WHEN g.latest_id IS NULL
                                  OR (EXCLUDED.latest_delivered_at, EXCLUDED.latest_id)
                                     > (g.latest_delivered_at, g.latest_id)
                                THEN EXCLUDED.latest_id ELSE g.latest_id END,
               oldest_delivered_at = CASE WHEN g.notifications_count = 0 OR g.oldest_delivered_at IS NULL
                                          THEN EXCLUDED.oldest_delivered_at
                                          ELSE LEAST(g.oldest_delivered_at, EXCLUDED.oldest_delivered_at) END
    ), type_counters AS (
        -- reads `counters`, so each user's counters row is locked before its type row
        -- (unreferenced data-modifying CTEs run in no useful order)
        INSERT INTO notification_type_counters AS t (user_id, notification_type, unread_count, inbox_unread)
        SELECT c.user_id, p_notification_type, 1, _c_unread('unread', NULL, p_expires_at, c.folded_at) FROM counters c
        ON CONFLICT (user_id, notification_type) DO UPDATE
           SET unread_count = t.unread_count + 1, inbox_unread = t.inbox_unread + EXCLUDED.inbox_unread
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
    SELECT COALESCE(array_agg(i.user_id), '{}'), COALESCE(array_agg(_out(i::notifications)), '{}')
      INTO v_created, v_rows
      FROM ins i;

    -- 3. the originals behind taken dedupe keys: a new statement (READ COMMITTED) sees
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
    v_deltas count_delta[];
BEGIN
    PERFORM _writing_counts();
    PERFORM _check_days('archived_older_than_days', p_archived_older_than_days);
    PERFORM _check_batch_size(p_batch_size);
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
    -- counts not computed (older code wrote, rows edited by hand) are recounted first, due folds done
    PERFORM _fold_locked(c.user_id) FROM notification_counters c
      WHERE c.user_id = ANY (v_users) AND (c.inbox_unread IS NULL OR c.next_change_at <= now());
    -- (a user without a counters row has nothing counted; FROM gone JOIN counters skips it)

    WITH gone AS (
        DELETE FROM notifications n
         USING unnest(v_uids, v_nids) AS k(uid, nid)
         WHERE n.user_id = k.uid AND n.notification_id = k.nid
           AND ((n.expires_at IS NOT NULL AND n.expires_at <= now())
                OR (n.status = 'archived' AND n.archived_at < v_cutoff))
        RETURNING n.*
    ), outbox AS (
        DELETE FROM email_outbox o USING gone g
         WHERE o.user_id = g.user_id AND o.notification_id = g.notification_id AND o.status <> 'pending'
    )
    -- each row's contribution at its user's folded instant (an expired row not folded yet still counts)
    SELECT count(*), array_agg(_row_delta(g::notifications, NULL::notifications, c.folded_at))
                         FILTER (WHERE c.user_id IS NOT NULL)
      INTO v_deleted, v_deltas
      FROM gone g LEFT JOIN notification_counters c ON c.user_id = g.user_id;
    PERFORM _apply(v_deltas);

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
    activity.sp_get_unread_count(uuid, boolean, bigint),
    activity.sp_get_unread_counts_many(uuid[]),
    activity.sp_advance_clocks(integer),
    activity.sp_inbox_mark_read(uuid, uuid, boolean),
    activity.sp_inbox_list(uuid, text, text[], integer, timestamptz, uuid),
    activity.sp_inbox_get(uuid, uuid),
    activity.sp_inbox_snooze(uuid, uuid, timestamptz),
    activity.sp_inbox_groups(uuid, boolean, integer, timestamptz, uuid),
    activity.sp_retract_notifications(text, text, text, text, uuid, uuid[], integer),
    activity.sp_bulk_update(uuid, text, uuid[], text, text, text, boolean, timestamptz),
    activity.sp_inbox_create(uuid[], text, text, text, uuid, text, text, text, jsonb, text, text,
                             timestamptz, text, boolean),
    activity.sp_create_notification(uuid[], text, text, text, uuid, text, text, text, jsonb, text, text,
                                    timestamptz, text, boolean),
    activity.sp_get_notification_settings(uuid),
    activity.sp_update_notification_settings(uuid, jsonb),
    activity.sp_schema_version()
TO notifications_api;
-- sp_purge_notifications: the retention group's only (repeatable/0150_retention.sql).
