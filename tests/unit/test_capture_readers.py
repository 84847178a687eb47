"""Tests of the capture file readers (capture.capture_file, pcap_format, pcapng_format).

Fixtures are hex written field by field, so a reader can see which byte means what. Expected
values come from the field values in the fixtures (and, for real captures, from tshark), never
from a run of the reader itself.
"""

from __future__ import annotations

import io
import os
import struct
import threading
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ja3svc.capture import capture_file
from ja3svc.capture.capture_file import (
    CaptureDamagedError,
    CaptureError,
    CaptureReader,
    NotACaptureError,
    open_capture,
)


def hexb(annotated: str) -> bytes:
    """Bytes from hex text where everything after '#' on a line is a comment."""
    return bytes.fromhex("".join(line.split("#", 1)[0] for line in annotated.splitlines()))


def read_all(data: bytes) -> list[tuple[float, int, bytes, int]]:
    return list(open_capture(io.BytesIO(data), "fixture"))


def read_until_error(data: bytes) -> tuple[list[tuple[float, int, bytes, int]], Exception | None]:
    """Packets yielded before the reader stopped, and the error it stopped with (if any)."""
    packets: list[tuple[float, int, bytes, int]] = []
    try:
        for packet in open_capture(io.BytesIO(data), "fixture"):
            packets.append(packet)
    except CaptureError as exc:
        return packets, exc
    return packets, None


# --------------------------------------------------------------------------------------------
# Classic pcap fixtures: the same two packets in both byte orders and both resolutions.

PCAP_LE_MICRO = hexb("""
    d4 c3 b2 a1   # magic 0xa1b2c3d4 written little-endian: microsecond timestamps
    02 00         # version_major 2
    04 00         # version_minor 4
    00 00 00 00   # thiszone
    00 00 00 00   # sigfigs
    ff ff 00 00   # snaplen 65535
    01 00 00 00   # linktype 1 (Ethernet), no FCS bits
    # record 1, offset 24
    00 f1 53 65   # ts_sec 1700000000
    20 a1 07 00   # ts_usec 500000
    04 00 00 00   # incl_len 4
    3c 00 00 00   # orig_len 60 (the capture kept only 4 bytes)
    de ad be ef   # frame
    # record 2, offset 44
    01 f1 53 65   # ts_sec 1700000001
    40 e2 01 00   # ts_usec 123456
    06 00 00 00   # incl_len 6
    06 00 00 00   # orig_len 6
    01 02 03 04 05 06  # frame
""")  # 66 bytes

PCAP_BE_MICRO = hexb("""
    a1 b2 c3 d4   # magic 0xa1b2c3d4 written big-endian: microsecond timestamps
    00 02         # version_major 2
    00 04         # version_minor 4
    00 00 00 00   # thiszone
    00 00 00 00   # sigfigs
    00 00 ff ff   # snaplen 65535
    00 00 00 01   # linktype 1 (Ethernet)
    # record 1, offset 24
    65 53 f1 00   # ts_sec 1700000000
    00 07 a1 20   # ts_usec 500000
    00 00 00 04   # incl_len 4
    00 00 00 3c   # orig_len 60
    de ad be ef   # frame
    # record 2, offset 44
    65 53 f1 01   # ts_sec 1700000001
    00 01 e2 40   # ts_usec 123456
    00 00 00 06   # incl_len 6
    00 00 00 06   # orig_len 6
    01 02 03 04 05 06  # frame
""")

PCAP_LE_NANO = hexb("""
    4d 3c b2 a1   # magic 0xa1b23c4d written little-endian: nanosecond timestamps
    02 00 04 00   # version 2.4
    00 00 00 00   # thiszone
    00 00 00 00   # sigfigs
    ff ff 00 00   # snaplen 65535
    71 00 00 00   # linktype 113 (Linux cooked SLL)
    # record 1, offset 24
    00 f1 53 65   # ts_sec 1700000000
    80 b2 e6 0e   # ts_nsec 250000000
    04 00 00 00   # incl_len 4
    04 00 00 00   # orig_len 4
    de ad be ef   # frame
    # record 2, offset 44
    01 f1 53 65   # ts_sec 1700000001
    15 cd 5b 07   # ts_nsec 123456789
    02 00 00 00   # incl_len 2
    02 00 00 00   # orig_len 2
    ab cd         # frame
""")

