-- One action on many notifications of a user (counts: 0101_counts.sql).

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
               AND COALESCE(cardinality(m.notification_ids), 1) = 1  -- a digest's retry goes as made
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
