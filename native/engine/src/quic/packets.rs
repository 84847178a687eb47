//! QUIC long-header packets in one UDP datagram: split, then remove header and packet
//! protection.
//!
//! A datagram may carry several long-header packets back to back ("coalesced", RFC 9000 section
//! 12.2), each ending where its Length field says; a short-header packet, a Retry or a Version
//! Negotiation packet runs to the end of the datagram, so splitting stops there. Lengths are
//! validated before any slice is taken: a packet that claims more bytes than the datagram holds
//! is an error, not a short read.

use super::keys::{version, PacketKeys, PacketType, QuicVersion};

/// RFC 9000 section 17.2: version 1 and 2 connection IDs are at most 20 bytes.
pub const MAX_CID_LENGTH: usize = 20;
pub const SAMPLE_LENGTH: usize = 16;

/// Why a packet, a frame or the rest of a datagram could not be used. `as_str` is the counter
/// name the Python reference uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PacketError {
    TruncatedVarint,
    TruncatedHeader,
    UnknownVersion,
    BadCidLength,
    TruncatedToken,
    TruncatedPacket,
    TooShortForSample,
    AeadFailed,
    TruncatedFrame,
}

impl PacketError {
    pub fn as_str(self) -> &'static str {
        match self {
            PacketError::TruncatedVarint => "truncated_varint",
            PacketError::TruncatedHeader => "truncated_header",
            PacketError::UnknownVersion => "unknown_version",
            PacketError::BadCidLength => "bad_cid_length",
            PacketError::TruncatedToken => "truncated_token",
            PacketError::TruncatedPacket => "truncated_packet",
            PacketError::TooShortForSample => "too_short_for_sample",
            PacketError::AeadFailed => "aead_failed",
            PacketError::TruncatedFrame => "truncated_frame",
        }
    }

    /// The counter name for the same failure on a server packet.
    pub fn server_str(self) -> &'static str {
        match self {
            PacketError::TruncatedVarint => "server_truncated_varint",
            PacketError::TruncatedHeader => "server_truncated_header",
            PacketError::UnknownVersion => "server_unknown_version",
            PacketError::BadCidLength => "server_bad_cid_length",
            PacketError::TruncatedToken => "server_truncated_token",
            PacketError::TruncatedPacket => "server_truncated_packet",
            PacketError::TooShortForSample => "server_too_short_for_sample",
            PacketError::AeadFailed => "server_aead_failed",
            PacketError::TruncatedFrame => "server_truncated_frame",
        }
    }
}

/// A QUIC variable-length integer (RFC 9000 section 16) at `pos`, reading no further than
/// `end`: (value, next position).
#[inline]
pub fn read_varint(buf: &[u8], pos: usize, end: usize) -> Result<(u64, usize), PacketError> {
    let end = end.min(buf.len());
    if pos >= end {
        return Err(PacketError::TruncatedVarint);
    }
    let first = buf[pos];
    let size = 1usize << (first >> 6);
    if pos + size > end {
        return Err(PacketError::TruncatedVarint);
    }
    let mut value = u64::from(first & 0x3f);
    for &b in &buf[pos + 1..pos + size] {
        value = (value << 8) | u64::from(b);
    }
    Ok((value, pos + size))
}

/// Where one long-header packet sits in its datagram; the first byte is still protected.
#[derive(Debug, Clone)]
pub struct LongPacket<'a> {
    pub start: usize,
    pub version: &'static QuicVersion,
    pub packet_type: PacketType,
    pub dcid: &'a [u8],
    pub scid: &'a [u8],
    /// Offset of the (protected) packet number, i.e. the end of the Length field.
    pub pn_offset: usize,
    /// One past the last byte of this packet.
    pub end: usize,
}

