//! DTLS 1.0/1.2 handshakes over UDP: records, fragmented handshake messages, the hellos in them.
//!
//! The same contract as `ja3svc/dtls.py` (and as [`crate::quic`]), which the differential test
//! holds this to:
//! - No IO: the caller feeds whole UDP payloads, client-to-server through
//!   [`DtlsHandshakeAssembler::feed`], server-to-client through
//!   [`DtlsHandshakeAssembler::feed_server`], and gets the hello bodies completed by them.
//! - Nothing panics on bad input; a datagram or record that cannot be used adds one to
//!   `errors[reason]`.
//! - Memory is bounded: only ClientHello/ServerHello messages are reassembled, each at most
//!   [`MAX_MESSAGE_LENGTH`] bytes, at most [`MAX_PENDING`] at a time, each in at most
//!   [`MAX_FRAGMENTS`] pieces.
//!
//! Wire format (RFC 6347 sections 4.1 and 4.2.2):
//! - record header, 13 bytes: type(1) version(2) epoch(2) sequence_number(6) length(2);
//! - handshake header, 12 bytes: msg_type(1) length(3) message_seq(2) fragment_offset(3)
//!   fragment_length(3); a message may be split over several records and datagrams, in any
//!   order.
//!
//! Only epoch 0 is readable; later epochs are encrypted and skipped.
//!
//! A DTLS ClientHello carries a `cookie` vector right after `session_id`. The first hello has an
//! empty cookie; a server that wants proof of address answers with HelloVerifyRequest and the
//! client sends a second ClientHello (next message_seq) with the cookie. Each is returned, in
//! order, with the cookie vector cut out so that the TLS hello parser reads it like a TLS hello.
//! Retransmissions reuse the message_seq and are not returned again.

use std::collections::BTreeMap;

/// This module is the real port (see `quic::IMPLEMENTED`).
pub const IMPLEMENTED: bool = true;

use crate::byte_ranges::merge_range;

pub const CONTENT_HANDSHAKE: u8 = 22;
pub const RECORD_HEADER: usize = 13;
pub const HANDSHAKE_HEADER: usize = 12;
pub const CLIENT_HELLO: u8 = 1;
pub const SERVER_HELLO: u8 = 2;
pub const HELLO_VERIFY_REQUEST: u8 = 3;
/// Far above any real hello; the 24-bit field allows 16 MiB.
pub const MAX_MESSAGE_LENGTH: usize = 64 * 1024;
/// Hello messages being reassembled at once, per direction.
pub const MAX_PENDING: usize = 4;
/// Disjoint pieces per message.
pub const MAX_FRAGMENTS: usize = 64;
/// An epoch-0 handshake has a handful of messages; higher is garbage.
pub const MAX_MESSAGE_SEQ: u16 = 64;
/// Offset of the 32-byte random in both hello bodies.
const RANDOM_AT: usize = 2;

/// Record versions of DTLS 1.0 (0xfeff), 1.2 (0xfefd); DTLS 1.3 ClientHellos also use 0xfefd on
/// the record layer. 0x0100 is OpenSSL's pre-RFC DTLS 1.0 ("DTLS1_BAD_VER").
#[inline]
pub fn is_record_version(version: u16) -> bool {
    matches!(version, 0xfeff | 0xfefd | 0x0100)
}

/// Counters of what could not be used, by reason (the Python reference's names).
pub type Errors = BTreeMap<&'static str, u64>;

fn count(errors: &mut Errors, reason: &'static str) {
    *errors.entry(reason).or_default() += 1;
}

fn be24(b: &[u8]) -> usize {
    usize::from(b[0]) << 16 | usize::from(b[1]) << 8 | usize::from(b[2])
}

struct PendingMessage {
    seq: u16,
    length: usize,
    buf: Vec<u8>,
    ranges: Vec<(u64, u64)>,
}

impl PendingMessage {
    /// Store a fragment (already checked to lie within the message); false when it would
    /// exceed the fragment limit.
    fn add(&mut self, offset: usize, data: &[u8]) -> bool {
        let end = offset + data.len();
        if merge_range(&mut self.ranges, offset as u64, end as u64, MAX_FRAGMENTS) > MAX_FRAGMENTS {
            return false;
        }
        self.buf[offset..end].copy_from_slice(data);
        true
    }

    fn complete(&self) -> bool {
        self.ranges == [(0, self.length as u64)] || self.length == 0
    }
}

