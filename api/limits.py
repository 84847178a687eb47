"""Connection limits of the HTTP server: what uvicorn does not bound by itself.

uvicorn closes a keep-alive connection that stays idle after a response, but a connection that
never sends a request, or sends its headers a byte at a time, stays open forever; and when the
process runs out of file descriptors, asyncio's accept loop logs a traceback per attempt. Here,
the HTTP protocol classes of uvicorn get three things:

- an idle timeout from the moment a connection opens (and after every response), and a header
  timeout from the first byte of a request until its headers are complete;
- a cap on open connections, kept below the descriptor limit: a connection beyond it closes the
  connection that has been idle longest (an attacker's idle sockets give way to a real client;
  an active request is never cut), and is itself closed at once when none is idle;
- counters of both, for /metrics.

One sweeper per event loop checks the deadlines every ``SWEEP_SECONDS`` (a timer per connection
would cost a heap entry per socket: 20,000 idle sockets, 20,000 timers).
"""

from __future__ import annotations

import asyncio
import logging
import resource
import time
from dataclasses import dataclass
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

log = logging.getLogger("ja3svc.api.limits")

SWEEP_SECONDS = 1.0
# Descriptors kept free for everything that is not a client connection: the database pool, log
# and database files, capture sockets, the listening sockets, a worker's pipes.
FD_RESERVE = 256


@dataclass
class ConnectionLimits:
    """Set once per process from the settings (``configure``), read by every connection."""

    max_connections: int = 10_000
    idle_timeout: float = 60.0
    header_timeout: float = 10.0


LIMITS = ConnectionLimits()
COUNTERS: dict[str, float] = {
    "connections_open": 0,
    "connections_refused_total": 0,  # over the cap with nothing idle to close
    "connections_evicted_total": 0,  # idle connections closed to make room
    "idle_timeouts_total": 0,
    "header_timeouts_total": 0,
    "policy_overload_total": 0,  # allows answered by fail_open because max_inflight were busy
    "policy_write_retries_total": 0,  # queued writes tried again after the database failed
    "policy_writes_spooled_total": 0,  # written to the spool: the database was unreachable
    "policy_writes_replayed_total": 0,  # read back from the spool into the database
}


def raise_fd_limit() -> int:
    """Raise this process's soft RLIMIT_NOFILE to the hard limit; return the soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):  # a container may forbid it: keep what we have
            pass
    return soft


def configure(max_connections: int, idle_timeout: float, header_timeout: float) -> ConnectionLimits:
    """Apply the settings, with the cap lowered to fit the descriptor limit."""
    soft = raise_fd_limit()
    fit = max(16, soft - FD_RESERVE)
    LIMITS.max_connections = min(max_connections, fit)
    LIMITS.idle_timeout = idle_timeout
    LIMITS.header_timeout = header_timeout
    if LIMITS.max_connections < max_connections:
        log.warning(
            "connection cap lowered to fit the file-descriptor limit",
            extra={"fields": {"configured": max_connections, "cap": LIMITS.max_connections,
                              "nofile": soft}},
        )  # fmt: skip
    return LIMITS


class _Guard:
    """Per-loop state: the connections waiting for a request, oldest first, and the sweeper."""

    def __init__(self) -> None:
        # Insertion order is the order they became idle: the first is the one to evict.
        self.idle: dict[Any, float] = {}
        self.reading: dict[Any, float] = {}  # first byte of a request seen, headers not complete
        self.open = 0
        self.task: asyncio.Task[None] | None = None

    def ensure_sweeper(self) -> None:
        if self.task is None or self.task.done():
            self.task = asyncio.get_running_loop().create_task(self._sweep())

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_SECONDS)
            now = time.monotonic()
            idle_before = now - LIMITS.idle_timeout
            for proto, since in list(self.idle.items()):
                if since > idle_before:
                    break  # the rest became idle later
                COUNTERS["idle_timeouts_total"] += 1
                proto._limits_close()
            header_before = now - LIMITS.header_timeout
            for proto, since in list(self.reading.items()):
                if since > header_before:
                    break
                COUNTERS["header_timeouts_total"] += 1
                proto._limits_close()


_GUARDS: dict[int, _Guard] = {}


def _guard() -> _Guard:
    loop = asyncio.get_running_loop()
    guard = _GUARDS.get(id(loop))
    if guard is None:
        guard = _GUARDS[id(loop)] = _Guard()
    return guard


class _LimitsMixin:
    """Shared by both HTTP implementations; relies only on uvicorn's ``cycle`` attribute and its
    ``connection_made``/``data_received``/``on_response_complete``/``connection_lost`` hooks."""

    cycle: Any
    transport: Any
    _g: _Guard
    _refused: bool = False
    _counted: bool = False

    def connection_made(self, transport: Any) -> None:
        g = self._g = _guard()
        if g.open >= LIMITS.max_connections:
            if g.idle:
                victim = next(iter(g.idle))
                COUNTERS["connections_evicted_total"] += 1
                victim._limits_close()
            else:
                COUNTERS["connections_refused_total"] += 1
                self._refused = True
                transport.abort()
                return
        g.open += 1
        self._counted = True
        COUNTERS["connections_open"] = g.open
        g.ensure_sweeper()
        super().connection_made(transport)  # type: ignore[misc]
        g.idle[self] = time.monotonic()

    def data_received(self, data: bytes) -> None:
        g = self._g
        if g.idle.pop(self, None) is not None:
            g.reading[self] = time.monotonic()
        super().data_received(data)  # type: ignore[misc]
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            g.reading.pop(self, None)  # headers complete: the request runs

    def on_response_complete(self) -> None:
        super().on_response_complete()  # type: ignore[misc]
        if not self.transport.is_closing():
            self._g.reading.pop(self, None)
            self._g.idle[self] = time.monotonic()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._refused:
            return  # closed in connection_made: uvicorn never saw it
        g = self._g
        g.idle.pop(self, None)
        g.reading.pop(self, None)
        if self._counted:
            self._counted = False
            g.open -= 1
            COUNTERS["connections_open"] = g.open
        super().connection_lost(exc)  # type: ignore[misc]

    def _limits_close(self) -> None:
        self._g.idle.pop(self, None)
        self._g.reading.pop(self, None)
        self.transport.abort()


class LimitedHttpToolsProtocol(_LimitsMixin, HttpToolsProtocol):
    pass


class LimitedH11Protocol(_LimitsMixin, H11Protocol):
    pass
