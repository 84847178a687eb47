//! Per-connection reassembly of the TLS hellos carried in QUIC Initial packets.
//!
//! The same contract as `ja3svc/quic/assembler.py`, which the differential test holds this to:
//! - No IO. The caller feeds whole UDP payloads, client-to-server through
//!   [`QuicInitialAssembler::feed`], server-to-client through
//!   [`QuicInitialAssembler::feed_server`], and gets back the hello *bodies* (handshake
//!   messages without their 4-byte header) that the datagram completed, in stream order.
//! - Nothing panics on bad input: a datagram that cannot be used adds one to `errors[reason]`.
//! - Memory is bounded: per direction at most `max_crypto_bytes` of CRYPTO stream (64 KiB by
//!   default, far above the ~2 KB of a post-quantum browser hello) in at most [`MAX_RANGES`]
//!   disjoint pieces, and the keys of one Destination Connection ID at a time.
//! - Keys come from the client's Destination Connection ID. A client Initial whose DCID differs
//!   from the one in use is tried first with the current keys (after the server's first reply,
//!   clients address it by the server-chosen ID but keep the original keys) and then with keys
//!   of its own DCID (after a Retry, or a new connection reusing the 4-tuple); when those
//!   authenticate they replace the old ones and the streams restart, since the new ClientHello
//!   starts at offset 0. After a Retry the client sends the same ClientHello again under the new
//!   keys; a hello equal to one already returned is a resend, not a new hello, and is counted in
//!   `repeated_hellos` only (tshark agrees: it reports one hello for such a connection).

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

use super::frames::crypto_frames;
use super::keys::{side_keys, PacketKeys, PacketType, QuicVersion, Side};
use super::packets::{split_long_packets, unprotect, LongPacket};
use crate::hello::HELLO_RETRY_REQUEST_RANDOM;

pub const CLIENT_HELLO: u8 = 1;
pub const SERVER_HELLO: u8 = 2;
pub const DEFAULT_MAX_CRYPTO_BYTES: usize = 64 * 1024;
/// Disjoint received pieces per stream; real clients send fewer than 10.
pub const MAX_RANGES: usize = 64;
pub const MAX_REMEMBERED_HELLOS: usize = 8;
/// Datagrams per connection after which nothing more is expected in Initials.
pub const MAX_DATAGRAMS: u32 = 64;

/// Counters of what could not be used, by reason (the Python reference's names).
pub type Errors = BTreeMap<&'static str, u64>;

fn count(errors: &mut Errors, reason: &'static str) {
    *errors.entry(reason).or_default() += 1;
}

/// Why (part of) a CRYPTO frame was dropped or the stream stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamError {
    CryptoOverCap,
    TooManyFragments,
    MessageTooLarge,
}

impl StreamError {
    pub fn as_str(self) -> &'static str {
        match self {
            StreamError::CryptoOverCap => "crypto_over_cap",
            StreamError::TooManyFragments => "too_many_fragments",
            StreamError::MessageTooLarge => "message_too_large",
        }
    }
}

/// One direction's CRYPTO stream at the Initial level, reassembled by offset.
///
/// Pieces may arrive in any order, overlap or repeat (a later copy overwrites an earlier one,
/// as in the reference). Complete handshake messages are handed out once each, in stream order,
/// as soon as the bytes before and in them are all present.
#[derive(Debug, Clone)]
pub struct CryptoStream {
    cap: u64,
    buf: Vec<u8>,
    /// Sorted, disjoint, non-adjacent `[start, end)` ranges received.
    ranges: Vec<(u64, u64)>,
    /// Stream offset of the next handshake message header.
    next: u64,
    /// A message too large for the cap was announced: stop for good.
    dead: bool,
}

impl Default for CryptoStream {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_CRYPTO_BYTES)
    }
}

impl CryptoStream {
    pub fn new(cap: usize) -> Self {
        CryptoStream {
            cap: cap as u64,
            buf: Vec::new(),
            ranges: Vec::new(),
            next: 0,
            dead: false,
        }
    }

