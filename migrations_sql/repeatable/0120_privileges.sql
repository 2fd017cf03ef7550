-- Ownership and privileges of every function the files before this one define: after them,
-- so that it is re-applied whenever any of them changes (a repeatable file re-applies every
-- later one). sp_purge_notifications: the retention group's (0150_retention.sql).

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
    activity.sp_advance_clocks(integer, integer),
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
    activity.sp_settings_get(uuid),
    activity.sp_settings_update(uuid, jsonb),
    activity.sp_schema_version()
TO notifications_api;
