"""FingerprintEngine end to end on real captures, rewritten to be as hostile as real networks.

The oracle is tshark: each tests/pcaps/<name>.expected.json lists tshark's ``ja3_full`` /
``ja3s_full`` for every hello of the *original* capture. The captures are then rewritten here
(tests/support/pcap_builder.py re-encodes the TCP segments) -- re-split into small overlapping
segments, permuted, duplicated, a record header alone in a segment, wrapped in every link type --
and the engine must still report exactly tshark's hellos. Only TCP sequence numbers and IP lengths
are recomputed; checksums are left zero (the engine does not verify them).
"""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pytest
from ja3svc.capture.capture_file import open_capture

from ja3svc.engine import FingerprintEngine
from tests.support.paths import PCAPS
from tests.support.pcap_builder import (
    TCP_ACK,
    TCP_FIN,
    TCP_RST,
    TCP_SYN,
    TcpPacket,
    decode_tcp,
    ethernet,
    ipv4,
    ipv6,
    null_loop,
    sll,
    sll2,
    tcp,
)

CAPTURE_SUFFIXES = (".pcap", ".pcapng")


def _expected_files() -> list[tuple[str, Path, dict[str, Any]]]:
    out = []
    for exp in sorted(PCAPS.glob("*.expected.json")):
        data = json.loads(exp.read_text())
        capture = PCAPS / data.get("capture", "")
        if capture.is_file() and data.get("hellos") and capture.suffix in CAPTURE_SUFFIXES:
            out.append((capture.name, capture, data))
    return out


CASES = _expected_files()
if not CASES:
    pytest.skip("no golden captures in tests/pcaps", allow_module_level=True)
CASE_IDS = [name for name, _, _ in CASES]

HelloKey = tuple[str, str, int, str, int, str]


def tshark_hellos(expected: dict[str, Any]) -> Counter[HelloKey]:
    c: Counter[HelloKey] = Counter()
    for h in expected["hellos"]:
        full = h["ja3"] if h["hello"] == "client" else h["ja3s"]
        c[(h["hello"], h["src"], int(h["sport"]), h["dst"], int(h["dport"]), full)] += 1
    return c


def read_frames(path: Path) -> list[tuple[float, int, bytes, int]]:
    with path.open("rb") as fh:
        return list(open_capture(fh, path.name))


def read_tcp(path: Path) -> list[TcpPacket]:
    out = []
    for ts, linktype, frame, _wire in read_frames(path):
        pkt = decode_tcp(ts, linktype, frame)
        if pkt is not None:
            out.append(pkt)
    return out


def run_engine(frames: Iterable[tuple[float, int, bytes]]) -> tuple[list[dict], FingerprintEngine]:
    engine = FingerprintEngine()
    records = []
    for ts, linktype, frame in frames:
        for sighting in engine.feed_frame(ts, linktype, frame, len(frame)):
            records.append(sighting.as_dict())
    engine.finish()
    return records, engine


def ours(records: list[dict]) -> Counter[HelloKey]:
    c: Counter[HelloKey] = Counter()
    for d in records:
        full = d["ja3"] if d["hello"] == "client" else d["ja3s"]
        c[(d["hello"], d["src"], d["sport"], d["dst"], d["dport"], full)] += 1
    return c


def assert_same_hellos(records: list[dict], expected: dict[str, Any]) -> None:
    want, got = tshark_hellos(expected), ours(records)
    assert not (want - got), f"missed or different: {want - got}"
    assert not (got - want), f"not reported by tshark: {got - want}"


def eth_frames(packets: Iterable[TcpPacket]) -> list[tuple[float, int, bytes]]:
    return [(p.ts, 1, ethernet(p.ip_packet())) for p in packets]


# --- the originals ------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "path", "expected"), CASES, ids=CASE_IDS)
def test_original_capture_equals_tshark(name: str, path: Path, expected: dict) -> None:
    records, _ = run_engine((ts, lt, f) for ts, lt, f, _w in read_frames(path))
    assert_same_hellos(records, expected)


