"""Oversized request lines and headers reach gunicorn's own limits: a 4xx, and the worker serves on."""
from __future__ import annotations

import socket

import pytest

from harness import request

pytestmark = pytest.mark.e2e


def _raw(port: int, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=3) as sock:
        sock.sendall(data)
        chunks = []
        try:
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        except (ConnectionResetError, TimeoutError):
            pass
    return b"".join(chunks)


def test_gunicorn_limits_answer_4xx_and_the_service_stays_up(start_gunicorn):
    server = start_gunicorn(WEB_CONCURRENCY="1")
    cases = {
        "request line of 100 KB": b"GET /api/v1/notifications?" + b"a" * 100_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
        "header of 100 KB": b"GET /health/live HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 100_000 + b"\r\n\r\n",
        "500 headers": b"GET /health/live HTTP/1.1\r\nHost: x\r\n" + b"".join(
            b"X-H%d: 1\r\n" % i for i in range(500)) + b"\r\n",
        "control characters": b"GET /health/live HTTP/1.1\r\nHost: x\r\nX-A: a\x00\x01b\r\n\r\n",
        "not HTTP": b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 64,
        "bad method": b"G\xffT / HTTP/1.1\r\nHost: x\r\n\r\n",
        "duplicate content-length": b"POST /api/v1/notifications HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n"
                                    b"Content-Length: 3\r\n\r\n{}",
    }
    for name, data in cases.items():
        reply = _raw(server.port, data)
        status = int(reply.split(b" ", 2)[1]) if reply.startswith(b"HTTP/1.") else None
        first_line = reply.split(b"\r\n", 1)[0][:60] if reply else b"(connection closed)"
        print(f"\n{name}: {first_line!r}")
        assert status is None or 400 <= status < 500, (name, reply[:200])
        assert request(server.port, "GET", "/health/live").status == 200, name
    assert server.process.poll() is None


def test_between_the_app_and_gunicorn_limits_the_answer_is_a_problem_document(start_gunicorn):
    """Under gunicorn's raised limits the app's own (4094-byte line, 8190-byte header) answer with the
    contract's problem document and headers, not gunicorn's HTML page."""
    server = start_gunicorn(WEB_CONCURRENCY="1")
    cases = {
        414: b"GET /api/v1/notifications?a=" + b"a" * 6000 + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        431: b"GET /health/live HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Big: " + b"b" * 12000 + b"\r\n\r\n",
    }
    for status, data in cases.items():
        reply = _raw(server.port, data)
        head, _, body = reply.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 %d " % status), reply[:300]
        assert b"\r\ncontent-type: application/problem+json" in head.lower(), head
        assert b"\r\nx-request-id: " in head.lower(), head
        assert b'"code": "%s"' % (b"uri_too_long" if status == 414 else b"header_too_large") in body, body


def test_past_gunicorns_request_line_limit_the_414_is_what_the_document_says(start_gunicorn):
    """gunicorn's own 414 (a request line over 8190 bytes) never reaches the app: a text/html page
    without X-Request-ID. The document's 414 says exactly that (issue 31)."""
    from notifications_api import create_app
    from notifications_api.web import openapi

    server = start_gunicorn(WEB_CONCURRENCY="1")
    reply = _raw(server.port, b"GET /api/v1/notifications?a=" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    head, _, body = reply.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {name.lower(): value for name, _, value in (line.partition(": ") for line in lines[1:])}
    assert lines[0] == "HTTP/1.1 414 URI Too Long", reply[:300]
    assert headers["content-type"] == "text/html" and "x-request-id" not in headers, headers
    assert set(headers) == {"connection", "content-type", "content-length"}, headers
    assert body.startswith(b"<html>") and b"<title>URI Too Long</title>" in body, body[:300]

    app = create_app({"DATABASE_URL": "postgresql://nobody@127.0.0.1:1/never", "ENVIRONMENT": "test",
                      "JWT_SECRET": "x" * 48, "SERVICE_TOKEN": "y" * 48, "ENABLE_DOCS": True, "REDIS_HOST": ""})
    documented = openapi.spec_for(app)["components"]["responses"]["UriTooLong"]
    assert "text/html" in documented["content"] and documented["headers"]["X-Request-ID"]["required"] is False
    for said in ("`414 URI Too Long`", "`text/html`", "`Connection`, `Content-Type` and `Content-Length`",
                 "no `X-Request-ID`"):
        assert said in documented["description"], said
