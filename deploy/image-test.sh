#!/usr/bin/env bash
# `make image-test`: build the container image WITHOUT a Docker engine and run it for real (CI runs this).
#
#   deploy/image-test.sh          build (reusing the base image and podman's layer cache) and smoke-test
#   deploy/image-test.sh purge    remove the test image, the base image, the layer cache and the rootfs
#
# podman builds the Dockerfile (`--isolation chroot`); where `podman run` is refused (a sandbox that
# denies setrlimit), `podman create` + `podman mount` give the container's root and `chroot
# --userspec=<the image's USER>` runs the image's commands in it with the image's ENV and WORKDIR:
# migrate, preflight (ENVIRONMENT=production), then the image's CMD (gunicorn) on a free loopback port ->
# /, /health, 401 without credentials, a create with the service token, the list with a user JWT, the
# image's HEALTHCHECK command, /metrics -> SIGTERM; then everything it made is removed.
#
# Base image: PYTHON_IMAGE (the Dockerfile's build argument) when set and present locally or pullable,
# e.g. PYTHON_IMAGE=python:3.11.11-slim-bookworm; otherwise (no registry reachable) Debian bookworm
# minbase + Debian's python3, built with debootstrap and `podman import`ed as localhost/nt-base:latest,
# with the host's CA bundle (a TLS-intercepting network: pip inside the build must trust it).
#
# Needs root, podman and debootstrap (installed from Debian's packages when missing), psql, curl,
# openssl, and a PostgreSQL reachable over TCP as a superuser (the image's user cannot reach the
# embedded server's socket): IMAGE_TEST_DATABASE_URL, else TEST_DATABASE_URL, else
# postgresql://postgres@127.0.0.1:5432. A throwaway database and one login role are made and dropped;
# the migrations create the four cluster-wide NOLOGIN group roles when missing and leave them.
# Redis: REDIS_HOST/REDIS_PORT (127.0.0.1:6379), database 13.
#
# Knobs: IMAGE_TEST_DIR (.data/image-test: rootfs, build context, logs), NO_CACHE=1, REBUILD_BASE=1,
# EXTRA_ENV="K=V ..." (service settings added/overridden), KEEP=1 (leave container/DB/role to debug).
# Exit 0 only if every step passed; the cleanup runs on success, failure and SIGINT/SIGTERM.
set -Eeuo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=$(mkdir -p "${IMAGE_TEST_DIR:-$ROOT/.data/image-test}" && cd "${IMAGE_TEST_DIR:-$ROOT/.data/image-test}" && pwd)
SRC=$WORK/src
ROOTFS=$WORK/rootfs
BASE_IMAGE=${PYTHON_IMAGE:-localhost/nt-base:latest}
IMAGE=${IMAGE:-localhost/notifications-api:test}
SUITE=bookworm                      # the Dockerfile's default python:3.11-slim-bookworm is Debian bookworm
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
PG_SERVER=${IMAGE_TEST_DATABASE_URL:-${TEST_DATABASE_URL:-postgresql://postgres@127.0.0.1:5432}}
# the server alone (a database name or query string dropped): the databases are named below
PG_SERVER=$(printf '%s' "$PG_SERVER" | sed -E 's#^(postgres(ql)?://[^/?]*).*$#\1#')
REDIS_HOST=${REDIS_HOST:-127.0.0.1}
REDIS_PORT=${REDIS_PORT:-6379}
LOGDIR=$WORK/last-run

log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "FAIL: $*"; exit 1; }
declare -a TIMINGS=()
timed() {  # timed LABEL cmd...: run, record the wall time
    local label=$1; shift
    local t0=$SECONDS rc=0
    "$@" || rc=$?
    TIMINGS+=("$(printf '%-28s %4ds%s' "$label" $((SECONDS - t0)) "$([ $rc = 0 ] || echo "  (rc=$rc)")")")
    return $rc
}

[ "$(id -u)" = 0 ] || die "run as root (podman rootful, chroot, mount)"

purge() {
    podman rmi -f "$IMAGE" 2>/dev/null || true
    podman rmi -f "$BASE_IMAGE" 2>/dev/null || true
    # The build cache = the untagged intermediate images. This store held nothing else when the
    # recipe was written; check `podman images -a` first if others use podman on this machine.
    podman image prune -f >/dev/null
    if grep -q " $ROOTFS/" /proc/mounts; then die "something is mounted under $ROOTFS; unmount it first"; fi
    rm -rf "$ROOTFS" "$SRC" "$LOGDIR"
}
if [ "${1:-}" = purge ]; then purge; exit 0; fi

# --- 0. tools ------------------------------------------------------------------------------------
need_pkgs=()
command -v podman >/dev/null || need_pkgs+=(podman)
command -v debootstrap >/dev/null || need_pkgs+=(debootstrap)
if [ ${#need_pkgs[@]} -gt 0 ]; then
    log "installing ${need_pkgs[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y "${need_pkgs[@]}" >/dev/null \
        || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 \
             install -y "${need_pkgs[@]}" >/dev/null; }
fi
for t in podman debootstrap chroot psql curl openssl python3; do command -v $t >/dev/null || die "missing $t"; done
psql "$PG_SERVER/postgres" -qXAtc 'SELECT 1' >/dev/null 2>&1 \
    || die "no PostgreSQL superuser at $PG_SERVER (over TCP: set IMAGE_TEST_DATABASE_URL)"
mkdir -p "$WORK" "$LOGDIR"
rm -f "$LOGDIR"/*

# --- 1. base image: Debian bookworm minbase + Debian's python3 -------------------------------------
build_base() {
    if grep -q " $ROOTFS[/ ]" /proc/mounts; then die "something is mounted under $ROOTFS (an interrupted debootstrap?)"; fi
    rm -rf "$ROOTFS"; mkdir -p "$(dirname "$ROOTFS")"
    log "debootstrap $SUITE (minbase + python3) -> $ROOTFS"
    debootstrap --variant=minbase --include=python3,python3-venv,python-is-python3,ca-certificates \
        "$SUITE" "$ROOTFS" "$MIRROR" > "$LOGDIR/debootstrap.log" 2>&1 \
        || { tail -20 "$LOGDIR/debootstrap.log" >&2; die "debootstrap"; }
    # This network intercepts TLS: give the image the host's CA bundle (Debian's pip, inside the venv
    # too, reads /etc/ssl/certs/ca-certificates.crt).
    cp /etc/ssl/certs/ca-certificates.crt "$ROOTFS/etc/ssl/certs/ca-certificates.crt"
    rm -rf "$ROOTFS"/var/cache/apt/archives/*.deb "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/var/log/*.log
    : > "$ROOTFS/etc/resolv.conf"   # the host's copy; podman/the test bind-mount the real one
    # An imported tarball has no ENV: without PATH, the Dockerfile's `ENV PATH=/opt/venv/bin:$PATH`
    # would become "/opt/venv/bin:". LANG as in python:*-slim.
    local old_base; old_base=$(podman image inspect --format '{{.Id}}' "$BASE_IMAGE" 2>/dev/null || true)
    tar -C "$ROOTFS" -c . | podman import \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'ENV LANG=C.UTF-8' --change 'CMD ["/bin/bash"]' \
        - "$BASE_IMAGE" > "$LOGDIR/import.log" 2>&1 || { cat "$LOGDIR/import.log" >&2; die "podman import"; }
    # the previous base, now untagged (kept while cached build layers still use it)
    [ -n "$old_base" ] && podman rmi "$old_base" >/dev/null 2>&1 || true
}
if [ -n "${PYTHON_IMAGE:-}" ]; then
    log "base: $PYTHON_IMAGE (PYTHON_IMAGE)"
elif [ "${REBUILD_BASE:-0}" = 1 ] || ! podman image exists "$BASE_IMAGE"; then
    timed "base: debootstrap+import" build_base
else
    log "reusing $BASE_IMAGE"
fi

# --- 2. the build context: the checkout's files that .dockerignore lets in, as they are now --------
prepare_source() {
    rm -rf "$SRC"; mkdir -p "$SRC"
    (cd "$ROOT" && tar -c --exclude=__pycache__ --exclude='*.pyc' \
        Dockerfile .dockerignore setup.cfg setup.py pyproject.toml README.md notifications_api migrations_sql) \
        | tar -C "$SRC" -x
    log "source: $ROOT ($(git -C "$ROOT" log --oneline -1 2>/dev/null || echo 'not a git checkout'))"
}
prepare_source

# --- 3. build ------------------------------------------------------------------------------------
old_id=$(podman image inspect --format '{{.Id}}' "$IMAGE" 2>/dev/null || true)
build_args=(--isolation chroot --format docker --build-arg "PYTHON_IMAGE=$BASE_IMAGE" -t "$IMAGE")
[ "${NO_CACHE:-0}" = 1 ] && build_args+=(--no-cache)
build() {
    log "podman build ${build_args[*]} $SRC"
    podman build "${build_args[@]}" "$SRC" > "$LOGDIR/build.log" 2>&1 \
        || { tail -30 "$LOGDIR/build.log" >&2; die "podman build (log: $LOGDIR/build.log)"; }
}
timed "build$([ "${NO_CACHE:-0}" = 1 ] && echo ' (--no-cache)' || echo ' (cache allowed)')" build
new_id=$(podman image inspect --format '{{.Id}}' "$IMAGE")
if [ -n "$old_id" ] && [ "$old_id" != "$new_id" ]; then   # the previous test image, now untagged
    podman rmi "$old_id" >/dev/null 2>&1 || true
fi

# --- 4. run it: create + mount + chroot ----------------------------------------------------------
RID=$(openssl rand -hex 4)
CTR=nt-img-$RID
DB=nt_img_$RID
APP_ROLE=nt_img_${RID}_api
MNT=""
declare -a MOUNTED=()
GUNICORN_PID=""

cleanup() {
    local rc=$?
    set +e
    if [ -n "$GUNICORN_PID" ] && kill -0 "$GUNICORN_PID" 2>/dev/null; then
        kill -TERM "$GUNICORN_PID"; for _ in $(seq 100); do kill -0 "$GUNICORN_PID" 2>/dev/null || break; sleep 0.2; done
        kill -0 "$GUNICORN_PID" 2>/dev/null && kill -KILL "$GUNICORN_PID"
    fi
    if [ "${KEEP:-0}" = 1 ]; then
        log "KEEP=1: left container $CTR (root $MNT, mounts: ${MOUNTED[*]:-}), database $DB, role $APP_ROLE"
        exit $rc
    fi
    local i
    for ((i=${#MOUNTED[@]}-1; i>=0; i--)); do umount -R "${MOUNTED[i]}" || umount -l "${MOUNTED[i]}"; done
    if podman container exists "$CTR" 2>/dev/null; then
        podman umount "$CTR" >/dev/null; podman rm -f "$CTR" >/dev/null
    fi
    psql "$PG_SERVER/postgres" -qX -v ON_ERROR_STOP=1 \
        -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" -c "DROP ROLE IF EXISTS $APP_ROLE" >/dev/null \
        || log "warning: could not drop $DB / $APP_ROLE"
    if [ ${#TIMINGS[@]} -gt 0 ]; then
        printf '%s\n' "--- timings (wall) ---" "${TIMINGS[@]}" | tee "$LOGDIR/timings.txt" >&2
    fi
    [ $rc = 0 ] && log "OK: image $IMAGE built and smoke-tested" || log "FAILED (rc=$rc); logs in $LOGDIR"
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# What `podman run` would apply, read from the image.
inspect() { podman image inspect --format "$1" "$IMAGE"; }
mapfile -t IMAGE_ENV < <(inspect '{{range .Config.Env}}{{println .}}{{end}}' | sed '/^$/d')
WORKDIR=$(inspect '{{.Config.WorkingDir}}'); WORKDIR=${WORKDIR:-/}
USERSPEC=$(inspect '{{.Config.User}}')
mapfile -t HEALTHCHECK < <(inspect '{{json .Config.Healthcheck}}' | python3 -c '
import json, sys
h = json.load(sys.stdin) or {}
t = h.get("Test") or []
print("\n".join(t[1:] if t[:1] == ["CMD"] else ["sh", "-c", t[1]] if t[:1] == ["CMD-SHELL"] else []))')
mapfile -t CMD < <(inspect '{{json .Config.Cmd}}' | python3 -c 'import json,sys; print("\n".join(json.load(sys.stdin)))')
[[ "$USERSPEC" =~ ^[0-9]+:[0-9]+$ ]] || die "image USER '$USERSPEC' is not numeric uid:gid (chroot would resolve names on the host)"
log "image: user $USERSPEC, workdir $WORKDIR, cmd ${CMD[*]}"

start_container() {
    # --no-healthcheck: nothing runs it here (no systemd timers); without it `podman rm` logs a
    # harmless "unable to get systemd connection to remove healthchecks" error. The test runs the
    # image's HEALTHCHECK command itself, below.
    podman create --no-healthcheck --name "$CTR" "$IMAGE" >/dev/null
    MNT=$(podman mount "$CTR")
    # podman run would create the WORKDIR; buildah does not put it in the image when no later step uses it.
    mkdir -p "$MNT$WORKDIR"
    # loopback needs nothing (chroot shares the host network namespace); /proc, /dev and name
    # resolution do. Bind the host's files over the image's (empty /etc/hosts, stale resolv.conf).
    mount -t proc proc "$MNT/proc";              MOUNTED+=("$MNT/proc")
    mount --rbind /dev "$MNT/dev";               MOUNTED+=("$MNT/dev")
    mount --bind -o ro /etc/resolv.conf "$MNT/etc/resolv.conf"; MOUNTED+=("$MNT/etc/resolv.conf")
    mount --bind -o ro /etc/hosts "$MNT/etc/hosts";             MOUNTED+=("$MNT/etc/hosts")
}
timed "create+mount" start_container
log "container $CTR root $MNT"

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
APP_PW=$(openssl rand -hex 24)
# The service's configuration, as the Deployment's ConfigMap + Secret would give it.
APP_ENV=(
    HOME=/nonexistent HOSTNAME="$CTR"
    ENVIRONMENT=production LOG_LEVEL=INFO
    DB_HOST=127.0.0.1 DB_PORT=5432 DB_NAME="$DB" DB_USER="$APP_ROLE" DB_PASSWORD="$APP_PW"
    DB_SSLMODE=disable DB_ALLOW_WEAK_SSLMODE=true          # the local server has no TLS
    JWT_SECRET="$(openssl rand -hex 32)" JWT_AUDIENCE=notifications-api-image-test
    SERVICE_TOKEN="$(openssl rand -hex 32)" METRICS_TOKEN="$(openssl rand -hex 32)"
    REDIS_HOST="$REDIS_HOST" REDIS_PORT="$REDIS_PORT" REDIS_DB=13
    WEB_CONCURRENCY=2 GUNICORN_THREADS=4 DB_POOL_MAX_SIZE=4
)
# EXTRA_ENV="VAR=value ..." (no spaces inside values) adds to / overrides the configuration above.
read -r -a _extra <<< "${EXTRA_ENV:-}"; APP_ENV+=("${_extra[@]}")
appenv() { local kv; for kv in "${APP_ENV[@]}"; do [ "${kv%%=*}" = "$1" ] && { echo "${kv#*=}"; return; }; done; }
SERVICE_TOKEN=$(appenv SERVICE_TOKEN); METRICS_TOKEN=$(appenv METRICS_TOKEN)

# in_image [VAR=value...] -- cmd...: the image's ENV, then the app's, then overrides; as USER, in WORKDIR.
in_image() {
    local extra=()
    while [ $# -gt 0 ] && [ "$1" != -- ]; do extra+=("$1"); shift; done
    shift
    local cmd=(env -i "${IMAGE_ENV[@]}" "${APP_ENV[@]}" "${extra[@]}"
               chroot --userspec="$USERSPEC" --groups="${USERSPEC#*:}" "$MNT" /usr/bin/env -C "$WORKDIR" "$@")
    # IN_IMAGE_EXEC=1 (only inside a `( ... ) &` subshell): exec, so that $! is the process itself
    # (env and chroot exec too) and not a bash subshell that SIGTERM would kill instead.
    if [ "${IN_IMAGE_EXEC:-0}" = 1 ]; then exec "${cmd[@]}"; else "${cmd[@]}"; fi
}

in_image -- sh -c 'echo "in image: $(id) in $(pwd), $(python --version)"' >&2

# --- 5. database: fresh DB, migrations (superuser, as in `make run`/tests), app login, a user ----
timed "createdb" psql "$PG_SERVER/postgres" -qX -v ON_ERROR_STOP=1 -c "CREATE DATABASE $DB" >/dev/null
# The migrations create the cluster-wide group roles (notifications_owner, notifications_api, ...)
# when missing and leave them; only the per-run login role is dropped at the end.
timed "migrate" in_image MIGRATION_DATABASE_URL="$PG_SERVER/$DB" -- notifications-api migrate \
    > "$LOGDIR/migrate.log" 2>&1 || { cat "$LOGDIR/migrate.log" >&2; die "migrate"; }
tail -1 "$LOGDIR/migrate.log" >&2
# A per-run app login (deploy/postgres/roles.sql's fixed names would collide on a shared cluster),
# made by the package's admin function as the superuser.
in_image ADMIN_URL="$PG_SERVER/$DB" -- python - <<'EOF' || die "provision app login"
import os
from notifications_api.db.admin import provision_app_user
provision_app_user(os.environ["ADMIN_URL"], os.environ["DB_USER"], os.environ["DB_PASSWORD"])
EOF
USER_ID=$(in_image MIGRATION_DATABASE_URL="$PG_SERVER/$DB" -- \
    notifications-api create-user --email "image-test-$RID@example.com" --display-name "Image Test") \
    || die "create-user"
[[ "$USER_ID" =~ ^[0-9a-f-]{36}$ ]] || die "create-user printed '$USER_ID'"
log "app login $APP_ROLE, user $USER_ID"

# --- 6. preflight (the production checklist, as the app login) -----------------------------------
timed "preflight" in_image -- notifications-api preflight > "$LOGDIR/preflight.log" 2>&1 \
    || { cat "$LOGDIR/preflight.log" >&2; die "preflight"; }
tail -1 "$LOGDIR/preflight.log" >&2

# --- 7. the API: the image's CMD, bound to loopback ----------------------------------------------
# GUNICORN_CMD_ARGS overrides the config file's bind (0.0.0.0:$PORT); PORT kept consistent.
t_serve=$SECONDS
( IN_IMAGE_EXEC=1 in_image PORT="$PORT" GUNICORN_CMD_ARGS="--bind 127.0.0.1:$PORT" -- "${CMD[@]}" ) \
    > "$LOGDIR/gunicorn.log" 2>&1 &
GUNICORN_PID=$!    # the subshell execs env -> chroot -> env -> gunicorn: this is gunicorn's master
BASE_URL=http://127.0.0.1:$PORT
for _ in $(seq 150); do
    kill -0 "$GUNICORN_PID" 2>/dev/null || { cat "$LOGDIR/gunicorn.log" >&2; die "gunicorn exited"; }
    curl -fsS -o /dev/null "$BASE_URL/health/live" 2>/dev/null && break
    sleep 0.2
done
curl -fsS -o /dev/null "$BASE_URL/health/live" || die "gunicorn not answering on $BASE_URL"
TIMINGS+=("$(printf '%-28s %4ds' "gunicorn ready" $((SECONDS - t_serve)))")
grep -q "Listening at: .* ($GUNICORN_PID)" "$LOGDIR/gunicorn.log" \
    || die "gunicorn's master is not pid $GUNICORN_PID: $(grep 'Listening at' "$LOGDIR/gunicorn.log")"
log "gunicorn master pid $GUNICORN_PID on $BASE_URL"

check() {  # check NAME EXPECTED_STATUS curl-args...: body to $LOGDIR/NAME.json
    local name=$1 want=$2; shift 2
    local got
    got=$(curl -sS -o "$LOGDIR/$name.json" -w '%{http_code}' "$@") || die "$name: curl failed"
    [ "$got" = "$want" ] || { cat "$LOGDIR/$name.json" >&2; echo >&2; die "$name: HTTP $got, expected $want"; }
    log "$name: HTTP $got"
}
check health 200 "$BASE_URL/health"
grep -q '"database":"ok"' "$LOGDIR/health.json" || die "/health: database not ok: $(cat "$LOGDIR/health.json")"
check index 200 "$BASE_URL/"
grep -q '"health":"/health"' "$LOGDIR/index.json" || die "/: no link to /health: $(cat "$LOGDIR/index.json")"
check unauthenticated 401 "$BASE_URL/api/v1/notifications"
check create 201 -X POST "$BASE_URL/api/v1/notifications" -H "X-Service-Token: $SERVICE_TOKEN" \
    -H 'Content-Type: application/json' \
    -d "{\"user_id\": \"$USER_ID\", \"notification_type\": \"image_test\", \"title\": \"hello from $CTR\"}"
# issue-token is refused with ENVIRONMENT=production; the same secret/audience under staging.
TOKEN=$(in_image ENVIRONMENT=staging -- notifications-api issue-token --user-id "$USER_ID" --hours 1) \
    || die "issue-token"
check list 200 "$BASE_URL/api/v1/notifications" -H "Authorization: Bearer $TOKEN"
grep -q "hello from $CTR" "$LOGDIR/list.json" || die "list: the created notification is missing"
if [ ${#HEALTHCHECK[@]} -gt 0 ]; then     # the image's HEALTHCHECK (kept by --format docker)
    in_image PORT="$PORT" -- "${HEALTHCHECK[@]}" || die "HEALTHCHECK command failed"
    log "HEALTHCHECK command: ok"
fi
check metrics 200 "$BASE_URL/metrics" -H "Authorization: Bearer $METRICS_TOKEN"

# --- 8. stop by PID (graceful), then cleanup() unmounts, removes the container, drops DB and role --
kill -TERM "$GUNICORN_PID"
rc=0; wait "$GUNICORN_PID" || rc=$?
GUNICORN_PID=""
[ $rc = 0 ] || { tail -20 "$LOGDIR/gunicorn.log" >&2; die "gunicorn exited $rc after SIGTERM"; }
grep -q 'Shutting down: Master' "$LOGDIR/gunicorn.log" || die "gunicorn did not shut down cleanly"
log "gunicorn stopped cleanly"
TIMINGS+=("$(printf '%-28s %4ds' "total (this script)" "$SECONDS")")
