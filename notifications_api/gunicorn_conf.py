"""Kept for one release: `-c python:notifications_api.gunicorn_conf` is now `...ops.gunicorn_conf`."""
from .ops.gunicorn_conf import *  # noqa: F401,F403
