"""E-mail channel fixtures: a worker login role, a local HTTP server standing in for the Email API."""
from __future__ import annotations

import secrets
import uuid

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo
from psycopg.rows import dict_row

from email_helpers import FakeEmailApi, fast_settings
from notifications_api import create_app
from notifications_api.channels.email_worker import EmailWorker, WorkerMetrics


@pytest.fixture(scope="session")
def worker_conninfo(database):
    """A login role provisioned like production's worker user (member of notifications_worker only)."""
    from notifications_api.db import admin

    role, password = f"nt_worker_{secrets.token_hex(6)}", secrets.token_urlsafe(24)
    admin.provision_worker_user(database.admin, role, password)
    yield make_conninfo(database.admin, user=role, password=password)
    with psycopg.connect(database.admin, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))  # its CONNECT grant
        conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


@pytest.fixture
def admin_db(database):
    with psycopg.connect(database.admin, autocommit=True, row_factory=dict_row) as conn:
        yield conn


@pytest.fixture(autouse=True)
def _no_leftover_deliveries(database):
    """Workers take every due row of the (shared) database: retire what earlier tests left behind."""
    with psycopg.connect(database.admin, autocommit=True) as conn:
        conn.execute("UPDATE activity.email_outbox SET status = 'cancelled', lease_expires_at = NULL"
                     " WHERE status IN ('pending', 'sending')")


@pytest.fixture(scope="session")
def _email_server():
    from pytest_httpserver import HTTPServer

    server = HTTPServer(host="127.0.0.1", port=0, threaded=True)
    server.start()
    yield server
    server.clear()
    if server.is_running():
        server.stop()


@pytest.fixture
def email_api(_email_server):
    """A fresh FakeEmailApi on the session's HTTP server, path /v1/send."""
    _email_server.clear()
    fake = FakeEmailApi(url=_email_server.url_for("/v1/send"))
    _email_server.expect_request("/v1/send", method="POST").respond_with_handler(fake.handle)
    yield fake
    _email_server.clear()


@pytest.fixture
def make_worker(worker_conninfo, email_api):
    """Factory: make_worker(**settings) -> an EmailWorker (own metrics registry) as the worker role."""
    def make(name: str | None = None, **overrides) -> EmailWorker:
        return EmailWorker(worker_conninfo, fast_settings(email_api.url, **overrides), name=name,
                           metrics=WorkerMetrics())
    return make


@pytest.fixture
def queue_emails(database):
    """Factory: queue_emails(n, **create args) -> [(user_id, notification_id)], via one fan-out as admin."""
    def queue(n: int = 1, *, title: str = "Ana commented", message: str | None = "Nice route!",
              priority: str = "normal", notification_type: str = "comment") -> list[tuple[str, str]]:
        users = [str(uuid.uuid4()) for _ in range(n)]
        with psycopg.connect(database.admin, autocommit=True) as conn:
            conn.execute("INSERT INTO activity.users (user_id, email, display_name)"
                         " SELECT u, u::text || '@example.test', 'User' FROM unnest(%s::uuid[]) AS u", (users,))
            rows = conn.execute(
                "SELECT user_id::text, notification_id::text FROM activity.sp_create_notification("
                "p_user_ids => %s::uuid[], p_notification_type => %s, p_title => %s, p_message => %s,"
                " p_priority => %s, p_queue_email => true)",
                (users, notification_type, title, message, priority)).fetchall()
        return rows
    return queue


# --- the API, for the queueing rules ------------------------------------------------------------

@pytest.fixture(scope="session")
def _api_config(database):
    return {
        "DATABASE_URL": database.app, "JWT_SECRET": secrets.token_urlsafe(36), "JWT_SECRET_PREVIOUS": "",
        "SERVICE_TOKEN": secrets.token_urlsafe(36), "SERVICE_TOKEN_PREVIOUS": "", "ENVIRONMENT": "test",
        "RATE_LIMIT_ENABLED": False, "ENABLE_DOCS": False, "LOG_LEVEL": "WARNING", "REDIS_HOST": "",
        "METRICS_TOKEN": "", "CORS_ORIGINS": (), "TRUSTED_PROXY_HOPS": 0,
    }


@pytest.fixture(scope="session")
def email_apps(_api_config):
    """Two apps on the session database: with EMAIL_API_URL set (queues e-mail) and without."""
    apps = {"on": create_app({**_api_config, "EMAIL_API_URL": "http://email.invalid/v1/send"}),
            "off": create_app({**_api_config, "EMAIL_API_URL": ""})}
    for app in apps.values():
        app.config["TESTING"] = True
    yield apps
    for app in apps.values():
        app.extensions["notifications_db"].close()


@pytest.fixture
def create(email_apps):
    """create(user_id or [ids], email=True, **fields) -> the API response (service token)."""
    def post(user_ids, email: bool = True, **fields):
        app = email_apps["on" if email else "off"]
        body = {"notification_type": "comment", "title": "Ana commented", "message": "Nice route!", **fields}
        if isinstance(user_ids, (list, tuple)):
            body["user_ids"] = list(user_ids)
        else:
            body["user_id"] = user_ids
        response = app.test_client().post("/api/v1/notifications", json=body,
                                          headers={"X-Service-Token": app.config["SERVICE_TOKEN"]})
        assert response.status_code in (200, 201), response.get_json()
        return response.get_json()
    return post
