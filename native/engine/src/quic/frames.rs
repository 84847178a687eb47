//! Frames inside a decrypted Initial payload: collect the CRYPTO frames, step over the rest.
//!
//! Initial packets may only carry PADDING, PING, ACK, CRYPTO and CONNECTION_CLOSE (RFC 9000
//! section 12.4, table 3). Every one of those can be skipped by its own encoding. Any other frame
//! type has a length we cannot know, so parsing stops there and keeps what it already found
//! (Chrome and others interleave PING and PADDING between CRYPTO frames, so those must not stop
//! it). Frame types are varints: a non-minimal encoding of a known type is still that type.

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
pub fn crypto_frames(payload: &[u8]) -> (Vec<(u64, &[u8])>, Option<FrameError>) {
    let mut found = Vec::new();
    let reason = walk(payload, &mut found).err();
    (found, reason)
}

fn walk<'a>(payload: &'a [u8], found: &mut Vec<(u64, &'a [u8])>) -> Result<(), FrameError> {
    let end = payload.len();
    let mut pos = 0;
    while pos < end {
        let (frame_type, next) = read_varint(payload, pos, end)?;
        pos = next;
        match frame_type {
            PADDING => {
                pos += payload[pos..]
                    .iter()
                    .position(|&b| b != 0)
                    .unwrap_or(end - pos);
            }
            PING => {}
            CRYPTO => {
                let (offset, next) = read_varint(payload, pos, end)?;
                let (length, next) = read_varint(payload, next, end)?;
                pos = next;
                if length > (end - pos) as u64 {
                    return Err(FrameError::TruncatedCryptoFrame);
                }
                let length = length as usize;
                found.push((offset, &payload[pos..pos + length]));
                pos += length;
            }
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
        let (found, reason) = crypto_frames(&payload);
        assert_eq!(reason, None);
        assert_eq!(found, vec![(5, &b"lo"[..]), (0, &b"h"[..])]);
    }

    #[test]
    fn stops_at_unknown_or_truncated_frames_and_keeps_what_it_found() {
        let (found, reason) =
            crypto_frames(&[0x06, 0x00, 0x01, b'a', 0x08, 0x06, 0x00, 0x01, b'b']);
        assert_eq!(
            (found, reason),
            (vec![(0, &b"a"[..])], Some(FrameError::UnexpectedFrame))
        );
        let (found, reason) = crypto_frames(&[0x06, 0x00, 0x05, b'a']);
        assert_eq!(
            (found.len(), reason),
            (0, Some(FrameError::TruncatedCryptoFrame))
        );
        let (_, reason) = crypto_frames(&[0x06, 0x80]);
        assert_eq!(reason.map(FrameError::as_str), Some("truncated_varint"));
        // An ACK claiming 2^62 ranges in a few bytes.
        let (_, reason) = crypto_frames(&[
            0x02, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x00,
        ]);
        assert_eq!(reason.map(FrameError::as_str), Some("truncated_frame"));
        let (_, reason) = crypto_frames(&[0x1c, 0x00, 0x00, 0x09, b'x']);
        assert_eq!(reason.map(FrameError::as_str), Some("truncated_frame"));
    }
}
