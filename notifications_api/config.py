"""Typed configuration from the environment (and `.env`), validated once at start-up."""
from __future__ import annotations

import os
import re
import uuid
from collections.abc import Mapping
from typing import Any, Callable
from urllib.parse import quote, urlsplit

from dotenv import dotenv_values
from limits import parse_many
from psycopg import ProgrammingError
from psycopg.conninfo import conninfo_to_dict, make_conninfo

PLACEHOLDERS = frozenset({
    "change-me", "changeme", "change-me-in-production", "secret", "password",
    "your-secret-key", "your-secret-key-here", "dev-jwt-secret-change-me-0123456789abcdef",
    "dev-service-token-change-me-0123456789abcd", "dev-metrics-token-change-me-0123456789abc",
    "notifications", "api_password",
})
MIN_SECRET_LENGTH = 32
ENVIRONMENTS = ("development", "test", "staging", "production")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
JWT_ALGORITHMS = ("HS256", "HS384", "HS512")
# libpq sslmodes that always encrypt; anything weaker may talk to PostgreSQL in clear text.
TLS_SSLMODES = ("require", "verify-ca", "verify-full")
# libpq's target_session_attrs; the service writes, so read-write (or primary) is what it needs.
TARGET_SESSION_ATTRS = ("read-write", "primary", "any", "read-only", "standby", "prefer-standby")


class ConfigError(Exception):
    """Every configuration problem, reported together."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("invalid configuration:\n" + "\n".join(f"  - {p}" for p in problems))


def _str(value: str) -> str:
    return value


def _bool(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise ValueError("must be true or false")


def _int(minimum: int | None = None, maximum: int | None = None) -> Callable[[str], int]:
    def parse(value: str) -> int:
        try:
            number = int(value.strip())
        except ValueError:
            raise ValueError("must be a whole number") from None
        if minimum is not None and number < minimum:
            raise ValueError(f"must be at least {minimum}")
        if maximum is not None and number > maximum:
            raise ValueError(f"must be at most {maximum}")
        return number
    return parse


def _optional_int(minimum: int | None = None, maximum: int | None = None) -> Callable[[str], int | None]:
    """A whole number, or None when empty (the setting's automatic value)."""
    whole = _int(minimum, maximum)

    def parse(value: str) -> int | None:
        return whole(value) if value.strip() else None
    return parse


def _float(minimum: float = 0.0) -> Callable[[str], float]:
    def parse(value: str) -> float:
        try:
            number = float(value.strip())
        except ValueError:
            raise ValueError("must be a number") from None
        if number < minimum:
            raise ValueError(f"must be at least {minimum}")
        return number
    return parse


def _choice(choices: tuple[str, ...], upper: bool = False) -> Callable[[str], str]:
    def parse(value: str) -> str:
        value = value.strip().upper() if upper else value.strip().lower()
        if value not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}")
        return value
    return parse


def _csv(value: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in value.split(",") if part.strip())


def _uuid(value: str) -> str:
    try:
        return str(uuid.UUID(value.strip()))
    except ValueError:
        raise ValueError("must be a UUID") from None


def _origins(value: str) -> tuple[str, ...]:
    origins = _csv(value)
    for origin in origins:
        if origin != "*" and not re.fullmatch(r"https?://[A-Za-z0-9.-]+(:\d{1,5})?", origin):
            raise ValueError(f"{origin!r} is not an exact origin like https://app.example.com")
    return origins


def _prefix(value: str) -> str:
    value = value.strip()
    if not re.fullmatch(r"(/[A-Za-z0-9._-]+)+", value):
        raise ValueError("must look like /api/v1")
    return value


def _limit(value: str) -> str:
    value = value.strip()
    try:
        if not parse_many(value):
            raise ValueError
    except ValueError:
        raise ValueError(f"{value!r} is not a rate limit such as 300/minute") from None
    return value


def _ports(value: str) -> str:
    """One port, or one per DB_HOST host ("5432,5433"): libpq's own `port=` list."""
    parts = [part.strip() for part in value.split(",")]
    for part in parts:
        _int(1, 65535)(part)
    return ",".join(parts)


def _publish_urls(value: str) -> tuple[str, ...]:
    """GRIP_PUBLISH_URL: one or more (comma-separated) Pushpin publish endpoints."""
    urls = _csv(value)
    for url in urls:
        if not re.fullmatch(r"https?://[A-Za-z0-9.\[\]:-]+(/[^\s?#]*)?", url):
            raise ValueError(f"{url!r} is not an http(s) URL like http://pushpin:5561/publish/")
    return urls


