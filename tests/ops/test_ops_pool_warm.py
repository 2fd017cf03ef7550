"""A fresh worker's pool is at its working size before traffic (issue 26, item 13): its first
concurrent requests find connections open instead of each opening one (10-68 ms)."""
from __future__ import annotations

import secrets

from notifications_api.config import load_config
from notifications_api.db.pool import Database


def _database(database, **env) -> Database:
    return Database(load_config(env={"JWT_SECRET": secrets.token_urlsafe(36),
                                     "SERVICE_TOKEN": secrets.token_urlsafe(36),
                                     "DATABASE_URL": database.app, **env}))


def test_open_with_a_working_size_has_the_connections_before_the_first_call(database):
    db = _database(database, DB_POOL_MIN_SIZE="1", DB_POOL_MAX_SIZE="5")
    try:
        db.open(working_size=5)
        stats = db.pool.get_stats()
        assert stats["pool_size"] == 5 and stats["pool_available"] == 5, stats
    finally:
        db.close()
    capped = _database(database, DB_POOL_MIN_SIZE="1", DB_POOL_MAX_SIZE="3")
    try:
        capped.open(working_size=5)  # never above DB_POOL_MAX_SIZE
        assert capped.pool.get_stats()["pool_size"] == 3
    finally:
        capped.close()
