-- 0001: roles, schema, tables, types and indexes of the Notifications API.
-- Runs as a superuser (the migration runner); every object is handed to the
-- NOLOGIN owner role explicitly. Function definitions live in repeatable/.

-- Roles are cluster-wide: another database of the same cluster may be creating
-- them at this very moment. A losing concurrent CREATE ROLE fails with
-- unique_violation (it waited for the winner), an earlier one with duplicate_object.
DO $$
DECLARE
    r text;
BEGIN
    FOREACH r IN ARRAY ARRAY['notifications_owner', 'notifications_api'] LOOP
        IF to_regrole(r) IS NULL THEN
            BEGIN
                EXECUTE format('CREATE ROLE %I NOLOGIN', r);
            EXCEPTION WHEN duplicate_object OR unique_violation THEN
                NULL;
            END;
        END IF;
    END LOOP;
END
$$;

-- Schema activity is shared with the Auth API: the migration runner's bootstrap creates it
-- (owned by notifications_owner) only when it is absent, and never takes an existing one from
-- its owner (docs/PRODUCTION.md says what the owner grants then). This file once ran
-- `ALTER SCHEMA activity OWNER TO notifications_owner`; that version's checksum is listed in
-- migrate.SUPERSEDED, so databases that applied it upgrade without re-running it.
GRANT USAGE ON SCHEMA activity TO notifications_api;

-- Functions created later by the owner are not executable by PUBLIC. (Default
-- privileges cannot be revoked per schema; this is the owner's global default in
-- this database. Functions created by the superuser are revoked explicitly in
-- repeatable/ too.)
ALTER DEFAULT PRIVILEGES FOR ROLE notifications_owner REVOKE EXECUTE ON FUNCTIONS FROM PUBLIC;

-- The migration bookkeeping belongs to the admin; the owner may read it so that
-- sp_schema_version() can report it to the app without any table access.
GRANT SELECT ON activity.schema_migrations TO notifications_owner;

-- Owned by the platform's Auth API in production; created here only so the
-- service stands alone. We only read it.
CREATE TABLE IF NOT EXISTS activity.users (
    user_id      uuid PRIMARY KEY,
    email        text,
    display_name text,
    is_active    boolean NOT NULL DEFAULT true,
    created_at   timestamptz NOT NULL DEFAULT now()
);
GRANT SELECT ON activity.users TO notifications_owner;

CREATE TYPE activity.notification_out AS (
    notification_id   uuid,
    user_id           uuid,
    notification_type text,
    title             text,
    message           text,
    actor_user_id     uuid,
    target_type       text,
    target_id         text,
    action_url        text,
    payload           jsonb,
    priority          text,
    group_key         text,
    status            text,
    created_at        timestamptz,
    read_at           timestamptz,
    archived_at       timestamptz,
    expires_at        timestamptz
);
ALTER TYPE activity.notification_out OWNER TO notifications_owner;

CREATE TABLE activity.notifications (
    user_id           uuid NOT NULL,
    notification_id   uuid NOT NULL DEFAULT gen_random_uuid(),
    notification_type text NOT NULL,
    title             text NOT NULL,
    message           text,
    actor_user_id     uuid,
    target_type       text,
    target_id         text,
    action_url        text,
    payload           jsonb NOT NULL DEFAULT '{}',
    priority          text NOT NULL DEFAULT 'normal',
    group_key         text,
    status            text NOT NULL DEFAULT 'unread',
    -- clock_timestamp(): the insert instant, not the transaction start, so that
    -- a client's "before" (newest created_at it displayed) is as tight as possible.
    created_at        timestamptz NOT NULL DEFAULT clock_timestamp(),
    read_at           timestamptz,
    archived_at       timestamptz,
    expires_at        timestamptz,
    dedupe_key        text,
    PRIMARY KEY (user_id, notification_id),
    CONSTRAINT notifications_type_format CHECK (notification_type ~ '^[a-z][a-z0-9_.:-]{0,63}$'),
    CONSTRAINT notifications_title_length CHECK (char_length(title) BETWEEN 1 AND 200),
    CONSTRAINT notifications_message_length CHECK (char_length(message) <= 2000),
    CONSTRAINT notifications_target_type_length CHECK (char_length(target_type) <= 100),
    CONSTRAINT notifications_target_id_length CHECK (char_length(target_id) <= 255),
    CONSTRAINT notifications_action_url_format
        CHECK (char_length(action_url) <= 2048 AND action_url ~* '^https?://[^[:space:]]+$'),
    CONSTRAINT notifications_payload_object
        CHECK (jsonb_typeof(payload) = 'object' AND octet_length(payload::text) <= 16384),
    CONSTRAINT notifications_priority_enum CHECK (priority IN ('low', 'normal', 'high', 'urgent')),
    CONSTRAINT notifications_group_key_length CHECK (char_length(group_key) <= 255),
    CONSTRAINT notifications_status_enum CHECK (status IN ('unread', 'read', 'archived')),
    CONSTRAINT notifications_dedupe_key_length CHECK (char_length(dedupe_key) BETWEEN 1 AND 128),
    CONSTRAINT notifications_read_state CHECK (
        (status <> 'read' OR read_at IS NOT NULL) AND (status <> 'unread' OR read_at IS NULL)),
    CONSTRAINT notifications_archived_state CHECK ((status = 'archived') = (archived_at IS NOT NULL))
);
ALTER TABLE activity.notifications OWNER TO notifications_owner;

