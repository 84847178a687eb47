//! Frames in, fingerprinted hellos out (port of `ja3svc/engine.py`): the engine state, the
//! transport layer (TCP flows, UDP sessions) and the hand-off to the TLS stream parser. Link
//! layers and tunnels are in `link`, IPv4/IPv6 in `ip`.
//!
//! The reference indexes the frame directly and turns any out-of-range read (Python's
//! IndexError) into the counter `malformed.short_frame`. Here every read of the frame goes
//! through `at`, whose error travels up with `?` to the same counter; reads happen in the same
//! order as in the reference, so the same frames are counted the same way.

use std::borrow::Cow;
use std::collections::HashMap;

use crate::fingerprints::{DovecotProfile, Transport};
use crate::flow_table::{FlowKey, FlowTable, UdpAssembler};
use crate::hello::{parse_client_hello, parse_server_hello, Hello};
use crate::tls_stream::{StreamItem, HANDSHAKE_CLIENT_HELLO};
use crate::{dtls, link, quic};

pub const TCP_FIN: u8 = 0x01;
pub const TCP_SYN: u8 = 0x02;
pub const TCP_RST: u8 = 0x04;
pub const TCP_PSH: u8 = 0x08;
pub const TCP_ACK: u8 = 0x10;
/// Ethernet pads frames to 60 bytes: a bare IPv4 ACK without TCP options (54) gets 6 bytes.
pub const MAX_ACK_PADDING: usize = 6;
/// A QUIC/DTLS handshake is over within a few datagrams; after this many a session is ignored.
pub const MAX_UDP_HANDSHAKE_DATAGRAMS: u32 = 64;

/// A read past the end of the frame (the reference's IndexError).
#[derive(Debug)]
pub struct Short;

pub type Step = Result<(), Short>;

#[inline(always)]
pub fn at(frame: &[u8], i: usize) -> Result<u8, Short> {
    frame.get(i).copied().ok_or(Short)
}

#[inline(always)]
pub fn be16_at(frame: &[u8], i: usize) -> Result<u16, Short> {
    Ok(((at(frame, i)? as u16) << 8) | at(frame, i + 1)? as u16)
}

/// An address as raw bytes (4 or 16 of them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Addr {
    pub len: u8,
    pub bytes: [u8; 16],
}

impl Addr {
    pub fn from_slice(raw: &[u8]) -> Self {
        let mut bytes = [0; 16];
        let n = raw.len().min(16);
        bytes[..n].copy_from_slice(&raw[..n]);
        Addr { len: n as u8, bytes }
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }
}

/// One hello seen on the wire, with where and when (the reference's `HelloSighting`).
#[derive(Debug, Clone, PartialEq)]
pub struct Sighting {
    /// 1-based number of the packet that completed the hello (as Wireshark numbers them).
    pub frame: u64,
    pub ts: f64,
    pub src: Addr,
    pub sport: u16,
    pub dst: Addr,
    pub dport: u16,
    pub transport: Transport,
    pub index: u64,
    pub hello: Hello,
}

/// Named counters (the reference's `Counter[str]`); zero counts are never stored.
#[derive(Default, Debug, Clone)]
pub struct Counters {
    pub map: HashMap<Cow<'static, str>, u64>,
}

impl Counters {
    #[inline]
    pub fn add(&mut self, name: &'static str, n: u64) {
        if n > 0 {
            *self.map.entry(Cow::Borrowed(name)).or_insert(0) += n;
        }
    }

    pub fn add_owned(&mut self, name: String, n: u64) {
        if n > 0 {
            *self.map.entry(Cow::Owned(name)).or_insert(0) += n;
        }
    }

    pub fn get(&self, name: &str) -> u64 {
        self.map.get(name).copied().unwrap_or(0)
    }
}

pub struct Engine {
    pub flows: FlowTable,
    pub stats: Counters,
    pub profile: DovecotProfile,
    /// Hellos found since the caller last took them.
    pub found: Vec<Sighting>,
    /// Frames fed so far: the number of the current one.
    pub frames: u64,
    items: Vec<StreamItem>,
    joined: Vec<u8>,
}

impl Engine {
    pub fn new(max_flows: usize, idle_timeout: f64, profile: DovecotProfile) -> Self {
        Engine {
            flows: FlowTable::new(max_flows, idle_timeout),
            stats: Counters::default(),
            profile,
            found: Vec::new(),
            frames: 0,
            items: Vec::new(),
            joined: Vec::new(),
        }
    }

