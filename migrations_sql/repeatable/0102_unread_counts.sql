-- Reading the counts (endpoint 6, the live-updates stream) and the clock job that folds them
-- (the rule: 0101_counts.sql).

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
        -- the whole body from this one statement (one snapshot): read apart, a commit in between
        -- gave by_type of version V+1 beside the counts and the ETag of V
        SELECT c.inbox_unread, c.inbox_unseen, c.version,
               (SELECT COALESCE(jsonb_object_agg(t.notification_type, t.inbox_unread), '{}')
                  FROM notification_type_counters t WHERE t.user_id = p_user_id AND t.inbox_unread > 0)
          INTO v_unread, v_unseen, v_version, v_by_type
          FROM notification_counters c WHERE c.user_id = p_user_id;
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
-- notification expired) and that nobody has folded yet, fold it in; one row per user folded, with
-- its counts and whether they changed (`changed`: the ones to publish). Folding stops once the
-- call has run p_max_ms (the rest stays due for the next call), so a large backlog progresses
-- batch by batch under any statement_timeout. The caller calls again while a call folded anyone:
-- the count of changed users says nothing (a user can be due and change nothing: an archived
-- notification expiring). Several replicas may run it at once: SKIP LOCKED hands each user to one
-- of them, and a user a writer holds is left for the next run (the writer folds it).
CREATE OR REPLACE FUNCTION activity.sp_advance_clocks(p_limit integer, p_max_ms integer)
RETURNS TABLE(user_id uuid, unread_count bigint, unseen_count bigint, version bigint, changed boolean)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = activity, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    v_users uuid[];
    v_versions bigint[];
    v_folded integer := 0;
    v_until timestamptz;
BEGIN
    IF p_limit IS NULL OR p_limit < 1 OR p_limit > 10000 THEN
        PERFORM _invalid('limit', 'limit must be between 1 and 10000');
    END IF;
    IF p_max_ms IS NULL OR p_max_ms < 1 OR p_max_ms > 60000 THEN
        PERFORM _invalid('max_ms', 'max_ms must be between 1 and 60000');
    END IF;
    v_until := clock_timestamp() + p_max_ms * interval '1 millisecond';
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
    WHILE v_folded < cardinality(v_users) AND (v_folded = 0 OR clock_timestamp() < v_until) LOOP
        v_folded := v_folded + 1;
        PERFORM _fold_locked(v_users[v_folded]);
    END LOOP;
    RETURN QUERY
    SELECT c.user_id, c.inbox_unread, c.inbox_unseen, c.version, c.version <> b.version
      FROM unnest(v_users[1:v_folded], v_versions[1:v_folded]) AS b(uid, version)
      JOIN notification_counters c ON c.user_id = b.uid
     ORDER BY c.user_id;
END
$$;

-- The previous release's form: the changed users only, no time bound.
CREATE OR REPLACE FUNCTION activity.sp_advance_clocks(p_limit integer)
RETURNS TABLE(user_id uuid, unread_count bigint, unseen_count bigint, version bigint)
LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = activity, pg_temp
AS $$
    SELECT r.user_id, r.unread_count, r.unseen_count, r.version
      FROM activity.sp_advance_clocks(p_limit, 60000) r
     WHERE r.changed
$$;
