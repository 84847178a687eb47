"""Writes of the report path and the audit log, off the response path.

Dovecot never reads a report's answer but waits for it, so ``report`` answers at once and its
rows are queued here. One thread drains the queue in batches (one transaction per batch keeps
SQLite from fsyncing per login). The queue is bounded: when the database is down we drop and
count rather than grow without limit.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable

from store.policy_store import DecisionRecord, PolicyStore, Ref

log = logging.getLogger("ja3svc.api.writer")

Success = tuple[float, str, Ref]
Failure = tuple[float, str, Ref]
Item = tuple[str, object]


class BatchWriter:
    def __init__(
        self,
        store: PolicyStore,
        on_drop: Callable[[int], None] = lambda n: None,
        max_queue: int = 100_000,
        batch: int = 500,
        interval: float = 0.05,
    ) -> None:
        self._store = store
        self._on_drop = on_drop
        self._queue: queue.Queue[Item | None] = queue.Queue(max_queue)
        self._batch = batch
        self._interval = interval
        self._thread: threading.Thread | None = None
        self._flushed = threading.Condition()
        self._pending = 0

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="policy-writer", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout)
            self._thread = None

    def _put(self, item: Item) -> None:
        try:
            self._queue.put_nowait(item)
            with self._flushed:
                self._pending += 1
        except queue.Full:
            self._on_drop(1)

    def success(self, item: Success) -> None:
        self._put(("s", item))

    def failure(self, item: Failure) -> None:
        self._put(("f", item))

    def decision(self, item: DecisionRecord) -> None:
        self._put(("d", item))

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until everything queued so far is written (tests and shutdown)."""
        with self._flushed:
            return self._flushed.wait_for(lambda: self._pending == 0, timeout)

    def _run(self) -> None:
        stop = False
        while not stop:
            try:
                first = self._queue.get(timeout=1.0)
            except queue.Empty:
                continue
            items: list[Item] = []
            if first is None:
                stop = True
            else:
                items.append(first)
            # Gather what arrives within one interval: batches amortise the commit.
            while len(items) < self._batch:
                try:
                    nxt = self._queue.get(timeout=self._interval if items else 0)
                except queue.Empty:
                    break
                if nxt is None:
                    stop = True
                    break
                items.append(nxt)
            if items:
                self._write(items)

    def _write(self, items: list[Item]) -> None:
        successes = [i[1] for i in items if i[0] == "s"]
        failures = [i[1] for i in items if i[0] == "f"]
        decisions = [i[1] for i in items if i[0] == "d"]
        try:
            self._store.write_batch(successes, failures, decisions)  # type: ignore[arg-type]
        except Exception as exc:  # a dead database must not kill the writer thread
            log.warning(
                "dropping %d policy writes: database error: %s", len(items), type(exc).__name__
            )
            self._on_drop(len(items))
        finally:
            with self._flushed:
                self._pending -= len(items)
                self._flushed.notify_all()