    /// Feed one captured frame; hellos it completes are appended to `self.found`.
    pub fn feed_frame(&mut self, ts: f64, linktype: u32, frame: &[u8]) {
        self.frames += 1;
        if self.frame(ts, linktype, frame).is_err() {
            self.stats.add("malformed.short_frame", 1);
        }
    }

    fn frame(&mut self, ts: f64, linktype: u32, frame: &[u8]) -> Step {
        if linktype == link::LINKTYPE_ETHERNET {
            return self.ethernet_fast(ts, frame);
        }
        link::other_linktype(self, ts, linktype, frame)
    }

    /// The bulk of any capture: a packet of a finished flow, or a bare ACK of a known flow,
    /// over plain IPv4 (no options) or IPv6 (no extension headers). Reads exactly what the
    /// reference's fast path reads, in the same order, before handing over to the full decode.
    fn ethernet_fast(&mut self, ts: f64, frame: &[u8]) -> Step {
        let (key, tcp, payload): (&[u8], usize, i64);
        if at(frame, 12)? == 8 && at(frame, 13)? == 0 && at(frame, 14)? == 0x45 && at(frame, 23)? == 6
        {
            key = slice(frame, 26, 38);
            tcp = 34;
            payload = be16_at(frame, 16)? as i64 - 20;
        } else if at(frame, 12)? == 0x86 && at(frame, 13)? == 0xDD && at(frame, 20)? == 6 {
            key = slice(frame, 22, 58);
            tcp = 54;
            payload = be16_at(frame, 18)? as i64;
        } else {
            return link::ethernet(self, ts, frame, 0, 0);
        }
        let found = FlowKey::new(&[key]).and_then(|k| self.flows.directions.get(&k).copied());
        if let Some((idx, side)) = found {
            let flags = at(frame, tcp + 13)?;
            let d = &self.flows.flow(idx).dirs[side as usize];
            if d.done {
                if flags & (TCP_RST | TCP_FIN) != 0 {
                    self.finish_flow(idx, flags);
                }
                return Ok(());
            }
            if flags & 7 == 0 && payload == ((at(frame, tcp + 12)? >> 4) as i64) * 4 {
                return Ok(()); // a bare ACK
            }
        }
        link::ethernet(self, ts, frame, 0, 0)
    }

    /// A segment that is a bare ACK plus at most the 6 bytes of zeros Ethernet pads a 54-byte
    /// frame with, before this direction has sent anything: no TLS stream starts with zeros.
    fn ethernet_padding_in_ack(
        &mut self,
        frame: &[u8],
        payload_at: usize,
        end: usize,
        flags: u8,
        idx: u32,
        side: u8,
    ) -> bool {
        end - payload_at <= MAX_ACK_PADDING
            && flags & (TCP_FIN | TCP_SYN | TCP_RST | TCP_PSH) == 0
            && flags & TCP_ACK != 0
            && !self.flows.flow_mut(idx).dirs[side as usize].tls.started()
            && frame[payload_at..end].iter().all(|&b| b == 0)
    }