/// A varint length at `pos` and where what it measures starts, when the datagram holds that
/// much after it; `short` when it does not.
fn read_length(
    datagram: &[u8],
    pos: usize,
    short: PacketError,
) -> Result<(usize, usize), PacketError> {
    let (length, at) = read_varint(datagram, pos, datagram.len())?;
    if length > (datagram.len() - at) as u64 {
        return Err(short);
    }
    Ok((length as usize, at))
}

/// The long-header packets of a datagram, and why splitting stopped early (None if it did not).
///
/// Stopping at a short header, a Retry or a Version Negotiation packet is normal, not an error.
/// Versions other than 1 and 2 cannot be decrypted here and are reported as `UnknownVersion`.
pub fn split_long_packets(datagram: &[u8]) -> (Vec<LongPacket<'_>>, Option<PacketError>) {
    let mut packets = Vec::new();
    let n = datagram.len();
    let mut pos = 0;
    while pos < n {
        let first = datagram[pos];
        if first & 0x80 == 0 {
            return (packets, None); // short header: 1-RTT data to the end of the datagram
        }
        if pos + 6 > n {
            return (packets, Some(PacketError::TruncatedHeader));
        }
        let number = u32::from_be_bytes([
            datagram[pos + 1],
            datagram[pos + 2],
            datagram[pos + 3],
            datagram[pos + 4],
        ]);
        if number == 0 {
            return (packets, None); // Version Negotiation
        }
        let Some(version) = version(number) else {
            return (packets, Some(PacketError::UnknownVersion));
        };
        let mut p = pos + 5;
        let dcid_len = usize::from(datagram[p]);
        if dcid_len > MAX_CID_LENGTH {
            return (packets, Some(PacketError::BadCidLength));
        }
        p += 1;
        if p + dcid_len + 1 > n {
            return (packets, Some(PacketError::TruncatedHeader));
        }
        let dcid = &datagram[p..p + dcid_len];
        p += dcid_len;
        let scid_len = usize::from(datagram[p]);
        if scid_len > MAX_CID_LENGTH {
            return (packets, Some(PacketError::BadCidLength));
        }
        p += 1;
        if p + scid_len > n {
            return (packets, Some(PacketError::TruncatedHeader));
        }
        let scid = &datagram[p..p + scid_len];
        p += scid_len;
        let packet_type = version.packet_types[usize::from((first >> 4) & 0x03)];
        if packet_type == PacketType::Retry {
            return (packets, None); // a Retry has no Length field and fills the datagram
        }
        if packet_type == PacketType::Initial {
            match read_length(datagram, p, PacketError::TruncatedToken) {
                Ok((token_len, next)) => p = next + token_len,
                Err(e) => return (packets, Some(e)),
            }
        }
        let end = match read_length(datagram, p, PacketError::TruncatedPacket) {
            Ok((length, next)) => {
                p = next;
                next + length
            }
            Err(e) => return (packets, Some(e)),
        };
        packets.push(LongPacket {
            start: pos,
            version,
            packet_type,
            dcid,
            scid,
            pn_offset: p,
            end,
        });
        pos = end;
    }
    (packets, None)
}

/// The full packet number closest to `largest + 1` (RFC 9000 appendix A.3); `largest` is -1
/// before any packet was authenticated.
pub fn decode_packet_number(largest: i64, truncated: u64, pn_bits: u32) -> i64 {
    let expected = largest + 1;
    let window = 1i64 << pn_bits;
    let half = window / 2;
    let candidate = (expected & !(window - 1)) | truncated as i64;
    if candidate <= expected - half && candidate < (1i64 << 62) - window {
        return candidate + window;
    }
    if candidate > expected + half && candidate >= window {
        return candidate - window;
    }
    candidate
}

