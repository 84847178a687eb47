"""QUIC long-header packets in one UDP datagram: split, then remove header and packet protection.

A datagram may carry several long-header packets back to back ("coalesced", RFC 9000 section 12.2),
each ending where its Length field says; a short-header packet, a Retry or a Version Negotiation
packet runs to the end of the datagram, so splitting stops there. Lengths are validated before
any slice is taken: a packet that claims more bytes than the datagram holds is an error, not a
short read.
"""

from __future__ import annotations

from dataclasses import dataclass

from ja3svc.quic.keys import INITIAL, RETRY, VERSIONS, PacketKeys, QuicVersion

MAX_CID_LENGTH = 20  # RFC 9000 section 17.2 (and every draft since 22): CIDs are at most 20 bytes
SAMPLE_LENGTH = 16


class PacketError(ValueError):
    """A packet that cannot be used; ``reason`` is a short counter name."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def read_varint(buf: bytes, pos: int, end: int) -> tuple[int, int]:
    """A QUIC variable-length integer (RFC 9000 section 16) at ``pos``; (value, next position)."""
    if pos >= end:
        raise PacketError("truncated_varint")
    first = buf[pos]
    size = 1 << (first >> 6)
    if pos + size > end:
        raise PacketError("truncated_varint")
    value = first & 0x3F
    for i in range(pos + 1, pos + size):
        value = (value << 8) | buf[i]
    return value, pos + size


@dataclass(frozen=True, slots=True)
class LongPacket:
    """Where one long-header packet sits in its datagram; the first byte is still protected."""

    start: int
    version: QuicVersion
    packet_type: str
    dcid: bytes
    scid: bytes
    pn_offset: int  # offset of the (protected) packet number, i.e. end of the Length field
    end: int  # one past the last byte of this packet


def split_long_packets(datagram: bytes) -> tuple[list[LongPacket], str | None]:
    """The long-header packets of a datagram, and why splitting stopped early (None if it did not).

    Stopping at a short header, a Retry or a Version Negotiation packet is normal, not an error.
    Versions not in ``keys.VERSIONS`` cannot be decrypted here and are reported as
    ``unknown_version``.
    """
    packets: list[LongPacket] = []
    n = len(datagram)
    pos = 0
    while pos < n:
        first = datagram[pos]
        if not first & 0x80:
            return packets, None  # short header: 1-RTT data to the end of the datagram
        if pos + 6 > n:
            return packets, "truncated_header"
        number = int.from_bytes(datagram[pos + 1 : pos + 5], "big")
        if number == 0:
            return packets, None  # Version Negotiation
        version = VERSIONS.get(number)
        if version is None:
            return packets, "unknown_version"
        p = pos + 5
        dcid_len = datagram[p]
        if dcid_len > MAX_CID_LENGTH:
            return packets, "bad_cid_length"
        p += 1
        if p + dcid_len + 1 > n:
            return packets, "truncated_header"
        dcid = datagram[p : p + dcid_len]
        p += dcid_len
        scid_len = datagram[p]
        if scid_len > MAX_CID_LENGTH:
            return packets, "bad_cid_length"
        p += 1
        if p + scid_len > n:
            return packets, "truncated_header"
        scid = datagram[p : p + scid_len]
        p += scid_len
        packet_type = version.packet_types[(first >> 4) & 0x03]
        if packet_type == RETRY:
            return packets, None  # a Retry has no Length field and fills the datagram
        try:
            if packet_type == INITIAL:
                token_len, p = read_varint(datagram, p, n)
                if token_len > n - p:
                    return packets, "truncated_token"
                p += token_len
            length, p = read_varint(datagram, p, n)
        except PacketError as exc:
            return packets, exc.reason
        if length > n - p:
            return packets, "truncated_packet"
        packets.append(LongPacket(pos, version, packet_type, dcid, scid, p, p + length))
        pos = p + length
    return packets, None


def decode_packet_number(largest: int, truncated: int, pn_bits: int) -> int:
    """The full packet number closest to ``largest + 1`` (RFC 9000 appendix A.3)."""
    expected = largest + 1
    window = 1 << pn_bits
    half = window // 2
    candidate = (expected & ~(window - 1)) | truncated
    if candidate <= expected - half and candidate < (1 << 62) - window:
        return candidate + window
    if candidate > expected + half and candidate >= window:
        return candidate - window
    return candidate


def unprotect(
    datagram: bytes, packet: LongPacket, keys: PacketKeys, largest: int
) -> tuple[int, bytes]:
    """Remove header protection and decrypt one packet: (packet number, plaintext payload).

    ``largest`` is the largest packet number already authenticated in this direction (-1 if none),
    needed to expand the 1-4 byte truncated packet number.
    """
    pn_offset = packet.pn_offset
    sample_at = pn_offset + 4  # the sample assumes a 4-byte packet number (RFC 9001 5.4.2)
    if sample_at + SAMPLE_LENGTH > packet.end:
        raise PacketError("too_short_for_sample")
    mask = keys.header_mask(datagram[sample_at : sample_at + SAMPLE_LENGTH])
    first = datagram[packet.start] ^ (mask[0] & 0x0F)  # long header: only the low 4 bits
    pn_len = (first & 0x03) + 1
    protected_pn = datagram[pn_offset : pn_offset + pn_len]
    pn_bytes = bytes(b ^ m for b, m in zip(protected_pn, mask[1 : 1 + pn_len], strict=True))
    packet_number = decode_packet_number(largest, int.from_bytes(pn_bytes, "big"), pn_len * 8)
    header = bytes((first,)) + datagram[packet.start + 1 : pn_offset] + pn_bytes
    payload = keys.open(packet_number, header, datagram[pn_offset + pn_len : packet.end])
    if payload is None:
        raise PacketError("aead_failed")
    return packet_number, payload