/// Handshake reassembly for one direction of the association.
#[derive(Default)]
struct Direction {
    pending: Vec<PendingMessage>,
    /// message_seq values already returned (bit n for seq n; seq is at most MAX_MESSAGE_SEQ).
    done: u128,
    /// message_seq -> random of the hello returned (shorter than 32 bytes for a short body).
    randoms: Vec<(u16, Vec<u8>)>,
}

impl Direction {
    fn is_done(&self, seq: u16) -> bool {
        self.done & (1u128 << seq) != 0
    }

    fn random(&self, seq: u16) -> Option<&[u8]> {
        self.randoms
            .iter()
            .find(|(s, _)| *s == seq)
            .map(|(_, r)| r.as_slice())
    }
}

/// The ClientHellos (and ServerHellos) of one DTLS association, keyed by the caller on the UDP
/// 4-tuple. `client_hellos` counts the ClientHellos returned so far, so the index of a returned
/// hello is its position in that count (1 = first, 2 = after HelloVerifyRequest...).
#[derive(Default)]
pub struct DtlsHandshakeAssembler {
    pub errors: Errors,
    /// ClientHellos returned so far (the index of the last one).
    pub client_hellos: u64,
    /// ServerHellos returned so far.
    pub server_hellos: u64,
    pub hello_verify_requests: u64,
    pub retransmissions: u64,
    client: Direction,
    server: Direction,
}

impl DtlsHandshakeAssembler {
    pub fn new() -> Self {
        Self::default()
    }

    /// A client-to-server UDP payload; ClientHello bodies, cookie removed.
    pub fn feed(&mut self, datagram: &[u8]) -> Vec<Vec<u8>> {
        let mut client = std::mem::take(&mut self.client);
        let bodies = self.records(datagram, &mut client, CLIENT_HELLO);
        self.client = client;
        let mut out = Vec::with_capacity(bodies.len());
        for body in bodies {
            match strip_cookie(&body) {
                Some(stripped) => out.push(stripped),
                None => count(&mut self.errors, "bad_client_hello"),
            }
        }
        self.client_hellos += out.len() as u64;
        out
    }

    /// A server-to-client UDP payload; ServerHello bodies (same layout as TLS).
    pub fn feed_server(&mut self, datagram: &[u8]) -> Vec<Vec<u8>> {
        let mut server = std::mem::take(&mut self.server);
        let bodies = self.records(datagram, &mut server, SERVER_HELLO);
        self.server = server;
        self.server_hellos += bodies.len() as u64;
        bodies
    }

