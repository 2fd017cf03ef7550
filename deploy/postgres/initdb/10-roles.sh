#!/bin/sh
# docker-compose only: runs once, when the postgres volume is first initialised, exactly the role
# set-up a DBA runs in production (deploy/postgres/roles.sql), with the passwords from deploy/.env.
# WORKER_DB_PASSWORD (the email_worker login, e-mail profile) is optional: left empty, that login
# gets no password and cannot connect until one is set (docs/PRODUCTION.md, "E-mail worker").
# PUSH_WORKER_DB_PASSWORD (the push_worker login, push profile: docs/PUSH.md) likewise.
set -eu
set --
if [ -n "${WORKER_DB_PASSWORD:-}" ]; then
    set -- -v worker_password="$WORKER_DB_PASSWORD"
fi
if [ -n "${PUSH_WORKER_DB_PASSWORD:-}" ]; then
    set -- "$@" -v push_worker_password="$PUSH_WORKER_DB_PASSWORD"
fi
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
    -v dbname="$POSTGRES_DB" \
    -v migrator_password="$MIGRATOR_PASSWORD" \
    -v api_password="$API_DB_PASSWORD" \
    -v retention_password="$RETENTION_DB_PASSWORD" \
    "$@" \
    -f /etc/notifications-api/roles.sql
