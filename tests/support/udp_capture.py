"""A test-only reader for the UDP datagrams of a pcap/pcapng file (Ethernet, 802.1Q, IPv4, IPv6).

The QUIC and DTLS tests need just the UDP payloads with their addresses, and must not depend on
the project's own capture reader (tested separately) nor on tshark being installed. Unfragmented
IP only; anything else is skipped.
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

LINKTYPE_ETHERNET = 1


@dataclass(frozen=True)
class Datagram:
    frame: int  # 1-based frame number, as tshark counts
    src: str
    sport: int
    dst: str
    dport: int
    payload: bytes


def _frames(data: bytes) -> Iterator[tuple[int, bytes]]:
    """(link type, frame bytes) of each packet of a pcap or pcapng file."""
    magic = data[:4]
    if magic in (
        b"\xd4\xc3\xb2\xa1",
        b"\x4d\x3c\xb2\xa1",
        b"\xa1\xb2\xc3\xd4",
        b"\xa1\xb2\x3c\x4d",
    ):
        e = "<" if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
        linktype = struct.unpack(e + "I", data[20:24])[0] & 0x0FFFFFFF
        pos = 24
        while pos + 16 <= len(data):
            caplen = struct.unpack(e + "I", data[pos + 8 : pos + 12])[0]
            yield linktype, data[pos + 16 : pos + 16 + caplen]
            pos += 16 + caplen
        return
    if magic != b"\x0a\x0d\x0d\x0a":
        raise ValueError("not a pcap or pcapng file")
    e = "<"
    links: list[int] = []
    pos = 0
    while pos + 12 <= len(data):
        block_type = struct.unpack(e + "I", data[pos : pos + 4])[0]
        if block_type == 0x0A0D0D0A:
            e = "<" if data[pos + 8 : pos + 12] == b"\x4d\x3c\x2b\x1a" else ">"
            links = []
        block_len = struct.unpack(e + "I", data[pos + 4 : pos + 8])[0]
        if block_type == 1:  # Interface Description Block
            links.append(struct.unpack(e + "H", data[pos + 8 : pos + 10])[0])
        elif block_type == 6:  # Enhanced Packet Block
            iface, _, _, caplen = struct.unpack(e + "IIII", data[pos + 8 : pos + 24])
            yield links[iface], data[pos + 28 : pos + 28 + caplen]
        elif block_type == 3:  # Simple Packet Block: interface 0
            yield links[0], data[pos + 12 : pos + block_len - 4]
        pos += block_len


def udp_datagrams(path: Path) -> list[Datagram]:
    out: list[Datagram] = []
    for number, (linktype, frame) in enumerate(_frames(path.read_bytes()), start=1):
        if linktype != LINKTYPE_ETHERNET or len(frame) < 14:
            continue
        ethertype = struct.unpack(">H", frame[12:14])[0]
        p = 14
        while ethertype in (0x8100, 0x88A8) and len(frame) >= p + 4:
            ethertype = struct.unpack(">H", frame[p + 2 : p + 4])[0]
            p += 4
        if ethertype == 0x0800 and len(frame) >= p + 20:
            ihl = (frame[p] & 0x0F) * 4
            if frame[p + 9] != 17 or struct.unpack(">H", frame[p + 6 : p + 8])[0] & 0x3FFF:
                continue  # not UDP, or a fragment
            src = str(ipaddress.IPv4Address(frame[p + 12 : p + 16]))
            dst = str(ipaddress.IPv4Address(frame[p + 16 : p + 20]))
            p += ihl
        elif ethertype == 0x86DD and len(frame) >= p + 40:
            if frame[p + 6] != 17:
                continue  # not UDP directly after the fixed header
            src = str(ipaddress.IPv6Address(frame[p + 8 : p + 24]))
            dst = str(ipaddress.IPv6Address(frame[p + 24 : p + 40]))
            p += 40
        else:
            continue
        if len(frame) < p + 8:
            continue
        sport, dport, length = struct.unpack(">HHH", frame[p : p + 6])
        out.append(Datagram(number, src, sport, dst, dport, frame[p + 8 : p + length]))
    return out