    /// TCP at `l4` (the IP packet ends at `end`); `addrs` is source then destination address.
    pub(crate) fn tcp(
        &mut self,
        ts: f64,
        frame: &[u8],
        l4: usize,
        end: usize,
        addrs: &[u8],
        alen: usize,
    ) -> Step {
        let key = transport_key(frame, l4, addrs);
        let flags = at(frame, l4 + 13)?;
        let payload_at = l4 + ((at(frame, l4 + 12)? >> 4) as usize) * 4;
        let key = match key {
            Some(k) => k,
            None => return Ok(()),
        };
        let (idx, side) = match self.flows.directions.get(&key).copied() {
            Some((idx, side)) => {
                let flow = self.flows.flow_mut(idx);
                flow.last_ts = ts;
                if flow.dirs[side as usize].done {
                    if flags & (TCP_RST | TCP_FIN) != 0 {
                        self.finish_flow(idx, flags);
                    }
                    return Ok(());
                }
                (idx, side)
            }
            None => {
                self.flows.sweep(ts);
                if payload_at >= end && flags & TCP_SYN == 0 {
                    return Ok(()); // a bare ACK of a flow we never saw start
                }
                if payload_at < l4 + 20 || payload_at > end {
                    self.stats.add("malformed.tcp_header", 1);
                    return Ok(());
                }
                let (sport, dport) = ports(frame, l4);
                let rkey = key.reverse(alen);
                (self.flows.create(ts, key, rkey, sport, dport), 0)
            }
        };
        if payload_at > end {
            self.stats.add("malformed.tcp_header", 1);
            return Ok(());
        }
        let mut seq = u32::from_be_bytes([frame[l4 + 4], frame[l4 + 5], frame[l4 + 6], frame[l4 + 7]]);
        if flags & TCP_ACK != 0 {
            let peer = &mut self.flows.flow_mut(idx).dirs[1 - side as usize].tcp;
            if peer.anchors.is_some() {
                // The peer sent SYNs with different numbers: this ACK says which one counts.
                peer.acked(u32::from_be_bytes([
                    frame[l4 + 8],
                    frame[l4 + 9],
                    frame[l4 + 10],
                    frame[l4 + 11],
                ]));
            }
        }
        if flags & TCP_SYN != 0 {
            self.flows.flow_mut(idx).dirs[side as usize].tcp.syn(seq);
            seq = seq.wrapping_add(1);
        }
        if payload_at < end && self.ethernet_padding_in_ack(frame, payload_at, end, flags, idx, side) {
            // A middlebox counted a bare ACK's Ethernet padding into its IP length: zero bytes at
            // the hello's sequence number, which would win as the first copy over the real ones.
            self.stats.add("skipped.tcp_ack_padding", 1);
        } else if payload_at < end {
            let mut joined = std::mem::take(&mut self.joined);
            joined.clear();
            let d = &mut self.flows.flow_mut(idx).dirs[side as usize];
            let data = d.tcp.push(seq, &frame[payload_at..end], &mut joined);
            if d.tcp.gap {
                self.stats.add("skipped.tcp_gap", 1);
                d.done = true;
            } else {
                let data = data.unwrap_or(&joined);
                if !data.is_empty() {
                    self.stream(ts, idx, side, data);
                }
            }
            self.joined = joined;
        }
        if flags & (TCP_RST | TCP_FIN) != 0 {
            self.finish_flow(idx, flags);
        }
        Ok(())
    }

    fn finish_flow(&mut self, idx: u32, flags: u8) {
        let flow = self.flows.flow_mut(idx);
        if flags & TCP_RST != 0 || flow.closing {
            self.flows.close(idx);
        } else {
            flow.closing = true; // wait for the other side's FIN before forgetting the flow
        }
    }

    fn stream(&mut self, ts: f64, idx: u32, side: u8, data: &[u8]) {
        let mut items = std::mem::take(&mut self.items);
        items.clear();
        let flow = self.flows.flow_mut(idx);
        let d = &mut flow.dirs[side as usize];
        d.tls.feed(data, &mut items);
        if d.tls.done() {
            d.done = true;
        }
        for item in items.drain(..) {
            let (kind, body) = match item {
                StreamItem::Problem(reason) => {
                    self.stats.add_owned(format!("malformed.{reason}"), 1);
                    continue;
                }
                StreamItem::Hello(kind, body) => (kind, body),
            };
            let client = kind == HANDSHAKE_CLIENT_HELLO;
            let Some(hello) = self.parse_hello(&body, client, Transport::Tcp) else {
                continue;
            };
            let flow = self.flows.flow_mut(idx);
            let index;
            {
                let d = &mut flow.dirs[side as usize];
                if client {
                    d.client_hellos += 1;
                    index = d.client_hellos;
                } else {
                    d.server_hellos += 1;
                    index = d.server_hellos;
                }
            }
            if let Hello::Server(sh) = &hello {
                if !sh.is_hello_retry_request {
                    // The handshake's last plaintext hello: everything after it on this
                    // connection is of no interest or encrypted, so both directions can take
                    // the fast path; every ServerHello answers one ClientHello, so once the
                    // client has sent as many as were answered, no other can follow.
                    flow.dirs[side as usize].done = true;
                    let answered = flow.dirs[side as usize].server_hellos;
                    let peer = &mut flow.dirs[1 - side as usize];
                    if peer.client_hellos >= answered {
                        peer.done = true;
                    }
                }
            }
            let k = flow.keys[side as usize];
            let kb = k.as_bytes();
            let alen = (kb.len() - 4) / 2;
            let d = &flow.dirs[side as usize];
            self.found.push(Sighting {
                frame: self.frames,
                ts,
                src: Addr::from_slice(&kb[..alen]),
                sport: d.sport,
                dst: Addr::from_slice(&kb[alen..2 * alen]),
                dport: d.dport,
                transport: Transport::Tcp,
                index,
                hello,
            });
            self.stats.add(if client { "hellos.client" } else { "hellos.server" }, 1);
        }
        self.items = items;
    }