# Web Push (API.md "Delivery channels (v3)", docs/PUSH.md)
DEFAULT_PUSH_HOSTS = ("fcm.googleapis.com", "updates.push.services.mozilla.com", "*.push.apple.com",
                      "*.notify.windows.com")
_HOST_LABELS = r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*"
# Domains that are never a real contact (RFC 2606 / 6761), for VAPID_SUBJECT in production.
PLACEHOLDER_DOMAINS = ("example.com", "example.org", "example.net", "localhost")
PLACEHOLDER_SUFFIXES = (".example", ".test", ".invalid", ".localhost", ".local", ".example.com",
                        ".example.org", ".example.net")


def _push_hosts(value: str) -> tuple[str, ...]:
    """PUSH_ALLOWED_HOSTS: `host`, `*.suffix` (one or more labels) or `http://host:port` (a test push
    service over plain HTTP; refused in production)."""
    entries = tuple(entry.lower() for entry in _csv(value))
    for entry in entries:
        if entry.startswith("http://"):
            if not re.fullmatch(r"http://" + _HOST_LABELS + r":\d{1,5}", entry):
                raise ValueError(f"{entry!r} is not an http://host:port origin")
        elif not re.fullmatch(r"(\*\.)?" + _HOST_LABELS, entry) or "." not in entry.lstrip("*."):
            raise ValueError(f"{entry!r} is not a host name or *.domain")
    return entries


def load_vapid_private_key(value: str):
    """VAPID_PRIVATE_KEY as a P-256 private key object: base64url of the raw 32-byte scalar (what
    `web-push generate-vapid-keys` and `notifications-api vapid-keys` print) or a PKCS#8/SEC1 PEM.
    ValueError (saying nothing of the value) when it is neither."""
    import base64

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    text = value.strip()
    if text.startswith("-----BEGIN"):
        try:
            key = serialization.load_pem_private_key(text.encode(), password=None)
        except (ValueError, TypeError):
            raise ValueError("is not a readable PEM private key") from None
        if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
            raise ValueError("must be a P-256 (prime256v1) key")
        return key
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (ValueError, TypeError):
        raise ValueError("is neither base64url nor a PEM key") from None
    if len(raw) != 32:
        raise ValueError("must be the base64url of a 32-byte P-256 private key, or a PEM key")
    try:
        return ec.derive_private_key(int.from_bytes(raw, "big"), ec.SECP256R1())
    except ValueError:
        raise ValueError("is not a valid P-256 private key") from None


def vapid_subject_problem(subject: str, production: bool) -> str | None:
    """Why VAPID_SUBJECT cannot be used (push services such as Apple's refuse a subject that is not a
    real contact), or None."""
    lowered = subject.strip().lower()
    if lowered.startswith("mailto:"):
        match = re.fullmatch(r"mailto:[^@\s/]+@([a-z0-9.-]+\.[a-z]{2,})", lowered)
    elif lowered.startswith("https://"):
        match = re.fullmatch(r"https://([a-z0-9.-]+\.[a-z]{2,})(:\d{1,5})?(/\S*)?", lowered)
    else:
        return "must be a mailto: address or an https: URL"
    if not match:
        return "must be mailto:someone@your-domain or https://your-domain"
    domain = match.group(1)
    if production and (domain in PLACEHOLDER_DOMAINS or domain.endswith(PLACEHOLDER_SUFFIXES)):
        return f"names a placeholder domain ({domain}): push services refuse it; use a real contact"
    return None


def _prepare_threshold(value: str) -> int | None:
    if value.strip() == "":
        return None
    return _int(0)(value)


