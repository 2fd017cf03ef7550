"""Live-update pieces that need no server: configuration, the publisher's bounded queue, deploy files."""
from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
import yaml

from notifications_api.live import publisher as publisher_module
from notifications_api.config import ConfigError, load_config
from notifications_api.live.publisher import Publisher

ROOT = Path(__file__).resolve().parents[2]
BASE = {"JWT_SECRET": "j" * 40, "SERVICE_TOKEN": "s" * 40}


def test_config_keys_are_validated():
    config = load_config(env={**BASE})
    assert config["GRIP_SIG_KEY"] == "" and config["GRIP_PUBLISH_URL"] == ()
    assert config["STREAM_TICKET_TTL_SECONDS"] == 3600
    config = load_config(env={**BASE, "GRIP_SIG_KEY": "k" * 40,
                              "GRIP_PUBLISH_URL": "http://a:5561/publish/, http://b:5561/publish/"})
    assert config["GRIP_PUBLISH_URL"] == ("http://a:5561/publish/", "http://b:5561/publish/")
    bad = {"GRIP_PUBLISH_URL": "ftp://pushpin/publish", "STREAM_TICKET_TTL_SECONDS": "5"}
    with pytest.raises(ConfigError) as raised:
        load_config(env={**BASE, "GRIP_SIG_KEY": "k" * 40, **bad})
    assert {problem.split()[0] for problem in raised.value.problems} == set(bad)
    with pytest.raises(ConfigError, match="GRIP_SIG_KEY is required when GRIP_PUBLISH_URL is set"):
        load_config(env={**BASE, "GRIP_PUBLISH_URL": "http://pushpin:5561/publish/"})
    production = {**BASE, "ENVIRONMENT": "production", "DB_PASSWORD": "p" * 20, "GRIP_SIG_KEY": "changeme"}
    with pytest.raises(ConfigError) as raised:
        load_config(env=production)
    assert any(problem.startswith("GRIP_SIG_KEY ") and "at least 32 characters" in problem
               for problem in raised.value.problems)
    assert "changeme" not in str(raised.value)


@pytest.mark.serial
def test_a_full_queue_drops_and_counts_without_blocking_or_raising(monkeypatch):
    monkeypatch.setattr(publisher_module, "QUEUE_BYTES", 3 * publisher_module.ENTRY_OVERHEAD)
    publisher = Publisher(("http://127.0.0.1:9/publish/",), database=None)
    publisher._ensure_thread = lambda: None  # nothing drains: the queue stays full
    started = time.perf_counter()
    publisher.changed([f"user-{n}" for n in range(10)])
    publisher.changed(["one-more"])
    assert time.perf_counter() - started < 0.1
    assert len(publisher._queue) == 3
    assert publisher.dropped == 8


def test_no_publish_url_means_no_queue_and_no_thread():
    publisher = Publisher((), database=None)
    publisher.changed(["a", "b"], [{"user_id": "a"}])
    assert not publisher._queue and publisher._thread is None and publisher.dropped == 0


def test_deploy_files_route_the_stream_to_pushpin_and_share_its_key():
    pushpin_conf = (ROOT / "deploy" / "pushpin" / "pushpin.conf").read_text()
    assert "sig_key=@GRIP_SIG_KEY@" in pushpin_conf
    docs = {f"{d['kind']}/{d['metadata']['name']}": d
            for d in yaml.safe_load_all((ROOT / "deploy" / "k8s" / "pushpin.yaml").read_text())}
    assert docs["ConfigMap/notifications-pushpin-config"]["data"]["pushpin.conf"] == pushpin_conf
    assert {"StatefulSet/notifications-pushpin", "Service/notifications-pushpin",
            "Service/notifications-pushpin-publish", "Deployment/notifications-stream-clock"} <= set(docs)
    clock = docs["Deployment/notifications-stream-clock"]["spec"]["template"]["spec"]["containers"][0]
    assert clock["command"] == ["notifications-api", "stream-clock"]
    compose = yaml.safe_load((ROOT / "deploy" / "docker-compose.yml").read_text())["services"]
    assert compose["pushpin"]["image"].startswith("fanout/pushpin:")
    assert compose["api"]["environment"]["GRIP_PUBLISH_URL"] == "http://pushpin:5561/publish/"
    assert compose["stream-clock"]["command"] == ["notifications-api", "stream-clock"]
    nginx = (ROOT / "deploy" / "nginx" / "notifications-api.conf").read_text()
    stream = re.search(r"location = /api/v1/notifications/stream \{(.*?)\n    \}", nginx, re.S).group(1)
    assert "proxy_pass http://notifications_pushpin;" in stream and "proxy_buffering off;" in stream


