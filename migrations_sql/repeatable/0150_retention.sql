-- Retention: what the nightly `notifications-api purge` (the retention CronJob) may run.
-- Re-applied by the migration runner whenever this file or an earlier repeatable one changes
-- (after 0100_helpers.sql .. 0120_privileges.sql: it uses their helpers).
--
-- Privileges: only the NOLOGIN group notifications_retention (0002_roles.sql) executes the
-- purge functions; the API group notifications_api and the e-mail worker group get none of
-- them, and the retention group none of theirs. Every function is SECURITY DEFINER, owned by
-- notifications_owner, with a pinned search_path. Errors: NA422 (DETAIL = argument name).

-- ---------------------------------------------------------------------------
-- notifications
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
-- e-mail outbox
-- ---------------------------------------------------------------------------

-- Deletes up to p_batch_size finished outbox rows: `sent` and `cancelled` ones queued more than
-- p_finished_older_than_days ago, `failed` and `dead` ones (kept longer: someone may look into
-- them) queued more than p_failed_older_than_days ago. Pending and sending rows are never
-- touched. Ages count from created_at (when the e-mail was queued). Call until it returns 0;
-- rows locked by someone else are skipped, never waited for.
CREATE OR REPLACE FUNCTION activity.sp_purge_email_outbox(
    p_finished_older_than_days integer DEFAULT 7, p_failed_older_than_days integer DEFAULT 30,
    p_batch_size integer DEFAULT 1000)
RETURNS TABLE(deleted_count bigint)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = activity, pg_temp
AS $$
DECLARE
    v_deleted bigint;
BEGIN
    PERFORM _check_days('finished_older_than_days', p_finished_older_than_days);
    PERFORM _check_days('failed_older_than_days', p_failed_older_than_days);
    PERFORM _check_batch_size(p_batch_size);

    WITH picked AS (
        SELECT o.user_id, o.delivery_id
          FROM email_outbox o
         WHERE (o.status IN ('sent', 'cancelled')
                AND o.created_at < now() - make_interval(days => p_finished_older_than_days))
            OR (o.status IN ('failed', 'dead')
                AND o.created_at < now() - make_interval(days => p_failed_older_than_days))
         LIMIT p_batch_size
           FOR UPDATE SKIP LOCKED
    ), gone AS (
        DELETE FROM email_outbox o USING picked p
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

ALTER FUNCTION activity.sp_purge_notifications(integer, integer) OWNER TO notifications_owner;
ALTER FUNCTION activity.sp_purge_email_outbox(integer, integer, integer) OWNER TO notifications_owner;
REVOKE ALL ON FUNCTION activity.sp_purge_email_outbox(integer, integer, integer) FROM PUBLIC;

-- sp_purge_notifications accepts 0 days: never the API's. Databases migrated before the
-- retention group had it granted to notifications_api: take it back.
REVOKE ALL ON FUNCTION activity.sp_purge_notifications(integer, integer) FROM PUBLIC, notifications_api;

GRANT EXECUTE ON FUNCTION
    activity.sp_purge_notifications(integer, integer),
    activity.sp_purge_email_outbox(integer, integer, integer)
TO notifications_retention;
