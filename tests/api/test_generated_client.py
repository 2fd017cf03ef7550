"""A Python client generated from /openapi.json by openapi-python-client (a tool nobody here wrote)
is typed and works: one model per body with every field, required response fields typed as present,
and a short script (create, list, count, the event stream by JWT and by ticket, bulk mark-read, settings,
health: an operation of every tag) against a real HTTP server."""
from __future__ import annotations

import importlib
import subprocess
import sys
import threading
import typing

import pytest
from werkzeug.serving import make_server

from notifications_api.web.auth import issue_token

PACKAGE = "notifications_api_client"


@pytest.fixture(scope="module")
def generated(app, tmp_path_factory):
    """Generate the client from the served document (no network: the generator runs locally)."""
    out = tmp_path_factory.mktemp("client")
    spec = out / "openapi.json"
    response = app.test_client().get("/openapi.json")
    assert response.status_code == 200
    spec.write_bytes(response.data)
    config = out / "config.yaml"
    # No post hooks: formatting the generated code (ruff) is not what is tested, and costs seconds.
    config.write_text(f"post_hooks: []\nproject_name_override: {PACKAGE}\npackage_name_override: {PACKAGE}\n")
    run = subprocess.run([sys.executable, "-m", "openapi_python_client", "generate", "--path", str(spec),
                          "--config", str(config), "--meta", "none", "--output-path", str(out / PACKAGE),
                          "--fail-on-warning"],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    # The generator reports what it could not model as warnings: a typed client has none (it exits
    # non-zero on one with --fail-on-warning; the text is checked too, as it was before that flag).
    assert "Warning" not in run.stdout + run.stderr, run.stdout + run.stderr
    sys.path.insert(0, str(out))
    try:
        yield importlib.import_module(PACKAGE)
    finally:
        sys.path.remove(str(out))
        for name in [name for name in sys.modules if name == PACKAGE or name.startswith(PACKAGE + ".")]:
            del sys.modules[name]


def _hints(cls) -> dict[str, str]:
    """The model's field annotations as written (the generated code imports the models it names only
    under TYPE_CHECKING, so they are compared as text)."""
    return {name: str(hint) for name, hint in cls.__annotations__.items()}


def test_bodies_are_one_typed_model_with_every_field(generated):
    from notifications_api_client.api.internal import create_notifications
    from notifications_api_client.api.notifications import mark_notifications_read_bulk
    from notifications_api_client.models import CreateNotification, MarkRead

    assert typing.get_type_hints(create_notifications.sync)["body"] is CreateNotification
    assert typing.get_type_hints(mark_notifications_read_bulk.sync)["body"] is MarkRead
    assert {"user_id", "user_ids", "notification_type", "title", "message", "actor_user_id", "target_type",
            "target_id", "action_url", "payload", "priority", "group_key", "expires_at",
            "dedupe_key"} <= set(_hints(CreateNotification))
    assert {"notification_ids", "notification_type", "all_", "before"} <= set(_hints(MarkRead))


def test_fields_the_server_always_sends_are_typed_as_present(generated):
    from notifications_api_client.models import CreateNotification, Notification, Settings

    for model in (Notification, Settings):
        hints = _hints(model)
        assert len(hints) > 5
        optional = [name for name, hint in hints.items() if "Unset" in hint]
        assert optional == [], (model.__name__, optional)
    hints = _hints(Notification)
    assert "None" in hints["read_at"] and "None" not in hints["created_at"]  # nullable, yet always sent
    assert "Unset" in _hints(CreateNotification)["message"]  # optional in a request: the test can fail


@pytest.fixture
def server(app):
    """The test app behind a real HTTP server on a free port, in a thread."""
    http = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=http.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{http.server_port}"
    http.shutdown()
    thread.join(timeout=5)


def test_a_typed_script_with_the_generated_client_works(generated, server, app, make_user):
    from client_tour import tour

    user_id = make_user()
    seen = tour(server, issue_token(app.config, user_id), app.config["SERVICE_TOKEN"], user_id)
    assert seen["created"] == ["created", "created"]
    assert sorted(kind for kind, status, read_at, payload in seen["listed"]) == ["comment", "mention"]
    assert all(status == "unread" and read_at is None and payload == {"post_id": 812}
               for _, status, read_at, payload in seen["listed"])
    assert (seen["unread_before"], seen["by_type_before"]) == (2, {"comment": 1, "mention": 1})
    assert seen["streamed"] == [("counts", {"unread_count": 2, "unseen_count": 2})]
    assert seen["streamed_with_ticket"] == ["counts"]
    assert seen["marked"] == (1, 1)
    assert seen["push_enabled"] is False
    assert seen["quiet_hours"] == ("22:00", "07:00", "Europe/Amsterdam")
    assert seen["health"] == "ok"
