"""Live updates out: after a commit, a view hands the changed users (and any new notifications)
to this process's publisher, which publishes them to Pushpin from its own thread.

Off the request path: `changed()` only appends to a bounded queue (no I/O, never blocks). One
daemon thread per process drains it in batches: one stored-function call reads the counts of
every user in the batch, then one POST per PUBLISH_CHUNK items goes to each GRIP_PUBLISH_URL
with a short timeout. A full queue or a failed publish drops the events: counted in
notifications_api_stream_publish_dropped_total and logged once per burst. Clients lose nothing
that matters for long: their next event (or poll) carries the current counts.
"""
from __future__ import annotations

import collections
import http.client
import json
import logging
import threading
import time
from typing import Any
from urllib.parse import urlsplit

from . import grip
from .. import metrics
from ..db import store

log = logging.getLogger(__name__)

EXTENSION = "notifications_publisher"
QUEUE_SIZE = 20_000  # users (or notifications) waiting; beyond this, drop rather than grow
BATCH_USERS = 1_000  # users per counts call (sp_get_unread_counts_many) and per batch
PUBLISH_CHUNK = 500  # items per POST to /publish/
PUBLISH_TIMEOUT = 1.0  # seconds: a slow Pushpin costs the publisher thread, never a request
GATHER_SECONDS = 0.005  # after the first item, wait this long for more to share its batch


class Publisher:
    """Bounded queue + one publisher thread, started on first use (after gunicorn's fork)."""

    def __init__(self, urls: tuple[str, ...], database: Any):
        self.urls = urls
        self.database = database
        self._drop_lock = threading.Lock()
        self._queue: collections.deque = collections.deque()
        self._wake = threading.Condition()
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._dropping = False  # in a burst of drops: logged at its start and at its end
        self._dropped_in_burst = 0
        self.posts = 0  # POSTs sent (tests, bench)
        self.dropped = 0  # events dropped by this process (tests, bench; the metric is global)
        self.published = 0  # items Pushpin accepted

    def changed(self, user_ids, notifications: list[dict[str, Any]] = ()) -> None:
        """Counts of `user_ids` changed (and `notifications` were created): publish, later.
        Call after the transaction committed. Never raises, never blocks."""
        if not self.urls:
            return
        entries = [(str(n["user_id"]), n) for n in notifications]
        entries += [(str(user_id), None) for user_id in user_ids]
        if not entries:
            return
        with self._wake:
            room = QUEUE_SIZE - len(self._queue)
            accepted = entries[:max(room, 0)]
            self._queue.extend(accepted)
            self._wake.notify()
        if len(accepted) < len(entries):
            self._drop(len(entries) - len(accepted), "queue_full")
        self._ensure_thread()

    def _ensure_thread(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            with self._wake:
                if self._thread is None or not self._thread.is_alive():
                    self._stopping = False
                    self._thread = threading.Thread(target=self._run, name="stream-publisher",
                                                    daemon=True)
                    self._thread.start()

    def close(self, timeout: float = 2.0) -> None:
        """Publish what is queued (within `timeout`), then stop the thread."""
        with self._wake:
            self._stopping = True
            self._wake.notify()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            try:
                self.publish_batch(batch)
            except Exception:  # the thread must outlive any bug in one batch
                log.exception("stream publisher failed on a batch")
                self._drop(len(batch), "error")

    def _next_batch(self) -> list | None:
        with self._wake:
            while not self._queue:
                if self._stopping:
                    return None
                self._wake.wait()
        time.sleep(GATHER_SECONDS)  # let a burst (a fan-out, concurrent requests) share one batch
        with self._wake:
            batch = []
            users: set[str] = set()
            while self._queue and (len(users) < BATCH_USERS or self._queue[0][0] in users):
                entry = self._queue.popleft()
                users.add(entry[0])
                batch.append(entry)
            return batch

    def publish_counts(self, rows: list[dict[str, Any]]) -> None:
        """Publish counts already read (the clock's rows), synchronously, from the caller's thread."""
        items = [grip.publish_item(str(row["user_id"]), grip.counts_event(row)) for row in rows]
        for start in range(0, len(items), PUBLISH_CHUNK):
            self._post(items[start:start + PUBLISH_CHUNK])

    def publish_batch(self, batch: list[tuple[str, dict | None]]) -> None:
        """Read the batch's users' counts in one call, then publish one item per user:
        their new notifications (in order), then their counts."""
        order: dict[str, list[str]] = {}
        for user_id, notification in batch:
            events = order.setdefault(user_id, [])
            if notification is not None:
                events.append(notification)
        try:
            rows = store.unread_counts_many(self.database, list(order))
        except Exception as exc:  # the database is down or slow: the clients will poll
            self._drop(len(batch), "counts_unavailable", type(exc).__name__)
            return
        items = []
        for row in rows:
            user_id = str(row["user_id"])
            content = "".join(grip.event("notification", n, row["version"]) for n in order.get(user_id, ()))
            items.append(grip.publish_item(user_id, content + grip.counts_event(row)))
        for start in range(0, len(items), PUBLISH_CHUNK):
            self._post(items[start:start + PUBLISH_CHUNK])

    def _post(self, items: list[dict[str, Any]]) -> None:
        body = json.dumps({"items": items}, ensure_ascii=False, separators=(",", ":")).encode()
        for url in self.urls:  # every Pushpin instance holds some of the streams
            try:
                status = post_json(url, body)
            except (OSError, http.client.HTTPException) as exc:
                self._drop(len(items), "publish_failed", type(exc).__name__)
                continue
            self.posts += 1
            if status >= 300:
                self._drop(len(items), "publish_rejected", str(status))
                continue
            self.published += len(items)
            self._recovered()

    def _drop(self, count: int, reason: str, detail: str | None = None) -> None:
        metrics.record_stream_publish_dropped(count)
        with self._drop_lock:
            self.dropped += count
            self._dropped_in_burst += count
            first = not self._dropping
            self._dropping = True
        if first:  # once per burst, not once per event
            log.warning("stream events dropped", extra={
                "event": "stream_publish_dropped", "reason": reason, "error": detail,
                "dropped_count": count})

    def _recovered(self) -> None:
        if not self._dropping:
            return
        with self._drop_lock:
            dropped, self._dropped_in_burst, self._dropping = self._dropped_in_burst, 0, False
        log.warning("stream publishing recovered", extra={
            "event": "stream_publish_recovered", "dropped_count": dropped})


def post_json(url: str, body: bytes, timeout: float = PUBLISH_TIMEOUT) -> int:
    """One POST on a fresh connection (the publisher posts a few times a second at most)."""
    parts = urlsplit(url)
    connection_class = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    connection = connection_class(parts.hostname, parts.port, timeout=timeout)
    try:
        connection.request("POST", parts.path or "/publish/", body=body,
                           headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


def init_app(app) -> None:
    app.extensions[EXTENSION] = Publisher(app.config["GRIP_PUBLISH_URL"],
                                          app.extensions["notifications_db"])


def changed(user_ids, notifications: list[dict[str, Any]] = ()) -> None:
    """For views: publish that these users' counts changed (after the commit)."""
    from flask import current_app
    current_app.extensions[EXTENSION].changed(user_ids, notifications)