# name -> (parser, default as the environment would spell it)
SPEC: dict[str, tuple[Callable[[str], Any], str]] = {
    "PROJECT_NAME": (_str, "Notifications API"),
    "ENVIRONMENT": (_choice(ENVIRONMENTS), "development"),
    "DEBUG": (_bool, "false"),
    "LOG_LEVEL": (_choice(LOG_LEVELS, upper=True), "INFO"),
    "PORT": (_int(1, 65535), "8003"),
    "API_V1_PREFIX": (_prefix, "/api/v1"),
    "ENABLE_DOCS": (_bool, "false"),
    # /ui/demo and its development endpoints (a demo user's token for anyone): `make run` only.
    "ENABLE_UI_DEMO": (_bool, "false"),
    "UI_DEMO_USER_ID": (_uuid, "00000000-0000-4000-8000-000000000001"),  # make run's demo user
    "CORS_ORIGINS": (_origins, ""),
    "DATABASE_URL": (_str, ""),
    "DB_HOST": (_str, ""),
    "DB_PORT": (_ports, "5432"),
    "DB_NAME": (_str, "activity_platform"),
    "DB_USER": (_str, "api_user"),
    "DB_PASSWORD": (_str, ""),
    "DB_SSLMODE": (_choice(("disable", "allow", "prefer") + TLS_SSLMODES), "prefer"),
    # Production opt-out of the TLS guardrail (a Unix socket, a sidecar PgBouncer on localhost).
    "DB_ALLOW_WEAK_SSLMODE": (_bool, "false"),
    "DB_TARGET_SESSION_ATTRS": (_choice(TARGET_SESSION_ATTRS), "read-write"),
    # Empty: a gunicorn worker keeps its threads + 1 (the stream publisher) connections open, opened
    # before it takes traffic (never past DB_POOL_MAX_SIZE); the commands (workers, purge) keep 1.
    "DB_POOL_MIN_SIZE": (_optional_int(0, 1000), ""),
    "DB_POOL_MAX_SIZE": (_int(1, 1000), "8"),
    "DB_POOL_TIMEOUT": (_float(0.1), "5"),
    "DB_STATEMENT_TIMEOUT_MS": (_int(0), "5000"),
    "DB_PREPARE_THRESHOLD": (_prepare_threshold, "5"),
    # Reads on streaming standbys (db/replica.py, docs/SCALING.md): unset, everything uses the primary.
    "DATABASE_READ_URL": (_str, ""),
    "DB_READ_HOST": (_str, ""),
    "DB_READ_PORT": (_ports, "5432"),
    "DB_READ_TARGET_SESSION_ATTRS": (_choice(TARGET_SESSION_ATTRS), "standby"),
    "DB_MAX_REPLICA_LAG_SECONDS": (_float(0.0), "5"),
    "JWT_SECRET": (_str, ""),
    "JWT_SECRET_PREVIOUS": (_str, ""),
    "JWT_ALGORITHM": (_choice(JWT_ALGORITHMS, upper=True), "HS256"),
    "JWT_ISSUER": (_str, ""),
    "JWT_AUDIENCE": (_str, ""),
    "JWT_LEEWAY_SECONDS": (_int(0, 3600), "30"),
    "SERVICE_TOKEN": (_str, ""),
    "SERVICE_TOKEN_PREVIOUS": (_str, ""),
    "METRICS_TOKEN": (_str, ""),
    # Production opt-out of "METRICS_TOKEN is required": only a private network reaches /metrics.
    "METRICS_PUBLIC": (_bool, "false"),
    "REDIS_URL": (_str, ""),
    "REDIS_HOST": (_str, ""),
    "REDIS_PORT": (_int(1, 65535), "6379"),
    "REDIS_DB": (_int(0, 1024), "0"),
    "REDIS_PASSWORD": (_str, ""),
    "REDIS_SSL": (_bool, "false"),
    "RATE_LIMIT_ENABLED": (_bool, "true"),
    "RATE_LIMIT_USER_READ": (_limit, "600/minute"),
    "RATE_LIMIT_USER_WRITE": (_limit, "120/minute"),
    "RATE_LIMIT_SERVICE": (_limit, "3000/minute"),
    "RATE_LIMIT_ANONYMOUS": (_limit, "60/minute"),
    "TRUSTED_PROXY_HOPS": (_int(0, 10), "0"),
    "MAX_CONTENT_LENGTH": (_int(1024), str(64 * 1024)),
    "POLL_INTERVAL_SECONDS": (_int(1, 3600), "30"),
    "EMAIL_API_URL": (_str, ""),
    "EMAIL_API_KEY": (_str, ""),
    "EMAIL_MAX_ATTEMPTS": (_int(1, 100), "8"),
    "EMAIL_DIGEST_DELAY_SECONDS": (_int(0, 7 * 24 * 3600), "600"),
    "GRIP_SIG_KEY": (_str, ""),
    "GRIP_PUBLISH_URL": (_publish_urls, ""),
    "STREAM_TICKET_TTL_SECONDS": (_int(60, 7 * 24 * 3600), "3600"),
    "VAPID_PRIVATE_KEY": (_str, ""),
    "VAPID_SUBJECT": (_str, ""),
    "PUSH_ALLOWED_HOSTS": (_push_hosts, ",".join(DEFAULT_PUSH_HOSTS)),
    "PUSH_TTL_SECONDS": (_int(0, 28 * 24 * 3600), "86400"),
    "PUSH_MAX_ATTEMPTS": (_int(1, 100), "5"),
}

