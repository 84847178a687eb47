//! Hostile input never panics: real captures from tests/pcaps, mutated at random (a fixed-seed
//! generator, so a failure reproduces), through the capture reader and the engine on every link
//! type, fed in chunks of random sizes. The outputs are compared with the Python reference in
//! tests/test_native_differential.py; this test only asks that nothing panics or loops.

use ja3svc_engine::capture::CaptureStream;
use ja3svc_engine::fingerprints::DovecotProfile;
use ja3svc_engine::json::write_record;
use ja3svc_engine::Engine;

const CAPTURES: [&[u8]; 6] = [
    include_bytes!("../../../tests/pcaps/openssl-hrr.pcap"),
    include_bytes!("../../../tests/pcaps/dumpcap.pcapng"),
    include_bytes!("../../../tests/pcaps/multi-linktype.pcapng"),
    include_bytes!("../../../tests/pcaps/dovecot-starttls-imap.pcap"),
    include_bytes!("../../../tests/pcaps/tcp-reorder-retransmit.pcap"),
    include_bytes!("../../../tests/pcaps/openssl-tls12-bigendian.pcap"),
];

const LINKTYPES: [u32; 11] = [0, 1, 12, 14, 101, 108, 113, 228, 229, 276, 147];

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn mutate(rng: &mut Rng, data: &[u8]) -> Vec<u8> {
    let mut d = data.to_vec();
    for _ in 0..1 + rng.below(16) {
        let at = rng.below(d.len());
        match rng.below(5) {
            0 | 1 => {
                if !d.is_empty() {
                    d[at] = rng.next() as u8;
                }
            }
            2 => {
                let n = 1 + rng.below(8);
                for _ in 0..n {
                    d.insert(at.min(d.len()), rng.next() as u8);
                }
            }
            3 => {
                let end = (at + 1 + rng.below(8)).min(d.len());
                d.drain(at.min(end)..end);
            }
            _ => d.truncate(at),
        }
    }
    d
}

fn run(data: &[u8], rng: &mut Rng, linktype_override: Option<u32>) -> usize {
    let mut engine = Engine::new(3, 5.0, DovecotProfile::OpenSsl32);
    let mut stream = CaptureStream::new();
    let mut lines = String::new();
    {
        let mut sink = |ts: f64, linktype: u32, frame: &[u8], _wire: u64| {
            engine.feed_frame(ts, linktype_override.unwrap_or(linktype), frame);
        };
        let mut pos = 0;
        while pos < data.len() {
            let n = 1 + rng.below(3000);
            let end = (pos + n).min(data.len());
            if stream.feed(&data[pos..end], &mut sink).is_err() {
                break;
            }
            pos = end;
        }
        let _ = stream.finish(&mut sink);
    }
    engine.finish();
    let mut memo = Default::default();
    for s in engine.found.drain(..) {
        write_record(&s, "x", DovecotProfile::OpenSsl30, &mut memo, &mut lines);
    }
    lines.len()
}

#[test]
fn mutated_captures_never_panic() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut output = 0;
    for round in 0..1500 {
        let base = CAPTURES[round % CAPTURES.len()];
        let data = mutate(&mut rng, base);
        let linktype = if round % 3 == 0 { Some(LINKTYPES[rng.below(LINKTYPES.len())]) } else { None };
        output += run(&data, &mut rng, linktype);
    }
    assert!(output > 0, "no hello survived any mutation: the test is not reaching the parsers");
}

#[test]
fn random_frames_on_every_link_type_never_panic() {
    let mut rng = Rng(42);
    let mut engine = Engine::new(16, 30.0, DovecotProfile::OpenSsl30);
    for i in 0..200_000u32 {
        let len = rng.below(120);
        let mut frame: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        // Often a plausible start (Ethernet + IPv4/IPv6 + TCP/UDP) so the deeper layers are hit.
        if len > 60 && i % 2 == 0 {
            frame[12] = if i % 4 == 0 { 0x08 } else { 0x86 };
            frame[13] = if i % 4 == 0 { 0x00 } else { 0xDD };
        }
        let linktype = LINKTYPES[rng.below(LINKTYPES.len())];
        engine.feed_frame(f64::from(i) * 0.01, linktype, &frame);
    }
    engine.finish();
}
