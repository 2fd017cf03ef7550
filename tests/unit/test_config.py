"""load_config: typed parsing, every problem at once, production guardrails, secrets never echoed."""
import os
import subprocess
import sys

import pytest
from psycopg.conninfo import conninfo_to_dict

from notifications_api.config import ConfigError, load_config

STRONG_JWT = "j" * 40 + "-jwt-secret-for-tests"
STRONG_TOKEN = "s" * 40 + "-service-token-for-tests"
BASE = {"JWT_SECRET": STRONG_JWT, "SERVICE_TOKEN": STRONG_TOKEN}
STRONG_METRICS = "m" * 40 + "-metrics-token-for-tests"
PRODUCTION = {**BASE, "ENVIRONMENT": "production", "DB_PASSWORD": "a-real-database-password",
              "METRICS_TOKEN": STRONG_METRICS, "DB_SSLMODE": "require"}


def problems(env):
    with pytest.raises(ConfigError) as caught:
        load_config(env=env)
    return caught.value.problems, str(caught.value)


def test_defaults_are_typed():
    config = load_config(env=BASE)
    assert config["PORT"] == 8003
    assert config["DEBUG"] is False
    assert config["ENABLE_DOCS"] is False
    assert config["ENABLE_UI_DEMO"] is False
    assert config["CORS_ORIGINS"] == ()
    assert config["DB_POOL_TIMEOUT"] == 5.0
    assert config["DB_POOL_MIN_SIZE"] is None  # automatic: a gunicorn worker's threads + 1, else 1
    assert config["DB_POOL_MAX_SIZE"] == 8
    assert config["DB_PREPARE_THRESHOLD"] == 5
    assert config["ENVIRONMENT"] == "development"
    assert config["API_V1_PREFIX"] == "/api/v1"
    assert conninfo_to_dict(config["DATABASE_CONNINFO"]) == {
        "host": "localhost", "port": "5432", "dbname": "activity_platform", "user": "api_user",
        "sslmode": "prefer", "target_session_attrs": "read-write"}


def test_values_are_parsed_to_their_types():
    config = load_config(env={**BASE, "PORT": "9000", "DEBUG": "yes", "LOG_LEVEL": "debug",
                              "CORS_ORIGINS": "https://a.example.com, http://localhost:3000",
                              "DB_POOL_TIMEOUT": "2.5", "DB_PREPARE_THRESHOLD": "", "REDIS_SSL": "1",
                              "JWT_ALGORITHM": "hs512", "TRUSTED_PROXY_HOPS": "1"})
    assert config["PORT"] == 9000
    assert config["DEBUG"] is True
    assert config["LOG_LEVEL"] == "DEBUG"
    assert config["CORS_ORIGINS"] == ("https://a.example.com", "http://localhost:3000")
    assert config["DB_POOL_TIMEOUT"] == 2.5
    assert config["DB_PREPARE_THRESHOLD"] is None  # empty: prepared statements off (PgBouncer)
    assert config["REDIS_SSL"] is True
    assert config["JWT_ALGORITHM"] == "HS512"
    assert config["TRUSTED_PROXY_HOPS"] == 1


def test_database_url_overrides_db_parts():
    config = load_config(env={**BASE, "DATABASE_URL": "postgresql://u:p@db:6432/x", "DB_HOST": "ignored"})
    assert conninfo_to_dict(config["DATABASE_CONNINFO"]) == {
        "host": "db", "port": "6432", "dbname": "x", "user": "u", "password": "p",
        "target_session_attrs": "read-write"}


def test_a_failover_pair_is_reached_by_a_multi_host_conninfo_that_asks_for_the_writable_one():
    """URL and keyword form, and the DB_* parts: several hosts, each its own port; always read-write."""
    for env in ({"DATABASE_URL": "postgresql://u:p@pg-a:5432,pg-b:5433/x"},
                {"DATABASE_URL": "host=pg-a,pg-b port=5432,5433 dbname=x user=u password=p"},
                {"DB_HOST": "pg-a,pg-b", "DB_PORT": "5432, 5433", "DB_NAME": "x", "DB_USER": "u",
                 "DB_PASSWORD": "p"}):
        params = conninfo_to_dict(load_config(env={**BASE, **env})["DATABASE_CONNINFO"])
        assert (params["host"], params["port"], params["target_session_attrs"]) == \
            ("pg-a,pg-b", "5432,5433", "read-write"), env
    assert load_config(env={**BASE, "DB_HOST": "a,b"})["DB_PORT"] == "5432"  # one port for all hosts


