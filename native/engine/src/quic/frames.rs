//! Frames inside a decrypted Initial payload: collect the CRYPTO frames, step over the rest.
//!
//! Initial packets may only carry PADDING, PING, ACK, CRYPTO and CONNECTION_CLOSE (RFC 9000
//! section 12.4, table 3). Every one of those can be skipped by its own encoding. Any other frame
//! type has a length we cannot know, so parsing stops there and keeps what it already found
//! (Chrome and others interleave PING and PADDING between CRYPTO frames, so those must not stop
//! it). Frame types are varints: a non-minimal encoding of a known type is still that type.
//!
//! Google's T050 and T051 wrap Google QUIC frames in IETF long headers: one-byte types, CRYPTO
//! 0x08 (then IETF's varint offset and length), PING 0x07, CONNECTION_CLOSE 0x02 (4-byte error,
//! 2-byte reason length), and ACK as the types 0x40-0x7f (01nullmm: a flag for extra blocks,
//! then the byte widths of the largest acknowledged number and of the block lengths), followed
//! by the receive timestamps. Wireshark's packet-gquic.c and lsquic's parse_gquic_be.c read them
//! alike.

use super::packets::{read_varint, PacketError};

pub const PADDING: u64 = 0x00;
pub const PING: u64 = 0x01;
pub const ACK: u64 = 0x02;
pub const ACK_ECN: u64 = 0x03;
pub const CRYPTO: u64 = 0x06;
pub const CONNECTION_CLOSE: u64 = 0x1c;
pub const CONNECTION_CLOSE_APP: u64 = 0x1d;

/// Why frame parsing stopped before the end of the payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// A varint or a frame field ran past the payload.
    Packet(PacketError),
    TruncatedCryptoFrame,
    UnexpectedFrame,
}

impl FrameError {
    pub fn as_str(self) -> &'static str {
        match self {
            FrameError::Packet(e) => e.as_str(),
            FrameError::TruncatedCryptoFrame => "truncated_crypto_frame",
            FrameError::UnexpectedFrame => "unexpected_frame",
        }
    }
}

impl From<PacketError> for FrameError {
    fn from(e: PacketError) -> Self {
        FrameError::Packet(e)
    }
}

/// Each CRYPTO frame's (offset, data), and why parsing stopped early (None if it did not).
/// `google` selects Google QUIC framing (T050/T051, `QuicVersion::google_frames`).
pub fn crypto_frames(payload: &[u8], google: bool) -> (Vec<(u64, &[u8])>, Option<FrameError>) {
    let mut found = Vec::new();
    let reason = if google {
        walk_google(payload, &mut found).err()
    } else {
        walk(payload, &mut found).err()
    };
    (found, reason)
}

fn walk<'a>(payload: &'a [u8], found: &mut Vec<(u64, &'a [u8])>) -> Result<(), FrameError> {
    let end = payload.len();
    let mut pos = 0;
    while pos < end {
        let (frame_type, next) = read_varint(payload, pos, end)?;
        pos = next;
        match frame_type {
            PADDING => pos = skip_padding(payload, pos),
            PING => {}
            CRYPTO => pos = read_crypto(payload, pos, found)?,
            ACK | ACK_ECN => pos = skip_ack(payload, pos, end, frame_type == ACK_ECN)?,
            CONNECTION_CLOSE | CONNECTION_CLOSE_APP => {
                (_, pos) = read_varint(payload, pos, end)?; // error code
                if frame_type == CONNECTION_CLOSE {
                    (_, pos) = read_varint(payload, pos, end)?; // offending frame type
                }
                let (reason_len, next) = read_varint(payload, pos, end)?;
                pos = next;
                if reason_len > (end - pos) as u64 {
                    return Err(PacketError::TruncatedFrame.into());
                }
                pos += reason_len as usize;
            }
            _ => return Err(FrameError::UnexpectedFrame),
        }
    }
    Ok(())
}

/// Past a run of PADDING (zero bytes) whose first byte, the frame type, was at `pos - 1`.
fn skip_padding(payload: &[u8], pos: usize) -> usize {
    pos + payload[pos..].iter().position(|&b| b != 0).unwrap_or(payload.len() - pos)
}

/// A CRYPTO frame's varint offset and length and its data, after the type byte at `pos - 1`
/// (the same in IETF QUIC and in Google's frames): the data goes to `found`; where it ends.
fn read_crypto<'a>(
    payload: &'a [u8],
    pos: usize,
    found: &mut Vec<(u64, &'a [u8])>,
) -> Result<usize, FrameError> {
    let end = payload.len();
    let (offset, next) = read_varint(payload, pos, end)?;
    let (length, pos) = read_varint(payload, next, end)?;
    if length > (end - pos) as u64 {
        return Err(FrameError::TruncatedCryptoFrame);
    }
    let length = length as usize;
    found.push((offset, &payload[pos..pos + length]));
    Ok(pos + length)
}

