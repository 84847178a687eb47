//! The TLS record/handshake stream parser on any bytes, cut into fuzzer-chosen TCP segments:
//! never a panic, only ClientHello/ServerHello bodies come out, and nothing comes out after the
//! parser said it is done.
//!
//! Not checked: that the segmentation cannot change the result. It can, in the Python reference
//! this ports and so here (the differential test holds the two to each other): the
//! "joined an established connection" and SSLv2 checks look at the first chunk only, and in
//! plaintext (STARTTLS) a chunk that starts with 0x16 is taken for a record header without the
//! newline a mid-chunk one needs. This target found both; they are for the reference to decide.
#![no_main]

use ja3svc_engine::tls_stream::{StreamItem, TlsStreamParser};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&n, rest)) = data.split_first() else {
        return;
    };
    let n = usize::from(n % 8).min(rest.len());
    let (plan, stream) = rest.split_at(n);
    let mut cuts: Vec<usize> = plan
        .iter()
        .map(|&b| usize::from(b) * stream.len() / 256)
        .collect();
    cuts.sort_unstable();
    cuts.push(stream.len());
    let mut parser = TlsStreamParser::default();
    let mut items = Vec::new();
    let mut start = 0;
    for cut in cuts {
        let was_done = parser.done();
        let before = items.len();
        parser.feed(&stream[start..cut], &mut items);
        start = cut;
        assert!(!was_done || items.len() == before, "items after done");
    }
    for item in &items {
        if let StreamItem::Hello(t, _) = item {
            assert!(*t == 1 || *t == 2, "handshake type {t} returned as a hello");
        }
    }
});
