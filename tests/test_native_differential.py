"""The Rust engine against the pure-Python reference: identical records, counters and errors.

Both engines run over every capture in tests/pcaps and the FoxIO conformance captures, and over
captures Hypothesis generates (synthetic TLS flows over several link types, cut into segments,
reordered, duplicated) and mutates (bytes flipped, inserted, removed; files truncated). For
each, the JSON lines ``ja3svc pcap`` prints, the per-hello dicts of the other outputs, the
counters, flow-table figures, packets and bytes read, and damage / not-a-capture messages must
be equal. The Rust engine is also fed in chunks of random sizes, so every record and block
boundary falls across chunk ends somewhere.

The extension must be built (``pip install -e '.[dev]'`` with a Rust toolchain): a missing one
fails here rather than skipping.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import random
import re
import struct
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ja3svc.capture.capture_file import NotACaptureError
from ja3svc.capture.pcap_run import RunTotals, fingerprint_stream, fingerprint_stream_native

from ja3svc import _native
from ja3svc.dovecot import OPENSSL_PROFILES
from ja3svc.engine import FingerprintEngine
from ja3svc.flow_table import FlowTable
from ja3svc.record import HelloRecord
from tests.support import pcap_builder as pb
from tests.support.paths import FOXIO, PCAPS

_ENCODE = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


@dataclass
class Outcome:
    lines: list[str] = field(default_factory=list)
    records: list[dict[str, Any]] = field(default_factory=list)
    not_a_capture: str | None = None
    totals: RunTotals = field(default_factory=RunTotals)

    def comparable(self) -> dict[str, Any]:
        t = self.totals
        return {
            "not_a_capture": self.not_a_capture,
            "packets": t.packets,
            "bytes": t.bytes,
            "flows": t.flows,
            "hellos": t.hellos,
            "counters": {k: v for k, v in t.counters.items() if v},
            "damaged": t.damaged,
        }


class _Pieces(io.RawIOBase):
    """A stream whose reads return pieces of random sizes (a pipe, say)."""

    def __init__(self, data: bytes, seed: int) -> None:
        self._data = data
        self._pos = 0
        self._rng = random.Random(seed)

    def readable(self) -> bool:
        return True

    def read1(self, size: int = -1) -> bytes:
        n = min(size if size >= 0 else len(self._data), self._rng.choice((1, 7, 64, 1500, 1 << 16)))
        piece = self._data[self._pos : self._pos + n]
        self._pos += len(piece)
        return piece

    def readinto(self, b: Any) -> int:
        piece = self.read1(len(b))
        b[: len(piece)] = piece
        return len(piece)


# Flow-table size and idle timeout (the engines' defaults unless a test makes them small).
Table = tuple[int, float]
DEFAULT_TABLE: Table = (200_000, 300.0)


def run_python(data: bytes, profile: str = "openssl-3.0", table: Table = DEFAULT_TABLE) -> Outcome:
    out = Outcome()

    def sink(s: HelloRecord, frame: int) -> None:
        d = {"file": "cap", "frame": frame, **s.as_dict()}
        out.records.append(d)
        out.lines.append(_ENCODE(d) + "\n")

    try:
        engine = FingerprintEngine(FlowTable(*table), dovecot_profile=profile)
        fingerprint_stream(io.BytesIO(data), "cap", sink, out.totals, engine=engine)
    except NotACaptureError as exc:
        out.not_a_capture = str(exc)
    return out


def run_native(
    data: bytes,
    profile: str = "openssl-3.0",
    seed: int | None = None,
    table: Table = DEFAULT_TABLE,
) -> Outcome:
    """Twice: JSON lines (Rust reading the file), then dicts (fed by Python, in random pieces
    when ``seed`` is set)."""
    out = Outcome()
    text: list[str] = []
    with tempfile.NamedTemporaryFile() as tmp:
        tmp.write(data)
        tmp.flush()
        with open(tmp.name, "rb") as fh:  # Rust reads the file itself
            try:
                fingerprint_stream_native(
                    fh, "cap", out.totals, profile, write_json=text.append, path=tmp.name,
                    max_flows=table[0], idle_timeout=table[1],
                )  # fmt: skip
            except NotACaptureError as exc:
                out.not_a_capture = str(exc)
    out.lines = "".join(text).splitlines(keepends=True)
    again = RunTotals()
    stream = io.BytesIO(data) if seed is None else _Pieces(data, seed)
    try:
        fingerprint_stream_native(
            stream, "cap", again, profile, sink=out.records.append,
            max_flows=table[0], idle_timeout=table[1],
        )  # fmt: skip
    except NotACaptureError as exc:
        assert str(exc) == out.not_a_capture
    else:
        assert out.not_a_capture is None
    again.seconds = out.totals.seconds
    assert again == out.totals, "the same capture gave other totals when fed in pieces"
    return out


def assert_same(
    data: bytes,
    profile: str = "openssl-3.0",
    seed: int | None = None,
    table: Table = DEFAULT_TABLE,
) -> Outcome:
    ref = run_python(data, profile, table)
    if not _native.COMPLETE and (
        any(r["transport"] != "tcp" for r in ref.records)
        or any(k.startswith(("malformed.quic", "malformed.dtls")) for k in ref.totals.counters)
    ):
        pytest.skip("QUIC/DTLS are not in this build of the Rust engine yet")
    got = run_native(data, profile, seed, table)
    assert got.comparable() == ref.comparable()
    assert got.lines == ref.lines
    assert got.records == ref.records
    return ref


# --- real captures ---------------------------------------------------------------------------

_REAL = sorted(p for p in PCAPS.rglob("*") if p.suffix in (".pcap", ".pcapng"))
# QUIC and DTLS join the comparison when their port is in the crate (see ja3svc._native).
_UDP = {"quic", "dtls"}
if not _native.COMPLETE:
    _REAL = [p for p in _REAL if not _UDP & set(p.relative_to(PCAPS).parts)]
_FOXIO = sorted((FOXIO / "pcap").glob("*")) if (FOXIO / "pcap").is_dir() else []


def test_the_capture_sets_are_there() -> None:
    assert len(_REAL) >= (39 if _native.COMPLETE else 30)
    assert _FOXIO, f"FoxIO conformance captures missing: {FOXIO / 'pcap'}"


@pytest.mark.parametrize("path", _REAL, ids=lambda p: str(p.relative_to(PCAPS)))
def test_golden_capture(path: Path) -> None:
    ref = assert_same(path.read_bytes(), seed=len(path.name))
    assert ref.lines or "quic" in path.parts or ref.totals.counters, "a capture with no outcome"


@pytest.mark.parametrize("path", _FOXIO, ids=lambda p: p.name)
def test_foxio_capture(path: Path) -> None:
    assert_same(path.read_bytes(), seed=7)


@pytest.mark.parametrize("profile", sorted(OPENSSL_PROFILES))
def test_dovecot_profiles(profile: str) -> None:
    for path in _REAL[:10]:
        assert_same(path.read_bytes(), profile)


# --- generated captures ----------------------------------------------------------------------

_SMALL = [p.read_bytes() for p in _REAL if p.stat().st_size < 40_000]


def _hello(draw: st.DrawFn) -> bytes:
    grease = st.sampled_from([0x0A0A, 0x1A1A, 0xFAFA])
    code = st.integers(0, 0xFFFF) | grease
    ciphers = draw(st.lists(code, max_size=6))
    exts = [
        pb.sni_ext(draw(st.text(st.characters(min_codepoint=1, max_codepoint=300), max_size=8))),
        pb.groups_ext(*draw(st.lists(code, max_size=4))),
        pb.point_formats_ext(*draw(st.lists(st.integers(0, 255), max_size=3))),
        pb.sig_algs_ext(*draw(st.lists(code, max_size=4))),
        pb.alpn_ext(*draw(st.lists(st.binary(max_size=4), max_size=3))),
        pb.versions_ext(*draw(st.lists(code, max_size=3))),
        pb.ext(draw(code), draw(st.binary(max_size=6))),
    ]
    chosen = draw(st.lists(st.sampled_from(exts), max_size=8))
    if draw(st.booleans()):
        body = pb.client_hello_body(ciphers, chosen)
        return pb.handshake(1, body)
    random_bytes = draw(
        st.sampled_from(
            [
                bytes(32),
                bytes.fromhex("cf21ad74e59a6111be1d8c021e65b891c2a211167abb8c5e079e09e2c8a8339c"),
            ]
        )
    )
    body = pb.server_hello_body(draw(code), chosen, random=random_bytes)
    return pb.handshake(2, body)


@st.composite
def generated_capture(draw: st.DrawFn) -> tuple[bytes, int]:
    """A few TCP flows carrying TLS hellos (maybe after STARTTLS plaintext, maybe split into
    several records), cut into segments, some of them reordered, duplicated or lost."""
    frames: list[tuple[float, bytes]] = []
    link = draw(st.sampled_from(["eth", "vlan", "sll", "sll2", "raw", "null"]))
    linktype = {"eth": 1, "vlan": 1, "sll": 113, "sll2": 276, "raw": 101, "null": 0}[link]
    ts = 1_700_000_000.0
    for flow in range(draw(st.integers(1, 3))):
        v6 = draw(st.booleans())
        client = f"fd00::{flow + 1}" if v6 else f"10.0.0.{flow + 1}"
        server = "fd00::ff" if v6 else "10.0.1.1"
        sport, dport = 40000 + flow, draw(st.sampled_from([443, 143, 993]))
        for direction in range(draw(st.integers(1, 2))):
            payload = draw(st.sampled_from([b"", b"* OK ready\r\n", b"garbage"]))
            if draw(st.booleans()):
                # IMAP before STARTTLS: a literal holding a hello record (plaintext), its
                # announced size drawn so it may end inside the record or run past it.
                fake = pb.record(22, _hello(draw))
                size = draw(st.integers(0, len(fake) + 8) | st.just(len(fake)))
                announce = draw(st.sampled_from([b"}\r\n", b"+}\r\n", b"-}\r\n", b"}\n"]))
                payload += b'a1 ID ("x" {%d' % size + announce + fake + b")\r\na2 STARTTLS\r\n"
            for _ in range(draw(st.integers(1, 2))):
                msg = _hello(draw)
                if draw(st.booleans()):
                    cut = draw(st.integers(1, len(msg)))
                    payload += (
                        pb.record(22, msg[:cut]) + pb.record(22, msg[cut:])
                        if cut < len(msg)
                        else pb.record(22, msg)
                    )
                else:
                    payload += pb.record(22, msg)
            if draw(st.booleans()):
                payload += pb.record(23, b"secret")
            src, dst, sp, dp = (
                (client, server, sport, dport) if direction == 0 else (server, client, dport, sport)
            )
            isn = draw(st.integers(0, 0xFFFFFFFF))
            segments: list[tuple[int, int, bytes]] = []
            if draw(st.booleans()):
                segments.append((isn, pb.TCP_SYN, b""))
            pos = 0
            while pos < len(payload):
                size = draw(st.integers(1, 600))
                segments.append((isn + 1 + pos, pb.TCP_ACK | pb.TCP_PSH, payload[pos : pos + size]))
                pos += size
            if draw(st.booleans()):
                segments.append((isn + 1 + pos, pb.TCP_FIN | pb.TCP_ACK, b""))
            segments = draw(st.permutations(segments)) if draw(st.booleans()) else segments
            if segments and draw(st.booleans()):
                segments.append(draw(st.sampled_from(segments)))
            for seq, flags, data in segments:
                l4 = pb.tcp(sp, dp, seq, 1, flags, data)
                ip = pb.ipv6(src, dst, l4) if v6 else pb.ipv4(src, dst, l4)
                frame = {
                    "eth": lambda ip=ip: pb.ethernet(ip),
                    "vlan": lambda ip=ip: pb.ethernet(ip, vlans=(5, 6), qinq=True),
                    "sll": lambda ip=ip: pb.sll(ip),
                    "sll2": lambda ip=ip: pb.sll2(ip),
                    "raw": lambda ip=ip: ip,
                    "null": lambda ip=ip: pb.null_loop(ip, "little"),
                }[link]()
                ts += draw(st.sampled_from([0.000001, 0.5, 11.0, 400.0]))
                frames.append((ts, frame))
    return pb.pcap_bytes(frames, linktype), draw(st.integers(0, 1000))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(generated_capture())
def test_generated_captures(case: tuple[bytes, int]) -> None:
    data, seed = case
    assert_same(data, seed=seed)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(generated_capture(), st.integers(1, 3), st.sampled_from([5.0, 20.0, 300.0]))
def test_generated_captures_small_flow_table(
    case: tuple[bytes, int], max_flows: int, idle_timeout: float
) -> None:
    """Eviction of the oldest flow when the table is full, and idle expiry, as in Python."""
    data, seed = case
    assert_same(data, seed=seed, table=(max_flows, idle_timeout))


@st.composite
def literal_dialogue_capture(draw: st.DrawFn) -> tuple[bytes, int]:
    """One IMAP flow before STARTTLS whose commands carry literals, announced well or badly
    (any size, leading zeros, a sign or not, CR or not, junk after the "}"), some holding
    hello records or newlines; then STARTTLS and a hello; all in small in-order segments, so
    that announcements and literals are cut everywhere."""
    payload = b"a0 CAPABILITY\r\n"
    for _ in range(draw(st.integers(1, 4))):
        fake = pb.record(22, _hello(draw))
        literal = draw(st.sampled_from([fake, b"x\r\n" + fake, b"{5}\r\n", b""]))
        size = draw(st.just(len(literal)) | st.integers(0, len(literal) + 40))
        digits = b"0" * draw(st.integers(0, 3)) + b"%d" % size
        announce = (
            b"{"
            + draw(st.sampled_from([digits, b"", b"+" + digits, digits * 8]))
            + draw(st.sampled_from([b"", b"+", b"-"]))
            + b"}"
            + draw(st.sampled_from([b"\r\n", b"\n", b"x\r\n", b"\r"]))
        )
        payload += b'a1 ID ("x" ' + announce + literal + b")\r\n"
    payload += b"a2 STARTTLS\r\n" + pb.record(22, _hello(draw))
    isn = draw(st.integers(0, 0xFFFFFFFF))
    frames, pos, ts = [], 0, 1_700_000_000.0
    while pos < len(payload):
        size = draw(st.integers(1, 12))
        l4 = pb.tcp(
            40000, 143, isn + 1 + pos, 1, pb.TCP_ACK | pb.TCP_PSH, payload[pos : pos + size]
        )
        frames.append((ts, pb.ethernet(pb.ipv4("10.0.0.1", "10.0.1.1", l4))))
        pos += size
        ts += 0.001
    return pb.pcap_bytes(frames, 1), draw(st.integers(0, 1000))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(literal_dialogue_capture())
def test_literal_dialogues_in_small_segments(case: tuple[bytes, int]) -> None:
    data, seed = case
    assert_same(data, seed=seed)


@st.composite
def mutated_capture(draw: st.DrawFn) -> tuple[bytes, int]:
    data = bytearray(draw(st.sampled_from(_SMALL)))
    for _ in range(draw(st.integers(1, 12))):
        kind = draw(st.sampled_from(["flip", "flip", "flip", "insert", "delete", "truncate"]))
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        if kind == "flip" and data:
            data[at] = draw(st.integers(0, 255))
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif kind == "delete":
            del data[at : at + draw(st.integers(1, 8))]
        elif kind == "truncate":
            del data[at:]
    return bytes(data), draw(st.integers(0, 1000))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_capture())
def test_mutated_captures(case: tuple[bytes, int]) -> None:
    data, seed = case
    assert_same(data, seed=seed)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=64))
def test_junk_and_short_inputs(data: bytes) -> None:
    for head in (b"", b"\xd4\xc3\xb2\xa1", b"\x0a\x0d\x0d\x0a", b"\x1f\x8b"):
        assert_same(head + data)


def test_gzip_compressed_captures() -> None:
    """Read through in Python for both engines; a cut-off gzip stream is damage after the
    packets before it, counted in decompressed bytes."""
    data = gzip.compress((PCAPS / "curl-https.pcap").read_bytes())
    ref = assert_same(data)
    assert len(ref.lines) == 4
    for cut in (10, 200, len(data) // 2, len(data) - 9):
        assert_same(data[:cut])
    assert_same(gzip.compress(b"not a capture"))
    assert_same(gzip.compress(b""))


def test_header_fields_mutated_one_at_a_time() -> None:
    """Every byte of a pcapng's first blocks and of a pcap's headers, set to a few values."""
    for path in (PCAPS / "dumpcap.pcapng", PCAPS / "openssl-tls12-bigendian.pcap"):
        data = path.read_bytes()
        for at in range(0, 140):
            for value in (0x00, 0x01, 0x7F, 0x80, 0xFF):
                mutated = data[:at] + bytes([value]) + data[at + 1 :]
                assert_same(mutated)


def test_pcapng_nanosecond_and_offset_timestamps() -> None:
    """if_tsresol 10^-9 and 2^-20 with an if_tsoffset: the timestamps, rounded once, agree."""

    def block(btype: int, body: bytes) -> bytes:
        n = 12 + len(body)
        return struct.pack("<II", btype, n) + body + struct.pack("<I", n)

    frame = pb.ethernet(
        pb.ipv4(
            "10.0.0.1",
            "10.0.0.2",
            pb.tcp(
                1000,
                443,
                5,
                1,
                pb.TCP_ACK,
                pb.client_hello_record(pb.client_hello_body([0x1301], [pb.sni_ext("x")])),
            ),
        )
    )
    out = block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1))
    for resol in (9, 0x80 | 20, 0, 19):
        options = struct.pack("<HHB3x", 9, 1, resol) + struct.pack("<HHq", 14, 8, 1234)
        out += block(1, struct.pack("<HHI", 1, 0, 0) + options + struct.pack("<HH", 0, 0))
    for iface in range(4):
        count = 1_700_000_000_123_456_789 + iface
        body = struct.pack("<IIIII", iface, count >> 32, count & 0xFFFFFFFF, len(frame), len(frame))
        out += block(6, body + frame + b"\x00" * (-len(frame) % 4))
    ref = assert_same(out)
    assert len(ref.lines) == 1  # one flow: the same hello four times is one hello


@st.composite
def generated_pcapng(draw: st.DrawFn) -> tuple[bytes, int]:
    """Sections in either byte order whose interfaces set if_tsresol, if_tsoffset, if_fcslen and
    a snaplen, with hellos in Enhanced, obsolete and Simple Packet Blocks (FCS trailers, snaplen
    cuts, interface numbers that were never declared), maybe cut off anywhere."""
    out = b""
    packet = 0
    for _section in range(draw(st.integers(1, 2))):
        order = draw(st.sampled_from("<>"))

        def block(btype: int, body: bytes, order: str = order) -> bytes:
            body += b"\x00" * (-len(body) % 4)
            n = 12 + len(body)
            return struct.pack(order + "II", btype, n) + body + struct.pack(order + "I", n)

        out += block(0x0A0D0D0A, struct.pack(order + "IHHq", 0x1A2B3C4D, 1, 0, -1))
        fcs_of: list[int] = []
        for _ in range(draw(st.integers(0, 3))):
            options = b""
            if draw(st.booleans()):
                resol = draw(st.sampled_from([0, 6, 9, 0x80 | 20]))
                options += struct.pack(order + "HHB3x", 9, 1, resol)
            if draw(st.booleans()):
                shift = draw(st.integers(-5_000, 5_000))
                options += struct.pack(order + "HHq", 14, 8, shift)
            fcs = draw(st.sampled_from([0, 0, 4, 32]))  # 32 is bits: 4 bytes
            if fcs:
                options += struct.pack(order + "HHB3x", 13, 1, fcs)
            fcs_of.append(fcs // 8 if fcs >= 8 else fcs)
            snaplen = draw(st.sampled_from([0, 0, 60, 262144]))
            out += block(1, struct.pack(order + "HHI", 1, 0, snaplen) + options)
        for _ in range(draw(st.integers(0, 5))):
            packet += 1
            msg = pb.client_hello_record(pb.client_hello_body([0x1301], [pb.sni_ext(f"h{packet}")]))
            l4 = pb.tcp(40000 + packet, 443, 1, 1, pb.TCP_ACK | pb.TCP_PSH, msg)
            frame = pb.ethernet(pb.ipv4("10.0.0.1", "10.0.1.1", l4))
            kind = draw(st.sampled_from(["epb", "epb", "pb", "spb"]))
            # Now and then an interface number the section never declared.
            undeclared = not fcs_of or draw(st.integers(0, 7)) == 0
            iface = len(fcs_of) if undeclared else draw(st.integers(0, len(fcs_of) - 1))
            if iface < len(fcs_of) and fcs_of[iface]:
                frame += draw(st.binary(min_size=4, max_size=4))
            orig = len(frame) + draw(st.sampled_from([0, 0, 100]))
            caplen = len(frame) - draw(st.sampled_from([0, 0, 2, 30]))
            count = draw(st.integers(0, 1 << 62))
            if kind == "spb":
                out += block(3, struct.pack(order + "I", orig) + frame)
                continue
            head = (
                struct.pack(order + "I", iface)
                if kind == "epb"
                else struct.pack(order + "HH", iface, draw(st.integers(0, 9)))
            )
            claimed = caplen + draw(st.sampled_from([0] * 7 + [5]))  # 5: more than the block
            times = struct.pack(order + "IIII", count >> 32, count & 0xFFFFFFFF, claimed, orig)
            out += block(6 if kind == "epb" else 2, head + times + frame[:caplen])
    if draw(st.booleans()):
        out = out[: draw(st.integers(0, len(out)))]
    return out, draw(st.integers(0, 1000))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(generated_pcapng())
def test_generated_pcapng_block_kinds(case: tuple[bytes, int]) -> None:
    data, seed = case
    assert_same(data, seed=seed)


@pytest.mark.parametrize("name", ["openssl-tls12-bigendian.pcap", "dumpcap.pcapng"])
def test_cut_at_every_offset(name: str) -> None:
    """Every end inside a file header, record or block header, and record or block body."""
    data = (PCAPS / name).read_bytes()[:1200]
    for cut in range(len(data) + 1):
        assert_same(data[:cut], seed=cut)


def test_totals_add_up_over_captures_and_time_each_one_read() -> None:
    """Over a whole capture, a damaged one, one cut inside its file header and one refused as
    not a capture, both engines sum the same totals; each capture read adds its time, the
    refused one nothing."""
    good = (PCAPS / "openssl-tls13.pcap").read_bytes()
    inputs = [good, good[:-30], good[:10], b"not a capture, a line of text", good]

    def python(data: bytes, totals: RunTotals) -> None:
        fingerprint_stream(io.BytesIO(data), "cap", lambda _r, _f: None, totals)

    def native(data: bytes, totals: RunTotals) -> None:
        fingerprint_stream_native(io.BytesIO(data), "cap", totals, "openssl-3.0")

    sums = []
    for run in (python, native):
        totals = RunTotals()
        for data in inputs:
            before = totals.seconds
            try:
                run(data, totals)
            except NotACaptureError:
                assert totals.seconds == before
            else:
                assert totals.seconds > before
        totals.seconds = 0.0
        sums.append(totals)
    assert sums[0] == sums[1]
    each = [run_python(data).totals for data in inputs]
    for name in ("packets", "bytes", "flows", "hellos"):
        assert getattr(sums[0], name) == sum(getattr(t, name) for t in each) > 0
    assert len(sums[0].damaged) == 2  # the file header and the last record cut short


# --- the command line ------------------------------------------------------------------------


def _cli(*args: str, env: dict[str, str] | None = None, pre: str = "") -> tuple[int, str, str]:
    code = f"import sys; {pre}from ja3svc.cli.main import main; sys.exit(main({list(args)!r}))"
    res = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
        env={**os.environ, **(env or {})},
    )  # fmt: skip
    return res.returncode, res.stdout, res.stderr


def _totals_line(stderr: str) -> str:
    return re.sub(r"[0-9.]+s  [0-9,]+ packets/s", "", stderr)


@pytest.mark.parametrize("fmt", ["json", "csv", "table"])
def test_cli_engines_print_the_same(fmt: str) -> None:
    files = [str(PCAPS / "openssl-hrr.pcap"), str(PCAPS / "dumpcap.pcapng"),
             str(PCAPS / "dovecot-starttls-imap.pcap")]  # fmt: skip
    py = _cli("pcap", "--format", fmt, "--engine", "python", *files)
    rs = _cli("pcap", "--format", fmt, "--engine", "native", *files)
    assert py[0] == rs[0] == 0
    assert py[1] == rs[1] and py[1].count("\n") >= 6
    assert _totals_line(py[2]) == _totals_line(rs[2])


def test_cli_engine_from_the_environment_and_damage() -> None:
    cut = PCAPS / "openssl-tls13.pcap"
    with tempfile.TemporaryDirectory() as tmp:
        damaged = Path(tmp) / "cut.pcap"
        damaged.write_bytes(cut.read_bytes()[:-30])
        py = _cli("pcap", str(damaged), env={"JA3SVC_ENGINE": "python"})
        rs = _cli("pcap", str(damaged), env={"JA3SVC_ENGINE": "native"})
    assert py[0] == rs[0] == 2
    assert py[1] == rs[1]
    assert "capture damaged at byte offset" in rs[2]
    assert _totals_line(py[2]) == _totals_line(rs[2])


def test_cli_without_the_extension_says_so_once() -> None:
    pre = "sys.modules['ja3svc._native'] = None; "  # makes `from ja3svc import _native` fail
    code, out, err = _cli("pcap", str(PCAPS / "openssl-tls13.pcap"), pre=pre)
    assert code == 0 and out.count("\n") == 2
    notes = [line for line in err.splitlines() if "Rust engine" in line]
    assert notes == [
        "ja3svc pcap: the Rust engine is not built in this install (no Rust toolchain at "
        "install time); using the slower pure-Python engine"
    ]
    code, out, err = _cli("pcap", "--engine", "native", str(PCAPS / "openssl-tls13.pcap"), pre=pre)
    assert code == 1 and out == "" and "the Rust engine is not built" in err
