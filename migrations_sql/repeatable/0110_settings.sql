-- A user's notification settings, and the quiet hours they set (used by 0109_create.sql).

-- ---------------------------------------------------------------------------
-- 11. quiet hours
-- ---------------------------------------------------------------------------

-- NULL when p_at is outside the quiet window [start, end) of local time in p_tz,
-- else the instant the window ends. Windows may span midnight (22:00-07:00).
CREATE OR REPLACE FUNCTION activity.quiet_hours_end(p_start time, p_end time, p_tz text, p_at timestamptz)
RETURNS timestamptz
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = activity, pg_temp
AS $$
DECLARE
    v_local timestamp;
    v_time time;
    v_day date;
    v_end timestamptz;
BEGIN
    IF p_start IS NULL OR p_end IS NULL OR p_tz IS NULL OR p_at IS NULL OR p_start = p_end THEN
        RETURN NULL;
    END IF;
    v_local := p_at AT TIME ZONE p_tz;
    v_time := v_local::time;
    v_day := v_local::date;
    IF p_start < p_end THEN
        IF v_time >= p_start AND v_time < p_end THEN
            v_end := (v_day + p_end) AT TIME ZONE p_tz;
        END IF;
    ELSIF v_time >= p_start THEN
        v_end := (v_day + 1 + p_end) AT TIME ZONE p_tz;
    ELSIF v_time < p_end THEN
        v_end := (v_day + p_end) AT TIME ZONE p_tz;
    END IF;
    -- a DST jump can put the local end before p_at: the window is then over
    IF v_end <= p_at THEN
        RETURN NULL;
    END IF;
    RETURN v_end;
END
$$;

-- ---------------------------------------------------------------------------
-- the daily e-mail digest's slot (API.md "E-mail digests"; used by 0109_create.sql)
-- ---------------------------------------------------------------------------

-- The instant at which local time in p_tz reads p_day + p_time. A local time that does not exist
-- that day (a DST gap: 02:30 when clocks jump from 02:00 to 03:00) is the next minute that does
-- (03:00); one that happens twice (clocks fall back) is the first of the two.
CREATE OR REPLACE FUNCTION activity._local_instant(p_day date, p_time time, p_tz text)
RETURNS timestamptz
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = activity, pg_temp
AS $$
DECLARE
    v_local timestamp := p_day + p_time;
    v_at timestamptz := (p_day + p_time) AT TIME ZONE p_tz;
    v_earlier timestamptz;
BEGIN
    IF (v_at AT TIME ZONE p_tz) = v_local THEN
        -- the earliest instant that reads this (a fall-back hour reads twice; shifts are at most 3 h)
        SELECT min(c) INTO v_earlier
          FROM generate_series(1, 12) AS k, LATERAL (SELECT v_at - k * interval '15 minutes' AS c) x
         WHERE (x.c AT TIME ZONE p_tz) = v_local;
        RETURN COALESCE(v_earlier, v_at);
    END IF;
    FOR m IN 1..180 LOOP  -- in a gap: the next minute that exists
        v_at := (v_local + m * interval '1 minute') AT TIME ZONE p_tz;
        IF (v_at AT TIME ZONE p_tz) = v_local + m * interval '1 minute' THEN
            RETURN v_at;
        END IF;
    END LOOP;
    RETURN (v_local + interval '3 hours') AT TIME ZONE p_tz;
END
$$;

-- A daily digest's next slot after p_after: the first day's p_time in p_tz that is later.
CREATE OR REPLACE FUNCTION activity.email_daily_slot(p_time time, p_tz text, p_after timestamptz)
RETURNS timestamptz
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = activity, pg_temp
AS $$
DECLARE
    v_day date;
    v_slot timestamptz;
