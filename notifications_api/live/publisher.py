"""Live updates out: after a commit, a view hands the changed users (and any new notifications)
to this process's publisher, which publishes them to Pushpin from its own threads.

Off the request path: `changed()` only appends to a queue bounded in bytes (no I/O, never blocks).
One daemon thread per process drains it in batches: one stored-function call reads the counts of
every user in the batch, then the items are cut into POST bodies of at most CHUNK_BYTES and handed
to one sender per GRIP_PUBLISH_URL. Each sender has its own thread and its own queue (bounded in
bytes), so a slow or hung Pushpin delays only the streams it holds. A full queue or a failed
publish drops the events: counted in notifications_api_stream_publish_dropped_total and logged once
per burst. Clients lose nothing that matters for long: their next event (or poll) carries the
current counts.
"""
from __future__ import annotations

import collections
import heapq
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
# What waits to be published, per process, before anything is dropped (counted): the byte sizes
# are the events' JSON; ENTRY_OVERHEAD stands for the Python objects around each entry. Each bound
# holds one 1000-user fan-out of maximum-size notifications (~23 MB queued, ~34 MB of publish
# bodies once escaped), so only a backlog beyond that is dropped. The senders share the bodies, so
# a worker holds at most QUEUE_BYTES + PROXY_QUEUE_BYTES (~80 MiB) whatever the number of Pushpins,
# against a 512 MiB container (deploy/k8s/deployment.yaml).
QUEUE_BYTES = 32 * 1024 * 1024
PROXY_QUEUE_BYTES = 48 * 1024 * 1024
ENTRY_OVERHEAD = 200
BATCH_USERS = 1_000  # users per counts call (sp_get_unread_counts_many) and per batch
# Bytes per POST to /publish/. Pushpin 1.36 (Debian's) refuses a body above its
# [handler] push_in_max_body_size (default 1 000 000; push_in_http_max_body_size is ignored before
# 1.37) by closing the connection: every event in it would be lost. Well under either default, and
# still at least a few maximum-size notifications (~34 KB each once escaped twice).
CHUNK_BYTES = 256 * 1024
PUBLISH_TIMEOUT = 1.0  # seconds: a slow Pushpin costs its own sender thread, never a request
GATHER_SECONDS = 0.005  # after the first item, wait this long for more to share its batch