CREATE UNIQUE INDEX notifications_dedupe_key
    ON activity.notifications (user_id, dedupe_key) WHERE dedupe_key IS NOT NULL;
-- Keyset pages: one index per status filter, so every list call is a range scan
-- that starts at the cursor (cost independent of the page depth).
CREATE INDEX notifications_all_keyset
    ON activity.notifications (user_id, created_at DESC, notification_id DESC);
CREATE INDEX notifications_inbox_keyset
    ON activity.notifications (user_id, created_at DESC, notification_id DESC) WHERE status <> 'archived';
CREATE INDEX notifications_unread_keyset
    ON activity.notifications (user_id, created_at DESC, notification_id DESC) WHERE status = 'unread';
CREATE INDEX notifications_read_keyset
    ON activity.notifications (user_id, created_at DESC, notification_id DESC) WHERE status = 'read';
CREATE INDEX notifications_archived_keyset
    ON activity.notifications (user_id, created_at DESC, notification_id DESC) WHERE status = 'archived';
-- Expiry correction of the unread count: only unread rows that can expire.
CREATE INDEX notifications_unread_expiry
    ON activity.notifications (user_id, expires_at) INCLUDE (notification_type)
    WHERE status = 'unread' AND expires_at IS NOT NULL;
-- Retention (sp_purge_notifications) works across users.
CREATE INDEX notifications_purge_expired
    ON activity.notifications (expires_at) WHERE expires_at IS NOT NULL;
CREATE INDEX notifications_purge_archived
    ON activity.notifications (archived_at) WHERE status = 'archived';

-- O(1) exact unread counts. Invariant: unread_count = count(*) of the user's rows
-- with status = 'unread' (expired or not). next_expiry is a lower bound of the
-- expires_at of those rows (NULL: none can expire), so the expiry correction only
-- runs once something may actually have expired. version bumps on every change.
CREATE TABLE activity.notification_counters (
    user_id      uuid PRIMARY KEY,
    unread_count bigint NOT NULL DEFAULT 0 CHECK (unread_count >= 0),
    version      bigint NOT NULL DEFAULT 0,
    next_expiry  timestamptz
);
ALTER TABLE activity.notification_counters OWNER TO notifications_owner;

CREATE TABLE activity.notification_type_counters (
    user_id           uuid NOT NULL,
    notification_type text NOT NULL,
    unread_count      bigint NOT NULL DEFAULT 0 CHECK (unread_count >= 0),
    PRIMARY KEY (user_id, notification_type)
);
ALTER TABLE activity.notification_type_counters OWNER TO notifications_owner;

CREATE TABLE activity.notification_settings (
    user_id              uuid PRIMARY KEY,
    in_app_enabled       boolean NOT NULL DEFAULT true,
    email_enabled        boolean NOT NULL DEFAULT true,
    push_enabled         boolean NOT NULL DEFAULT true,
    -- only the overrides that are set: {"comment": {"email": false}}
    type_preferences     jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(type_preferences) = 'object'),
    quiet_hours_start    time,
    quiet_hours_end      time,
    quiet_hours_timezone text,
    updated_at           timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT notification_settings_quiet_hours CHECK (
        (quiet_hours_start IS NULL AND quiet_hours_end IS NULL AND quiet_hours_timezone IS NULL)
        OR (quiet_hours_start IS NOT NULL AND quiet_hours_end IS NOT NULL
            AND quiet_hours_timezone IS NOT NULL AND quiet_hours_start <> quiet_hours_end))
);
ALTER TABLE activity.notification_settings OWNER TO notifications_owner;

-- Transactional outbox: rows are queued in the transaction that creates the
-- notification; a delivery worker leases due rows.
CREATE TABLE activity.email_outbox (
    user_id          uuid NOT NULL,
    delivery_id      uuid NOT NULL DEFAULT gen_random_uuid(),
    notification_id  uuid NOT NULL,
    recipient        text NOT NULL,
    subject          text NOT NULL,
    body             text NOT NULL,
    status           text NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'sending', 'sent', 'failed', 'dead', 'cancelled')),
    attempts         integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    available_at     timestamptz NOT NULL DEFAULT now(),
    lease_owner      text,
    lease_expires_at timestamptz,
    last_error       text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    sent_at          timestamptz,
    PRIMARY KEY (user_id, delivery_id)
);
ALTER TABLE activity.email_outbox OWNER TO notifications_owner;
CREATE INDEX email_outbox_due ON activity.email_outbox (status, available_at);
CREATE INDEX email_outbox_notification ON activity.email_outbox (user_id, notification_id);

-- No table is readable or writable by anyone but its owner.
REVOKE ALL ON activity.notifications, activity.notification_counters, activity.notification_type_counters,
    activity.notification_settings, activity.email_outbox, activity.schema_migrations FROM PUBLIC;
