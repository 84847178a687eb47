"""The recent-connections table shared by two threads of one process.

The capture thread puts every client hello into it while the policy service's event loop reads
it; the core's ``RecentConnections`` is a plain data structure, so the lock lives here, at the
edge that shares it. Critical sections are a dict operation or two: the event loop never waits
on the capture for longer than that (waiting for a hello not yet captured is done by polling
with ``asyncio.sleep``, in ``ja3svc.store.correlation``).
"""

from __future__ import annotations

import threading

from ja3svc.connections import RecentConnections
from ja3svc.record import HelloRecord

__all__ = ["SharedConnections"]


class SharedConnections:
    """``RecentConnections`` behind a lock; same methods."""

    def __init__(self, table: RecentConnections) -> None:
        self.table = table
        self._lock = threading.Lock()

    def __len__(self) -> int:
        with self._lock:
            return len(self.table)

    def put(self, record: HelloRecord) -> None:
        with self._lock:
            self.table.put(record)

    def get(self, ip: str, port: int, now: float) -> HelloRecord | None:
        with self._lock:
            return self.table.get(ip, port, now)

    def expire(self, now: float) -> int:
        with self._lock:
            return self.table.expire(now)

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return self.table.snapshot()
