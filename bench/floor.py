"""The benchmark's floor: the unread-count stored-function call from a bare WSGI callable.

Served by bench/run.py with the same gunicorn.conf.py, environment and pool settings as the
app, so "floor req/s / app req/s" is the cost of everything the app adds per request
(Flask, auth, validation, logging, metrics, headers). It trusts an X-User-Id header and
does nothing else: never deploy it.
"""
from __future__ import annotations

import json
import os
import threading

from psycopg_pool import ConnectionPool

UNREAD = "SELECT * FROM activity.sp_get_unread_count(%s::uuid, %s::boolean, NULL::bigint)"

_pool: ConnectionPool | None = None
_lock = threading.Lock()


def _get_pool() -> ConnectionPool:
    global _pool
    if _pool is None:
        with _lock:
            if _pool is None:  # opened in the worker, after fork
                _pool = ConnectionPool(
                    os.environ["DATABASE_URL"], min_size=int(os.environ.get("DB_POOL_MIN_SIZE", "1")),
                    max_size=int(os.environ.get("DB_POOL_MAX_SIZE", "8")), name="floor",
                    kwargs={"autocommit": True, "prepare_threshold": 5,
                            "options": "-c timezone=UTC"})
    return _pool


def app(environ, start_response):
    user_id = environ.get("HTTP_X_USER_ID")
    with _get_pool().connection() as conn:
        count, unseen, by_type, _version = conn.execute(UNREAD, (user_id, True)).fetchone()
    body = json.dumps({"unread_count": count, "unseen_count": unseen, "by_type": by_type or {}},
                      separators=(",", ":")).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]