PCAP_BE_NANO = hexb("""
    a1 b2 3c 4d   # magic 0xa1b23c4d written big-endian: nanosecond timestamps
    00 02 00 04   # version 2.4
    00 00 00 00   # thiszone
    00 00 00 00   # sigfigs
    00 00 ff ff   # snaplen 65535
    00 00 00 71   # linktype 113 (Linux cooked SLL)
    # record 1, offset 24
    65 53 f1 00   # ts_sec 1700000000
    0e e6 b2 80   # ts_nsec 250000000
    00 00 00 04   # incl_len 4
    00 00 00 04   # orig_len 4
    de ad be ef   # frame
    # record 2, offset 44
    65 53 f1 01   # ts_sec 1700000001
    07 5b cd 15   # ts_nsec 123456789
    00 00 00 02   # incl_len 2
    00 00 00 02   # orig_len 2
    ab cd         # frame
""")

PCAP_FCS = hexb("""
    d4 c3 b2 a1   # magic, little-endian, microseconds
    02 00 04 00   # version 2.4
    00 00 00 00   # thiszone
    00 00 00 00   # sigfigs
    ff ff 00 00   # snaplen 65535
    01 00 00 24   # linktype field 0x24000001: type 1, bit 26 "FCS length known",
                  #   bits 28-31 = 2 sixteen-bit words, i.e. a 4-byte FCS on every frame
    # record 1: whole frame captured, FCS included
    00 f1 53 65   # ts_sec 1700000000
    00 00 00 00   # ts_usec 0
    08 00 00 00   # incl_len 8
    08 00 00 00   # orig_len 8
    01 02 03 04   # frame
    f1 f2 f3 f4   # FCS
    # record 2: snaplen cut the frame before its FCS
    00 f1 53 65   # ts_sec 1700000000
    00 00 00 00   # ts_usec 0
    02 00 00 00   # incl_len 2
    0a 00 00 00   # orig_len 10 (6 of frame + 4 of FCS on the wire)
    05 06         # frame
""")


def test_pcap_little_endian_microseconds() -> None:
    packets = read_all(PCAP_LE_MICRO)
    assert packets == [
        (1700000000.5, 1, bytes.fromhex("deadbeef"), 60),
        (pytest.approx(1700000001.123456, abs=1e-7), 1, bytes.fromhex("010203040506"), 6),
    ]
    assert packets[1][0] == 1700000001 + 123456 / 1_000_000


def test_pcap_big_endian_gives_the_same_packets() -> None:
    assert read_all(PCAP_BE_MICRO) == read_all(PCAP_LE_MICRO)


@pytest.mark.parametrize("data", [PCAP_LE_NANO, PCAP_BE_NANO], ids=["le", "be"])
def test_pcap_nanoseconds(data: bytes) -> None:
    packets = read_all(data)
    assert packets[0] == (1700000000.25, 113, bytes.fromhex("deadbeef"), 4)
    assert packets[1][0] == 1700000001 + 123456789 / 1_000_000_000
    assert packets[1][1:] == (113, b"\xab\xcd", 2)
    # Read as microseconds, the same field would be 123.456789 s: the magic decides.
    assert packets[1][0] - 1700000001 < 0.2


def test_pcap_fcs_bits_strip_the_fcs_and_keep_the_link_type() -> None:
    packets = read_all(PCAP_FCS)
    assert [(p[1], p[2], p[3]) for p in packets] == [
        (1, bytes.fromhex("01020304"), 4),
        (1, bytes.fromhex("0506"), 6),  # nothing of the FCS was captured, nothing to cut
    ]


def test_pcap_header_only_is_an_empty_capture() -> None:
    reader = open_capture(io.BytesIO(PCAP_LE_MICRO[:24]), "fixture")
    assert list(reader) == []
    assert (reader.packets_read, reader.bytes_read) == (0, 24)