BEGIN
    IF p_time IS NULL OR p_tz IS NULL OR p_after IS NULL THEN
        RETURN NULL;
    END IF;
    v_day := (p_after AT TIME ZONE p_tz)::date;
    FOR i IN -1..2 LOOP
        v_slot := _local_instant(v_day + i, p_time, p_tz);
        IF v_slot > p_after THEN
            RETURN v_slot;
        END IF;
    END LOOP;
    RETURN v_slot;
END
$$;

-- ---------------------------------------------------------------------------
-- 8. / 9. settings
-- ---------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION activity._settings_out(p_user_id uuid)
RETURNS TABLE(in_app_enabled boolean, email_enabled boolean, push_enabled boolean,
              type_preferences jsonb, quiet_hours jsonb, updated_at timestamptz)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = activity, pg_temp
AS $$
    SELECT COALESCE(s.in_app_enabled, true), COALESCE(s.email_enabled, true), COALESCE(s.push_enabled, true),
           COALESCE(s.type_preferences, '{}'::jsonb),
           CASE WHEN s.quiet_hours_start IS NOT NULL THEN
               jsonb_build_object('start', to_char(s.quiet_hours_start, 'HH24:MI'),
                                  'end', to_char(s.quiet_hours_end, 'HH24:MI'),
                                  'timezone', s.quiet_hours_timezone)
           END,
           s.updated_at
      FROM (SELECT 1) AS one
      LEFT JOIN activity.notification_settings s ON s.user_id = p_user_id
$$;

-- The user's email_digest as the API shows it (issue 25). (plpgsql: its body is checked when it
-- runs, so the file also loads over a schema without the columns, e.g. a rollback's.)
CREATE OR REPLACE FUNCTION activity._settings_email_digest(p_user_id uuid)
RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = activity, pg_temp
AS $$
BEGIN
    RETURN (SELECT jsonb_build_object('frequency', COALESCE(s.email_digest_frequency, 'batched'),
                                      'at', to_char(s.email_digest_at, 'HH24:MI'),
                                      'timezone', s.email_digest_timezone)
              FROM (SELECT 1) AS one
              LEFT JOIN notification_settings s ON s.user_id = p_user_id);
END
$$;

-- The settings with email_digest (issue 25); sp_get_notification_settings is the previous
-- release's shape (its app reads six columns), kept for a rolling deploy.
CREATE OR REPLACE FUNCTION activity.sp_settings_get(p_user_id uuid)
RETURNS TABLE(in_app_enabled boolean, email_enabled boolean, push_enabled boolean,
              type_preferences jsonb, quiet_hours jsonb, updated_at timestamptz, email_digest jsonb)
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = activity, pg_temp
AS $$
BEGIN
    PERFORM _check_user(p_user_id);
    RETURN QUERY SELECT o.*, _settings_email_digest(p_user_id) FROM _settings_out(p_user_id) o;
END
$$;

CREATE OR REPLACE FUNCTION activity.sp_get_notification_settings(p_user_id uuid)
RETURNS TABLE(in_app_enabled boolean, email_enabled boolean, push_enabled boolean,
              type_preferences jsonb, quiet_hours jsonb, updated_at timestamptz)
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = activity, pg_temp
AS $$
BEGIN
    PERFORM _check_user(p_user_id);
    RETURN QUERY SELECT * FROM _settings_out(p_user_id);
END
$$;

-- An IANA zone name known to this server. Name shape first (rejects POSIX
-- specs such as 'XYZ+3'), then PostgreSQL must accept it.
CREATE OR REPLACE FUNCTION activity._valid_timezone(p_tz text)
RETURNS boolean
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = activity, pg_temp
AS $$
BEGIN
    IF p_tz IS NULL OR p_tz !~ '^[A-Za-z][A-Za-z0-9_+-]*(/[A-Za-z0-9_+-]+)*$' OR char_length(p_tz) > 64 THEN
        RETURN false;
    END IF;
    IF strpos(p_tz, '/') = 0 AND p_tz NOT IN ('UTC', 'GMT') THEN
        -- rare single-word names (EST5EDT, Japan): look them up in the tz database
        RETURN EXISTS (SELECT 1 FROM pg_timezone_names WHERE name = p_tz);
    END IF;
    PERFORM now() AT TIME ZONE p_tz;
    RETURN true;
