"""Serving and development commands: `dev` (what `make run` runs), `check-config`, `preflight`."""
from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import click

from ..config import SECRETS, read_environment
from .cli_env import (DEV_APP_USER, DEV_DATABASE, DEV_DATA_DIR_ENV, DEV_DEFAULTS, DEV_ENV_FILE,
                      DEV_GRIP_SIG_KEY_FILE, DEV_PUSH_WORKER_USER, DEV_PUSHPIN_DIR, DEV_RETENTION_USER,
                      DEV_WORKER_USER,
                      environment, fail, load, no_database_hint, read_dev_secrets, with_dev_defaults)


DEMO_USER_ID = "00000000-0000-4000-8000-000000000001"
DEMO_EMAIL = "demo@example.com"
DEMO_NOTIFICATIONS = (  # (dedupe key, type, title, message); the key makes re-seeding a no-op
    ("demo-welcome", "system", "Welcome to the Notifications API", "This is a demo notification."),
    ("demo-comment-1", "comment", "Ana commented on your post", "Nice route!"),
    ("demo-mention-1", "mention", "Ben mentioned you", "@demo have a look at this."),
    ("demo-reaction-1", "reaction", "Chris liked your photo", None),
)


@click.command("check-config")
def check_config() -> None:
    """Validate the configuration (environment and .env); exit 1 listing every problem."""
    load()
    click.echo("configuration ok")


@click.command()
@click.option("--data-dir", default=".data", show_default=True, type=click.Path(file_okay=False),
              envvar=DEV_DATA_DIR_ENV, show_envvar=True,
              help="Where the embedded PostgreSQL and generated development secrets live.")
def dev(data_dir: str) -> None:
    """Serve for development (`make run`): embedded PostgreSQL unless DATABASE_URL/DB_HOST is set."""
    data = Path(data_dir).resolve()
    env = read_environment()  # not environment(): this command is what the others discover
    if env.get("ENVIRONMENT", "development") == "production":
        fail("`dev` is for development; run gunicorn directly in production", 2)
    data.mkdir(parents=True, exist_ok=True)
    env.update(_dev_secrets(env, data / DEV_ENV_FILE))
    env = with_dev_defaults(env)  # docs and UI demo on, loopback only, unless the environment or .env says so
    config = load(env)  # fail fast, before starting anything

    embedded = not env.get("DATABASE_URL") and not env.get("DB_HOST")
    worker = push_worker = None
    push_login = env.get("WORKER_DATABASE_URL")  # a configured database: the push worker's if it is one
    pushpin = _start_dev_pushpin(env, data, config)
    if pushpin is not None:
        config = load(env)  # now with GRIP_SIG_KEY and GRIP_PUBLISH_URL
    try:
        if embedded:
            from ..db import admin

            env["DATABASE_URL"], demo_id = _prepare_embedded_database(data)
            env["WORKER_DATABASE_URL"] = _provision_dev_login(data, DEV_WORKER_USER,
                                                              admin.provision_worker_user)
            # not served with: so that `notifications-api purge` works beside `make run`
            _provision_dev_login(data, DEV_RETENTION_USER, admin.provision_retention_user)
            if env.get("VAPID_PRIVATE_KEY"):
                push_login = _provision_dev_login(data, DEV_PUSH_WORKER_USER,
                                                  admin.provision_push_worker_user)
            _print_demo_requests(config, demo_id, data)
        else:
            click.echo("serving against the configured database (DATABASE_URL/DB_HOST); "
                       "`notifications-api issue-token --user-id UUID` prints a user JWT")
        worker = _start_email_worker(env)
        push_worker = _start_push_worker(env, push_login)
        if pushpin is not None:
            _print_stream_request(config, pushpin.url)
        if config["ENABLE_UI_DEMO"]:  # through Pushpin when it runs: the page's stream is then live
            root = pushpin.url if pushpin is not None else f"http://localhost:{config['PORT']}"
            page = f"{root}/ui/demo"
            click.echo(f"Web inbox demo (open it, then click \"Send me a test notification\"): {page}\n")
        code = _serve(env)
    finally:
        if pushpin is not None:
            pushpin.stop()
        _stop_worker(worker)  # before the database they use
        _stop_worker(push_worker)
        if embedded:
            from . import devdb
            if devdb.stop():
                click.echo("embedded PostgreSQL stopped")
            else:
                click.echo("embedded PostgreSQL left running: another process still uses it")
    sys.exit(code)


