-- 0002: the retention group. Only notifications_retention may execute the purge functions
-- (repeatable/0150_retention.sql grants them); the app group notifications_api may not: the
-- purge accepts 0 days, so the API login could otherwise delete every user's archived
-- notifications. The retention CronJob connects as its own login, a member of this group
-- (deploy/postgres/roles.sql, `provision_retention_user` in admin.py).
--
-- Roles are cluster-wide and several databases of one cluster may migrate at once: a losing
-- concurrent CREATE ROLE fails with unique_violation, a later one with duplicate_object.
-- A migrator without CREATEROLE cannot create it: the DBA creates it beforehand (roles.sql).
DO $$
BEGIN
    IF to_regrole('notifications_retention') IS NULL THEN
        BEGIN
            CREATE ROLE notifications_retention NOLOGIN;
        EXCEPTION
            WHEN duplicate_object OR unique_violation THEN
                NULL;
            WHEN insufficient_privilege THEN
                RAISE EXCEPTION USING ERRCODE = 'insufficient_privilege',
                    MESSAGE = 'role notifications_retention does not exist and ' || current_user
                              || ' may not create it',
                    HINT = 'create it first as an admin: CREATE ROLE notifications_retention NOLOGIN '
                           || '(see deploy/postgres/roles.sql and docs/PRODUCTION.md)';
        END;
    END IF;
END
$$;

GRANT USAGE ON SCHEMA activity TO notifications_retention;
