"""Logs are JSON lines with named events, and never carry a credential."""
import json
import re
import secrets
import uuid
from datetime import datetime, timedelta, timezone


def test_no_credentials_in_logs(make_app, capfd, make_user):
    app = make_app(LOG_LEVEL="DEBUG")
    client = app.test_client()
    from notifications_api.web.auth import issue_token
    user = make_user()
    jwt_token = issue_token(app.config, user)
    service_token = app.config["SERVICE_TOKEN"]
    capfd.readouterr()

    client.get("/api/v1/notifications", headers={"Authorization": f"Bearer {jwt_token}"})
    client.get("/api/v1/notifications", headers={"Authorization": f"Bearer {jwt_token}x"})
    client.post("/api/v1/notifications", headers={"X-Service-Token": service_token},
                json={"user_id": user, "notification_type": "comment", "title": "hi"})
    client.post("/api/v1/notifications", headers={"Authorization": f"Bearer {jwt_token}"},
                json={"user_id": user, "notification_type": "comment", "title": "hi"})
    client.post("/api/v1/notifications", headers={"X-Service-Token": service_token + "x"}, json={})

    out = capfd.readouterr()
    text = out.out + out.err
    lines = [json.loads(line) for line in out.out.splitlines() if line.startswith("{")]
    assert len([line for line in lines if line.get("message") == "request"]) == 5
    events = {line.get("event") for line in lines}
    assert {"notification_created", "invalid_jwt_token"} <= events
    assert jwt_token not in text
    assert jwt_token.split(".")[2] not in text  # not even the signature part
    assert service_token not in text
    assert app.config["JWT_SECRET"] not in text


def test_request_line_fields(make_app, capfd, make_user):
    app = make_app(LOG_LEVEL="INFO")
    from notifications_api.web.auth import issue_token
    user = make_user()
    capfd.readouterr()
    app.test_client().get("/api/v1/notifications/unread/count",
                          headers={"Authorization": f"Bearer {issue_token(app.config, user)}",
                                   "X-Request-ID": "req-123"})
    lines = [json.loads(line) for line in capfd.readouterr().out.splitlines() if line.startswith("{")]
    request_line = next(line for line in lines if line.get("message") == "request")
    assert request_line["method"] == "GET"
    assert request_line["route"] == "/api/v1/notifications/unread/count"
    assert request_line["status"] == 200
    assert request_line["request_id"] == "req-123"
    assert request_line["user_id"] == str(uuid.UUID(user))
    assert isinstance(request_line["duration_ms"], float)


def _request_lines(capfd) -> list[dict]:
    lines = [json.loads(line) for line in capfd.readouterr().out.splitlines() if line.startswith("{")]
    return [line for line in lines if line.get("message") == "request"]


def test_log_times_are_iso_8601_utc_with_t_and_z(make_app, capfd):
    app = make_app(LOG_LEVEL="INFO")
    capfd.readouterr()
    before = datetime.now(timezone.utc)
    app.test_client().get("/health/live")
    (line,) = _request_lines(capfd)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", line["time"]), line["time"]
    logged = datetime.strptime(line["time"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc)
    assert before - timedelta(seconds=1) <= logged <= datetime.now(timezone.utc)  # UTC, not local time


def test_404_lines_carry_the_path(make_app, capfd, make_user):
    app = make_app(LOG_LEVEL="INFO")
    from notifications_api.web.auth import issue_token
    token = issue_token(app.config, make_user())
    capfd.readouterr()
    client = app.test_client()
    client.get("/api/v1/notifcations?limit=5")  # no such route
    client.get(f"/api/v1/notifications/{uuid.uuid4()}", headers={"Authorization": f"Bearer {token}"})
    client.get("/" + "x" * 2000)
    client.get("/health/live")
    unrouted, unknown_id, long_path, found = _request_lines(capfd)
    assert unrouted["status"] == 404 and unrouted["route"] is None
    assert unrouted["path"] == "/api/v1/notifcations"  # the path only: a query string may carry anything
    assert unknown_id["status"] == 404 and unknown_id["path"].startswith("/api/v1/notifications/")
    assert long_path["path"] == "/" + "x" * 511  # bounded
    assert "path" not in found  # a routed success says its route template, as before


def test_service_requests_name_the_calling_service(make_app, capfd, make_user):
    previous = secrets.token_urlsafe(36)
    app = make_app(LOG_LEVEL="INFO", SERVICE_TOKEN_PREVIOUS=previous)
    user = make_user()
    capfd.readouterr()
    client = app.test_client()
    body = {"user_id": user, "notification_type": "comment", "title": "hi"}
    client.post("/api/v1/notifications", headers={"X-Service-Token": app.config["SERVICE_TOKEN"]}, json=body)
    client.post("/api/v1/notifications", headers={"Authorization": f"Bearer {previous}"}, json=body)
    client.post("/api/v1/notifications", headers={"X-Service-Token": "wrong" * 8}, json=body)
    current, rotated, refused = _request_lines(capfd)
    assert current["status"] == 201 and current["service"] == "service"
    assert rotated["status"] in (200, 201) and rotated["service"] == "service-previous-token"
    assert refused["status"] == 401 and "service" not in refused
    assert previous not in json.dumps([current, rotated, refused])
