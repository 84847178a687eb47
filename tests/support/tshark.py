"""The independent oracle of the live tests: the ClientHellos tshark finds in a capture."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def tcp_client_hellos(pcap: Path, decode_as: Sequence[str] = ()) -> list[dict[str, Any]]:
    """Every TCP ClientHello tshark finds, in frame order.

    Each row: ``frame``, ``sport``, ``dport``, ``segments`` (TCP segments the hello spanned),
    ``ja3`` (MD5) and ``ja3_full`` (the string). ``decode_as`` takes tshark ``-d`` rules for
    non-standard ports, e.g. ``"tcp.port==10993,tls"``.
    """
    argv = ["tshark", "-r", str(pcap), "-o", "tcp.desegment_tcp_streams:TRUE"]
    for rule in decode_as:
        argv += ["-d", rule]
    argv += ["-Y", "tls.handshake.type==1", "-T", "json"]
    for field in ("frame.number", "tcp.srcport", "tcp.dstport", "tcp.segment.count",
                  "tls.handshake.ja3", "tls.handshake.ja3_full"):  # fmt: skip
        argv += ["-e", field]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=True).stdout
    rows = []
    for pkt in json.loads(out or "[]"):
        layers = pkt["_source"]["layers"]
        segments = int(layers.get("tcp.segment.count", ["1"])[0])
        for ja3, full in zip(
            layers.get("tls.handshake.ja3", []),
            layers.get("tls.handshake.ja3_full", []),
            strict=True,
        ):
            rows.append(
                {
                    "frame": int(layers["frame.number"][0]),
                    "sport": int(layers["tcp.srcport"][0]),
                    "dport": int(layers["tcp.dstport"][0]),
                    "segments": segments,
                    "ja3": ja3,
                    "ja3_full": full,
                }
            )
    return sorted(rows, key=lambda r: r["frame"])
