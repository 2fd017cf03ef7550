"""WSGI entry point: `gunicorn -c python:notifications_api.ops.gunicorn_conf notifications_api.wsgi:app`."""
import logging
import sys

from . import create_app

app = create_app()

if "gunicorn" in sys.modules and "notifications_api.ops.gunicorn_conf" not in sys.modules:
    # Plain `gunicorn notifications_api.wsgi:app` runs, but with gunicorn's defaults: say so once per
    # worker instead of silently serving without the settings (the conf module is imported by the
    # master, before fork, by either `-c python:notifications_api.ops.gunicorn_conf` or gunicorn.conf.py).
    logging.getLogger(__name__).warning(
        "serving without the package's gunicorn settings", extra={
            "event": "gunicorn_settings_missing",
            "detail": "started without notifications_api.ops.gunicorn_conf: gunicorn's default worker, "
                      "timeouts and keep-alive, no multiprocess /metrics and no pool hooks; start with "
                      "`gunicorn -c python:notifications_api.ops.gunicorn_conf notifications_api.wsgi:app`"})
