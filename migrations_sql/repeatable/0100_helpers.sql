-- Stored functions of the Notifications API: the app's only way into the data. One file per
-- concern (repeatable/0100_* .. 0120_*), applied in name order, each re-applied by the migration
-- runner whenever it or an earlier repeatable file changes. This one: what the others share.
--
-- Every function the app calls is SECURITY DEFINER, owned by notifications_owner, with a pinned
-- search_path; EXECUTE is revoked from PUBLIC and granted in 0120_privileges.sql.
--
-- Errors (SQLSTATE, MESSAGE = human text, DETAIL = field path for NA422):
--   NA401 user not found, NA403 user inactive, NA404 notification not found,
--   NA422 invalid argument, NAS09 notification snoozed, NAA09 notification archived (409s).
--
-- Locking discipline (deadlock freedom): every function that changes a user's
-- notifications first locks that user's notification_counters row, then the
-- notification rows. Fan-outs lock users in ascending user_id order.
--
-- Plain SQL functions are checked when created: each file comes after what its SQL
-- functions reference (plpgsql bodies are resolved at call time).

-- ---------------------------------------------------------------------------
-- internal helpers (not granted to the app)
-- ---------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION activity._invalid(p_field text, p_message text)
RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = activity, pg_temp
AS $$
BEGIN
    RAISE EXCEPTION USING ERRCODE = 'NA422', MESSAGE = p_message, DETAIL = p_field;
END
$$;

-- The arguments of the retention functions (0150_retention.sql).
CREATE OR REPLACE FUNCTION activity._check_days(p_field text, p_days integer)
RETURNS void
LANGUAGE plpgsql IMMUTABLE SECURITY DEFINER SET search_path = activity, pg_temp
AS $$
BEGIN
    IF p_days IS NULL OR p_days < 0 THEN
        PERFORM _invalid(p_field, 'must be a non-negative number of days');
    END IF;
END
$$;

CREATE OR REPLACE FUNCTION activity._check_batch_size(p_batch_size integer)
RETURNS void
LANGUAGE plpgsql IMMUTABLE SECURITY DEFINER SET search_path = activity, pg_temp
AS $$
BEGIN
    IF p_batch_size IS NULL OR p_batch_size < 1 OR p_batch_size > 100000 THEN
        PERFORM _invalid('batch_size', 'batch_size must be between 1 and 100000');
    END IF;
END
$$;

CREATE OR REPLACE FUNCTION activity._check_user(p_user_id uuid)
RETURNS void
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = activity, pg_temp
AS $$
DECLARE
    v_active boolean;
BEGIN
    SELECT u.is_active INTO v_active FROM users u WHERE u.user_id = p_user_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'NA401', MESSAGE = 'user not found';
    END IF;
    IF v_active IS NOT TRUE THEN
        RAISE EXCEPTION USING ERRCODE = 'NA403', MESSAGE = 'user inactive';
    END IF;
END
$$;

-- Mark this transaction's counter writes as this release's (0130's trigger marks the counts of
-- any other writer "not computed"). A transaction-local setting: a function SET clause on a
-- custom parameter would need a superuser to create the function.
CREATE OR REPLACE FUNCTION activity._writing_counts()
RETURNS void
LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = activity, pg_temp
AS $$
    SELECT set_config('activity.inbox_v2', 'on', true)
$$;

-- Lock the user's counters row (creating it when missing): the per-user
-- serialisation point of every writer.
CREATE OR REPLACE FUNCTION activity._lock_counters(p_user_id uuid)
RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = activity, pg_temp
AS $$
BEGIN
    PERFORM _writing_counts();
    PERFORM 1 FROM notification_counters c WHERE c.user_id = p_user_id FOR UPDATE;
    IF NOT FOUND THEN
        -- a user without a counters row has no rows: counts computed (zero) as of now
        INSERT INTO notification_counters (user_id, inbox_unread, inbox_unseen, folded_at)
        VALUES (p_user_id, 0, 0, now()) ON CONFLICT (user_id) DO NOTHING;
        PERFORM 1 FROM notification_counters c WHERE c.user_id = p_user_id FOR UPDATE;
    END IF;
END
$$;

-- ---------------------------------------------------------------------------
-- the v2 notification object
-- ---------------------------------------------------------------------------

-- One definition of what a read returns (inlined: plain SQL, no SECURITY DEFINER). "snoozed" is
-- derived: not archived and snoozed_until still ahead. seen_at falls back to read_at for rows the
-- previous release marked read (it had no seen state; reading implies seeing).
CREATE OR REPLACE FUNCTION activity._out(n activity.notifications)
RETURNS activity.inbox_notification
LANGUAGE sql STABLE
AS $$
    SELECT ROW(n.notification_id, n.user_id, n.notification_type, n.title, n.message, n.actor_user_id,
               n.target_type, n.target_id, n.action_url, n.payload, n.priority, n.group_key,
               CASE WHEN n.status <> 'archived' AND n.snoozed_until > now() THEN 'snoozed' ELSE n.status END,
               n.created_at, n.delivered_at, COALESCE(n.seen_at, n.read_at), n.read_at, n.archived_at,
               n.snoozed_until, n.expires_at)::activity.inbox_notification
$$;

-- The previous release's object (its functions' return type).
CREATE OR REPLACE FUNCTION activity._out_v1(n activity.notifications)
RETURNS activity.notification_out
LANGUAGE sql STABLE
AS $$
    SELECT ROW(n.notification_id, n.user_id, n.notification_type, n.title, n.message, n.actor_user_id,
               n.target_type, n.target_id, n.action_url, n.payload, n.priority, n.group_key, n.status,
               n.created_at, n.read_at, n.archived_at, n.expires_at)::activity.notification_out
$$;

-- A notification of the user that is not expired, locked (caller holds the counters row lock).
CREATE OR REPLACE FUNCTION activity._lock_notification(p_user_id uuid, p_notification_id uuid)
RETURNS activity.notifications
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = activity, pg_temp
AS $$
DECLARE
    v_row notifications%ROWTYPE;
BEGIN
    SELECT * INTO v_row FROM notifications n
     WHERE n.user_id = p_user_id AND n.notification_id = p_notification_id
       AND (n.expires_at IS NULL OR n.expires_at > now())
       FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'NA404', MESSAGE = 'notification not found';
    END IF;
    RETURN v_row;
END
$$;

-- The size of a JSON value as compact JSON text (no space after ':' or ','): what API.md's
-- "≤ 16 KiB serialized" means and what the API's schema measures. jsonb's text form adds one space
-- after each key's ':' and after each ',' between members or elements, so those are taken off.
-- (Numbers are counted as PostgreSQL writes them: 1e2 is "100", where Python writes "100.0".)
CREATE OR REPLACE FUNCTION activity._compact_json_octets(p_value jsonb)
RETURNS bigint
LANGUAGE sql IMMUTABLE SECURITY DEFINER SET search_path = activity, pg_temp
AS $$
    SELECT octet_length(p_value::text) - COALESCE((
        SELECT sum(CASE jsonb_typeof(v) WHEN 'object' THEN 2 * (SELECT count(*) FROM jsonb_object_keys(v)) - 1
                                        ELSE jsonb_array_length(v) - 1 END)
          FROM jsonb_path_query(p_value, 'strict $.**') AS v
         WHERE jsonb_typeof(v) IN ('object', 'array') AND v <> '{}'::jsonb AND v <> '[]'::jsonb), 0)
$$;
