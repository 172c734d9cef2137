"""Events in the background: queued in memory, sent in batches, never lost or doubled.

* Each event's ``idempotencyKey`` is fixed when it is created, and a batch, once
  formed, is sent again as it is (same body, same request ``Idempotency-Key``) until
  the server answers it, so a retry can only ever be a duplicate, which the server
  stores once and answers ``duplicate`` (counted as delivered).
* While the server is down or the key is refused (401/403), events are held and
  retried with backoff, up to ``max_buffer`` events; past that ``on_overflow`` is
  called with each event that could not be kept.
* Items the server rejects (field errors) are dropped and passed to ``on_error``.
* ``flush(timeout)`` returns within its timeout whatever the server does.
* After ``os.fork()`` the child starts with an empty queue: the parent alone sends
  what it had queued.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx2

from ._errors import error_for
from ._http import Settings, decode, dumps, new_idempotency_key, retry_after_of

log = logging.getLogger("tansohq")

Event = dict[str, Any]
OverflowCallback = Callable[[Event], None]
ErrorCallback = Callable[[Event, dict[str, Any]], None]

MAX_BATCH = 1000
MAX_HOLD_DELAY = 30.0


@dataclass
class _Batch:
    events: list[Event]
    key: str


_LIVE: weakref.WeakSet[Delivery] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for delivery in list(_LIVE):
        delivery._forget_parent_state()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _shutdown_all() -> None:
    for delivery in list(_LIVE):
        delivery.close(timeout=delivery.shutdown_timeout)


atexit.register(_shutdown_all)


class Delivery:
    def __init__(
        self,
        settings: Settings,
        *,
        batch_size: int = 100,
        flush_interval: float = 1.0,
        max_buffer: int = 10_000,
        request_timeout: float = 10.0,
        shutdown_timeout: float = 5.0,
        sync: bool = False,
        on_overflow: OverflowCallback | None = None,
        on_error: ErrorCallback | None = None,
    ) -> None:
        if not 1 <= batch_size <= MAX_BATCH:
            raise ValueError(f"batch_size must be between 1 and {MAX_BATCH}")
        self.settings = settings
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.max_buffer = max_buffer
        self.request_timeout = request_timeout
        self.shutdown_timeout = shutdown_timeout
        self.sync = sync
        self.on_overflow = on_overflow
        self.on_error = on_error
        self._init_state()
        _LIVE.add(self)

    def _init_state(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._send_lock = threading.Lock()
        self._queue: deque[Event] = deque()
        self._inflight: _Batch | None = None
        self._oldest_at = 0.0
        self._retry_at = 0.0
        self._failures = 0
        self._flush_requested = False
        self._closed = False
        self._thread: threading.Thread | None = None
        self._client: httpx2.Client | None = None
        self._pid = os.getpid()
        self.delivered = 0
        self.dropped = 0

    def _forget_parent_state(self) -> None:
        """In a forked child: the parent's queue, locks, thread and connections are the
        parent's; the child starts empty."""
        self._init_state()

    # -- the caller's side -------------------------------------------------------------

    def enqueue(self, event: Event) -> None:
        with self._cond:
            if self._closed:
                raise RuntimeError("this Tanso client is closed")
            if self._pending_count() >= self.max_buffer:
                overflow = True
            else:
                overflow = False
                if not self._queue:
                    self._oldest_at = time.monotonic()
                self._queue.append(event)
                if len(self._queue) >= self.batch_size:
                    self._cond.notify_all()
        if overflow:
            self.dropped += 1
            self._report_overflow(event)
            return
        if self.sync:
            self.flush(timeout=self.request_timeout)
        else:
            self._ensure_thread()

    def pending(self) -> int:
        with self._cond:
            return self._pending_count()

    def flush(self, timeout: float | None = None) -> bool:
        """Send what is queued; True when nothing is left, False at the timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        if self.sync:
            return self._send_until(deadline)
        with self._cond:
            self._flush_requested = True
            self._retry_at = 0.0
            self._cond.notify_all()
        self._ensure_thread()
        with self._cond:
            while self._pending_count():
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._cond.wait(remaining)
            return True

    def close(self, timeout: float | None = None) -> bool:
        """Flush (up to ``timeout``), then stop the sender; True when nothing was left."""
        done = self.flush(timeout=timeout)
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        _LIVE.discard(self)
        return done

    # -- the sender ----------------------------------------------------------------------

    def _pending_count(self) -> int:
        return len(self._queue) + (len(self._inflight.events) if self._inflight else 0)

    def _ensure_thread(self) -> None:
        with self._cond:
            if self._thread is not None and self._thread.is_alive():
                return
            self._thread = threading.Thread(target=self._run, name="tansohq-delivery", daemon=True)
            self._thread.start()

    def _due(self, now: float) -> bool:
        if not self._pending_count() or now < self._retry_at:
            return False
        return (
            self._inflight is not None
            or self._flush_requested
            or self._closed
            or len(self._queue) >= self.batch_size
            or now - self._oldest_at >= self.flush_interval
        )

    def _wait_time(self, now: float) -> float:
        if not self._pending_count():
            return self.flush_interval
        if now < self._retry_at:
            return self._retry_at - now
        return max(0.0, self._oldest_at + self.flush_interval - now)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._due(time.monotonic()):
                    if self._closed and not self._pending_count():
                        return
                    if self._closed:  # closed with events held back: stop retrying
                        return
                    self._cond.wait(self._wait_time(time.monotonic()))
            self._send_until(deadline=None, once=True)

    def _send_until(self, deadline: float | None, once: bool = False) -> bool:
        """Send batches in this thread until none is pending (True) or the deadline, a
        failure in ``once`` mode, or a hold that outlasts the deadline (False)."""
        with self._send_lock:
            while True:
                with self._cond:
                    batch = self._next_batch()
                    if batch is None:
                        self._flush_requested = False
                        self._cond.notify_all()
                        return True
                    wait = self._retry_at - time.monotonic()
                if wait > 0:
                    if once or (deadline is not None and time.monotonic() + wait > deadline):
                        return False
                    time.sleep(wait)
                timeout = self.request_timeout
                if deadline is not None:
                    timeout = max(0.05, min(timeout, deadline - time.monotonic()))
                retry_in = self._post(batch, timeout)
                with self._cond:
                    if retry_in is None:
                        if self._inflight is batch:
                            self._inflight = None
                        self._failures = 0
                        self._retry_at = 0.0
                    else:
                        self._failures += 1
                        self._retry_at = time.monotonic() + retry_in
                    self._cond.notify_all()
                if retry_in is not None and (
                    once or (deadline is not None and time.monotonic() >= deadline)
                ):
                    return False

    def _next_batch(self) -> _Batch | None:
        if self._inflight is None and self._queue:
            events = [self._queue.popleft() for _ in range(min(self.batch_size, len(self._queue)))]
            self._inflight = _Batch(events=events, key=new_idempotency_key())
            if self._queue:
                self._oldest_at = time.monotonic()
        return self._inflight

    def _http(self) -> httpx2.Client:
        if self._client is None:
            self._client = httpx2.Client(timeout=self.request_timeout)
        return self._client

    def _hold_delay(self, retry_after: float | None) -> float:
        return self.settings.delay(min(self._failures, 6), retry_after) or 0.05

    def _post(self, batch: _Batch, timeout: float) -> float | None:
        """One attempt at a batch: None when it is settled (delivered, or dropped as
        invalid), else the seconds to wait before sending it again."""
        try:
            response = self._http().post(
                self.settings.base_url + "/api/events/ingest",
                content=dumps({"events": batch.events}),
                headers=self.settings.request_headers(batch.key),
                timeout=timeout,
            )
        except httpx2.TransportError as exc:
            log.debug("tansohq: events not sent yet (%s); holding %d", exc, len(batch.events))
            return self._hold_delay(None)
        status = response.status_code
        body = decode(response)
        if status in (200, 207):
            self._settle(batch, body)
            return None
        retry_after = retry_after_of(response)
        error = error_for(status, body, retry_after)
        if status == 400 and error.code == "validation_failed":
            self._settle(batch, body.get("error", {}) if isinstance(body, dict) else {})
            return None
        if status == 413 and len(batch.events) > 1:
            half = len(batch.events) // 2
            with self._cond:
                self._queue.extendleft(reversed(batch.events[half:]))
                batch.events = batch.events[:half]
                batch.key = new_idempotency_key()
            return 0.0
        if status == 409 and error.code == "idempotency_conflict":
            batch.key = new_idempotency_key()  # never expected: our keys are per body
            return 0.0
        if status in (401, 403):
            log.warning("tansohq: the server refused the key (%s); holding events", error)
            return min(MAX_HOLD_DELAY, max(1.0, self._hold_delay(retry_after)))
        if status in (408, 409, 429) or status >= 500:
            return self._hold_delay(retry_after)
        # Another 4xx cannot succeed by sending the same body again.
        for event in batch.events:
            self._report_error(event, {"status": status, "error": str(error)})
        self.dropped += len(batch.events)
        return None

    def _settle(self, batch: _Batch, body: Any) -> None:
        errors = body.get("errors") if isinstance(body, dict) else None
        rejected: dict[int, Any] = {}
        for item in errors or []:
            if isinstance(item, dict) and isinstance(item.get("index"), int):
                rejected[item["index"]] = item.get("fields", {})
        for index, event in enumerate(batch.events):
            if index in rejected:
                self.dropped += 1
                self._report_error(event, {"fields": rejected[index]})
            else:
                self.delivered += 1

    def _report_error(self, event: Event, detail: dict[str, Any]) -> None:
        log.warning(
            "tansohq: the server rejected an event (%s): %s", event.get("idempotencyKey"), detail
        )
        if self.on_error is not None:
            try:
                self.on_error(event, detail)
            except Exception:  # a callback's failure must not stop delivery
                log.exception("tansohq: on_error raised")

    def _report_overflow(self, event: Event) -> None:
        log.warning("tansohq: the event buffer is full (%d); event not kept", self.max_buffer)
        if self.on_overflow is not None:
            try:
                self.on_overflow(event)
            except Exception:
                log.exception("tansohq: on_overflow raised")