def test_counters_after_full_iteration() -> None:
    reader = open_capture(io.BytesIO(PCAP_LE_MICRO), "fixture")
    assert isinstance(reader, CaptureReader)
    assert list(reader)
    assert (reader.packets_read, reader.bytes_read) == (2, len(PCAP_LE_MICRO))
    with pytest.raises(RuntimeError):
        iter(reader)  # a stream can only be consumed once


# --------------------------------------------------------------------------------------------
# Damaged pcap files: every complete packet first, then the error at the right offset.


def test_pcap_truncated_inside_last_frame() -> None:
    data = PCAP_LE_MICRO[:-2]  # record 2 (header at offset 44) loses 2 frame bytes
    packets, error = read_until_error(data)
    assert [p[2] for p in packets] == [bytes.fromhex("deadbeef")]
    assert isinstance(error, CaptureDamagedError)
    assert error.offset == 44
    assert "44" in str(error) and "4 of 6" in str(error)


def test_pcap_truncated_inside_record_header() -> None:
    packets, error = read_until_error(PCAP_LE_MICRO[:50])  # 6 of record 2's 16 header bytes
    assert len(packets) == 1
    assert isinstance(error, CaptureDamagedError) and error.offset == 44


def test_pcap_absurd_incl_len_is_damage() -> None:
    data = bytearray(PCAP_LE_MICRO)
    struct.pack_into("<I", data, 44 + 8, 0x7FFF_FFFF)  # record 2 incl_len
    packets, error = read_until_error(bytes(data))
    assert len(packets) == 1
    assert isinstance(error, CaptureDamagedError) and error.offset == 44
    assert "2147483647" in str(error)


def test_counters_after_damage() -> None:
    reader = open_capture(io.BytesIO(PCAP_LE_MICRO[:-1]), "fixture")
    with pytest.raises(CaptureDamagedError):
        list(reader)
    assert (reader.packets_read, reader.bytes_read) == (1, 44)


def test_pcap_file_header_cut_short() -> None:
    with pytest.raises(CaptureDamagedError) as info:
        open_capture(io.BytesIO(PCAP_LE_MICRO[:10]), "fixture")
    assert "10 of 24" in str(info.value)


# --------------------------------------------------------------------------------------------
# Not captures at all.


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty"),
        (b"\xd4\xc3", "only 2 bytes"),
        (b"GET / HTTP/1.1\r\nHost: example\r\n\r\n", "unknown magic"),
        (b"\x1f\x8b\x08\x00" + bytes(40), "gzip"),
        (bytes(100), "unknown magic"),
        (PCAP_LE_MICRO[:4] + b"\x01\x00\x00\x00" + PCAP_LE_MICRO[8:], "version 1.0"),
    ],
    ids=["empty", "tiny", "text", "gzip", "zeros", "pcap-v1"],
)
def test_not_a_capture(data: bytes, message: str) -> None:
    with pytest.raises(NotACaptureError) as info:
        open_capture(io.BytesIO(data), "input.bin")
    assert message in str(info.value) and "input.bin" in str(info.value)


# --------------------------------------------------------------------------------------------
# pcapng fixtures.

