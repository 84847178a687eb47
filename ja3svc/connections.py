"""Recent TCP connections and the ClientHellos sent on them, for instant policy correlation.

The capture ``put``s every client hello record; the policy service asks "which hello came from
IP:port?" with the peer Dovecot reports (``real_rip``/``real_rport``). A plain data structure:
no IO, no clock (the caller says what time it is) and no lock (an edge that shares the table
between threads wraps it, as the capture worker does).

Rules of this table:
- Keyed by (client address, client port). A key holds the hellos of one connection, ordered by
  their index; a hello with index 1 starts a new connection on that key (port reuse), so an old
  connection's hellos never mix with a new one's.
- The answer is the hello with the highest index: after a HelloRetryRequest the client sends a
  second ClientHello, and that LAST one is what Dovecot itself fingerprints.
- Bounded twice: at most ``max_entries`` keys (oldest evicted first) and entries older than
  ``window_seconds`` (by capture time) are dropped; both evictions are counted.
"""

from __future__ import annotations

import ipaddress
from collections import OrderedDict
from dataclasses import asdict, dataclass

from ja3svc.fingerprints import ClientFingerprints
from ja3svc.record import HelloRecord

__all__ = ["ConnectionKey", "RecentConnections", "RecentConnectionsStats", "normalize_ip"]

ConnectionKey = tuple[str, int]

# Hellos kept per connection: two after a HelloRetryRequest, more is not a real handshake
# (the stream parser stops at four as well).
MAX_HELLOS_PER_CONNECTION = 4
# Expiry work is amortised: a full sweep at most this often (seconds of capture time).
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
        self.hellos: list[HelloRecord] = []


class RecentConnections:
    """Bounded, time-windowed map (client ip, client port) -> that connection's client hellos."""

    def __init__(self, max_entries: int = 100_000, window_seconds: float = 300.0) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self.max_entries = max_entries
        self.window_seconds = window_seconds
        self.stats = RecentConnectionsStats()
        # Insertion order is (re)put order: the first item is the least recently seen key.
        self._entries: OrderedDict[ConnectionKey, _Entry] = OrderedDict()
        self._next_sweep = 0.0

    def __len__(self) -> int:
        return len(self._entries)

    def put(self, record: HelloRecord) -> None:
        """Remember a client hello (server hellos are ignored); its ``ts`` is the time now."""
        if not isinstance(record.fingerprints, ClientFingerprints):
            return
        key = (normalize_ip(record.src), record.sport)
        ts = record.ts
        self.stats.puts += 1
        self._sweep(ts)
        entry = self._entries.get(key)
        if entry is None or record.index == 1:
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

    def get(self, ip: str, port: int, now: float) -> HelloRecord | None:
        """The last client hello of the connection from ip:port seen within the window."""
        entry = self._entries.get((normalize_ip(ip), int(port)))
        if entry is None or entry.last_ts < now - self.window_seconds:
            self.stats.misses += 1
            return None
        self.stats.hits += 1
        return max(entry.hellos, key=_index)

    def expire(self, now: float) -> int:
        """Drop connections older than the window; returns how many (also counted)."""
        before = self.stats.expired
        self._next_sweep = 0.0
        self._sweep(now)
        return self.stats.expired - before

    def snapshot(self) -> dict[str, int]:
        return {"entries": len(self._entries), **self.stats.as_dict()}

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


def _index(record: HelloRecord) -> int:
    return record.index