def _pushpin_publish_ports(conf: str) -> dict[str, str]:
    return dict(re.findall(r"^(push_in_spec|push_in_sub_specs|command_spec|push_in_http_addr)=(.*)$", conf, re.M))


def test_only_the_api_and_the_clock_reach_the_publish_port():
    """Channel names are predictable: whoever reaches Pushpin's publish port writes into any user's
    stream. The NetworkPolicy admits the API and the clock pods to it and nothing else to any port
    but the streams'; the ZeroMQ ports listen on loopback only."""
    k8s = ROOT / "deploy" / "k8s"
    assert "networkpolicy.yaml" in yaml.safe_load((k8s / "kustomization.yaml").read_text())["resources"]
    docs = [d for path in sorted(k8s.glob("*.yaml")) for d in yaml.safe_load_all(path.read_text()) if d]
    pods = {d["metadata"]["name"]: d["spec"]["template"]["metadata"]["labels"]
            for d in docs if d["kind"] in ("Deployment", "StatefulSet")}
    policies = [d for d in docs if d["kind"] == "NetworkPolicy"
                and d["spec"]["podSelector"]["matchLabels"].items() <= pods["notifications-pushpin"].items()]
    assert len(policies) == 1, "no NetworkPolicy selects the Pushpin pods"
    spec = policies[0]["spec"]
    assert spec["policyTypes"] == ["Ingress"]
    opened: dict[int, list] = {}
    for rule in spec["ingress"]:
        assert rule.get("ports"), "a rule without ports opens every port"
        for port in rule["ports"]:
            opened.setdefault(port["port"], []).append(rule.get("from"))
    assert set(opened) == {7999, 5561}
    [publishers] = opened[5561]
    assert publishers, "the publish port is open to every pod"
    admitted = {name for name, labels in pods.items()
                for peer in publishers
                if set(peer) == {"podSelector"} and peer["podSelector"]["matchLabels"].items() <= labels.items()}
    assert admitted == {"notifications-api", "notifications-stream-clock"}
    conf = (ROOT / "deploy" / "pushpin" / "pushpin.conf").read_text()
    specs = _pushpin_publish_ports(conf)
    for key in ("push_in_spec", "push_in_sub_specs", "command_spec"):
        assert specs[key].startswith("tcp://127.0.0.1:"), key


def test_worker_exit_closes_the_publisher_before_the_pool(tmp_path):
    """A graceful restart publishes what the worker's publisher still holds, then closes the pool
    (in a child process: importing the gunicorn settings sets process-wide metrics state)."""
    import os
    import subprocess
    import sys
    script = """
import types
from notifications_api.ops import gunicorn_conf
closed = []
class Closing:
    def __init__(self, name):
        self.name = name
    def close(self, *args, **kwargs):
        closed.append(self.name)
worker = types.SimpleNamespace(wsgi=types.SimpleNamespace(extensions={
    "notifications_publisher": Closing("publisher"), "notifications_db": Closing("pool")}))
gunicorn_conf.worker_exit(types.SimpleNamespace(log=None), worker)
print(",".join(closed))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "publisher,pool"
