#!/usr/bin/env python3
"""Tunnelled captures (IP-in-IP, GTP-U, CAPWAP, PPP) made from the real golden captures, and what
tshark reports for them (expected.json).

Run from anywhere (no root needed):

    python tests/pcaps/tunnels/regenerate.py

Why wrapped rather than recorded through kernel tunnels: the kernel of the machine these captures
were made on has no ipip, sit or ip6_tunnel support (``ip link add ... type ipip`` answers
"Unknown device type") and no module loader. The TLS packets inside are the unchanged IP packets
of two real recordings, ../openssl-tls13.pcap (OpenSSL over IPv4) and ../ipv6.pcap (OpenSSL and
curl over IPv6); each is wrapped with scapy into the encapsulation's outer headers exactly as the
kernel (or a GTP-U gateway, a CAPWAP access point or controller, a PPP link) would send it. The
expected values come from tshark only (an oracle independent of ja3svc), which decodes every one
of these encapsulations. For CAPWAP tshark is told (CAPWAP_PREFS) to read the 802.11 frame
control field in the standard byte order: by default it assumes the byte-swapped field some
Cisco access points send, which capwap-cisco-*.pcap have (tshark told so explicitly).
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Iterable
from pathlib import Path

from scapy.layers.inet import IP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Ether
from scapy.packet import Packet, Raw
from scapy.utils import PcapReader, PcapWriter

HERE = Path(__file__).resolve().parent
SOURCES = {4: HERE.parent / "openssl-tls13.pcap", 6: HERE.parent / "ipv6.pcap"}
# Tunnel endpoints: RFC 2544 benchmarking and RFC 4193 unique-local addresses, as elsewhere.
OUTER4 = ("198.19.0.1", "198.19.0.2")
OUTER6 = ("fd4a:3373:7663:ffff::1", "fd4a:3373:7663:ffff::2")
CLIENTS = ("198.18.0.1", "fd4a:3373:7663::1")  # the client side of the source captures
MACS = ("02:00:00:00:00:01", "02:00:00:00:00:02")
LINKTYPE_PPP = 9
GTPU_PORT = 2152


def inner_packets(version: int) -> list[tuple[float, bytes, bool]]:
    """(time, IP packet, sent by the client) for every IP packet of a source capture."""
    out = []
    with PcapReader(str(SOURCES[version])) as reader:
        for pkt in reader:
            layer = IP if version == 4 else IPv6
            if layer not in pkt:
                continue  # ARP / neighbour discovery: no TLS, and no tunnel would carry it
            ip = pkt[layer]
            out.append((float(pkt.time), bytes(ip), ip.src in CLIENTS))
    return out


def ether(from_client: bool, payload: Packet) -> Packet:
    src, dst = MACS if from_client else MACS[::-1]
    return Ether(src=src, dst=dst) / payload


def ip_in_ip(outer: int) -> Callable[[bytes, bool], Packet]:
    """The kernel's ipip/sit (outer IPv4) and ip6tnl (outer IPv6) encapsulation."""

    def wrap(inner: bytes, from_client: bool) -> Packet:
        proto = 4 if inner[0] >> 4 == 4 else 41
        if outer == 4:
            a, b = OUTER4 if from_client else OUTER4[::-1]
            return ether(from_client, IP(src=a, dst=b, proto=proto, ttl=64) / Raw(inner))
        a, b = OUTER6 if from_client else OUTER6[::-1]
        return ether(from_client, IPv6(src=a, dst=b, nh=proto, hlim=64) / Raw(inner))

    return wrap


def gtpu(inner: bytes, from_client: bool) -> Packet:
    """A G-PDU (3GPP TS 29.281). Uplink carries a PDU Session Container extension header (as 5G
    gateways send), downlink the bare 8-byte header, so both header forms are covered."""
    teid = 0x1234 if from_client else 0x5678
    if from_client:
        # flags 0x34: version 1, PT=1, E=1; then seq (2), N-PDU (1), next ext 0x85 (PDU Session
        # Container), the extension (length 1 = 4 bytes: UL PDU type, QFI 9, next ext 0).
        ext = b"\x00\x00\x00\x85" + b"\x01\x10\x09\x00"
        gtp = bytes([0x34, 0xFF]) + (len(ext) + len(inner)).to_bytes(2, "big")
        gtp += teid.to_bytes(4, "big") + ext
    else:
        gtp = bytes([0x30, 0xFF]) + len(inner).to_bytes(2, "big") + teid.to_bytes(4, "big")
    a, b = OUTER4 if from_client else OUTER4[::-1]
    udp = UDP(sport=GTPU_PORT, dport=GTPU_PORT) / Raw(gtp + inner)
    return ether(from_client, IP(src=a, dst=b, ttl=64) / udp)


