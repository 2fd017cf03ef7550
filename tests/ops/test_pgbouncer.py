"""The service through a real PgBouncer in transaction pooling, prepared statements off (as
docs/PRODUCTION.md documents): the API's main paths end to end, several app connections sharing one
server connection. PgBouncer refuses the libpq `options` startup parameter, so no session setting
may travel there (they live on the login role)."""
from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg
import pytest
from machine_tools import skip_unless_ci, stop_process
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from notifications_api.auth import issue_token
from ops_helpers import free_port

API = "/api/v1/notifications"


def _pgbouncer() -> str:
    found = shutil.which("pgbouncer") or ("/usr/sbin/pgbouncer" if Path("/usr/sbin/pgbouncer").exists() else None)
    if not found:
        skip_unless_ci("pgbouncer is not installed (apt-get install pgbouncer)")
    return found


@pytest.fixture
def bouncer(database):
    """A PgBouncer (pool_mode=transaction, one server connection) in front of the session database,
    on a free port with its own config dir; yields the app login's conninfo through it."""
    binary = _pgbouncer()
    params = conninfo_to_dict(database.app)
    work = Path(tempfile.mkdtemp(prefix="nt-pgbouncer-"))  # not pytest's 0700 basetemp: it may run as nobody
    work.chmod(0o755)
    port, alias = free_port(), "notifications"
    server = f"host={params.get('host', '127.0.0.1')} port={params.get('port', '5432')} dbname={params['dbname']}"
    (work / "userlist.txt").write_text(f'"{params["user"]}" "{params["password"]}"\n')
    (work / "pgbouncer.ini").write_text(
        f"[databases]\n{alias} = {server}\n\n"
        "[pgbouncer]\n"
        f"listen_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n"
        f"auth_type = scram-sha-256\nauth_file = {work / 'userlist.txt'}\n"
        "pool_mode = transaction\ndefault_pool_size = 1\nmax_client_conn = 50\n"
        "server_reset_query =\nlog_connections = 0\nlog_disconnections = 0\n")
    for path in work.iterdir():
        path.chmod(0o644)
    command = [binary, str(work / "pgbouncer.ini")]
    if os.geteuid() == 0:
        command[1:1] = ["-u", "nobody"]  # pgbouncer refuses to run as root
    log = (work / "stderr.log").open("wb")
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"pgbouncer did not start: {(work / 'stderr.log').read_text()}")
                time.sleep(0.05)
        yield make_conninfo("", host="127.0.0.1", port=str(port), dbname=alias, user=params["user"],
                            password=params["password"])
    finally:
        stop_process(process)
        log.close()
        shutil.rmtree(work, ignore_errors=True)


def test_pgbouncer_refuses_startup_options(bouncer):
    """What the pool used to send: PgBouncer refuses the connection outright."""
    with pytest.raises(psycopg.OperationalError, match="unsupported startup parameter"):
        psycopg.connect(bouncer, options="-c statement_timeout=5000", connect_timeout=5)
    with psycopg.connect(bouncer, autocommit=True, prepare_threshold=None) as conn:  # the role's settings
        assert conn.execute("SELECT current_setting('TimeZone'), current_setting('DateStyle')").fetchone() == (
            "UTC", "ISO, MDY")


def test_main_paths_through_pgbouncer_in_transaction_mode(bouncer, app_factory, make_user):
    app = app_factory({
        "DATABASE_URL": bouncer, "DB_PREPARE_THRESHOLD": None, "DB_POOL_MIN_SIZE": 4, "DB_POOL_MAX_SIZE": 4,
        "JWT_SECRET": secrets.token_urlsafe(36), "JWT_SECRET_PREVIOUS": "",
        "SERVICE_TOKEN": secrets.token_urlsafe(36), "SERVICE_TOKEN_PREVIOUS": "", "ENVIRONMENT": "test",
        "RATE_LIMIT_ENABLED": False, "ENABLE_DOCS": False, "LOG_LEVEL": "WARNING", "REDIS_HOST": "",
        "METRICS_TOKEN": "", "EMAIL_API_URL": "", "CORS_ORIGINS": (), "TRUSTED_PROXY_HOPS": 0,
    })
    client = app.test_client()
    user = make_user()
    h = {"Authorization": f"Bearer {issue_token(app.config, user)}"}
    service = {"X-Service-Token": app.config["SERVICE_TOKEN"]}

    created = []
    for n in range(3):
        r = client.post(API, json={"user_id": user, "notification_type": "comment", "title": f"t{n}",
                                   "expires_at": "2999-01-01T00:00:00Z"}, headers=service)
        assert r.status_code == 201, r.get_json()
        created.append(r.get_json()["results"][0]["notification"])
    assert created[0]["created_at"].endswith("Z") and created[0]["expires_at"] == "2999-01-01T00:00:00.000000Z"

    listed = client.get(API, headers=h)
    assert listed.status_code == 200
    assert [i["title"] for i in listed.get_json()["items"]] == ["t2", "t1", "t0"]
    count = client.get(f"{API}/unread/count", headers=h)
    assert count.status_code == 200 and count.get_json()["unread_count"] == 3
    same = client.get(f"{API}/unread/count", headers={**h, "If-None-Match": count.headers["ETag"]})
    assert same.status_code == 304

    nid = created[0]["notification_id"]
    read = client.put(f"{API}/{nid}/read", headers=h)
    assert read.status_code == 200 and read.get_json()["status"] == "read"
    assert client.get(f"{API}/{nid}", headers=h).get_json()["read_at"].endswith("Z")
    bulk = client.post(f"{API}/mark-read", json={"all": True}, headers=h)
    assert bulk.status_code == 200 and bulk.get_json() == {"updated_count": 2, "unread_count": 0}
    assert client.delete(f"{API}/{created[1]['notification_id']}", headers=h).status_code == 204

    settings = client.patch(f"{API}/settings", json={"email_enabled": False}, headers=h)
    assert settings.status_code == 200 and settings.get_json()["email_enabled"] is False
    assert client.get(f"{API}/settings", headers=h).get_json()["email_enabled"] is False

    # four app connections, one server connection: every call is its own transaction, no session state
    def counted(_):
        with app.test_client() as c:
            return c.get(f"{API}/unread/count", headers=h).status_code

    with ThreadPoolExecutor(8) as pool:
        assert set(pool.map(counted, range(40))) == {200}