def test_target_session_attrs_is_configurable_and_a_conflicting_url_is_refused():
    config = load_config(env={**BASE, "DB_TARGET_SESSION_ATTRS": "primary",
                              "DATABASE_URL": "postgresql://u@a,b/x?target_session_attrs=primary"})
    assert conninfo_to_dict(config["DATABASE_CONNINFO"])["target_session_attrs"] == "primary"
    found, _ = problems({**BASE, "DATABASE_URL": "postgresql://u:secret-pw@a,b/x?target_session_attrs=any"})
    assert found == ["DATABASE_URL asks for target_session_attrs=any but DB_TARGET_SESSION_ATTRS is "
                     "read-write: set DB_TARGET_SESSION_ATTRS instead"]
    found, text = problems({**BASE, "DATABASE_URL": "postgresql://u:secret-pw@a/x?nonsense=1"})
    assert found == ["DATABASE_URL is not a valid libpq URL or conninfo"] and "secret-pw" not in text
    found, _ = problems({**BASE, "DB_PORT": "5432,x", "DB_TARGET_SESSION_ATTRS": "writable"})
    assert any(p.startswith("DB_PORT must be a whole number") for p in found), found
    assert any(p.startswith("DB_TARGET_SESSION_ATTRS must be one of") for p in found), found


def test_db_parts_are_quoted_into_a_conninfo():
    config = load_config(env={**BASE, "DB_HOST": "db.internal", "DB_USER": "api user",
                              "DB_PASSWORD": "p@ss/wo'rd", "DB_SSLMODE": "require"})
    assert conninfo_to_dict(config["DATABASE_CONNINFO"]) == {
        "host": "db.internal", "port": "5432", "dbname": "activity_platform", "user": "api user",
        "password": "p@ss/wo'rd", "sslmode": "require", "target_session_attrs": "read-write"}


def test_db_host_may_be_a_socket_directory():
    config = load_config(env={**BASE, "DB_HOST": "/var/run/postgresql"})
    assert conninfo_to_dict(config["DATABASE_CONNINFO"])["host"] == "/var/run/postgresql"


def test_overrides_win_and_skip_parsing():
    config = load_config({"PORT": 1234, "TESTING": True}, env=BASE)
    assert config["PORT"] == 1234
    assert config["TESTING"] is True


def test_every_problem_is_reported_at_once():
    found, message = problems({"PORT": "eighty", "DEBUG": "maybe", "DB_POOL_MIN_SIZE": "9",
                               "DB_POOL_MAX_SIZE": "4", "ENVIRONMENT": "prod", "API_V1_PREFIX": "api"})
    names = ("PORT", "DEBUG", "DB_POOL_MIN_SIZE", "ENVIRONMENT", "API_V1_PREFIX", "JWT_SECRET", "SERVICE_TOKEN")
    for name in names:
        assert any(problem.startswith(name) for problem in found), (name, found)
        assert name in message
    assert "'eighty'" in message  # non-secret values are shown to help fix them


@pytest.mark.parametrize("value, parsed", [("", None), (" ", None), ("0", 0), ("3", 3), ("8", 8)])
def test_db_pool_min_size_is_a_number_or_empty_for_automatic(value, parsed):
    assert load_config(env={**BASE, "DB_POOL_MIN_SIZE": value})["DB_POOL_MIN_SIZE"] == parsed


def test_an_automatic_db_pool_min_size_fits_any_max_size():
    """Empty min, max below the default threads + 1: accepted (the worker keeps at most max open)."""
    assert load_config(env={**BASE, "DB_POOL_MAX_SIZE": "1"})["DB_POOL_MAX_SIZE"] == 1
    found, _ = problems({**BASE, "DB_POOL_MIN_SIZE": "2", "DB_POOL_MAX_SIZE": "1"})
    assert found == ["DB_POOL_MIN_SIZE must not exceed DB_POOL_MAX_SIZE"]