    fn records(&mut self, datagram: &[u8], direction: &mut Direction, wanted: u8) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let n = datagram.len();
        let mut pos = 0;
        while pos < n {
            if pos + RECORD_HEADER > n {
                count(&mut self.errors, "truncated_record");
                break;
            }
            let content_type = datagram[pos];
            let version = u16::from_be_bytes([datagram[pos + 1], datagram[pos + 2]]);
            let epoch = u16::from_be_bytes([datagram[pos + 3], datagram[pos + 4]]);
            let length = usize::from(u16::from_be_bytes([datagram[pos + 11], datagram[pos + 12]]));
            if !(20..=25).contains(&content_type) || !is_record_version(version) {
                // Not a DTLS 1.0/1.2 record header (DTLS 1.3 encrypted records use another
                // header whose length we cannot know): nothing after it can be framed.
                count(&mut self.errors, "not_a_record");
                break;
            }
            let body_at = pos + RECORD_HEADER;
            if length > n - body_at {
                count(&mut self.errors, "truncated_record");
                break;
            }
            if content_type == CONTENT_HANDSHAKE && epoch == 0 {
                self.handshake(
                    &datagram[body_at..body_at + length],
                    direction,
                    wanted,
                    &mut out,
                );
            }
            pos = body_at + length;
        }
        out
    }

    fn handshake(
        &mut self,
        buf: &[u8],
        direction: &mut Direction,
        wanted: u8,
        out: &mut Vec<Vec<u8>>,
    ) {
        let end = buf.len();
        let mut pos = 0;
        while pos < end {
            if pos + HANDSHAKE_HEADER > end {
                count(&mut self.errors, "truncated_handshake_header");
                break;
            }
            let msg_type = buf[pos];
            let length = be24(&buf[pos + 1..]);
            let seq = u16::from_be_bytes([buf[pos + 4], buf[pos + 5]]);
            let frag_offset = be24(&buf[pos + 6..]);
            let frag_length = be24(&buf[pos + 9..]);
            let data_at = pos + HANDSHAKE_HEADER;
            if frag_length > end - data_at {
                count(&mut self.errors, "truncated_fragment");
                break;
            }
            pos = data_at + frag_length;
            if msg_type == HELLO_VERIFY_REQUEST && wanted == SERVER_HELLO && frag_offset == 0 {
                self.hello_verify_requests += 1;
            }
            if msg_type != wanted {
                continue;
            }
            if frag_offset + frag_length > length {
                count(&mut self.errors, "fragment_beyond_message");
                continue;
            }
            if length > MAX_MESSAGE_LENGTH {
                count(&mut self.errors, "message_too_large");
                continue;
            }
            if seq > MAX_MESSAGE_SEQ {
                count(&mut self.errors, "message_seq_out_of_range");
                continue;
            }
            if let Some(body) =
                self.fragment(direction, seq, length, frag_offset, &buf[data_at..pos])
            {
                out.push(body);
            }
        }
    }

    fn fragment(
        &mut self,
        direction: &mut Direction,
        seq: u16,
        length: usize,
        offset: usize,
        data: &[u8],
    ) -> Option<Vec<u8>> {
        if direction.is_done(seq) {
            // A retransmission - unless it is a whole hello with a new random: the client
            // started a new association on the same 4-tuple, so start over.
            let whole = offset == 0 && data.len() == length && length >= RANDOM_AT + 32;
            let random = whole.then(|| &data[RANDOM_AT..RANDOM_AT + 32]);
            if random.is_none() || random == direction.random(seq) {
                self.retransmissions += 1;
                return None;
            }
            *direction = Direction::default();
        }
        let index = match direction.pending.iter().position(|p| p.seq == seq) {
            Some(i) => {
                if direction.pending[i].length != length {
                    count(&mut self.errors, "inconsistent_fragment");
                    return None;
                }
                i
            }
            None => {
                if direction.pending.len() >= MAX_PENDING {
                    count(&mut self.errors, "too_many_pending_messages");
                    return None;
                }
                direction.pending.push(PendingMessage {
                    seq,
                    length,
                    buf: vec![0; length],
                    ranges: Vec::new(),
                });
                direction.pending.len() - 1
            }
        };
        let pending = &mut direction.pending[index];
        if !pending.add(offset, data) {
            count(&mut self.errors, "too_many_fragments");
            return None;
        }
        if !pending.complete() {
            return None;
        }
        let body = direction.pending.swap_remove(index).buf;
        direction.done |= 1u128 << seq;
        let random = body[RANDOM_AT.min(body.len())..(RANDOM_AT + 32).min(body.len())].to_vec();
        match direction.randoms.iter_mut().find(|(s, _)| *s == seq) {
            Some(slot) => slot.1 = random,
            None => direction.randoms.push((seq, random)),
        }
        Some(body)
    }
}

/// A DTLS ClientHello body with its cookie vector removed; None if the body is too short.
///
/// Layout: client_version(2) random(32) session_id<0..32> cookie<0..255> cipher_suites ...
pub fn strip_cookie(body: &[u8]) -> Option<Vec<u8>> {
    let sid_at = 34;
    if body.len() <= sid_at {
        return None;
    }
    let cookie_at = sid_at + 1 + usize::from(body[sid_at]);
    if body.len() <= cookie_at {
        return None;
    }
    let rest_at = cookie_at + 1 + usize::from(body[cookie_at]);
    if body.len() < rest_at {
        return None;
    }
    let mut out = Vec::with_capacity(body.len() - (rest_at - cookie_at));
    out.extend_from_slice(&body[..cookie_at]);
    out.extend_from_slice(&body[rest_at..]);
    Some(out)
}

/// Cheap test for a datagram starting with an epoch-0 DTLS handshake record holding a
/// ClientHello fragment, for the hot path before creating an assembler.
pub fn looks_like_dtls_client_hello(datagram: &[u8]) -> bool {
    starts_with_epoch0_handshake(datagram, CLIENT_HELLO)
}

/// The same for a ServerHello fragment: a capture that sees only the server's side (one-way
/// capture, asymmetric routing) starts the association there.
pub fn looks_like_dtls_server_hello(datagram: &[u8]) -> bool {
    starts_with_epoch0_handshake(datagram, SERVER_HELLO)
}