def test_hello_retry_request_flow_indexes() -> None:
    path = PCAPS / "openssl-hrr.pcap"
    if not path.exists():
        pytest.skip("openssl-hrr.pcap not present")
    records, _ = run_engine((ts, lt, f) for ts, lt, f, _w in read_frames(path))
    clients = [d for d in records if d["hello"] == "client"]
    servers = [d for d in records if d["hello"] == "server"]
    assert [d["index"] for d in clients] == [1, 2]
    assert [d["index"] for d in servers] == [1, 2]
    assert [d["hello_retry_request"] for d in servers] == [True, False]


# --- rewritten captures -------------------------------------------------------------------


def in_seq_order(packets: list[TcpPacket]) -> list[TcpPacket]:
    """Undo reordering already present in a capture: each direction's data segments are put
    back in sequence order (in the slots data segments of that direction occupied), so the
    rewrites below control exactly how disordered the engine's input is."""
    isn: dict[tuple[str, int, str, int], int] = {}
    slots: dict[tuple[str, int, str, int], list[int]] = {}
    for i, p in enumerate(packets):
        if p.flags & TCP_SYN:
            isn.setdefault(p.flow, (p.seq + 1) % 2**32)
        elif p.payload and not p.flags & (TCP_FIN | TCP_RST):
            isn.setdefault(p.flow, p.seq)
            slots.setdefault(p.flow, []).append(i)
    out = list(packets)
    for flow, idx in slots.items():
        ordered = sorted((packets[i] for i in idx), key=lambda p: (p.seq - isn[flow]) % 2**32)
        for i, p in zip(idx, ordered, strict=True):
            out[i] = p
    return out


def resegment(
    packets: list[TcpPacket],
    *,
    size: int = 100,
    overlap: int = 17,
    header_alone: bool = True,
    window: int = 6,
    duplicate_every: int = 4,
    seed: int = 1,
) -> list[TcpPacket]:
    """Re-split every data segment into ``size``-byte pieces that overlap the next piece by
    ``overlap`` bytes (a TLS record header at the start of a segment gets a segment of its own),
    then permute the pieces of each direction inside windows of ``window`` pieces and send every
    ``duplicate_every``-th piece twice. SYN/FIN/RST packets keep their place, and so does the
    first data segment of a direction the capture joined mid-connection (no SYN before it):
    where such a capture starts is where its stream starts."""
    rng = random.Random(seed)
    packets = in_seq_order(packets)
    out: list[TcpPacket] = []
    pending: dict[tuple[str, int, str, int], list[TcpPacket]] = {}
    started: set[tuple[str, int, str, int]] = set()  # directions with a SYN or data

    def flush(flow: tuple[str, int, str, int]) -> None:
        pieces = pending.pop(flow, [])
        for k in range(0, len(pieces), window):
            group = pieces[k : k + window]
            rng.shuffle(group)
            for i, piece in enumerate(group):
                out.append(piece)
                if (k + i) % duplicate_every == 0:
                    out.append(piece)

    for p in packets:
        joined = bool(p.payload) and p.flow not in started and not p.flags & TCP_SYN
        if p.payload or p.flags & TCP_SYN:
            started.add(p.flow)
        if not p.payload or p.flags & (TCP_SYN | TCP_FIN | TCP_RST) or joined:
            flush(p.flow)
            out.append(p)
            continue
        data, cuts = p.payload, []
        start = 0
        if header_alone and data[:2] == b"\x16\x03" and len(data) > 5:
            cuts.append((0, 5))
            start = 5
        for k in range(start, len(data), size):
            cuts.append((k, min(len(data), k + size + overlap)))
        pieces = pending.setdefault(p.flow, [])
        for a, b in cuts:
            pieces.append(p.with_(seq=(p.seq + a) % 2**32, payload=data[a:b]))
        if len(pieces) >= window:
            flush(p.flow)
    for flow in list(pending):
        flush(flow)
    return out


