"""Web Push fixtures: the local push service, a VAPID key, an app with push on, the push worker's login."""
from __future__ import annotations

import secrets

import psycopg
import pytest

from notifications_api import create_app
from notifications_api.channels.push_crypto import generate_vapid_keys
from notifications_api.channels.push_worker import PushMetrics, PushSettings, PushWorker
from notifications_api.config import load_vapid_private_key
from notifications_api.web.auth import issue_token
from push_helpers import PushService

SUBJECT = "mailto:push-ops@notifications-api.dev"


@pytest.fixture(scope="session")
def push_service():
    service = PushService()
    yield service
    service.stop()


@pytest.fixture(scope="session")
def vapid():
    """(private key text as VAPID_PRIVATE_KEY holds it, public key text)."""
    return generate_vapid_keys()


@pytest.fixture(scope="session")
def push_config(database, vapid, push_service):
    return {
        "DATABASE_URL": database.app, "JWT_SECRET": secrets.token_urlsafe(36), "JWT_SECRET_PREVIOUS": "",
        "SERVICE_TOKEN": secrets.token_urlsafe(36), "SERVICE_TOKEN_PREVIOUS": "", "ENVIRONMENT": "test",
        "RATE_LIMIT_ENABLED": False, "ENABLE_DOCS": False, "LOG_LEVEL": "WARNING", "REDIS_HOST": "",
        "METRICS_TOKEN": "", "CORS_ORIGINS": (), "TRUSTED_PROXY_HOPS": 0, "EMAIL_API_URL": "",
        "VAPID_PRIVATE_KEY": vapid[0], "VAPID_SUBJECT": SUBJECT,
        "PUSH_ALLOWED_HOSTS": ("fcm.googleapis.com", "*.push.apple.com", push_service.origin),
    }


@pytest.fixture(scope="session")
def push_app(push_config):
    app = create_app(push_config)
    app.config["TESTING"] = True
    yield app
    app.extensions["notifications_db"].close()


@pytest.fixture
def api(push_app):
    return push_app.test_client()


@pytest.fixture
def auth(push_app):
    """auth(user_id) -> headers with the user's JWT."""
    return lambda user_id: {"Authorization": f"Bearer {issue_token(push_app.config, str(user_id))}"}


@pytest.fixture
def service(push_app):
    return {"X-Service-Token": push_app.config["SERVICE_TOKEN"]}


@pytest.fixture
def browser(push_service, vapid, api, auth):
    """browser(user_id) -> a new browser subscribed at the push service and registered for the user
    through the API: {endpoint, keys, clientHash, subscription_id}."""
    def make(user_id, user_agent: str | None = None) -> dict:
        sub = push_service.subscribe(vapid[1])
        body = {"endpoint": sub["endpoint"], "expirationTime": None, "keys": sub["keys"]}
        if user_agent:
            body["user_agent"] = user_agent
        response = api.post("/api/v1/push/subscriptions", json=body, headers=auth(user_id))
        assert response.status_code == 201, response.get_json()
        return {**sub, "subscription_id": response.get_json()["subscription_id"]}
    return make


@pytest.fixture
def notify(api, service):
    """notify(user_ids, **fields) -> the create's results (service token)."""
    def create(user_ids, **fields):
        ids = user_ids if isinstance(user_ids, (list, tuple)) else [user_ids]
        body = {"user_ids": [str(u) for u in ids], "notification_type": "comment",
                "title": "Ana commented on your post", "message": "Nice route!",
                "action_url": "https://app.example.com/posts/812#c-9", **fields}
        response = api.post("/api/v1/notifications", json=body, headers=service)
        assert response.status_code in (200, 201), response.get_json()
        return response.get_json()["results"]
    return create


@pytest.fixture(scope="session")
def push_worker_conninfo(database, push_worker_login):
    """A login provisioned like production's push worker (member of notifications_push_worker only)."""
    return push_worker_login(database.admin)


@pytest.fixture(autouse=True)
def _no_leftover_pushes(database):
    """Workers take every due row of the (shared) database: retire what earlier tests left behind (in
    the outbox, and in the push queue that the claim expands first)."""
    with psycopg.connect(database.admin, autocommit=True) as conn:
        conn.execute("DELETE FROM activity.push_queue")
        conn.execute("UPDATE activity.push_outbox SET status = 'cancelled', finished_at = now(),"
                     " lease_expires_at = NULL WHERE status IN ('pending', 'sending')")


@pytest.fixture
def admin_db(database):
    with psycopg.connect(database.admin, autocommit=True) as conn:
        yield conn


@pytest.fixture
def make_worker(push_worker_conninfo, push_config):
    """make_worker(**settings) -> a PushWorker as the worker login (own metrics registry), closed after."""
    made = []

    def make(name: str | None = None, sender=None, **overrides) -> PushWorker:
        settings = PushSettings(
            vapid_private_key=load_vapid_private_key(push_config["VAPID_PRIVATE_KEY"]),
            vapid_subject=SUBJECT, allowed_hosts=push_config["PUSH_ALLOWED_HOSTS"],
            **{"poll_interval": 0.1, "lease_seconds": 30, "connect_timeout": 2.0, "read_timeout": 5.0,
               "concurrency": 8, **overrides})
        worker = PushWorker(push_worker_conninfo, settings, name=name, sender=sender, metrics=PushMetrics())
        made.append(worker)
        return worker
    yield make
    for worker in made:
        worker.stop()
