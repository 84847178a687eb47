//! Link layers and tunnels (the link half of `ja3svc/engine.py`): Ethernet with VLAN/QinQ,
//! MPLS, PPPoE; PPP; Linux cooked v1/v2; raw IP; BSD loopback; VXLAN, GENEVE, GRE, ERSPAN II/III
//! GTP-U and CAPWAP data with 802.3 or 802.11 frames (IP-in-IP is in `ip.rs`).
//!
//! Hand-written rather than with etherparse: the reference decodes with offsets into the frame
//! and counts each give-up under its own name (non-IP, fragment, truncated, tunnel depth...);
//! etherparse validates and fails at different points with its own error kinds, so the counters
//! would not match the reference's. The code is the reference's, read for read.

use crate::engine::{at, be16_at, Engine, Short, Step};
use crate::ip;

pub const LINKTYPE_NULL: u32 = 0;
pub const LINKTYPE_ETHERNET: u32 = 1;
pub const LINKTYPE_PPP: u32 = 9;
pub const LINKTYPE_RAW_12: u32 = 12;
pub const LINKTYPE_RAW_14: u32 = 14;
pub const LINKTYPE_RAW: u32 = 101;
pub const LINKTYPE_LOOP: u32 = 108;
pub const LINKTYPE_LINUX_SLL: u32 = 113;
pub const LINKTYPE_IPV4: u32 = 228;
pub const LINKTYPE_IPV6: u32 = 229;
pub const LINKTYPE_LINUX_SLL2: u32 = 276;

pub const ETH_IPV4: u16 = 0x0800;
pub const ETH_IPV6: u16 = 0x86DD;
pub const ETH_PPPOE_SESSION: u16 = 0x8864;
pub const ETH_TRANSPARENT_BRIDGING: u16 = 0x6558;
pub const ETH_ERSPAN_II: u16 = 0x88BE;
pub const ETH_ERSPAN_III: u16 = 0x22EB;

pub const PPP_IPV4: u16 = 0x0021;
pub const PPP_IPV6: u16 = 0x0057;

pub const MAX_TUNNEL_DEPTH: u32 = 4;

fn is_vlan(t: u16) -> bool {
    matches!(t, 0x8100 | 0x88A8 | 0x9100)
}

fn is_mpls(t: u16) -> bool {
    matches!(t, 0x8847 | 0x8848)
}

/// Every link type but Ethernet (which has the engine's fast path).
pub(crate) fn other_linktype(e: &mut Engine, ts: f64, linktype: u32, frame: &[u8]) -> Step {
    match linktype {
        LINKTYPE_LINUX_SLL2 => ethertype(e, ts, frame, be16_at(frame, 0)?, 20, 0),
        LINKTYPE_LINUX_SLL => ethertype(e, ts, frame, be16_at(frame, 14)?, 16, 0),
        LINKTYPE_RAW | LINKTYPE_RAW_12 | LINKTYPE_RAW_14 | LINKTYPE_IPV4 | LINKTYPE_IPV6 => {
            ip::by_version(e, ts, frame, 0, 0)
        }
        LINKTYPE_NULL | LINKTYPE_LOOP => {
            // The address family in the writer's byte order; the reference reads what there is
            // of the first 4 bytes (a shorter frame gives a smaller number).
            let head = &frame[..frame.len().min(4)];
            let mut family = head.iter().rev().fold(0u32, |acc, &b| (acc << 8) | b as u32);
            if family > 0xFFFF {
                family = head.iter().fold(0u32, |acc, &b| (acc << 8) | b as u32);
            }
            match family {
                2 => ip::ipv4(e, ts, frame, 4, 0),
                // AF_INET6 on the various BSDs and macOS.
                10 | 24 | 28 | 30 => ip::ipv6(e, ts, frame, 4, 0),
                _ => {
                    e.stats.add("skipped.non_ip", 1);
                    Ok(())
                }
            }
        }
        LINKTYPE_PPP => ppp(e, ts, frame),
        _ => {
            e.stats.add_owned(format!("skipped.linktype_{linktype}"), 1);
            Ok(())
        }
    }
}

