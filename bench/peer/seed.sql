-- The peer's data set: the shapes of bench/seed.sql in django-notifications-hq's tables.
-- Run by `peer.py seed` (peersite/management/commands/peer_seed.py) on a freshly migrated,
-- throwaway database, section by section like bench/run.py runs bench/seed.sql:
-- @prepare; the statements of @load in two parallel sessions; the indexes and foreign keys
-- saved in public.peer_ddl (rebuilt from their own catalog definitions, so this file never
-- repeats the package's schema); then @finish.
--
-- Mapping (README.md, "Data"): user n is auth_user id n, username md5('bench-user-' || n)::uuid,
-- the heavy user is id {users} + 1, username md5('bench-heavy')::uuid, so a JWT's sub names the
-- same user in both. The package has no archive: an archived notification is a read one
-- (unread = false). The actor is the same user as the service's actor_user_id (a generic foreign
-- key to auth.user); the heavy user's notifications, which have no actor there, name user 1.
-- Type -> verb, title and message -> description, target, URL and payload -> data (a JSON text),
-- priority high -> level warning; created_at -> timestamp (the same instants).

-- @prepare

INSERT INTO auth_user (id, password, is_superuser, username, first_name, last_name, email, is_staff,
                       is_active, date_joined)
SELECT g, '!', false, md5('bench-user-' || g)::uuid::text, '', 'Bench user ' || g, 'user' || g || '@bench.test',
       false, true, now()
  FROM generate_series(1, {users}) g
UNION ALL
SELECT {users} + 1, '!', false, md5('bench-heavy')::uuid::text, '', 'Heavy user', 'heavy@bench.test',
       false, true, now();
SELECT setval(pg_get_serial_sequence('auth_user', 'id'), {users} + 1);

CREATE TABLE public.peer_ddl AS
SELECT 'index' AS kind, indexname AS name, indexdef AS ddl FROM pg_indexes
 WHERE schemaname = 'public' AND tablename = 'notifications_notification'
   AND indexname <> 'notifications_notification_pkey'
UNION ALL
SELECT 'fkey', conname, format('ALTER TABLE notifications_notification ADD CONSTRAINT %I %s',
                               conname, pg_get_constraintdef(oid))
  FROM pg_constraint WHERE conrelid = 'notifications_notification'::regclass AND contype = 'f';

DO $$
DECLARE r record;
BEGIN
    FOR r IN SELECT kind, name FROM public.peer_ddl ORDER BY kind DESC LOOP
        IF r.kind = 'index' THEN
            EXECUTE format('DROP INDEX %I', r.name);
        ELSE
            EXECUTE format('ALTER TABLE notifications_notification DROP CONSTRAINT %I', r.name);
        END IF;
    END LOOP;
END
$$;

-- @load

-- Typical users: 30% unread, 60% read, 10% archived (read here); five types; one every ~13 hours.
INSERT INTO notifications_notification (level, recipient_id, unread, actor_content_type_id, actor_object_id,
                                        verb, description, timestamp, public, deleted, emailed, data)
SELECT CASE WHEN g % 17 = 0 THEN 'warning' ELSE 'info' END,
       u, g % 10 BETWEEN 1 AND 3,
       (SELECT id FROM django_content_type WHERE app_label = 'auth' AND model = 'user'),
       (1 + (u * 7 + g) % {users})::text,
       (ARRAY['comment', 'mention', 'reaction', 'follow', 'system'])[1 + (u + g) % 5],
       'Ana commented on your post #' || g
           || CASE WHEN g % 3 <> 0 THEN '. Nice route! Looking forward to the next one.' ELSE '' END,
       now() - (g * 47000 + u % 997) * interval '1 second', true, false, false,
       json_build_object('comment_id', g, 'post_id', u * 1000 + g, 'target', 'post-' || (u * 1000 + g),
                         'url', 'https://app.example.com/posts/' || (u * 1000 + g) || '#c-' || g)::text
  FROM generate_series({first}, {last}) u
 CROSS JOIN generate_series(1, {per_user}) g;

-- The heavy user: {heavy} unread notifications, one a minute.
INSERT INTO notifications_notification (level, recipient_id, unread, actor_content_type_id, actor_object_id,
                                        verb, description, timestamp, public, deleted, emailed, data)
SELECT 'info', {users} + 1, true, (SELECT id FROM django_content_type WHERE app_label = 'auth' AND model = 'user'),
       '1', (ARRAY['comment', 'mention', 'reaction'])[1 + g % 3],
       'Someone mentioned you #' || g || '. Have a look at this.', now() - g * interval '1 minute',
       true, false, false, json_build_object('n', g)::text
  FROM generate_series(1, {heavy}) g;


-- @finish

DROP TABLE public.peer_ddl;