# One little-endian section: two interfaces of different link types and resolutions, an EPB
# on each, an SPB, and an Interface Statistics Block that must be skipped.
PCAPNG_TWO_INTERFACES = hexb("""
    # Section Header Block, offset 0
    0a 0d 0d 0a   # block type SHB
    1c 00 00 00   # block total length 28
    4d 3c 2b 1a   # byte-order magic 0x1a2b3c4d: this section is little-endian
    01 00 00 00   # version 1.0
    ff ff ff ff ff ff ff ff  # section length -1 (not given)
    1c 00 00 00   # block total length 28
    # Interface Description Block (interface 0), offset 28
    01 00 00 00   # block type IDB
    20 00 00 00   # block total length 32
    01 00         # linktype 1 (Ethernet)
    00 00         # reserved
    00 00 04 00   # snaplen 262144
    09 00 01 00   # option if_tsresol, length 1
    09 00 00 00   #   10^-9: nanoseconds, then 3 padding bytes
    00 00 00 00   # opt_endofopt
    20 00 00 00   # block total length 32
    # Interface Description Block (interface 1), offset 60
    01 00 00 00   # block type IDB
    20 00 00 00   # block total length 32
    14 01         # linktype 276 (Linux cooked SLL2)
    00 00         # reserved
    00 00 00 00   # snaplen 0 (no limit)
    09 00 01 00   # option if_tsresol, length 1
    94 00 00 00   #   0x94: high bit set, so 2^-20 s units; 3 padding bytes
    00 00 00 00   # opt_endofopt
    20 00 00 00   # block total length 32
    # Enhanced Packet Block on interface 0, offset 92
    06 00 00 00   # block type EPB
    24 00 00 00   # block total length 36
    00 00 00 00   # interface id 0
    fe 9c 97 17   # timestamp high 32 bits } 1700000000250000000 ns
    80 b2 10 45   # timestamp low 32 bits  }
    04 00 00 00   # captured length 4
    3c 00 00 00   # original length 60
    de ad be ef   # frame
    24 00 00 00   # block total length 36
    # Enhanced Packet Block on interface 1, offset 128
    06 00 00 00   # block type EPB
    28 00 00 00   # block total length 40
    01 00 00 00   # interface id 1
    3f 55 06 00   # timestamp high } (1700000000 << 20) + (1 << 19) units of 2^-20 s
    00 00 08 10   # timestamp low  }
    05 00 00 00   # captured length 5
    05 00 00 00   # original length 5
    aa bb cc dd ee 00 00 00  # frame, 3 padding bytes
    28 00 00 00   # block total length 40
    # Simple Packet Block, offset 168: interface 0 implied, no timestamp
    03 00 00 00   # block type SPB
    14 00 00 00   # block total length 20
    04 00 00 00   # original length 4
    ca fe ba be   # frame
    14 00 00 00   # block total length 20
    # Interface Statistics Block, offset 188: not a packet, skipped by length
    05 00 00 00   # block type ISB
    18 00 00 00   # block total length 24
    00 00 00 00   # interface id 0
    00 00 00 00   # timestamp high
    00 00 00 00   # timestamp low
    18 00 00 00   # block total length 24
""")  # 212 bytes

# A second, big-endian section to append: its interface 0 is raw IP, microsecond default.
PCAPNG_BIG_ENDIAN_SECTION = hexb("""
    # Section Header Block
    0a 0d 0d 0a   # block type SHB (same bytes in both orders)
    00 00 00 1c   # block total length 28
    1a 2b 3c 4d   # byte-order magic: this section is big-endian
    00 01 00 00   # version 1.0
    ff ff ff ff ff ff ff ff  # section length -1
    00 00 00 1c   # block total length 28
    # Interface Description Block (interface 0 of this section), section offset 28
    00 00 00 01   # block type IDB
    00 00 00 14   # block total length 20
    00 65         # linktype 101 (raw IP)
    00 00         # reserved
    00 00 ff ff   # snaplen 65535
    00 00 00 14   # block total length 20 (no options: default microseconds)
    # Enhanced Packet Block, section offset 48
    00 00 00 06   # block type EPB
    00 00 00 24   # block total length 36
    00 00 00 00   # interface id 0
    00 06 0a 24   # timestamp high } 1700000002000001 us
    18 3c c4 81   # timestamp low  }
    00 00 00 04   # captured length 4
    00 00 00 04   # original length 4
    45 00 00 14   # frame
    00 00 00 24   # block total length 36
""")  # 84 bytes

