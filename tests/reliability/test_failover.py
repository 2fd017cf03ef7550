"""PostgreSQL failover under load, Jepsen-style, with real pg_auto_failover (monitor + two nodes).

gunicorn (2 workers) reaches the pair through one multi-host DATABASE_URL. A bounded load of
creates (each with a unique dedupe_key, retried by the client with the same key on a 503 or a
lost reply), reads, marks and bulk mark-reads runs while the primary's whole process tree is
killed; the old node rejoins as a standby and the service survives a second failover back; and a
planned switchover. Then, on the new primary: every acknowledged create is stored exactly once,
nothing that was never requested exists, and every user's counts equal COUNT(*) ground truth.
The figures printed here are the ones docs/RELIABILITY.md quotes.
"""
from __future__ import annotations

import http.client
import itertools
import re
import secrets
import shutil
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field

import psycopg
import pytest
from machine_tools import skip_unless_ci

from failover import AutoFailoverCluster, pg_autoctl_missing, private_dir
from harness import APP_ROLE, Gunicorn, free_port, gunicorn_env, request, user_token

API = "/api/v1"
POOL_TIMEOUT = 1.0  # DB_POOL_TIMEOUT of the test gunicorn (harness.gunicorn_env)
SLACK = 0.75  # scheduling noise on a loaded 2-core machine
THREADS = 6
USERS = 4
TYPES = ("comment", "mention")
CREATE_GIVE_UP_SECONDS = 60  # a create still failing after this is a failure of the test

pytestmark = pytest.mark.e2e


@dataclass
class Outcome:
    kind: str
    started: float
    elapsed: float
    status: int | None  # None: no HTTP response (connection refused or dropped)
    code: str | None = None
    retry_after: str | None = None
    error: str | None = None
    body: dict = field(default_factory=dict)


class Workload:
    """Client threads: creates retried until acknowledged, reads, single and bulk mark-reads."""

    def __init__(self, port: int, env: dict, users: list[str], prefix: str):
        self.port, self.users, self.prefix = port, users, prefix
        self.service = {"X-Service-Token": env["SERVICE_TOKEN"]}
        self.user_headers = {u: {"Authorization": f"Bearer {user_token(env, u)}"} for u in users}
        self.outcomes: list[Outcome] = []
        self.attempted: dict[str, str] = {}  # dedupe key -> user, for every create ever sent
        self.acked: dict[str, tuple[str, str, int, str]] = {}  # key -> (user, id, status, result)
        self.tries: dict[str, list] = defaultdict(list)
        self.ids: dict[str, list[str]] = defaultdict(list)  # user -> acknowledged notification ids
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(THREADS)]

    def _send(self, kind: str, method: str, path: str, body=None, headers=None) -> Outcome:
        started = time.monotonic()
        try:
            r = request(self.port, method, path, body, headers, timeout=10)
            payload = r.body if isinstance(r.body, dict) else {}
            outcome = Outcome(kind, started, r.elapsed, r.status, payload.get("code"),
                              r.headers.get("retry-after"), body=payload)
        except (OSError, http.client.HTTPException) as exc:
            outcome = Outcome(kind, started, time.monotonic() - started, None, error=repr(exc))
        self.outcomes.append(outcome)
        return outcome

    def _create(self, index: int, n: int) -> None:
        key = f"{self.prefix}-{index}-{n}"
        user = self.users[(index + n) % len(self.users)]
        body = {"user_id": user, "notification_type": TYPES[n % 2], "title": f"failover {n}", "dedupe_key": key}
        self.attempted[key] = user
        give_up = time.monotonic() + CREATE_GIVE_UP_SECONDS
        while time.monotonic() < give_up:
            o = self._send("create", "POST", f"{API}/notifications", body, self.service)
            if o.status in (200, 201):
                result = o.body["results"][0]
                self.tries[key].append((o.status, result["result"]))
                notification_id = result["notification"]["notification_id"]
                self.acked[key] = (user, notification_id, o.status, result["result"])
                self.ids[user].append(notification_id)
                return
            self.tries[key].append((o.status, o.code or o.error))
            time.sleep(0.1)  # a 503 or a lost reply: retry with the same key
        self.failures.append(f"create {key} never acknowledged: {self.tries[key][-3:]}")

    def _run(self, index: int) -> None:
        for n in itertools.count():
            if self._stop.is_set():
                return
            user = self.users[(index + n) % len(self.users)]
            headers = self.user_headers[user]
            step = n % 6
            if step in (0, 3):
                self._create(index, n)
            elif step == 1:
                self._send("list", "GET", f"{API}/notifications?limit=5", headers=headers)
            elif step == 2 and self.ids[user]:
                notification_id = self.ids[user][(n * 7) % len(self.ids[user])]
                self._send("mark", "PUT", f"{API}/notifications/{notification_id}/read", headers=headers)
            elif step == 4:
                self._send("count", "GET", f"{API}/notifications/unread/count", headers=headers)
            elif step == 5 and n % 4 == 1:
                self._send("bulk", "POST", f"{API}/notifications/mark-read",
                           {"notification_type": TYPES[index % 2]}, headers)
            time.sleep(0.01)

    def __enter__(self) -> "Workload":
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(CREATE_GIVE_UP_SECONDS + 15)

    def wait_for_recovery(self, moment: float, count: int = 20, timeout: float = 45) -> float:
        """Until requests fail (503) after `moment` and then `count` succeed; returns when the first did."""
        deadline = time.monotonic() + timeout
        while True:
            outcomes = list(self.outcomes)
            failed = [o.started for o in outcomes if o.started > moment and o.status == 503]
            if failed:
                ok = [o.started for o in outcomes if o.started > failed[0] and o.status in (200, 201)]
                if len(ok) >= count:
                    return min(ok)
            assert time.monotonic() < deadline, f"no outage and recovery: {summary(outcomes)}"
            time.sleep(0.1)


