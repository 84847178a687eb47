"""Seed corpora for the fuzz targets, written from the repository's own captures.

Run with the project's venv active:
    python native/fuzz/seeds.py OUTDIR
Writes OUTDIR/<target>/<n> files in the framing of fuzz_targets/common.rs (flags(1) length(2)
bytes, bit 0 of flags = server to client; for engine_frames the flags byte picks the link type).
hello_parser starts from the hello bodies the QUIC and DTLS assemblers return. The QUIC
plaintexts are decrypted with the Python reference (ja3svc.quic), so the sealed-payload, frame
and CRYPTO-stream targets start from what real clients and servers (aioquic, Chrome, Cloudflare)
put in their Initials. Nothing is committed: the corpora are made afresh from tests/pcaps for
each run.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from ja3svc.dtls import DtlsHandshakeAssembler  # noqa: E402
from ja3svc.quic import QuicInitialAssembler  # noqa: E402
from ja3svc.quic.frames import crypto_frames  # noqa: E402
from ja3svc.quic.keys import PacketKeys, initial_keys  # noqa: E402
from ja3svc.quic.packets import PacketError, split_long_packets, unprotect  # noqa: E402
from tests.support.udp_capture import _frames, udp_datagrams  # noqa: E402

# fuzz_targets/engine_frames.rs picks the link type by the flags byte from this list.
LINKTYPES = [0, 1, 12, 14, 101, 108, 113, 228, 229, 276]


def frame(records: list[tuple[bool, bytes]]) -> bytes:
    return b"".join(
        bytes([1 if server else 0]) + len(data).to_bytes(2, "big") + data
        for server, data in records
        if len(data) < 0x10000
    )


def conversations(path: Path) -> list[list[tuple[bool, bytes]]]:
    """The datagrams of each UDP 4-tuple, in capture order, with their direction."""
    convs: dict[tuple, list[tuple[bool, bytes]]] = {}
    for d in udp_datagrams(path):
        fwd, rev = (d.src, d.sport, d.dst, d.dport), (d.dst, d.dport, d.src, d.sport)
        if rev in convs:
            convs[rev].append((True, d.payload))
        else:
            convs.setdefault(fwd, []).append((False, d.payload))
    return list(convs.values())


def plaintexts(conv: list[tuple[bool, bytes]]) -> list[tuple[bool, bytes]]:
    """The decrypted Initial payloads of one QUIC conversation (keys of the first client DCID)."""
    out: list[tuple[bool, bytes]] = []
    keys: dict[bool, PacketKeys] = {}
    for server, datagram in conv:
        packets, _ = split_long_packets(datagram)
        for p in packets:
            if p.packet_type != "initial":
                continue
            if not keys:
                client, srv = initial_keys(p.version, bytes(p.dcid))
                keys = {False: client, True: srv}
            try:
                _, payload = unprotect(datagram, p, keys[server], -1)
            except PacketError:
                continue
            out.append((server, payload))
    return out


def main() -> int:
    out = Path(sys.argv[1])
    quic = sorted((ROOT / "tests" / "pcaps" / "quic").glob("*.pcap"))
    dtls = sorted((ROOT / "tests" / "pcaps" / "dtls").glob("*.pcap"))
    seeds: dict[str, list[bytes]] = {t: [] for t in (
        "quic_datagrams", "quic_sealed_payloads", "quic_frames", "quic_crypto_stream",
        "dtls_datagrams", "engine_frames", "hello_parser",
    )}  # fmt: skip
    for path in quic:
        for conv in conversations(path):
            seeds["quic_datagrams"].append(frame(conv))
            plain = plaintexts(conv)
            seeds["quic_sealed_payloads"].append(frame(plain))
            for _, payload in plain:
                seeds["quic_frames"].append(payload)
            pieces = b""
            for server, payload in plain:
                if server:
                    continue
                for offset, data in crypto_frames(payload)[0]:
                    for i in range(0, len(data), 255):
                        chunk = data[i : i + 255]
                        pieces += (offset + i).to_bytes(2, "big") + bytes([len(chunk)]) + chunk
            seeds["quic_crypto_stream"].append(pieces)
    for path in dtls:
        for conv in conversations(path):
            seeds["dtls_datagrams"].append(frame(conv))
    # Hello bodies as the assemblers hand them to the parser (both directions).
    for path in quic + dtls:
        for conv in conversations(path):
            asm = QuicInitialAssembler() if path in quic else DtlsHandshakeAssembler()
            for server, datagram in conv:
                bodies = asm.feed_server(datagram) if server else asm.feed(datagram)
                seeds["hello_parser"].extend(bodies)
    # Whole captures as frames for the engine, the flags byte naming the link type.
    for path in sorted((ROOT / "tests" / "pcaps").glob("*.pcap*")):
        seeds["engine_frames"].append(
            b"".join(
                bytes([LINKTYPES.index(lt)]) + len(f).to_bytes(2, "big") + f
                for lt, f in _frames(path.read_bytes())
                if lt in LINKTYPES and len(f) < 0x10000
            )
        )
    for target, items in seeds.items():
        folder = out / target
        folder.mkdir(parents=True, exist_ok=True)
        for i, item in enumerate(items):
            if item:
                (folder / f"seed-{i}").write_bytes(item)
    print(" ".join(f"{t}={len(v)}" for t, v in seeds.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
