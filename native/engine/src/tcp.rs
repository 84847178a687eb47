//! One direction of a TCP connection: segments in any order in, the byte stream in order out
//! (port of `ja3svc/tcp_reassembly.py`; same rules: sequence numbers modulo 2^32, anchored at
//! SYN + 1 or the first data segment, first copy wins, bounded hold-back; of several SYNs with
//! different numbers before any data, the one the peer acknowledges).
//!
//! Hand-written: the reassemblers in crates (e.g. Suricata's is C, pnet has none) do not follow
//! the reference's "first copy wins" and limits, which the differential test holds us to.

pub const MAX_BUFFERED: usize = 65536;
pub const MAX_SEGMENTS: usize = 64;
/// Distinct SYN sequence numbers remembered per direction until the peer's ACK picks one.
pub const MAX_SYN_ANCHORS: usize = 4;

/// `a - b` as a signed 32-bit distance.
pub fn seq_diff(a: u32, b: u32) -> i64 {
    a.wrapping_sub(b) as i32 as i64
}

#[derive(Default, Debug)]
pub struct TcpReassembler {
    pub next_seq: Option<u32>,
    /// Held segments ahead of the stream, in the order they were held; never overlapping.
    ahead: Vec<(u32, Vec<u8>)>,
    ahead_bytes: usize,
    pub gap: bool,
    /// SYN + 1 of every distinct SYN seen before any data: None unless there were several
    /// (the engine then shows this direction the peer's acknowledgement numbers).
    pub anchors: Option<Vec<u32>>,
    /// Where the first SYN anchored the stream.
    syn_start: Option<u32>,
}

impl TcpReassembler {
    pub fn syn(&mut self, seq: u32) {
        let start = seq.wrapping_add(1);
        let nxt = match self.next_seq {
            None => {
                self.next_seq = Some(start);
                self.syn_start = Some(start);
                return;
            }
            Some(n) => n,
        };
        if start == nxt || !self.ahead.is_empty() {
            return;
        }
        match &mut self.anchors {
            // A second SYN with another sequence number while the stream is still at the
            // first one's start (nothing delivered or held).
            None => {
                if self.syn_start == Some(nxt) {
                    self.anchors = Some(vec![nxt, start]);
                }
            }
            Some(a) => {
                if a.contains(&nxt) && !a.contains(&start) && a.len() < MAX_SYN_ANCHORS {
                    a.push(start);
                }
            }
        }
    }

    /// The peer acknowledged `ack`: if that is one of several SYNs' starts, follow it.
    /// Decided once: after this (or once data has moved the stream on) SYNs are not revisited.
    pub fn acked(&mut self, ack: u32) {
        if let Some(a) = self.anchors.take() {
            if a.contains(&ack) && self.next_seq.is_some_and(|n| n != ack && a.contains(&n)) {
                // Bytes held so far were placed relative to the other SYN's numbers.
                self.next_seq = Some(ack);
                self.ahead.clear();
                self.ahead_bytes = 0;
            }
        }
    }

    pub fn buffered(&self) -> usize {
        self.ahead_bytes
    }

