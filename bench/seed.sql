-- Benchmark data set (test tooling, not app SQL: the app's SQL lives only in migrations_sql/).
-- Run by bench/run.py as a superuser on a freshly migrated, throwaway database.
-- {users} typical users with {per_user} notifications each, plus one heavy user with
-- {heavy} unread; everything set-based, and the counters computed from the rows.
-- The notifications table's secondary indexes and CHECK constraints are dropped for the
-- load and re-created from their own definitions (pg_indexes, pg_get_constraintdef), so this
-- file never repeats the schema. The CHECKs come back NOT VALID: rows the benchmark writes
-- are checked as usual, the generated rows (which satisfy them) are not re-scanned.
-- bench/run.py runs the sections between the "-- @" markers: @prepare; then the statements of
-- @load in parallel sessions (two cores; the one with {first}/{last} once per half of the users);
-- then the DDL saved in public.bench_ddl (indexes in parallel, then the CHECKs); then @counters.

-- @prepare

INSERT INTO activity.users (user_id, email, display_name)
SELECT md5('bench-user-' || g)::uuid, 'user' || g || '@bench.test', 'Bench user ' || g
  FROM generate_series(1, {users}) g
UNION ALL
SELECT md5('bench-heavy')::uuid, 'heavy@bench.test', 'Heavy user';

CREATE TABLE public.bench_ddl AS
SELECT 'index' AS kind, indexname AS name, indexdef AS ddl FROM pg_indexes
 WHERE schemaname = 'activity' AND tablename = 'notifications' AND indexname <> 'notifications_pkey'
UNION ALL
SELECT 'check', conname, format('ALTER TABLE activity.notifications ADD CONSTRAINT %I %s NOT VALID',
                                conname, pg_get_constraintdef(oid))
  FROM pg_constraint WHERE conrelid = 'activity.notifications'::regclass AND contype = 'c';

DO $$
DECLARE r record;
BEGIN
    FOR r IN SELECT kind, name FROM public.bench_ddl LOOP
        IF r.kind = 'index' THEN
            EXECUTE format('DROP INDEX activity.%I', r.name);
        ELSE
            EXECUTE format('ALTER TABLE activity.notifications DROP CONSTRAINT %I', r.name);
        END IF;
    END LOOP;
END
$$;

-- @load

-- Typical users: 30% unread, 60% read, 10% archived; five types; one every ~13 hours
-- back in time; 2% of the unread ones expire in the future (the expiry bookkeeping runs).
INSERT INTO activity.notifications (user_id, notification_type, title, message, actor_user_id,
                                    target_type, target_id, action_url, payload, priority,
                                    status, created_at, delivered_at, seen_at, read_at, archived_at,
                                    expires_at)
SELECT md5('bench-user-' || u)::uuid,
       (ARRAY['comment', 'mention', 'reaction', 'follow', 'system'])[1 + (u + g) % 5],
       'Ana commented on your post #' || g,
       CASE WHEN g % 3 <> 0 THEN 'Nice route! Looking forward to the next one.' END,
       md5('bench-user-' || (1 + (u * 7 + g) % {users}))::uuid,
       'post', 'post-' || (u * 1000 + g),
       'https://app.example.com/posts/' || (u * 1000 + g) || '#c-' || g,
       jsonb_build_object('comment_id', g, 'post_id', u * 1000 + g),
       CASE WHEN g % 17 = 0 THEN 'high' ELSE 'normal' END,
       s.status,
       ts, ts,
       CASE WHEN s.status <> 'unread' THEN ts + interval '1 hour' END,
       CASE WHEN s.status <> 'unread' THEN ts + interval '1 hour' END,
       CASE WHEN s.status = 'archived' THEN ts + interval '2 hours' END,
       CASE WHEN s.status = 'unread' AND (u + g) % 50 = 0 THEN now() + interval '30 days' END
  FROM generate_series({first}, {last}) u
 CROSS JOIN generate_series(1, {per_user}) g
 CROSS JOIN LATERAL (SELECT now() - (g * 47000 + u % 997) * interval '1 second' AS ts,
                            CASE WHEN g % 10 = 0 THEN 'archived' WHEN g % 10 >= 4 THEN 'read'
                                 ELSE 'unread' END AS status) s;

-- The heavy user: {heavy} unread notifications, one a minute.
INSERT INTO activity.notifications (user_id, notification_type, title, message, payload, status, created_at,
                                    delivered_at)
SELECT md5('bench-heavy')::uuid, (ARRAY['comment', 'mention', 'reaction'])[1 + g % 3],
       'Someone mentioned you #' || g, 'Have a look at this.', jsonb_build_object('n', g),
       'unread', now() - g * interval '1 minute', now() - g * interval '1 minute'
  FROM generate_series(1, {heavy}) g;


-- @counters
-- Counters exactly as the stored functions maintain them (invariants in 0001_schema.sql and
-- 0130_inbox_v2.sql; written as this release's functions write them: activity.inbox_v2 on). No row
-- is snoozed and none has expired yet: the inbox counts are the unread (and never read) rows.
SET activity.inbox_v2 = 'on';
INSERT INTO activity.notification_counters (user_id, unread_count, version, next_expiry, inbox_unread,
                                            inbox_unseen, folded_at, next_change_at)
SELECT user_id, count(*) FILTER (WHERE status = 'unread'), 1,
       min(expires_at) FILTER (WHERE status = 'unread'),
       count(*) FILTER (WHERE status = 'unread'),
       count(*) FILTER (WHERE status <> 'archived' AND seen_at IS NULL AND read_at IS NULL), now(),
       min(expires_at) FILTER (WHERE status <> 'archived')
  FROM activity.notifications GROUP BY user_id;
INSERT INTO activity.notification_type_counters (user_id, notification_type, unread_count, inbox_unread)
SELECT user_id, notification_type, count(*), count(*)
  FROM activity.notifications WHERE status = 'unread' GROUP BY user_id, notification_type;

-- One user in ten has saved settings (the other nine get the defaults).
INSERT INTO activity.notification_settings (user_id, email_enabled, type_preferences,
                                            quiet_hours_start, quiet_hours_end, quiet_hours_timezone)
SELECT md5('bench-user-' || g)::uuid, g % 20 <> 0, '{{"reaction": {{"email": false}}}}',
       '22:00', '07:00', 'Europe/Amsterdam'
  FROM generate_series(10, {users}, 10) g;

DROP TABLE public.bench_ddl;
