"""The Django peer of issue 19: django-notifications-hq, 2 sync gunicorn workers, the same data.

    python bench/peer/peer.py setup
    python bench/peer/peer.py seed --database-url SUPERUSER_URL --dbname NAME --users N --per-user M --heavy H
    python bench/peer/peer.py serve --database-url URL --port P --jwt-secret S [--redis-url URL | --no-limits]
    python bench/peer/peer.py check --database-url SUPERUSER_URL [--redis-url URL]   (the proof run)

The same as functions for bench/run.py: setup(), seed(...), start(...) -> Popen, stop(proc), and
PATHS, the endpoints by scenario. This module needs only the standard library (it runs under any
Python 3.11+); Django and the package live in .data/peer-venv, which `setup` creates.
See bench/peer/README.md.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
VENV = ROOT / ".data" / "peer-venv"
PYTHON = VENV / "bin" / "python"
REQUIREMENTS = HERE / "requirements.txt"
STAMP = VENV / ".installed"

# The endpoints bench/run.py drives, by scenario (GET, Authorization: Bearer <JWT>).
PATHS = {
    # django-notifications-hq's own view: {"unread_count": n}
    "unread_count": "/inbox/notifications/api/unread_count/",
    # the first page (20, the service's default limit), newest first: {"items": [...]}
    "list_first": "/inbox/notifications/api/list/?limit=20",
}
HEALTH_PATH = "/healthz"
WORKERS = 2  # sync workers, as in issue 19


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ---- setup ------------------------------------------------------------------------------------

def setup(python: str | None = None) -> Path:
    """Create .data/peer-venv with requirements.txt's pins; a no-op when they are installed already."""
    wanted = REQUIREMENTS.read_text()
    if PYTHON.exists() and STAMP.exists() and STAMP.read_text() == wanted:
        return PYTHON
    if not PYTHON.exists():
        say(f"creating {VENV} ...")
        subprocess.run([python or sys.executable, "-m", "venv", str(VENV)], check=True)
    say("installing the peer's pinned packages ...")
    subprocess.run([str(PYTHON), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                    "-r", str(REQUIREMENTS)], check=True)
    STAMP.write_text(wanted)
    return PYTHON


def _require_venv() -> None:
    if not PYTHON.exists():
        raise SystemExit(f"{VENV} does not exist: run `python bench/peer/peer.py setup` first")


# ---- seed -------------------------------------------------------------------------------------

def database_url(server_url: str, dbname: str) -> str:
    """server_url (a postgresql:// URL or a key=value conninfo) naming the database dbname instead."""
    if "://" in server_url:
        return urlunsplit(urlsplit(server_url)._replace(path="/" + dbname))
    return f"{server_url} dbname='{dbname}'"  # libpq: the last of a repeated keyword wins


