"""gunicorn settings for the Notifications API, read from the environment (and `.env`; see .env.example).

Installed with the package, so it works from a wheel:
`gunicorn -c python:notifications_api.ops.gunicorn_conf notifications_api.wsgi:app`. The checkout's
top-level gunicorn.conf.py imports everything from here (`gunicorn -c gunicorn.conf.py ...`).

The database pool is opened in each worker after fork (post_worker_init), never in the master:
a pool shared across fork hangs workers. Process-level settings (the garbage collector) are applied
there too; each carries its measured effect (bench/tail.py, docs/PERFORMANCE.md "The tail").
"""
import gc
import json
import logging
import os
import shutil
import tempfile
import time

from gunicorn.glogging import Logger

from ..web import http_limits
from ..config import SPEC, read_environment
from ..logs import utc_timestamp

__all__ = [  # what gunicorn.conf.py re-exports: gunicorn settings and server hooks only
    "bind", "workers", "worker_class", "threads", "timeout", "graceful_timeout", "keepalive",
    "max_requests", "max_requests_jitter", "preload_app", "reload", "control_socket_disable",
    "reuse_port", "worker_connections",
    "limit_request_line", "limit_request_field_size", "limit_request_fields",
    "forwarded_allow_ips", "accesslog", "errorlog", "loglevel", "logger_class",
    "on_starting", "on_exit", "post_worker_init", "worker_exit", "child_exit",
]

# The same sources as the app's config: the environment over the .env file.
_env = read_environment()


def _int(name, default):
    return int(_env.get(name) or default)


# HOST: every interface by default (a container, behind the load balancer); `make run` sets 127.0.0.1
# unless HOST is given. An IPv6 address is bracketed as gunicorn expects.
_host = (_env.get("HOST") or "0.0.0.0").strip()
bind = f"{f'[{_host}]' if ':' in _host else _host}:{_int('PORT', 8003)}"
workers = _int("WEB_CONCURRENCY", 2)
worker_class = "gthread"
threads = _int("GUNICORN_THREADS", 4)  # DB_POOL_MAX_SIZE should be > this (+1: the stream publisher thread)
timeout = _int("GUNICORN_TIMEOUT", 30)  # DB_POOL_TIMEOUT (default 5 s) stays well below it
graceful_timeout = _int("GUNICORN_GRACEFUL_TIMEOUT", 30)
# Longer than the load balancer's idle timeout (60 s on AWS ALB and most others), so the
# LB, not gunicorn, closes idle keep-alive connections and never reuses a closed one.
keepalive = _int("GUNICORN_KEEPALIVE", 75)
# Recycling a worker is a safety net against slow leaks (`make soak` measures none: RSS flat over
# 100 000 requests), and each recycle is a latency spike: the leaving worker closes its kept-alive
# connections (up to gunicorn's 2 s linger) and the clients reconnect to the other worker, which then
# carries every connection alone (keep-alive pins them): the rarer, the better the p99 (bench/tail.py;
# the figures are in docs/PERFORMANCE.md, "Figures from the code"). Still bounded; the jitter keeps
# the two workers from leaving together.
max_requests = _int("GUNICORN_MAX_REQUESTS", 100000)
max_requests_jitter = _int("GUNICORN_MAX_REQUESTS_JITTER", 10000)
preload_app = False  # the app (and its pool object) is built in each worker
# Keep-alive pins a connection to the worker that accepted it, and wrk's 16 connections opened at once
# sometimes all land on one (docs/PERFORMANCE.md, "The split, measured again": -12 % in that round).
# Both levers were measured and not taken. With reuse_port each worker has its own listening socket,
# and a recycled worker's queued connections are reset (29-46 errors per 6 s run). A
# worker_connections cap closes keep-alive connections past cap - threads, and a worker at its cap
# stops accepting (new connections wait up to the keep-alive timeout).
reuse_port = False
worker_connections = 1000  # gunicorn's default: no cap that matters
# DEBUG=true (development; the config refuses it in production): restart the workers when a
# source file changes, so `make run` serves the code as edited.
reload = SPEC["DEBUG"][0](_env.get("DEBUG") or SPEC["DEBUG"][1])
control_socket_disable = True  # gunicorn >= 27 otherwise opens ~/.gunicorn/ sockets that instances fight over
# Above the app's own limits (web/http_limits.py), which answer with problem documents;
# gunicorn's own HTML 414/431 is left for what is over these (8190 is gunicorn's request-line cap).
limit_request_line = http_limits.GUNICORN_LIMIT_REQUEST_LINE
limit_request_field_size = http_limits.GUNICORN_LIMIT_REQUEST_FIELD_SIZE
limit_request_fields = http_limits.GUNICORN_LIMIT_REQUEST_FIELDS

# X-Forwarded-* are trusted only behind a proxy we were told about; without one a client
# could spoof X-Forwarded-Proto/For. The app applies ProxyFix with TRUSTED_PROXY_HOPS.
if _env.get("FORWARDED_ALLOW_IPS") is not None:
    forwarded_allow_ips = _env["FORWARDED_ALLOW_IPS"]
