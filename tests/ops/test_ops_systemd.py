"""deploy/systemd/: the bare-host units are valid systemd units and run what the other deployments run."""
from __future__ import annotations

import configparser
import json
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from machine_tools import skip_unless_ci
from notifications_api.ops.cli import cli

ROOT = Path(__file__).resolve().parents[2]
UNITS = ROOT / "deploy" / "systemd"
VENV_BIN = "/opt/notifications-api/bin/"


def unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str
    parser.read_string((UNITS / name).read_text())
    return parser


def environment(name: str) -> list[str]:
    """Every Environment= assignment of the unit (configparser keeps only the last of repeated keys)."""
    return re.findall(r"^Environment=(.+)$", (UNITS / name).read_text(), re.M)


def exec_start(name: str) -> list[str]:
    return shlex.split(unit(name)["Service"]["ExecStart"])


def test_every_unit_passes_systemd_analyze_verify():
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        skip_unless_ci("systemd-analyze is not installed (apt-get install systemd)")
    for path in sorted(UNITS.glob("notifications-api*")):
        run = subprocess.run([analyze, "verify", "--man=no", str(path)], capture_output=True, text=True,
                             timeout=60)
        # the one complaint allowed: the venv the units run from is not installed on this machine
        problems = [line for line in (run.stdout + run.stderr).splitlines()
                    if line.strip() and not re.search(rf"Command {re.escape(VENV_BIN)}\S+ is not executable", line)]
        assert problems == [], (path.name, problems)


def test_the_api_unit_runs_the_image_command_as_a_plain_user():
    dockerfile = (ROOT / "Dockerfile").read_text()
    image_cmd = json.loads(re.search(r"^CMD (\[.*\])$", dockerfile, re.M).group(1))
    command = exec_start("notifications-api.service")
    assert command[0] == VENV_BIN + image_cmd[0] and command[1:] == image_cmd[1:]
    service = unit("notifications-api.service")["Service"]
    assert service["User"] == "notifications-api" and service["NoNewPrivileges"] == "yes"
    assert any(e.startswith("PROMETHEUS_MULTIPROC_DIR=/run/notifications-api/")
               for e in environment("notifications-api.service"))


@pytest.mark.parametrize("name", [path.name for path in sorted(UNITS.glob("*.service"))])
def test_each_unit_runs_an_existing_command_with_the_env_file(name):
    command = exec_start(name)
    assert command[0].startswith(VENV_BIN)
    if command[0].endswith("/notifications-api"):
        assert command[1] in cli.commands, command
    service = unit(name)["Service"]
    assert service["User"] != "root"
    assert "ENV_FILE=/etc/notifications-api/notifications-api.env" in environment(name)


def test_workers_connect_as_their_own_logins_not_the_apis():
    assert unit("notifications-api-email-worker.service")["Service"]["EnvironmentFile"].endswith("email-worker.env")
    assert unit("notifications-api-retention.service")["Service"]["EnvironmentFile"].endswith("retention.env")
    runbook = (ROOT / "docs" / "PRODUCTION.md").read_text()
    for variable, login in (("WORKER_DATABASE_URL", "email_worker"), ("RETENTION_DATABASE_URL", "retention_user")):
        assert re.search(rf"{variable}=postgresql://{login}:", runbook), variable


def test_retention_timer_matches_the_cronjob():
    cronjob = yaml.safe_load((ROOT / "deploy" / "k8s" / "retention-cronjob.yaml").read_text())
    minute, hour = cronjob["spec"]["schedule"].split()[:2]
    assert unit("notifications-api-retention.timer")["Timer"]["OnCalendar"] == \
        f"*-*-* {int(hour):02d}:{int(minute):02d}:00 UTC"
    container = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
    assert exec_start("notifications-api-retention.service")[1:] == container["command"][1:]
