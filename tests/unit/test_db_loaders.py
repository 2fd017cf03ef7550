"""The pool's column loaders (db_types.configure) against a real PostgreSQL: the API's text, exactly."""
from __future__ import annotations

from datetime import datetime, timezone

import psycopg
import pytest

from notifications_api.db import rows as db_types
from notifications_api.db.rows import format_timestamp

VALUES = [
    "2026-11-26 08:31:35+00",  # no fraction: PostgreSQL prints none
    "2026-11-26 08:31:35.1+00",
    "2026-11-26 08:31:35.12+00",
    "2026-11-26 08:31:35.123+00",
    "2026-11-26 08:31:35.1234+00",
    "2026-11-26 08:31:35.12345+00",
    "2026-11-26 08:31:35.123456+00",
    "2026-11-26 23:59:59.999999-07",  # another zone's input: the session prints it in UTC
    "0001-01-01 00:00:00+00",
    "9999-12-31 23:59:59.999999+00",
]


def _select(conninfo: str, options: str, values: list[str], configure: bool) -> list:
    with psycopg.connect(conninfo, autocommit=True, options=options) as conn:
        if configure:
            db_types.configure(conn)
        row = conn.execute("SELECT " + ", ".join(["%s::timestamptz"] * len(values)), values).fetchone()
        return list(row)


@pytest.mark.parametrize("options", [
    "-c timezone=UTC -c datestyle=ISO",  # as the login role sets it: the fast path
    "-c timezone=Asia/Kolkata -c datestyle=ISO",  # not UTC (+05:30): the fallback converts
])
def test_timestamptz_loads_as_the_api_text(database, options):
    values = VALUES if "UTC" in options else VALUES[:-1]  # (9999-12-31 is year 10000 in +05:30)
    loaded = _select(database.admin, options, values, configure=True)
    expected = [format_timestamp(value) for value in _select(database.admin, options, values, False)]
    assert loaded == expected
    assert loaded[0] == "2026-11-26T08:31:35.000000Z"
    assert loaded[1] == "2026-11-26T08:31:35.100000Z"
    assert loaded[7] == "2026-11-27T06:59:59.999999Z"


def test_timestamptz_null_stays_none(database):
    assert _select(database.admin, "-c timezone=UTC", [None], configure=True) == [None]


def test_uuid_loads_as_canonical_text(database):
    with psycopg.connect(database.admin, autocommit=True) as conn:
        db_types.configure(conn)
        value = conn.execute("SELECT 'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11'::uuid").fetchone()[0]
    assert value == "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"


def test_cursor_from_loaded_text_matches_the_datetime():
    from notifications_api.web import cursors

    moment = datetime(2026, 11, 26, 8, 31, 35, 120000, tzinfo=timezone.utc)
    notification_id = "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"
    from_text = cursors.encode("s" * 32, notification_id, None, None, format_timestamp(moment), notification_id)
    from_datetime = cursors.encode("s" * 32, notification_id, None, None, moment, notification_id)
    assert from_text == from_datetime