    /// QUIC Initials and DTLS handshakes: one assembler per UDP 4-tuple that starts like one.
    pub(crate) fn udp(
        &mut self,
        ts: f64,
        frame: &[u8],
        l4: usize,
        end: usize,
        addrs: &[u8],
        alen: usize,
    ) -> Step {
        let key = match transport_key(frame, l4, addrs) {
            Some(k) => k,
            None => return Ok(()),
        };
        let payload = &frame[l4 + 8..end];
        let idx = match self.flows.udp.get(&key).copied() {
            Some(i) => i,
            None => {
                self.flows.sweep(ts);
                let rkey = key.reverse(alen);
                if quic::looks_like_quic_initial(payload) {
                    self.flows.create_udp(ts, key, rkey, Transport::Quic)
                } else if dtls::looks_like_dtls_client_hello(payload) {
                    self.flows.create_udp(ts, key, rkey, Transport::Dtls)
                } else if dtls::looks_like_dtls_server_hello(payload) {
                    // Only the server's side is in the capture so far: the client is the receiver.
                    self.flows.create_udp(ts, rkey, key, Transport::Dtls)
                } else {
                    self.stats.add("skipped.udp_not_quic_dtls", 1);
                    return Ok(());
                }
            }
        };
        let session = self.flows.session_mut(idx);
        session.last_ts = ts;
        if session.done {
            return Ok(());
        }
        let from_client = key == session.client_key;
        let (bodies, count, asm_done) = match &mut session.assembler {
            UdpAssembler::Quic(a) => {
                let b = if from_client { a.feed(payload) } else { a.feed_server(payload) };
                let c = if from_client { a.client_hellos } else { a.server_hellos };
                (b, c, a.done)
            }
            UdpAssembler::Dtls(a) => {
                let b = if from_client { a.feed(payload) } else { a.feed_server(payload) };
                let c = if from_client { a.client_hellos } else { a.server_hellos };
                (b, c, false)
            }
        };
        session.datagrams += 1;
        if asm_done || session.datagrams >= MAX_UDP_HANDSHAKE_DATAGRAMS {
            session.done = true;
        }
        if bodies.is_empty() {
            return Ok(());
        }
        let transport = session.transport;
        let (sport, dport) = ports(frame, l4);
        let n = bodies.len() as u64;
        let mut found = 0;
        for (i, body) in bodies.iter().enumerate() {
            if let Some(hello) = self.parse_hello(body, from_client, transport) {
                found += 1;
                self.found.push(Sighting {
                    frame: self.frames,
                    ts,
                    src: Addr::from_slice(&addrs[..alen]),
                    sport,
                    dst: Addr::from_slice(&addrs[alen..]),
                    dport,
                    transport,
                    index: count - n + i as u64 + 1,
                    hello,
                });
            }
        }
        self.stats.add(if from_client { "hellos.client" } else { "hellos.server" }, found);
        Ok(())
    }

    /// A hello's body as its sender's side; a malformed one is counted (QUIC's and DTLS's
    /// under their own names) and None.
    fn parse_hello(&mut self, body: &[u8], client: bool, transport: Transport) -> Option<Hello> {
        let parsed = if client {
            parse_client_hello(body).map(Hello::Client)
        } else {
            parse_server_hello(body).map(Hello::Server)
        };
        match parsed {
            Ok(hello) => Some(hello),
            Err(e) => {
                let side = if client { "client" } else { "server" };
                let name = match transport {
                    Transport::Tcp => format!("malformed.{side}_hello_{}", e.as_str()),
                    t => format!("malformed.{}_{side}_hello_{}", t.as_str(), e.as_str()),
                };
                self.stats.add_owned(name, 1);
                None
            }
        }
    }

    /// End of input: count what was left incomplete.
    pub fn finish(&mut self) {
        let n = self.flows.flush();
        self.stats.add("skipped.tcp_gap_at_end", n);
    }
}

/// The direction key of the TCP or UDP header at `l4`: the addresses, then both ports as
/// they stand. None when longer than any key (a packet of no flow).
#[inline]
fn transport_key(frame: &[u8], l4: usize, addrs: &[u8]) -> Option<FlowKey> {
    FlowKey::new(&[addrs, slice(frame, l4, l4 + 4)])
}

/// Source and destination port of the TCP or UDP header at `l4` (its first 4 bytes present).
#[inline]
fn ports(frame: &[u8], l4: usize) -> (u16, u16) {
    let port = |i: usize| u16::from_be_bytes([frame[i], frame[i + 1]]);
    (port(l4), port(l4 + 2))
}

/// Python's `frame[a:b]`: clamped, never an error.
#[inline(always)]
pub fn slice(frame: &[u8], a: usize, b: usize) -> &[u8] {
    let n = frame.len();
    &frame[a.min(n)..b.min(n)]
}
