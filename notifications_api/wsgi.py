"""WSGI entry point for gunicorn: `gunicorn -c gunicorn.conf.py notifications_api.wsgi:app`."""
from . import create_app

app = create_app()
