-- Roles and database privileges of the Notifications API: what the DBA sets up before the first
-- migration. Idempotent. Run as a superuser (or a CREATEROLE admin such as rds_superuser):
--
--   psql "$ADMIN_DATABASE_URL" -v dbname=activity_platform -f deploy/postgres/roles.sql
--
-- Optional variables: -v app_user=api_user -v migrator=notifications_migrator -v worker=email_worker
-- -v push_worker=push_worker -v retention=retention_user (and, for scripted set-ups only,
-- -v api_password=... -v migrator_password=... -v worker_password=... -v push_worker_password=...
-- -v retention_password=...; otherwise set the
-- passwords with psql's \password, which sends only a SCRAM verifier).
--
--   notifications_owner     NOLOGIN; owns schema activity, its tables and functions
--   notifications_api       NOLOGIN group; EXECUTE on the API's stored functions, nothing else
--   notifications_worker    NOLOGIN group; EXECUTE on the e-mail outbox functions, nothing else
--   notifications_push_worker NOLOGIN group; EXECUTE on the Web Push outbox functions, nothing else
--   notifications_retention NOLOGIN group; EXECUTE on the purge functions, nothing else
--   notifications_migrator  LOGIN; member of notifications_owner; runs `notifications-api migrate`
--   api_user                LOGIN; member of notifications_api; what the app connects as
--   email_worker            LOGIN; member of notifications_worker; what `deliver-emails` connects as
--   push_worker             LOGIN; member of notifications_push_worker; what `deliver-push` connects as
--   retention_user          LOGIN; member of notifications_retention; what `purge` (the CronJob) connects as
--
-- The groups must exist before the first migration: the migrator has no CREATEROLE, and
-- the migrations grant to notifications_worker, notifications_push_worker and notifications_retention.
--
-- Session settings live on the logins (PgBouncer refuses them as startup options): TimeZone UTC,
-- DateStyle ISO (the app's timestamp loader relies on both) and statement_timeout, which must equal
-- DB_STATEMENT_TIMEOUT_MS (5000 by default; `preflight` compares them). Change it with
-- ALTER ROLE api_user IN DATABASE activity_platform SET statement_timeout = '...'.
\set ON_ERROR_STOP on
\if :{?app_user}
\else
\set app_user api_user
\endif
\if :{?migrator}
\else
\set migrator notifications_migrator
\endif
\if :{?worker}
\else
\set worker email_worker
\endif
\if :{?retention}
\else
\set retention retention_user
\endif
\if :{?push_worker}
\else
\set push_worker push_worker
\endif

SELECT 'CREATE ROLE notifications_owner NOLOGIN' WHERE to_regrole('notifications_owner') IS NULL
\gexec
SELECT 'CREATE ROLE notifications_api NOLOGIN' WHERE to_regrole('notifications_api') IS NULL
\gexec
SELECT 'CREATE ROLE notifications_worker NOLOGIN' WHERE to_regrole('notifications_worker') IS NULL
\gexec
SELECT 'CREATE ROLE notifications_retention NOLOGIN' WHERE to_regrole('notifications_retention') IS NULL
\gexec
SELECT 'CREATE ROLE notifications_push_worker NOLOGIN' WHERE to_regrole('notifications_push_worker') IS NULL
\gexec
SELECT format('CREATE ROLE %I LOGIN', :'migrator') WHERE to_regrole(:'migrator') IS NULL
\gexec
SELECT format('CREATE ROLE %I LOGIN', :'app_user') WHERE to_regrole(:'app_user') IS NULL
\gexec
SELECT format('CREATE ROLE %I LOGIN', :'worker') WHERE to_regrole(:'worker') IS NULL
\gexec
SELECT format('CREATE ROLE %I LOGIN', :'retention') WHERE to_regrole(:'retention') IS NULL
\gexec
SELECT format('CREATE ROLE %I LOGIN', :'push_worker') WHERE to_regrole(:'push_worker') IS NULL
\gexec

-- The app user and the worker are plain logins: no attribute that would let them around the grants.
-- (Only issued when needed: a CREATEROLE admin that is not a superuser may not name these attributes.)
SELECT format('ALTER ROLE %I NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS', rolname)
  FROM pg_roles
 WHERE rolname IN (:'app_user', :'worker', :'retention', :'push_worker')
   AND (rolsuper OR rolcreatedb OR rolcreaterole OR rolreplication OR rolbypassrls)
\gexec

-- The worker login does one job: it must not also be the app user, the migrator or an owner.
SELECT pg_has_role(oid, 'notifications_api', 'MEMBER') OR pg_has_role(oid, 'notifications_owner', 'MEMBER')
       AS worker_shares_a_role
  FROM pg_roles WHERE rolname = :'worker'
\gset
\if :worker_shares_a_role
\warn 'the worker login is a member of notifications_api or notifications_owner: use a login of its own (-v worker=...)'
DO $$ BEGIN RAISE EXCEPTION 'worker login shares a role with the app or the owner'; END $$;
\endif

-- The push worker login likewise: not the app user, the e-mail worker, retention, the migrator or an owner.
SELECT pg_has_role(oid, 'notifications_api', 'MEMBER') OR pg_has_role(oid, 'notifications_owner', 'MEMBER')
       OR pg_has_role(oid, 'notifications_worker', 'MEMBER') OR pg_has_role(oid, 'notifications_retention', 'MEMBER')
       AS push_worker_shares_a_role
  FROM pg_roles WHERE rolname = :'push_worker'
\gset
\if :push_worker_shares_a_role
\warn 'the push worker login shares a role with another job: use a login of its own (-v push_worker=...)'
DO $$ BEGIN RAISE EXCEPTION 'push worker login shares a role with another job'; END $$;
\endif

-- Only the retention login may purge: it must not be the app user, the worker, the migrator or an
-- owner, and the app user must not be able to purge through it.
SELECT pg_has_role(r.oid, 'notifications_api', 'MEMBER') OR pg_has_role(r.oid, 'notifications_owner', 'MEMBER')
       OR pg_has_role(r.oid, 'notifications_worker', 'MEMBER')
       OR pg_has_role(a.oid, 'notifications_retention', 'MEMBER')
       AS retention_shares_a_role
  FROM pg_roles r, pg_roles a WHERE r.rolname = :'retention' AND a.rolname = :'app_user'
\gset
\if :retention_shares_a_role
\warn 'the retention login shares a role with the app, the worker or the owner: use a login of its own (-v retention=...)'
DO $$ BEGIN RAISE EXCEPTION 'retention login shares a role with the app, the worker or the owner'; END $$;
\endif

GRANT notifications_owner TO :"migrator";
GRANT notifications_api TO :"app_user";
GRANT notifications_worker TO :"worker";
GRANT notifications_retention TO :"retention";
GRANT notifications_push_worker TO :"push_worker";

-- Nobody but these five may connect; only the migrator creates objects (schema activity).
REVOKE ALL ON DATABASE :"dbname" FROM PUBLIC;
GRANT CONNECT, CREATE ON DATABASE :"dbname" TO :"migrator";
GRANT CONNECT ON DATABASE :"dbname" TO :"app_user";
GRANT CONNECT ON DATABASE :"dbname" TO :"worker";
GRANT CONNECT ON DATABASE :"dbname" TO :"retention";
GRANT CONNECT ON DATABASE :"dbname" TO :"push_worker";

-- Session settings (see the header): on the role, for this database only.
ALTER ROLE :"app_user" IN DATABASE :"dbname" SET timezone = 'UTC';
ALTER ROLE :"app_user" IN DATABASE :"dbname" SET datestyle = 'ISO, MDY';
ALTER ROLE :"app_user" IN DATABASE :"dbname" SET statement_timeout = '5000';
ALTER ROLE :"worker" IN DATABASE :"dbname" SET timezone = 'UTC';
ALTER ROLE :"worker" IN DATABASE :"dbname" SET datestyle = 'ISO, MDY';
ALTER ROLE :"worker" IN DATABASE :"dbname" SET statement_timeout = '5000';
ALTER ROLE :"retention" IN DATABASE :"dbname" SET timezone = 'UTC';
ALTER ROLE :"retention" IN DATABASE :"dbname" SET datestyle = 'ISO, MDY';
ALTER ROLE :"retention" IN DATABASE :"dbname" SET statement_timeout = '60000';
ALTER ROLE :"push_worker" IN DATABASE :"dbname" SET timezone = 'UTC';
ALTER ROLE :"push_worker" IN DATABASE :"dbname" SET datestyle = 'ISO, MDY';
ALTER ROLE :"push_worker" IN DATABASE :"dbname" SET statement_timeout = '5000';

\if :{?migrator_password}
ALTER ROLE :"migrator" PASSWORD :'migrator_password';
\endif
\if :{?api_password}
ALTER ROLE :"app_user" PASSWORD :'api_password';
\endif
\if :{?worker_password}
ALTER ROLE :"worker" PASSWORD :'worker_password';
\endif
\if :{?retention_password}
ALTER ROLE :"retention" PASSWORD :'retention_password';
\endif
\if :{?push_worker_password}
ALTER ROLE :"push_worker" PASSWORD :'push_worker_password';
\endif
