-- Changing one notification: mark read / unread, archive / delete (counts: 0101_counts.sql).

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
     WHERE o.user_id = p_user_id AND o.notification_id = p_notification_id AND o.status = 'pending'
       AND COALESCE(cardinality(o.notification_ids), 1) = 1;  -- a digest's retry goes as made
END
$$;
