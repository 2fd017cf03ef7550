"""JSON log lines on stdout, configured once by the factory; secrets are scrubbed."""
from __future__ import annotations

import json
import logging
import re
import sys
import time
from collections.abc import Iterable

from flask import g, has_app_context
from pythonjsonlogger.json import JsonFormatter

from .config import SENSITIVE

HANDLER_NAME = "notifications_api"


def utc_timestamp(created: float) -> str:
    """ISO 8601 in UTC with milliseconds, `T` and `Z` (2026-11-29T06:39:25.123Z): every log line's time."""
    seconds = int(created)
    milliseconds = int((created - seconds) * 1000)
    return f"{time.strftime('%Y-%m-%dT%H:%M:%S', time.gmtime(seconds))}.{milliseconds:03d}Z"


class RedactingJsonFormatter(JsonFormatter):
    """JSON lines; last line of defence: no configured secret value ever leaves in a log line.

    The finished line is scrubbed with one compiled pattern (cheap enough for every request),
    matching each secret both raw and as JSON would escape it.
    """

    def __init__(self, secrets: Iterable[str], *args, **kwargs):
        super().__init__(*args, **kwargs)
        variants = {v for s in secrets if s and len(s) >= 4 for v in (s, json.dumps(s)[1:-1])}
        ordered = sorted(variants, key=len, reverse=True)
        self.pattern = re.compile("|".join(map(re.escape, ordered))) if ordered else None

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return utc_timestamp(record.created)  # logging's default is local time without T or zone

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        if self.pattern is not None:
            line = self.pattern.sub("[REDACTED]", line)
        return line


class RequestIdFilter(logging.Filter):
    """Adds the current request's id to lines logged while serving it."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id") and has_app_context():
            request_id = g.get("request_id")
            if request_id:
                record.request_id = request_id
        return True


class StdoutHandler(logging.StreamHandler):
    """Writes to whatever sys.stdout is at emit time (test capture swaps it)."""

    def __init__(self):
        super().__init__(sys.stdout)

    @property
    def stream(self):
        return sys.stdout

    @stream.setter
    def stream(self, value):
        pass


def configure(config: dict) -> None:
    """Install one JSON handler on the root logger (idempotent across create_app calls)."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if handler.get_name() == HANDLER_NAME:
            root.removeHandler(handler)
    handler = StdoutHandler()
    handler.set_name(HANDLER_NAME)
    handler.setFormatter(RedactingJsonFormatter(
        (str(config[key]) for key in SENSITIVE if config.get(key)),
        "{asctime}{levelname}{name}{message}", style="{",
        rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
    ))
    handler.addFilter(RequestIdFilter())
    root.addHandler(handler)
    root.setLevel(config["LOG_LEVEL"])
    # Our lines never show the caller's file, line or function: skip the stack walk that finds
    # them for every record (the logging HOWTO's "Optimization" section; docs/PERFORMANCE.md).
    logging._srcfile = None
    # Flask-Limiter logs each breach itself; our `rate_limited` event already says it once.
    logging.getLogger("flask-limiter").setLevel(max(logging.WARNING, root.level))