fn ppp(e: &mut Engine, ts: f64, frame: &[u8]) -> Step {
    // RFC 1662 framing: the FF 03 address/control pair may be omitted (ACFC), and a protocol
    // number with its low bit set in the first byte is one byte long (PFC, RFC 1661).
    let mut off = if at(frame, 0)? == 0xFF && at(frame, 1)? == 0x03 { 2 } else { 0 };
    let first = at(frame, off)?;
    let proto = if first & 0x01 != 0 {
        off += 1;
        first as u16
    } else {
        off += 2;
        be16_at(frame, off - 2)?
    };
    match proto {
        PPP_IPV4 => ip::ipv4(e, ts, frame, off, 0),
        PPP_IPV6 => ip::ipv6(e, ts, frame, off, 0),
        _ => {
            e.stats.add("skipped.non_ip", 1);
            Ok(())
        }
    }
}

pub(crate) fn ethernet(e: &mut Engine, ts: f64, frame: &[u8], off: usize, depth: u32) -> Step {
    let t = be16_at(frame, off + 12)?;
    ethertype(e, ts, frame, t, off + 14, depth)
}

pub(crate) fn ethertype(
    e: &mut Engine,
    ts: f64,
    frame: &[u8],
    mut ethertype: u16,
    mut off: usize,
    depth: u32,
) -> Step {
    while is_vlan(ethertype) {
        ethertype = be16_at(frame, off + 2)?;
        off += 4;
    }
    if ethertype == ETH_IPV4 {
        return ip::ipv4(e, ts, frame, off, depth);
    }
    if ethertype == ETH_IPV6 {
        return ip::ipv6(e, ts, frame, off, depth);
    }
    if is_mpls(ethertype) {
        while at(frame, off + 2)? & 0x01 == 0 {
            off += 4; // until the bottom-of-stack bit
        }
        return ip::by_version(e, ts, frame, off + 4, depth);
    }
    if ethertype == ETH_PPPOE_SESSION {
        let ppp = be16_at(frame, off + 6)?;
        if ppp == 0x0021 {
            return ip::ipv4(e, ts, frame, off + 8, depth);
        }
        if ppp == 0x0057 {
            return ip::ipv6(e, ts, frame, off + 8, depth);
        }
    }
    e.stats.add("skipped.non_ip", 1);
    Ok(())
}

/// GRE at `off`; the IP packet around it ends at `end`.
pub(crate) fn gre(e: &mut Engine, ts: f64, frame: &[u8], off: usize, end: usize, depth: u32) -> Step {
    let flags = at(frame, off)?;
    if at(frame, off + 1)? & 0x07 != 0 {
        e.stats.add("skipped.gre_version", 1); // GRE v1 is PPTP's enhanced GRE
        return Ok(());
    }
    let inner = be16_at(frame, off + 2)?;
    let off = off + 4 + 4 * ((flags >> 7) as usize + ((flags >> 5) & 1) as usize + ((flags >> 4) & 1) as usize);
    let cut = &frame[..end];
    if inner == ETH_ERSPAN_II {
        // ERSPAN type II has an 8-byte header when GRE carries a sequence number.
        return ethernet(e, ts, cut, off + 8, depth);
    }
    if inner == ETH_ERSPAN_III {
        let extra = if at(frame, off + 11)? & 0x01 != 0 { 8 } else { 0 }; // platform subheader
        return ethernet(e, ts, cut, off + 12 + extra, depth);
    }
    tunnelled(e, ts, cut, inner, off, depth)
}

pub(crate) fn tunnelled(
    e: &mut Engine,
    ts: f64,
    frame: &[u8],
    inner: u16,
    off: usize,
    depth: u32,
) -> Step {
    if inner == ETH_TRANSPARENT_BRIDGING {
        return ethernet(e, ts, frame, off, depth);
    }
    ethertype(e, ts, frame, inner, off, depth)
}

