"""Live capture's engines on ring blocks: the Rust engine reading a whole TPACKET_V3 block in
one call against the Python reference reading the same block packet by packet.

The blocks are laid out as the kernel writes them (<linux/if_packet.h>: tpacket_block_desc,
then tpacket3_hdr + sockaddr_ll + frame per packet, each 16-byte aligned), built here from the
packets of the real captures in tests/pcaps, with a snap length that cuts some of them. Both
engines must report the same hellos, counters, flow figures and per-interface counts; the
hellos themselves are checked against tshark by the capture tests (test_live_capture.py).
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import pytest
from ja3svc.capture.capture_file import open_capture
from ja3svc.capture.live_engine import LiveEngine, NativeLiveEngine, PythonLiveEngine
from ja3svc.capture.live_source import InterfaceStats, RingBlock
from ja3svc.capture.pcap_run import native_module

from ja3svc.dovecot import DEFAULT_PROFILE
from ja3svc.engine import FingerprintEngine
from ja3svc.flow_table import FlowTable
from tests.support.paths import PCAPS

if native_module() is None:
    pytest.fail("ja3svc._native is not built: pip install -e .", pytrace=False)

BLOCK_HEADER = 48  # tpacket_block_desc rounded up, where the kernel puts the first packet
MAC_OFFSET = 80  # tpacket3_hdr (48, aligned) + sockaddr_ll (20), aligned to 16
Packet = tuple[float, int, bytes, int]


def _align(n: int) -> int:
    return (n + 15) & ~15


def ring_blocks(packets: list[Packet], block_size: int, snaplen: int) -> list[bytes]:
    """The packets (one link type) as the kernel would fill blocks of ``block_size``."""
    blocks: list[bytes] = []
    current: list[bytes] = []
    used = BLOCK_HEADER

    def close() -> None:
        if not current:
            return
        body = bytearray(b"".join(current))
        # The last packet's tp_next_offset is 0.
        last = len(body) - len(current[-1])
        struct.pack_into("=I", body, last, 0)
        desc = struct.pack("=IIIIII", 1, 0, 1, len(current), BLOCK_HEADER, BLOCK_HEADER + len(body))
        blocks.append(desc.ljust(BLOCK_HEADER, b"\0") + bytes(body))

    for ts, _linktype, frame, wire in packets:
        kept = frame[:snaplen]
        size = _align(MAC_OFFSET + len(kept))
        if used + size > block_size:
            close()
            current, used = [], BLOCK_HEADER
        sec = int(ts)
        nsec = round((ts - sec) * 1e9)
        if nsec >= 1_000_000_000:
            sec, nsec = sec + 1, nsec - 1_000_000_000
        hdr = struct.pack("=IIIIIIHH", size, sec, nsec, len(kept), wire, 1, MAC_OFFSET, 0)
        current.append(
            hdr.ljust(MAC_OFFSET, b"\0") + kept + b"\0" * (size - MAC_OFFSET - len(kept))
        )
        used += size
    close()
    return blocks


def _packets(path: Path) -> list[Packet]:
    with path.open("rb") as fh:
        return list(open_capture(fh, path.name))


def _engines() -> tuple[LiveEngine, LiveEngine]:
    native = NativeLiveEngine(DEFAULT_PROFILE, 1000, 300.0)
    python = PythonLiveEngine(
        FingerprintEngine(FlowTable(1000, 300.0), dovecot_profile=DEFAULT_PROFILE)
    )
    return native, python


def _run(engine: LiveEngine, blocks: list[bytes], linktype: int) -> tuple[Any, ...]:
    stats = InterfaceStats("test0", linktype)
    records = []
    for data in blocks:
        records += [r.as_dict() for r in engine.feed(RingBlock(data, linktype, stats))]
    records += [r.as_dict() for r in engine.finish()]
    return records, engine.figures(), (stats.packets, stats.bytes, stats.truncated), engine.errors


CAPTURES = sorted(p for p in PCAPS.glob("*.pcap") if p.stat().st_size < 4 << 20)


def test_there_are_captures() -> None:
    assert len(CAPTURES) >= 20


@pytest.mark.parametrize("path", CAPTURES, ids=lambda p: p.name)
@pytest.mark.parametrize("snaplen", [65535, 200])
def test_both_engines_read_ring_blocks_alike(path: Path, snaplen: int) -> None:
    packets = _packets(path)
    linktypes = {p[1] for p in packets}
    if len(linktypes) != 1:
        pytest.skip("a ring carries one link type")
    (linktype,) = linktypes
    blocks = ring_blocks(packets, 1 << 14, snaplen)
    native, python = _engines()
    got, ref = _run(native, blocks, linktype), _run(python, blocks, linktype)
    assert got == ref
    records, figures, (count, wire, truncated), errors = got
    assert count == len(packets) and wire == sum(p[3] for p in packets)
    assert truncated == sum(1 for p in packets if p[3] > snaplen)
    assert errors == 0
    if snaplen == 65535:  # every hello the file holds, found from its ring blocks
        assert len(records) == figures["hellos"] + figures["server_hellos"] > 0


def test_recv_batches_alike() -> None:
    packets = _packets(PCAPS / "openssl-hrr.pcap")
    native, python = _engines()
    got = [r.as_dict() for r in native.feed(packets)] + [r.as_dict() for r in native.finish()]
    ref = [r.as_dict() for r in python.feed(packets)] + [r.as_dict() for r in python.finish()]
    assert got == ref and len(got) >= 2
    assert native.figures() == python.figures()


def test_a_block_with_a_broken_layout_is_counted_not_fatal() -> None:
    packets = _packets(PCAPS / "openssl-tls13.pcap")
    (block,) = ring_blocks(packets, 1 << 20, 65535)
    # Claim more packets than the block holds, and cut the last one's bytes short.
    broken = bytearray(block[: len(block) - 40])
    struct.pack_into("=I", broken, 12, len(packets) + 5)
    native, _python = _engines()
    stats = InterfaceStats("test0", packets[0][1])
    native.feed(RingBlock(bytes(broken), packets[0][1], stats))
    assert native.errors == 1
    assert 0 < stats.packets < len(packets)


def no_extension(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make this process look like an install without ja3svc._native."""
    from ja3svc.capture import live_engine, pcap_run

    monkeypatch.setattr(pcap_run, "native_module", lambda: None)
    monkeypatch.setattr(live_engine, "native_module", lambda: None)


def test_engine_choice_follows_pcap(monkeypatch: pytest.MonkeyPatch) -> None:
    from ja3svc.capture.live_engine import live_engine

    monkeypatch.delenv("JA3SVC_ENGINE", raising=False)
    assert live_engine(DEFAULT_PROFILE, 10, 1.0).name == "native"
    monkeypatch.setenv("JA3SVC_ENGINE", "python")
    assert live_engine(DEFAULT_PROFILE, 10, 1.0).name == "python"


def test_without_the_extension_python_or_one_clear_error(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from ja3svc.capture.live_engine import EngineUnavailable, live_engine

    no_extension(monkeypatch)
    monkeypatch.delenv("JA3SVC_ENGINE", raising=False)
    caplog.set_level("WARNING", logger="ja3svc.capture")
    assert live_engine(DEFAULT_PROFILE, 10, 1.0).name == "python"
    assert any("Rust engine is not built" in r.getMessage() for r in caplog.records)
    monkeypatch.setenv("JA3SVC_ENGINE", "native")
    with pytest.raises(EngineUnavailable, match="not built"):
        live_engine(DEFAULT_PROFILE, 10, 1.0)