CAPWAP_DATA_PORT = 5247
AP_PORT = 32768  # the access point's own port: the controller answers from 5247 to it
BSSID = bytes.fromhex("020000000010")


def capwap(
    inner: bytes, from_client: bool, *, swap_fc: bool = False, retry: bool = False
) -> Packet:
    """CAPWAP data (RFC 5415) between an access point and its controller, carrying the native
    802.11 frame (T=1, wireless binding 1). Uplink: a QoS data frame to the distribution system
    (26-byte header); downlink: a plain data frame from it (24 bytes). LLC/SNAP before the IP.
    ``swap_fc``: the two frame control bytes swapped, as Cisco access points and controllers
    send them; ``retry``: the uplink frames have the Retry flag (the access point forwards the
    first copy it received, which may be a retransmission)."""
    sta, router = bytes.fromhex(MACS[0].replace(":", "")), bytes.fromhex(MACS[1].replace(":", ""))
    fc = (b"\x88\x09" if retry else b"\x88\x01") if from_client else b"\x08\x02"
    if swap_fc:
        fc = fc[::-1]
    if from_client:  # To DS: addr1 BSSID, addr2 source, addr3 destination; then QoS control
        dot11 = fc + b"\x00\x00" + BSSID + sta + router + b"\x00\x00" + b"\x00\x00"
    else:  # From DS: addr1 destination, addr2 BSSID, addr3 source
        dot11 = fc + b"\x00\x00" + sta + BSSID + router + b"\x00\x00"
    ethertype = b"\x08\x00" if inner[0] >> 4 == 4 else b"\x86\xdd"
    llc = b"\xaa\xaa\x03\x00\x00\x00" + ethertype
    # Preamble 0; HLEN 2 (8 bytes), RID 1, WBID 1 (IEEE 802.11), T=1; no flags, no fragment.
    header = bytes([0x00, 0x10, 0x43, 0x00, 0, 0, 0, 0])
    ports = (AP_PORT, CAPWAP_DATA_PORT) if from_client else (CAPWAP_DATA_PORT, AP_PORT)
    a, b = OUTER4 if from_client else OUTER4[::-1]
    udp = UDP(sport=ports[0], dport=ports[1]) / Raw(header + dot11 + llc + inner)
    return ether(from_client, IP(src=a, dst=b, ttl=64) / udp)


def capwap_cisco(inner: bytes, from_client: bool) -> Packet:
    return capwap(inner, from_client, swap_fc=True)


def capwap_cisco_retry(inner: bytes, from_client: bool) -> Packet:
    # Swapped, the uplink flags byte 0x09 (To DS, Retry) reads as a data frame type too.
    return capwap(inner, from_client, swap_fc=True, retry=True)


CAPWAP_PREFS = ("capwap.swap_fc:FALSE",)
# tshark's default, spelled out: the frame control field is read byte-swapped.
CAPWAP_CISCO_PREFS = ("capwap.swap_fc:TRUE",)


def ppp(inner: bytes, from_client: bool) -> bytes:
    """PPP frames (link type 9). The client side sends the RFC 1662 FF 03 address/control pair,
    the server side has negotiated it away (ACFC): both forms appear on real links."""
    proto = b"\x00\x21" if inner[0] >> 4 == 4 else b"\x00\x57"
    return (b"\xff\x03" if from_client else b"") + proto + inner


CAPTURES: dict[str, tuple[int, Callable[[bytes, bool], Packet | bytes], str]] = {
    "ipip-4in4.pcap": (4, ip_in_ip(4), "IPv4 in IPv4 (ipip, IP protocol 4)"),
    "ipip-6in4.pcap": (6, ip_in_ip(4), "IPv6 in IPv4 (sit / 6in4, IP protocol 41)"),
    "ipip-4in6.pcap": (4, ip_in_ip(6), "IPv4 in IPv6 (ip6tnl ipip6, next header 4)"),
    "ipip-6in6.pcap": (6, ip_in_ip(6), "IPv6 in IPv6 (ip6tnl ip6ip6, next header 41)"),
    "gtpu-4.pcap": (4, gtpu, "IPv4 in GTP-U (UDP 2152), with and without extension headers"),
    "gtpu-6.pcap": (6, gtpu, "IPv6 in GTP-U (UDP 2152), with and without extension headers"),
    "capwap-4.pcap": (4, capwap, "IPv4 in 802.11 data frames in CAPWAP data (UDP 5247)"),
    "capwap-6.pcap": (6, capwap, "IPv6 in 802.11 data frames in CAPWAP data (UDP 5247)"),
    "capwap-cisco-4.pcap": (
        4,
        capwap_cisco_retry,
        "IPv4 in 802.11 data frames in CAPWAP data (UDP 5247), frame control byte-swapped (Cisco),"
        " uplink frames with Retry set",
    ),
    "capwap-cisco-6.pcap": (
        6,
        capwap_cisco,
        "IPv6 in 802.11 data frames in CAPWAP data (UDP 5247), frame control byte-swapped (Cisco)",
    ),
    "ppp-4.pcap": (4, ppp, "IPv4 on the PPP link type (9), with and without FF 03"),
    "ppp-6.pcap": (6, ppp, "IPv6 on the PPP link type (9), with and without FF 03"),
}