@pytest.mark.parametrize("name,value", [("PORT", "0"), ("PORT", "70000"), ("DB_POOL_TIMEOUT", "0"),
                                        ("DB_POOL_MIN_SIZE", "-1"), ("DB_POOL_MIN_SIZE", "some"),
                                        ("LOG_LEVEL", "LOUD"), ("JWT_ALGORITHM", "none"),
                                        ("JWT_ALGORITHM", "RS256"), ("CORS_ORIGINS", "app.example.com"),
                                        ("CORS_ORIGINS", "https://app.example.com/path"),
                                        ("TRUSTED_PROXY_HOPS", "-1"), ("MAX_CONTENT_LENGTH", "12")])
def test_out_of_range_and_malformed_values_are_refused(name, value):
    found, _ = problems({**BASE, name: value})
    assert [problem for problem in found if problem.startswith(name)]


@pytest.mark.parametrize("value", ["300/minuet", "lots", "300 per fortnight", "-5/second"])
def test_invalid_rate_limit_strings_are_refused(value):
    found, message = problems({**BASE, "RATE_LIMIT_USER_READ": value})
    assert any(problem.startswith("RATE_LIMIT_USER_READ") for problem in found)
    assert "300/minute" in message  # says what a valid one looks like


def test_valid_rate_limit_strings_are_accepted():
    config = load_config(env={**BASE, "RATE_LIMIT_USER_READ": "10/second;600/minute",
                              "RATE_LIMIT_SERVICE": "100 per minute"})
    assert config["RATE_LIMIT_USER_READ"] == "10/second;600/minute"


def test_secrets_are_required():
    found, _ = problems({})
    assert "JWT_SECRET is required" in found
    assert "SERVICE_TOKEN is required" in found


def test_a_valid_production_configuration_loads():
    config = load_config(env={**PRODUCTION, "CORS_ORIGINS": "https://app.example.com"})
    assert config["ENVIRONMENT"] == "production"


@pytest.mark.parametrize("env,name", [
    ({"JWT_SECRET": "short-secret"}, "JWT_SECRET"),
    ({"SERVICE_TOKEN": "x" * 31}, "SERVICE_TOKEN"),
    ({"JWT_SECRET": "dev-jwt-secret-change-me-0123456789abcdef"}, "JWT_SECRET"),  # placeholder, long enough
    ({"SERVICE_TOKEN": "dev-service-token-change-me-0123456789abcd"}, "SERVICE_TOKEN"),
    ({"METRICS_TOKEN": "metrics"}, "METRICS_TOKEN"),
    ({"JWT_SECRET_PREVIOUS": "old"}, "JWT_SECRET_PREVIOUS"),
    ({"DB_PASSWORD": ""}, "DB_PASSWORD"),
    ({"CORS_ORIGINS": "https://app.example.com,*"}, "CORS_ORIGINS"),
    ({"DEBUG": "true"}, "DEBUG"),
    ({"ENABLE_DOCS": "true"}, "ENABLE_DOCS"),
    ({"ENABLE_UI_DEMO": "true"}, "ENABLE_UI_DEMO"),
    ({"METRICS_TOKEN": ""}, "METRICS_TOKEN"),
    ({"EMAIL_API_URL": "http://email-api.internal/v1/send"}, "EMAIL_API_URL"),
    ({"DB_SSLMODE": "prefer"}, "DB_SSLMODE"),
    ({"DB_SSLMODE": "disable"}, "DB_SSLMODE"),
    ({"DATABASE_URL": "postgresql://u:p@db.internal/x"}, "DB_SSLMODE"),  # libpq's default: prefer
    ({"DATABASE_URL": "postgresql://u:p@db.internal/x?sslmode=allow"}, "DB_SSLMODE"),
    ({"DATABASE_URL": "host=db.internal sslmode=disable password=p"}, "DB_SSLMODE"),
])
def test_production_guardrails_name_the_setting(env, name):
    found, _ = problems({**PRODUCTION, **env})
    assert len(found) == 1 and found[0].startswith(name), found


@pytest.mark.parametrize("env", [{"JWT_SECRET": "short"}, {"CORS_ORIGINS": "*"}, {"DEBUG": "true"},
                                 {"ENABLE_DOCS": "true"}, {"ENABLE_UI_DEMO": "true"}, {"DB_PASSWORD": ""},
                                 {"METRICS_TOKEN": ""},
                                 {"EMAIL_API_URL": "http://localhost:9000/send"}, {"DB_SSLMODE": "disable"}])
