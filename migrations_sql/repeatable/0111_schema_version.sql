-- What the preflight reads to tell whether this release's migrations are applied.

-- ---------------------------------------------------------------------------
-- 12. schema version (for the preflight)
-- ---------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION activity.sp_schema_version()
RETURNS TABLE(filename text, checksum text)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = activity, pg_temp
AS $$
    SELECT m.filename, m.checksum FROM activity.schema_migrations m ORDER BY m.filename
$$;
