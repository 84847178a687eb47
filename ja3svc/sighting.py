"""A fingerprinted hello as the outside world sees it: one record per hello found in a flow.

This is the single shape shared by ``ja3svc pcap`` output, the database's sightings and the
policy service's connection correlation. Keys of :meth:`HelloSighting.as_dict` are the JSON
output contract documented in README.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ja3svc.dovecot import DEFAULT_PROFILE
from ja3svc.fingerprints import client_fingerprints, server_fingerprints
from ja3svc.hello import ClientHello, ServerHello


@dataclass(frozen=True, slots=True)
class HelloSighting:
    """One hello seen on the wire, with where and when it was seen."""

    ts: float
    src: str
    sport: int
    dst: str
    dport: int
    transport: str  # "tcp", "quic" or "dtls"
    index: int  # 1 for the first hello of this kind in this direction of the flow
    hello: ClientHello | ServerHello

    @property
    def kind(self) -> str:
        return "client" if isinstance(self.hello, ClientHello) else "server"

    def as_dict(self, dovecot_profile: str = DEFAULT_PROFILE) -> dict[str, Any]:
        h = self.hello
        out: dict[str, Any] = {
            "ts": self.ts,
            "src": self.src,
            "sport": self.sport,
            "dst": self.dst,
            "dport": self.dport,
            "transport": self.transport,
            "hello": self.kind,
            "index": self.index,
        }
        if isinstance(h, ClientHello):
            out["sni"] = h.sni
            out["alpn"] = [a.decode("ascii", errors="backslashreplace") for a in h.alpn]
            out.update(client_fingerprints(h, self.transport, dovecot_profile))
        else:
            out["sni"] = None
            out["alpn"] = [h.alpn.decode("ascii", errors="backslashreplace")] if h.alpn else []
            out["hello_retry_request"] = h.is_hello_retry_request
            out.update(server_fingerprints(h))
        return out
