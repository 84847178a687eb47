"""Test-only scaffolding: build Ethernet/IPv4/IPv6/TCP frames and write classic pcap files.

Written from the RFCs and tcpdump's link-type list, independently of ``ja3svc.engine`` and
``capture``, so that tests can craft or rewrite captures and check the engine against them.
Checksums are left zero: the engine does not verify them.
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path

TCP_FIN, TCP_SYN, TCP_RST, TCP_PSH, TCP_ACK = 0x01, 0x02, 0x04, 0x08, 0x10
PROTO_TCP = 6
ETH_IPV4, ETH_IPV6, ETH_VLAN, ETH_QINQ = 0x0800, 0x86DD, 0x8100, 0x88A8

LINKTYPE_NULL, LINKTYPE_ETHERNET, LINKTYPE_RAW, LINKTYPE_LOOP = 0, 1, 101, 108
LINKTYPE_LINUX_SLL, LINKTYPE_IPV4, LINKTYPE_IPV6, LINKTYPE_LINUX_SLL2 = 113, 228, 229, 276

Packet = tuple[float, bytes]


# --- pcap files ----------------------------------------------------------------------------


def pcap_bytes(packets: Iterable[Packet], linktype: int = LINKTYPE_ETHERNET) -> bytes:
    """A little-endian microsecond pcap (magic a1b2c3d4, version 2.4, snaplen 262144)."""
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, linktype)]
    for ts, frame in packets:
        sec = int(ts)
        usec = round((ts - sec) * 1_000_000)
        out.append(struct.pack("<IIII", sec, usec, len(frame), len(frame)))
        out.append(frame)
    return b"".join(out)


def write_pcap(path: Path, packets: Iterable[Packet], linktype: int = LINKTYPE_ETHERNET) -> Path:
    path.write_bytes(pcap_bytes(packets, linktype))
    return path


# --- building frames -----------------------------------------------------------------------


def tcp(
    sport: int, dport: int, seq: int, ack: int = 0, flags: int = TCP_ACK, payload: bytes = b""
) -> bytes:
    """A 20-byte TCP header (no options) followed by ``payload``."""
    return (
        struct.pack("!HHIIBBHHH", sport, dport, seq & 0xFFFFFFFF, ack, 5 << 4, flags, 65535, 0, 0)
        + payload
    )


def ipv4(
    src: str,
    dst: str,
    l4: bytes,
    proto: int = PROTO_TCP,
    *,
    options: bytes = b"",
    flags_frag: int = 0x4000,  # DF, offset 0
) -> bytes:
    assert len(options) % 4 == 0
    ihl = 5 + len(options) // 4
    header = struct.pack(
        "!BBHHHBBH4s4s",
        0x40 | ihl,
        0,
        ihl * 4 + len(l4),
        0x1234,
        flags_frag,
        64,
        proto,
        0,
        ipaddress.IPv4Address(src).packed,
        ipaddress.IPv4Address(dst).packed,
    )
    return header + options + l4


def ipv6(
    src: str, dst: str, l4: bytes, proto: int = PROTO_TCP, *, ext: Iterable[tuple[int, bytes]] = ()
) -> bytes:
    """IPv6 with optional extension headers ``(type, options)`` such as hop-by-hop (0) and
    destination options (60): each gets its next-header and length byte and is zero-padded
    (Pad1 options) to a multiple of 8 bytes, as RFC 8200 requires."""
    headers = list(ext)
    chain = b""
    for i, (_htype, options) in enumerate(headers):
        nxt = headers[i + 1][0] if i + 1 < len(headers) else proto
        body = options + b"\x00" * (-(len(options) + 2) % 8)
        chain += bytes([nxt, (len(body) + 2) // 8 - 1]) + body
    first = headers[0][0] if headers else proto
    return (
        struct.pack("!IHBB", 6 << 28, len(chain) + len(l4), first, 64)
        + ipaddress.IPv6Address(src).packed
        + ipaddress.IPv6Address(dst).packed
        + chain
        + l4
    )


def ethernet(ip_packet: bytes, *, vlans: tuple[int, ...] = (), qinq: bool = False) -> bytes:
    """Ethernet II; each VLAN id adds an 802.1Q tag (the outer one 802.1ad if ``qinq``)."""
    ethertype = ETH_IPV4 if ip_packet[0] >> 4 == 4 else ETH_IPV6
    tags = b""
    for i, vid in enumerate(vlans):
        tpid = ETH_QINQ if qinq and i == 0 else ETH_VLAN
        tags += struct.pack("!HH", tpid, vid)
    return (
        b"\x02\x00\x00\x00\x00\x02"
        + b"\x02\x00\x00\x00\x00\x01"
        + tags
        + struct.pack("!H", ethertype)
        + ip_packet
    )


def sll(ip_packet: bytes) -> bytes:
    """Linux cooked v1: packet type, ARPHRD, address length, 8-byte address, protocol."""
    proto = ETH_IPV4 if ip_packet[0] >> 4 == 4 else ETH_IPV6
    return struct.pack("!HHH8sH", 0, 1, 6, b"\x02\x00\x00\x00\x00\x01\x00\x00", proto) + ip_packet


def sll2(ip_packet: bytes) -> bytes:
    """Linux cooked v2: protocol, reserved, ifindex, ARPHRD, packet type, addr len, address."""
    proto = ETH_IPV4 if ip_packet[0] >> 4 == 4 else ETH_IPV6
    return (
        struct.pack("!HHIHBB8s", proto, 0, 3, 1, 0, 6, b"\x02\x00\x00\x00\x00\x01\x00\x00")
        + ip_packet
    )


def null_loop(ip_packet: bytes, byteorder: str, *, inet6_family: int = 24) -> bytes:
    """BSD loopback: a 4-byte address family (2 = AF_INET; 24/28/30 = AF_INET6 on BSDs)."""
    family = 2 if ip_packet[0] >> 4 == 4 else inet6_family
    return family.to_bytes(4, byteorder) + ip_packet  # type: ignore[arg-type]


# --- decoding real frames (for rewriting captures) -----------------------------------------


@dataclass(frozen=True)
class TcpPacket:
    ts: float
    src: str
    dst: str
    sport: int
    dport: int
    seq: int
    ack: int
    flags: int
    payload: bytes

    @property
    def flow(self) -> tuple[str, int, str, int]:
        return (self.src, self.sport, self.dst, self.dport)

    def with_(self, **changes: object) -> TcpPacket:
        return replace(self, **changes)  # type: ignore[arg-type]

    def ip_packet(self) -> bytes:
        segment = tcp(self.sport, self.dport, self.seq, self.ack, self.flags, self.payload)
        if ":" in self.src:
            return ipv6(self.src, self.dst, segment)
        return ipv4(self.src, self.dst, segment)


def decode_tcp(ts: float, linktype: int, frame: bytes) -> TcpPacket | None:
    """Ethernet (optionally VLAN-tagged) or SLL2 -> IPv4/IPv6 -> TCP; None for anything else."""
    if linktype == LINKTYPE_ETHERNET:
        off, ethertype = 14, struct.unpack_from("!H", frame, 12)[0]
        while ethertype in (ETH_VLAN, ETH_QINQ):
            ethertype = struct.unpack_from("!H", frame, off + 2)[0]
            off += 4
    elif linktype == LINKTYPE_LINUX_SLL2:
        off, ethertype = 20, struct.unpack_from("!H", frame, 0)[0]
    else:
        raise ValueError(f"decode_tcp: link type {linktype} not supported")
    if ethertype == ETH_IPV4:
        ihl = (frame[off] & 0x0F) * 4
        total = struct.unpack_from("!H", frame, off + 2)[0]
        if frame[off + 9] != PROTO_TCP:
            return None
        src = str(ipaddress.IPv4Address(frame[off + 12 : off + 16]))
        dst = str(ipaddress.IPv4Address(frame[off + 16 : off + 20]))
        l4, end = off + ihl, off + total
    elif ethertype == ETH_IPV6:
        if frame[off + 6] != PROTO_TCP:
            return None
        src = str(ipaddress.IPv6Address(frame[off + 8 : off + 24]))
        dst = str(ipaddress.IPv6Address(frame[off + 24 : off + 40]))
        l4, end = off + 40, off + 40 + struct.unpack_from("!H", frame, off + 4)[0]
    else:
        return None
    sport, dport, seq, ack, offx, flags = struct.unpack_from("!HHIIBB", frame, l4)
    return TcpPacket(ts, src, dst, sport, dport, seq, ack, flags, frame[l4 + (offx >> 4) * 4 : end])


# --- TLS wire encoding (RFC 8446 section 4 presentation language) --------------------------


def vec(width: int, data: bytes) -> bytes:
    """A vector with a ``width``-byte big-endian length prefix."""
    return len(data).to_bytes(width, "big") + data


def u16s(values: Iterable[int]) -> bytes:
    return b"".join(v.to_bytes(2, "big") for v in values)


def ext(ext_type: int, data: bytes = b"") -> bytes:
    return ext_type.to_bytes(2, "big") + vec(2, data)


def sni_ext(host: str) -> bytes:
    return ext(0, vec(2, b"\x00" + vec(2, host.encode())))


def groups_ext(*groups: int) -> bytes:
    return ext(10, vec(2, u16s(groups)))


def point_formats_ext(*formats: int) -> bytes:
    return ext(11, vec(1, bytes(formats)))


def sig_algs_ext(*algs: int) -> bytes:
    return ext(13, vec(2, u16s(algs)))


def alpn_ext(*names: bytes) -> bytes:
    return ext(16, vec(2, b"".join(vec(1, n) for n in names)))


def versions_ext(*versions: int) -> bytes:
    return ext(43, vec(1, u16s(versions)))


def client_hello_body(
    ciphers: Iterable[int],
    extensions: Iterable[bytes] | None = (),
    *,
    version: int = 0x0303,
    random: bytes = bytes(range(32)),
    session_id: bytes = b"",
    compression: bytes = b"\x00",
) -> bytes:
    """A ClientHello body; ``extensions=None`` leaves out the extensions block entirely."""
    body = version.to_bytes(2, "big") + random + vec(1, session_id)
    body += vec(2, u16s(ciphers)) + vec(1, compression)
    if extensions is not None:
        body += vec(2, b"".join(extensions))
    return body


def server_hello_body(
    cipher: int,
    extensions: Iterable[bytes] | None = (),
    *,
    version: int = 0x0303,
    random: bytes = bytes(32),
    session_id: bytes = b"",
) -> bytes:
    body = version.to_bytes(2, "big") + random + vec(1, session_id)
    body += cipher.to_bytes(2, "big") + b"\x00"
    if extensions is not None:
        body += vec(2, b"".join(extensions))
    return body


def handshake(msg_type: int, body: bytes) -> bytes:
    return bytes([msg_type]) + vec(3, body)


def record(content_type: int, payload: bytes, version: int = 0x0301) -> bytes:
    return bytes([content_type]) + version.to_bytes(2, "big") + vec(2, payload)


def client_hello_record(body: bytes, version: int = 0x0301) -> bytes:
    return record(22, handshake(1, body), version)
