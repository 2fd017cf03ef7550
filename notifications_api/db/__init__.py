"""The database: the pool and its calls, row types, SQLSTATEs, outages, migrations, grants, owner calls."""