else:
    forwarded_allow_ips = "*" if _int("TRUSTED_PROXY_HOPS", 0) > 0 else ""

# The app writes one JSON line per request itself, so gunicorn's access log is off unless
# ACCESS_LOG names a file or "-" (stdout).
accesslog = _env.get("ACCESS_LOG") or None
errorlog = "-"
loglevel = _env.get("GUNICORN_LOG_LEVEL", "info")


class _UtcFormatter(logging.Formatter):
    def formatTime(self, record, datefmt=None):
        return f"[{utc_timestamp(record.created)}]"


class JsonAccessLogger(Logger):
    """Access log lines as one JSON object each (values escaped, unlike access_log_format); gunicorn's
    own lines ("Booting worker ...") with the same UTC timestamps as the app's (T and Z, not local time)."""

    def setup(self, cfg):
        super().setup(cfg)
        for handler in self.error_log.handlers:
            handler.setFormatter(_UtcFormatter(self.error_fmt))

    def access(self, resp, req, environ, request_time):
        if not self.access_log_enabled:
            return
        status = resp.status.split(None, 1)[0] if isinstance(resp.status, str) else resp.status
        request_id = next((value for name, value in resp.headers if name.lower() == "x-request-id"), None)
        line = {
            "time": utc_timestamp(time.time()),
            "method": environ.get("REQUEST_METHOD"),
            "path": environ.get("PATH_INFO"),
            "status": int(status) if str(status).isdigit() else status,
            "bytes": getattr(resp, "sent", None),
            "duration_ms": round(request_time.total_seconds() * 1000, 3),
            "request_id": request_id,
            "remote_addr": environ.get("REMOTE_ADDR"),
        }
        try:
            self.access_log.info(json.dumps(line))
        except Exception:
            self.exception("could not write the access log line")


logger_class = JsonAccessLogger

# prometheus_client multiprocess mode: every worker writes its metrics to this directory and
# /metrics aggregates them. It must be set before workers import prometheus_client.
_owned_metrics_dir = not os.environ.get("PROMETHEUS_MULTIPROC_DIR")
if _owned_metrics_dir:
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="notifications-api-metrics-")


def on_starting(server):
    """Start with an empty metrics directory: stale files would resurrect dead workers' counters."""
    from ..metrics import gunicorn_on_starting
    gunicorn_on_starting(server)


def on_exit(server):
    if _owned_metrics_dir:
        shutil.rmtree(os.environ["PROMETHEUS_MULTIPROC_DIR"], ignore_errors=True)


def _database(worker):
    extensions = getattr(getattr(worker, "wsgi", None), "extensions", None) or {}
    return extensions.get("notifications_db")


def post_worker_init(worker):
    """Open this worker's connection pool (after fork) to its working size, then freeze what the
    worker has built.

    With DB_POOL_MIN_SIZE unset the pool keeps a connection per request thread plus one for the stream
    publisher, and the worker waits for them before it takes traffic: its first concurrent requests
    no longer each open one (10-68 ms; docs/PERFORMANCE.md). At most DB_POOL_TIMEOUT, and no longer
    than the first failed connection attempt: a worker whose database is down still starts and
    answers 503 (and /health/live 200) as before, while the pool keeps trying in the background.
    """
    database = _database(worker)
    if database is not None:
        started = time.monotonic()
        size = worker.cfg.threads + 1
        ready = database.open(working_size=size, within=database.timeout)
        stats = database.pool.get_stats()
        worker.log.log(logging.INFO if ready else logging.WARNING,
                       "database pool %s: %d of %d connections open after %.0f ms",
                       "ready" if ready else "not ready", stats.get("pool_available", 0),
                       stats.get("pool_min", 0), (time.monotonic() - started) * 1000)
    freeze_gc()


def freeze_gc():
    """Move every object the ready worker holds (the app, its modules, the pool) to the collector's
    permanent generation, which collections never scan.

    Without it the workers run full (generation-2) collections that scan all of those objects with
    the GIL held, so all of the worker's threads stand still meanwhile: a p99 spike (bench/tail.py;
    how often and how long: docs/PERFORMANCE.md, "Figures from the code"). collect() first, so
    startup garbage is freed, not frozen. The young generations keep their default thresholds: they
    are cheap, and Werkzeug's router leaves a small cycle per request for them.
    """
    gc.collect()
    gc.freeze()


def worker_exit(server, worker):
    """Publish what the worker's stream publisher still holds (a graceful restart loses nothing
    queued), then close the pool it publishes from."""
    extensions = getattr(getattr(worker, "wsgi", None), "extensions", None) or {}
    publisher = extensions.get("notifications_publisher")
    if publisher is not None:
        try:
            publisher.close()
        except Exception:
            server.log.exception("closing the stream publisher failed")
    database = _database(worker)
    if database is not None:
        try:
            database.close()
        except Exception:
            server.log.exception("closing the connection pool failed")


def child_exit(server, worker):
    from ..metrics import gunicorn_child_exit
    gunicorn_child_exit(server, worker)
