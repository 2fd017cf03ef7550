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
    contract's problem document and headers, not gunicorn's plain text."""
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