    /// Store one CRYPTO frame; returns an error reason when (part of) it was dropped.
    pub fn add(&mut self, offset: u64, data: &[u8]) -> Option<StreamError> {
        if self.dead {
            return None;
        }
        let mut reason = None;
        let mut data = data;
        // Offsets are varints below 2^62 and data is a slice of one datagram: no overflow.
        let mut end = offset + data.len() as u64;
        if end > self.cap {
            if offset >= self.cap {
                return Some(StreamError::CryptoOverCap);
            }
            data = &data[..(self.cap - offset) as usize];
            end = self.cap;
            reason = Some(StreamError::CryptoOverCap);
        }
        if end <= offset {
            return reason;
        }
        if crate::byte_ranges::merge_range(&mut self.ranges, offset, end, MAX_RANGES) > MAX_RANGES {
            return Some(StreamError::TooManyFragments);
        }
        // Both are at most the cap, itself a usize.
        let (start, end) = (offset as usize, end as usize);
        if end > self.buf.len() {
            self.buf.resize(end, 0);
        }
        self.buf[start..end].copy_from_slice(data);
        reason
    }

    /// Handshake messages completed since the last call: (type, body) pairs.
    pub fn messages(&mut self) -> (Vec<(u8, Vec<u8>)>, Option<StreamError>) {
        let mut out = Vec::new();
        if self.dead {
            return (out, None);
        }
        let available = match self.ranges.first() {
            Some(&(0, end)) => end,
            _ => return (out, None),
        };
        while available.saturating_sub(self.next) >= 4 {
            let p = self.next as usize;
            let length = u64::from(self.buf[p + 1]) << 16
                | u64::from(self.buf[p + 2]) << 8
                | u64::from(self.buf[p + 3]);
            let message_end = self.next + 4 + length;
            if message_end > self.cap {
                self.dead = true;
                return (out, Some(StreamError::MessageTooLarge));
            }
            if message_end > available {
                break;
            }
            out.push((self.buf[p], self.buf[p + 4..message_end as usize].to_vec()));
            self.next = message_end;
        }
        (out, None)
    }
}

/// Everything tied to one client DCID: keys, packet-number state and both CRYPTO streams.
struct KeyEpoch {
    version: &'static QuicVersion,
    dcid: Vec<u8>,
    client_keys: PacketKeys,
    /// Filled in on the first server Initial: its version may differ from the client's under
    /// compatible version negotiation (RFC 9368), and the keys follow the packet's version.
    server_keys: Vec<(u32, PacketKeys)>,
    client_largest: i64,
    server_largest: i64,
    client_stream: CryptoStream,
    server_stream: CryptoStream,
}

impl KeyEpoch {
    fn new(
        version: &'static QuicVersion,
        dcid: &[u8],
        client_keys: PacketKeys,
        cap: usize,
    ) -> Self {
        KeyEpoch {
            version,
            dcid: dcid.to_vec(),
            client_keys,
            server_keys: Vec::new(),
            client_largest: -1,
            server_largest: -1,
            client_stream: CryptoStream::new(cap),
            server_stream: CryptoStream::new(cap),
        }
    }

    fn server_keys_for(&mut self, version: &'static QuicVersion) -> usize {
        if let Some(i) = self
            .server_keys
            .iter()
            .position(|(n, _)| *n == version.number)
        {
            return i;
        }
        self.server_keys
            .push((version.number, side_keys(version, &self.dcid, Side::Server)));
        self.server_keys.len() - 1
    }
}

/// The ClientHello (and ServerHello) of one QUIC connection, from its Initial packets.
///
/// Create one per client connection, keyed by the caller on the UDP 4-tuple; DCID changes within
/// it (server-chosen IDs, Retry) are handled here. `done` turns true once nothing more can come
/// from Initial packets; `feed` then returns nothing at once, so a caller that keeps feeding a
/// long-lived connection pays almost nothing.
pub struct QuicInitialAssembler {
    pub errors: Errors,
    /// ClientHellos returned so far: the index of the last one.
    pub client_hellos: u64,
    /// ServerHellos (HelloRetryRequests included) returned so far.
    pub server_hellos: u64,
    /// Times a new DCID's keys replaced the current ones (Retry etc.).
    pub key_changes: u64,
    /// ClientHellos resent unchanged under new keys, not returned.
    pub repeated_hellos: u64,
    pub done: bool,
    cap: usize,
    epoch: Option<Box<KeyEpoch>>,
    datagrams: u32,
    /// A real ServerHello (not a HelloRetryRequest) was seen.
    server_finished: bool,
    /// Digests of the ClientHellos returned, to spot resends.
    returned: Vec<[u8; 32]>,
}

