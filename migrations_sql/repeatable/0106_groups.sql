-- The inbox, grouped (the groups are kept with the counts: 0101_counts.sql).

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
