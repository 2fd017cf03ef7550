"""The Django peer of issue 19: django-notifications-hq behind a JWT, served by gunicorn (README.md)."""