impl Default for QuicInitialAssembler {
    fn default() -> Self {
        Self::new()
    }
}

impl QuicInitialAssembler {
    /// An assembler with the default CRYPTO stream cap ([`DEFAULT_MAX_CRYPTO_BYTES`]).
    pub fn new() -> Self {
        Self::with_max_crypto_bytes(DEFAULT_MAX_CRYPTO_BYTES)
    }

    pub fn with_max_crypto_bytes(max_crypto_bytes: usize) -> Self {
        QuicInitialAssembler {
            errors: Errors::new(),
            client_hellos: 0,
            server_hellos: 0,
            key_changes: 0,
            repeated_hellos: 0,
            done: false,
            cap: max_crypto_bytes,
            epoch: None,
            datagrams: 0,
            server_finished: false,
            returned: Vec::new(),
        }
    }

    /// A client-to-server UDP payload; returns the ClientHello bodies it completed.
    pub fn feed(&mut self, datagram: &[u8]) -> Vec<Vec<u8>> {
        let mut hellos = Vec::new();
        if self.done {
            return hellos;
        }
        self.count_datagram();
        let (packets, reason) = split_long_packets(datagram);
        if let Some(reason) = reason {
            count(&mut self.errors, reason.as_str());
        }
        for packet in &packets {
            match packet.packet_type {
                PacketType::Handshake => {
                    // The client has Handshake keys, so it has the server's ServerHello: the
                    // Initial exchange, and with it every ClientHello, is over.
                    self.done = true;
                    continue;
                }
                PacketType::Initial => {}
                _ => continue,
            }
            let Some(payload) = self.open_client(datagram, packet) else {
                continue;
            };
            let cap_errors = &mut self.errors;
            // open_client always leaves the epoch that opened the packet in place.
            let Some(epoch) = self.epoch.as_mut() else {
                continue;
            };
            let stream = &mut epoch.client_stream;
            let google = packet.version.google_frames;
            for body in absorb(cap_errors, &payload, google, stream, CLIENT_HELLO) {
                let digest: [u8; 32] = Sha256::digest(&body).into();
                if self.returned.contains(&digest) {
                    self.repeated_hellos += 1;
                    continue;
                }
                if self.returned.len() < MAX_REMEMBERED_HELLOS {
                    self.returned.push(digest);
                }
                hellos.push(body);
            }
        }
        self.client_hellos += hellos.len() as u64;
        if packets.is_empty()
            && !datagram.is_empty()
            && datagram[0] & 0x80 == 0
            && self.epoch.is_some()
        {
            self.done = true; // a short-header (1-RTT) packet from the client: handshake done
        }
        hellos
    }

    /// A server-to-client UDP payload; returns the ServerHello bodies it completed.
    ///
    /// HelloRetryRequests are ServerHello messages too and are returned like them.
    pub fn feed_server(&mut self, datagram: &[u8]) -> Vec<Vec<u8>> {
        let mut hellos = Vec::new();
        if self.done {
            return hellos;
        }
        self.count_datagram();
        let Some(epoch) = self.epoch.as_mut() else {
            count(&mut self.errors, "server_before_client");
            return hellos;
        };
        let (packets, reason) = split_long_packets(datagram);
        if let Some(reason) = reason {
            count(&mut self.errors, reason.as_str());
        }
        for packet in &packets {
            if packet.packet_type != PacketType::Initial {
                continue;
            }
            let keys = epoch.server_keys_for(packet.version);
            let (pn, payload) = match unprotect(
                datagram,
                packet,
                &epoch.server_keys[keys].1,
                epoch.server_largest,
            ) {
                Ok(opened) => opened,
                Err(e) => {
                    count(&mut self.errors, e.server_str());
                    continue;
                }
            };
            epoch.server_largest = epoch.server_largest.max(pn);
            hellos.extend(absorb(
                &mut self.errors,
                &payload,
                packet.version.google_frames,
                &mut epoch.server_stream,
                SERVER_HELLO,
            ));
        }
        if hellos
            .iter()
            .any(|body| body.get(2..34) != Some(&HELLO_RETRY_REQUEST_RANDOM[..]))
        {
            self.server_finished = true;
        }
        self.server_hellos += hellos.len() as u64;
        if self.server_finished && self.client_hellos > 0 {
            self.done = true;
        }
        hellos
    }