def _django_env(database: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PEER_", "DJANGO_", "PYTHON"))}
    env.update({"DJANGO_SETTINGS_MODULE": "peersite.settings", "PEER_DATABASE_URL": database,
                "PYTHONDONTWRITEBYTECODE": "1"})
    env.update(extra)
    return env


def seed(superuser_url: str, dbname: str, users: int, per_user: int, heavy: int) -> dict:
    """Drop and create dbname on superuser_url's server, run Django's migrations, load seed.sql.

    Returns what the seed command reports: {"notifications": ..., "unread": ..., "seconds": ...}.
    """
    _require_venv()
    completed = subprocess.run(
        [str(PYTHON), "manage.py", "peer_seed", "--server-url", superuser_url, "--users", str(users),
         "--per-user", str(per_user), "--heavy", str(heavy)],
        cwd=HERE, env=_django_env(database_url(superuser_url, dbname)), capture_output=True, text=True)
    if completed.returncode != 0:
        raise SystemExit(f"peer seed failed:\n{completed.stdout}\n{completed.stderr}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


# ---- serve ------------------------------------------------------------------------------------

def serve_command(port: int) -> list[str]:
    return [str(PYTHON), "-m", "gunicorn", "peersite.wsgi:application", "--workers", str(WORKERS),
            "--worker-class", "sync", "--bind", f"127.0.0.1:{port}", "--chdir", str(HERE),
            "--log-level", "warning"]


def serve_env(database_url_: str, jwt_secret: str, redis_url: str | None) -> dict[str, str]:
    return _django_env(database_url_, PEER_JWT_SECRET=jwt_secret, PEER_REDIS_URL=redis_url or "",
                       PEER_SECRET_KEY=os.urandom(32).hex())


def start(database_url: str, port: int, jwt_secret: str, redis_url: str | None = None,
          log_path: Path | None = None, timeout: float = 30) -> subprocess.Popen:
    """Start the peer's gunicorn in its own process group; return once /healthz answers 200."""
    _require_venv()
    log = open(log_path, "ab") if log_path else subprocess.DEVNULL
    try:
        proc = subprocess.Popen(serve_command(port), cwd=HERE,
                                env=serve_env(database_url, jwt_secret, redis_url),
                                stdout=log, stderr=log, start_new_session=True)
    finally:
        if log_path:
            log.close()
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise SystemExit(f"the peer's gunicorn exited ({proc.returncode})"
                             + (f"; see {log_path}" if log_path else ""))
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{HEALTH_PATH}", timeout=1) as response:
                if response.status == 200:
                    return proc
        except (OSError, urllib.error.URLError):
            pass
        if time.monotonic() > deadline:
            stop(proc)
            raise SystemExit(f"the peer did not answer on port {port} within {timeout:.0f} s")
        time.sleep(0.1)


def stop(proc: subprocess.Popen) -> None:
    """SIGTERM the peer's process group (gunicorn and its workers), SIGKILL after 15 s."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        except ProcessLookupError:
            proc.wait()


# ---- the proof run ----------------------------------------------------------------------------

def user_id(n: int) -> str:
    """As bench/run.py: the uuid of typical user n."""
    return str(uuid.UUID(hashlib.md5(f"bench-user-{n}".encode()).hexdigest()))


HEAVY_USER = str(uuid.UUID(hashlib.md5(b"bench-heavy").hexdigest()))


def token(jwt_secret: str, sub: str, hours: float = 2) -> str:
    """An HS256 JWT as the service's issue_token signs it (standard library only)."""
    import base64
    import hmac

    def b64(data: bytes) -> bytes:
        return base64.urlsafe_b64encode(data).rstrip(b"=")

    now = int(time.time())
    header = b64(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())
    claims = b64(json.dumps({"sub": sub, "iat": now, "nbf": now, "exp": now + int(hours * 3600)},
                            separators=(",", ":")).encode())
    signature = b64(hmac.new(jwt_secret.encode(), header + b"." + claims, hashlib.sha256).digest())
    return (header + b"." + claims + b"." + signature).decode()


def get(url: str, bearer: str | None = None) -> tuple[int, dict]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {bearer}"} if bearer else {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def check(superuser_url: str, users: int, per_user: int, heavy: int, redis_url: str | None,
          wrk_seconds: int) -> int:
    """Seed a small data set, serve it, check the answers against the seed, then wrk each path."""
    import secrets
    import shutil

    dbname = f"nt_peer_check_{uuid.uuid4().hex[:8]}"
    report = {"seed": seed(superuser_url, dbname, users, per_user, heavy)}
    say(f"seeded: {report['seed']}")
    failures = []
    expect_rows = users * per_user + heavy
    unread_per_user = sum(1 for g in range(1, per_user + 1) if 1 <= g % 10 <= 3)
    if report["seed"]["notifications"] != expect_rows:
        failures.append(f"{report['seed']['notifications']} rows, expected {expect_rows}")
    secret = secrets.token_urlsafe(48)
    try:
        for limits in ([None, redis_url] if redis_url else [None]):
            port = free_port()
            proc = start(database_url(superuser_url, dbname), port, secret, limits)
            base = f"http://127.0.0.1:{port}"
            label = "limits on Redis" if limits else "limits off"
            try:
                typical, heavy_token = token(secret, user_id(7)), token(secret, HEAVY_USER)
                checks = [
                    ("typical unread_count", get(base + PATHS["unread_count"], typical),
                     lambda body: body == {"unread_count": unread_per_user}),
                    ("heavy unread_count", get(base + PATHS["unread_count"], heavy_token),
                     lambda body: body == {"unread_count": heavy}),
                    ("typical list_first", get(base + PATHS["list_first"], typical),
                     lambda body: len(body["items"]) == min(20, per_user)
                     and [i["timestamp"] for i in body["items"]]
                     == sorted((i["timestamp"] for i in body["items"]), reverse=True)
                     and all(i["recipient"] == 7 for i in body["items"])),
                    ("heavy list_first", get(base + PATHS["list_first"], heavy_token),
                     lambda body: len(body["items"]) == min(20, heavy)
                     and body["items"][0]["description"].startswith("Someone mentioned you #1.")),
                    ("no token", get(base + PATHS["unread_count"]),
                     lambda body: body["code"] == "missing_token"),
                    ("bad signature", get(base + PATHS["unread_count"], token("wrong", user_id(7))),
                     lambda body: body["code"] == "invalid_token"),
                    ("unknown user", get(base + PATHS["unread_count"], token(secret, str(uuid.uuid4()))),
                     lambda body: body["code"] == "unknown_user"),
                ]
                for name, (status, body), ok in checks:
                    expected_status = 401 if name in ("no token", "bad signature", "unknown user") else 200
                    good = status == expected_status and ok(body)
                    say(f"  {'✓' if good else '✗'} [{label}] {name}: {status} "
                        f"{json.dumps(body)[:160]}")
                    if not good:
                        failures.append(f"[{label}] {name}")
                if wrk_seconds and shutil.which("wrk"):
                    tokens = [token(secret, user_id(n)) for n in range(1, users + 1)]
                    for scenario, path in PATHS.items():
                        report[f"wrk {scenario}, {label}"] = wrk(base, path, tokens, wrk_seconds)
                        say(f"  wrk -t2 -c16 -d{wrk_seconds}s {scenario} ({label}): "
                            f"{report[f'wrk {scenario}, {label}']}")
                if limits:  # one user past the read budget (600/minute): refused with 429
                    spender, allowed = token(secret, user_id(users)), 0
                    for _ in range(1300):  # a fixed window may roll over once in between
                        status, body = get(base + PATHS["unread_count"], spender)
                        if status != 200:
                            break
                        allowed += 1
                    good = status == 429 and body["code"] == "rate_limited" and allowed <= 1200
                    say(f"  {'✓' if good else '✗'} [{label}] one user's budget: {allowed} answered, "
                        f"then {status} {json.dumps(body)}")
                    if not good:
                        failures.append(f"[{label}] rate limit")
            finally:
                stop(proc)
    finally:
        subprocess.run([str(PYTHON), "-c", (
            "import psycopg, sys; c = psycopg.connect(sys.argv[1], autocommit=True); "
            "c.execute('DROP DATABASE IF EXISTS \"%s\" WITH (FORCE)' % sys.argv[2])"), superuser_url, dbname],
            check=False)
    print(json.dumps(report, indent=2))
    if failures:
        say("FAILED: " + ", ".join(failures))
        return 1
    say("peer check passed")
    return 0


def wrk(base: str, path: str, tokens: list[str], seconds: int) -> dict:
    """wrk -t2 -c16 through bench/scenario.lua, cycling over the users' tokens (one user's budget
    would be spent within a second with the limits on): req/s, p50/p99 and the non-2xx count."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="peer-wrk-") as work:
        data, result = Path(work) / "requests.lua", Path(work) / "result.json"
        data.write_text("return {" + ", ".join(
            '{"GET", "%s", {["Authorization"] = "Bearer %s"}}' % (path, bearer) for bearer in tokens) + "}\n")
        env = {**os.environ, "BENCH_DATA": str(data), "BENCH_RESULT": str(result), "BENCH_THREADS": "2"}
        subprocess.run(["wrk", "-t2", "-c16", f"-d{seconds}s", "--timeout", "5s", "-s",
                        str(ROOT / "bench" / "scenario.lua"), base], env=env, capture_output=True, check=True)
        raw = json.loads(result.read_text())
    latency = raw["latency_us"]
    return {"rps": round(raw["requests"] / (raw["duration_us"] / 1e6), 1),
            "p50_ms": round(latency["p50"] / 1000, 2), "p99_ms": round(latency["p99"] / 1000, 2),
            "non_2xx": raw["errors"]["status"]}


# ---- command line -----------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser("setup", help="create .data/peer-venv with the pinned packages (idempotent)")
    p.add_argument("--python", help="interpreter for the venv (default: this one)")
    p = commands.add_parser("seed", help="(re)create, migrate and seed a database")
    p.add_argument("--database-url", required=True, help="superuser URL to the PostgreSQL server")
    p.add_argument("--dbname", required=True)
    p.add_argument("--users", type=int, default=10_000)
    p.add_argument("--per-user", type=int, default=100)
    p.add_argument("--heavy", type=int, default=100_000)
    p = commands.add_parser("serve", help="gunicorn, 2 sync workers, in the foreground")
    p.add_argument("--database-url", required=True, help="URL of the seeded database")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--jwt-secret", required=True)
    limits = p.add_mutually_exclusive_group()
    limits.add_argument("--redis-url", help="per-user rate limits on this Redis (django-ratelimit)")
    limits.add_argument("--no-limits", action="store_true", help="rate limits off (also without --redis-url)")
    p = commands.add_parser("check", help="seed a small data set, serve it, check the answers, wrk each path")
    p.add_argument("--database-url", required=True, help="superuser URL to the PostgreSQL server")
    p.add_argument("--redis-url", help="also check and wrk with the limits on this Redis")
    p.add_argument("--users", type=int, default=100)
    p.add_argument("--per-user", type=int, default=100)
    p.add_argument("--heavy", type=int, default=5000)
    p.add_argument("--wrk-seconds", type=int, default=5, help="0: no wrk")
    args = parser.parse_args(argv)

    if args.command == "setup":
        say(f"ready: {setup(args.python)}")
    elif args.command == "seed":
        print(json.dumps(seed(args.database_url, args.dbname, args.users, args.per_user, args.heavy)))
    elif args.command == "serve":
        _require_venv()
        os.chdir(HERE)
        env = serve_env(args.database_url, args.jwt_secret, None if args.no_limits else args.redis_url)
        command = serve_command(args.port)
        os.execve(command[0], command, env)  # gunicorn becomes this process: stop it by its PID
    elif args.command == "check":
        return check(args.database_url, args.users, args.per_user, args.heavy, args.redis_url,
                     args.wrk_seconds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
