"""Real failover engines for the availability tests: pg_auto_failover (a monitor and two PostgreSQL
nodes) and Redis Sentinel (a primary, a replica, three sentinels), all on free loopback ports in a
private directory, started and killed by the test that owns them (never the system services).
"""
from __future__ import annotations

import glob
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import psutil
import psycopg
from psycopg.conninfo import make_conninfo

from harness import APP_DB, APP_ROLE, free_port

# The monitor's defaults make a killed primary take ~51 s to fail over; these bring it to seconds.
# Fine for a test on loopback, not a production recommendation (docs/PRODUCTION.md).
MONITOR_SETTINGS = {
    "pgautofailover.node_considered_unhealthy_timeout": "4000",
    "pgautofailover.primary_demote_timeout": "4000",
    "pgautofailover.health_check_period": "1000",
    "pgautofailover.health_check_timeout": "1000",
    "pgautofailover.health_check_max_retries": "1",
    "pgautofailover.health_check_retry_delay": "500",
}


def pg_autoctl_missing() -> str | None:
    """Why the pg_auto_failover tests cannot run here, or None."""
    if shutil.which("pg_autoctl") is None:
        return "pg_autoctl is not installed (Debian package postgresql-15-auto-failover)"
    if _bindir() is None:
        return "no PostgreSQL with the pgautofailover extension found under /usr/lib/postgresql"
    if os.geteuid() == 0:
        try:
            import pwd
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root but there is no `postgres` user to run pg_autoctl as"
    return None


def _bindir() -> str | None:
    """The bin directory of the PostgreSQL major that has the pgautofailover extension installed."""
    for lib in sorted(glob.glob("/usr/lib/postgresql/*/lib/pgautofailover.so"), reverse=True):
        bindir = str(Path(lib).parent.parent / "bin")
        if os.path.exists(f"{bindir}/pg_ctl"):
            return bindir
    return None


def kill_tree(pid: int) -> list[int]:
    """SIGKILL a process and every descendant at once (children first found, then all killed)."""
    try:
        root = psutil.Process(pid)
        procs = [root] + root.children(recursive=True)
    except psutil.NoSuchProcess:
        return []
    for proc in procs:
        try:
            proc.send_signal(signal.SIGKILL)
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(procs, timeout=10)
    return [p.pid for p in procs]


