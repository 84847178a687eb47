//! IPv4 and IPv6 (with extension headers), and the dispatch to TCP, UDP (QUIC, DTLS, VXLAN,
//! GENEVE, GTP-U), GRE and IP-in-IP: the network half of `ja3svc/engine.py`, read for read.

use crate::engine::{at, be16_at, Engine, Step};
use crate::link::{self, MAX_TUNNEL_DEPTH};

pub const PROTO_IPIP: u8 = 4; // IPv4 in IP (4in4, 4in6)
pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;
pub const PROTO_IPV6: u8 = 41; // IPv6 in IP (6in4 "sit", 6in6)
pub const PROTO_GRE: u8 = 47;
pub const IPV6_FRAGMENT: u8 = 44;
pub const IPV6_AH: u8 = 51;
pub const UDP_VXLAN: u16 = 4789;
pub const UDP_GENEVE: u16 = 6081;
pub const UDP_GTPU: u16 = 2152; // GTP-U (3GPP TS 29.281), mobile core user plane
pub const UDP_CAPWAP_DATA: u16 = 5247; // CAPWAP data channel (RFC 5415): AP <-> controller

fn is_ipv6_extension(p: u8) -> bool {
    matches!(p, 0 | 43 | 60 | 135 | 139 | 140) // skipped by their length field
}

pub(crate) fn by_version(e: &mut Engine, ts: f64, frame: &[u8], off: usize, depth: u32) -> Step {
    match at(frame, off)? >> 4 {
        4 => ipv4(e, ts, frame, off, depth),
        6 => ipv6(e, ts, frame, off, depth),
        _ => {
            e.stats.add("malformed.ip_version", 1);
            Ok(())
        }
    }
}

pub(crate) fn ipv4(e: &mut Engine, ts: f64, frame: &[u8], off: usize, depth: u32) -> Step {
    let vihl = at(frame, off)?;
    let ihl = ((vihl & 0x0F) as usize) * 4;
    let total = be16_at(frame, off + 2)? as usize;
    if vihl >> 4 != 4 || ihl < 20 || total < ihl {
        e.stats.add("malformed.ipv4_header", 1);
        return Ok(());
    }
    let end = off + total;
    if end > frame.len() {
        e.stats.add("skipped.truncated_packet", 1);
        return Ok(());
    }
    if (at(frame, off + 6)? & 0x3F) | at(frame, off + 7)? != 0 {
        // Fragments are rare for TCP (path MTU discovery sets DF); not reassembled.
        e.stats.add("skipped.ip_fragment", 1);
        return Ok(());
    }
    let proto = at(frame, off + 9)?;
    let l4 = off + ihl;
    let addrs = &frame[off + 12..off + 20];
    if proto == PROTO_TCP {
        return e.tcp(ts, frame, l4, end, addrs, 4);
    }
    other_l4(e, ts, frame, proto, l4, end, depth, addrs, 4)
}

pub(crate) fn ipv6(e: &mut Engine, ts: f64, frame: &[u8], off: usize, depth: u32) -> Step {
    if at(frame, off)? >> 4 != 6 {
        e.stats.add("malformed.ipv6_header", 1);
        return Ok(());
    }
    let end = off + 40 + be16_at(frame, off + 4)? as usize;
    if end > frame.len() {
        e.stats.add("skipped.truncated_packet", 1);
        return Ok(());
    }
    let mut proto = at(frame, off + 6)?;
    let mut l4 = off + 40;
    for _ in 0..8 {
        if is_ipv6_extension(proto) {
            let next = at(frame, l4)?;
            l4 += (at(frame, l4 + 1)? as usize + 1) * 8;
            proto = next;
        } else if proto == IPV6_FRAGMENT {
            if be16_at(frame, l4 + 2)? & 0xFFF9 != 0 {
                // offset or more-fragments: not reassembled
                e.stats.add("skipped.ip_fragment", 1);
                return Ok(());
            }
            proto = at(frame, l4)?;
            l4 += 8;
        } else if proto == IPV6_AH {
            let next = at(frame, l4)?;
            l4 += (at(frame, l4 + 1)? as usize + 2) * 4;
            proto = next;
        } else {
            break;
        }
    }
    if l4 > end {
        e.stats.add("malformed.ipv6_extension", 1);
        return Ok(());
    }
    let addrs = &frame[off + 8..off + 40];
    if proto == PROTO_TCP {
        return e.tcp(ts, frame, l4, end, addrs, 16);
    }
    other_l4(e, ts, frame, proto, l4, end, depth, addrs, 16)
}

#[allow(clippy::too_many_arguments)]
fn other_l4(
    e: &mut Engine,
    ts: f64,
    frame: &[u8],
    proto: u8,
    l4: usize,
    end: usize,
    depth: u32,
    addrs: &[u8],
    alen: usize,
) -> Step {
    if proto == PROTO_UDP && end >= l4 + 8 {
        let dport = be16_at(frame, l4 + 2)?;
        if depth < MAX_TUNNEL_DEPTH {
            if dport == UDP_VXLAN {
                return link::ethernet(e, ts, &frame[..end], l4 + 16, depth + 1);
            }
            if dport == UDP_GENEVE {
                let opt_len = ((at(frame, l4 + 8)? & 0x3F) as usize) * 4;
                let inner = be16_at(frame, l4 + 10)?;
                return link::tunnelled(e, ts, &frame[..end], inner, l4 + 16 + opt_len, depth + 1);
            }
            if dport == UDP_GTPU {
                return link::gtpu(e, ts, &frame[..end], l4 + 8, depth + 1);
            }
            // The controller answers from 5247 to the access point's own port.
            if dport == UDP_CAPWAP_DATA || be16_at(frame, l4)? == UDP_CAPWAP_DATA {
                return link::capwap(e, ts, &frame[..end], l4 + 8, depth + 1);
            }
        }
        return e.udp(ts, frame, l4, end, addrs, alen);
    }
    if depth < MAX_TUNNEL_DEPTH {
        if proto == PROTO_GRE {
            return link::gre(e, ts, frame, l4, end, depth + 1);
        }
        // The inner packet must lie within the outer one: cut there, so a truncated inner
        // header is counted as such rather than read from the outer packet's trailer.
        if proto == PROTO_IPIP {
            return ipv4(e, ts, &frame[..end], l4, depth + 1);
        }
        if proto == PROTO_IPV6 {
            return ipv6(e, ts, &frame[..end], l4, depth + 1);
        }
    }
    e.stats.add("skipped.not_tcp_udp", 1);
    Ok(())
}