@pytest.mark.parametrize(("name", "path", "expected"), CASES, ids=CASE_IDS)
def test_resegmented_permuted_duplicated_capture_equals_tshark(
    name: str, path: Path, expected: dict
) -> None:
    packets = read_tcp(path)
    rewritten = resegment(packets)
    assert len(rewritten) > len(packets)
    records, engine = run_engine(eth_frames(rewritten))
    assert_same_hellos(records, expected)
    assert engine.stats["skipped.tcp_gap"] == 0


@pytest.mark.parametrize(("name", "path", "expected"), CASES, ids=CASE_IDS)
def test_tiny_segments_without_header_alone_equals_tshark(
    name: str, path: Path, expected: dict
) -> None:
    # 7-byte pieces overlapping by 3, no permutation: record and handshake headers are cut at
    # every possible offset somewhere in the corpus.
    rewritten = resegment(
        read_tcp(path), size=7, overlap=3, header_alone=False, window=1, duplicate_every=10**9
    )
    records, _ = run_engine(eth_frames(rewritten))
    assert_same_hellos(records, expected)


@pytest.mark.parametrize(("name", "path", "expected"), CASES[:6], ids=CASE_IDS[:6])
def test_reversed_windows_equal_tshark(name: str, path: Path, expected: dict) -> None:
    # Strict reverse order inside each window: every piece but the last arrives early.
    packets = read_tcp(path)
    rewritten = resegment(packets, size=60, overlap=0, window=12, duplicate_every=3, seed=99)
    records, _ = run_engine(eth_frames(rewritten))
    assert_same_hellos(records, expected)


def restream(
    packets: list[TcpPacket], *, size: int, overlap: int = 0, window: int = 1, seed: int = 3
) -> list[TcpPacket]:
    """Cut each direction's byte stream into ``size``-byte pieces *across* the original segment
    boundaries (so plaintext and the start of a STARTTLS hello share a piece, and headers are
    cut anywhere), overlapping by ``overlap``, permuted inside windows of ``window`` pieces.
    A direction's pieces are sent where its first data segment was; SYN/FIN/RST stay put."""
    rng = random.Random(seed)
    packets = in_seq_order(packets)
    streams: dict[tuple[str, int, str, int], tuple[int, bytearray]] = {}
    for p in packets:
        if p.payload and not p.flags & (TCP_SYN | TCP_FIN | TCP_RST):
            base, buf = streams.setdefault(p.flow, (p.seq, bytearray()))
            offset = (p.seq - base) % 2**32
            if offset <= len(buf) < offset + len(p.payload):  # new bytes, first copy wins
                buf += p.payload[len(buf) - offset :]
    out: list[TcpPacket] = []
    sent: set[tuple[str, int, str, int]] = set()
    for p in packets:
        if not p.payload or p.flags & (TCP_SYN | TCP_FIN | TCP_RST):
            out.append(p)
        elif p.flow not in sent:
            sent.add(p.flow)
            base, buf = streams[p.flow]
            pieces = [
                p.with_(seq=(base + k) % 2**32, payload=bytes(buf[k : k + size + overlap]))
                for k in range(0, len(buf), size)
            ]
            for k in range(0, len(pieces), window):
                group = pieces[k : k + window]
                rng.shuffle(group)
                out += group
    return out


