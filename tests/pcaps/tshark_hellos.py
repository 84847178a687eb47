"""The oracle of the UDP golden captures: what tshark reports as hellos, per capture.

Shared by tests/pcaps/quic/regenerate.py and tests/pcaps/dtls/regenerate.py, which write its
answer to their expected.json.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Sequence
from pathlib import Path


def tshark_hellos(pcap: Path, proto: str, decode_as: Sequence[str] = ()) -> dict[str, list[dict]]:
    """``{"client": [...], "server": [...]}`` with frame, JA3/JA3S string and MD5 per hello.

    ``proto`` is tshark's dissector prefix (``tls`` for QUIC's embedded TLS, ``dtls``).
    """
    fields = ["frame.number", f"{proto}.handshake.type"] + [
        f"{proto}.handshake.{f}" for f in ("ja3_full", "ja3", "ja3s_full", "ja3s")
    ]
    argv = ["tshark", "-r", str(pcap)]
    for rule in decode_as:
        argv += ["-d", rule]
    argv += ["-Y", f"{proto}.handshake.type == 1 || {proto}.handshake.type == 2"]
    argv += ["-T", "fields", "-E", "separator=\t"]
    for field in fields:
        argv += ["-e", field]
    rows = subprocess.run(argv, check=True, capture_output=True, text=True, timeout=120)
    clients, servers = [], []
    for row in rows.stdout.splitlines():
        frame, types, ja3_full, ja3, ja3s_full, ja3s = ([*row.split("\t"), *[""] * 6])[:6]
        if "1" in types.split(",") and ja3_full:
            clients.append({"frame": int(frame), "ja3": ja3_full, "ja3_hash": ja3})
        if "2" in types.split(",") and ja3s_full:
            servers.append({"frame": int(frame), "ja3s": ja3s_full, "ja3s_hash": ja3s})
    return {"client": clients, "server": servers}


def write_expected(folder: Path, proto: str, decode_as: Sequence[str] = ()) -> Path:
    """Run the oracle on every capture in ``folder``; write and return its expected.json."""
    expected = {p.name: tshark_hellos(p, proto, decode_as) for p in sorted(folder.glob("*.pcap"))}
    out = folder / "expected.json"
    out.write_text(json.dumps(expected, indent=1, sort_keys=True) + "\n")
    return out
