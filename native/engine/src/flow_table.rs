//! The table of flows being watched: bounded in size, aged out by capture time (port of
//! `ja3svc/flow_table.py`).
//!
//! The reference keeps flows in a dict in insertion order, evicts the oldest when full and
//! sweeps idle flows every `SWEEP_INTERVAL` seconds of capture time. Here flows live in a slab
//! (indices, no per-flow allocation beyond their buffers), each direction key maps to (slot,
//! side), and insertion order is a queue of (order, slot) whose stale entries (closed flows)
//! are skipped and compacted away, which keeps eviction O(1) amortised.

use ahash::RandomState;
use std::collections::{HashMap, VecDeque};

use crate::dtls::DtlsHandshakeAssembler;
use crate::fingerprints::Transport;
use crate::quic::QuicInitialAssembler;
use crate::tcp::TcpReassembler;
use crate::tls_stream::TlsStreamParser;

pub const SWEEP_INTERVAL: f64 = 10.0;

/// A direction key: source address, destination address, source port, destination port as
/// raw bytes (12 for IPv4, 36 for IPv6). The length is part of the key, as in the reference,
/// whose keys are byte strings of either length (a short slice of a cut frame included).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct FlowKey {
    len: u8,
    bytes: [u8; 36],
}

impl FlowKey {
    /// The key of these bytes; None when longer than any real key (never in the table).
    pub fn new(parts: &[&[u8]]) -> Option<Self> {
        let mut k = FlowKey { len: 0, bytes: [0; 36] };
        for p in parts {
            let at = k.len as usize;
            if at + p.len() > 36 {
                return None;
            }
            k.bytes[at..at + p.len()].copy_from_slice(p);
            k.len += p.len() as u8;
        }
        Some(k)
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }

    /// The opposite direction's key: addresses and ports swapped (`alen` = 4 or 16).
    pub fn reverse(&self, alen: usize) -> FlowKey {
        let k = self.as_bytes();
        let a = 2 * alen;
        // The reference slices without checking; keys here are always whole (2 * alen + 4).
        let mut r = FlowKey { len: self.len, bytes: [0; 36] };
        r.bytes[..alen].copy_from_slice(&k[alen..a]);
        r.bytes[alen..a].copy_from_slice(&k[..alen]);
        r.bytes[a..a + 2].copy_from_slice(&k[a + 2..a + 4]);
        r.bytes[a + 2..a + 4].copy_from_slice(&k[a..a + 2]);
        r
    }
}

/// What is known of one direction of a TCP flow.
#[derive(Default)]
pub struct FlowDirection {
    pub sport: u16,
    pub dport: u16,
    pub tcp: TcpReassembler,
    pub tls: TlsStreamParser,
    pub client_hellos: u64,
    pub server_hellos: u64,
    /// Nothing more can be learnt from this direction: packets skip all work.
    pub done: bool,
}

pub struct Flow {
    pub last_ts: f64,
    pub closing: bool,
    /// [forward, reverse]
    pub dirs: [FlowDirection; 2],
    /// Key of each direction (the reference rebuilds them from addresses and ports).
    pub keys: [FlowKey; 2],
    order: u64,
}

pub enum UdpAssembler {
    Quic(Box<QuicInitialAssembler>),
    Dtls(Box<DtlsHandshakeAssembler>),
}

pub struct UdpSession {
    pub last_ts: f64,
    pub client_key: FlowKey,
    pub reverse_key: FlowKey,
    pub transport: Transport,
    pub assembler: UdpAssembler,
    pub datagrams: u32,
    pub done: bool,
    order: u64,
}

#[derive(Default, Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowTableStats {
    pub flows: u64,
    pub evicted_full: u64,
    pub expired_idle: u64,
    pub closed: u64,
}

/// Slots with insertion order; `T` carries its own order number.
struct Ordered<T> {
    slots: Vec<Option<T>>,
    free: Vec<u32>,
    queue: VecDeque<(u64, u32)>,
    next_order: u64,
    live: usize,
}

impl<T> Ordered<T> {
    fn new() -> Self {
        Self { slots: Vec::new(), free: Vec::new(), queue: VecDeque::new(), next_order: 0, live: 0 }
    }

    fn insert(&mut self, make: impl FnOnce(u64) -> T) -> u32 {
        let order = self.next_order;
        self.next_order += 1;
        let item = make(order);
        let idx = match self.free.pop() {
            Some(i) => {
                self.slots[i as usize] = Some(item);
                i
            }
            None => {
                self.slots.push(Some(item));
                (self.slots.len() - 1) as u32
            }
        };
        self.queue.push_back((order, idx));
        self.live += 1;
        idx
    }

    fn remove(&mut self, idx: u32) -> Option<T> {
        let item = self.slots.get_mut(idx as usize)?.take()?;
        self.free.push(idx);
        self.live -= 1;
        // Closed flows leave stale queue entries; rebuild when they outnumber the live ones.
        if self.queue.len() > 2 * self.live + 1024 {
            let slots = &self.slots;
            self.queue.retain(|&(_, i)| slots[i as usize].is_some());
        }
        Some(item)
    }

    fn get(&self, idx: u32) -> Option<&T> {
        self.slots.get(idx as usize)?.as_ref()
    }

    fn get_mut(&mut self, idx: u32) -> Option<&mut T> {
        self.slots.get_mut(idx as usize)?.as_mut()
    }

    /// The oldest live slot, given how to read an item's order number.
    fn oldest(&mut self, order_of: impl Fn(&T) -> u64) -> Option<u32> {
        while let Some(&(order, idx)) = self.queue.front() {
            match self.slots[idx as usize].as_ref() {
                Some(item) if order_of(item) == order => return Some(idx),
                _ => {
                    self.queue.pop_front();
                }
            }
        }
        None
    }
}

