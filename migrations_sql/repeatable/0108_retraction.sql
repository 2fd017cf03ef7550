-- Retraction by the producer: many users' notifications at once (counts: 0101_counts.sql).

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
           AND COALESCE(cardinality(o.notification_ids), 1) = 1  -- a digest's retry goes as made
    )
    SELECT count(*), array_agg(_row_delta(g::notifications, NULL::notifications, c.folded_at))
                         FILTER (WHERE c.user_id IS NOT NULL)
      INTO v_deleted, v_deltas
      FROM gone g LEFT JOIN notification_counters c ON c.user_id = g.user_id;
    PERFORM _apply(v_deltas);
    RETURN QUERY SELECT v_deleted, v_more, v_users;
END
$$;