class Publisher:
    """Bounded queue + one publisher thread, started on first use (after gunicorn's fork)."""

    def __init__(self, urls: tuple[str, ...], database: Any):
        self.urls = urls
        self.database = database
        self._drop_lock = threading.Lock()
        self._queue: collections.deque = collections.deque()  # (user_id, notification | None, bytes)
        self._queued_bytes = 0
        self._later: list[tuple[float, str]] = []  # heap of (due, user_id): counts to re-publish
        self._wake = threading.Condition()
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._dropping = False  # in a burst of drops: logged at its start and at its end
        self._dropped_in_burst = 0
        self._senders = [_Sender(url, self) for url in urls]
        self.posts = 0  # POSTs Pushpin answered (tests, bench)
        self.dropped = 0  # events dropped by this process (tests, bench; the metric is global)
        self.published = 0  # items Pushpin accepted

    def changed(self, user_ids, notifications: list[dict[str, Any]] = ()) -> None:
        """Counts of `user_ids` changed (and `notifications` were created): publish, later.
        Call after the transaction committed. Never raises, never blocks."""
        if not self.urls:
            return
        entries = []
        if notifications:
            # one create's notifications share their content: measure one, not a thousand
            size = len(grip.encode(notifications[0]).encode()) + ENTRY_OVERHEAD
            entries = [(str(n["user_id"]), n, size) for n in notifications]
        entries += [(str(user_id), None, ENTRY_OVERHEAD) for user_id in user_ids]
        if not entries:
            return
        dropped = 0
        with self._wake:
            for entry in entries:
                if self._queued_bytes + entry[2] > QUEUE_BYTES:
                    dropped += 1
                    continue
                self._queue.append(entry)
                self._queued_bytes += entry[2]
            self._wake.notify()
        if dropped:
            self._drop(dropped, "queue_full")
        self._ensure_thread()

    def changed_later(self, user_id: str, delay: float) -> None:
        """Publish this user's counts `delay` seconds from now (a stream just held: anything
        published before Pushpin subscribed it is covered by this one)."""
        if not self.urls:
            return
        with self._wake:
            if len(self._later) * ENTRY_OVERHEAD + self._queued_bytes > QUEUE_BYTES:
                dropped = True
            else:
                dropped = False
                heapq.heappush(self._later, (time.monotonic() + delay, str(user_id)))
                self._wake.notify()
        if dropped:
            self._drop(1, "queue_full")
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
        """Publish what is queued (within `timeout`), then stop the threads. Counts due later
        are published now (the streams they were for are still held by Pushpin)."""
        deadline = time.monotonic() + timeout
        with self._wake:
            self._stopping = True
            self._wake.notify()
        if self._thread is not None:
            self._thread.join(max(deadline - time.monotonic(), 0))
        for sender in self._senders:
            sender.close(deadline)

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

    def _due_locked(self) -> None:
        """Move the re-publishes that are due (all of them when stopping) into the queue."""
        now = time.monotonic()
        while self._later and (self._stopping or self._later[0][0] <= now):
            self._queue.append((heapq.heappop(self._later)[1], None, ENTRY_OVERHEAD))
            self._queued_bytes += ENTRY_OVERHEAD

    def _next_batch(self) -> list | None:
        with self._wake:
            while True:
                self._due_locked()
                if self._queue:
                    break
                if self._stopping:
                    return None
                self._wake.wait(self._later[0][0] - time.monotonic() if self._later else None)
        time.sleep(GATHER_SECONDS)  # let a burst (a fan-out, concurrent requests) share one batch
        with self._wake:
            batch = []
            users: set[str] = set()
            while self._queue and (len(users) < BATCH_USERS or self._queue[0][0] in users):
                entry = self._queue.popleft()
                self._queued_bytes -= entry[2]
                users.add(entry[0])
                batch.append(entry[:2])
            return batch

    def publish_counts(self, rows: list[dict[str, Any]]) -> None:
        """Publish counts already read (the clock's rows); returns once handed to the senders."""
        self._send([[grip.counts_event(row)] for row in rows], [str(row["user_id"]) for row in rows])

    def publish_batch(self, batch: list[tuple[str, dict | None]]) -> None:
        """Read the batch's users' counts in one call, then publish each user's events: their new
        notifications (in order), then their counts."""
        order: dict[str, list[dict]] = {}
        for user_id, notification in batch:
            events = order.setdefault(user_id, [])
            if notification is not None:
                events.append(notification)
        try:
            rows = store.unread_counts_many(self.database, list(order))
        except Exception as exc:  # the database is down or slow: the clients will poll
            self._drop(len(batch), "counts_unavailable", type(exc).__name__)
            return
        events, users = [], []
        for row in rows:
            user_id = str(row["user_id"])
            events.append([grip.event("notification", n, row["version"]) for n in order.get(user_id, ())]
                          + [grip.counts_event(row)])
            users.append(user_id)
        self._send(events, users)

    def _send(self, events: list[list[str]], users: list[str]) -> None:
        """One user's events go out in order; each body stays under CHUNK_BYTES."""
        for body, count in chunk_bodies(events, users):
            for sender in self._senders:  # every Pushpin instance holds some of the streams
                sender.put(body, count)

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

    def _accepted(self, count: int) -> None:
        with self._drop_lock:
            self.posts += 1
            self.published += count
            if not self._dropping:
                return
            dropped, self._dropped_in_burst, self._dropping = self._dropped_in_burst, 0, False
        log.warning("stream publishing recovered", extra={
            "event": "stream_publish_recovered", "dropped_count": dropped})


