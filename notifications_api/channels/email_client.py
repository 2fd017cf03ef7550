"""The one request the e-mail worker makes: POST a delivery to EMAIL_API_URL (stdlib http.client).

docs/EMAIL.md documents the request. http.client rather than urllib.request: it gives a
separate connect timeout (connect + TLS handshake) and read timeout (each socket read).
"""
from __future__ import annotations

import http.client
import json
import random
import socket
import ssl
import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from urllib.parse import urlsplit

from .email_outbox import Delivery

USER_AGENT = "notifications-api-email-worker/1"
MAX_RESPONSE_BYTES = 64 * 1024  # read (and drop) at most this much of a response body
ERROR_SNIPPET = 200  # characters of a failure response kept in last_error


@dataclass(frozen=True)
class Outcome:
    """What a send attempt means for the delivery."""

    kind: str  # "sent", "retry" (transient: 5xx, 429, timeout, network) or "failed" (any other 4xx)
    status: int | None  # HTTP status, None when no response came back
    error: str | None = None  # for last_error and the logs (never holds the API key)
    retry_after: float | None = None  # seconds the server asked us to wait (Retry-After)


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Retry-After as seconds from now: delta-seconds or an HTTP date; None when absent or garbage."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None or when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def backoff_delay(attempt: int, base: float, cap: float, rng: random.Random | None = None) -> float:
    """Exponential backoff with full jitter: uniform(0, min(cap, base * 2**(attempt-1)))."""
    ceiling = min(cap, base * 2 ** min(max(attempt - 1, 0), 62))
    return (rng or random).uniform(0, ceiling)


def request_body(delivery: Delivery) -> dict:
    return {
        "to": delivery.recipient,
        "subject": delivery.subject,
        "text": delivery.body,
        "notification_id": str(delivery.notification_id),
        "notification_ids": [str(n) for n in delivery.notification_ids or (delivery.notification_id,)],
        "idempotency_key": str(delivery.delivery_id),
    }


class EmailApiClient:
    """POSTs JSON to the Email API; classifies the answer. One connection per request."""

    def __init__(self, url: str, api_key: str, connect_timeout: float = 5.0, read_timeout: float = 10.0):
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("EMAIL_API_URL must be an http(s) URL")
        self.https = parts.scheme == "https"
        self.host = parts.hostname
        self.port = parts.port
        self.target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self.api_key = api_key
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self._ssl = ssl.create_default_context() if self.https else None

    def _connection(self) -> http.client.HTTPConnection:
        if self.https:
            return http.client.HTTPSConnection(self.host, self.port, timeout=self.connect_timeout,
                                               context=self._ssl)
        return http.client.HTTPConnection(self.host, self.port, timeout=self.connect_timeout)

    def send(self, delivery: Delivery) -> Outcome:
        payload = json.dumps(request_body(delivery), ensure_ascii=False, separators=(",", ":")).encode()
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "Accept": "application/json",
            "User-Agent": USER_AGENT,
            "Idempotency-Key": str(delivery.delivery_id),
        }
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        conn = self._connection()
        try:
            conn.connect()  # bounded by connect_timeout (TCP and, for https, the TLS handshake)
            conn.sock.settimeout(self.read_timeout)  # from here on: each read/write of the exchange
            conn.request("POST", self.target, body=payload, headers=headers)
            response = conn.getresponse()
            text = response.read(MAX_RESPONSE_BYTES)
            status, retry_after = response.status, response.getheader("Retry-After")
        except (socket.timeout, TimeoutError):
            return Outcome("retry", None, "timeout")
        except (OSError, http.client.HTTPException) as exc:
            return Outcome("retry", None, f"{type(exc).__name__}: {exc}"[:ERROR_SNIPPET])
        finally:
            conn.close()
        return classify(status, text, retry_after)


def classify(status: int, body: bytes = b"", retry_after: str | None = None) -> Outcome:
    """2xx sent; 429 and 5xx (and anything else unexpected) retried; other 4xx failed at once."""
    if 200 <= status < 300:
        return Outcome("sent", status)
    snippet = body.decode("utf-8", "replace").strip()[:ERROR_SNIPPET]
    error = f"HTTP {status}" + (f": {snippet}" if snippet else "")
    if 400 <= status < 500 and status != 429:
        return Outcome("failed", status, error)
    wait = parse_retry_after(retry_after) if status in (429, 503) else None
    return Outcome("retry", status, error, wait)
