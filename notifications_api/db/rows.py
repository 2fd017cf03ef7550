"""How a pooled connection reads columns: uuid and timestamptz straight to the API's text."""
from __future__ import annotations

import logging
from datetime import datetime, timezone

import psycopg
from psycopg.adapt import Loader
from psycopg.types.datetime import TimestamptzLoader

log = logging.getLogger(__name__)

# The columns of activity.inbox_notification, read by name: the notification object of the contract
# (web/schemas.py's NotificationSchema declares the same fields, in this order; a test holds them equal).
NOTIFICATION_FIELDS = (
    "notification_id", "user_id", "notification_type", "title", "message", "actor_user_id",
    "target_type", "target_id", "action_url", "payload", "priority", "group_key", "status",
    "created_at", "delivered_at", "seen_at", "read_at", "archived_at", "snoozed_until", "expires_at",
)


def format_timestamp(value: datetime | None) -> str | None:
    """RFC 3339 in UTC with microseconds and a Z (the sessions run in UTC; others are converted)."""
    if value is None:
        return None
    if value.utcoffset():
        value = value.astimezone(timezone.utc)
    return value.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


class _UuidAsText(Loader):
    """uuid columns arrive as their canonical text: every one of them ends up in JSON anyway."""

    def load(self, data) -> str:
        return bytes(data).decode()


class _TimestamptzAsApiText(Loader):
    """timestamptz columns arrive as the API's text, RFC 3339 in UTC with microseconds and a Z.

    Every one of them ends up in JSON: reshaping PostgreSQL's text ("2026-11-26 08:31:35.168+00",
    the sessions run with TimeZone=UTC and DateStyle=ISO) costs a fraction of parsing it into a
    datetime and formatting that again, the largest per-item cost of a list page. Anything else
    (another DateStyle, a year past 9999) goes the long way, with the same result.
    """

    def __init__(self, oid: int, context=None):
        super().__init__(oid, context)
        self._fallback = TimestamptzLoader(oid, context)

    def load(self, data) -> str | None:
        text = bytes(data).decode()
        if len(text) >= 22 and text[4] == "-" and text[10] == " " and text.endswith("+00"):
            fraction = text[19:-3]  # "" or ".1" to ".123456"
            return f"{text[:10]}T{text[11:19]}{(fraction or '.').ljust(7, '0')}Z"
        return format_timestamp(self._fallback.load(data))


def configure(conn: psycopg.Connection) -> None:
    """The pool's `configure` callback: the loaders, and a warning if the session settings differ."""
    conn.adapters.register_loader("uuid", _UuidAsText)
    conn.adapters.register_loader("timestamptz", _TimestamptzAsApiText)
    # The session settings come from the login role (ALTER ROLE ... SET, see admin.py and
    # deploy/postgres/roles.sql), never from the libpq `options` parameter, which PgBouncer
    # refuses. TimeZone and DateStyle are reported at connect time: checking them costs nothing.
    timezone = conn.info.parameter_status("TimeZone")
    datestyle = conn.info.parameter_status("DateStyle") or ""
    if timezone not in ("UTC", "Etc/UTC") or not datestyle.startswith("ISO"):
        log.warning("database session settings differ from the login role's expected ones", extra={
            "event": "database_session_settings", "timezone": timezone, "datestyle": datestyle})
