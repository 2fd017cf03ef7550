"""gunicorn settings: `gunicorn -c gunicorn.conf.py notifications_api.wsgi:app` from the checkout.

The settings live in the package (notifications_api/gunicorn_conf.py), so an installed wheel has
them too: `gunicorn -c python:notifications_api.ops.gunicorn_conf notifications_api.wsgi:app`.
"""
from notifications_api.gunicorn_conf import *  # noqa: F401,F403
