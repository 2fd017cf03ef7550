-- Reads on streaming standbys (notifications_api/db/replica.py, docs/SCALING.md "Read replicas").
-- Re-applied by the migration runner whenever this file changes. The reads themselves are the
-- existing functions: a standby runs them as they are, and a call that has to fold the clock into
-- the counts (a write) fails there with 25006 and is sent to the primary.

-- The primary's WAL insert position after a write has committed, as a byte position: the floor a
-- standby must have replayed before it may answer this user's reads. The insert position is at or
-- after the end of every committed transaction's commit record (whatever synchronous_commit says).
CREATE OR REPLACE FUNCTION activity.sp_wal_position()
RETURNS bigint
LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = activity, pg_temp
AS $$
    SELECT (pg_current_wal_insert_lsn() - '0/0'::pg_lsn)::bigint
$$;

-- What a read router needs to know about the server it is connected to, in one row: whether it is
-- a standby, how far it has replayed (on a primary: written, its insert position) and received
-- (byte positions; received is NULL on a primary), and whether a WAL receiver is running (no
-- receiver: the standby cannot tell how far behind it is).
CREATE OR REPLACE FUNCTION activity.sp_replica_status()
RETURNS TABLE(in_recovery boolean, replay_position bigint, receive_position bigint, receiving boolean)
LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = activity, pg_temp
AS $$
    -- one look at the recovery state: a promotion between two would ask a standby for its insert position
    SELECT s.in_recovery,
           (CASE WHEN s.in_recovery THEN pg_last_wal_replay_lsn()
                 ELSE pg_current_wal_insert_lsn() END - '0/0'::pg_lsn)::bigint,
           (pg_last_wal_receive_lsn() - '0/0'::pg_lsn)::bigint,
           EXISTS (SELECT 1 FROM pg_stat_wal_receiver r WHERE r.pid IS NOT NULL)
    FROM (SELECT pg_is_in_recovery() AS in_recovery) s
$$;

ALTER FUNCTION activity.sp_wal_position() OWNER TO notifications_owner;
ALTER FUNCTION activity.sp_replica_status() OWNER TO notifications_owner;
REVOKE ALL ON FUNCTION activity.sp_wal_position(), activity.sp_replica_status() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION activity.sp_wal_position(), activity.sp_replica_status() TO notifications_api;