@pytest.mark.parametrize("size", [3, 4, 6, 9, 13, 100])
@pytest.mark.parametrize(("name", "path", "expected"), CASES, ids=CASE_IDS)
def test_stream_recut_across_segment_boundaries_equals_tshark(
    name: str, path: Path, expected: dict, size: int
) -> None:
    rewritten = restream(read_tcp(path), size=size, overlap=size // 3, window=4)
    records, _engine = run_engine(eth_frames(rewritten))
    assert_same_hellos(records, expected)


# --- link layers and network-layer options ------------------------------------------------

LINK_CASE_NAMES = ["openssl-hrr.pcap", "curl-cffi-chrome-mtu576.pcap", "ipv6.pcap"]
LINK_CASES = [c for c in CASES if c[0] in LINK_CASE_NAMES]

Wrap = Callable[[bytes], tuple[int, bytes]]


def _family_linktype(ip: bytes) -> int:
    return 228 if ip[0] >> 4 == 4 else 229


WRAPS: dict[str, Wrap] = {
    "ethernet": lambda ip: (1, ethernet(ip)),
    "vlan": lambda ip: (1, ethernet(ip, vlans=(42,))),
    "qinq": lambda ip: (1, ethernet(ip, vlans=(100, 42), qinq=True)),
    "vlan-8100x2": lambda ip: (1, ethernet(ip, vlans=(100, 42))),
    "sll": lambda ip: (113, sll(ip)),
    "sll2": lambda ip: (276, sll2(ip)),
    "null-le": lambda ip: (0, null_loop(ip, "little")),
    "null-be": lambda ip: (0, null_loop(ip, "big")),
    "loop-le": lambda ip: (108, null_loop(ip, "little", inet6_family=30)),
    "loop-be": lambda ip: (108, null_loop(ip, "big", inet6_family=28)),
    "raw-101": lambda ip: (101, ip),
    "raw-12": lambda ip: (12, ip),
    "raw-14": lambda ip: (14, ip),
    "raw-228-229": lambda ip: (_family_linktype(ip), ip),
}


@pytest.mark.parametrize("wrap", list(WRAPS))
@pytest.mark.parametrize(("name", "path", "expected"), LINK_CASES, ids=[c[0] for c in LINK_CASES])
def test_link_types_give_the_same_hellos(wrap: str, name: str, path: Path, expected: dict) -> None:
    frames = []
    for p in read_tcp(path):
        linktype, frame = WRAPS[wrap](p.ip_packet())
        frames.append((p.ts, linktype, frame))
    records, _ = run_engine(frames)
    assert_same_hellos(records, expected)


def _ip_with_options(p: TcpPacket) -> bytes:
    segment = tcp(p.sport, p.dport, p.seq, p.ack, p.flags, p.payload)
    if ":" in p.src:
        # Hop-by-hop (0) with a PadN option, then destination options (60) with 10 bytes.
        ext = [(0, b"\x01\x04\x00\x00\x00\x00"), (60, b"\x01\x08" + bytes(8))]
        return ipv6(p.src, p.dst, segment, ext=ext)
    # Record Route (7) with room for two addresses, then NOP padding: 12 bytes of options.
    options = b"\x07\x0b\x04" + bytes(8) + b"\x01"
    return ipv4(p.src, p.dst, segment, options=options)


@pytest.mark.parametrize(("name", "path", "expected"), LINK_CASES, ids=[c[0] for c in LINK_CASES])
def test_ipv4_options_and_ipv6_extension_headers(name: str, path: Path, expected: dict) -> None:
    frames = [(p.ts, 1, ethernet(_ip_with_options(p))) for p in read_tcp(path)]
    # Make sure the options are really there: IHL 8 words / next header 0 (hop-by-hop).
    ip = frames[0][2][14:]
    assert (ip[0] & 0x0F) == 8 if ip[0] >> 4 == 4 else ip[6] == 0
    records, _ = run_engine(frames)
    assert_same_hellos(records, expected)


# --- things that must be counted, not fingerprinted ---------------------------------------


def _hello_segment_packets() -> tuple[TcpPacket, TcpPacket]:
    """SYN and one data segment holding a whole ClientHello record ."""
    from tests.support.pcap_builder import client_hello_body, client_hello_record, groups_ext

    rec = client_hello_record(client_hello_body([0x1301], [groups_ext(29)]))
    syn = TcpPacket(1.0, "10.0.0.1", "10.0.0.2", 40000, 443, 999, 0, TCP_SYN, b"")
    data = TcpPacket(1.1, "10.0.0.1", "10.0.0.2", 40000, 443, 1000, 1, TCP_ACK, rec)
    return syn, data


def test_crafted_hello_is_found() -> None:
    syn, data = _hello_segment_packets()
    records, engine = run_engine(eth_frames([syn, data]))
    assert [(d["hello"], d["ja3"], d["index"]) for d in records] == [
        ("client", "771,4865,10,29,", 1)
    ]
    assert records[0]["ts"] == pytest.approx(1.1)
    assert (records[0]["src"], records[0]["sport"]) == ("10.0.0.1", 40000)
    assert engine.stats["hellos.client"] == 1


@pytest.mark.parametrize(
    ("flags_frag", "why"),
    [(0x2000, "more fragments, offset 0"), (0x0010, "offset 16, last fragment")],
)
def test_ipv4_fragments_are_counted_as_skipped(flags_frag: int, why: str) -> None:
    syn, data = _hello_segment_packets()
    seg = tcp(data.sport, data.dport, data.seq, data.ack, data.flags, data.payload)
    frag = ethernet(ipv4(data.src, data.dst, seg, flags_frag=flags_frag))
    records, engine = run_engine([*eth_frames([syn]), (1.1, 1, frag)])
    assert records == []
    assert engine.stats["skipped.ip_fragment"] == 1, why


def test_ipv6_fragment_is_counted_as_skipped() -> None:
    _syn, data = _hello_segment_packets()
    seg = tcp(data.sport, data.dport, data.seq, data.ack, data.flags, data.payload)
    # Fragment header (44): next header 6, reserved, offset 0 with M=1, identification.
    frag_hdr = bytes([6, 0, 0x00, 0x01]) + (7).to_bytes(4, "big")
    raw = bytearray(ipv6("fd00::1", "fd00::2", frag_hdr + seg))
    raw[6] = 44
    records, engine = run_engine([(1.0, 1, ethernet(bytes(raw)))])
    assert records == []
    assert engine.stats["skipped.ip_fragment"] == 1


def test_snaplen_truncated_packet_is_counted() -> None:
    syn, data = _hello_segment_packets()
    whole = eth_frames([data])[0][2]
    records, engine = run_engine([*eth_frames([syn]), (1.1, 1, whole[:-20])])
    assert records == []
    assert engine.stats["skipped.truncated_packet"] == 1


def test_unknown_linktype_is_counted() -> None:
    _syn, data = _hello_segment_packets()
    records, engine = run_engine([(1.0, 147, data.ip_packet())])
    assert records == [] and engine.stats["skipped.linktype_147"] == 1


def test_hello_after_rst_of_another_flow_and_port_reuse() -> None:
    # A RST forgets the flow; a new connection on the same 4-tuple starts fresh (index 1 again).
    syn, data = _hello_segment_packets()
    rst = data.with_(seq=data.seq + len(data.payload), flags=TCP_RST | TCP_ACK, payload=b"")
    syn2 = syn.with_(seq=5000, ts=2.0)
    data2 = data.with_(seq=5001, ts=2.1)
    records, _ = run_engine(eth_frames([syn, data, rst, syn2, data2]))
    assert [d["index"] for d in records] == [1, 1]


def test_ja3_fields_of_sightings_are_complete() -> None:
    syn, data = _hello_segment_packets()
    records, _ = run_engine(eth_frames([syn, data]))
    keys = {"ts", "src", "sport", "dst", "dport", "transport", "hello", "index", "sni", "alpn",
            "tls_version", "ja3", "ja3_hash", "ja3n", "ja3n_hash", "ja4", "ja4_r",
            "ja3_dovecot", "ja3_dovecot_hash"}  # fmt: skip
    assert keys <= set(records[0])
    assert records[0]["transport"] == "tcp"