class AutoFailoverCluster:
    """A pg_auto_failover formation: monitor + node_a (first primary) + node_b (synchronous standby).

    Run as the `postgres` OS user when we are root (PostgreSQL refuses to run as root), with the
    XDG_* directories inside `work`; trust authentication on loopback, no TLS.
    """

    NODES = ("node_a", "node_b")

    def __init__(self, work: Path):
        self.work = Path(work)
        self.bindir = _bindir()
        self.monitor_port = free_port()
        self.ports = {name: free_port() for name in self.NODES}
        self.processes: dict[str, subprocess.Popen] = {}
        self.env = {
            "PATH": f"{self.bindir}:{os.environ.get('PATH', '/usr/bin:/bin')}",
            "HOME": str(self.work), "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8",
            "XDG_CONFIG_HOME": str(self.work / "config"), "XDG_DATA_HOME": str(self.work / "data"),
            "XDG_RUNTIME_DIR": str(self.work / "run"), "PG_CONFIG": f"{self.bindir}/pg_config",
        }
        self._as = {}
        if os.geteuid() == 0:
            self._as = {"user": "postgres", "group": "postgres", "extra_groups": []}
        for directory in ("config", "data", "run"):
            (self.work / directory).mkdir(parents=True, exist_ok=True)
        if self._as:
            shutil.chown(self.work, "postgres", "postgres")
            for directory in ("config", "data", "run"):
                shutil.chown(self.work / directory, "postgres", "postgres")
        self.monitor_uri = f"postgres://autoctl_node@127.0.0.1:{self.monitor_port}/pg_auto_failover?sslmode=disable"

    # -- processes -----------------------------------------------------------------------------
    def _spawn(self, key: str, args: list[str]) -> subprocess.Popen:
        log = open(self.work / f"{key}.log", "a")
        process = subprocess.Popen(["pg_autoctl", *args], env=self.env, cwd=self.work, stdout=log,
                                   stderr=subprocess.STDOUT, start_new_session=True, **self._as)
        log.close()
        self.processes[key] = process
        return process

    def _common(self, pgdata: str, port: int) -> list[str]:
        return ["--pgdata", str(self.work / pgdata), "--pgport", str(port), "--hostname", "127.0.0.1",
                "--auth", "trust", "--no-ssl", "--pgctl", f"{self.bindir}/pg_ctl"]

    def start(self, timeout: float = 60) -> "AutoFailoverCluster":
        deadline = time.monotonic() + timeout
        self._spawn("monitor", ["create", "monitor", *self._common("monitor", self.monitor_port), "--run"])
        self._until(lambda: self._monitor_ready(), deadline, "the monitor did not start")
        with psycopg.connect(self.monitor_admin, autocommit=True) as conn:
            for name, value in MONITOR_SETTINGS.items():
                conn.execute(f"ALTER SYSTEM SET {name} = {value}")
            conn.execute("SELECT pg_reload_conf()")
        self._spawn("node_a", ["create", "postgres", *self._common("node_a", self.ports["node_a"]),
                               "--name", "node_a", "--dbname", APP_DB, "--monitor", self.monitor_uri, "--run"])
        self._until(lambda: self.states().get("node_a") == ("single", "single"), deadline,
                    "node_a did not become a single primary")
        self._spawn("node_b", ["create", "postgres", *self._common("node_b", self.ports["node_b"]),
                               "--name", "node_b", "--dbname", APP_DB, "--monitor", self.monitor_uri, "--run"])
        # pg_basebackup asks node_a for a spread checkpoint (a minute and more when idle): ask for
        # an immediate one while node_b clones, which finishes the one it waits for at once.
        self._until(lambda: self._checkpoint("node_a") and self.settled("node_a"), deadline,
                    "node_b did not become a secondary")
        return self

    def run_node(self, name: str) -> None:
        """Start a stopped node again (`pg_autoctl run`): it rejoins the formation by itself."""
        self._spawn(name, ["run", "--pgdata", str(self.work / name)])

    def kill_node(self, name: str) -> list[int]:
        """Kill the node's whole process tree (pg_autoctl, its supervisor, the postmaster, backends).

        Killing the postmaster alone does not fail over: pg_autoctl restarts it.
        """
        process = self.processes.pop(name)
        killed = kill_tree(process.pid)
        process.wait(10)
        return killed

    def perform_failover(self, timeout: float = 60) -> None:
        """A planned switchover (`pg_autoctl perform failover`), waiting until it is done."""
        subprocess.run(["pg_autoctl", "perform", "failover", "--monitor", self.monitor_uri,
                        "--wait", str(int(timeout))], env=self.env, cwd=self.work, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=timeout + 10, **self._as)

    def close(self) -> None:
        for key in list(self.processes):
            process = self.processes.pop(key)
            if process.poll() is None:
                kill_tree(process.pid)
            process.wait(10)

    # -- state ---------------------------------------------------------------------------------
    @property
    def monitor_admin(self) -> str:
        return f"host=127.0.0.1 port={self.monitor_port} user=postgres dbname=pg_auto_failover connect_timeout=2"

    def _monitor_ready(self) -> bool:
        try:
            with psycopg.connect(self.monitor_admin, autocommit=True) as conn:
                conn.execute("SELECT count(*) FROM pgautofailover.node")
            return True
        except psycopg.Error:
            return False

    def states(self) -> dict[str, tuple[str, str]]:
        """node name -> (reported state, goal state), as the monitor sees them."""
        try:
            with psycopg.connect(self.monitor_admin, autocommit=True) as conn:
                return {name: (reported, goal) for name, reported, goal in conn.execute(
                    "SELECT nodename, reportedstate::text, goalstate::text FROM pgautofailover.node").fetchall()}
        except psycopg.Error:
            return {}

    def primary(self) -> str | None:
        primaries = [name for name, (reported, goal) in self.states().items()
                     if reported == goal and reported in ("primary", "wait_primary", "single")]
        return primaries[0] if len(primaries) == 1 else None

    def settled(self, primary: str) -> bool:
        """`primary` is primary and the other node a streaming secondary: both steady."""
        other = [name for name in self.NODES if name != primary][0]
        states = self.states()
        return states.get(primary) == ("primary", "primary") and states.get(other) == ("secondary", "secondary")

    def wait_settled(self, primary: str, timeout: float = 60) -> float:
        started = time.monotonic()
        self._until(lambda: self.settled(primary), started + timeout,
                    f"{primary} primary with a secondary never settled")
        return time.monotonic() - started

    def _checkpoint(self, name: str) -> bool:
        try:
            with psycopg.connect(self.admin(name, dbname="postgres"), autocommit=True) as conn:
                conn.execute("CHECKPOINT")
        except psycopg.Error:
            pass
        return True

    def _until(self, check, deadline: float, message: str) -> None:
        while not check():
            dead = [key for key, p in self.processes.items() if p.poll() is not None]
            if time.monotonic() > deadline or dead:
                raise RuntimeError(f"{message} (exited: {dead}); states {self.states()}\n{self.logs()}")
            time.sleep(0.25)

    def logs(self, tail: int = 2000) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-tail:]}"
                         for p in sorted(self.work.glob("*.log")))

    # -- connection strings --------------------------------------------------------------------
    def admin(self, name: str, dbname: str = APP_DB) -> str:
        return f"host=127.0.0.1 port={self.ports[name]} user=postgres dbname={dbname} connect_timeout=2"

    def app_conninfo(self, password: str) -> str:
        """The service's DATABASE_URL: both nodes (libpq tries them in order), the app role."""
        return make_conninfo(host="127.0.0.1,127.0.0.1", port=f"{self.ports['node_a']},{self.ports['node_b']}",
                             dbname=APP_DB, user=APP_ROLE, password=password, connect_timeout=1)


