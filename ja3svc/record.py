"""A fingerprinted hello as the outside world sees it: one record per hello found in a flow.

The engine builds one :class:`HelloRecord` per hello, and every edge takes that same object:
``ja3svc pcap`` serialises it as JSON or CSV, the database writer as a sightings row, the
in-memory correlation table keeps it as it is. The keys of :meth:`HelloRecord.as_dict` are the
JSON output contract documented in README.md; :meth:`HelloRecord.from_dict` reads them back
(spool files, rows read from the database, hand-made records in tests).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from ja3svc.fingerprints import (
    ClientFingerprints,
    ServerFingerprints,
    client_fingerprints,
    server_fingerprints,
)
from ja3svc.hello import ClientHello, ServerHello

__all__ = ["HelloRecord", "record_of"]

_CLIENT_KEYS = ClientFingerprints.__slots__
_SERVER_KEYS = ServerFingerprints.__slots__


@dataclass(frozen=True, slots=True, kw_only=True)
class HelloRecord:
    """One hello seen on the wire: where and when, and its fingerprints.

    A ClientHello has ``ClientFingerprints``, a ServerHello ``ServerFingerprints``; ``hello``
    says which ("client" or "server").
    """

    ts: float  # capture time of the packet that completed the hello (Unix seconds)
    src: str  # the sender of the hello
    sport: int
    dst: str
    dport: int
    transport: str  # "tcp", "quic" or "dtls"
    index: int  # 1 for the first hello of this kind in this direction of the flow
    sni: str | None
    alpn: tuple[str, ...]  # offered (client) or chosen (server)
    fingerprints: ClientFingerprints | ServerFingerprints
    hello_retry_request: bool = False  # a ServerHello that is a HelloRetryRequest
    sensor: str | None = None  # who stored it, for records read back from a database

    @property
    def hello(self) -> str:
        return "client" if isinstance(self.fingerprints, ClientFingerprints) else "server"

    def as_dict(self) -> dict[str, Any]:
        """The JSON output object (README.md lists its keys)."""
        fp = self.fingerprints
        out: dict[str, Any] = {
            "ts": self.ts,
            "src": self.src,
            "sport": self.sport,
            "dst": self.dst,
            "dport": self.dport,
            "transport": self.transport,
            "hello": self.hello,
            "index": self.index,
            "sni": self.sni,
            "alpn": list(self.alpn),
        }
        if isinstance(fp, ClientFingerprints):
            out["tls_version"] = fp.tls_version
            out["ja3"] = fp.ja3
            out["ja3_hash"] = fp.ja3_hash
            out["ja3n"] = fp.ja3n
            out["ja3n_hash"] = fp.ja3n_hash
            out["ja4"] = fp.ja4
            out["ja4_r"] = fp.ja4_r
            out["ja3_dovecot"] = fp.ja3_dovecot
            out["ja3_dovecot_hash"] = fp.ja3_dovecot_hash
            out["ja3_dovecot_hashes"] = dict(fp.ja3_dovecot_hashes)
        else:
            out["hello_retry_request"] = self.hello_retry_request
            out["tls_version"] = fp.tls_version
            out["ja3s"] = fp.ja3s
            out["ja3s_hash"] = fp.ja3s_hash
        if self.sensor is not None:
            out["sensor"] = self.sensor
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> HelloRecord:
        """A record from an ``as_dict()``-shaped mapping; a fingerprint key it lacks is ""."""
        fingerprints: ClientFingerprints | ServerFingerprints
        if d.get("hello", "client") == "client":
            by_profile = {str(p): str(h) for p, h in (d.get("ja3_dovecot_hashes") or {}).items()}
            fingerprints = ClientFingerprints(
                **{k: d.get(k) or "" for k in _CLIENT_KEYS if k != "ja3_dovecot_hashes"},
                ja3_dovecot_hashes=MappingProxyType(by_profile),
            )
        else:
            fingerprints = ServerFingerprints(**{k: d.get(k) or "" for k in _SERVER_KEYS})
        alpn = d.get("alpn") or ()
        return cls(
            ts=float(d["ts"]),
            src=str(d["src"]),
            sport=int(d["sport"]),
            dst=str(d["dst"]),
            dport=int(d["dport"]),
            transport=str(d.get("transport") or "tcp"),
            index=int(d.get("index") or 1),
            sni=d.get("sni"),
            alpn=tuple(str(a) for a in alpn),
            fingerprints=fingerprints,
            hello_retry_request=bool(d.get("hello_retry_request", False)),
            sensor=d.get("sensor"),
        )


def _alpn_text(value: bytes) -> str:
    return value.decode("ascii", errors="backslashreplace")


def record_of(
    hello: ClientHello | ServerHello,
    *,
    ts: float,
    src: str,
    sport: int,
    dst: str,
    dport: int,
    transport: str,
    index: int,
    dovecot_profile: str,
) -> HelloRecord:
    """Fingerprint a parsed hello and describe where it was seen."""
    fingerprints: ClientFingerprints | ServerFingerprints
    if isinstance(hello, ClientHello):
        sni = hello.sni
        alpn = tuple(_alpn_text(a) for a in hello.alpn)
        fingerprints = client_fingerprints(hello, transport, dovecot_profile)
        hrr = False
    else:
        sni = None
        alpn = (_alpn_text(hello.alpn),) if hello.alpn else ()
        fingerprints = server_fingerprints(hello)
        hrr = hello.is_hello_retry_request
    return HelloRecord(
        ts=ts,
        src=src,
        sport=sport,
        dst=dst,
        dport=dport,
        transport=transport,
        index=index,
        sni=sni,
        alpn=alpn,
        fingerprints=fingerprints,
        hello_retry_request=hrr,
    )