# Interface with if_tsoffset, and an obsolete Packet Block.
PCAPNG_TSOFFSET_AND_PB = hexb("""
    # Section Header Block, offset 0
    0a 0d 0d 0a 1c 00 00 00   # SHB, length 28
    4d 3c 2b 1a 01 00 00 00   # little-endian, version 1.0
    ff ff ff ff ff ff ff ff   # section length -1
    1c 00 00 00               # length 28
    # Interface Description Block, offset 28
    01 00 00 00   # block type IDB
    20 00 00 00   # block total length 32
    01 00 00 00   # linktype 1, reserved
    00 00 00 00   # snaplen 0
    0e 00 08 00   # option if_tsoffset, length 8
    e8 03 00 00 00 00 00 00  # +1000 seconds added to every timestamp
    20 00 00 00   # block total length 32 (end of options implied by the block end)
    # obsolete Packet Block, offset 60
    02 00 00 00   # block type PB
    24 00 00 00   # block total length 36
    00 00         # interface id 0
    00 00         # drops count
    24 0a 06 00   # timestamp high } 1700000003500000 us
    e0 a7 53 18   # timestamp low  }
    04 00 00 00   # captured length 4
    04 00 00 00   # original length 4
    0b 0c 0d 0e   # frame
    24 00 00 00   # block total length 36
""")


def test_pcapng_interfaces_keep_their_own_link_type_and_resolution() -> None:
    packets = read_all(PCAPNG_TWO_INTERFACES)
    assert packets == [
        (1700000000.25, 1, bytes.fromhex("deadbeef"), 60),  # 10^-9 resolution
        (1700000000.5, 276, bytes.fromhex("aabbccddee"), 5),  # 2^-20 resolution
        (1700000000.5, 1, bytes.fromhex("cafebabe"), 4),  # SPB: interface 0, previous time
    ]


def test_pcapng_sections_with_different_byte_orders() -> None:
    packets = read_all(PCAPNG_TWO_INTERFACES + PCAPNG_BIG_ENDIAN_SECTION)
    assert len(packets) == 4
    assert packets[3] == (1700000002.000001, 101, bytes.fromhex("45000014"), 4)
    assert packets[3][0] == 1700000002000001 / 1_000_000


def test_pcapng_tsoffset_and_obsolete_packet_block() -> None:
    assert read_all(PCAPNG_TSOFFSET_AND_PB) == [(1700001003.5, 1, bytes.fromhex("0b0c0d0e"), 4)]


def test_pcapng_counters() -> None:
    reader = open_capture(io.BytesIO(PCAPNG_TWO_INTERFACES), "fixture")
    assert len(list(reader)) == 3
    assert (reader.packets_read, reader.bytes_read) == (3, 212)


def patched(data: bytes, offset: int, fmt: str, value: int) -> bytes:
    out = bytearray(data)
    struct.pack_into(fmt, out, offset, value)
    return bytes(out)


# (fixture, packets expected before the damage, damage offset, words in the message)
PCAPNG_DAMAGE = {
    "truncated-last-block": (PCAPNG_TWO_INTERFACES[:-5], 3, 188, ["inside", "19 of 24"]),
    "truncated-block-header": (PCAPNG_TWO_INTERFACES[:192], 3, 188, ["block header"]),
    "truncated-epb": (PCAPNG_TWO_INTERFACES[:150], 1, 128, ["enhanced packet block"]),
    "length-not-multiple-of-4": (
        patched(PCAPNG_TWO_INTERFACES, 128 + 4, "<I", 42),
        1,
        128,
        ["42", "multiple of 4"],
    ),
    "length-below-minimum": (
        patched(PCAPNG_TWO_INTERFACES, 92 + 4, "<I", 28),
        0,
        92,
        ["28", "minimum of 32"],
    ),
    "length-above-cap": (
        patched(PCAPNG_TWO_INTERFACES, 168 + 4, "<I", 0x7FFF_FFFC),
        2,
        168,
        ["sanity limit"],
    ),
    "trailer-mismatch": (
        patched(PCAPNG_TWO_INTERFACES, 164, "<I", 44),
        1,
        128,
        ["trailing copy"],
    ),
    "captured-length-beyond-block": (
        patched(PCAPNG_TWO_INTERFACES, 92 + 20, "<I", 5),
        0,
        92,
        ["captured length 5", "4 bytes"],
    ),
    "undeclared-interface": (
        patched(PCAPNG_TWO_INTERFACES, 128 + 8, "<I", 2),
        1,
        128,
        ["interface 2", "only 2"],
    ),
    # The big-endian section declares one interface; interface numbers restart per section.
    "interface-of-previous-section": (
        PCAPNG_TWO_INTERFACES + patched(PCAPNG_BIG_ENDIAN_SECTION, 48 + 8, ">I", 1),
        3,
        212 + 48,
        ["interface 1"],
    ),
    "option-overruns-block": (
        patched(PCAPNG_TWO_INTERFACES, 28 + 18, "<H", 40),
        0,
        28 + 16,
        ["option 9", "40 bytes"],
    ),
    "second-section-without-byte-order-magic": (
        PCAPNG_TWO_INTERFACES + patched(PCAPNG_BIG_ENDIAN_SECTION, 8, ">I", 0x01020304),
        3,
        212,
        ["byte-order magic"],
    ),
}


