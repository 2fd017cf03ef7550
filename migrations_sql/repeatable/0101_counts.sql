-- Inbox counts folded with the clock (tables: 0130_inbox_v2.sql, 0140_groups.sql): the rule every
-- writer keeps, so that a 304 on the counts is never stale, and the helpers that keep it. Stated
-- here once; every other file points here (0100_helpers.sql locks, 0102_unread_counts.sql reads).
--
-- Invariant, per user with inbox_unread NOT NULL: inbox_unread / inbox_unseen and the per-type
-- inbox_unread equal the sums of _c_unread / _c_unseen over the user's current rows evaluated at
-- the counters' folded_at (F); next_change_at <= every instant > F at which the clock alone
-- changes a row's contribution (an expiry, a snooze end). So while now() < next_change_at the
-- stored counts are the counts of now, and reading them costs one row.
-- Writers keep the invariant by applying, for every row they change, its contribution after
-- minus before, both at F (activity._delta / _row_delta, activity._apply), and every such change
-- bumps the version (the counts' ETag). The per-type rows and the groups follow the same deltas.
-- Nothing needs folding first for that; writers that report counts fold first
-- (activity._fold_locked) so the counts are current. Every writer goes through these helpers, the
-- fan-out create too: _apply is set-based (one statement per table for any number of users and
-- rows), so a second, inline copy of the rule would buy little (docs/PERFORMANCE.md, "Figures
-- moved out of the SQL comments").
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
-- expired) from the group's member index; a group with none keeps no latest. Not snoozed: as
-- _in_inbox says it, not `delivered_at <= now()` (the same for every stored row, but a fan-out
-- delivers at clock_timestamp(), after its transaction's now()).
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
             AND (n.snoozed_until IS NULL OR n.snoozed_until <= now())
             AND (n.expires_at IS NULL OR n.expires_at > now())
           ORDER BY n.delivered_at DESC, n.notification_id DESC LIMIT 1) l ON true
      LEFT JOIN LATERAL (
          SELECT n.delivered_at FROM notifications n
           WHERE n.user_id = k.uid AND n.group_key = k.gkey AND n.status <> 'archived'
             AND (n.snoozed_until IS NULL OR n.snoozed_until <= now())
             AND (n.expires_at IS NULL OR n.expires_at > now())
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
    -- a group left with no inbox member goes (as _recount keeps none): a member coming back
    -- (unarchive, a snooze ending) inserts it again above; kept, every emptied group stayed forever
    DELETE FROM notification_groups x
     USING (SELECT DISTINCT d.user_id, d.group_key FROM unnest(p_deltas) AS d
             WHERE d.group_key IS NOT NULL AND d.d_member < 0) t
     WHERE x.user_id = t.user_id AND x.group_key = t.group_key AND x.notifications_count = 0;
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

-- One row's contribution change, from its old to its new state (NULL: no row).
CREATE OR REPLACE FUNCTION activity._row_delta(o activity.notifications, n activity.notifications, p_at timestamptz)
RETURNS activity.count_delta
LANGUAGE sql IMMUTABLE
AS $$
    SELECT activity._delta(COALESCE(n.user_id, o.user_id), COALESCE(n.notification_type, o.notification_type),
                           COALESCE(n.group_key, o.group_key),
                           o.status, o.seen_at, o.read_at, o.snoozed_until, o.expires_at,
                           n.status, n.seen_at, n.read_at, n.snoozed_until, n.expires_at, p_at)
$$;