/// Remove header protection and decrypt one packet: (packet number, plaintext payload).
///
/// `largest` is the largest packet number already authenticated in this direction (-1 if
/// none), needed to expand the 1-4 byte truncated packet number.
pub fn unprotect(
    datagram: &[u8],
    packet: &LongPacket<'_>,
    keys: &PacketKeys,
    largest: i64,
) -> Result<(i64, Vec<u8>), PacketError> {
    let pn_offset = packet.pn_offset;
    let sample_at = pn_offset + 4; // the sample assumes a 4-byte packet number (RFC 9001 5.4.2)
    if sample_at + SAMPLE_LENGTH > packet.end {
        return Err(PacketError::TooShortForSample);
    }
    let mut sample = [0u8; SAMPLE_LENGTH];
    sample.copy_from_slice(&datagram[sample_at..sample_at + SAMPLE_LENGTH]);
    let mask = keys.header_mask(&sample);
    let first = datagram[packet.start] ^ (mask[0] & 0x0f); // long header: only the low 4 bits
    let pn_len = usize::from(first & 0x03) + 1;
    let mut header = Vec::with_capacity(pn_offset + pn_len - packet.start);
    header.push(first);
    header.extend_from_slice(&datagram[packet.start + 1..pn_offset]);
    let mut truncated = 0u64;
    for i in 0..pn_len {
        let b = datagram[pn_offset + i] ^ mask[1 + i];
        header.push(b);
        truncated = (truncated << 8) | u64::from(b);
    }
    let packet_number = decode_packet_number(largest, truncated, 8 * pn_len as u32);
    // A decoded packet number is never negative: the candidate is built from a non-negative
    // expected value and a window is only subtracted when the candidate is at least that large.
    let payload = keys
        .open(
            packet_number as u64,
            &header,
            &datagram[pn_offset + pn_len..packet.end],
        )
        .map_err(|_| PacketError::AeadFailed)?;
    Ok((packet_number, payload))
}

/// One protected Initial packet: `payload` sealed under `keys` with a 4-byte packet number and
/// a 2-byte Length, header protection applied. None when the payload does not fit a 2-byte
/// Length (or the sample needs more bytes than it has).
///
/// The capture path never seals; this is here so that the unit tests and the fuzz targets can
/// put chosen plaintext (frames, CRYPTO pieces) behind real packet protection and reach the
/// frame parser and the stream through the same code a capture takes.
pub fn seal_initial(
    version: &QuicVersion,
    keys: &PacketKeys,
    dcid: &[u8],
    token: &[u8],
    packet_number: u32,
    payload: &[u8],
) -> Option<Vec<u8>> {
    let length = 4 + payload.len() + 16;
    if length >= 0x4000 || payload.len() < SAMPLE_LENGTH || dcid.len() > MAX_CID_LENGTH {
        return None;
    }
    let first = 0xc0 | (version.type_bits(PacketType::Initial) << 4) | 0x03;
    let mut packet = vec![first];
    packet.extend_from_slice(&version.number.to_be_bytes());
    packet.push(dcid.len() as u8);
    packet.extend_from_slice(dcid);
    packet.push(0); // empty Source Connection ID
    let token_len = token.len() as u64;
    match token_len {
        0..0x40 => packet.push(token_len as u8),
        0x40..0x4000 => packet.extend_from_slice(&(0x4000 | token_len as u16).to_be_bytes()),
        _ => return None,
    }
    packet.extend_from_slice(token);
    // The 2-byte form even for short lengths: non-minimal encodings are legal, RFC 9001's
    // appendix A packets use this form too.
    packet.extend_from_slice(&(0x4000 | length as u16).to_be_bytes());
    let pn_offset = packet.len();
    packet.extend_from_slice(&packet_number.to_be_bytes());
    let sealed = keys.seal(u64::from(packet_number), &packet, payload);
    packet.extend_from_slice(&sealed);
    let mut sample = [0u8; SAMPLE_LENGTH];
    sample.copy_from_slice(&packet[pn_offset + 4..pn_offset + 4 + SAMPLE_LENGTH]);
    let mask = keys.header_mask(&sample);
    packet[0] ^= mask[0] & 0x0f;
    for i in 0..4 {
        packet[pn_offset + i] ^= mask[1 + i];
    }
    Some(packet)
}
