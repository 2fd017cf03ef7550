-- 0165: Web Push (issue 24; API.md "Delivery channels (v3)"): the browsers' subscriptions, the push
-- outbox, and the NOLOGIN group of the push worker. The functions are in repeatable/0210_push.sql.
--
-- Both tables are keyed by user_id first (docs/SCALING.md). An endpoint belongs to one user at a
-- time; that is enforced by sp_push_subscribe (an advisory lock on the endpoint, then a lookup
-- through push_subscriptions_endpoint), not by a unique index, which would have to lead with the
-- endpoint and so could not be distributed by user_id.

DO $$
BEGIN
    IF to_regrole('notifications_push_worker') IS NULL THEN
        BEGIN
            CREATE ROLE notifications_push_worker NOLOGIN;
        EXCEPTION
            WHEN duplicate_object OR unique_violation THEN
                NULL;
            WHEN insufficient_privilege THEN
                RAISE EXCEPTION USING ERRCODE = 'insufficient_privilege',
                    MESSAGE = format('role notifications_push_worker does not exist and %s may not create it',
                                     current_user),
                    HINT = 'create it first as an admin: CREATE ROLE notifications_push_worker NOLOGIN '
                           '(see deploy/postgres/roles.sql and docs/PRODUCTION.md)';
        END;
    END IF;
END
$$;

GRANT USAGE ON SCHEMA activity TO notifications_push_worker;

-- One row per browser (PushSubscription). endpoint, p256dh and auth are capabilities: whoever
-- holds them can push to that browser; no function returns them except the worker's claim.
CREATE TABLE activity.push_subscriptions (
    user_id              uuid NOT NULL,
    subscription_id      uuid NOT NULL DEFAULT gen_random_uuid(),
    endpoint             text NOT NULL CHECK (char_length(endpoint) BETWEEN 1 AND 2048),
    p256dh               bytea NOT NULL CHECK (octet_length(p256dh) = 65),
    auth                 bytea NOT NULL CHECK (octet_length(auth) = 16),
    user_agent           text CHECK (char_length(user_agent) <= 200),
    expiration_time      timestamptz,
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now(),
    last_success_at      timestamptz,
    consecutive_failures integer NOT NULL DEFAULT 0 CHECK (consecutive_failures >= 0),
    PRIMARY KEY (user_id, subscription_id)
);
ALTER TABLE activity.push_subscriptions OWNER TO notifications_owner;
CREATE INDEX push_subscriptions_endpoint ON activity.push_subscriptions (endpoint);

-- One row per (notification, subscription). A subscription that goes takes its pending deliveries
-- with it (the functions that delete subscriptions delete them, and the claim cancels any whose
-- subscription is gone): a moved browser never gets the previous user's pending pushes. No foreign
-- key and no (user_id, subscription_id) index: queueing is on the create's path, and each per-row
-- RI check and index entry costs the create (docs/PERFORMANCE.md "Web Push"); the rare deletes by
-- subscription read the user's rows through the primary key.
-- Life of a row: pending -> sending -> sent | pending (retry) | failed; pending -> cancelled (the
-- notification was seen, read, archived, snoozed, deleted, expired or retracted before it went).
CREATE TABLE activity.push_outbox (
    user_id          uuid NOT NULL,
    delivery_id      uuid NOT NULL DEFAULT gen_random_uuid(),
    notification_id  uuid NOT NULL,
    subscription_id  uuid NOT NULL,
    status           text NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'sending', 'sent', 'failed', 'cancelled')),
    attempts         integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    available_at     timestamptz NOT NULL DEFAULT now(),
    lease_owner      text,
    lease_expires_at timestamptz,
    last_error       text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    finished_at      timestamptz,
    PRIMARY KEY (user_id, delivery_id)
);
ALTER TABLE activity.push_outbox OWNER TO notifications_owner;
-- Partial indexes: the claim reads only due and leased rows, so its cost does not grow with the
-- history of sent/failed/cancelled rows (the retention purge reads those through push_outbox_finished).
CREATE INDEX push_outbox_due ON activity.push_outbox (available_at) WHERE status = 'pending';
CREATE INDEX push_outbox_leased ON activity.push_outbox (lease_expires_at) WHERE status = 'sending';
CREATE INDEX push_outbox_finished ON activity.push_outbox (finished_at)
    WHERE status IN ('sent', 'failed', 'cancelled');

REVOKE ALL ON activity.push_subscriptions, activity.push_outbox FROM PUBLIC;
