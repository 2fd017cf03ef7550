"""Request-line and header limits, answered as problem documents (414/431) before anything else runs.

gunicorn enforces the same kind of limits while parsing, but answers them itself with an HTML page
without the contract's headers. Its limits are set above these (gunicorn.conf.py), so every request between
the two gets the app's problem document; only what is over gunicorn's (or a proxy's) is answered
outside the app (docs/EDGE.md, "Request size limits").
"""
from __future__ import annotations

from ..errors import ApiError

# Bytes of "METHOD SP request-target SP HTTP/1.1" (no CRLF), as gunicorn counts limit_request_line.
MAX_REQUEST_LINE = 4094
# Bytes of one "Name: value" header line with its CRLF, as gunicorn counts limit_request_field_size.
MAX_HEADER_FIELD = 8190
MAX_HEADER_FIELDS = 100
# What gunicorn.conf.py sets, above the app's limits (gunicorn caps its request line at 8190).
GUNICORN_LIMIT_REQUEST_LINE = 8190
GUNICORN_LIMIT_REQUEST_FIELD_SIZE = 2 * MAX_HEADER_FIELD
GUNICORN_LIMIT_REQUEST_FIELDS = 2 * MAX_HEADER_FIELDS

# Request headers that WSGI puts in the environ without the HTTP_ prefix.
_UNPREFIXED = {"CONTENT_TYPE": len("Content-Type"), "CONTENT_LENGTH": len("Content-Length")}


def request_line_length(environ: dict) -> int:
    target = environ.get("RAW_URI") or environ.get("REQUEST_URI")
    if target is None:  # a WSGI server that does not pass the raw target: rebuild it
        query = environ.get("QUERY_STRING")
        target = environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")
        target += f"?{query}" if query else ""
    return (len(environ.get("REQUEST_METHOD", "")) + len(target)
            + len(environ.get("SERVER_PROTOCOL", "HTTP/1.1")) + 2)


def header_problem(environ: dict) -> str | None:
    """Why the headers are over the limits (a "Name: value" line plus CRLF over MAX_HEADER_FIELD bytes,
    or more than MAX_HEADER_FIELDS lines), or None. The detail never echoes the client's header.

    One plain loop over the environ: it runs on every request."""
    count = 0
    longest = 0  # len("HTTP_" + NAME) + len(value): the line's length plus 1 (5 - ": " - CRLF)
    for key, value in environ.items():
        if key[:5] == "HTTP_":
            count += 1
            size = len(key) + len(value)
            if size > longest:
                longest = size
    for key, name_length in _UNPREFIXED.items():
        value = environ.get(key)
        if value:
            count += 1
            longest = max(longest, name_length + 5 + len(value))
    if longest - 1 > MAX_HEADER_FIELD:
        return f"A request header is longer than {MAX_HEADER_FIELD} bytes."
    if count > MAX_HEADER_FIELDS:
        return f"The request has more than {MAX_HEADER_FIELDS} headers."
    return None


def check_request_size(environ: dict) -> None:
    """Raise the 414 or 431 problem when the request line or the headers are over the limits."""
    if request_line_length(environ) > MAX_REQUEST_LINE:
        raise ApiError(414, "uri_too_long",
                       f"The request line is longer than {MAX_REQUEST_LINE} bytes; shorten the URL.")
    detail = header_problem(environ)
    if detail is not None:
        raise ApiError(431, "header_too_large", detail)