def private_dir(prefix: str) -> Path:
    """A directory outside pytest's basetemp (mode 0700 there would lock the `postgres` user out)."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o755)
    return path


class SentinelRedis:
    """A Redis primary, one replica and three sentinels (`redis-server CONF --sentinel`) on free ports.

    Never the Debian redis-sentinel system service (26379): everything here is ours to kill.
    """

    MASTER = "mymaster"

    def __init__(self, work: Path, down_after_ms: int = 1000):
        self.work = Path(work)
        self.executable = shutil.which("redis-server")
        if self.executable is None:
            raise RuntimeError("redis-server is not installed")
        self.servers: dict[int, subprocess.Popen] = {}
        self.sentinels: dict[int, subprocess.Popen] = {}
        self.primary_port = self._server()
        self.replica_port = self._server("--replicaof", "127.0.0.1", str(self.primary_port))
        for _ in range(3):
            port = free_port()
            conf = self.work / f"sentinel-{port}.conf"
            conf.write_text("\n".join([
                f"port {port}", "bind 127.0.0.1", f"dir {self.work}",
                f"sentinel monitor {self.MASTER} 127.0.0.1 {self.primary_port} 2",
                f"sentinel down-after-milliseconds {self.MASTER} {down_after_ms}",
                f"sentinel failover-timeout {self.MASTER} 10000",
                f"sentinel parallel-syncs {self.MASTER} 1", ""]))
            self.sentinels[port] = self._spawn([str(conf), "--sentinel"], f"sentinel-{port}")
        deadline = time.monotonic() + 15
        while not (self._replicating() and self._sentinels_agree()):
            if time.monotonic() > deadline:
                self.close()
                raise RuntimeError("the Sentinel setup did not settle")
            time.sleep(0.1)

    def _spawn(self, args: list[str], name: str) -> subprocess.Popen:
        with open(self.work / f"{name}.log", "w") as log:
            return subprocess.Popen([self.executable, *args], stdout=log, stderr=subprocess.STDOUT,
                                    start_new_session=True)

    def _server(self, *extra: str) -> int:
        port = free_port()
        self.servers[port] = self._spawn(
            ["--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.work), *extra], f"redis-{port}")
        return port

    def client(self, port: int):
        import redis
        return redis.Redis(host="127.0.0.1", port=port, socket_timeout=1, socket_connect_timeout=1)

    def _replicating(self) -> bool:
        try:
            return self.client(self.replica_port).info("replication").get("master_link_status") == "up"
        except Exception:
            return False

    def _sentinels_agree(self) -> bool:
        """Every sentinel knows the replica and the other two sentinels."""
        try:
            for port in self.sentinels:
                master = self.client(port).execute_command("SENTINEL", "MASTER", self.MASTER)
                fields = dict(zip(master[::2], master[1::2]))
                if int(fields[b"num-slaves"]) < 1 or int(fields[b"num-other-sentinels"]) < 2:
                    return False
            return True
        except Exception:
            return False

    def master_port(self) -> int | None:
        """The primary's port as the sentinels' majority sees it."""
        seen = []
        for port in self.sentinels:
            try:
                host, master = self.client(port).execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.MASTER)
                seen.append(int(master))
            except Exception:
                continue
        for candidate in set(seen):
            if seen.count(candidate) >= 2:
                return candidate
        return None

    @property
    def uri(self) -> str:
        """The limiter's storage URI: every sentinel, then the service name."""
        hosts = ",".join(f"127.0.0.1:{port}" for port in self.sentinels)
        return f"redis+sentinel://{hosts}/{self.MASTER}"

    def kill_primary(self) -> int:
        port = self.master_port()
        process = self.servers.pop(port)
        process.kill()
        process.wait(10)
        return port

    def close(self) -> None:
        for process in [*self.servers.values(), *self.sentinels.values()]:
            if process.poll() is None:
                process.kill()
            process.wait(10)
        self.servers.clear()
        self.sentinels.clear()
