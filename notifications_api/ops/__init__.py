"""Operations: the `notifications-api` command, preflight, gunicorn settings, development servers."""