@pytest.mark.parametrize("case", list(PCAPNG_DAMAGE), ids=list(PCAPNG_DAMAGE))
def test_pcapng_damage(case: str) -> None:
    data, good, offset, words = PCAPNG_DAMAGE[case]
    packets, error = read_until_error(data)
    assert len(packets) == good
    assert packets == read_all(PCAPNG_TWO_INTERFACES)[:good]
    assert isinstance(error, CaptureDamagedError)
    assert error.offset == offset
    message = str(error)
    assert f"offset {offset}" in message and "fixture" in message
    for word in words:
        assert word in message


def test_pcapng_spb_before_any_interface_is_damage() -> None:
    spb_only = PCAPNG_TWO_INTERFACES[:28] + PCAPNG_TWO_INTERFACES[168:188]
    packets, error = read_until_error(spb_only)
    assert packets == []
    assert isinstance(error, CaptureDamagedError) and error.offset == 28


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (patched(PCAPNG_TWO_INTERFACES, 8, "<I", 0x11223344), "byte-order magic"),
        (patched(PCAPNG_TWO_INTERFACES, 12, "<H", 2), "version 2.0"),
    ],
    ids=["bad-byte-order-magic", "version-2"],
)
def test_pcapng_bad_first_section_is_not_a_capture(data: bytes, message: str) -> None:
    with pytest.raises(NotACaptureError, match=message):
        open_capture(io.BytesIO(data), "fixture")


def test_pcapng_first_section_header_cut_short() -> None:
    with pytest.raises(CaptureDamagedError):
        open_capture(io.BytesIO(PCAPNG_TWO_INTERFACES[:10]), "fixture")


# --------------------------------------------------------------------------------------------
# Streams: chunk boundaries anywhere, non-seekable pipes, short reads.

ALL_FIXTURES = {
    "pcap-le-us": PCAP_LE_MICRO,
    "pcap-be-us": PCAP_BE_MICRO,
    "pcap-le-ns": PCAP_LE_NANO,
    "pcap-be-ns": PCAP_BE_NANO,
    "pcap-fcs": PCAP_FCS,
    "pcapng": PCAPNG_TWO_INTERFACES + PCAPNG_BIG_ENDIAN_SECTION,
    "pcapng-pb": PCAPNG_TSOFFSET_AND_PB,
}


@pytest.mark.parametrize("name", list(ALL_FIXTURES))
@pytest.mark.parametrize("chunk", [1, 3, 7, 16, 29, 64])
def test_chunk_size_does_not_change_results(name: str, chunk: int) -> None:
    data = ALL_FIXTURES[name]
    expected = read_all(data)
    truncated = read_until_error(data[:-3])
    with mock.patch.object(capture_file, "CHUNK_SIZE", chunk):
        assert read_all(data) == expected
        packets, error = read_until_error(data[:-3])
    assert packets == truncated[0]
    assert isinstance(error, CaptureDamagedError) and isinstance(truncated[1], CaptureDamagedError)
    assert error.offset == truncated[1].offset