def _start_dev_pushpin(env: dict[str, str], data: Path, config: dict):
    """Pushpin in front of the dev server when the binary is installed and nothing else is set up
    (no GRIP_PUBLISH_URL): live updates on PUSHPIN_PORT (default 7999). None otherwise."""
    from . import devpushpin

    if env.get("GRIP_PUBLISH_URL") or not devpushpin.available():
        if not devpushpin.available():
            click.echo("pushpin is not installed (apt-get install pushpin): the stream endpoint "
                       "answers one event and `retry:` (clients poll)")
        return None
    env.setdefault("GRIP_SIG_KEY", _stored_secret(data / DEV_GRIP_SIG_KEY_FILE))
    pushpin = devpushpin.Pushpin(data / DEV_PUSHPIN_DIR, env["GRIP_SIG_KEY"],
                                 http_port=int(env.get("PUSHPIN_PORT") or 7999),
                                 host=env.get("HOST") or DEV_DEFAULTS["HOST"])
    try:
        pushpin.start(f"127.0.0.1:{config['PORT']}")
    except devpushpin.PushpinError as exc:
        pushpin.stop()
        click.echo(f"pushpin did not start; streams will poll ({str(exc).splitlines()[0]})", err=True)
        return None
    env["GRIP_PUBLISH_URL"] = pushpin.publish_url
    click.echo(f"pushpin started on {pushpin.url} (publishing to {pushpin.publish_url})")
    return pushpin


def _print_stream_request(config: dict, pushpin_url: str) -> None:
    from ..web.auth import issue_token as sign

    token = sign(config, DEMO_USER_ID, hours=24)
    click.echo("Live updates through Pushpin (events arrive as notifications are created):\n"
               f"  curl -N -H \"Authorization: Bearer {token}\" "
               f"{pushpin_url}{config['API_V1_PREFIX']}/notifications/stream\n")


def _stored_secret(path: Path) -> str:
    """A random secret generated on first use and kept in `path` (mode 0600)."""
    if path.exists():
        return path.read_text().strip()
    value = secrets.token_urlsafe(48)
    _write_private(path, value + "\n")
    return value


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)


def _dev_secrets(env: dict[str, str], path: Path) -> dict[str, str]:
    """JWT_SECRET/SERVICE_TOKEN not set in env/.env: generated once into `path`, reused afterwards."""
    stored = read_dev_secrets(path)
    missing = [name for name in SECRETS if not env.get(name)]
    new = {name: secrets.token_urlsafe(48) for name in missing if name not in stored}
    if new:
        stored.update(new)
        _write_private(path, "# generated by `notifications-api dev`; delete to rotate\n"
                       + "".join(f"{k}={v}\n" for k, v in stored.items()))
        click.echo(f"generated development secrets {', '.join(new)} into {path}")
    return {name: stored[name] for name in missing}


def _prepare_embedded_database(data: Path) -> tuple[str, str | None]:
    """Start the embedded server; create and migrate the database, app user and demo data.

    Returns the app user's conninfo (Unix socket) and the id of a demo notification (None: not seeded).
    """
    import psycopg
    from psycopg.conninfo import make_conninfo

    from ..db import admin
    from . import devdb
    from ..db import migrate as migrations

    server = devdb.start(data / "pg")
    click.echo(f"embedded PostgreSQL running in {data / 'pg'} (Unix socket only)")
    if admin.ensure_database(server, DEV_DATABASE):
        click.echo(f"created database {DEV_DATABASE}")
    owner = make_conninfo(server, dbname=DEV_DATABASE)
    try:
        migrations.migrate(owner, echo=click.echo)
    except migrations.MigrationError as exc:
        fail(str(exc))
    password = _stored_secret(data / f"{DEV_APP_USER}.password")
    admin.provision_app_user(owner, DEV_APP_USER, password)
    admin.create_user(owner, email=DEMO_EMAIL, user_id=DEMO_USER_ID, display_name="Demo User")  # upsert
    demo_id = None
    try:
        created, demo_id = _seed_demo_notifications(owner)
    except psycopg.Error as exc:  # demo data is a convenience: serve anyway, but say why it is missing
        click.echo(f"warning: demo notifications not seeded: {str(exc).splitlines()[0]}", err=True)
    else:
        click.echo(f"demo user {DEMO_USER_ID} <{DEMO_EMAIL}>; {created} demo notification(s) added")
    return make_conninfo(owner, user=DEV_APP_USER, password=password), demo_id


def _provision_dev_login(data: Path, login: str, provision) -> str:
    """A worker's login in the embedded database (`provision`: the db.admin function that makes it a
    member of its one group), its password kept in .data/<login>.password; its conninfo."""
    from psycopg.conninfo import make_conninfo

    from . import devdb

    owner = make_conninfo(devdb.start(data / "pg"), dbname=DEV_DATABASE)  # already running: joins it
    password = _stored_secret(data / f"{login}.password")
    provision(owner, login, password)
    return make_conninfo(owner, user=login, password=password)