def write(name: str, version: int, wrap: Callable[[bytes, bool], Packet | bytes]) -> None:
    path = HERE / name
    linktype = LINKTYPE_PPP if wrap is ppp else 1
    with PcapWriter(str(path), linktype=linktype, sync=True) as out:
        for ts, inner, from_client in inner_packets(version):
            frame = wrap(inner, from_client)
            pkt = frame if isinstance(frame, Packet) else Raw(frame)
            pkt.time = ts
            out.write(pkt)


FIELDS = ["frame.protocols", "ip.src", "ip.dst", "ipv6.src", "ipv6.dst", "tcp.srcport",
          "tcp.dstport", "tls.handshake.type", "tls.handshake.ja3_full", "tls.handshake.ja3",
          "tls.handshake.ja3s_full", "tls.handshake.ja3s"]  # fmt: skip


def tshark_hellos(path: Path, *prefs: str) -> list[dict[str, object]]:
    """The hellos tshark reports, with the TLS endpoints of the innermost IP header; `prefs` are
    extra ``-o name:value`` settings."""
    argv = ["tshark", "-r", str(path), "-o", "tcp.desegment_tcp_streams:TRUE"]
    for pref in prefs:
        argv += ["-o", pref]
    argv += ["-Y",
            "tls.handshake.type==1 || tls.handshake.type==2", "-T", "json"]  # fmt: skip
    for f in FIELDS:
        argv += ["-e", f]
    res = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=True)
    rows: list[dict[str, object]] = []
    for pkt in json.loads(res.stdout or "[]"):
        layers: dict[str, list[str]] = pkt["_source"]["layers"]
        # The innermost network header carries the TLS endpoints: the last ip/ipv6 in the
        # protocol chain, and the last value of that field (tshark lists outer first).
        chain = layers["frame.protocols"][0].split(":")
        family = next(p for p in reversed(chain) if p in ("ip", "ipv6"))
        types = layers.get("tls.handshake.type", [])
        for kind, code, full_f, hash_f in (
            ("client", "1", "tls.handshake.ja3_full", "tls.handshake.ja3"),
            ("server", "2", "tls.handshake.ja3s_full", "tls.handshake.ja3s"),
        ):
            fulls, hashes = layers.get(full_f, []), layers.get(hash_f, [])
            for i in range(types.count(code)):
                full, digest = fulls[i], hashes[i]
                rows.append({
                    "src": layers[f"{family}.src"][-1],
                    "sport": int(layers["tcp.srcport"][0]),
                    "dst": layers[f"{family}.dst"][-1],
                    "dport": int(layers["tcp.dstport"][0]),
                    "hello": kind,
                    "ja3": full if kind == "client" else None,
                    "ja3_hash": digest if kind == "client" else None,
                    "ja3s": full if kind == "server" else None,
                    "ja3s_hash": digest if kind == "server" else None,
                    "protocols": ":".join(chain),
                })  # fmt: skip
    return rows


def tshark_version() -> str:
    res = subprocess.run(["tshark", "--version"], capture_output=True, text=True, check=True)
    return res.stdout.splitlines()[0].removeprefix("TShark (Wireshark) ").split(" ")[0]


def main(names: Iterable[str] = CAPTURES) -> None:
    oracle = f"tshark {tshark_version()}"
    for name in names:
        version, wrap, covers = CAPTURES[name]
        write(name, version, wrap)
        prefs = {
            capwap: CAPWAP_PREFS,
            capwap_cisco: CAPWAP_CISCO_PREFS,
            capwap_cisco_retry: CAPWAP_CISCO_PREFS,
        }.get(wrap, ())
        hellos = tshark_hellos(HERE / name, *prefs)
        doc = {
            "capture": name,
            "oracle": oracle,
            "derived_from": SOURCES[version].name,
            "covers": covers,
            "tshark_prefs": list(prefs),
            "hellos": hellos,
        }
        stem = name.rsplit(".", 1)[0]
        (HERE / f"{stem}.expected.json").write_text(json.dumps(doc, indent=2) + "\n")
        print(f"{name}: {len(hellos)} hellos")


if __name__ == "__main__":
    main()