def summary(outcomes: list[Outcome]) -> str:
    counts = Counter((o.status, o.code) for o in outcomes)
    return ", ".join(f"{status}/{code}: {n}" for (status, code), n in sorted(counts.items(), key=str))


def unavailability(outcomes: list[Outcome], since: float) -> tuple[float, int]:
    """(seconds from the first 503 after `since` to the end of the last one, number of 503s)."""
    failed = [o for o in outcomes if o.started >= since and o.status == 503]
    if not failed:
        return 0.0, 0
    return max(o.started + o.elapsed for o in failed) - min(o.started for o in failed), len(failed)


def check_answers(outcomes: list[Outcome]) -> None:
    """Every answer is a success or a quick 503 database_unavailable with Retry-After."""
    dropped = [o for o in outcomes if o.status is None]
    assert not dropped, f"requests without an HTTP response: {dropped[:3]}"
    assert {o.status for o in outcomes} <= {200, 201, 503}, summary(outcomes)
    for o in outcomes:
        if o.status == 503:
            assert o.code == "database_unavailable" and o.retry_after, o
    slowest = max(o.elapsed for o in outcomes)
    assert slowest < POOL_TIMEOUT + SLACK, f"a response took {slowest:.2f}s (DB_POOL_TIMEOUT {POOL_TIMEOUT}s)"