class _Sender:
    """One Pushpin: its own queue of POST bodies (bounded in bytes) and its own thread."""

    def __init__(self, url: str, publisher: Publisher):
        self.url = url
        self.publisher = publisher
        self._queue: collections.deque = collections.deque()  # (body, item count)
        self._bytes = 0
        self._wake = threading.Condition()
        self._thread: threading.Thread | None = None
        self._stopping = False

    def put(self, body: bytes, count: int) -> None:
        with self._wake:
            full = self._bytes + len(body) > PROXY_QUEUE_BYTES
            if not full:
                self._queue.append((body, count))
                self._bytes += len(body)
                self._wake.notify()
                if self._thread is None or not self._thread.is_alive():
                    self._stopping = False
                    self._thread = threading.Thread(target=self._run, name="stream-publisher-send",
                                                    daemon=True)
                    self._thread.start()
        if full:
            self.publisher._drop(count, "proxy_queue_full", self.url)

    def close(self, deadline: float) -> None:
        with self._wake:
            self._stopping = True
            self._wake.notify()
        if self._thread is not None:
            self._thread.join(max(deadline - time.monotonic(), 0))

    def _run(self) -> None:
        while True:
            with self._wake:
                while not self._queue:
                    if self._stopping:
                        return
                    self._wake.wait()
                body, count = self._queue.popleft()
                self._bytes -= len(body)
            try:
                status = post_json(self.url, body)
            except (OSError, http.client.HTTPException) as exc:
                self.publisher._drop(count, "publish_failed", type(exc).__name__)
                continue
            if status >= 300:
                self.publisher._drop(count, "publish_rejected", str(status))
                continue
            self.publisher._accepted(count)


def chunk_bodies(events: list[list[str]], users: list[str],
                 limit: int | None = None) -> list[tuple[bytes, int]]:
    """(body, item count) for each POST: items appended in order, one item per user while its
    events fit, each body at most `limit` (CHUNK_BYTES) bytes (an item larger than that goes alone)."""
    limit = limit or CHUNK_BYTES
    bodies, parts, size = [], [], 0
    head, tail = b'{"items":[', b"]}"

    def flush():
        nonlocal parts, size
        if parts:
            bodies.append((head + b",".join(parts) + tail, len(parts)))
        parts, size = [], 0

    for user_id, user_events in zip(users, events):
        for item in _items(user_id, user_events, limit - len(head) - len(tail)):
            if parts and size + len(item) + 1 > limit - len(head) - len(tail):
                flush()
            parts.append(item)
            size += len(item) + 1
    flush()
    return bodies


def _items(user_id: str, events: list[str], limit: int) -> list[bytes]:
    """This user's events as encoded publish items, as few as fit under `limit` bytes each. JSON
    escapes character by character, so an item's size is the empty item's plus each event's
    encoded size without its quotes: linear, however many events a user has in one batch."""
    empty = len(_encode_item(user_id, ""))
    items, content, size = [], "", empty
    for event in events:
        event_size = len(json.dumps(event, ensure_ascii=False).encode()) - 2
        if content and size + event_size > limit:
            items.append(_encode_item(user_id, content))
            content, size = "", empty
        content += event
        size += event_size
    items.append(_encode_item(user_id, content))
    return items


def _encode_item(user_id: str, content: str) -> bytes:
    return json.dumps(grip.publish_item(user_id, content), ensure_ascii=False,
                      separators=(",", ":")).encode()


def post_json(url: str, body: bytes, timeout: float = PUBLISH_TIMEOUT) -> int:
    """One POST on a fresh connection (each sender posts a few times a second at most)."""
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


def changed_later(user_id: str, delay: float) -> None:
    """For views: publish this user's counts again after `delay` seconds."""
    from flask import current_app
    current_app.extensions[EXTENSION].changed_later(user_id, delay)
