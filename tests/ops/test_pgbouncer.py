"""The service through a real PgBouncer in transaction pooling, prepared statements off (as
docs/PRODUCTION.md documents): the API's main paths end to end, several app connections sharing one
server connection. PgBouncer refuses the libpq `options` startup parameter, so no session setting
may travel there (they live on the login role)."""
from __future__ import annotations

import secrets
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest

from notifications_api.web.auth import issue_token

API = "/api/v1/notifications"


@pytest.fixture
def bouncer(database, pgbouncer):
    """The app login's conninfo through a PgBouncer in front of the session database."""
    return pgbouncer(database.app)[0]


def test_pgbouncer_refuses_startup_options(bouncer):
    """What the pool used to send: PgBouncer refuses the connection outright."""
    with pytest.raises(psycopg.OperationalError, match="unsupported startup parameter"):
        psycopg.connect(bouncer, options="-c statement_timeout=5000", connect_timeout=5)
    with psycopg.connect(bouncer, autocommit=True, prepare_threshold=None) as conn:  # the role's settings
        assert conn.execute("SELECT current_setting('TimeZone'), current_setting('DateStyle')").fetchone() == (
            "UTC", "ISO, MDY")


def test_main_paths_through_pgbouncer_in_transaction_mode(bouncer, app_factory, make_user):
    app = app_factory({
        "DATABASE_URL": bouncer, "DB_PREPARE_THRESHOLD": None, "DB_POOL_MIN_SIZE": 4, "DB_POOL_MAX_SIZE": 4,
        "JWT_SECRET": secrets.token_urlsafe(36), "JWT_SECRET_PREVIOUS": "",
        "SERVICE_TOKEN": secrets.token_urlsafe(36), "SERVICE_TOKEN_PREVIOUS": "", "ENVIRONMENT": "test",
        "RATE_LIMIT_ENABLED": False, "ENABLE_DOCS": False, "LOG_LEVEL": "WARNING", "REDIS_HOST": "",
        "METRICS_TOKEN": "", "EMAIL_API_URL": "", "CORS_ORIGINS": (), "TRUSTED_PROXY_HOPS": 0,
    })
    client = app.test_client()
    user = make_user()
    h = {"Authorization": f"Bearer {issue_token(app.config, user)}"}
    service = {"X-Service-Token": app.config["SERVICE_TOKEN"]}

    created = []
    for n in range(3):
        r = client.post(API, json={"user_id": user, "notification_type": "comment", "title": f"t{n}",
                                   "expires_at": "2999-01-01T00:00:00Z"}, headers=service)
        assert r.status_code == 201, r.get_json()
        created.append(r.get_json()["results"][0]["notification"])
    assert created[0]["created_at"].endswith("Z") and created[0]["expires_at"] == "2999-01-01T00:00:00.000000Z"

    listed = client.get(API, headers=h)
    assert listed.status_code == 200
    assert [i["title"] for i in listed.get_json()["items"]] == ["t2", "t1", "t0"]
    count = client.get(f"{API}/unread/count", headers=h)
    assert count.status_code == 200 and count.get_json()["unread_count"] == 3
    same = client.get(f"{API}/unread/count", headers={**h, "If-None-Match": count.headers["ETag"]})
    assert same.status_code == 304

    nid = created[0]["notification_id"]
    read = client.put(f"{API}/{nid}/read", headers=h)
    assert read.status_code == 200 and read.get_json()["status"] == "read"
    assert client.get(f"{API}/{nid}", headers=h).get_json()["read_at"].endswith("Z")
    bulk = client.post(f"{API}/mark-read", json={"all": True}, headers=h)
    assert bulk.status_code == 200 and bulk.get_json() == {"updated_count": 2, "unread_count": 0, "unseen_count": 0}
    assert client.delete(f"{API}/{created[1]['notification_id']}", headers=h).status_code == 204

    settings = client.patch(f"{API}/settings", json={"email_enabled": False}, headers=h)
    assert settings.status_code == 200 and settings.get_json()["email_enabled"] is False
    assert client.get(f"{API}/settings", headers=h).get_json()["email_enabled"] is False

    # four app connections, one server connection: every call is its own transaction, no session state
    def counted(_):
        with app.test_client() as c:
            return c.get(f"{API}/unread/count", headers=h).status_code

    with ThreadPoolExecutor(8) as pool:
        assert set(pool.map(counted, range(40))) == {200}
