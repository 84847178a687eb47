"""Property tests: no byte sequence makes the core raise anything but its documented error.

- parse_client_hello / parse_server_hello: only HelloError, on arbitrary and mutated bytes;
- TlsStreamParser.feed: never raises, whatever the chunks;
- FingerprintEngine.feed_frame: never raises, on every link type;
- ``ja3svc pcap`` on a mutated or truncated real capture: exit 0 or 2, never a traceback, and
  every stdout line is JSON.
"""

from __future__ import annotations

import itertools
import json
import os
import tempfile

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ja3svc.dovecot import DEFAULT_PROFILE
from ja3svc.engine import FingerprintEngine
from ja3svc.hello import HelloError, parse_client_hello, parse_server_hello
from ja3svc.record import record_of
from ja3svc.tls_stream import TlsStreamParser
from tests.support.cli import run_cli
from tests.support.paths import PCAPS
from tests.support.pcap_builder import (
    alpn_ext,
    client_hello_body,
    ethernet,
    ext,
    groups_ext,
    handshake,
    ipv4,
    ipv6,
    point_formats_ext,
    record,
    server_hello_body,
    sig_algs_ext,
    sni_ext,
    tcp,
    versions_ext,
)

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

REAL_LIKE_HELLO = client_hello_body(
    [0x4A4A, 0x1301, 0x1302, 0x1303, 0xC02B, 0xC02F, 0xCCA9],
    [
        ext(0x0A0A),
        sni_ext("www.example.com"),
        ext(23),
        ext(0xFF01, b"\x00"),
        groups_ext(0x2A2A, 0x11EC, 29, 23, 24),
        point_formats_ext(0),
        ext(35),
        alpn_ext(b"h2", b"http/1.1"),
        sig_algs_ext(0x0403, 0x0804, 0x0401),
        versions_ext(0x3A3A, 0x0304, 0x0303),
        ext(51, b"\x00\x26\x00\x1d\x00\x20" + bytes(32)),
        ext(0xFAFA, b"\x00"),
    ],
    session_id=bytes(32),
)
REAL_LIKE_SERVER_HELLO = server_hello_body(0x1301, [ext(43, b"\x03\x04"), ext(51, bytes(36))])


def mutate(data: bytes, draw: st.DrawFn) -> bytes:
    """Flip, insert, delete or truncate a few bytes."""
    buf = bytearray(data)
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.sampled_from(["set", "insert", "delete", "truncate"]))
        i = draw(st.integers(0, max(len(buf) - 1, 0)))
        if op == "set" and buf:
            buf[i] = draw(st.integers(0, 255))
        elif op == "insert":
            buf[i:i] = draw(st.binary(min_size=1, max_size=4))
        elif op == "delete" and buf:
            del buf[i]
        elif op == "truncate":
            del buf[i:]
    return bytes(buf)


@st.composite
def mutated(draw: st.DrawFn, data: bytes) -> bytes:
    return mutate(data, draw)


def _parse_only_helloerror(body: bytes) -> None:
    for parse in (parse_client_hello, parse_server_hello):
        try:
            parse(body)
        except HelloError as exc:
            assert exc.reason in ("truncated", "odd_length")


@FUZZ
@given(st.binary(max_size=600))
def test_parsers_raise_only_helloerror_on_arbitrary_bytes(body: bytes) -> None:
    _parse_only_helloerror(body)


@FUZZ
@given(mutated(REAL_LIKE_HELLO))
def test_parsers_raise_only_helloerror_on_mutated_hellos(body: bytes) -> None:
    _parse_only_helloerror(body)
    try:
        hello = parse_client_hello(body)
    except HelloError:
        return
    # Whatever parsed must also fingerprint without raising.
    record = record_of(
        hello, ts=0.0, src="10.0.0.1", sport=1, dst="10.0.0.2", dport=2, transport="tcp",
        index=1, dovecot_profile=DEFAULT_PROFILE,
    )  # fmt: skip
    json.dumps(record.as_dict())


@FUZZ
@given(mutated(REAL_LIKE_SERVER_HELLO))
def test_server_hello_parser_on_mutated_server_hellos(body: bytes) -> None:
    _parse_only_helloerror(body)


STREAM = (
    b"a1 STARTTLS\r\n"
    + record(22, handshake(1, REAL_LIKE_HELLO))
    + record(20, b"\x01", 0x0303)
    + record(22, handshake(1, REAL_LIKE_HELLO), 0x0303)
    + record(23, bytes(40), 0x0303)
)