fn skip_ack(payload: &[u8], pos: usize, end: usize, ecn: bool) -> Result<usize, PacketError> {
    let (_, pos) = read_varint(payload, pos, end)?; // largest acknowledged
    let (_, pos) = read_varint(payload, pos, end)?; // ack delay
    let (range_count, mut pos) = read_varint(payload, pos, end)?;
    // Each range is two varints of at least one byte: a count larger than that is a lie, and
    // checking it first keeps a forged count from costing 2^62 loop iterations.
    if range_count > ((end - pos) / 2) as u64 {
        return Err(PacketError::TruncatedFrame);
    }
    (_, pos) = read_varint(payload, pos, end)?; // first ack range
    for _ in 0..range_count {
        (_, pos) = read_varint(payload, pos, end)?; // gap
        (_, pos) = read_varint(payload, pos, end)?; // ack range length
    }
    if ecn {
        for _ in 0..3 {
            (_, pos) = read_varint(payload, pos, end)?; // ECT(0), ECT(1), ECN-CE counts
        }
    }
    Ok(pos)
}

pub const GOOGLE_CONNECTION_CLOSE: u8 = 0x02;
pub const GOOGLE_PING: u8 = 0x07;
pub const GOOGLE_CRYPTO: u8 = 0x08;
/// Google's two-bit field widths.
const WIDTHS: [usize; 4] = [1, 2, 4, 6];

fn walk_google<'a>(payload: &'a [u8], found: &mut Vec<(u64, &'a [u8])>) -> Result<(), FrameError> {
    let end = payload.len();
    let mut pos = 0;
    while pos < end {
        let frame_type = payload[pos];
        pos += 1;
        match frame_type {
            0x00 => pos = skip_padding(payload, pos),
            GOOGLE_PING => {}
            GOOGLE_CRYPTO => pos = read_crypto(payload, pos, found)?,
            0x40..=0x7f => pos = skip_google_ack(payload, pos, end, frame_type)?,
            GOOGLE_CONNECTION_CLOSE => {
                if pos + 6 > end {
                    return Err(PacketError::TruncatedFrame.into());
                }
                let reason_len =
                    usize::from(u16::from_be_bytes([payload[pos + 4], payload[pos + 5]]));
                pos += 6 + reason_len;
                if pos > end {
                    return Err(PacketError::TruncatedFrame.into());
                }
            }
            _ => return Err(FrameError::UnexpectedFrame),
        }
    }
    Ok(())
}

