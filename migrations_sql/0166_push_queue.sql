-- 0166: the push queue (issue 24's last goal: the create's cost with push on within 10 % of push off;
-- docs/PERFORMANCE.md "Web Push", docs/PUSH.md "Delivery rules"). The functions are in
-- repeatable/0210_push.sql.
--
-- The create (sp_inbox_create -> _queue_push) no longer fans out to browsers: it inserts ONE row per
-- call that created notifications, holding the created (user, notification) pairs. The push worker's
-- claim expands due rows (sp_expand_push_queue) into push_outbox, one row per subscription, applying
-- the settings and quiet hours at expansion, and deletes them in the same transaction (FOR UPDATE SKIP
-- LOCKED: two workers never expand a row twice; a crash rolls back and loses nothing).
--
-- Not keyed by user_id: one row holds up to 1 000 users, so it cannot be distributed by user. It is
-- named in docs/SCALING.md ("Tables not distributed by user_id"): a sharded deployment keeps the row on
-- the node that ran the create, i.e. one queue per shard group, expanded there (each per-shard
-- create's users are that shard's).
-- The previous release neither writes nor reads it (its _queue_push writes push_outbox directly).

CREATE TABLE activity.push_queue (
    queue_id          uuid NOT NULL DEFAULT gen_random_uuid() PRIMARY KEY,
    user_ids          uuid[] NOT NULL,
    notification_ids  uuid[] NOT NULL,
    -- how many users: the expansion's bound and the queue gauges read it without fetching the arrays
    -- (a 1 000-user row's arrays are ~32 KB, stored out of line)
    user_count        integer NOT NULL,
    notification_type text NOT NULL,  -- one create: one type and one priority for all its rows
    priority          text NOT NULL,
    created_at        timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT push_queue_pairs CHECK (user_count BETWEEN 1 AND 1000 AND cardinality(user_ids) = user_count
                                       AND cardinality(notification_ids) = user_count)
);
ALTER TABLE activity.push_queue OWNER TO notifications_owner;
-- The expansion takes the oldest rows first.
CREATE INDEX push_queue_created ON activity.push_queue (created_at);
-- A queue: every row is inserted once and deleted within about a second. Vacuum it by a fixed number
-- of dead rows rather than a share of a table that is nearly always empty, so the expansion's index
-- scan does not wade through dead entries.
ALTER TABLE activity.push_queue SET (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 1000,
                                     autovacuum_vacuum_insert_scale_factor = 0,
                                     autovacuum_vacuum_insert_threshold = 1000);

REVOKE ALL ON activity.push_queue FROM PUBLIC;
