"""A pg_auto_failover switchover under read load, with the formation's secondary as the read target:
no read answered 5xx, and no read older than the reader's own acknowledged write."""
from __future__ import annotations

import secrets
import shutil
import sys
import threading
import time
from pathlib import Path

import pytest

from machine_tools import skip_unless_ci
from prometheus_client import REGISTRY

from notifications_api.db import replica as replica_module
from notifications_api.web.auth import issue_token

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "reliability"))
from failover import AutoFailoverCluster, pg_autoctl_missing, private_dir  # noqa: E402
from harness import APP_ROLE  # noqa: E402

pytestmark = pytest.mark.e2e
P = "/api/v1"


def served_by_standby() -> float:
    return REGISTRY.get_sample_value("notifications_api_db_reads_total",
                                     {"target": "standby", "reason": "replayed"}) or 0.0


@pytest.fixture(scope="module")
def formation():
    reason = pg_autoctl_missing()
    if reason:
        skip_unless_ci(reason)
    work = private_dir("nt-replica-failover-")
    cluster = AutoFailoverCluster(work)
    try:
        cluster.start()
        from notifications_api.db import admin, migrate

        password = secrets.token_urlsafe(24)
        migrate.migrate(cluster.admin("node_a"), echo=lambda *args, **kwargs: None)
        admin.provision_app_user(cluster.admin("node_a"), APP_ROLE, password)
        cluster.app = cluster.app_conninfo(password)
        yield cluster
    finally:
        cluster.close()
        shutil.rmtree(work, ignore_errors=True)


def test_a_switchover_under_read_load_fails_no_read_and_serves_nothing_stale(formation, app_factory):
    from notifications_api.db import admin

    formation.wait_settled("node_a")
    app = app_factory({
        # both nodes in both URLs: the pools find the primary (read-write) and the standby. During
        # the switch the promoted node is still fenced read-only for seconds: with prefer-standby
        # the read pool takes it then (it has every write), with standby it would refuse it.
        "DATABASE_URL": formation.app, "DATABASE_READ_URL": formation.app, "DB_POOL_TIMEOUT": 1.0,
        "DB_READ_TARGET_SESSION_ATTRS": "prefer-standby",
        "JWT_SECRET": "j" * 48, "JWT_SECRET_PREVIOUS": "", "SERVICE_TOKEN": "s" * 48,
        "SERVICE_TOKEN_PREVIOUS": "", "ENVIRONMENT": "test", "RATE_LIMIT_ENABLED": False,
        "LOG_LEVEL": "WARNING", "REDIS_URL": "", "REDIS_HOST": "", "METRICS_TOKEN": "",
        "EMAIL_API_URL": "", "CORS_ORIGINS": (), "TRUSTED_PROXY_HOPS": 0})
    users = [str(admin.create_user(formation.admin("node_a"), email=f"{secrets.token_hex(6)}@example.test"))
             for _ in range(4)]
    service = {"X-Service-Token": app.config["SERVICE_TOKEN"]}
    for user in users:
        created = app.test_client().post(f"{P}/notifications", headers=service,
                                         json={"user_id": user, "notification_type": "comment", "title": "seed"})
        assert created.status_code == 201
    reads: list[int] = []
    writer_reads: list[int] = []
    # what routed the writer's reads (the replica's decisions on its thread), for a failure's message
    routed: list[tuple[float, str, object]] = []
    writer_thread: list[threading.Thread] = []
    replica = replica_module.get_replica(app)
    replica.observers.append(lambda event, value: routed.append((round(time.monotonic(), 3), event, value))
                             if writer_thread and threading.current_thread() is writer_thread[0] else None)
    stale: list[str] = []
    acknowledged: list[str] = []
    stop = threading.Event()

    def reader(user: str) -> None:
        client = app.test_client()
        headers = {"Authorization": f"Bearer {issue_token(app.config, user)}"}
        while not stop.is_set():
            for path in ("/notifications/unread/count", "/notifications"):
                reads.append(client.get(P + path, headers=headers).status_code)

    def writer(user: str) -> None:
        """Writes, then reads its own write back: the list must hold the last acknowledged title."""
        client = app.test_client()
        headers = {"Authorization": f"Bearer {issue_token(app.config, user)}"}
        n = 0
        while not stop.is_set():
            n += 1
            title = f"write {n}"
            response = client.post(f"{P}/notifications", headers=service,
                                   json={"user_id": user, "notification_type": "comment", "title": title})
            if response.status_code == 201:
                acknowledged.append(title)
            listed = client.get(f"{P}/notifications", headers=headers)
            writer_reads.append(listed.status_code)
            if listed.status_code == 200 and acknowledged:
                titles = [item["title"] for item in listed.get_json()["items"]]
                if acknowledged[-1] not in titles:
                    stale.append(f"{acknowledged[-1]} missing from {titles[:3]}; routed: {routed[-4:]}; "
                                 f"states: {formation.states()}")
            time.sleep(0.01)

    threads = [threading.Thread(target=reader, args=(user,)) for user in users[1:]]
    writer_thread.append(threading.Thread(target=writer, args=(users[0],)))
    threads.append(writer_thread[0])
    for thread in threads:
        thread.start()
    try:
        time.sleep(1.0)
        formation.perform_failover()
        assert formation.primary() == "node_b"
        formation.wait_settled("node_b")  # node_a is back, as the secondary: the new read target
        before = served_by_standby()
        deadline = time.monotonic() + replica_module.NOT_STANDBY_SECONDS + 10
        while served_by_standby() == before and time.monotonic() < deadline:
            time.sleep(0.2)
        assert served_by_standby() > before, "the reads never went back to a standby after the switch"
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
    counted = {status: reads.count(status) for status in set(reads)}
    print(f"\nreads during the switchover: {counted}; the writer's reads: "
          f"{ {s: writer_reads.count(s) for s in set(writer_reads)} }; acknowledged writes: {len(acknowledged)}")
    assert reads and set(reads) <= {200}, counted
    assert not stale, "\n".join(stale[:5])
    assert len(acknowledged) > 1
    formation.wait_settled("node_b")
