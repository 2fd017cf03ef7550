#!/bin/sh
# docker-compose only: runs once, when the postgres volume is first initialised, exactly the role
# set-up a DBA runs in production (deploy/postgres/roles.sql), with the passwords from deploy/.env.
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
    -v dbname="$POSTGRES_DB" \
    -v migrator_password="$MIGRATOR_PASSWORD" \
    -v api_password="$API_DB_PASSWORD" \
    -f /etc/notifications-api/roles.sql
