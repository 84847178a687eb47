"""Writes of the report path and the audit log, off the response path.

Dovecot never reads a report's answer but waits for it, so ``report`` answers at once and its
rows are queued here and written in batches, one transaction each: by a thread for a network
database, by the event loop itself for a SQLite file (see the last paragraph). The queue is
bounded: when the database is down we drop and count rather than grow without limit.

Why a deque and a timer instead of ``queue.Queue``: the producer is the event loop, which queues
one or two rows per request. ``Queue.put`` notifies a condition every time, waking the writer
thread per row; each wake-up is a GIL hand-off that the event loop then waits to take back
(profiled: 16% of samples in the writer and 12% in ``transport.write`` waiting for the GIL at
~1,700 req/s). Here the producer only appends (atomic in CPython, no lock, no wake-up) and the
writer wakes every ``interval`` to write everything queued in one transaction, or earlier when a
batch is full or someone asks for a flush.

On a SQLite file there is no thread at all: the event loop writes each batch itself (a few
milliseconds for a fifth of a second of traffic). A writer thread there cost more than the
writing: every time the loop released the GIL for a socket call the thread took it, and the loop
waited to get it back (measured at the wrk peak: ~30 µs of the thread's own CPU and ~40 µs more
of the loop's per request, against ~7 µs of SQLite work). The loop never waits for SQLite's
lock: when a capture process is committing, the batch stays queued and is tried again on the next
tick; checkpoints, which copy pages and fsync, run in a worker thread every
``CHECKPOINT_SECONDS``.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import sqlite3
import threading
from collections.abc import Callable

from ja3svc.store.policy_store import DecisionRecord, Failure, PolicyStore, Ref, StoreBusy
from sqlalchemy.exc import DisconnectionError, InterfaceError, OperationalError

log = logging.getLogger("ja3svc.api.writer")

# Errors that say the database is not there (stopped, restarting, network), not that a row is
# bad: the batch waits in the queue. A driver's connection failure is an OperationalError
# (psycopg: "connection refused", "server closed the connection"; sqlite3: "unable to open").
_UNREACHABLE = (
    OperationalError,
    InterfaceError,
    DisconnectionError,
    sqlite3.OperationalError,
    OSError,
    TimeoutError,
)

Success = tuple[float, str, Ref]
Item = tuple[str, object]
CHECKPOINT_SECONDS = 10.0


class _Marker:
    """Queued by ``flush``: set once everything queued before it has been written (or dropped)."""

    __slots__ = ("done",)

    def __init__(self) -> None:
        self.done = threading.Event()


class BatchWriter:
    def __init__(
        self,
        store: PolicyStore,
        on_drop: Callable[[int], None] = lambda n: None,
        on_retry: Callable[[int], None] = lambda n: None,
        max_queue: int = 100_000,
        batch: int = 5_000,
        interval: float = 0.2,
    ) -> None:
        self._store = store
        self._on_drop = on_drop
        self._on_retry = on_retry
        self._down = False  # the last write found the database unreachable
        # Appends and pops from opposite ends of a deque are thread-safe without a lock.
        self._items: collections.deque[Item | _Marker] = collections.deque()
        self._max_queue = max_queue
        self._batch = batch
        # 0.2 s: five small transactions a second at most; the audit log is visible well within
        # the ~1 s the admin API promises (and /api/v1/decisions flushes first anyway).
        self._interval = interval
        self._wake = threading.Event()
        self._stopping = False
        self._thread: threading.Thread | None = None
        # Inline mode (SQLite, started on a running loop): the loop and its pending tick.
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tick_handle: asyncio.TimerHandle | asyncio.Handle | None = None
        self._last_checkpoint = 0.0  # loop time
        self._checkpointing = False
        self._busy = False  # the last inline attempt found the lock taken: wait for the timer
        self._tick_soon = False  # a tick without delay is already scheduled

    def start(self) -> None:
        if self._thread is not None or self._loop is not None:
            return
        self._stopping = False
        if self._store.writes_inline:
            try:
                self._loop = asyncio.get_running_loop()
            except RuntimeError:  # started outside a loop (scripts, tests): use the thread
                self._loop = None
            else:
                self._last_checkpoint = self._loop.time()
                self._schedule(self._interval)
                return
        self._thread = threading.Thread(target=self._run, name="policy-writer", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        if self._loop is not None:
            if self._tick_handle is not None:
                self._tick_handle.cancel()
                self._tick_handle = None
            if self._on_loop():
                self._drain(wait=True)  # shutting down: last chance to write, so wait
            self._loop = None
        if self._thread is not None:
            self._stopping = True
            self._wake.set()
            self._thread.join(timeout)
            self._thread = None

    # --- inline mode ---------------------------------------------------------------------------

    def _on_loop(self) -> bool:
        try:
            return asyncio.get_running_loop() is self._loop
        except RuntimeError:
            return False

    def _schedule(self, delay: float) -> None:
        assert self._loop is not None
        self._tick_soon = delay <= 0
        if self._tick_soon:
            self._tick_handle = self._loop.call_soon(self._tick)
        else:
            self._tick_handle = self._loop.call_later(delay, self._tick)

    def _tick(self) -> None:
        self._tick_handle = None
        self._tick_soon = False
        self._drain(wait=False)
        loop = self._loop
        if loop is None:  # stopped meanwhile
            return
        if loop.time() - self._last_checkpoint >= CHECKPOINT_SECONDS and not self._checkpointing:
            self._last_checkpoint = loop.time()
            self._checkpointing = True
            loop.run_in_executor(None, self._checkpoint)
        self._schedule(self._interval)

    def _checkpoint(self) -> None:
        try:
            self._store.checkpoint()
        except Exception as exc:  # the next one will try again; the WAL only grows meanwhile
            log.warning("checkpoint failed: %s", type(exc).__name__)
        finally:
            self._checkpointing = False

    def _put(self, item: Item) -> None:
        if len(self._items) >= self._max_queue:
            self._on_drop(1)
            return
        self._items.append(item)
        if len(self._items) >= self._batch:
            # A full batch: no point waiting for the timer.
            if self._loop is not None:
                handle = self._tick_handle
                if handle is not None and not (self._busy or self._tick_soon) and self._on_loop():
                    handle.cancel()
                    self._schedule(0)
            else:
                self._wake.set()

    def success(self, item: Success) -> None:
        self._put(("s", item))

    def failure(self, item: Failure) -> None:
        self._put(("f", item))

    def decision(self, item: DecisionRecord) -> None:
        self._put(("d", item))

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until everything queued so far is written (tests, admin reads and shutdown)."""
        if self._loop is not None:
            if self._on_loop():
                self._drain(wait=True)
                return True
            marker = _Marker()
            self._items.append(marker)
            # Drained by the loop without waiting for SQLite's lock: if another process holds
            # it, the marker waits in the queue for the next tick (or our timeout).
            self._loop.call_soon_threadsafe(self._drain, False)
            return marker.done.wait(timeout)
        if self._thread is None:
            self._drain()  # no writer thread (not started, or stopped): write inline
            return True
        marker = _Marker()
        self._items.append(marker)
        self._wake.set()
        return marker.done.wait(timeout)

    def _run(self) -> None:
        while True:
            self._wake.wait(self._interval)
            self._wake.clear()
            stopping = self._stopping
            self._drain()
            if stopping:
                return

    def _drain(self, wait: bool = True) -> None:
        """Write everything queued now, ``batch`` rows per transaction. Without ``wait``, a
        batch that finds the database locked by another process goes back to the front of the
        queue, in order, for the next tick (flush markers behind it wait with it)."""
        while self._items:
            items: list[Item] = []
            markers: list[_Marker] = []
            while self._items and len(items) < self._batch:
                item = self._items.popleft()
                if isinstance(item, _Marker):
                    markers.append(item)
                else:
                    items.append(item)
            self._busy = bool(items) and not self._write(items, wait)
            if self._busy:
                self._items.extendleft(reversed([*items, *markers]))
                return
            for marker in markers:
                marker.done.set()

    def _write(self, items: list[Item], wait: bool = True) -> bool:
        """False when the batch was not written and stays queued: the database was busy
        (``wait`` off) or unreachable (kept, in order, until it is back or the queue is full).
        True when it was written; a row the database refuses is dropped and counted alone, the
        rest of its batch is written."""
        by_kind: dict[str, list[object]] = {"s": [], "f": [], "d": []}
        for kind, payload in items:
            by_kind[kind].append(payload)
        successes, failures, decisions = by_kind["s"], by_kind["f"], by_kind["d"]
        try:
            self._store.write_batch(successes, failures, decisions, wait)  # type: ignore[arg-type]
        except StoreBusy:
            return False
        except _UNREACHABLE as exc:
            self._on_retry(len(items))
            if not self._down:
                self._down = True
                log.warning(
                    "database unreachable: keeping policy writes queued",
                    extra={"fields": {"queued": len(self._items) + len(items),
                                      "error": type(exc).__name__}},
                )  # fmt: skip
            return False
        except Exception as exc:  # one bad row must not take its batch with it
            if len(items) == 1:
                log.warning("dropping a policy write the database refuses: %s", type(exc).__name__)
                self._on_drop(1)
            else:
                for item in items:
                    if not self._write([item], wait):
                        # Unreachable or busy meanwhile: the rest goes back to the queue.
                        rest = items[items.index(item) :]
                        self._items.extendleft(reversed(rest))
                        return True
            return True
        if self._down:
            self._down = False
            log.warning("database reachable again: queued policy writes written")
        return True
