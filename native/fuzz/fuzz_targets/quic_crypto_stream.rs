//! CRYPTO stream reassembly against a model: a plain byte array written piece by piece (later
//! copies overwrite, as the stream does), from which the handshake messages are read off the
//! contiguous prefix. The stream must hand out exactly the model's messages, in order, once each.
#![no_main]

use ja3svc_engine::quic::assembler::StreamError;
use ja3svc_engine::quic::CryptoStream;
use libfuzzer_sys::fuzz_target;

const CAP: usize = 4096; // small, so that the fuzzer reaches the cap and the message limit

struct Model {
    bytes: Vec<Option<u8>>,
    next: usize,
    dead: bool,
}

impl Model {
    fn add(&mut self, offset: u64, data: &[u8]) {
        for (i, &b) in data.iter().enumerate() {
            let at = offset + i as u64;
            if at < CAP as u64 {
                self.bytes[at as usize] = Some(b);
            }
        }
    }

    fn messages(&mut self) -> Vec<(u8, Vec<u8>)> {
        let mut out = Vec::new();
        if self.dead {
            return out;
        }
        let available = self.bytes.iter().position(Option::is_none).unwrap_or(CAP);
        let byte = |i: usize| self.bytes[i].unwrap_or(0);
        while available >= self.next + 4 {
            let p = self.next;
            let len = usize::from(byte(p + 1)) << 16
                | usize::from(byte(p + 2)) << 8
                | usize::from(byte(p + 3));
            if p + 4 + len > CAP {
                self.dead = true;
                break;
            }
            if p + 4 + len > available {
                break;
            }
            out.push((byte(p), (p + 4..p + 4 + len).map(byte).collect()));
            self.next = p + 4 + len;
        }
        out
    }
}

fuzz_target!(|data: &[u8]| {
    let mut stream = CryptoStream::new(CAP);
    let mut model = Model {
        bytes: vec![None; CAP],
        next: 0,
        dead: false,
    };
    // Each piece: offset(2, big-endian, scaled to reach past the cap) length(1) bytes.
    let mut rest = data;
    while rest.len() >= 3 {
        let offset = u64::from(u16::from_be_bytes([rest[0], rest[1]])) % (CAP as u64 + 512);
        let len = usize::from(rest[2]).min(rest.len() - 3);
        let piece = &rest[3..3 + len];
        rest = &rest[3 + len..];
        match stream.add(offset, piece) {
            Some(StreamError::TooManyFragments) => {} // refused whole: the model skips it too
            _ => model.add(offset, piece),
        }
        let (got, _) = stream.messages();
        assert_eq!(got, model.messages());
    }
});