def check_ground_truth(cluster: AutoFailoverCluster, server: Gunicorn, load: Workload) -> dict:
    """Exactly once, nothing unrequested, counts == COUNT(*): on the current primary."""
    primary = cluster.primary()
    assert load.failures == [], load.failures[:3]
    with psycopg.connect(cluster.admin(primary), autocommit=True) as conn:
        rows = conn.execute(
            "SELECT dedupe_key, user_id::text, notification_id::text FROM activity.notifications"
            " WHERE user_id = ANY(%s::uuid[])", (load.users,)).fetchall()
        truth = {user: dict(conn.execute(
            "SELECT notification_type, count(*) FROM activity.notifications"
            " WHERE user_id = %s AND status = 'unread' GROUP BY 1", (user,)).fetchall()) for user in load.users}
        unseen = _unseen_truth(conn, load.users)
    stored = Counter(key for key, _, _ in rows)
    duplicates = {key: n for key, n in stored.items() if n > 1}
    unrequested = [(key, user) for key, user, _ in rows if load.attempted.get(key) != user]
    by_key = {key: (user, notification_id) for key, user, notification_id in rows}
    lost = [key for key, (user, notification_id, _, _) in load.acked.items()
            if by_key.get(key) != (user, notification_id)]
    wrong_result = [key for key, tries in load.tries.items()
                    if tries[-1][0] in (200, 201) and tries[-1][1] != ("created" if tries[-1][0] == 201 else "duplicate")]
    mismatches = []
    for user in load.users:
        r = request(server.port, "GET", f"{API}/notifications/unread/count", headers=load.user_headers[user])
        assert r.status == 200, r.body
        expected = {"unread_count": sum(truth[user].values()), "by_type": truth[user]}
        got = {"unread_count": r.body["unread_count"], "by_type": r.body["by_type"]}
        if "unseen_count" in r.body and unseen is not None:
            expected["unseen_count"], got["unseen_count"] = unseen.get(user, 0), r.body["unseen_count"]
        if got != expected:
            mismatches.append((user, got, expected))
    figures = {"acknowledged": len(load.acked), "stored": len(rows), "lost": len(lost),
               "duplicates": len(duplicates), "unrequested": len(unrequested), "count_mismatches": len(mismatches),
               "replayed": sum(1 for v in load.acked.values() if v[3] == "duplicate")}
    print(f"ground truth on {primary}: {figures}")
    assert lost == [], f"acknowledged creates lost: {lost[:5]}"
    assert duplicates == {}, duplicates
    assert unrequested == [], unrequested[:5]
    assert wrong_result == [], [(k, load.tries[k]) for k in wrong_result[:3]]
    assert mismatches == [], mismatches
    assert len(load.acked) == len(load.attempted)  # every create was eventually acknowledged
    return figures


def _unseen_truth(conn: psycopg.Connection, users: list[str]) -> dict[str, int] | None:
    """Inbox v2's unseen count from the rows, when the schema has `seen_at` (None before it)."""
    has_seen = conn.execute("SELECT 1 FROM information_schema.columns WHERE table_schema = 'activity'"
                            " AND table_name = 'notifications' AND column_name = 'seen_at'").fetchone()
    if not has_seen:
        return None
    return dict(conn.execute(
        "SELECT user_id::text, count(*) FROM activity.notifications WHERE user_id = ANY(%s::uuid[])"
        " AND status IN ('unread', 'read') AND seen_at IS NULL"
        " AND (expires_at IS NULL OR expires_at > now()) GROUP BY 1", (users,)).fetchall())


def app_sessions(cluster: AutoFailoverCluster, node: str) -> int:
    with psycopg.connect(cluster.admin(node, dbname="postgres"), autocommit=True) as conn:
        return conn.execute("SELECT count(*) FROM pg_stat_activity WHERE usename = %s", (APP_ROLE,)).fetchone()[0]


def operator_view(server: Gunicorn) -> tuple[Counter, Counter, list[float]]:
    """The log lines of a switch: 503s by reason, discarded connections, each worker's outage."""
    events = server.log_events()
    reasons = Counter(e.get("reason") for e in events if e.get("event") == "database_exception")
    discarded = Counter(e.get("reason") for e in events if e.get("event") == "database_connection_discarded")
    recoveries = [e["outage_seconds"] for e in events if e.get("event") == "database_recovered"]
    print(f"503 reasons {dict(reasons)}; discarded connections {dict(discarded)}; "
          f"outages seen by the workers {recoveries}")
    return reasons, discarded, recoveries


def metric(server: Gunicorn, name: str) -> float:
    text = request(server.port, "GET", "/metrics").raw.decode()
    return sum(float(v) for v in re.findall(r"^%s(?:\{[^}]*\})? ([0-9.e+]+)$" % re.escape(name), text, re.M))


# -- fixtures ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def cluster():
    reason = pg_autoctl_missing()
    if reason:
        skip_unless_ci(reason)
    work = private_dir("nt-failover-")
    formation = AutoFailoverCluster(work)
    try:
        started = time.monotonic()
        formation.start()
        from notifications_api.db import admin, migrate

        password = secrets.token_urlsafe(24)
        migrate.migrate(formation.admin("node_a"), echo=lambda *args, **kwargs: None)
        admin.provision_app_user(formation.admin("node_a"), APP_ROLE, password)
        formation.app = formation.app_conninfo(password)
        print(f"\npg_auto_failover formation up and migrated in {time.monotonic() - started:.1f}s")
        yield formation
    finally:
        formation.close()
        shutil.rmtree(work, ignore_errors=True)


