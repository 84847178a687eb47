"""Recent TCP connections and the ClientHellos sent on them, for instant policy correlation.

The capture thread ``put``s every client hello record (``HelloSighting.as_dict()``); the policy
service, in another thread of the same process, asks "which hello came from IP:port?" with the
peer Dovecot reports (``real_rip``/``real_rport``). No IO here.

Rules of this table:
- Keyed by (client address, client port). A key holds the hellos of one connection, ordered by
  their index; a hello with index 1 starts a new connection on that key (port reuse), so an old
  connection's hellos never mix with a new one's.
- The answer is the hello with the highest index: after a HelloRetryRequest the client sends a
  second ClientHello, and that LAST one is what Dovecot itself fingerprints.
- Bounded twice: at most ``max_entries`` keys (oldest evicted first) and entries older than
  ``window_seconds`` (by capture time) are dropped; both evictions are counted.
- Thread-safe: one lock around every operation; lookups never block on the capture for longer
  than the short critical section, except ``wait_for``, which waits (bounded) for a put.
"""

from __future__ import annotations

import ipaddress
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["ConnectionKey", "RecentConnections", "RecentConnectionsStats", "normalize_ip"]

Record = dict[str, Any]
ConnectionKey = tuple[str, int]

# Hellos kept per connection: two after a HelloRetryRequest, more is not a real handshake
# (the stream parser stops at four as well).
MAX_HELLOS_PER_CONNECTION = 4
# Expiry work is amortised: a full sweep at most this often (seconds of the caller's clock).
SWEEP_INTERVAL = 1.0


def normalize_ip(ip: str) -> str:
    """One spelling per address, so Dovecot's text and the capture's text compare equal.

    IPv4-mapped IPv6 (``::ffff:192.0.2.1``, what a dual-stack socket reports) becomes the IPv4
    address the wire shows; IPv6 is compressed and lower-case (RFC 5952, as ``inet_ntop``).
    Anything unparsable is returned stripped, unchanged otherwise.
    """
    text = ip.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    try:
        addr = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return text
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return str(addr.ipv4_mapped)
    return str(addr)


@dataclass
class RecentConnectionsStats:
    puts: int = 0
    evicted_full: int = 0  # oldest connection dropped because the table was full
    expired: int = 0  # connection older than the window dropped
    hits: int = 0
    misses: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


class _Entry:
    __slots__ = ("hellos", "last_ts")

    def __init__(self, ts: float) -> None:
        self.last_ts = ts
        self.hellos: list[Record] = []


class RecentConnections:
    """Bounded, time-windowed map (client ip, client port) -> that connection's client hellos."""

    def __init__(
        self,
        max_entries: int = 100_000,
        window_seconds: float = 300.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self.max_entries = max_entries
        self.window_seconds = window_seconds
        self.stats = RecentConnectionsStats()
        self._clock = clock
        # Insertion order is (re)put order: the first item is the least recently seen key.
        self._entries: OrderedDict[ConnectionKey, _Entry] = OrderedDict()
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._next_sweep = 0.0

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def put(self, record: Record) -> None:
        """Remember a client hello record (needs ``src``, ``sport``, ``ts``, ``index``)."""
        if record.get("hello", "client") != "client":
            return
        key = (normalize_ip(str(record["src"])), int(record["sport"]))
        ts = float(record["ts"])
        index = int(record.get("index") or 1)
        with self._lock:
            self.stats.puts += 1
            self._sweep(ts)
            entry = self._entries.get(key)
            if entry is None or index == 1:
                # index 1 means a new connection: port reuse replaces the old one's hellos.
                entry = _Entry(ts)
                self._entries[key] = entry
            else:
                self._entries.move_to_end(key)
            entry.last_ts = ts
            if len(entry.hellos) < MAX_HELLOS_PER_CONNECTION:
                entry.hellos.append(record)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
                self.stats.evicted_full += 1
            self._changed.notify_all()

    def get(self, ip: str, port: int, now: float | None = None) -> Record | None:
        """The last client hello of the connection from ip:port seen within the window."""
        key = (normalize_ip(ip), int(port))
        with self._lock:
            found = self._find(key, self._now(now))
            if found is None:
                self.stats.misses += 1
            else:
                self.stats.hits += 1
            return found

    def wait_for(
        self, ip: str, port: int, timeout: float, now: float | None = None
    ) -> Record | None:
        """Like ``get``, but waits up to ``timeout`` seconds for the hello to be put.

        For the in-process deployment: the policy request can overtake the capture thread when
        it lags behind (a burst); a short wait beats a verdict without the fingerprint.
        """
        key = (normalize_ip(ip), int(port))
        deadline = time.monotonic() + max(0.0, timeout)
        with self._lock:
            while True:
                found = self._find(key, self._now(now))
                remaining = deadline - time.monotonic()
                if found is not None or remaining <= 0:
                    break
                self._changed.wait(remaining)
            if found is None:
                self.stats.misses += 1
            else:
                self.stats.hits += 1
            return found

    def expire(self, now: float | None = None) -> int:
        """Drop connections older than the window; returns how many (also counted)."""
        with self._lock:
            before = self.stats.expired
            self._next_sweep = 0.0
            self._sweep(self._now(now))
            return self.stats.expired - before

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return {"entries": len(self._entries), **self.stats.as_dict()}

    # --- internals (lock held) ----------------------------------------------------------------

    def _now(self, now: float | None) -> float:
        return self._clock() if now is None else now

    def _find(self, key: ConnectionKey, now: float) -> Record | None:
        entry = self._entries.get(key)
        if entry is None or entry.last_ts < now - self.window_seconds:
            return None
        return max(entry.hellos, key=lambda r: int(r.get("index") or 1))

    def _sweep(self, now: float) -> None:
        if now < self._next_sweep:
            return
        self._next_sweep = now + SWEEP_INTERVAL
        limit = now - self.window_seconds
        entries = self._entries
        # Oldest first, so the scan stops at the first connection still inside the window.
        # Not exact when capture timestamps go backwards a little; the size cap still holds.
        while entries:
            key, entry = next(iter(entries.items()))
            if entry.last_ts >= limit:
                break
            del entries[key]
            self.stats.expired += 1