def test_guardrails_apply_only_in_production(env):
    load_config(env={**BASE, "ENVIRONMENT": "staging", **env})


@pytest.mark.parametrize("env", [
    {"DB_SSLMODE": "verify-full"},
    {"DB_SSLMODE": "disable", "DB_ALLOW_WEAK_SSLMODE": "true"},  # the explicit, documented opt-out
    {"DATABASE_URL": "postgresql://u:p@db.internal/x?sslmode=verify-ca"},
    {"DATABASE_URL": "postgresql://u:p@db.internal/x", "PGSSLMODE": "require"},  # libpq reads it too
    {"METRICS_TOKEN": "", "METRICS_PUBLIC": "true"},
    {"EMAIL_API_URL": "https://email-api.internal/v1/send"},
])
def test_production_accepts_the_safe_settings_and_the_explicit_opt_outs(env):
    assert load_config(env={**PRODUCTION, **env})["ENVIRONMENT"] == "production"


def test_the_sslmode_guardrail_does_not_trust_the_default_over_the_url():
    """DB_SSLMODE=require does not cover a DATABASE_URL that says otherwise: the URL is what connects."""
    found, _ = problems({**PRODUCTION, "DB_SSLMODE": "require",
                         "DATABASE_URL": "postgresql://u:p@db.internal/x?sslmode=prefer"})
    assert found == ["DB_SSLMODE (or the URL's sslmode) is prefer: it must be require, verify-ca or "
                     "verify-full in production (or DB_ALLOW_WEAK_SSLMODE=true for a Unix socket or a "
                     "local PgBouncer)"]


def test_secret_strength_is_one_rule_for_config_and_preflight():
    from notifications_api.ops import preflight
    from notifications_api.config import secret_weakness
    assert preflight.secret_weakness is secret_weakness
    assert secret_weakness("change-me-in-production") == "is a documented placeholder"
    assert secret_weakness("x" * 31) == "is shorter than 32 characters"
    assert secret_weakness("x" * 32) is None


def test_secrets_are_never_echoed_in_problems():
    weak = "weak-secret-value-1"
    found, message = problems({**PRODUCTION, "JWT_SECRET": weak, "SERVICE_TOKEN": "changeme",
                               "DB_PASSWORD": "not-a-number-but-fine", "REDIS_PASSWORD": "hunter2-redis",
                               "EMAIL_API_KEY": "email-key-value", "DATABASE_URL": "postgresql://u:dbpass9@h/d",
                               "PORT": "bad"})
    assert any(problem.startswith("JWT_SECRET") for problem in found)
    for value in (weak, "changeme", "hunter2-redis", "email-key-value", "dbpass9"):
        assert value not in message


def test_env_file_is_read(tmp_path, monkeypatch):
    env_file = tmp_path / "custom.env"
    env_file.write_text(f"JWT_SECRET={STRONG_JWT}\nSERVICE_TOKEN={STRONG_TOKEN}\nPORT=8111\n"
                        "# a comment\nPOLL_INTERVAL_SECONDS=45\n")
    for name in ("JWT_SECRET", "SERVICE_TOKEN", "PORT", "POLL_INTERVAL_SECONDS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ENV_FILE", str(env_file))
    config = load_config()
    assert config["PORT"] == 8111
    assert config["POLL_INTERVAL_SECONDS"] == 45
    assert config["JWT_SECRET"] == STRONG_JWT


def test_environment_wins_over_env_file(tmp_path, monkeypatch):
    env_file = tmp_path / ".env"
    env_file.write_text(f"JWT_SECRET={STRONG_JWT}\nSERVICE_TOKEN={STRONG_TOKEN}\nPORT=8111\n")
    monkeypatch.setenv("ENV_FILE", str(env_file))
    monkeypatch.setenv("PORT", "8222")
    assert load_config()["PORT"] == 8222


def _cli(*args, env):
    clean = {k: v for k, v in os.environ.items() if k not in BASE and k not in ("ENVIRONMENT", "DATABASE_URL")}
    return subprocess.run([sys.executable, "-m", "notifications_api.ops.cli", *args],
                          env={**clean, "ENV_FILE": os.devnull, **env},
                          capture_output=True, text=True, timeout=60)