pub struct FlowTable {
    pub max_flows: usize,
    pub idle_timeout: f64,
    /// direction key -> (flow slot, side: 0 forward, 1 reverse)
    pub directions: HashMap<FlowKey, (u32, u8), RandomState>,
    flows: Ordered<Flow>,
    /// UDP sessions under both direction keys.
    pub udp: HashMap<FlowKey, u32, RandomState>,
    sessions: Ordered<UdpSession>,
    next_sweep: f64,
    pub stats: FlowTableStats,
}

impl FlowTable {
    pub fn new(max_flows: usize, idle_timeout: f64) -> Self {
        Self {
            max_flows,
            idle_timeout,
            directions: HashMap::with_hasher(RandomState::new()),
            flows: Ordered::new(),
            udp: HashMap::with_hasher(RandomState::new()),
            sessions: Ordered::new(),
            next_sweep: 0.0,
            stats: FlowTableStats::default(),
        }
    }

    pub fn len(&self) -> usize {
        self.flows.live
    }

    pub fn is_empty(&self) -> bool {
        self.flows.live == 0
    }

    pub fn flow(&self, idx: u32) -> &Flow {
        self.flows.get(idx).expect("live flow")
    }

    pub fn flow_mut(&mut self, idx: u32) -> &mut Flow {
        self.flows.get_mut(idx).expect("live flow")
    }

    /// Start watching a flow first seen in direction `key`; returns its slot (side 0).
    pub fn create(&mut self, ts: f64, key: FlowKey, rkey: FlowKey, sport: u16, dport: u16) -> u32 {
        if self.flows.live >= self.max_flows {
            if let Some(oldest) = self.flows.oldest(|f| f.order) {
                self.remove_flow(oldest);
                self.stats.evicted_full += 1;
            }
        }
        let idx = self.flows.insert(|order| Flow {
            last_ts: ts,
            closing: false,
            dirs: [
                FlowDirection { sport, dport, ..Default::default() },
                FlowDirection { sport: dport, dport: sport, ..Default::default() },
            ],
            keys: [key, rkey],
            order,
        });
        // Forward first, then reverse: when both keys are equal (same address and port on
        // both sides) the reverse direction wins the key, as in the reference's dict.
        self.directions.insert(key, (idx, 0));
        self.directions.insert(rkey, (idx, 1));
        self.stats.flows += 1;
        idx
    }

    /// Start watching a QUIC/DTLS session whose first datagram went in direction `key`.
    pub fn create_udp(&mut self, ts: f64, key: FlowKey, rkey: FlowKey, transport: Transport) -> u32 {
        if self.sessions.live >= self.max_flows {
            if let Some(oldest) = self.sessions.oldest(|s| s.order) {
                if let Some(s) = self.sessions.remove(oldest) {
                    self.udp.remove(&s.client_key);
                    self.udp.remove(&s.reverse_key);
                }
                self.stats.evicted_full += 1;
            }
        }
        let assembler = match transport {
            Transport::Quic => UdpAssembler::Quic(Box::default()),
            _ => UdpAssembler::Dtls(Box::new(DtlsHandshakeAssembler::new())),
        };
        let idx = self.sessions.insert(|order| UdpSession {
            last_ts: ts,
            client_key: key,
            reverse_key: rkey,
            transport,
            assembler,
            datagrams: 0,
            done: false,
            order,
        });
        self.udp.insert(key, idx);
        self.udp.insert(rkey, idx);
        self.stats.flows += 1;
        idx
    }

    pub fn session_mut(&mut self, idx: u32) -> &mut UdpSession {
        self.sessions.get_mut(idx).expect("live session")
    }

    /// Forget a flow (RST, or FIN after which nothing is left to find).
    pub fn close(&mut self, idx: u32) {
        self.remove_flow(idx);
        self.stats.closed += 1;
    }

    fn remove_flow(&mut self, idx: u32) {
        if let Some(flow) = self.flows.remove(idx) {
            self.directions.remove(&flow.keys[0]);
            self.directions.remove(&flow.keys[1]);
        }
    }

    /// Drop flows idle for longer than the timeout; cheap to call on every packet.
    pub fn sweep(&mut self, now: f64) {
        if now < self.next_sweep {
            return;
        }
        self.next_sweep = now + SWEEP_INTERVAL;
        let limit = now - self.idle_timeout;
        let stale: Vec<u32> = (0..self.flows.slots.len() as u32)
            .filter(|&i| matches!(self.flows.get(i), Some(f) if f.last_ts < limit))
            .collect();
        for &i in &stale {
            self.remove_flow(i);
        }
        let stale_udp: Vec<u32> = (0..self.sessions.slots.len() as u32)
            .filter(|&i| matches!(self.sessions.get(i), Some(s) if s.last_ts < limit))
            .collect();
        for &i in &stale_udp {
            if let Some(s) = self.sessions.remove(i) {
                self.udp.remove(&s.client_key);
                self.udp.remove(&s.reverse_key);
            }
        }
        self.stats.expired_idle += (stale.len() + stale_udp.len()) as u64;
    }

    /// End of input: how many directions still hold out-of-order data (a segment never came).
    pub fn flush(&self) -> u64 {
        self.directions
            .values()
            .filter(|&&(idx, side)| {
                let d = &self.flow(idx).dirs[side as usize];
                d.tcp.buffered() > 0 && !d.done
            })
            .count() as u64
    }
}