fn starts_with_epoch0_handshake(datagram: &[u8], msg_type: u8) -> bool {
    datagram.len() >= RECORD_HEADER + HANDSHAKE_HEADER
        && datagram[0] == CONTENT_HANDSHAKE
        && is_record_version(u16::from_be_bytes([datagram[1], datagram[2]]))
        && datagram[3] == 0
        && datagram[4] == 0
        && datagram[RECORD_HEADER] == msg_type
}

#[cfg(test)]
mod tests {
    //! Fixtures are built from annotated pieces (RFC 6347's layouts); capture expectations are
    //! checked by the differential test against the Python reference and tshark.

    use super::*;

    const RANDOM: [u8; 32] = {
        let mut r = [0u8; 32];
        let mut i = 0;
        while i < 32 {
            r[i] = i as u8;
            i += 1;
        }
        r
    };
    const COOKIE: [u8; 20] = [
        0xc0, 0xff, 0xee, 0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb,
        0xcc, 0xdd, 0xee, 0xff, 0x00,
    ];

    fn client_hello_body(cookie: &[u8], random: &[u8; 32]) -> Vec<u8> {
        let mut b = vec![0xfe, 0xfd]; // client_version: DTLS 1.2
        b.extend(random);
        b.push(0); // session_id: empty
        b.push(cookie.len() as u8); // cookie: DTLS only
        b.extend(cookie);
        b.extend([0x00, 0x04, 0xc0, 0x2b, 0xc0, 0x2f]); // cipher_suites: 2
        b.extend([0x01, 0x00]); // compression_methods: null
        b.extend([0x00, 0x1a]); // extensions: 26 bytes
        b.extend([0x00, 0x00, 0x00, 0x0e, 0x00, 0x0c, 0x00, 0x00, 0x09]); // server_name
        b.extend(b"dtls.test");
        b.extend([0x00, 0x0a, 0x00, 0x04, 0x00, 0x02, 0x00, 0x1d]); // supported_groups: x25519
        b
    }

    /// What strip_cookie must produce: the same hello with the cookie vector cut out.
    fn tls_view(body: &[u8]) -> Vec<u8> {
        let cookie_at = 2 + 32 + 1;
        [
            &body[..cookie_at],
            &body[cookie_at + 1 + usize::from(body[cookie_at])..],
        ]
        .concat()
    }

    fn handshake(
        msg_type: u8,
        body: &[u8],
        seq: u16,
        offset: usize,
        length: Option<usize>,
    ) -> Vec<u8> {
        let fragment = &body[offset..offset + length.unwrap_or(body.len() - offset)];
        let mut h = vec![msg_type];
        h.extend(&(body.len() as u32).to_be_bytes()[1..]); // length of the whole message
        h.extend(seq.to_be_bytes()); // message_seq
        h.extend(&(offset as u32).to_be_bytes()[1..]); // fragment_offset
        h.extend(&(fragment.len() as u32).to_be_bytes()[1..]); // fragment_length
        h.extend(fragment);
        h
    }

    fn whole(msg_type: u8, body: &[u8], seq: u16) -> Vec<u8> {
        handshake(msg_type, body, seq, 0, None)
    }

    fn record_with(payload: &[u8], content_type: u8, epoch: u16, seq: u64) -> Vec<u8> {
        let mut r = vec![content_type, 0xfe, 0xfd];
        r.extend(epoch.to_be_bytes());
        r.extend(&seq.to_be_bytes()[2..]); // 48-bit sequence number
        r.extend((payload.len() as u16).to_be_bytes());
        r.extend(payload);
        r
    }

    fn record(payload: &[u8]) -> Vec<u8> {
        record_with(payload, 22, 0, 0)
    }

    fn errors(a: &DtlsHandshakeAssembler) -> Vec<(&'static str, u64)> {
        a.errors.iter().map(|(k, v)| (*k, *v)).collect()
    }

    #[test]
    fn strip_cookie_cuts_the_cookie_vector() {
        let with_cookie = client_hello_body(&COOKIE, &RANDOM);
        assert_eq!(strip_cookie(&with_cookie), Some(tls_view(&with_cookie)));
        assert_eq!(
            tls_view(&with_cookie),
            tls_view(&client_hello_body(b"", &RANDOM))
        );
        assert_eq!(
            strip_cookie(&with_cookie).unwrap().len(),
            with_cookie.len() - 1 - COOKIE.len()
        );
        assert_eq!(strip_cookie(&with_cookie[..40]), None);
        assert_eq!(strip_cookie(b""), None);
    }