def test_check_config_refuses_an_unsafe_production_start_naming_every_problem():
    weak = "short"
    result = _cli("check-config", env={"ENVIRONMENT": "production", "JWT_SECRET": weak,
                                       "SERVICE_TOKEN": STRONG_TOKEN, "DB_PASSWORD": "db-password-for-test",
                                       "CORS_ORIGINS": "*", "ENABLE_DOCS": "true"})
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert output.count("invalid configuration") == 1  # one message, listing all three
    for name in ("JWT_SECRET", "CORS_ORIGINS", "ENABLE_DOCS"):
        assert name in output
    assert "configuration ok" not in output
    assert f"'{weak}'" not in output and STRONG_TOKEN not in output


def test_check_config_accepts_a_good_configuration():
    result = _cli("check-config", env=BASE)
    assert result.returncode == 0, result.stderr
    assert "configuration ok" in result.stdout


def test_issue_token_is_refused_in_production():
    result = _cli("issue-token", "--user-id", "00000000-0000-4000-8000-000000000001",
                  env={**PRODUCTION, "CORS_ORIGINS": "https://app.example.com"})
    assert result.returncode == 2
    assert "production" in result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize("url", [
    "redis://cache.internal:6379/2", "rediss://:pw@cache.internal:6380/0",
    "redis+sentinel://sentinel-1:26379,sentinel-2:26379,sentinel-3:26379/mymaster",
    "redis+sentinel://:s3cret@sentinel-1:26379/mymaster",
])
def test_redis_url_is_the_limiter_storage(url):
    from notifications_api.config import redis_uri
    config = load_config(env={**BASE, "REDIS_URL": url})
    assert redis_uri(config) == url


def test_redis_host_builds_the_storage_uri_when_there_is_no_url():
    from notifications_api.config import redis_uri
    assert redis_uri(load_config(env=BASE)) is None
    config = load_config(env={**BASE, "REDIS_HOST": "cache", "REDIS_PASSWORD": "p@ss", "REDIS_DB": "3"})
    assert redis_uri(config) == "redis://:p%40ss@cache:6379/3"


@pytest.mark.parametrize("url, message", [
    ("http://cache:6379", "REDIS_URL must start with redis://, rediss://, redis+sentinel://"),
    ("redis+sentinel://sentinel-1:26379,sentinel-2:26379", "must end with the service name"),
    ("redis+sentinel://sentinel-1:26379,:26379/mymaster", "must name a host for every"),
    ("redis+sentinel://sentinel-1:port/mymaster", "not a number from 1 to 65535"),
    ("redis://a:6379,b:6379/0", "use redis+sentinel:// for a Sentinel-managed Redis"),
])
def test_malformed_redis_urls_are_refused_without_echoing_them(url, message):
    found, text = problems({**BASE, "REDIS_URL": url})
    assert len(found) == 1 and message in found[0]
    assert url not in text  # it may hold a password


def test_redis_url_and_redis_host_are_exclusive():
    found, _ = problems({**BASE, "REDIS_URL": "redis://cache:6379/0", "REDIS_HOST": "cache"})
    assert found == ["set REDIS_URL or REDIS_HOST, not both"]


@pytest.mark.parametrize("value,reload", [("true", True), ("false", False), ("", False)])
def test_debug_makes_gunicorn_restart_workers_on_code_changes(monkeypatch, tmp_path, value, reload):
    """DEBUG means something: gunicorn's `reload` (development; production refuses DEBUG=true)."""
    import importlib

    monkeypatch.setenv("ENV_FILE", os.devnull)
    # Set before the import: without it the module creates a metrics directory and exports it.
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    monkeypatch.setenv("DEBUG", value)
    from notifications_api.ops import gunicorn_conf
    try:
        assert importlib.reload(gunicorn_conf).reload is reload
    finally:
        monkeypatch.delenv("DEBUG")
        importlib.reload(gunicorn_conf)  # as imported before (still with our metrics directory)


def test_the_ui_demo_user_is_make_runs_demo_user_and_must_be_a_uuid():
    from notifications_api.ops.cli_dev import DEMO_USER_ID
    assert load_config(env=BASE)["UI_DEMO_USER_ID"] == DEMO_USER_ID
    found, _ = problems({**BASE, "UI_DEMO_USER_ID": "demo"})
    assert len(found) == 1 and found[0].startswith("UI_DEMO_USER_ID must be a UUID"), found
