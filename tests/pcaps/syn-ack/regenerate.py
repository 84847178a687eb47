#!/usr/bin/env python3
"""Connections where the server side shows two SYN-ACKs with different initial sequence
numbers, and what tshark reports for them (expected.json).

Run from anywhere (no root needed):

    python tests/pcaps/syn-ack/regenerate.py

Made from the real recording ../curl-https.pcap (curl against openssl s_server, two
connections): a second SYN-ACK for the same SYN but with another initial sequence number (as a
SYN proxy, a load balancer that retried on another backend, or a restarted listener sends) is
added with scapy, in connection 1 before the real SYN-ACK, in connection 2 after it. The client
acknowledges only the real one, so reassembly must follow that one, wherever it comes. No
kernel produces this on demand, hence the edit of a real capture. Expected values from tshark,
with its sequence-number analysis off (TSHARK_PREFS): with it on, tshark takes the second SYN-ACK
for a reused port, starts a new stream there and loses that connection's ServerHello; without
it, tshark reassembles by the sequence numbers the client acknowledged, as a TCP stack does.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from scapy.layers.inet import IP, TCP
from scapy.packet import Packet
from scapy.utils import rdpcap, wrpcap

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tunnels"))

from regenerate import tshark_hellos, tshark_version  # noqa: E402  (tunnels/regenerate.py)

SOURCE = HERE.parent / "curl-https.pcap"
CAPTURE = "two-syn-acks.pcap"
TSHARK_PREFS = ("tcp.analyze_sequence_numbers:FALSE",)
OTHER_ISN_OFFSET = 0x5A5A5A5A  # far from the real ISN: no overlap with the real numbers


def other_syn_ack(real: Packet, dt: float) -> Packet:
    fake = real.copy()
    fake[TCP].seq = (real[TCP].seq + OTHER_ISN_OFFSET) % (1 << 32)
    del fake[TCP].chksum  # recomputed when written
    del fake[IP].chksum
    fake.time = real.time + dt
    return fake


def main() -> None:
    packets = rdpcap(str(SOURCE))
    out: list[Packet] = []
    syn_acks = 0
    for pkt in packets:
        if TCP in pkt and pkt[TCP].flags == "SA":
            syn_acks += 1
            if syn_acks == 1:
                out += [other_syn_ack(pkt, -0.000001), pkt]  # the other one first
            else:
                out += [pkt, other_syn_ack(pkt, 0.000001)]  # the other one second
            continue
        out.append(pkt)
    wrpcap(str(HERE / CAPTURE), out)
    hellos = tshark_hellos(HERE / CAPTURE, *TSHARK_PREFS)
    doc = {
        "capture": CAPTURE,
        "oracle": f"tshark {tshark_version()}",
        "tshark_prefs": list(TSHARK_PREFS),
        "derived_from": SOURCE.name,
        "covers": "two SYN-ACKs with different ISNs, the client acknowledges one (first or second)",
        "hellos": hellos,
    }
    (HERE / "two-syn-acks.expected.json").write_text(json.dumps(doc, indent=2) + "\n")
    print(f"{CAPTURE}: {syn_acks} connections, {len(hellos)} hellos")


if __name__ == "__main__":
    main()
