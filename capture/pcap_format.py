"""Classic libpcap files (draft-ietf-opsawg-pcap).

File header, 24 bytes, in the writer's byte order (told by the magic):
    magic u32 | version_major u16 | version_minor u16 | thiszone i32 | sigfigs u32 |
    snaplen u32 | linktype-and-FCS u32
Record header, 16 bytes, then ``incl_len`` bytes of frame:
    ts_sec u32 | ts_frac u32 (micro- or nanoseconds, per magic) | incl_len u32 | orig_len u32

The record loop is the hottest code in the project: it keeps the buffer and offsets in locals,
unpacks each header with one precompiled ``Struct`` and yields one tuple per packet.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

from ja3svc.capture.capture_file import (
    CaptureDamagedError,
    CaptureReader,
    ChunkedStream,
    NotACaptureError,
    PacketTuple,
)

# magic as it appears on disk -> (struct byte order, timestamp fraction divisor)
MAGICS: dict[bytes, tuple[str, int]] = {
    b"\xd4\xc3\xb2\xa1": ("<", 1_000_000),  # 0xa1b2c3d4 written little-endian, microseconds
    b"\xa1\xb2\xc3\xd4": (">", 1_000_000),
    b"\x4d\x3c\xb2\xa1": ("<", 1_000_000_000),  # 0xa1b23c4d, nanoseconds
    b"\xa1\xb2\x3c\x4d": (">", 1_000_000_000),
}

FILE_HEADER_SIZE = 24
RECORD_HEADER_SIZE = 16

# Wireshark's standard maximum; a larger incl_len is accepted only up to a larger snaplen,
# and never beyond a hard cap, so a corrupt length cannot make us buffer gigabytes.
STANDARD_MAX_RECORD = 256 * 1024
HARD_MAX_RECORD = 64 * 1024 * 1024

# Layout of the 32-bit link type field: bits 0-15 link type, 16-25 reserved, bit 26 "FCS
# length present", bits 28-31 the FCS length in 16-bit words.
LINKTYPE_MASK = 0xFFFF
FCS_PRESENT_BIT = 0x0400_0000
FCS_WORDS_SHIFT = 28


def open_pcap(source: ChunkedStream, magic: bytes) -> CaptureReader:
    name = source.name
    header, buf, pos = source.take(magic, 0, FILE_HEADER_SIZE)
    if len(header) < FILE_HEADER_SIZE:
        raise source.damaged(
            len(header),
            f"pcap file header cut short ({len(header)} of {FILE_HEADER_SIZE} bytes)",
        )
    order, divisor = MAGICS[magic]
    major, minor, _zone, _sigfigs, snaplen, linkfield = struct.unpack_from(
        order + "HHiIII", header, 4
    )
    # Version 2.2 and older stored orig_len before incl_len; nothing current writes them.
    if major != 2 or minor < 3:
        raise NotACaptureError(f"{name}: unsupported pcap version {major}.{minor}")
    linktype = linkfield & LINKTYPE_MASK
    fcs_bytes = 2 * (linkfield >> FCS_WORDS_SHIFT) if linkfield & FCS_PRESENT_BIT else 0
    max_record = min(max(STANDARD_MAX_RECORD, snaplen), HARD_MAX_RECORD)

    def packets(reader: CaptureReader) -> Iterator[PacketTuple]:
        return _records(reader, source, buf, pos, order, divisor, linktype, fcs_bytes, max_record)

    return CaptureReader(name, "pcap", packets, FILE_HEADER_SIZE)


def _records(
    reader: CaptureReader,
    source: ChunkedStream,
    buf: bytes,
    pos: int,
    order: str,
    divisor: int,
    linktype: int,
    fcs_bytes: int,
    max_record: int,
) -> Iterator[PacketTuple]:
    unpack = struct.Struct(order + "IIII").unpack_from
    take = source.take
    damaged = source.damaged
    end = len(buf)
    base = source.offset - end  # file offset of buf[0]
    # While a record that straddled two chunks is served from its own small "bridge" buffer,
    # the real chunk and cursor wait here.
    pending: tuple[bytes, int] | None = None
    count = 0
    try:
        while True:
            start = pos + RECORD_HEADER_SIZE
            if start <= end:
                sec, frac, incl, orig = unpack(buf, pos)
                stop = start + incl
                if stop <= end and incl <= max_record:
                    count += 1
                    pos = stop
                    if fcs_bytes:
                        # The FCS trails the frame on the wire; a snaplen cut may already have
                        # removed part or all of it.
                        wire = orig - fcs_bytes if orig > fcs_bytes else 0
                        keep = incl if incl < wire else wire
                        yield (sec + frac / divisor, linktype, buf[start : start + keep], wire)
                    else:
                        yield (sec + frac / divisor, linktype, buf[start:stop], orig)
                    continue
                if incl > max_record:
                    raise damaged(base + pos, _too_big(incl, max_record))

            # The next record is not wholly in this buffer.
            if pending is not None:  # a bridge holds exactly one record, now consumed
                buf, pos = pending
                pending = None
                end = len(buf)
                base = source.offset - end
                continue
            record_offset = base + pos
            reader.bytes_read = record_offset
            reader.packets_read = count
            header, buf, pos = take(buf, pos, RECORD_HEADER_SIZE)
            end = len(buf)
            base = source.offset - end
            if len(header) < RECORD_HEADER_SIZE:
                if header:
                    raise damaged(
                        record_offset,
                        f"file ends inside a pcap record header ({len(header)} of "
                        f"{RECORD_HEADER_SIZE} bytes)",
                    )
                return
            incl = unpack(header, 0)[2]
            if incl > max_record:
                raise damaged(record_offset, _too_big(incl, max_record))
            frame, buf, pos = take(buf, pos, incl)
            end = len(buf)
            base = source.offset - end
            if len(frame) < incl:
                raise damaged(
                    record_offset,
                    f"file ends inside a pcap record ({len(frame)} of {incl} frame bytes present)",
                )
            pending = (buf, pos)
            buf = header + frame
            pos = 0
            end = len(buf)
            base = record_offset
    except CaptureDamagedError as exc:
        base, pos = exc.offset, 0
        raise
    finally:
        # Runs on normal end, on damage and when the consumer stops early.
        reader.bytes_read = base + pos
        reader.packets_read = count


def _too_big(incl: int, max_record: int) -> str:
    return (
        f"pcap record claims {incl} captured bytes, more than the {max_record}-byte limit "
        f"for this file"
    )