EXCEPTION WHEN invalid_parameter_value THEN
    RETURN false;
END
$$;

-- PATCH semantics (API.md §9): only keys present change; "quiet_hours": null
-- turns quiet hours off; in type_preferences a type set to null drops its
-- overrides, a type's channel map merges channel by channel, and a channel set
-- to null drops that channel's override (an override map left empty is removed).
-- email_digest (API.md "E-mail digests"): replaced whole; null restores the default (batched).
-- Changing it moves the user's queued, not yet composed, non-urgent e-mail rows to the new
-- schedule (daily: the next slot; batched: the delay counts from their creation).
CREATE OR REPLACE FUNCTION activity.sp_settings_update(p_user_id uuid, p_patch jsonb)
RETURNS TABLE(in_app_enabled boolean, email_enabled boolean, push_enabled boolean,
              type_preferences jsonb, quiet_hours jsonb, updated_at timestamptz, email_digest jsonb)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = activity, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    v_key text;
    v_value jsonb;
    v_channel text;
    v_flag jsonb;
    v_tp jsonb;
    v_qh jsonb;
    v_prefs jsonb;
    v_merged jsonb;
    v_start time;
    v_end time;
    v_tz text;
    v_digest jsonb;
    v_frequency text := 'batched';
    v_digest_at time;
    v_digest_tz text;
