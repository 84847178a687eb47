"""Writes of the report path and the audit log, off the response path.

Dovecot never reads a report's answer but waits for it, so ``report`` answers at once and its
rows are queued here and written in batches, one transaction each, by the event loop itself:
run inline for a SQLite file, awaited for PostgreSQL (see the last two paragraphs); a writer
started outside an event loop (scripts, tests) runs the same code in a thread. The queue is
bounded; when the database is unreachable the rows go to a spool file on disk (the sightings'
spool, ``ja3svc.store.spool``, in its own directory) and are replayed, in order, before anything
newer is written once it is back, by this worker or, after a restart, by the next one to start.
Without a spool (scripts, tests) they stay queued in memory and are dropped and counted beyond
the bound.

Why a deque and a timer instead of ``queue.Queue``: the producer is the event loop, which queues
one or two rows per request. ``Queue.put`` notifies a condition every time, waking the writer
thread per row; each wake-up is a GIL hand-off that the event loop then waits to take back
(profiled: 16% of samples in the writer and 12% in ``transport.write`` waiting for the GIL at
~1,700 req/s). Here the producer only appends (atomic in CPython, no lock, no wake-up) and the
writer wakes every ``interval`` to write what is queued, ``BATCH_ROWS`` rows per transaction, or
earlier when a batch is full or someone asks for a flush.

On a SQLite file there is no thread at all: the event loop writes each batch itself (~2.4 ms
for ``BATCH_ROWS`` rows, one batch per tick: see there). A writer thread there cost more than
the writing: every time the loop released the GIL for a socket call the thread took it, and the
loop waited to get it back (measured at the wrk peak: ~30 µs of the thread's own CPU and ~40 µs more
of the loop's per request, against ~7 µs of SQLite work). The loop never waits for SQLite's
lock: when a capture process is committing, the batch stays queued and is tried again on the next
tick; checkpoints, which copy pages and fsync, run in a worker thread every
``CHECKPOINT_SECONDS``.

On PostgreSQL the same happened with the writer's thread: profiled at 2,000 req/s (py-spy), it
held 19% of the samples, and 38% of the event loop's were at its socket writes waiting to take
the GIL back from it. So the loop awaits each batch (``PolicyStore.write_batch_async``, on a
connection of its own) in a task; one batch at a time, the next tick once it is done, and
the requests go on meanwhile. The draining code is one coroutine for both: on SQLite it never
suspends and is run to completion inline (``_finished``).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import psycopg
from ja3svc.store.policy_store import DecisionRecord, Failure, PolicyStore, Ref, StoreBusy
from ja3svc.store.spool import Spool, SpoolItem, replaying
from sqlalchemy.exc import DisconnectionError, InterfaceError, OperationalError

from ja3svc.policy import LabelFact

log = logging.getLogger("ja3svc.api.writer")

# Errors that say the database is not there (stopped, restarting, network), not that a row is
# bad: the batch waits in the queue. A driver's connection failure is an OperationalError
# (psycopg: "connection refused", "server closed the connection"; sqlite3: "unable to open"),
# through SQLAlchemy or straight from the driver (the store's PostgreSQL backend).
_UNREACHABLE = (
    OperationalError,
    InterfaceError,
    DisconnectionError,
    psycopg.OperationalError,
    psycopg.InterfaceError,
    sqlite3.OperationalError,
    OSError,
    TimeoutError,
)

T = TypeVar("T")
Success = tuple[float, str, Ref]
Item = tuple[str, object]
CHECKPOINT_SECONDS = 10.0
# Rows per transaction. The loop writes one batch at a time and answers requests in between, so
# this bounds how long a write holds the loop up: on SQLite a row costs ~18 us there (its random
# index pages: decisions by account and by hash, user_fingerprints), and 0.2 s of traffic at
# 2,000 req/s (~560 rows) held it 5.5-9 ms per tick, growing with the database; a backlog after
# a checkpoint held the lock (~660 rows) 10-12 ms. That was SQLite's p99 (9.7-11 ms in 90-120 s
# soaks); in 128-row batches the ticks take ~2.4 ms, p99 4.1-5.9 ms. Writing every ~50 ms
# instead of every 200 ms costs ~35% more of the writes' CPU (52 against 38 ms per second).
# PostgreSQL's batches are built on the loop too (rows, parameters, psycopg's adaptation).
BATCH_ROWS = 128
# After a replay found the database unreachable, spool without trying it for this long.
SPOOL_RETRY_SECONDS = 1.0
# The spool files' "sensor" field, and the prefix of their names.
SPOOL_SENSOR = "policy"


def _to_record(item: Item) -> dict[str, Any]:
    """A queued write as one spool line's record (JSON: lists for tuples)."""
    kind, payload = item
    if kind == "d":
        d: DecisionRecord = payload  # type: ignore[assignment]
        return {"t": "d", "row": [*d[:-1], [list(lb) for lb in d.labels]]}
    return {"t": kind, "row": payload}


