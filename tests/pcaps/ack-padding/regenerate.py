#!/usr/bin/env python3
"""Bare ACKs whose Ethernet padding a middlebox counted into the IP length, so that they carry
6 zero bytes at the very sequence number where the hello starts; and the expected hellos.

Run from anywhere (no root needed):

    python tests/pcaps/ack-padding/regenerate.py

Made from the real recording ../openssl-tls13.pcap: the client's ACK of the SYN-ACK and the
server's ACK of the ClientHello are rewritten as that artefact shows them on the wire: a bare
ACK without TCP options is 54 bytes, Ethernet pads it to 60, and the IPv4 total length says 46
instead of 40, so the 6 padding zeros read as TCP payload at the hello's sequence number.

Expected values: tshark on the source capture (`hellos`), because on this capture tshark itself
keeps the zeros as the first copy and loses the hellos (`tshark_on_this_capture` records what
it reports here). The hellos and their endpoints are those of the unaltered connection.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from scapy.layers.inet import IP, TCP
from scapy.packet import Packet, Raw
from scapy.utils import rdpcap, wrpcap

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tunnels"))

from regenerate import tshark_hellos, tshark_version  # noqa: E402  (tunnels/regenerate.py)

SOURCE = HERE.parent / "openssl-tls13.pcap"
CAPTURE = "padded-acks.pcap"
PADDING = b"\x00" * 6  # 60-byte Ethernet minimum - 54-byte bare ACK


def padded(ack: Packet) -> Packet:
    tcp = ack[TCP]
    bare = TCP(sport=tcp.sport, dport=tcp.dport, seq=tcp.seq, ack=tcp.ack, flags="A",
               window=tcp.window)  # fmt: skip
    ip = ack[IP]
    out = ack.copy()
    out[IP].remove_payload()
    out[IP].add_payload(bare / Raw(PADDING))
    out[IP].len = 20 + 20 + len(PADDING)
    del out[IP].chksum
    out.time = ack.time
    out.wirelen = len(bytes(out))  # else scapy writes the source frame's original length
    assert ip.src == out[IP].src
    return out


def main() -> None:
    out: list[Packet] = []
    padded_acks = 0
    first_seq: dict[int, int] = {}  # source port -> SYN + 1
    for pkt in rdpcap(str(SOURCE)):
        tcp = pkt[TCP] if TCP in pkt else None
        # Each side's first bare ACK (no payload) before it has sent data: at the hello's seq.
        if tcp is not None and tcp.flags == "A" and not bytes(tcp.payload) and padded_acks < 2:
            if tcp.seq == first_seq.get(tcp.sport):
                pkt = padded(pkt)
                padded_acks += 1
        if tcp is not None and tcp.flags.S:
            first_seq[tcp.sport] = (tcp.seq + 1) % (1 << 32)
        out.append(pkt)
    wrpcap(str(HERE / CAPTURE), out)
    doc = {
        "capture": CAPTURE,
        "oracle": f"tshark {tshark_version()} (on the source capture)",
        "derived_from": SOURCE.name,
        "covers": "bare ACKs carrying 6 zero bytes of Ethernet padding at both hellos' sequence",
        "padded_acks": padded_acks,
        "hellos": tshark_hellos(SOURCE),
        "tshark_on_this_capture": tshark_hellos(HERE / CAPTURE),
    }
    (HERE / "padded-acks.expected.json").write_text(json.dumps(doc, indent=2) + "\n")
    seen = len(doc["tshark_on_this_capture"])
    print(f"{CAPTURE}: {padded_acks} padded ACKs; tshark finds {seen} hellos in it")


if __name__ == "__main__":
    main()
