-- Snooze and wake (the clock folds a snooze's end into the counts: 0101_counts.sql).

-- ---------------------------------------------------------------------------
-- 11. / 11b. snooze, wake now
-- ---------------------------------------------------------------------------

-- p_until NULL: wake now. Snoozing makes the row unread and unseen with delivered_at =
-- snoozed_until = until: at until it simply is an inbox row again, delivered then (no write at
-- wake-up time; the counts fold it in by the clock). Waking now: delivered_at = snoozed_until =
-- now. Errors in the API's order: until out of range (NA422), not found (NA404), until after the
-- expiry (NA422), archived (NAA09 notification_archived).
CREATE OR REPLACE FUNCTION activity.sp_inbox_snooze(p_user_id uuid, p_notification_id uuid, p_until timestamptz)
RETURNS SETOF activity.inbox_notification
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = activity, pg_temp
AS $$
DECLARE
    v_at timestamptz;
    v_old notifications%ROWTYPE;
    v_new notifications%ROWTYPE;
BEGIN
    PERFORM _check_user(p_user_id);
    IF p_until IS NOT NULL AND (p_until < now() + interval '60 seconds' OR p_until > now() + interval '90 days') THEN
        PERFORM _invalid('until', 'until must be at least 60 seconds and at most 90 days ahead');
    END IF;
    v_at := _lock_and_fold(p_user_id);
    v_old := _lock_notification(p_user_id, p_notification_id);
    v_new := v_old;
    IF p_until IS NOT NULL THEN
        IF p_until > v_old.expires_at THEN
            PERFORM _invalid('until', 'until must not be after the notification''s expires_at');
        END IF;
        IF v_old.status = 'archived' THEN
            RAISE EXCEPTION USING ERRCODE = 'NAA09', MESSAGE = 'notification is archived',
                DETAIL = 'notification_archived';
        END IF;
        UPDATE notifications n
           SET status = 'unread', read_at = NULL, seen_at = NULL, delivered_at = p_until, snoozed_until = p_until
         WHERE n.user_id = p_user_id AND n.notification_id = p_notification_id
        RETURNING * INTO v_new;
    ELSIF v_old.status <> 'archived' AND v_old.snoozed_until > now() THEN
        UPDATE notifications n SET delivered_at = now(), snoozed_until = now()
         WHERE n.user_id = p_user_id AND n.notification_id = p_notification_id
        RETURNING * INTO v_new;
    END IF;
    IF v_new IS DISTINCT FROM v_old THEN
        PERFORM _apply(ARRAY[_row_delta(v_old, v_new, v_at)], v_at);
    END IF;
    RETURN QUERY SELECT (_out(v_new)).*;
END
$$;
