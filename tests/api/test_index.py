"""GET /: a small index instead of a bare 404, with the docs' links only where the docs are served."""
from __future__ import annotations


def test_index_links_to_the_api_health_and_the_docs_when_on(client):
    response = client.get("/")
    assert response.status_code == 200 and response.mimetype == "application/json"
    body = response.get_json()
    assert body == {"name": "Notifications API",
                    "links": {"api": "/api/v1/notifications", "health": "/health", "docs": "/docs",
                              "openapi": "/openapi.json"}}
    for link in body["links"].values():  # every link answers (the API itself wants credentials)
        assert client.get(link).status_code in (200, 401), link


def test_index_without_docs_names_no_docs(make_app):
    response = make_app(ENABLE_DOCS=False).test_client().get("/")
    assert response.status_code == 200
    assert response.get_json()["links"] == {"api": "/api/v1/notifications", "health": "/health"}
    assert make_app(ENABLE_DOCS=False).test_client().get("/docs").status_code == 404


def test_index_follows_the_prefix(make_app):
    response = make_app(API_V1_PREFIX="/notify/v1").test_client().get("/")
    assert response.get_json()["links"]["api"] == "/notify/v1/notifications"
