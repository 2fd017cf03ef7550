-- Roles and database privileges of the Notifications API: what the DBA sets up before the first
-- migration. Idempotent. Run as a superuser (or a CREATEROLE admin such as rds_superuser):
--
--   psql "$ADMIN_DATABASE_URL" -v dbname=activity_platform -f deploy/postgres/roles.sql
--
-- Optional variables: -v app_user=api_user -v migrator=notifications_migrator
-- (and, for scripted set-ups only, -v api_password=... -v migrator_password=...; otherwise set the
-- passwords with psql's \password, which sends only a SCRAM verifier).
--
--   notifications_owner     NOLOGIN; owns schema activity, its tables and functions
--   notifications_api       NOLOGIN group; EXECUTE on the stored functions, nothing else
--   notifications_migrator  LOGIN; member of notifications_owner; runs `notifications-api migrate`
--   api_user                LOGIN; member of notifications_api; what the app connects as
\set ON_ERROR_STOP on
\if :{?app_user}
\else
\set app_user api_user
\endif
\if :{?migrator}
\else
\set migrator notifications_migrator
\endif

SELECT 'CREATE ROLE notifications_owner NOLOGIN' WHERE to_regrole('notifications_owner') IS NULL
\gexec
SELECT 'CREATE ROLE notifications_api NOLOGIN' WHERE to_regrole('notifications_api') IS NULL
\gexec
SELECT format('CREATE ROLE %I LOGIN', :'migrator') WHERE to_regrole(:'migrator') IS NULL
\gexec
SELECT format('CREATE ROLE %I LOGIN', :'app_user') WHERE to_regrole(:'app_user') IS NULL
\gexec

-- The app user is a plain login: no attribute that would let it around the grants. (Only issued
-- when needed: a CREATEROLE admin that is not a superuser may not name these attributes at all.)
SELECT format('ALTER ROLE %I NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS', rolname)
  FROM pg_roles
 WHERE rolname = :'app_user' AND (rolsuper OR rolcreatedb OR rolcreaterole OR rolreplication OR rolbypassrls)
\gexec
GRANT notifications_owner TO :"migrator";
GRANT notifications_api TO :"app_user";

-- Nobody but these two may connect; only the migrator creates objects (schema activity).
REVOKE ALL ON DATABASE :"dbname" FROM PUBLIC;
GRANT CONNECT, CREATE ON DATABASE :"dbname" TO :"migrator";
GRANT CONNECT ON DATABASE :"dbname" TO :"app_user";

\if :{?migrator_password}
ALTER ROLE :"migrator" PASSWORD :'migrator_password';
\endif
\if :{?api_password}
ALTER ROLE :"app_user" PASSWORD :'api_password';
\endif
