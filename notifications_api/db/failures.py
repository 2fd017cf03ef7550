"""What a failed stored-function call means for the API: SQLSTATEs and psycopg errors to problems."""
from __future__ import annotations

import re

import psycopg
from psycopg_pool import PoolTimeout

from ..errors import ApiError

RETRY_AFTER = "2"
# SQLSTATEs raised by the stored functions (migrations_sql) -> (status, code).
FUNCTION_ERRORS = {
    "NA401": (401, "user_not_found", "The token's user does not exist."),
    "NA403": (403, "user_inactive", "The token's user is inactive."),
    "NA404": (404, "notification_not_found", "No such notification."),
    "NAP04": (404, "subscription_not_found", "No such push subscription."),
    "NAS09": (409, "notification_snoozed", "The notification is snoozed; wake it first."),
    "NAA09": (409, "notification_archived", "The notification is archived."),
}
# Failures that mean "the database cannot serve this now": 503, never 500.
UNAVAILABLE = (PoolTimeout, psycopg.OperationalError, psycopg.InterfaceError)
# 40001 serialization_failure, 40P01 deadlock_detected: PostgreSQL rolled the transaction back. A
# call is one autocommit transaction, so running it again is safe: once. (Not the rest of class 40:
# 40003 statement_completion_unknown may have committed. In psycopg both are OperationalErrors.)
ROLLED_BACK = (psycopg.errors.SerializationFailure, psycopg.errors.DeadlockDetected)
# Class 22 (data exception) primary messages quote the offending input ("invalid input syntax for
# type uuid: \"...\""): a parameter value, which never goes into a log line.
_QUOTED = re.compile(r'"[^"]*"')
# ... and these SQLSTATEs whatever their class: 25006 read_only_sql_transaction is the answer of
# a primary that was demoted (or fenced read-only) during a failover.
UNAVAILABLE_SQLSTATES = {"25006": "read_only"}
SHUTDOWN_SQLSTATES = {"57P01": "server_shutdown", "57P02": "server_shutdown", "57P03": "server_starting"}


def unavailable(exc: Exception) -> bool:
    return isinstance(exc, UNAVAILABLE) or getattr(exc, "sqlstate", None) in UNAVAILABLE_SQLSTATES


def unavailable_reason(exc: Exception, outage: bool) -> str:
    """Why the database could not serve a call, for the 503's log line and metric label."""
    sqlstate = getattr(exc, "sqlstate", None)
    if sqlstate in UNAVAILABLE_SQLSTATES:
        return UNAVAILABLE_SQLSTATES[sqlstate]
    if sqlstate in SHUTDOWN_SQLSTATES:
        return SHUTDOWN_SQLSTATES[sqlstate]
    if isinstance(exc, psycopg.errors.QueryCanceled):
        return "statement_timeout"
    if isinstance(exc, PoolTimeout):
        return "no_connection" if outage else "pool_saturated"
    return "connection_lost"


def api_error(exc: Exception) -> ApiError:
    """The problem a failed call answers with: the function's own 4xx, a 503, or a 500."""
    sqlstate = getattr(exc, "sqlstate", None)
    if sqlstate in FUNCTION_ERRORS:
        status, code, detail = FUNCTION_ERRORS[sqlstate]
        return ApiError(status, code, detail)
    if sqlstate == "NA422":
        field = exc.diag.message_detail or "_schema"
        message = exc.diag.message_primary or "Invalid value."
        return ApiError(422, "validation_error", f"{field}: {message}", errors={field: [message]})
    if unavailable(exc):
        return ApiError(503, "database_unavailable", "The database is unavailable; retry shortly.",
                        headers={"Retry-After": RETRY_AFTER})
    return ApiError(500, "internal_error", "An unexpected error occurred; it has been logged.")


def primary_message(exc: Exception) -> str | None:
    """The server's primary message (never its DETAIL, which may hold row values), inputs redacted."""
    diag = getattr(exc, "diag", None)
    message = diag.message_primary if diag is not None else None
    sqlstate = getattr(exc, "sqlstate", None)
    if message and sqlstate and sqlstate.startswith("22"):
        message = _QUOTED.sub('"…"', message)
    return message
