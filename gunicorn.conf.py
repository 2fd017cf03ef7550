"""gunicorn settings for the Notifications API (read from the environment; see .env.example).

The database pool is opened in each worker after fork (post_worker_init), never
in the master: a pool shared across fork hangs workers.
"""
import datetime
import json
import os
import shutil
import tempfile

from dotenv import dotenv_values
from gunicorn.glogging import Logger

# Same sources as the app's config: the environment over the .env file.
_env = {k: v for k, v in dotenv_values(os.environ.get("ENV_FILE", ".env")).items() if v is not None}
_env.update(os.environ)


def _int(name, default):
    return int(_env.get(name) or default)


bind = f"0.0.0.0:{_int('PORT', 8003)}"
workers = _int("WEB_CONCURRENCY", 2)
worker_class = "gthread"
threads = _int("GUNICORN_THREADS", 4)  # DB_POOL_MAX_SIZE should be >= this
timeout = _int("GUNICORN_TIMEOUT", 30)  # DB_POOL_TIMEOUT (default 5 s) stays well below it
graceful_timeout = _int("GUNICORN_GRACEFUL_TIMEOUT", 30)
# Longer than the load balancer's idle timeout (60 s on AWS ALB and most others), so the
# LB, not gunicorn, closes idle keep-alive connections and never reuses a closed one.
keepalive = _int("GUNICORN_KEEPALIVE", 75)
max_requests = _int("GUNICORN_MAX_REQUESTS", 10000)
max_requests_jitter = _int("GUNICORN_MAX_REQUESTS_JITTER", 1000)
preload_app = False  # the app (and its pool object) is built in each worker
control_socket_disable = True
# Above the app's own limits (notifications_api/http_limits.py), which answer with problem documents;
# gunicorn's plain-text 414/431 is left for what is over these (8190 is gunicorn's request-line cap).
limit_request_line = 8190
limit_request_field_size = 16380
limit_request_fields = 200  # gunicorn >= 27 otherwise opens ~/.gunicorn/ sockets that instances fight over

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


class JsonAccessLogger(Logger):
    """Access log lines as one JSON object each (values escaped, unlike access_log_format)."""

    def access(self, resp, req, environ, request_time):
        if not self.access_log_enabled:
            return
        status = resp.status.split(None, 1)[0] if isinstance(resp.status, str) else resp.status
        request_id = next((value for name, value in resp.headers if name.lower() == "x-request-id"), None)
        line = {
            "time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
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
    from notifications_api.metrics import gunicorn_on_starting
    gunicorn_on_starting(server)


def on_exit(server):
    if _owned_metrics_dir:
        shutil.rmtree(os.environ["PROMETHEUS_MULTIPROC_DIR"], ignore_errors=True)


def _database(worker):
    extensions = getattr(getattr(worker, "wsgi", None), "extensions", None) or {}
    return extensions.get("notifications_db")


def post_worker_init(worker):
    """Open this worker's connection pool (after fork)."""
    database = _database(worker)
    if database is not None:
        database.open()


def worker_exit(server, worker):
    database = _database(worker)
    if database is not None:
        try:
            database.close()
        except Exception:
            server.log.exception("closing the connection pool failed")


def child_exit(server, worker):
    from notifications_api.metrics import gunicorn_child_exit
    gunicorn_child_exit(server, worker)
