"""A fingerprinted hello as the outside world sees it: one record per hello found in a flow.

This is the single shape shared by ``ja3svc pcap`` output, the database's sightings and the
policy service's connection correlation. Keys of :meth:`HelloSighting.as_dict` are the JSON
output contract documented in README.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ja3svc.dovecot import DEFAULT_PROFILE, ja3_dovecot_string
from ja3svc.grease import without_grease
from ja3svc.hello import ClientHello, ServerHello
from ja3svc.ja3 import ja3_string, ja3n_string, ja3s_string, md5_hex
from ja3svc.ja4 import ja4, ja4_r

_TLS_VERSION_NAMES = {
    0x0300: "SSL 3.0",
    0x0301: "TLS 1.0",
    0x0302: "TLS 1.1",
    0x0303: "TLS 1.2",
    0x0304: "TLS 1.3",
    0xFEFF: "DTLS 1.0",
    0xFEFD: "DTLS 1.2",
    0xFEFC: "DTLS 1.3",
}


def tls_version_name(version: int) -> str:
    return _TLS_VERSION_NAMES.get(version, f"0x{version:04x}")


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
            offered = without_grease(h.supported_versions)
            top = max(offered) if offered else h.legacy_version
            j3, j3n, jd = ja3_string(h), ja3n_string(h), ja3_dovecot_string(h, dovecot_profile)
            out.update(
                sni=h.sni,
                alpn=[a.decode("ascii", errors="backslashreplace") for a in h.alpn],
                tls_version=tls_version_name(top),
                ja3=j3,
                ja3_hash=md5_hex(j3),
                ja3n=j3n,
                ja3n_hash=md5_hex(j3n),
                ja4=ja4(h, self.transport),
                ja4_r=ja4_r(h, self.transport),
                ja3_dovecot=jd,
                ja3_dovecot_hash=md5_hex(jd),
            )
        else:
            version = h.selected_version or h.legacy_version
            j3s = ja3s_string(h)
            out.update(
                sni=None,
                alpn=[h.alpn.decode("ascii", errors="backslashreplace")] if h.alpn else [],
                tls_version=tls_version_name(version),
                hello_retry_request=h.is_hello_retry_request,
                ja3s=j3s,
                ja3s_hash=md5_hex(j3s),
            )
        return out
