"""WSGI entry point: `gunicorn -c python:notifications_api.gunicorn_conf notifications_api.wsgi:app`."""
from . import create_app

app = create_app()
