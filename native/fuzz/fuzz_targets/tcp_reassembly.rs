//! TCP reassembly of one direction: a stream cut into segments (fuzzer-chosen sizes, order and
//! duplicates, an initial sequence number that may wrap) must come out as a prefix of the
//! stream, and, when every piece was sent and the hold-back limits were not hit, as the whole
//! stream with nothing left held.
#![no_main]

use ja3svc_engine::tcp::TcpReassembler;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 6 {
        return;
    }
    let isn = u32::from_be_bytes([data[0], data[1], data[2], data[3]]);
    let pieces = usize::from(data[4] % 16) + 1;
    let plan = &data[5..5 + (2 * pieces).min(data.len() - 5)];
    let stream = &data[5 + plan.len()..];
    // Cut points from the first half of the plan, the sending order from the second.
    let mut cuts: Vec<usize> = plan
        .iter()
        .take(pieces - 1)
        .map(|&b| usize::from(b) * stream.len() / 256)
        .collect();
    cuts.push(0);
    cuts.push(stream.len());
    cuts.sort_unstable();
    cuts.dedup();
    let segments: Vec<(usize, usize)> = cuts.windows(2).map(|w| (w[0], w[1])).collect();
    let mut order: Vec<usize> = plan
        .iter()
        .skip(pieces - 1)
        .map(|&b| usize::from(b) % segments.len().max(1))
        .collect();
    order.extend(0..segments.len()); // every piece at least once, after the chosen ones

    let mut r = TcpReassembler::default();
    r.syn(isn);
    let mut got = Vec::new();
    for i in order {
        let Some(&(a, b)) = segments.get(i) else {
            continue;
        };
        let mut out = Vec::new();
        let seq = isn.wrapping_add(1).wrapping_add(a as u32);
        match r.push(seq, &stream[a..b], &mut out) {
            Some(slice) => got.extend_from_slice(slice),
            None => got.extend_from_slice(&out),
        }
        assert!(
            stream.starts_with(&got),
            "reassembled bytes are not the stream"
        );
    }
    if !r.gap {
        assert_eq!(
            got, stream,
            "every piece was sent but the stream is incomplete"
        );
        assert_eq!(r.buffered(), 0);
    }
});