def _from_record(record: dict[str, Any]) -> Item:
    kind, row = record["t"], record["row"]
    if kind == "d":
        labels = tuple(LabelFact(*lb) for lb in row[-1])
        return ("d", DecisionRecord(*row[:-1], labels))
    if kind == "s":
        ts, user, (k, v) = row
        return ("s", (ts, user, (k, v)))
    if kind == "f":
        ts, user, (k, v), network, fail_type = row
        return ("f", (ts, user, (k, v), network, fail_type))
    raise ValueError(f"unknown policy write {kind!r}")


class _Interrupted(Exception):
    """The database became busy or unreachable in the middle of a batch written row by row:
    ``rest`` are the rows not written yet."""

    def __init__(self, rest: list[Item], cause: BaseException) -> None:
        super().__init__(type(cause).__name__)
        self.rest = rest
        self.cause = cause


def _finished(coro: Coroutine[Any, Any, T]) -> T:
    """The result of a coroutine that completes without suspending (a drain on a store whose
    writes are synchronous: nothing in it awaits anything that waits)."""
    try:
        coro.send(None)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    coro.close()
    raise RuntimeError("a synchronous store's drain suspended")


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
        batch: int = BATCH_ROWS,
        interval: float = 0.2,
        spool_dir: Path | None = None,
        on_spool: Callable[[int], None] = lambda n: None,
        on_replay: Callable[[int], None] = lambda n: None,
    ) -> None:
        self._store = store
        # PostgreSQL: batches are awaited (in a task on the loop); elsewhere they are plain calls.
        self._async = store.writes_async
        self._on_drop = on_drop
        self._on_retry = on_retry
        self._on_spool = on_spool
        self._on_replay = on_replay
        self._spool = Spool(spool_dir, SPOOL_SENSOR) if spool_dir is not None else None
        # Spool files may hold writes (ours, or a previous process's): replay before writing.
        self._spooled = self._spool is not None and bool(self._spool.files())
        self._retry_at = 0.0  # time.monotonic() before which the spool is not replayed
        self._down = False  # the last write found the database unreachable
        # Appends and pops from opposite ends of a deque are thread-safe without a lock.
        self._items: collections.deque[Item | _Marker] = collections.deque()
        self._max_queue = max_queue
        self._batch = batch
        # 0.2 s, or at once when a batch is full; the audit log is visible well within
        # the ~1 s the admin API promises (and /api/v1/decisions flushes first anyway).
        self._interval = interval
        self._wake = threading.Event()
        self._stopping = False
        self._thread: threading.Thread | None = None
        # Loop mode (a SQLite file or PostgreSQL, started on a running loop): the loop, its
        # pending tick, and the drain being awaited (PostgreSQL).
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tick_handle: asyncio.TimerHandle | asyncio.Handle | None = None
        self._task: asyncio.Task[None] | None = None
        # The batch a drain is writing (with its flush markers), for stop() to spool.
        self._in_flight: list[Item | _Marker] | None = None
        self._last_checkpoint = 0.0  # loop time
        self._checkpointing = False
        self._busy = False  # the last inline attempt found the lock taken: wait for the timer
        self._tick_soon = False  # a tick without delay is already scheduled

    def start(self) -> None:
        if self._thread is not None or self._loop is not None:
            return
        self._stopping = False
        if self._store.writes_inline or self._async:
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
                if not self._async:
                    self._complete(self._drain(wait=True))  # shutting down: last chance, so wait
                else:
                    # A drain cannot be awaited here (flush_async first, as the service does).
                    # The batch one is still writing goes back to the front now, to be spooled
                    # with the rest: cancelled, the task would only put it back after this (and
                    # the process would exit with it in memory). It may have reached the
                    # database too: a report stored twice rather than lost.
                    if self._task is not None:
                        self._task.cancel()
                        self._task = None
                        if self._in_flight:
                            self._items.extendleft(reversed(self._in_flight))
                        self._in_flight = None
                    if self._items and self._spool is not None:
                        self._spool_queue()  # durable, replayed by the next process
            if self._items:
                log.warning("stopping with policy writes unwritten",
                            extra={"fields": {"queued": len(self._items)}})  # fmt: skip
            self._loop = None
        if self._thread is not None:
            self._stopping = True
            self._wake.set()
            self._thread.join(timeout)
            self._thread = None

    def _complete(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run a drain to its end off the loop's ticks: inline for a synchronous store, else on
        an event loop of its own (a writer used outside the service: scripts, tests)."""
        if not self._async:
            _finished(coro)
        else:
            asyncio.run(coro)

    # --- loop mode ---------------------------------------------------------------------------

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
        loop = self._loop
        if loop is None or self._task is not None:  # stopped; or a drain is awaiting the database
            return
        if self._async:
            # Awaited in a task; the next tick is scheduled when it is done, so batches never
            # overlap (they are written in order) and requests are answered meanwhile.
            self._task = loop.create_task(self._drain(wait=False))
            self._task.add_done_callback(self._drained)
            return
        _finished(self._drain(wait=False))
        if loop.time() - self._last_checkpoint >= CHECKPOINT_SECONDS and not self._checkpointing:
            self._last_checkpoint = loop.time()
            self._checkpointing = True
            loop.run_in_executor(None, self._checkpoint)
        self._schedule(self._next_tick())

    def _drained(self, task: asyncio.Task[None]) -> None:
        if task is not self._task:  # cancelled by stop()
            return
        self._task = None
        if not task.cancelled() and task.exception() is not None:
            exc = task.exception()
            log.error("policy writer failed", exc_info=exc)
        if self._loop is not None and self._tick_handle is None:
            self._schedule(self._next_tick())

    def _kick(self) -> None:
        """A drain as soon as possible (a flush from another thread)."""
        if self._loop is None:
            return
        if self._task is not None:  # it drains everything queued, the flush marker included
            return
        if self._tick_handle is not None:
            self._tick_handle.cancel()
            self._tick_handle = None
        self._tick()

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
        """Wait until everything queued so far is written, or spooled if the database is
        unreachable (tests, admin reads and shutdown); the spool is tried first. Not on the
        loop of a writer whose batches are awaited: ``flush_async`` there."""
        self._retry_at = 0.0
        if self._loop is not None:
            if self._on_loop():
                if self._async:
                    raise RuntimeError("flush() would block the loop: await flush_async()")
                self._complete(self._drain(wait=True))
                return True
            marker = _Marker()
            self._items.append(marker)
            # Drained by the loop without waiting for SQLite's lock: if another process holds
            # it, the marker waits in the queue for the next tick (or our timeout).
            self._loop.call_soon_threadsafe(self._kick)
            return marker.done.wait(timeout)
        if self._thread is None:
            # No writer thread (not started, or stopped): write here.
            self._complete(self._drain())
            return True
        marker = _Marker()
        self._items.append(marker)
        self._wake.set()
        return marker.done.wait(timeout)

    async def flush_async(self, timeout: float = 5.0) -> bool:
        """``flush`` for a caller on the writer's own loop (the service's shutdown)."""
        if not self._on_loop():
            return await asyncio.to_thread(self.flush, timeout)
        if not self._async:
            return self.flush(timeout)  # drained inline
        self._retry_at = 0.0
        marker = _Marker()
        self._items.append(marker)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not marker.done.is_set():
            left = deadline - loop.time()
            if left <= 0:
                return False
            if self._task is None:
                self._kick()
            task = self._task
            if task is None:  # nothing to await: the marker was released
                break
            await asyncio.wait([task], timeout=left)
            if self._busy:  # unreachable and no spool: not a tight loop of connection attempts
                await asyncio.sleep(min(0.1, max(0.0, deadline - loop.time())))
        return marker.done.is_set()

    def _run(self) -> None:
        loop = asyncio.new_event_loop() if self._async else None
        try:
            while True:
                self._wake.wait(self._interval)
                self._wake.clear()
                stopping = self._stopping
                if loop is None:
                    _finished(self._drain())
                else:
                    loop.run_until_complete(self._drain())
                if stopping:
                    return
        finally:
            if loop is not None:
                loop.close()

    async def _drain(self, wait: bool = True) -> None:
        """Write everything queued now, ``batch`` rows per transaction; without ``wait`` (the
        loop's ticks) one batch only, the next tick coming at once while a full batch is
        queued: the loop answers requests between two batches. Without ``wait``, too, a
        batch that finds the database locked by another process goes back to the front of the
        queue, in order, for the next tick (flush markers behind it wait with it)."""
        if self._spooled:
            # While the database is known down, straight to the spool: a replay attempt reads
            # the spool files back, too costly for every tick of an outage.
            replayed = False if time.monotonic() < self._retry_at else await self._replay(wait)
            if replayed is None:  # busy: everything waits for the next tick
                self._busy = True
                return
            if not replayed:  # still unreachable: behind the spooled writes, in order
                if time.monotonic() >= self._retry_at:
                    self._retry_at = time.monotonic() + SPOOL_RETRY_SECONDS
                self._spool_queue()
                return
        while self._items:
            if self._spooled:  # a batch of this drain was spooled: the rest goes behind it
                self._spool_queue()
                return
            items, markers = self._take(self._batch)
            self._in_flight = batch = [*items, *markers]
            try:
                written = not items or await self._write(items, wait)
            except asyncio.CancelledError:  # stopping: the batch goes back, in order
                if self._in_flight is not None:  # unless stop() has taken it already
                    self._items.extendleft(reversed(batch))
                raise
            finally:
                self._in_flight = None
            self._busy = not written
            if self._busy:
                self._items.extendleft(reversed(batch))
                return
            for marker in markers:
                marker.done.set()
            if not wait:
                return

    def _take(self, limit: int) -> tuple[list[Item], list[_Marker]]:
        """Up to ``limit`` writes from the front of the queue, and the flush markers among
        them (released once those writes are done)."""
        items: list[Item] = []
        markers: list[_Marker] = []
        while self._items and len(items) < limit:
            item = self._items.popleft()
            if isinstance(item, _Marker):
                markers.append(item)
            else:
                items.append(item)
        return items, markers

    def _next_tick(self) -> float:
        """Delay of the tick after one: none while a full batch is queued (after a backlog: a
        checkpoint held the lock), else the interval."""
        return 0 if len(self._items) >= self._batch and not self._busy else self._interval

    async def _write(self, items: list[Item], wait: bool = True) -> bool:
        """False when the batch was not written and stays queued: the database was busy
        (``wait`` off), or unreachable with no spool (kept, in order, until it is back or the
        queue is full). True when it was written, or spooled because the database is
        unreachable; a row the database refuses is dropped and counted alone, the rest of its
        batch is written."""
        try:
            await self._store_items(items, wait)
        except _Interrupted as exc:
            if isinstance(exc.cause, StoreBusy):
                self._items.extendleft(reversed(exc.rest))
                return True  # what was written stays written; the rest waits at the front
            self._unreachable(exc.rest, exc.cause, requeue=True)
            return True
        except StoreBusy:
            return False
        except _UNREACHABLE as exc:
            return self._unreachable(items, exc, requeue=False)
        if self._down:
            self._down = False
            log.warning("database reachable again: queued policy writes written")
        return True

    async def _store_items(self, items: list[Item], wait: bool) -> None:
        """Write ``items`` in one transaction, or row by row when the database refuses one of
        them (dropping and counting that row). Raises StoreBusy or an unreachable error when
        nothing was written, :class:`_Interrupted` when part was."""
        by_kind: dict[str, list[object]] = {"s": [], "f": [], "d": []}
        for kind, payload in items:
            by_kind[kind].append(payload)
        successes, failures, decisions = by_kind["s"], by_kind["f"], by_kind["d"]
        try:
            if self._async:
                await self._store.write_batch_async(successes, failures, decisions)  # type: ignore[arg-type]
            else:
                self._store.write_batch(successes, failures, decisions, wait)  # type: ignore[arg-type]
        except (StoreBusy, *_UNREACHABLE):
            raise
        except Exception as exc:  # one bad row must not take its batch with it
            if len(items) == 1:
                log.warning("dropping a policy write the database refuses: %s", type(exc).__name__)
                self._on_drop(1)
                return
            for i, item in enumerate(items):
                try:
                    await self._store_items([item], wait)
                except (StoreBusy, *_UNREACHABLE) as cause:
                    if i == 0:
                        raise
                    raise _Interrupted(items[i:], cause) from cause

    def _unreachable(self, items: list[Item], exc: BaseException, requeue: bool) -> bool:
        """``items`` could not be written for want of the database: spooled (True), else kept
        queued for the next tick (False; put back here when ``requeue``)."""
        if not self._down:
            self._down = True
            where = "spooling" if self._spool is not None else "keeping queued"
            log.warning(
                f"database unreachable: {where} policy writes",
                extra={"fields": {"queued": len(self._items) + len(items),
                                  "error": type(exc).__name__}},
            )  # fmt: skip
        if self._spool is not None:
            self._to_spool(items)
            return True
        self._on_retry(len(items))
        if requeue:
            self._items.extendleft(reversed(items))
            return True
        return False

    # --- the spool -------------------------------------------------------------------------

    def _to_spool(self, items: list[Item]) -> None:
        assert self._spool is not None
        self._spool.append([(SPOOL_SENSOR, _to_record(item)) for item in items])
        self._spooled = True
        self._on_spool(len(items))

    def _spool_queue(self) -> None:
        """Move everything queued now to the spool (the database is known unreachable); flush
        markers are released: their writes are on disk."""
        items, markers = self._take(len(self._items))
        if items:
            self._to_spool(items)
        for marker in markers:
            marker.done.set()

    async def _replay(self, wait: bool) -> bool | None:
        """Write every spool file of the directory, oldest first. True when none is left,
        False when the database is still unreachable, None when it is busy (SQLite, ``wait``
        off). A file another worker is replaying is left to it. At least once: a crash between
        a batch's commit and the file's update replays that batch again."""
        assert self._spool is not None

        async def write(batch: list[SpoolItem]) -> None:
            items: list[Item] = []
            for _, record in batch:
                try:
                    items.append(_from_record(record))
                except (KeyError, TypeError, ValueError):
                    log.warning("dropping an unreadable spooled policy write")
                    self._on_drop(1)
            try:
                await self._store_items(items, wait)
            except _Interrupted as exc:
                raise exc.cause from exc

        for path in self._spool.files():
            try:
                with replaying(path, blocking=False) as replay:
                    if replay is None:
                        continue
                    for batch in replay.batches(self._batch):
                        await write(batch)
                    n = replay.done
            except StoreBusy:
                return None
            except _UNREACHABLE:
                return False
            if n:
                self._on_replay(n)
                log.warning("replayed %d spooled policy writes from %s", n, path.name)
        self._spooled = False
        if self._down:
            self._down = False
            log.warning("database reachable again: spooled policy writes written")
        return True
