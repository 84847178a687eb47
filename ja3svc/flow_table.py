"""The table of TCP flows being watched: bounded in size, aged out by capture time.

Each flow has two directions. The table maps each direction's key (source address, destination
address, source port, destination port as raw bytes) to that direction's state, so one dict
lookup per packet finds it. Flows are kept in insertion order; when the table is full the oldest
flow is evicted, and every ``SWEEP_INTERVAL`` seconds of capture time flows idle for longer than
the timeout are dropped. Every eviction is counted.
"""

from __future__ import annotations

from dataclasses import dataclass

from ja3svc.dtls import DtlsHandshakeAssembler
from ja3svc.quic import QuicInitialAssembler
from ja3svc.tcp_reassembly import TcpReassembler
from ja3svc.tls_stream import TlsStreamParser

SWEEP_INTERVAL = 10.0


class FlowDirection:
    """What is known of one direction of a flow: its reassembler and TLS parser."""

    __slots__ = (
        "client_hellos",
        "done",
        "dport",
        "dst",
        "flow",
        "server_hellos",
        "sport",
        "src",
        "tcp",
        "tls",
    )

    def __init__(self, flow: Flow, src: bytes, dst: bytes, sport: int, dport: int) -> None:
        self.flow = flow
        self.src = src
        self.dst = dst
        self.sport = sport
        self.dport = dport
        self.tcp = TcpReassembler()
        self.tls = TlsStreamParser()
        self.client_hellos = 0
        self.server_hellos = 0
        # True once nothing more can be learnt from this direction: packets skip all work.
        self.done = False


class UdpSession:
    """A QUIC connection or DTLS association being watched for its hellos."""

    __slots__ = (
        "assembler",
        "client_key",
        "datagrams",
        "done",
        "last_ts",
        "reverse_key",
        "transport",
    )

    def __init__(self, ts: float, client_key: bytes, reverse_key: bytes, transport: str) -> None:
        self.last_ts = ts
        self.client_key = client_key
        self.reverse_key = reverse_key
        self.transport = transport
        self.assembler: QuicInitialAssembler | DtlsHandshakeAssembler = (
            QuicInitialAssembler() if transport == "quic" else DtlsHandshakeAssembler()
        )
        self.datagrams = 0
        self.done = False


class Flow:
    __slots__ = ("closing", "forward", "last_ts", "reverse")

    def __init__(self, ts: float) -> None:
        self.last_ts = ts
        self.closing = False
        self.forward: FlowDirection
        self.reverse: FlowDirection


@dataclass
class FlowTableStats:
    flows: int = 0
    evicted_full: int = 0
    expired_idle: int = 0
    closed: int = 0


class FlowTable:
    def __init__(self, max_flows: int = 200_000, idle_timeout: float = 300.0) -> None:
        self.max_flows = max_flows
        self.idle_timeout = idle_timeout
        self.directions: dict[bytes, FlowDirection] = {}
        self._flows: dict[bytes, Flow] = {}
        # UDP sessions under both direction keys; one entry per session in _udp_sessions.
        self.udp: dict[bytes, UdpSession] = {}
        self._udp_sessions: dict[bytes, UdpSession] = {}
        self._next_sweep = 0.0
        self.stats = FlowTableStats()

    def __len__(self) -> int:
        return len(self._flows)

    def create(
        self, ts: float, key: bytes, rkey: bytes, src: bytes, dst: bytes, sport: int, dport: int
    ) -> FlowDirection:
        """Start watching a flow first seen in direction ``key``; return that direction."""
        if len(self._flows) >= self.max_flows:
            oldest = next(iter(self._flows))
            self._remove(oldest)
            self.stats.evicted_full += 1
        flow = Flow(ts)
        fwd = FlowDirection(flow, src, dst, sport, dport)
        rev = FlowDirection(flow, dst, src, dport, sport)
        flow.forward = fwd
        flow.reverse = rev
        self.directions[key] = fwd
        self.directions[rkey] = rev
        self._flows[key] = flow
        self.stats.flows += 1
        return fwd

    def create_udp(self, ts: float, key: bytes, rkey: bytes, transport: str) -> UdpSession:
        """Start watching a QUIC/DTLS session whose first datagram went in direction ``key``."""
        if len(self._udp_sessions) >= self.max_flows:
            oldest = self._udp_sessions.pop(next(iter(self._udp_sessions)))
            self.udp.pop(oldest.client_key, None)
            self.udp.pop(oldest.reverse_key, None)
            self.stats.evicted_full += 1
        session = UdpSession(ts, key, rkey, transport)
        self.udp[key] = session
        self.udp[rkey] = session
        self._udp_sessions[key] = session
        self.stats.flows += 1
        return session

    def close(self, direction: FlowDirection) -> None:
        """Forget a flow (RST, or FIN after which nothing is left to find)."""
        flow = direction.flow
        for key in (self._key_of(flow.forward), self._key_of(flow.reverse)):
            self.directions.pop(key, None)
        self._flows.pop(self._key_of(flow.forward), None)
        self.stats.closed += 1

    def sweep(self, now: float) -> None:
        """Drop flows idle for longer than the timeout; cheap to call on every packet."""
        if now < self._next_sweep:
            return
        self._next_sweep = now + SWEEP_INTERVAL
        limit = now - self.idle_timeout
        stale = [k for k, f in self._flows.items() if f.last_ts < limit]
        for key in stale:
            self._remove(key)
        stale_udp = [s for s in self._udp_sessions.values() if s.last_ts < limit]
        for session in stale_udp:
            del self._udp_sessions[session.client_key]
            self.udp.pop(session.client_key, None)
            self.udp.pop(session.reverse_key, None)
        self.stats.expired_idle += len(stale) + len(stale_udp)

    def flush(self) -> list[FlowDirection]:
        """End of input: the directions still holding out-of-order data (a segment never came)."""
        return [d for d in self.directions.values() if d.tcp.buffered and not d.done]

    def _remove(self, key: bytes) -> None:
        flow = self._flows.pop(key)
        self.directions.pop(key, None)
        self.directions.pop(self._key_of(flow.reverse), None)

    @staticmethod
    def _key_of(d: FlowDirection) -> bytes:
        return d.src + d.dst + d.sport.to_bytes(2, "big") + d.dport.to_bytes(2, "big")
