"""ETags and If-None-Match: a 304 for a client that already holds the current representation."""
from __future__ import annotations

import hashlib
from typing import Any

from flask import Response, request

from .responses import dumps


def etag_for(body: bytes) -> str:
    return '"' + hashlib.blake2b(body, digest_size=12).hexdigest() + '"'


def _if_none_match() -> list[str]:
    """The entity tags in If-None-Match, weak prefixes dropped (["*"] for a star).

    Not Werkzeug's `request.if_none_match`: it accepts an unquoted tag as the tag (`v1.2.x` would
    match `"v1.2.x"`, a 304 where the tests pin a 200) and reads a padded ` * ` as a tag, not a star.
    """
    header = request.environ.get("HTTP_IF_NONE_MATCH")
    if not header:
        return []
    if header.strip() == "*":
        return ["*"]
    tags = []
    for candidate in header.split(","):
        candidate = candidate.strip()
        if candidate.startswith("W/"):
            candidate = candidate[2:]
        tags.append(candidate)
    return tags


def _if_none_match_hits(etag: str) -> bool:
    tags = _if_none_match()
    return tags == ["*"] or etag in tags


def version_etag(owner: str, version: int, count: int) -> str:
    """A strong ETag for state that (version, count) identifies for one owner, e.g. a user's unread
    counts: '"v<version>.<count>.<owner tag>"'. The owner tag keeps one user's tag from validating
    another user's copy (a shared browser cache keyed by URL)."""
    return _version_etag(version, count, _owner_tag(owner))


def _version_etag(version: int, count: int, owner_tag: str) -> str:
    return f'"v{version}.{count}.{owner_tag}"'


def known_version(owner: str) -> tuple[int, int] | None:
    """The (version, count) of the first If-None-Match tag that version_etag made for this owner."""
    owner_tag = None
    for tag in _if_none_match():
        if not (tag.startswith('"v') and tag.endswith('"') and len(tag) < 64):
            continue
        version, _, rest = tag[2:-1].partition(".")
        count, _, _ = rest.partition(".")
        if (version.isascii() and version.isdigit() and count.isascii() and count.isdigit()
                and len(version) <= 18 and len(count) <= 18):  # (both go to bigint parameters)
            pair = int(version), int(count)
            owner_tag = owner_tag or _owner_tag(owner)
            if _version_etag(*pair, owner_tag) == tag:  # exactly ours: the 304 carries the same tag
                return pair
    return None


def _owner_tag(owner: str) -> str:
    return hashlib.blake2b(owner.encode(), digest_size=6).hexdigest()


def not_modified_or_json(etag: str, obj: Any | None, headers: dict[str, str] | None = None) -> Response:
    """304 when If-None-Match holds `etag`, else 200 with `obj` as JSON; both carry the ETag."""
    all_headers = {"ETag": etag, **(headers or {})}
    if _if_none_match_hits(etag):
        return Response(status=304, headers=all_headers)
    return Response(dumps(obj), status=200, headers=all_headers, mimetype="application/json")


def conditional_json(obj: Any, headers: dict[str, str] | None = None) -> Response:
    """200 with a strong ETag, or 304 with the same ETag (and headers) when If-None-Match matches."""
    body = dumps(obj)
    etag = etag_for(body)
    all_headers = {"ETag": etag, **(headers or {})}
    if _if_none_match_hits(etag):
        return Response(status=304, headers=all_headers)
    return Response(body, status=200, headers=all_headers, mimetype="application/json")