@pytest.fixture
def service(cluster, tmp_path):
    """gunicorn (2 workers, pool timeout 1 s) over the pair's multi-host DATABASE_URL."""
    metrics_dir = tmp_path / "prometheus"
    metrics_dir.mkdir()
    port = free_port()
    env = gunicorn_env(cluster.app, metrics_dir, None, PORT=str(port))
    server = Gunicorn(env=env, log_path=tmp_path / "gunicorn.log", port=port)
    try:
        yield server.start()
    finally:
        server.close()


def make_users(cluster: AutoFailoverCluster) -> list[str]:
    from notifications_api.db import admin

    return [str(admin.create_user(cluster.admin(cluster.primary()), email=f"{secrets.token_hex(6)}@example.test"))
            for _ in range(USERS)]


# -- the tests ---------------------------------------------------------------------------------

def test_killing_the_primary_twice_loses_no_acknowledged_write(cluster, service):
    assert cluster.primary() == "node_a"
    users = make_users(cluster)
    figures = {}
    with Workload(service.port, service.env, users, "kill") as load:
        time.sleep(1.5)
        # 1. node_a's whole process tree dies; the monitor promotes node_b.
        killed_at = time.monotonic()
        cluster.kill_node("node_a")
        first_ok = load.wait_for_recovery(killed_at)
        figures["kill 1"] = (first_ok - killed_at, *unavailability(load.outcomes, killed_at))
        assert cluster.primary() == "node_b"
        # 2. node_a comes back (`pg_autoctl run`): demoted, rewound, a standby of node_b.
        cluster.run_node("node_a")
        rejoin = cluster.wait_settled("node_b")
        assert app_sessions(cluster, "node_a") == 0  # nothing of ours talks to the standby
        # 3. and the service survives a failover back.
        time.sleep(1.0)
        killed_at = time.monotonic()
        cluster.kill_node("node_b")
        first_ok = load.wait_for_recovery(killed_at)
        figures["kill 2"] = (first_ok - killed_at, *unavailability(load.outcomes, killed_at))
        assert cluster.primary() == "node_a"
        time.sleep(1.0)
    outcomes = load.outcomes
    print(f"\n{len(outcomes)} requests: {summary(outcomes)}; node_a rejoined as a standby in {rejoin:.1f}s")
    for name, (recovered, window, count) in figures.items():
        print(f"{name}: first success {recovered:.2f}s after the kill; 503s for {window:.2f}s ({count} answers)")
    check_answers(outcomes)
    check_ground_truth(cluster, service, load)

    # What the operator sees: 503s with their reason, connections discarded, the time to recovery.
    reasons, discarded, recoveries = operator_view(service)
    assert reasons and None not in reasons, reasons
    assert recoveries and all(0 < s < 60 for s in recoveries)
    assert discarded, "the pool never said it dropped the dead primary's connections"
    assert metric(service, "notifications_api_db_outage_seconds_count") == len(recoveries)
    assert metric(service, "notifications_api_db_unavailable_total") == sum(reasons.values())

    # Leave the formation as the next test expects it: node_b back as node_a's standby.
    cluster.run_node("node_b")
    cluster.wait_settled("node_a")


def test_a_planned_switchover_costs_about_a_second(cluster, service):
    cluster.wait_settled("node_a")
    users = make_users(cluster)
    with Workload(service.port, service.env, users, "switch") as load:
        time.sleep(1.5)
        started = time.monotonic()
        cluster.perform_failover()
        done = time.monotonic()
        assert cluster.primary() == "node_b"
        load.wait_for_recovery(started)
        time.sleep(1.0)
    window, count = unavailability(load.outcomes, started)
    print(f"\nswitchover: pg_autoctl took {done - started:.2f}s; 503s for {window:.2f}s ({count} answers); "
          f"{len(load.outcomes)} requests: {summary(load.outcomes)}")
    check_answers(load.outcomes)
    check_ground_truth(cluster, service, load)
    reasons, _, _ = operator_view(service)
    assert None not in reasons, reasons
    cluster.wait_settled("node_b")
    assert app_sessions(cluster, "node_a") == 0  # the demoted primary keeps none of our connections
