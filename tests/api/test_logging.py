"""Logs are JSON lines with named events, and never carry a credential."""
import json
import uuid


def test_no_credentials_in_logs(make_app, capfd, make_user):
    app = make_app(LOG_LEVEL="DEBUG")
    client = app.test_client()
    from notifications_api.auth import issue_token
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
    from notifications_api.auth import issue_token
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
