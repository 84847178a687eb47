"""Frames inside a decrypted Initial payload: collect the CRYPTO frames, step over the rest.

Initial packets may only carry PADDING, PING, ACK, CRYPTO and CONNECTION_CLOSE (RFC 9000
section 12.4, table 3). Every one of those can be skipped by its own encoding. Any other frame
type has a length we cannot know, so parsing stops there and keeps what it already found (Chrome
and others interleave PING and PADDING between CRYPTO frames, so those must not stop it).

Google's T050 and T051 wrap Google QUIC frames in IETF long headers: one-byte types, CRYPTO 0x08
(then IETF's varint offset and length), PING 0x07, CONNECTION_CLOSE 0x02 (4-byte error, 2-byte
reason length), and ACK as the types 0x40-0x7f (01nullmm: a flag for extra blocks, then the
byte widths of the largest acknowledged number and of the block lengths), followed by the
receive timestamps. Wireshark's packet-gquic.c and lsquic's parse_gquic_be.c read them alike.
"""

from __future__ import annotations

import re

from ja3svc.quic.packets import PacketError, read_varint

PADDING, PING, ACK, ACK_ECN, CRYPTO = 0x00, 0x01, 0x02, 0x03, 0x06
CONNECTION_CLOSE, CONNECTION_CLOSE_APP = 0x1C, 0x1D

# Finding the end of a PADDING run byte by byte in Python would cost ~1000 iterations for
# a typical padded client Initial; the regex engine does it in C.
_NOT_ZERO = re.compile(rb"[^\x00]")


def crypto_frames(
    payload: bytes, google: bool = False
) -> tuple[list[tuple[int, bytes]], str | None]:
    """Each CRYPTO frame's (offset, data), and why parsing stopped early (None if it did not).

    ``google`` selects Google QUIC framing (T050/T051, ``QuicVersion.google_frames``).
    """
    if google:
        return _google_crypto_frames(payload)
    found: list[tuple[int, bytes]] = []
    end = len(payload)
    pos = 0
    try:
        while pos < end:
            frame_type, pos = read_varint(payload, pos, end)
            if frame_type == PADDING:
                pos = _skip_padding(payload, pos, end)
            elif frame_type == PING:
                continue
            elif frame_type == CRYPTO:
                pos = _crypto_frame(payload, pos, end, found)
            elif frame_type in (ACK, ACK_ECN):
                pos = _skip_ack(payload, pos, end, frame_type == ACK_ECN)
            elif frame_type in (CONNECTION_CLOSE, CONNECTION_CLOSE_APP):
                _, pos = read_varint(payload, pos, end)  # error code
                if frame_type == CONNECTION_CLOSE:
                    _, pos = read_varint(payload, pos, end)  # offending frame type
                reason_len, pos = read_varint(payload, pos, end)
                if reason_len > end - pos:
                    return found, "truncated_frame"
                pos += reason_len
            else:
                return found, "unexpected_frame"
    except PacketError as exc:
        return found, exc.reason
    return found, None


def _skip_padding(payload: bytes, pos: int, end: int) -> int:
    """Past a run of PADDING (type 0 in both framings): one search, not a frame per byte."""
    m = _NOT_ZERO.search(payload, pos)
    return m.start() if m else end


def _crypto_frame(payload: bytes, pos: int, end: int, found: list[tuple[int, bytes]]) -> int:
    """Read a CRYPTO frame's offset, length and data (the same layout in both framings) into
    ``found``; return the position after it."""
    offset, pos = read_varint(payload, pos, end)
    length, pos = read_varint(payload, pos, end)
    if length > end - pos:
        raise PacketError("truncated_crypto_frame")
    found.append((offset, payload[pos : pos + length]))
    return pos + length


def _skip_ack(payload: bytes, pos: int, end: int, ecn: bool) -> int:
    _, pos = read_varint(payload, pos, end)  # largest acknowledged
    _, pos = read_varint(payload, pos, end)  # ack delay
    range_count, pos = read_varint(payload, pos, end)
    # Each range is two varints of at least one byte: a count larger than that is a lie, and
    # checking it first keeps a forged count from costing 2^62 loop iterations.
    if range_count > (end - pos) // 2:
        raise PacketError("truncated_frame")
    _, pos = read_varint(payload, pos, end)  # first ack range
    for _ in range(range_count):
        _, pos = read_varint(payload, pos, end)  # gap
        _, pos = read_varint(payload, pos, end)  # ack range length
    if ecn:
        for _ in range(3):  # ECT(0), ECT(1), ECN-CE counts
            _, pos = read_varint(payload, pos, end)
    return pos


GOOGLE_CONNECTION_CLOSE, GOOGLE_PING, GOOGLE_CRYPTO = 0x02, 0x07, 0x08
_WIDTHS = (1, 2, 4, 6)  # Google's two-bit field widths


def _google_crypto_frames(payload: bytes) -> tuple[list[tuple[int, bytes]], str | None]:
    found: list[tuple[int, bytes]] = []
    end = len(payload)
    pos = 0
    try:
        while pos < end:
            frame_type = payload[pos]
            pos += 1
            if frame_type == PADDING:
                pos = _skip_padding(payload, pos, end)
            elif frame_type == GOOGLE_PING:
                continue
            elif frame_type == GOOGLE_CRYPTO:
                pos = _crypto_frame(payload, pos, end, found)
            elif frame_type & 0xC0 == 0x40:
                pos = _skip_google_ack(payload, pos, end, frame_type)
            elif frame_type == GOOGLE_CONNECTION_CLOSE:
                if pos + 6 > end:
                    return found, "truncated_frame"
                pos += 6 + int.from_bytes(payload[pos + 4 : pos + 6], "big")
                if pos > end:
                    return found, "truncated_frame"
            else:
                return found, "unexpected_frame"
    except PacketError as exc:
        return found, exc.reason
    return found, None


def _skip_google_ack(payload: bytes, pos: int, end: int, frame_type: int) -> int:
    """Past a Google ACK frame whose type byte was at ``pos - 1``; every field is fixed-size."""
    block = _WIDTHS[frame_type & 0x03]
    pos += _WIDTHS[(frame_type >> 2) & 0x03] + 2  # largest acknowledged, 16-bit float delay
    if frame_type & 0x20:
        if pos >= end:
            raise PacketError("truncated_frame")
        blocks = payload[pos]
        pos += 1 + block + blocks * (1 + block)  # first block, then (gap, length) per block
    else:
        pos += block
    if pos >= end:
        raise PacketError("truncated_frame")
    timestamps = payload[pos]
    pos += 1
    if timestamps:
        # The first: 1-byte packet delta and 4-byte time; each further one 1 + 2 bytes.
        pos += 5 + 3 * (timestamps - 1)
    if pos > end:
        raise PacketError("truncated_frame")
    return pos
