"""pcapng files (draft-ietf-opsawg-pcapng).

Every block is ``type u32 | total_length u32 | body | total_length u32`` in the byte order of
its section. A Section Header Block (SHB) starts each section, fixes its byte order with a
byte-order magic and forgets the previous section's interfaces. Interface Description Blocks
(IDB) declare, in order, interfaces 0, 1, ... with their link type, snaplen and options
(``if_tsresol``, ``if_tsoffset``, ``if_fcslen``). Packets come in Enhanced Packet Blocks (EPB),
Simple Packet Blocks (SPB, interface 0, no timestamp) and obsolete Packet Blocks (PB). Every
other block type is skipped by its length.

Every length is checked before it is trusted: a block length below its type's minimum, not a
multiple of 4, above ``MAX_BLOCK``, or disagreeing with the trailing copy is damage, as is a
captured length that does not fit in its block or a packet naming an undeclared interface.
The EPB case is tested first and kept inline because it is nearly every block of a real file.
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

SHB_MAGIC = b"\x0a\x0d\x0d\x0a"  # a palindrome, so readable before the byte order is known
SHB = 0x0A0D0D0A
IDB = 0x00000001
PB = 0x00000002  # obsolete Packet Block
SPB = 0x00000003
EPB = 0x00000006

BYTE_ORDER_MAGICS = {b"\x4d\x3c\x2b\x1a": "<", b"\x1a\x2b\x3c\x4d": ">"}

# Smallest legal total length per block type (headers and trailer, empty data and options).
MIN_BLOCK = {SHB: 28, IDB: 20, PB: 32, SPB: 16, EPB: 32}
MIN_ANY_BLOCK = 12
# No real block comes near this; a larger length is corruption, refused before buffering it.
MAX_BLOCK = 64 * 1024 * 1024

OPT_ENDOFOPT = 0
OPT_IF_TSRESOL = 9
OPT_IF_FCSLEN = 13
OPT_IF_TSOFFSET = 14

DEFAULT_TS_DIVISOR = 1_000_000  # no if_tsresol option means microseconds

# One declared interface: (linktype, timestamp divisor, timestamp offset s, FCS bytes, snaplen).
Interface = tuple[int, int, int, int, int]


def open_pcapng(source: ChunkedStream, magic: bytes) -> CaptureReader:
    """Check the first SHB's byte-order magic and version up front, so a file that merely
    starts with the SHB type is refused as "not a capture" rather than "damaged"."""
    name = source.name
    first, buf, pos = source.take(magic, 0, 16)
    if len(first) < 16:
        raise source.damaged(
            0, f"file ends inside the first section header block ({len(first)} of 28 bytes)"
        )
    order = BYTE_ORDER_MAGICS.get(first[8:12])
    if order is None:
        raise NotACaptureError(
            f"{name}: starts like pcapng but has no byte-order magic "
            f"(found {first[8:12].hex()}), not a capture"
        )
    major, minor = struct.unpack_from(order + "HH", first, 12)
    if major != 1:
        raise NotACaptureError(f"{name}: unsupported pcapng version {major}.{minor}")
    # The loop parses the SHB again from the start of the file; one copy of one chunk.
    buf = first + buf[pos:]

    def packets(reader: CaptureReader) -> Iterator[PacketTuple]:
        return _blocks(reader, source, buf)

    return CaptureReader(name, "pcapng", packets, 0)


def _interface(
    source: ChunkedStream, base: int, buf: bytes, pos: int, stop: int, order: str
) -> Interface:
    """Parse an IDB body: link type, snaplen and the options that change how packets read."""
    linktype, _reserved, snaplen = struct.unpack_from(order + "HHI", buf, pos + 8)
    divisor = DEFAULT_TS_DIVISOR
    offset = 0
    fcs = 0
    option_header = struct.Struct(order + "HH").unpack_from
    opt = pos + 16
    limit = stop - 4
    while opt + 4 <= limit:
        code, length = option_header(buf, opt)
        if code == OPT_ENDOFOPT:
            break
        value = opt + 4
        if value + length > limit:
            raise source.damaged(
                base + opt,
                f"interface description option {code} claims {length} bytes, more than its "
                f"block holds",
            )
        if code == OPT_IF_TSRESOL and length >= 1:
            # High bit set: a negative power of 2; clear: a negative power of 10.
            resol = buf[value]
            divisor = 1 << (resol & 0x7F) if resol & 0x80 else 10**resol
        elif code == OPT_IF_TSOFFSET and length == 8:
            offset = struct.unpack_from(order + "q", buf, value)[0]
        elif code == OPT_IF_FCSLEN and length >= 1:
            # The spec says bits, older writers meant bytes; no FCS is 8 bytes or longer, so
            # values of 8 and more can only be bits.
            fcs = buf[value]
            fcs = fcs // 8 if fcs >= 8 else fcs
        opt = value + ((length + 3) & ~3)
    return (linktype, divisor, offset, fcs, snaplen)


def _strip_fcs(frame: bytes, orig: int, fcs: int) -> tuple[bytes, int]:
    """Drop whatever part of a trailing FCS was captured; report the wire length without it."""
    wire = orig - fcs if orig > fcs else 0
    return (frame[:wire] if len(frame) > wire else frame), wire


def _blocks(reader: CaptureReader, source: ChunkedStream, buf: bytes) -> Iterator[PacketTuple]:
    take = source.take
    damaged = source.damaged
    pos = 0
    end = len(buf)
    base = source.offset - end  # file offset of buf[0]
    # While a block that straddled two chunks is served from its own small "bridge" buffer,
    # the real chunk and cursor wait here.
    pending: tuple[bytes, int] | None = None
    count = 0
    last_ts = 0.0  # SPBs carry no timestamp; reuse the previous one so flow ageing stays sane
    interfaces: list[Interface] = []
    # Section-dependent decoders, replaced at every SHB (the file starts with one).
    order = "<"
    head = struct.Struct("<II").unpack_from
    epb = struct.Struct("<IIIIIII").unpack_from
    u32 = struct.Struct("<I").unpack_from
    try:
        while True:
            # Enhanced packet blocks are nearly every block of a real file: one unpack reads
            # the block header and the EPB fields together, guessing the block is an EPB.
            if pos + 28 <= end:
                btype, blen, iface, hi, lo, caplen, orig = epb(buf, pos)
                if btype == EPB:
                    if blen < 32 or blen & 3 or blen > MAX_BLOCK:
                        raise damaged(base + pos, _length_problem(btype, blen))
                    stop = pos + blen
                    if stop <= end:
                        trailer = u32(buf, stop - 4)[0]
                        if trailer != blen:
                            raise damaged(base + pos, _trailer_mismatch(btype, blen, trailer))
                        if caplen > blen - 32:
                            raise damaged(base + pos, _too_long(btype, caplen, blen - 32))
                        try:
                            linktype, divisor, ts_offset, fcs, _snaplen = interfaces[iface]
                        except IndexError:
                            raise damaged(base + pos, _undeclared(iface, len(interfaces))) from None
                        # Integer true division is correctly rounded even for nanosecond
                        # counts beyond 2**53, which float arithmetic on the halves is not.
                        last_ts = ((hi << 32) | lo) / divisor
                        if ts_offset:
                            last_ts += ts_offset
                        count += 1
                        start = pos + 28
                        pos = stop
                        if fcs:
                            frame, orig = _strip_fcs(buf[start : start + caplen], orig, fcs)
                            yield (last_ts, linktype, frame, orig)
                        else:
                            yield (last_ts, linktype, buf[start : start + caplen], orig)
                        continue
            # Every block is at least 12 bytes, enough for an SHB's byte-order magic.
            if pos + 12 <= end:
                btype, blen = head(buf, pos)
                stop = pos + blen
                # An EPB reaching here did not fit in the buffer: it goes through the bridge.
                if btype != EPB:
                    if btype == SHB:
                        order = BYTE_ORDER_MAGICS.get(buf[pos + 8 : pos + 12], "")
                        if not order:
                            raise damaged(base + pos, _no_byte_order(buf[pos + 8 : pos + 12]))
                        head = struct.Struct(order + "II").unpack_from
                        epb = struct.Struct(order + "IIIIIII").unpack_from
                        u32 = struct.Struct(order + "I").unpack_from
                        blen = u32(buf, pos + 4)[0]
                        stop = pos + blen
                    problem = _length_problem(btype, blen)
                    if problem:
                        raise damaged(base + pos, problem)
                    if stop <= end:
                        trailer = u32(buf, stop - 4)[0]
                        if trailer != blen:
                            raise damaged(base + pos, _trailer_mismatch(btype, blen, trailer))
                        at = pos
                        pos = stop
                        if btype == SHB:
                            major, minor = struct.unpack_from(order + "HH", buf, at + 12)
                            if major != 1:
                                raise damaged(
                                    base + at, f"unsupported pcapng version {major}.{minor}"
                                )
                            interfaces = []  # interface numbers restart in every section
                        elif btype == IDB:
                            interfaces.append(_interface(source, base, buf, at, stop, order))
                        elif btype == SPB:
                            if not interfaces:
                                raise damaged(base + at, _undeclared(0, 0))
                            linktype, _divisor, _offset, fcs, snaplen = interfaces[0]
                            orig = u32(buf, at + 8)[0]
                            # No captured-length field: the frame is what fits, cut at snaplen.
                            caplen = min(orig, blen - 16)
                            if snaplen:
                                caplen = min(caplen, snaplen)
                            frame = buf[at + 12 : at + 12 + caplen]
                            if fcs:
                                frame, orig = _strip_fcs(frame, orig, fcs)
                            count += 1
                            yield (last_ts, linktype, frame, orig)
                        elif btype == PB:
                            iface, _drops, hi, lo, caplen, orig = struct.unpack_from(
                                order + "HHIIII", buf, at + 8
                            )
                            if caplen > blen - 32:
                                raise damaged(base + at, _too_long(btype, caplen, blen - 32))
                            if iface >= len(interfaces):
                                raise damaged(base + at, _undeclared(iface, len(interfaces)))
                            linktype, divisor, ts_offset, fcs, _snaplen = interfaces[iface]
                            last_ts = ((hi << 32) | lo) / divisor + ts_offset
                            frame = buf[at + 28 : at + 28 + caplen]
                            if fcs:
                                frame, orig = _strip_fcs(frame, orig, fcs)
                            count += 1
                            yield (last_ts, linktype, frame, orig)
                        # Any other block type carries nothing we need: skipped by length.
                        continue

            # The next block is not wholly in this buffer.
            if pending is not None:  # a bridge holds exactly one block, now consumed
                buf, pos = pending
                pending = None
                end = len(buf)
                base = source.offset - end
                continue
            block_offset = base + pos
            reader.bytes_read = block_offset
            reader.packets_read = count
            first, buf, pos = take(buf, pos, 12)
            end = len(buf)
            base = source.offset - end
            if len(first) < 12:
                if first:
                    raise damaged(
                        block_offset, f"file ends inside a block header ({len(first)} of 12 bytes)"
                    )
                return
            btype = u32(first, 0)[0]
            if btype == SHB:
                block_order = BYTE_ORDER_MAGICS.get(first[8:12], "")
                if not block_order:
                    raise damaged(block_offset, _no_byte_order(first[8:12]))
                blen = struct.unpack_from(block_order + "I", first, 4)[0]
            else:
                blen = u32(first, 4)[0]
            problem = _length_problem(btype, blen)
            if problem:
                raise damaged(block_offset, problem)
            rest, buf, pos = take(buf, pos, blen - 12)
            end = len(buf)
            base = source.offset - end
            if len(rest) < blen - 12:
                raise damaged(block_offset, _cut_short(btype, blen, 12 + len(rest)))
            pending = (buf, pos)
            buf = first + rest
            pos = 0
            end = len(buf)
            base = block_offset
    except CaptureDamagedError as exc:
        base, pos = exc.offset, 0
        raise
    finally:
        # Runs on normal end, on damage and when the consumer stops early.
        reader.bytes_read = base + pos
        reader.packets_read = count


_BLOCK_NAMES = {
    SHB: "section header block",
    IDB: "interface description block",
    PB: "packet block",
    SPB: "simple packet block",
    EPB: "enhanced packet block",
}


def _block_name(btype: int) -> str:
    return _BLOCK_NAMES.get(btype, f"block of type 0x{btype:08x}")


def _length_problem(btype: int, blen: int) -> str:
    """Why ``blen`` cannot be the total length of a block of type ``btype``; "" if it can."""
    minimum = MIN_BLOCK.get(btype, MIN_ANY_BLOCK)
    if blen < minimum:
        why = f"below the minimum of {minimum}"
    elif blen & 3:
        why = "not a multiple of 4"
    elif blen > MAX_BLOCK:
        why = f"above the {MAX_BLOCK}-byte sanity limit"
    else:
        return ""
    return f"{_block_name(btype)} length {blen} is {why}"


def _no_byte_order(found: bytes) -> str:
    return f"section header block has no byte-order magic (found {found.hex()})"


def _cut_short(btype: int, blen: int, have: int) -> str:
    name = _block_name(btype)
    article = "an" if name[0] in "aeiou" else "a"
    return f"file ends inside {article} {name} ({have} of {blen} bytes present)"


def _trailer_mismatch(btype: int, blen: int, trailer: int) -> str:
    return f"{_block_name(btype)} length {blen} disagrees with its trailing copy {trailer}"


def _too_long(btype: int, caplen: int, room: int) -> str:
    return f"{_block_name(btype)} captured length {caplen} exceeds the {room} bytes of its block"


def _undeclared(iface: int, declared: int) -> str:
    return (
        f"packet names interface {iface} but the section declares only {declared} "
        f"interface{'s' if declared != 1 else ''}"
    )
