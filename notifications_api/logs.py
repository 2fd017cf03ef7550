"""JSON log lines on stdout, configured once by the factory; secrets are scrubbed."""
from __future__ import annotations

import logging
import sys
from collections.abc import Iterable

from flask import g, has_app_context
from pythonjsonlogger.json import JsonFormatter

from .config import SENSITIVE

HANDLER_NAME = "notifications_api"


class RedactSecrets(logging.Filter):
    """Last line of defence: no configured secret value ever leaves in a log line."""

    def __init__(self, secrets: Iterable[str]):
        super().__init__()
        self.secrets = sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True)

    def _scrub(self, text: str) -> str:
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, "[REDACTED]")
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        if self.secrets:
            record.msg = self._scrub(record.getMessage())
            record.args = None
            for key, value in list(record.__dict__.items()):
                if isinstance(value, str) and key not in ("msg", "name", "levelname"):
                    setattr(record, key, self._scrub(value))
        if has_app_context() and not hasattr(record, "request_id"):
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
    handler.setFormatter(JsonFormatter(
        "{asctime}{levelname}{name}{message}", style="{",
        rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
    ))
    handler.addFilter(RedactSecrets(str(config[key]) for key in SENSITIVE if config.get(key)))
    root.addHandler(handler)
    root.setLevel(config["LOG_LEVEL"])
    # Flask-Limiter logs each breach itself; our `rate_limited` event already says it once.
    logging.getLogger("flask-limiter").setLevel(max(logging.WARNING, root.level))
