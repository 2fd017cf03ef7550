"""GRIP (Pushpin's protocol): verify that a request came through the proxy, tell it to hold
a stream, and shape the server-sent events and publish items. No Flask, no HTTP here."""
from __future__ import annotations

import json
from typing import Any

import jwt

KEEP_ALIVE_SECONDS = 20  # API.md: at most every 25 s (and below common 30-60 s idle timeouts)
# Pushpin sends this comment line on an idle stream (cstring: "\n" is an escape it decodes).
KEEP_ALIVE = f":\\n\\n; format=cstring; timeout={KEEP_ALIVE_SECONDS}"


def from_proxy(grip_sig: str | None, sig_key: str) -> bool:
    """True when Grip-Sig is a JWT that Pushpin signed with our shared key and that has not expired.
    Pushpin verifies nothing for us: without this check any client could ask to be held."""
    if not grip_sig or not sig_key:
        return False
    try:
        jwt.decode(grip_sig, sig_key, algorithms=["HS256"], options={"require": ["exp"]})
    except jwt.InvalidTokenError:
        return False
    return True


def channel(user_id: str) -> str:
    """One channel per user: whatever is published to it reaches that user's streams only."""
    return f"notifications.user.{user_id}"


def hold_headers(user_id: str) -> dict[str, str]:
    return {"Grip-Hold": "stream", "Grip-Channel": channel(user_id), "Grip-Keep-Alive": KEEP_ALIVE}


def encode(data: Any) -> str:
    """An event's data: JSON on one line (what the stream sends and the publisher measures)."""
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


def event(name: str, data: Any, event_id: int | None = None, retry_ms: int | None = None) -> str:
    """One server-sent event (text/event-stream); data is JSON on one line."""
    lines = []
    if event_id is not None:
        lines.append(f"id: {event_id}")
    lines.append(f"event: {name}")
    lines.append("data: " + encode(data))
    if retry_ms is not None:
        lines.append(f"retry: {retry_ms}")
    return "\n".join(lines) + "\n\n"


def counts_event(counts: dict[str, Any]) -> str:
    """`counts`, with the user's version as its id (a client can tell order)."""
    return event("counts", {"unread_count": counts["unread_count"],
                            "unseen_count": counts["unseen_count"]}, counts["version"])


def publish_item(user_id: str, content: str) -> dict[str, Any]:
    """One item of Pushpin's /publish/ body: events appended to the user's held streams."""
    return {"channel": channel(user_id), "formats": {"http-stream": {"content": content}}}