    #[test]
    fn hello_verify_request_exchange_gives_two_hellos_in_order() {
        let mut a = DtlsHandshakeAssembler::new();
        let first = record(&whole(1, &client_hello_body(b"", &RANDOM), 0));
        assert_eq!(
            a.feed(&first),
            vec![tls_view(&client_hello_body(b"", &RANDOM))]
        );
        let mut hvr = vec![0xfe, 0xfd, COOKIE.len() as u8];
        hvr.extend(COOKIE);
        assert!(a.feed_server(&record(&whole(3, &hvr, 0))).is_empty());
        assert_eq!(a.hello_verify_requests, 1);
        let second = record_with(&whole(1, &client_hello_body(&COOKIE, &RANDOM), 1), 22, 0, 1);
        assert_eq!(
            a.feed(&second),
            vec![tls_view(&client_hello_body(&COOKIE, &RANDOM))]
        );
        assert_eq!(a.client_hellos, 2);
        assert!(a.feed(&second).is_empty()); // retransmission
        assert_eq!(a.retransmissions, 1);
        assert!(a.errors.is_empty());
    }

    #[test]
    fn fragments_out_of_order_across_datagrams_and_records() {
        let body = client_hello_body(&COOKIE, &RANDOM);
        let frags: Vec<Vec<u8>> = [(0, 30), (30, 40), (70, body.len() - 70)]
            .iter()
            .map(|&(o, n)| handshake(1, &body, 1, o, Some(n)))
            .collect();
        let mut a = DtlsHandshakeAssembler::new();
        assert!(a.feed(&record(&frags[2])).is_empty());
        let ccs = record_with(&[1], 20, 0, 0);
        assert!(a.feed(&[record(&frags[0]), ccs].concat()).is_empty());
        assert!(a.feed(&record(&frags[0])).is_empty()); // duplicate fragment
        assert_eq!(a.feed(&record(&frags[1])), vec![tls_view(&body)]);
        assert!(a.errors.is_empty());
    }

    #[test]
    fn two_fragments_in_one_record_and_encrypted_records_skipped() {
        let body = client_hello_body(b"", &RANDOM);
        let both = [
            handshake(1, &body, 0, 0, Some(50)),
            handshake(1, &body, 0, 50, None),
        ]
        .concat();
        let datagram = [record_with(&[0x99; 40], 22, 1, 0), record(&both)].concat();
        let mut a = DtlsHandshakeAssembler::new();
        assert_eq!(a.feed(&datagram), vec![tls_view(&body)]);
        assert!(a.errors.is_empty());
    }

    #[test]
    fn new_association_on_the_same_four_tuple_is_reported() {
        let mut a = DtlsHandshakeAssembler::new();
        let first = client_hello_body(b"", &RANDOM);
        assert_eq!(
            a.feed(&record(&whole(1, &first, 0))),
            vec![tls_view(&first)]
        );
        let other = client_hello_body(b"", &[0; 32]);
        assert_eq!(
            a.feed(&record(&whole(1, &other, 0))),
            vec![tls_view(&other)]
        );
        assert_eq!(a.client_hellos, 2);
        assert_eq!(a.retransmissions, 0);
    }

    #[test]
    fn server_hello_is_returned_whole() {
        let mut sh = vec![0xfe, 0xfd]; // server_version: DTLS 1.2
        sh.extend(RANDOM);
        sh.push(0); // session_id: empty (no cookie in a ServerHello)
        sh.extend([0xc0, 0x2b, 0x00]); // cipher_suite, compression_method
        sh.extend([0x00, 0x05, 0xff, 0x01, 0x00, 0x01, 0x00]); // renegotiation_info, empty
        let mut a = DtlsHandshakeAssembler::new();
        assert_eq!(a.feed_server(&record(&whole(2, &sh, 1))), vec![sh]);
        assert_eq!(a.server_hellos, 1);
    }

