//! Classic libpcap files (port of `capture/pcap_format.py`): both byte orders, micro- and
//! nanosecond timestamps, the FCS bits of the link type field, bounded record sizes.

use crate::capture::{damaged, holds, CaptureError, PacketSink, Step};

pub const FILE_HEADER_SIZE: usize = 24;
pub const RECORD_HEADER_SIZE: usize = 16;
pub const STANDARD_MAX_RECORD: u64 = 256 * 1024;
pub const HARD_MAX_RECORD: u64 = 64 * 1024 * 1024;

pub fn is_magic(m: &[u8; 4]) -> bool {
    matches!(m, [0xd4, 0xc3, 0xb2, 0xa1] | [0xa1, 0xb2, 0xc3, 0xd4] | [0x4d, 0x3c, 0xb2, 0xa1] | [0xa1, 0xb2, 0x3c, 0x4d])
}

pub struct PcapState {
    big_endian: bool,
    divisor: f64,
    linktype: u32,
    fcs_bytes: u64,
    max_record: u64,
}

impl PcapState {
    fn u32(&self, b: &[u8], i: usize) -> u32 {
        let a: [u8; 4] = b[i..i + 4].try_into().expect("4 bytes");
        if self.big_endian {
            u32::from_be_bytes(a)
        } else {
            u32::from_le_bytes(a)
        }
    }

    /// Parse the file header; None to wait for more input; Some((state, header size)).
    pub fn open(buf: &[u8], eof: bool) -> Result<Option<(Self, usize)>, CaptureError> {
        let cut_short = |have: usize| {
            format!("pcap file header cut short ({have} of {FILE_HEADER_SIZE} bytes)")
        };
        if !holds(buf, FILE_HEADER_SIZE, eof, buf.len() as u64, cut_short).map_err(damaged)? {
            return Ok(None);
        }
        let big_endian = buf[0] == 0xa1;
        let divisor = if buf[2] == 0x3c || buf[1] == 0x3c { 1e9 } else { 1e6 };
        let mut s = PcapState { big_endian, divisor, linktype: 0, fcs_bytes: 0, max_record: 0 };
        let u16_at = |i: usize| {
            let a = [buf[i], buf[i + 1]];
            if big_endian {
                u16::from_be_bytes(a)
            } else {
                u16::from_le_bytes(a)
            }
        };
        let (major, minor) = (u16_at(4), u16_at(6));
        // Version 2.2 and older stored orig_len before incl_len; nothing current writes them.
        if major != 2 || minor < 3 {
            return Err(CaptureError::NotACapture(format!(
                "unsupported pcap version {major}.{minor}"
            )));
        }
        let snaplen = s.u32(buf, 16) as u64;
        let linkfield = s.u32(buf, 20);
        s.linktype = linkfield & 0xFFFF;
        s.fcs_bytes = if linkfield & 0x0400_0000 != 0 { 2 * (linkfield >> 28) as u64 } else { 0 };
        s.max_record = snaplen.clamp(STANDARD_MAX_RECORD, HARD_MAX_RECORD);
        Ok(Some((s, FILE_HEADER_SIZE)))
    }

    /// One record at the start of `rest` (file offset `offset`).
    pub fn step(
        &mut self,
        rest: &[u8],
        offset: u64,
        eof: bool,
        packets: &mut u64,
        sink: &mut PacketSink<'_>,
    ) -> Result<Step, (u64, String)> {
        let cut_short = |have: usize| {
            format!("file ends inside a pcap record header ({have} of {RECORD_HEADER_SIZE} bytes)")
        };
        if !holds(rest, RECORD_HEADER_SIZE, eof, offset, cut_short)? {
            return Ok(Step::NeedMore);
        }
        let incl = self.u32(rest, 8) as u64;
        if incl > self.max_record {
            return Err((
                offset,
                format!(
                    "pcap record claims {incl} captured bytes, more than the {}-byte limit for \
                     this file",
                    self.max_record
                ),
            ));
        }
        let stop = RECORD_HEADER_SIZE + incl as usize;
        let cut_short = |have: usize| {
            let frame = have - RECORD_HEADER_SIZE;
            format!("file ends inside a pcap record ({frame} of {incl} frame bytes present)")
        };
        if !holds(rest, stop, eof, offset, cut_short)? {
            return Ok(Step::NeedMore);
        }
        let sec = self.u32(rest, 0) as f64;
        let frac = self.u32(rest, 4) as f64;
        let orig = self.u32(rest, 12) as u64;
        let ts = sec + frac / self.divisor;
        *packets += 1;
        let frame = &rest[RECORD_HEADER_SIZE..stop];
        if self.fcs_bytes > 0 {
            // The FCS trails the frame on the wire; a snaplen cut may already have removed
            // part or all of it.
            let wire = orig.saturating_sub(self.fcs_bytes);
            let keep = incl.min(wire) as usize;
            sink(ts, self.linktype, &frame[..keep], wire);
        } else {
            sink(ts, self.linktype, frame, orig);
        }
        Ok(Step::Consumed(stop))
    }
}