def _start_email_worker(env: dict[str, str]) -> subprocess.Popen | None:
    """With EMAIL_API_URL set, one `deliver-emails` process beside gunicorn (own session, like gunicorn)."""
    if not env.get("EMAIL_API_URL"):
        return None
    if not env.get("WORKER_DATABASE_URL"):
        click.echo("EMAIL_API_URL is set but WORKER_DATABASE_URL is not: no e-mail worker started "
                   "(it connects as a member of notifications_worker; see docs/EMAIL.md)", err=True)
        return None
    command = [sys.executable, "-m", "notifications_api.ops.cli", "deliver-emails"]
    child = subprocess.Popen(command, env=env, preexec_fn=_die_with_parent, start_new_session=True)
    click.echo(f"e-mail worker started (pid {child.pid}), delivering to EMAIL_API_URL")
    return child


def _start_push_worker(env: dict[str, str], login: str | None) -> subprocess.Popen | None:
    """With VAPID_PRIVATE_KEY set, one `deliver-push` process beside gunicorn (own session), connected as
    `login` (the embedded database's `push_worker`, else WORKER_DATABASE_URL) when that login may run
    the push worker; otherwise it says why none was started."""
    if not env.get("VAPID_PRIVATE_KEY"):
        return None
    if not login or not _may_run_push_worker(login):
        click.echo("VAPID_PRIVATE_KEY is set but there is no push worker login: no push worker started "
                   "(set WORKER_DATABASE_URL to a member of notifications_push_worker; see docs/PUSH.md)",
                   err=True)
        return None
    command = [sys.executable, "-m", "notifications_api.ops.cli", "deliver-push"]
    child = subprocess.Popen(command, env={**env, "WORKER_DATABASE_URL": login}, preexec_fn=_die_with_parent,
                             start_new_session=True)
    click.echo(f"push worker started (pid {child.pid}), delivering to the browsers' push services")
    return child


def _may_run_push_worker(conninfo: str) -> bool:
    """Whether this login may run the push worker (False when it cannot even connect)."""
    import psycopg

    from ..channels import push_outbox

    try:
        with psycopg.connect(conninfo, autocommit=True, connect_timeout=5) as conn:
            return push_outbox.can_claim(conn)
    except psycopg.Error:
        return False


def _stop_worker(child: subprocess.Popen | None) -> None:
    """SIGTERM: it finishes the request in flight and hands back the rest; killed after 15 s."""
    if child is None or child.poll() is not None:
        return
    child.terminate()
    try:
        child.wait(timeout=15)
    except (subprocess.TimeoutExpired, KeyboardInterrupt):
        child.kill()
        child.wait()


def _seed_demo_notifications(owner: str) -> tuple[int, str | None]:
    """Create the demo notifications (their dedupe keys make reruns add nothing).

    Returns how many were created and the id of the last one (created now or earlier), for the tour.
    """
    import psycopg
    from psycopg.rows import dict_row

    created, last_id = 0, None
    with psycopg.connect(owner, row_factory=dict_row) as conn:
        for key, kind, title, message in DEMO_NOTIFICATIONS:
            rows = conn.execute(
                "SELECT * FROM activity.sp_create_notification(p_user_ids => %s::uuid[], "
                "p_notification_type => %s, p_title => %s, p_message => %s, p_dedupe_key => %s)",
                ([DEMO_USER_ID], kind, title, message, key)).fetchall()
            created += sum(1 for row in rows if row.get("result") == "created")
            ids = [str(row["notification_id"]) for row in rows if row.get("notification_id")]
            last_id = ids[0] if ids else last_id
    return created, last_id


