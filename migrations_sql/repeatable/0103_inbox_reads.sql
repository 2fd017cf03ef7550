-- Reading notifications: the list (v1 and v2) and one notification.

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