    fn count_datagram(&mut self) {
        self.datagrams += 1;
        if self.datagrams >= MAX_DATAGRAMS {
            self.done = true;
        }
    }

    /// Decrypt a client Initial with the key epoch that authenticates it (which is then
    /// `self.epoch`), and return the payload.
    fn open_client(&mut self, datagram: &[u8], packet: &LongPacket<'_>) -> Option<Vec<u8>> {
        if let Some(current) = self.epoch.as_mut() {
            if current.version.number == packet.version.number {
                match unprotect(
                    datagram,
                    packet,
                    &current.client_keys,
                    current.client_largest,
                ) {
                    Ok((pn, payload)) => {
                        current.client_largest = current.client_largest.max(pn);
                        return Some(payload);
                    }
                    Err(e) => {
                        if current.dcid == packet.dcid {
                            count(&mut self.errors, e.as_str());
                            return None;
                        }
                    }
                }
            }
        }
        let client_keys = side_keys(packet.version, packet.dcid, Side::Client);
        let (pn, payload) = match unprotect(datagram, packet, &client_keys, -1) {
            Ok(opened) => opened,
            Err(e) => {
                count(&mut self.errors, e.as_str());
                return None;
            }
        };
        if self.epoch.is_some() {
            self.key_changes += 1;
        }
        let mut epoch = KeyEpoch::new(packet.version, packet.dcid, client_keys, self.cap);
        epoch.client_largest = pn;
        self.epoch = Some(Box::new(epoch));
        self.server_finished = false;
        Some(payload)
    }
}

/// Feed a decrypted payload's CRYPTO frames (in Google's framing if `google_frames`) to a stream;
/// the bodies of the completed messages of the `wanted` type (any other type is counted as
/// unexpected).
fn absorb(
    errors: &mut Errors,
    payload: &[u8],
    google_frames: bool,
    stream: &mut CryptoStream,
    wanted: u8,
) -> Vec<Vec<u8>> {
    let (frames, reason) = crypto_frames(payload, google_frames);
    if let Some(reason) = reason {
        count(errors, reason.as_str());
    }
    for (offset, data) in frames {
        if let Some(reason) = stream.add(offset, data) {
            count(errors, reason.as_str());
        }
    }
    let (messages, reason) = stream.messages();
    if let Some(reason) = reason {
        count(errors, reason.as_str());
    }
    let mut bodies = Vec::new();
    for (msg_type, body) in messages {
        if msg_type == wanted {
            bodies.push(body);
        } else {
            count(errors, "unexpected_handshake_message");
        }
    }
    bodies
}

/// Cheap test for a client's QUIC Initial, for the hot path before any allocation.
///
/// Checks: long header, a version we can decrypt (one `match` on the number), the Initial type
/// bits of that version, a DCID length within the limits, and the 1200-byte minimum every client
/// Initial datagram must be padded to (RFC 9000 section 14.1), the strongest filter against
/// look-alike UDP traffic.
pub fn looks_like_quic_initial(datagram: &[u8]) -> bool {
    if datagram.len() < 1200 || datagram[0] & 0x80 == 0 {
        return false;
    }
    let number = u32::from_be_bytes([datagram[1], datagram[2], datagram[3], datagram[4]]);
    let Some(version) = super::keys::version(number) else {
        return false;
    };
    let type_bits = usize::from((datagram[0] >> 4) & 0x03);
    version.packet_types[type_bits] == PacketType::Initial && datagram[5] <= 20
}