SECRETS = ("JWT_SECRET", "SERVICE_TOKEN")
OPTIONAL_SECRETS = ("JWT_SECRET_PREVIOUS", "SERVICE_TOKEN_PREVIOUS", "METRICS_TOKEN", "GRIP_SIG_KEY")
# Keys whose values never appear in logs or error messages.
SENSITIVE = frozenset(SECRETS + OPTIONAL_SECRETS
                      + ("DB_PASSWORD", "REDIS_PASSWORD", "REDIS_URL", "EMAIL_API_KEY", "DATABASE_URL",
                         "DATABASE_READ_URL", "VAPID_PRIVATE_KEY"))


def read_environment() -> dict[str, str]:
    """os.environ over the `.env` file (ENV_FILE, default `.env`): the one reader of `.env`.

    The app (load_config), the CLI and gunicorn's settings all see the same values through it.
    """
    merged = {k: v for k, v in dotenv_values(os.environ.get("ENV_FILE", ".env")).items() if v is not None}
    merged.update(os.environ)
    return merged


def _environment(env: Mapping[str, str] | None) -> dict[str, str]:
    return dict(env) if env is not None else read_environment()


def load_config(overrides: Mapping[str, Any] | None = None,
                env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Parse every setting; raise ConfigError naming every problem at once.

    `overrides` are already-typed values (tests); `env` replaces os.environ + .env.
    """
    source = _environment(env)
    overrides = dict(overrides or {})
    config: dict[str, Any] = {}
    problems: list[str] = []
    for name, (parse, default) in SPEC.items():
        if name in overrides:
            config[name] = overrides.pop(name)
            continue
        raw = source.get(name, default)
        try:
            config[name] = parse(raw)
        except ValueError as exc:
            shown = "" if name in SENSITIVE else f" (got {raw!r})"
            problems.append(f"{name} {exc}{shown}")
            config[name] = parse(default)  # so the checks below still report everything else
    config.update(overrides)  # extra keys (e.g. TESTING) pass through
    try:
        config["DATABASE_CONNINFO"] = database_conninfo(config)
    except ProgrammingError:  # an unparseable DATABASE_URL: _check reports it (without the URL)
        config["DATABASE_CONNINFO"] = config["DATABASE_URL"]
    try:
        config["DATABASE_READ_CONNINFO"] = database_read_conninfo(config)
    except ProgrammingError:
        config["DATABASE_READ_CONNINFO"] = config["DATABASE_READ_URL"]
    problems.extend(_check(config, source))
    if problems:
        raise ConfigError(problems)
    return config


def secret_weakness(value: str) -> str | None:
    """Why a secret is too weak to use in production, or None: the one rule (config and preflight)."""
    if value.lower() in PLACEHOLDERS:
        return "is a documented placeholder"
    if len(value) < MIN_SECRET_LENGTH:
        return f"is shorter than {MIN_SECRET_LENGTH} characters"
    return None


def effective_sslmode(conninfo: str, env: Mapping[str, str]) -> str | None:
    """The sslmode libpq will use for `conninfo` (its own, else PGSSLMODE, else prefer); None when
    the connection string does not parse."""
    try:
        params = conninfo_to_dict(conninfo)
    except ProgrammingError:
        return None
    return params.get("sslmode") or env.get("PGSSLMODE") or "prefer"


def _check(config: dict[str, Any], env: Mapping[str, str]) -> list[str]:
    problems = []
    for name in SECRETS:
        if not config[name]:
            problems.append(f"{name} is required")
    if config["REDIS_URL"]:
        problems.extend(_redis_url_problems(config))
    problems.extend(_target_session_attrs_problems(config))
    problems.extend(_read_url_problems(config))
    if config["GRIP_PUBLISH_URL"] and not config["GRIP_SIG_KEY"]:
        problems.append("GRIP_SIG_KEY is required when GRIP_PUBLISH_URL is set "
                        "(without it no stream is ever held, so nothing published arrives)")
    if config["DB_POOL_MIN_SIZE"] is not None and config["DB_POOL_MIN_SIZE"] > config["DB_POOL_MAX_SIZE"]:
        problems.append("DB_POOL_MIN_SIZE must not exceed DB_POOL_MAX_SIZE")
    problems.extend(_push_problems(config))
    if config["ENVIRONMENT"] == "production":
        for name in SECRETS + OPTIONAL_SECRETS:
            weakness = config[name] and secret_weakness(config[name])
            if weakness:
                problems.append(f"{name} {weakness}: it must be at least {MIN_SECRET_LENGTH} "
                                "characters and not a placeholder")
        if not config["METRICS_TOKEN"] and not config["METRICS_PUBLIC"]:
            problems.append("METRICS_TOKEN must be set in production (or METRICS_PUBLIC=true when only "
                            "a private network reaches /metrics)")
        if config["EMAIL_API_URL"] and not config["EMAIL_API_URL"].lower().startswith("https://"):
            problems.append("EMAIL_API_URL must be an https:// URL in production (it carries "
                            "EMAIL_API_KEY and the recipients' addresses)")
        sslmode = effective_sslmode(config["DATABASE_CONNINFO"], env)
        if sslmode is not None and sslmode not in TLS_SSLMODES and not config["DB_ALLOW_WEAK_SSLMODE"]:
            problems.append(f"DB_SSLMODE (or the URL's sslmode) is {sslmode}: it must be require, "
                            "verify-ca or verify-full in production (or DB_ALLOW_WEAK_SSLMODE=true for "
                            "a Unix socket or a local PgBouncer)")
        if not config["DB_PASSWORD"] and not config["DATABASE_URL"]:
            problems.append("DB_PASSWORD must be set in production")
        if "*" in config["CORS_ORIGINS"]:
            problems.append("CORS_ORIGINS must list exact origins in production, not *")
        if config["DEBUG"]:
            problems.append("DEBUG must be false in production")
        if config["ENABLE_DOCS"]:
            problems.append("ENABLE_DOCS must be false in production")
        if config["ENABLE_UI_DEMO"]:
            problems.append("ENABLE_UI_DEMO must be false in production (its page hands out a user's token)")
    return problems


def _push_problems(config: Mapping[str, Any]) -> list[str]:
    """VAPID_PRIVATE_KEY readable, VAPID_SUBJECT a real contact with it, no plain-HTTP push service in
    production. (Never the key's value in a message.)"""
    problems = []
    production = config["ENVIRONMENT"] == "production"
    if config["VAPID_PRIVATE_KEY"]:
        try:
            load_vapid_private_key(config["VAPID_PRIVATE_KEY"])
        except ValueError as exc:
            problems.append(f"VAPID_PRIVATE_KEY {exc} (`notifications-api vapid-keys` makes one)")
        if not config["VAPID_SUBJECT"]:
            problems.append("VAPID_SUBJECT is required with VAPID_PRIVATE_KEY (mailto:you@your-domain or "
                            "https://your-domain: push services contact the sender through it)")
    if config["VAPID_SUBJECT"]:
        problem = vapid_subject_problem(config["VAPID_SUBJECT"], production)
        if problem:
            problems.append(f"VAPID_SUBJECT {problem}")
    if production:
        plain = [entry for entry in config["PUSH_ALLOWED_HOSTS"] if entry.startswith("http://")]
        if plain:
            problems.append(f"PUSH_ALLOWED_HOSTS allows plain HTTP ({', '.join(plain)}): test push services "
                            "only, never in production")
    return problems


def _target_session_attrs_problems(config: Mapping[str, Any]) -> list[str]:
    """A DATABASE_URL naming another target_session_attrs than DB_TARGET_SESSION_ATTRS is ambiguous."""
    if not config["DATABASE_URL"]:
        return []
    try:
        given = conninfo_to_dict(config["DATABASE_URL"]).get("target_session_attrs")
    except ProgrammingError:
        return ["DATABASE_URL is not a valid libpq URL or conninfo"]
    if given and given != config["DB_TARGET_SESSION_ATTRS"]:
        return [f"DATABASE_URL asks for target_session_attrs={given} but DB_TARGET_SESSION_ATTRS is "
                f"{config['DB_TARGET_SESSION_ATTRS']}: set DB_TARGET_SESSION_ATTRS instead"]
    return []


def database_conninfo(config: Mapping[str, Any]) -> str:
    """The libpq connection string: DATABASE_URL when set, else the DB_* parts.

    Always with `target_session_attrs` (default read-write): given several hosts (`host=a,b`, a
    failover pair), libpq connects to the one that accepts writes and skips a standby.
    """
    attrs = config["DB_TARGET_SESSION_ATTRS"]
    if config["DATABASE_URL"]:
        return make_conninfo(config["DATABASE_URL"], target_session_attrs=attrs)
    # keyword form: quoting is libpq's, and DB_HOST may also be a Unix-socket directory
    return make_conninfo(host=config["DB_HOST"] or "localhost", port=config["DB_PORT"],
                         dbname=config["DB_NAME"], user=config["DB_USER"],
                         password=config["DB_PASSWORD"] or None, sslmode=config["DB_SSLMODE"],
                         target_session_attrs=attrs)


def database_read_conninfo(config: Mapping[str, Any]) -> str | None:
    """The standbys' connection string, or None (no read target: every read uses the primary).

    DATABASE_READ_URL when set (one host or libpq's multi-host form), else DB_READ_HOST/DB_READ_PORT
    with everything else (database, login, TLS) as the primary's. Always with
    DB_READ_TARGET_SESSION_ATTRS (default standby: a read pool never lands on the primary).
    """
    attrs = config["DB_READ_TARGET_SESSION_ATTRS"]
    if config["DATABASE_READ_URL"]:
        return make_conninfo(config["DATABASE_READ_URL"], target_session_attrs=attrs)
    if not config["DB_READ_HOST"]:
        return None
    return make_conninfo(config["DATABASE_CONNINFO"], host=config["DB_READ_HOST"],
                         port=config["DB_READ_PORT"], target_session_attrs=attrs)


def _read_url_problems(config: Mapping[str, Any]) -> list[str]:
    if config["DATABASE_READ_URL"] and config["DB_READ_HOST"]:
        return ["set DATABASE_READ_URL or DB_READ_HOST, not both"]
    if not config["DATABASE_READ_URL"]:
        return []
    try:
        given = conninfo_to_dict(config["DATABASE_READ_URL"]).get("target_session_attrs")
    except ProgrammingError:
        return ["DATABASE_READ_URL is not a valid libpq URL or conninfo"]
    if given and given != config["DB_READ_TARGET_SESSION_ATTRS"]:
        return [f"DATABASE_READ_URL asks for target_session_attrs={given} but DB_READ_TARGET_SESSION_ATTRS "
                f"is {config['DB_READ_TARGET_SESSION_ATTRS']}: set DB_READ_TARGET_SESSION_ATTRS instead"]
    return []


REDIS_URL_SCHEMES = ("redis", "rediss", "redis+sentinel")


def _redis_url_problems(config: Mapping[str, Any]) -> list[str]:
    """REDIS_URL is a redis://, rediss:// or redis+sentinel://h1:p1,h2:p2/service URL (never shown)."""
    if config["REDIS_HOST"]:
        return ["set REDIS_URL or REDIS_HOST, not both"]
    parts = urlsplit(config["REDIS_URL"])
    if parts.scheme not in REDIS_URL_SCHEMES:
        return [f"REDIS_URL must start with {', '.join(s + '://' for s in REDIS_URL_SCHEMES)}"]
    hosts = parts.netloc.rpartition("@")[2].split(",")
    for host in hosts:
        name, _, port = host.rpartition(":") if ":" in host else (host, "", "")
        if not name:
            return ["REDIS_URL must name a host for every comma-separated entry"]
        if port and not (port.isdigit() and 1 <= int(port) <= 65535):
            return ["REDIS_URL has a port that is not a number from 1 to 65535"]
    if parts.scheme == "redis+sentinel":
        if not parts.path.strip("/"):
            return ["REDIS_URL (redis+sentinel) must end with the service name: "
                    "redis+sentinel://host:26379,host:26379/mymaster"]
    elif len(hosts) > 1:
        return ["REDIS_URL lists several hosts: use redis+sentinel:// for a Sentinel-managed Redis"]
    return []


def redis_uri(config: Mapping[str, Any]) -> str | None:
    """Flask-Limiter storage URI (REDIS_URL, else built from REDIS_*), or None without Redis."""
    if config["REDIS_URL"]:
        return config["REDIS_URL"]
    if not config["REDIS_HOST"]:
        return None
    scheme = "rediss" if config["REDIS_SSL"] else "redis"
    auth = f":{quote(config['REDIS_PASSWORD'], safe='')}@" if config["REDIS_PASSWORD"] else ""
    return f"{scheme}://{auth}{config['REDIS_HOST']}:{config['REDIS_PORT']}/{config['REDIS_DB']}"
