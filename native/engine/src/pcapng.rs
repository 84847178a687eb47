//! pcapng files (port of `capture/pcapng_format.py`): sections in either byte order, several
//! interfaces with their own link type, timestamp resolution and offset and FCS length;
//! Enhanced, Simple and obsolete Packet Blocks; every other block skipped by its length. Every
//! length is checked before it is trusted, with the reference's messages.

use crate::capture::{damaged, div_round, holds, CaptureError, Divisor, PacketSink, Step};

pub const SHB_MAGIC: [u8; 4] = [0x0a, 0x0d, 0x0d, 0x0a];
pub const SHB: u32 = 0x0A0D0D0A;
pub const IDB: u32 = 1;
pub const PB: u32 = 2;
pub const SPB: u32 = 3;
pub const EPB: u32 = 6;
pub const MAX_BLOCK: u64 = 64 * 1024 * 1024;

#[derive(Clone, Copy)]
struct Interface {
    linktype: u32,
    divisor: Divisor,
    offset: i64,
    fcs: u64,
    snaplen: u64,
}

pub struct PcapngState {
    big_endian: bool,
    interfaces: Vec<Interface>,
    last_ts: f64,
}

fn byte_order(m: &[u8]) -> Option<bool> {
    match m {
        [0x4d, 0x3c, 0x2b, 0x1a] => Some(false),
        [0x1a, 0x2b, 0x3c, 0x4d] => Some(true),
        _ => None,
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn block_name(btype: u32) -> String {
    match btype {
        SHB => "section header block".into(),
        IDB => "interface description block".into(),
        PB => "packet block".into(),
        SPB => "simple packet block".into(),
        EPB => "enhanced packet block".into(),
        t => format!("block of type 0x{t:08x}"),
    }
}

fn length_problem(btype: u32, blen: u64) -> Option<String> {
    let minimum = match btype {
        SHB => 28,
        IDB => 20,
        PB => 32,
        SPB => 16,
        EPB => 32,
        _ => 12,
    };
    let why = if blen < minimum {
        format!("below the minimum of {minimum}")
    } else if blen & 3 != 0 {
        "not a multiple of 4".into()
    } else if blen > MAX_BLOCK {
        format!("above the {MAX_BLOCK}-byte sanity limit")
    } else {
        return None;
    };
    Some(format!("{} length {blen} is {why}", block_name(btype)))
}

fn undeclared(iface: u64, declared: usize) -> String {
    format!(
        "packet names interface {iface} but the section declares only {declared} interface{}",
        if declared != 1 { "s" } else { "" }
    )
}

fn too_long(btype: u32, caplen: u64, room: u64) -> String {
    format!("{} captured length {caplen} exceeds the {room} bytes of its block", block_name(btype))
}

/// Drop whatever part of a trailing FCS was captured; the wire length without it.
fn strip_fcs(frame: &[u8], orig: u64, fcs: u64) -> (&[u8], u64) {
    let wire = orig.saturating_sub(fcs);
    if frame.len() as u64 > wire {
        (&frame[..wire as usize], wire)
    } else {
        (frame, wire)
    }
}

impl PcapngState {
    fn u16(&self, b: &[u8], i: usize) -> u16 {
        let a = [b[i], b[i + 1]];
        if self.big_endian {
            u16::from_be_bytes(a)
        } else {
            u16::from_le_bytes(a)
        }
    }

    fn u32(&self, b: &[u8], i: usize) -> u32 {
        let a: [u8; 4] = b[i..i + 4].try_into().expect("4 bytes");
        if self.big_endian {
            u32::from_be_bytes(a)
        } else {
            u32::from_le_bytes(a)
        }
    }

    /// Check the first SHB's byte-order magic and version up front, so a file that merely
    /// starts with the SHB type is "not a capture" rather than "damaged".
    pub fn open(buf: &[u8], eof: bool) -> Result<Option<Self>, CaptureError> {
        // Its first 16 bytes: up to the version, all that is read here.
        let cut_short = |have: usize| {
            format!("file ends inside the first section header block ({have} of 28 bytes)")
        };
        if !holds(buf, 16, eof, 0, cut_short).map_err(damaged)? {
            return Ok(None);
        }
        let big_endian = match byte_order(&buf[8..12]) {
            Some(b) => b,
            None => {
                return Err(CaptureError::NotACapture(format!(
                    "starts like pcapng but has no byte-order magic (found {}), not a capture",
                    hex(&buf[8..12])
                )))
            }
        };
        let s = PcapngState { big_endian, interfaces: Vec::new(), last_ts: 0.0 };
        let (major, minor) = (s.u16(buf, 12), s.u16(buf, 14));
        if major != 1 {
            return Err(CaptureError::NotACapture(format!(
                "unsupported pcapng version {major}.{minor}"
            )));
        }
        Ok(Some(s))
    }

    /// One block at the start of `rest` (file offset `offset`).
    pub fn step(
        &mut self,
        rest: &[u8],
        offset: u64,
        eof: bool,
        packets: &mut u64,
        sink: &mut PacketSink<'_>,
    ) -> Result<Step, (u64, String)> {
        let cut_short =
            |have: usize| format!("file ends inside a block header ({have} of 12 bytes)");
        if !holds(rest, 12, eof, offset, cut_short)? {
            return Ok(Step::NeedMore);
        }
        let btype = self.u32(rest, 0);
        if btype == SHB {
            // A new section fixes its own byte order before its length can be read.
            match byte_order(&rest[8..12]) {
                Some(b) => self.big_endian = b,
                None => {
                    return Err((
                        offset,
                        format!(
                            "section header block has no byte-order magic (found {})",
                            hex(&rest[8..12])
                        ),
                    ))
                }
            }
        }
        let blen = self.u32(rest, 4) as u64;
        if let Some(p) = length_problem(btype, blen) {
            return Err((offset, p));
        }
        let blen_u = blen as usize;
        let cut_short = |have: usize| {
            let name = block_name(btype);
            let article = if name.starts_with(['a', 'e', 'i', 'o', 'u']) { "an" } else { "a" };
            format!("file ends inside {article} {name} ({have} of {blen} bytes present)")
        };
        if !holds(rest, blen_u, eof, offset, cut_short)? {
            return Ok(Step::NeedMore);
        }
        let b = &rest[..blen_u];
        let trailer = self.u32(b, blen_u - 4) as u64;
        if trailer != blen {
            return Err((
                offset,
                format!(
                    "{} length {blen} disagrees with its trailing copy {trailer}",
                    block_name(btype)
                ),
            ));
        }
        match btype {
            EPB | PB => {
                // They differ only in the width of the interface number (PB's is followed by
                // a 16-bit drop count); the timestamp, lengths and frame sit at the same places.
                let iface = if btype == EPB { self.u32(b, 8) as u64 } else { self.u16(b, 8) as u64 };
                let (i, frame, orig) = self.timed_packet(b, btype, iface, offset)?;
                self.emit(i, frame, orig, packets, sink);
            }
            SHB => {
                let (major, minor) = (self.u16(b, 12), self.u16(b, 14));
                if major != 1 {
                    return Err((offset, format!("unsupported pcapng version {major}.{minor}")));
                }
                self.interfaces.clear(); // interface numbers restart in every section
            }
            IDB => {
                let i = self.interface(b, offset)?;
                self.interfaces.push(i);
            }
            SPB => {
                let i = match self.interfaces.first() {
                    Some(i) => *i,
                    None => return Err((offset, undeclared(0, 0))),
                };
                let orig = self.u32(b, 8) as u64;
                // No captured-length field: the frame is what fits, cut at snaplen.
                let mut caplen = orig.min(blen - 16);
                if i.snaplen > 0 {
                    caplen = caplen.min(i.snaplen);
                }
                self.emit(i, &b[12..12 + caplen as usize], orig, packets, sink);
            }
            _ => {} // carries nothing we need: skipped by length
        }
        Ok(Step::Consumed(blen_u))
    }

    /// An EPB's or PB's timestamp, lengths and interface (number `iface`), each checked
    /// against the block and the section; sets `last_ts`. The interface, frame and wire length.
    fn timed_packet<'b>(
        &mut self,
        b: &'b [u8],
        btype: u32,
        iface: u64,
        offset: u64,
    ) -> Result<(Interface, &'b [u8], u64), (u64, String)> {
        let room = b.len() as u64 - 32;
        let hi = self.u32(b, 12) as u64;
        let lo = self.u32(b, 16) as u64;
        let caplen = self.u32(b, 20) as u64;
        let orig = self.u32(b, 24) as u64;
        if caplen > room {
            return Err((offset, too_long(btype, caplen, room)));
        }
        let i = match self.interfaces.get(iface as usize) {
            Some(i) => *i,
            None => return Err((offset, undeclared(iface, self.interfaces.len()))),
        };
        // The reference adds the (integer) offset to a PB's time always and to an EPB's only
        // when it is not 0: the same, as x + 0 == x for every float but -0.0, and a division
        // of non-negative counts never gives -0.0.
        self.last_ts = div_round((hi << 32) | lo, i.divisor) + i.offset as f64;
        Ok((i, &b[28..28 + caplen as usize], orig))
    }

    /// One packet to the sink, without whatever its interface says is FCS.
    fn emit(
        &self,
        i: Interface,
        frame: &[u8],
        orig: u64,
        packets: &mut u64,
        sink: &mut PacketSink<'_>,
    ) {
        let (frame, orig) = if i.fcs > 0 { strip_fcs(frame, orig, i.fcs) } else { (frame, orig) };
        *packets += 1;
        sink(self.last_ts, i.linktype, frame, orig);
    }

    /// An IDB: link type, snaplen and the options that change how packets read.
    fn interface(&self, b: &[u8], base: u64) -> Result<Interface, (u64, String)> {
        let linktype = self.u16(b, 8) as u32;
        let snaplen = self.u32(b, 12) as u64;
        let mut i = Interface { linktype, divisor: Divisor::Pow10(6), offset: 0, fcs: 0, snaplen };
        let limit = b.len() - 4;
        let mut opt = 16;
        while opt + 4 <= limit {
            let code = self.u16(b, opt);
            let length = self.u16(b, opt + 2) as usize;
            if code == 0 {
                break;
            }
            let value = opt + 4;
            if value + length > limit {
                return Err((
                    base + opt as u64,
                    format!(
                        "interface description option {code} claims {length} bytes, more than \
                         its block holds"
                    ),
                ));
            }
            if code == 9 && length >= 1 {
                // if_tsresol. High bit set: a negative power of 2; clear: of 10.
                let resol = b[value];
                i.divisor = if resol & 0x80 != 0 {
                    Divisor::Pow2(resol & 0x7F)
                } else {
                    Divisor::Pow10(resol)
                };
            } else if code == 14 && length == 8 {
                let a: [u8; 8] = b[value..value + 8].try_into().expect("8 bytes");
                i.offset = if self.big_endian { i64::from_be_bytes(a) } else { i64::from_le_bytes(a) };
            } else if code == 13 && length >= 1 {
                // if_fcslen: the spec says bits, older writers meant bytes; no FCS is 8 bytes or
                // longer, so values of 8 and more can only be bits.
                let f = b[value] as u64;
                i.fcs = if f >= 8 { f / 8 } else { f };
            }
            opt = value + ((length + 3) & !3);
        }
        Ok(i)
    }
}