BEGIN
    PERFORM _check_user(p_user_id);
    IF p_patch IS NULL OR jsonb_typeof(p_patch) <> 'object' THEN
        PERFORM _invalid('_schema', 'settings patch must be a JSON object');
    END IF;
    FOR v_key IN SELECT jsonb_object_keys(p_patch) LOOP
        IF v_key NOT IN ('in_app_enabled', 'email_enabled', 'push_enabled', 'type_preferences', 'quiet_hours',
                         'email_digest') THEN
            PERFORM _invalid(v_key, 'unknown field');
        END IF;
    END LOOP;
    FOREACH v_key IN ARRAY ARRAY['in_app_enabled', 'email_enabled', 'push_enabled'] LOOP
        IF p_patch ? v_key AND jsonb_typeof(p_patch -> v_key) <> 'boolean' THEN
            PERFORM _invalid(v_key, 'must be a boolean');
        END IF;
    END LOOP;

    IF p_patch ? 'type_preferences' THEN
        v_tp := p_patch -> 'type_preferences';
        IF jsonb_typeof(v_tp) <> 'object' THEN
            PERFORM _invalid('type_preferences', 'type_preferences must be an object');
        END IF;
        IF (SELECT count(*) FROM jsonb_object_keys(v_tp)) > 200 THEN
            PERFORM _invalid('type_preferences', 'at most 200 notification types');
        END IF;
        FOR v_key, v_value IN SELECT e.key, e.value FROM jsonb_each(v_tp) AS e LOOP
            IF v_key !~ '^[a-z][a-z0-9_.:-]{0,63}$' THEN
                PERFORM _invalid('type_preferences.' || v_key, 'not a valid notification type');
            END IF;
            CONTINUE WHEN jsonb_typeof(v_value) = 'null';
            IF jsonb_typeof(v_value) <> 'object' THEN
                PERFORM _invalid('type_preferences.' || v_key, 'must be an object of channel: boolean');
            END IF;
            FOR v_channel, v_flag IN SELECT e.key, e.value FROM jsonb_each(v_value) AS e LOOP
                IF v_channel NOT IN ('in_app', 'email', 'push') THEN
                    PERFORM _invalid('type_preferences.' || v_key || '.' || v_channel, 'unknown channel');
                END IF;
                IF jsonb_typeof(v_flag) NOT IN ('boolean', 'null') THEN
                    PERFORM _invalid('type_preferences.' || v_key || '.' || v_channel, 'must be a boolean');
                END IF;
            END LOOP;
        END LOOP;
    END IF;

    IF p_patch ? 'quiet_hours' THEN
        v_qh := p_patch -> 'quiet_hours';
        IF jsonb_typeof(v_qh) = 'object' THEN
            FOR v_key IN SELECT jsonb_object_keys(v_qh) LOOP
                IF v_key NOT IN ('start', 'end', 'timezone') THEN
                    PERFORM _invalid('quiet_hours.' || v_key, 'unknown field');
                END IF;
            END LOOP;
            FOREACH v_key IN ARRAY ARRAY['start', 'end'] LOOP
                IF jsonb_typeof(v_qh -> v_key) IS DISTINCT FROM 'string'
                   OR (v_qh ->> v_key) !~ '^([01][0-9]|2[0-3]):[0-5][0-9]$' THEN
                    PERFORM _invalid('quiet_hours.' || v_key, 'must be a time HH:MM');
                END IF;
            END LOOP;
            IF jsonb_typeof(v_qh -> 'timezone') IS DISTINCT FROM 'string'
               OR NOT _valid_timezone(v_qh ->> 'timezone') THEN
                PERFORM _invalid('quiet_hours.timezone', 'must be an IANA time zone name');
            END IF;
            v_start := (v_qh ->> 'start')::time;
            v_end := (v_qh ->> 'end')::time;
            v_tz := v_qh ->> 'timezone';
            IF v_start = v_end THEN
                PERFORM _invalid('quiet_hours.end', 'end must differ from start');
            END IF;
        ELSIF jsonb_typeof(v_qh) <> 'null' THEN
            PERFORM _invalid('quiet_hours', 'quiet_hours must be an object or null');
        END IF;
    END IF;

    IF p_patch ? 'email_digest' THEN
        v_digest := p_patch -> 'email_digest';
        IF jsonb_typeof(v_digest) = 'object' THEN
            FOR v_key IN SELECT jsonb_object_keys(v_digest) LOOP
                IF v_key NOT IN ('frequency', 'at', 'timezone') THEN
                    PERFORM _invalid('email_digest.' || v_key, 'unknown field');
                END IF;
            END LOOP;
            v_frequency := v_digest ->> 'frequency';
            IF jsonb_typeof(v_digest -> 'frequency') IS DISTINCT FROM 'string'
               OR v_frequency NOT IN ('batched', 'daily') THEN
                PERFORM _invalid('email_digest.frequency', 'must be batched or daily');
            END IF;
            IF v_frequency = 'daily' THEN
                IF jsonb_typeof(v_digest -> 'at') IS DISTINCT FROM 'string'
                   OR (v_digest ->> 'at') !~ '^([01][0-9]|2[0-3]):[0-5][0-9]$' THEN
                    PERFORM _invalid('email_digest.at', 'must be a time HH:MM');
                END IF;
                IF jsonb_typeof(v_digest -> 'timezone') IS DISTINCT FROM 'string'
                   OR NOT _valid_timezone(v_digest ->> 'timezone') THEN
                    PERFORM _invalid('email_digest.timezone', 'must be an IANA time zone name');
                END IF;
                v_digest_at := (v_digest ->> 'at')::time;
                v_digest_tz := v_digest ->> 'timezone';
            ELSE
                FOREACH v_key IN ARRAY ARRAY['at', 'timezone'] LOOP
                    IF jsonb_typeof(v_digest -> v_key) IS DISTINCT FROM 'null' AND v_digest ? v_key THEN
                        PERFORM _invalid('email_digest.' || v_key, 'must be null with frequency batched');
                    END IF;
                END LOOP;
            END IF;
        ELSIF jsonb_typeof(v_digest) <> 'null' THEN
            PERFORM _invalid('email_digest', 'email_digest must be an object or null');
        END IF;
    END IF;

    -- row lock: concurrent patches apply one after the other, none is lost
    INSERT INTO notification_settings (user_id) VALUES (p_user_id) ON CONFLICT (user_id) DO NOTHING;
    SELECT s.type_preferences INTO v_prefs FROM notification_settings s WHERE s.user_id = p_user_id FOR UPDATE;

    IF v_tp IS NOT NULL THEN
        FOR v_key, v_value IN SELECT e.key, e.value FROM jsonb_each(v_tp) AS e LOOP
            IF jsonb_typeof(v_value) = 'null' THEN
                v_prefs := v_prefs - v_key;
            ELSE
                v_merged := jsonb_strip_nulls(COALESCE(v_prefs -> v_key, '{}'::jsonb) || v_value);
                IF v_merged = '{}'::jsonb THEN
                    v_prefs := v_prefs - v_key;
                ELSE
                    v_prefs := v_prefs || jsonb_build_object(v_key, v_merged);
                END IF;
            END IF;
        END LOOP;
        IF (SELECT count(*) FROM jsonb_object_keys(v_prefs)) > 200 THEN
            PERFORM _invalid('type_preferences', 'at most 200 notification types');
        END IF;
    END IF;

    UPDATE notification_settings s
       SET in_app_enabled = COALESCE((p_patch ->> 'in_app_enabled')::boolean, s.in_app_enabled),
           email_enabled = COALESCE((p_patch ->> 'email_enabled')::boolean, s.email_enabled),
           push_enabled = COALESCE((p_patch ->> 'push_enabled')::boolean, s.push_enabled),
           type_preferences = v_prefs,
           quiet_hours_start = CASE WHEN p_patch ? 'quiet_hours' THEN v_start ELSE s.quiet_hours_start END,
           quiet_hours_end = CASE WHEN p_patch ? 'quiet_hours' THEN v_end ELSE s.quiet_hours_end END,
           quiet_hours_timezone = CASE WHEN p_patch ? 'quiet_hours' THEN v_tz ELSE s.quiet_hours_timezone END,
           email_digest_frequency = CASE WHEN p_patch ? 'email_digest' THEN v_frequency
                                         ELSE s.email_digest_frequency END,
           email_digest_at = CASE WHEN p_patch ? 'email_digest' THEN v_digest_at ELSE s.email_digest_at END,
           email_digest_timezone = CASE WHEN p_patch ? 'email_digest' THEN v_digest_tz
                                        ELSE s.email_digest_timezone END,
           updated_at = now()
     WHERE s.user_id = p_user_id;

    IF p_patch ? 'email_digest' THEN  -- only this user's unfinished rows (email_outbox_user_open)
        UPDATE email_outbox o
           SET kind = CASE WHEN v_frequency = 'daily' THEN 'daily' ELSE 'batched' END,
               available_at = CASE WHEN v_frequency = 'daily' THEN email_daily_slot(v_digest_at, v_digest_tz, now())
                                   ELSE o.created_at END
         WHERE o.user_id = p_user_id AND o.status = 'pending' AND o.notification_ids IS NULL
           AND o.kind <> 'urgent';
    END IF;

    RETURN QUERY SELECT o.*, _settings_email_digest(p_user_id) FROM _settings_out(p_user_id) o;
END
$$;

-- The previous release's shape (six columns), kept for a rolling deploy.
CREATE OR REPLACE FUNCTION activity.sp_update_notification_settings(p_user_id uuid, p_patch jsonb)
RETURNS TABLE(in_app_enabled boolean, email_enabled boolean, push_enabled boolean,
              type_preferences jsonb, quiet_hours jsonb, updated_at timestamptz)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = activity, pg_temp
AS $$
BEGIN
    RETURN QUERY SELECT u.in_app_enabled, u.email_enabled, u.push_enabled, u.type_preferences, u.quiet_hours,
                        u.updated_at
                   FROM sp_settings_update(p_user_id, p_patch) u;
END
$$;