def _print_demo_requests(config: dict, demo_id: str | None, data: Path) -> None:
    """The tour: every main endpoint as a curl line, ready to paste (`tests/ops` runs exactly these)."""
    from ..web.auth import issue_token as sign

    token = sign(config, DEMO_USER_ID, hours=24)
    root = f"http://localhost:{config['PORT']}"
    one = demo_id or "NOTIFICATION_ID"
    json_type = "-H 'Content-Type: application/json'"
    curl = "curl -fsS -w '\\n'"  # -f: a 4xx fails the line; -w: a newline after each body
    lines = [
        f"export TOKEN='{token}'",
        _service_token_line(data),
        f"API={root}{config['API_V1_PREFIX']}/notifications; AUTH=\"Authorization: Bearer $TOKEN\"",
        '# the inbox, newest first; one notification',
        f'{curl} -H "$AUTH" "$API?limit=20"',
        f'{curl} -H "$AUTH" "$API/{one}"',
        "# the unread count every client polls; sent back, its ETag makes the next poll a 304",
        f'{curl} -i -H "$AUTH" "$API/unread/count"',
        'ETAG=$(curl -fsS -o /dev/null -D - -H "$AUTH" "$API/unread/count" | tr -d \'\\r\' '
        '| awk \'tolower($1) == "etag:" {print $2}\')',
        'curl -sS -o /dev/null -w \'%{http_code}\\n\' -H "$AUTH" -H "If-None-Match: $ETAG" '
        '"$API/unread/count"  # 304',
        "# mark one read; then everything (bulk)",
        f'{curl} -X PUT -H "$AUTH" "$API/{one}/read"',
        f'{curl} -X POST -H "$AUTH" {json_type} -d \'{{"all": true}}\' "$API/mark-read"',
        "# settings: read, then turn reactions off in-app",
        f'{curl} -H "$AUTH" "$API/settings"',
        f'{curl} -X PATCH -H "$AUTH" {json_type} '
        '-d \'{"type_preferences": {"reaction": {"in_app": false}}}\' "$API/settings"',
        "# create one, as an internal service does (the service token, not a user JWT)",
        f'{curl} -X POST -H "X-Service-Token: $SERVICE_TOKEN" {json_type} '
        f'-d \'{{"user_id": "{DEMO_USER_ID}", "notification_type": "comment", '
        '"title": "Hello from curl"}\' "$API"',
    ]
    docs = f"{root}/docs" if config["ENABLE_DOCS"] else "off (ENABLE_DOCS=false)"
    if config["ENABLE_DOCS"]:  # with the demo on, its page fetches a demo token itself (web/openapi.py)
        docs += (" (already authorized as the demo user)" if config["ENABLE_UI_DEMO"]
                 else " (Authorize → bearerAuth: $TOKEN)")
    click.echo(f"\nThe tour, as the demo user (token valid 24 h). Swagger UI: {docs}\n"
               + "".join(f"  {line}\n" for line in lines))


def _service_token_line(data: Path) -> str:
    """Export SERVICE_TOKEN from wherever it is set, without printing the secret itself."""
    if os.environ.get("SERVICE_TOKEN"):
        return "# SERVICE_TOKEN: already set in your environment"
    from_env_file = bool(read_environment().get("SERVICE_TOKEN"))  # not in os.environ: from .env
    source = Path(os.environ.get("ENV_FILE", ".env")) if from_env_file else data / DEV_ENV_FILE
    dotenv = Path(sys.executable).with_name("dotenv")
    return f'export SERVICE_TOKEN="$({dotenv} -f {source.resolve()} get SERVICE_TOKEN)"'


def _die_with_parent() -> None:
    """In the child: get SIGTERM if `dev` dies without stopping us (Linux only)."""
    if sys.platform.startswith("linux"):
        import ctypes
        ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


# Signals within this many seconds of the last one we acted on are the same request to stop: a
# group SIGTERM reaches `make run` and us, and make forwards its copy to us a moment later.
SIGNAL_DEBOUNCE_SECONDS = 1.0


def _serve(env: dict[str, str]) -> int:
    """Run gunicorn as a child until it exits; SIGINT/SIGTERM/SIGHUP stop it gracefully.

    A second signal, later than SIGNAL_DEBOUNCE_SECONDS, stops it quickly; a third kills it.
    """
    command = [sys.executable, "-m", "gunicorn", "-c", "python:notifications_api.ops.gunicorn_conf",
               "notifications_api.wsgi:app"]
    # Own session: a terminal Ctrl-C reaches only us, and gunicorn gets exactly one signal from
    # us (its workers would otherwise get SIGINT from the terminal and SIGQUIT from the master
    # at once, which can leave one stuck until the graceful timeout).
    child = subprocess.Popen(command, env=env, preexec_fn=_die_with_parent, start_new_session=True)
    signals = {"count": 0, "last": -SIGNAL_DEBOUNCE_SECONDS}
    escalation = (signal.SIGTERM, signal.SIGINT, signal.SIGKILL)  # graceful, quick, kill

    def forward(signum, frame):
        now = time.monotonic()
        if now - signals["last"] < SIGNAL_DEBOUNCE_SECONDS:
            return  # a copy of the signal we already forwarded
        signals["count"] += 1
        signals["last"] = now
        if child.poll() is None:
            child.send_signal(escalation[min(signals["count"], len(escalation)) - 1])

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        code = child.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if child.poll() is None:
            child.kill()
            child.wait()
    return 0 if signals["count"] and code in (0, -signal.SIGTERM, -signal.SIGINT) else code


@click.command()
def preflight() -> None:
    """Run the production checklist against the live configuration; exit 1 if any item fails."""
    from .preflight import run

    env = environment()
    hint = no_database_hint(env)
    if hint and env.get("ENVIRONMENT", "development") == "development":
        click.echo(f"note: {hint}", err=True)
    checks = run(env)
    for check in checks:
        click.echo(check.line())
    failed = sum(not check.ok for check in checks)
    click.echo(f"{len(checks) - failed} passed, {failed} failed")
    if failed:
        sys.exit(1)
