-- Retention: what the nightly `notifications-api purge` (the retention CronJob) may run.
-- Re-applied by the migration runner whenever this file changes (after 0100_functions.sql).
--
-- Privileges: only the NOLOGIN group notifications_retention (0002_roles.sql) executes the
-- purge functions; the API group notifications_api and the e-mail worker group get none of
-- them, and the retention group none of theirs. Every function is SECURITY DEFINER, owned by
-- notifications_owner, with a pinned search_path. Errors: NA422 (DETAIL = argument name).

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

ALTER FUNCTION activity.sp_purge_email_outbox(integer, integer, integer) OWNER TO notifications_owner;
REVOKE ALL ON FUNCTION activity.sp_purge_email_outbox(integer, integer, integer) FROM PUBLIC;

-- sp_purge_notifications (0100_functions.sql) accepts 0 days: never the API's. Databases
-- migrated before the retention group had it granted to notifications_api: take it back.
REVOKE ALL ON FUNCTION activity.sp_purge_notifications(integer, integer) FROM PUBLIC, notifications_api;

GRANT EXECUTE ON FUNCTION
    activity.sp_purge_notifications(integer, integer),
    activity.sp_purge_email_outbox(integer, integer, integer)
TO notifications_retention;