/// GTP-U at `off` (the frame ends with the UDP datagram): a G-PDU carries one IP packet.
pub(crate) fn gtpu(e: &mut Engine, ts: f64, frame: &[u8], off: usize, depth: u32) -> Step {
    let flags = at(frame, off)?;
    if flags >> 5 != 1 || flags & 0x10 == 0 || at(frame, off + 1)? != 0xFF {
        // GTP' or GTPv2-C on the port, or echo / error-indication / end-marker messages.
        e.stats.add("skipped.gtpu_not_gpdu", 1);
        return Ok(());
    }
    let mut off = off + 8;
    if flags & 0x07 != 0 {
        // Sequence number, N-PDU number and next-extension type come as one 4-byte block when
        // any of E/S/PN is set; each extension header gives its length in 4-byte units.
        off += 4;
        let mut ext = at(frame, off - 1)?;
        while ext != 0 {
            let size = at(frame, off)? as usize * 4;
            if size == 0 {
                e.stats.add("malformed.gtpu_extension", 1);
                return Ok(());
            }
            ext = at(frame, off + size - 1)?;
            off += size;
        }
    }
    ip::by_version(e, ts, frame, off, depth)
}

/// A CAPWAP data packet at `off`: an 802.3 frame (T=0) or a native 802.11 one (T=1).
pub(crate) fn capwap(e: &mut Engine, ts: f64, frame: &[u8], off: usize, depth: u32) -> Step {
    if at(frame, off)? != 0 {
        // Preamble type 1: a DTLS-protected data channel, nothing readable inside.
        e.stats.add("skipped.capwap_not_plain", 1);
        return Ok(());
    }
    let hlen = (at(frame, off + 1)? >> 3) as usize * 4;
    let b2 = at(frame, off + 2)?;
    let b3 = at(frame, off + 3)?;
    if hlen < 8 {
        e.stats.add("malformed.capwap_header", 1);
        return Ok(());
    }
    if b3 & 0x88 != 0 {
        // F: a fragment (not reassembled); K: a keep-alive, which carries no frame.
        e.stats.add("skipped.capwap_not_frame", 1);
        return Ok(());
    }
    let off = off + hlen;
    if b2 & 0x01 == 0 {
        return ethernet(e, ts, frame, off, depth);
    }
    if (b2 >> 1) & 0x1F == 1 {
        return ieee80211(e, ts, frame, off, depth); // wireless binding 1: IEEE 802.11
    }
    e.stats.add("skipped.non_ip", 1);
    Ok(())
}

/// An 802.11 data frame with an LLC/SNAP header; control, management, null-data and protected
/// (encrypted) frames carry nothing to read. Cisco access points and controllers send the frame
/// control field byte-swapped (Wireshark's capwap.swap_fc): the swapped order is read when only
/// it makes a data frame, and tried second when both do (a swapped frame with Retry set) and the
/// standard order finds no LLC/SNAP header (as in `ja3svc/engine.py`).
fn ieee80211(e: &mut Engine, ts: f64, frame: &[u8], off: usize, depth: u32) -> Step {
    let fc0 = at(frame, off)?;
    let fc1 = at(frame, off + 1)?;
    let llc = if fc0 & 0x0C == 0x08 {
        match dot11_llc(frame, off, fc0, fc1)? {
            None if fc1 & 0x0C == 0x08 => dot11_llc(frame, off, fc1, fc0)?,
            found => found,
        }
    } else if fc1 & 0x0C == 0x08 {
        dot11_llc(frame, off, fc1, fc0)?
    } else {
        None
    };
    match llc {
        Some(llc) => ethertype(e, ts, frame, be16_at(frame, llc + 6)?, llc + 8, depth),
        None => {
            e.stats.add("skipped.non_ip", 1);
            Ok(())
        }
    }
}

/// Where the LLC/SNAP header of the 802.11 frame at `off` is, read with frame control bytes
/// `fc0` `fc1`: None unless an unprotected data frame with a payload carries one there.
fn dot11_llc(frame: &[u8], off: usize, fc0: u8, fc1: u8) -> Result<Option<usize>, Short> {
    if fc0 & 0x4C != 0x08 || fc1 & 0x40 != 0 {
        return Ok(None);
    }
    let mut llc = off + 24;
    if fc1 & 0x03 == 0x03 {
        llc += 6; // a fourth address between two distribution systems
    }
    if fc0 & 0x80 != 0 {
        llc += 2; // QoS control
        if fc1 & 0x80 != 0 {
            llc += 4; // HT control
        }
    }
    let snap =
        at(frame, llc)? == 0xAA && at(frame, llc + 1)? == 0xAA && at(frame, llc + 2)? == 0x03;
    Ok(snap.then_some(llc))
}