@st.composite
def chunked(draw: st.DrawFn, data: bytes) -> list[bytes]:
    cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=12)))
    edges = [0, *cuts, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(edges)]


@FUZZ
@given(st.lists(st.binary(max_size=200), max_size=12))
def test_tls_stream_never_raises_on_arbitrary_chunks(chunks: list[bytes]) -> None:
    p = TlsStreamParser()
    for c in chunks:
        for kind, value in p.feed(c):
            assert kind in (0, 1, 2)
            assert isinstance(value, str if kind == 0 else bytes)


@FUZZ
@given(st.data())
def test_tls_stream_never_raises_on_mutated_streams(data: st.DataObject) -> None:
    stream = data.draw(mutated(STREAM))
    p = TlsStreamParser()
    for c in data.draw(chunked(stream)):
        p.feed(c)


@FUZZ
@given(chunked(STREAM))
def test_tls_stream_chunking_does_not_change_the_result(chunks: list[bytes]) -> None:
    p = TlsStreamParser()
    got = [item for c in chunks for item in p.feed(c)]
    assert got == [(1, REAL_LIKE_HELLO), (1, REAL_LIKE_HELLO)]


LINKTYPES = [0, 1, 12, 14, 101, 108, 113, 228, 229, 276, 147]


def _template_frames() -> list[bytes]:
    rec = record(22, handshake(1, REAL_LIKE_HELLO))
    seg = tcp(40000, 443, 1000, 1, 0x18, rec)
    return [
        ethernet(ipv4("10.0.0.1", "10.0.0.2", seg)),
        ethernet(ipv6("fd00::1", "fd00::2", seg, ext=[(0, bytes(6))])),
        ethernet(ipv4("10.0.0.1", "10.0.0.2", tcp(1, 4789, 0, payload=b"")), vlans=(5, 6)),
    ]


TEMPLATES = _template_frames()


@FUZZ
@given(st.sampled_from(LINKTYPES), st.lists(st.binary(max_size=300), min_size=1, max_size=8))
def test_engine_never_raises_on_arbitrary_frames(linktype: int, frames: list[bytes]) -> None:
    engine = FingerprintEngine()
    for i, frame in enumerate(frames):
        for s in engine.feed_frame(float(i), linktype, frame, len(frame)):
            s.as_dict()
    engine.finish()


@FUZZ
@given(st.data())
def test_engine_never_raises_on_mutated_frames(data: st.DataObject) -> None:
    engine = FingerprintEngine()
    for i in range(data.draw(st.integers(1, 4))):
        template = data.draw(st.sampled_from(TEMPLATES))
        frame = data.draw(mutated(template))
        linktype = data.draw(st.sampled_from([1, 1, 1, *LINKTYPES]))
        if linktype in (12, 14, 101, 228, 229):
            frame = frame[14:]
        for s in engine.feed_frame(float(i), linktype, frame, len(frame)):
            json.dumps(s.as_dict())
    engine.finish()


# --- the whole CLI on damaged real captures --------------------------------------------------

CAPTURE_FILES = sorted(
    p for p in PCAPS.glob("*.pcap*") if p.suffix in (".pcap", ".pcapng")
) if PCAPS.is_dir() else []  # fmt: skip
SMALL = [p for p in CAPTURE_FILES if p.stat().st_size < 20_000][:8]


@pytest.mark.skipif(not SMALL, reason="no captures in tests/pcaps")
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_cli_on_mutated_or_truncated_capture(data: st.DataObject) -> None:
    path = data.draw(st.sampled_from(SMALL))
    raw = path.read_bytes()
    header_len = 24 if path.suffix == ".pcap" else 0
    body = raw[header_len:]
    if data.draw(st.booleans()):
        body = body[: data.draw(st.integers(0, len(body)))]
    else:
        body = data.draw(mutated(body))
    fd, name = tempfile.mkstemp(suffix=path.suffix)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(raw[:header_len] + body)
        status, out, err = run_cli("pcap", "--no-progress", name)
    finally:
        os.unlink(name)
    assert status in (0, 1, 2), err
    if path.suffix == ".pcap":
        assert status in (0, 2), err  # the file header is intact: always a capture
    assert "Traceback" not in err
    for line in out.splitlines():
        record_ = json.loads(line)
        assert record_["hello"] in ("client", "server")