/// Past a Google ACK frame whose type byte was at `pos - 1`; every field is fixed-size.
fn skip_google_ack(
    payload: &[u8],
    mut pos: usize,
    end: usize,
    frame_type: u8,
) -> Result<usize, PacketError> {
    let block = WIDTHS[usize::from(frame_type & 0x03)];
    pos += WIDTHS[usize::from((frame_type >> 2) & 0x03)] + 2; // largest acked, 16-bit float delay
    if frame_type & 0x20 != 0 {
        let blocks = usize::from(*payload.get(pos).ok_or(PacketError::TruncatedFrame)?);
        pos += 1 + block + blocks * (1 + block); // first block, then (gap, length) per block
    } else {
        pos += block;
    }
    let timestamps = usize::from(*payload.get(pos).ok_or(PacketError::TruncatedFrame)?);
    pos += 1;
    if timestamps > 0 {
        // The first: 1-byte packet delta and 4-byte time; each further one 1 + 2 bytes.
        pos += 5 + 3 * (timestamps - 1);
    }
    if pos > end {
        return Err(PacketError::TruncatedFrame);
    }
    Ok(pos)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chrome_style_frames_between_crypto_frames() {
        let payload = [
            0x01, // PING
            0x06, 0x05, 0x02, b'l', b'o', // CRYPTO offset 5, 2 bytes
            0x00, 0x00, 0x00, // PADDING
            0x02, 0x05, 0x00, 0x01, 0x00, 0x00, 0x00, // ACK, 1 range
            0x03, 0x01, 0x00, 0x00, 0x00, 0x01, 0x02, 0x03, // ACK_ECN, no ranges
            0x1c, 0x00, 0x00, 0x01, b'x', // CONNECTION_CLOSE, reason "x"
            0x1d, 0x00, 0x00, // CONNECTION_CLOSE (application), empty reason
            0x40, 0x06, 0x00, 0x01, b'h', // CRYPTO with a 2-byte frame type encoding
            0x00, 0x00,
        ];
        let (found, reason) = crypto_frames(&payload, false);
        assert_eq!(reason, None);
        assert_eq!(found, vec![(5, &b"lo"[..]), (0, &b"h"[..])]);
    }

    #[test]
    fn stops_at_unknown_or_truncated_frames_and_keeps_what_it_found() {
        let (found, reason) = crypto_frames(
            &[0x06, 0x00, 0x01, b'a', 0x08, 0x06, 0x00, 0x01, b'b'],
            false,
        );
        assert_eq!(
            (found, reason),
            (vec![(0, &b"a"[..])], Some(FrameError::UnexpectedFrame))
        );
        let (found, reason) = crypto_frames(&[0x06, 0x00, 0x05, b'a'], false);
        assert_eq!(
            (found.len(), reason),
            (0, Some(FrameError::TruncatedCryptoFrame))
        );
        let (_, reason) = crypto_frames(&[0x06, 0x80], false);
        assert_eq!(reason.map(FrameError::as_str), Some("truncated_varint"));
        // An ACK claiming 2^62 ranges in a few bytes.
        let (_, reason) = crypto_frames(
            &[
                0x02, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x00,
            ],
            false,
        );
        assert_eq!(reason.map(FrameError::as_str), Some("truncated_frame"));
        let (_, reason) = crypto_frames(&[0x1c, 0x00, 0x00, 0x09, b'x'], false);
        assert_eq!(reason.map(FrameError::as_str), Some("truncated_frame"));
    }

    /// PING, CRYPTO, PADDING, both ACK layouts (with blocks and timestamps) and
    /// CONNECTION_CLOSE in Google's framing (T050/T051).
    const GOOGLE_FRAMES: [u8; 49] = [
        0x07, // PING
        0x08, 0x05, 0x02, b'l', b'o', // CRYPTO offset 5, 2 bytes
        0x00, 0x00, // PADDING
        0x40, 0x05, 0x00, 0x00, 0x01, 0x00, // ACK: 1-byte fields, one block, no timestamps
        // ACK 01100101: extra blocks, 2-byte largest and block lengths; 2 blocks; 2 timestamps
        0x65, 0x01, 0x00, 0x00, 0x00, 0x02, 0x00, 0x03, 0x01, 0x00, 0x01, 0x01, 0x00, 0x01, 0x02,
        0x01, 0x00, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, //
        0x02, 0x00, 0x00, 0x00, 0x01, 0x00, 0x01, b'x', // CONNECTION_CLOSE, reason "x"
        0x08, 0x00, 0x01, b'h', // CRYPTO offset 0
    ];

    #[test]
    fn google_framing_of_t050_and_t051() {
        let (found, reason) = crypto_frames(&GOOGLE_FRAMES, true);
        assert_eq!(reason, None);
        assert_eq!(found, vec![(5, &b"lo"[..]), (0, &b"h"[..])]);
        // The same bytes read as IETF frames stop at once: 0x07 is not an Initial frame there.
        assert_eq!(
            crypto_frames(&GOOGLE_FRAMES, false).1,
            Some(FrameError::UnexpectedFrame)
        );
    }

    #[test]
    fn google_framing_stops_at_unknown_or_truncated_frames() {
        let reason = |payload: &[u8]| crypto_frames(payload, true).1.map(FrameError::as_str);
        assert_eq!(reason(&[0x08, 0x00, 0x05, b'a']), Some("truncated_crypto_frame"));
        assert_eq!(reason(&[0x40, 0x00, 0x00]), Some("truncated_frame"));
        assert_eq!(reason(&[0x60, 0x00, 0x00, 0x00, 0xff, 0x01]), Some("truncated_frame"));
        assert_eq!(reason(&[0x40, 0x00, 0x00, 0x00, 0x01, 0x09]), Some("truncated_frame"));
        assert_eq!(reason(&[0x02, 0, 0, 0, 0, 0x00, 0x09, b'x']), Some("truncated_frame"));
        assert_eq!(reason(&[0x06, 0x00, 0x01, b'a']), Some("unexpected_frame")); // IETF CRYPTO
        assert_eq!(reason(&[0x80, 0x00]), Some("unexpected_frame")); // a STREAM frame
        for cut in 0..GOOGLE_FRAMES.len() {
            let (found, _) = crypto_frames(&GOOGLE_FRAMES[..cut], true);
            assert!(found.len() <= 2);
        }
    }
}
