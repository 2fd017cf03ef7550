-- 0002: the NOLOGIN groups of the jobs besides the API, created here for every database migrated
-- from now on (one place for both):
--   notifications_worker     the e-mail delivery worker (repeatable/0200_email.sql grants to it)
--   notifications_retention  the retention job: only it may execute the purge functions
--                            (repeatable/0150_retention.sql). The app group notifications_api may
--                            not: the purge accepts 0 days, so the API login could otherwise delete
--                            every user's archived notifications.
-- Their logins are members (deploy/postgres/roles.sql; admin.provision_worker_user and
-- provision_retention_user).
--
-- Roles are cluster-wide and several databases of one cluster may migrate at once: a losing
-- concurrent CREATE ROLE fails with unique_violation, a later one with duplicate_object.
-- A migrator without CREATEROLE cannot create them: the DBA creates them beforehand (roles.sql).
DO $$
DECLARE
    r text;
BEGIN
    FOREACH r IN ARRAY ARRAY['notifications_worker', 'notifications_retention'] LOOP
        IF to_regrole(r) IS NULL THEN
            BEGIN
                EXECUTE format('CREATE ROLE %I NOLOGIN', r);
            EXCEPTION
                WHEN duplicate_object OR unique_violation THEN
                    NULL;
                WHEN insufficient_privilege THEN
                    RAISE EXCEPTION USING ERRCODE = 'insufficient_privilege',
                        MESSAGE = format('role %s does not exist and %s may not create it', r, current_user),
                        HINT = format('create it first as an admin: CREATE ROLE %s NOLOGIN '
                                      '(see deploy/postgres/roles.sql and docs/PRODUCTION.md)', r);
            END;
        END IF;
    END LOOP;
END
$$;

GRANT USAGE ON SCHEMA activity TO notifications_worker, notifications_retention;