    /// Add a segment; call `deliver` with the bytes now in order, in order (maybe not at all).
    pub fn push<'a>(&mut self, seq: u32, payload: &'a [u8], out: &mut Vec<u8>) -> Option<&'a [u8]> {
        // Returns Some(slice) when the in-order bytes are exactly a slice of `payload` (the
        // common case: no copy); otherwise appends them to `out` and returns None.
        let nxt = match self.next_seq {
            None => {
                self.next_seq = Some(seq.wrapping_add(payload.len() as u32));
                return Some(payload);
            }
            Some(n) => n,
        };
        let d = seq_diff(seq, nxt);
        if d == 0 && self.ahead.is_empty() {
            self.next_seq = Some(nxt.wrapping_add(payload.len() as u32));
            return Some(payload);
        }
        if d > 0 {
            self.hold(seq, payload);
            return Some(&payload[..0]);
        }
        let mut payload = payload;
        if d < 0 {
            let back = (-d) as usize;
            if back >= payload.len() {
                return Some(&payload[..0]); // a retransmission of bytes already delivered
            }
            payload = &payload[back..];
        }
        self.next_seq = Some(nxt.wrapping_add(payload.len() as u32));
        if self.ahead.is_empty() {
            return Some(payload);
        }
        out.extend_from_slice(payload);
        self.drain(out);
        None
    }

    /// Keep a segment that is ahead of the stream, minus bytes already held, so the first copy
    /// of every byte is the one delivered, whatever order the copies arrived in.
    fn hold(&mut self, seq: u32, payload: &[u8]) {
        let nxt = self.next_seq.unwrap_or(0);
        let mut pieces: Vec<(i64, &[u8])> = vec![(seq_diff(seq, nxt), payload)];
        for (held_seq, held) in &self.ahead {
            let hs = seq_diff(*held_seq, nxt);
            let he = hs + held.len() as i64;
            let mut kept = Vec::with_capacity(pieces.len() + 1);
            for (start, data) in pieces {
                let end = start + data.len() as i64;
                if end <= hs || start >= he {
                    kept.push((start, data));
                    continue;
                }
                if start < hs {
                    kept.push((start, &data[..(hs - start) as usize]));
                }
                if end > he {
                    kept.push((he, &data[(he - start) as usize..]));
                }
            }
            pieces = kept;
            if pieces.is_empty() {
                return;
            }
        }
        for (start, data) in pieces {
            let key = nxt.wrapping_add(start as u32);
            self.ahead.push((key, data.to_vec()));
            self.ahead_bytes += data.len();
        }
        if self.ahead_bytes > MAX_BUFFERED || self.ahead.len() > MAX_SEGMENTS {
            self.gap = true;
            self.ahead.clear();
            self.ahead_bytes = 0;
        }
    }

    /// Move every held segment that now touches the stream's end into `out`.
    fn drain(&mut self, out: &mut Vec<u8>) {
        let mut progressed = true;
        while progressed && !self.ahead.is_empty() {
            progressed = false;
            let mut i = 0;
            while i < self.ahead.len() {
                let nxt = self.next_seq.unwrap_or(0);
                let d = seq_diff(self.ahead[i].0, nxt);
                if d > 0 {
                    i += 1;
                    continue;
                }
                // Removing keeps the others in order (the reference iterates a snapshot of its
                // dict's keys in insertion order).
                let (_, payload) = self.ahead.remove(i);
                self.ahead_bytes -= payload.len();
                let back = (-d) as usize;
                if back < payload.len() {
                    out.extend_from_slice(&payload[back..]);
                    self.next_seq = Some(nxt.wrapping_add((payload.len() - back) as u32));
                    progressed = true;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn push(r: &mut TcpReassembler, seq: u32, p: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        match r.push(seq, p, &mut out) {
            Some(s) => s.to_vec(),
            None => out,
        }
    }

    #[test]
    fn out_of_order_and_first_copy_wins() {
        let mut r = TcpReassembler::default();
        r.syn(u32::MAX); // wraps: stream starts at 0
        assert_eq!(push(&mut r, 4, b"EFGH"), b"");
        assert_eq!(push(&mut r, 4, b"xxxxZZ"), b""); // first copy of 4..8 kept, 8..10 new
        // In-order bytes are delivered as they come; a held segment gives only what lies
        // beyond them (the reference does the same).
        assert_eq!(push(&mut r, 0, b"ABCDyy"), b"ABCDyyGHZZ");
        assert_eq!(r.buffered(), 0);
        assert_eq!(push(&mut r, 2, b"CD"), b"");
    }

    #[test]
    fn too_many_segments_is_a_gap() {
        let mut r = TcpReassembler::default();
        r.syn(0);
        for i in 0..=MAX_SEGMENTS as u32 {
            push(&mut r, 10 + 2 * i, b"a");
        }
        assert!(r.gap);
    }
}