    #[test]
    fn bad_input_is_counted_not_panicked() {
        let body = client_hello_body(b"", &RANDOM);
        let full = record(&whole(1, &body, 0));
        let hs = whole(1, &body, 0);
        // a 16 MiB message, fragment at offset 0 of length 16
        let mut too_large = vec![0x01, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 0x10];
        too_large.extend([0u8; 16]);
        // a 16-byte message, fragment at offset 8 of length 12
        let mut beyond = vec![0x01, 0, 0, 0x10, 0, 0, 0, 0, 0x08, 0, 0, 0x0c];
        beyond.extend([0u8; 12]);
        let mut tls = b"\x17\x03\x03\x00\x05hello".to_vec();
        tls.extend([0u8; 10]);
        let short_hello = client_hello_body(&[0xff; 3], &RANDOM)[..37].to_vec();
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (full[..full.len() - 5].to_vec(), "truncated_record"),
            (record(&hs[..8]), "truncated_handshake_header"),
            (record(&hs[..hs.len() - 5]), "truncated_fragment"),
            (tls, "not_a_record"),
            (record(&too_large), "message_too_large"),
            (record(&beyond), "fragment_beyond_message"),
            (record(&whole(1, &body, 500)), "message_seq_out_of_range"),
            (record(&whole(1, &short_hello, 0)), "bad_client_hello"),
        ];
        for (datagram, reason) in cases {
            let mut a = DtlsHandshakeAssembler::new();
            assert!(a.feed(&datagram).is_empty(), "{reason}");
            assert_eq!(errors(&a), vec![(reason, 1)]);
        }
    }

    #[test]
    fn pending_messages_and_fragments_are_bounded() {
        let mut a = DtlsHandshakeAssembler::new();
        let body = client_hello_body(b"", &RANDOM);
        for seq in 0..6 {
            a.feed(&record(&handshake(1, &body, seq, 0, Some(10))));
        }
        assert_eq!(errors(&a), vec![("too_many_pending_messages", 2)]);
        let mut a = DtlsHandshakeAssembler::new();
        let big = [0u8; 1000];
        for offset in (0..280).step_by(2) {
            a.feed(&record(&handshake(1, &big, 0, offset, Some(1))));
        }
        assert_eq!(a.errors["too_many_fragments"], 140 - 64);
    }

    #[test]
    fn inconsistent_fragment_lengths() {
        let mut a = DtlsHandshakeAssembler::new();
        a.feed(&record(&handshake(1, &[0; 100], 0, 0, Some(10))));
        a.feed(&record(&handshake(1, &[0; 120], 0, 10, Some(10))));
        assert_eq!(errors(&a), vec![("inconsistent_fragment", 1)]);
    }

    #[test]
    fn zero_length_fragments_and_messages() {
        // An empty ClientHello completes at once (and is too short to strip); an empty
        // fragment inside a message is a range like any other and does not block completion.
        let mut a = DtlsHandshakeAssembler::new();
        assert!(a.feed(&record(&whole(1, b"", 0))).is_empty());
        assert_eq!(errors(&a), vec![("bad_client_hello", 1)]);
        let body = client_hello_body(b"", &RANDOM);
        let mut a = DtlsHandshakeAssembler::new();
        assert!(a
            .feed(&record(&handshake(1, &body, 0, 20, Some(0))))
            .is_empty());
        assert!(a
            .feed(&record(&handshake(1, &body, 0, 0, Some(20))))
            .is_empty());
        assert_eq!(
            a.feed(&record(&handshake(1, &body, 0, 20, None))),
            vec![tls_view(&body)]
        );
    }

    #[test]
    fn looks_like_dtls_client_hello_filters() {
        let body = client_hello_body(b"", &RANDOM);
        assert!(looks_like_dtls_client_hello(&record(&whole(1, &body, 0))));
        assert!(!looks_like_dtls_client_hello(&record(&whole(2, &body, 0))));
        assert!(looks_like_dtls_server_hello(&record(&whole(2, &body, 0))));
        assert!(!looks_like_dtls_server_hello(&record(&whole(1, &body, 0))));
        assert!(!looks_like_dtls_client_hello(&record_with(
            &whole(1, &body, 0),
            22,
            1,
            0
        )));
        let mut tls = vec![0x16, 0x03, 0x01, 0x00, 0x05];
        tls.extend([0u8; 30]);
        assert!(!looks_like_dtls_client_hello(&tls)); // TLS over UDP?
        assert!(!looks_like_dtls_client_hello(&[0x16, 0xfe, 0xfd]));
    }

    #[test]
    fn every_truncation_of_a_fragmented_exchange_is_survived() {
        let body = client_hello_body(&COOKIE, &RANDOM);
        let datagram = [
            record(&handshake(1, &body, 1, 0, Some(30))),
            record(&handshake(1, &body, 1, 30, None)),
        ]
        .concat();
        for cut in 0..=datagram.len() {
            let mut a = DtlsHandshakeAssembler::new();
            let got = a.feed(&datagram[..cut]);
            assert_eq!(got.len(), usize::from(cut == datagram.len()));
            a.feed_server(&datagram[..cut]);
        }
    }
}