class TrickleStream(io.RawIOBase):
    """An unseekable raw stream returning at most ``step`` bytes per read, like a slow pipe;
    seeking or telling fails the test."""

    def __init__(self, data: bytes, step: int) -> None:
        self._data = data
        self._pos = 0
        self._step = step

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def seek(self, *args: object) -> int:
        raise AssertionError("the reader must not seek")

    def tell(self) -> int:
        raise AssertionError("the reader must not tell")

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        n = min(self._step, len(buffer), len(self._data) - self._pos)
        buffer[:n] = self._data[self._pos : self._pos + n]
        self._pos += n
        return n


@pytest.mark.parametrize("name", list(ALL_FIXTURES))
@pytest.mark.parametrize("buffered", [True, False], ids=["buffered", "raw"])
def test_unseekable_trickling_stream(name: str, buffered: bool) -> None:
    data = ALL_FIXTURES[name]
    raw = TrickleStream(data, step=3)
    stream = io.BufferedReader(raw, buffer_size=5) if buffered else raw
    assert list(open_capture(stream, "trickle")) == read_all(data)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["pcap-le-us", "pcapng"])
def test_os_pipe_fed_by_a_thread(name: str) -> None:
    data = ALL_FIXTURES[name]
    read_fd, write_fd = os.pipe()

    def feed() -> None:
        with open(write_fd, "wb", buffering=0) as sink:
            for i in range(0, len(data), 5):  # small writes, so reads come back short
                sink.write(data[i : i + 5])

    writer = threading.Thread(target=feed)
    writer.start()
    try:
        with open(read_fd, "rb") as source:
            assert not source.seekable()
            packets = list(open_capture(source, "<pipe>"))
    finally:
        writer.join(timeout=10)
    assert packets == read_all(data)


# --------------------------------------------------------------------------------------------
# Fuzzing: damaged input may only ever raise CaptureError, and never changes with chunking.


def outcome(data: bytes) -> tuple[list[tuple[float, int, bytes, int]], str, int]:
    """What reading gives: the packets, then the error class and offset (or "" and -1)."""
    packets: list[tuple[float, int, bytes, int]] = []
    try:
        for packet in open_capture(io.BytesIO(data), "fuzz"):
            timestamp, linktype, frame, wire_length = packet
            assert isinstance(timestamp, float) and isinstance(frame, bytes)
            assert 0 <= linktype <= 0xFFFF and wire_length >= 0
            packets.append(packet)
    except CaptureDamagedError as exc:
        return packets, "damaged", exc.offset
    except CaptureError as exc:
        return packets, type(exc).__name__, -1
    return packets, "", -1


@st.composite
def mangled_captures(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(list(ALL_FIXTURES.values()))))
    for _ in range(draw(st.integers(1, 4))):
        action = draw(st.sampled_from(["replace", "insert", "delete", "truncate", "append"]))
        at = draw(st.integers(0, len(data)))
        chunk = draw(st.binary(min_size=1, max_size=12))
        if action == "replace":
            data[at : at + len(chunk)] = chunk
        elif action == "insert":
            data[at:at] = chunk
        elif action == "delete":
            del data[at : at + len(chunk)]
        elif action == "truncate":
            del data[at:]
        else:
            data += chunk
    return bytes(data)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=mangled_captures(), chunk=st.sampled_from([1, 2, 5, 13]))
def test_mangled_captures_raise_only_capture_errors(data: bytes, chunk: int) -> None:
    expected = outcome(data)
    with mock.patch.object(capture_file, "CHUNK_SIZE", chunk):
        assert outcome(data) == expected


@settings(max_examples=200, deadline=None)
@given(
    magic=st.sampled_from([PCAP_LE_MICRO[:4], PCAP_BE_NANO[:4], PCAPNG_TWO_INTERFACES[:4]]),
    tail=st.binary(max_size=300),
)
def test_random_bytes_after_a_magic(magic: bytes, tail: bytes) -> None:
    outcome(magic + tail)


def test_public_surface() -> None:
    assert sorted(capture_file.__all__) == [
        "CaptureDamagedError",
        "CaptureError",
        "CaptureReader",
        "NotACaptureError",
        "open_capture",
    ]
    assert issubclass(NotACaptureError, CaptureError)
    assert issubclass(CaptureDamagedError, CaptureError)
