//! ja3svc's hot path in Rust: capture bytes in, fingerprinted TLS hellos and counters out.
//!
//! The pure-Python engine (`ja3svc/engine.py` and the modules it uses) is the reference: every
//! module here is a port of one Python module, with the same counters, the same limits and the
//! same output, and `tests/test_native_differential.py` runs both over the same captures and
//! requires identical records and counters. Nothing here panics on hostile input; everything
//! the engine gives up on is counted under a reason.

pub mod byte_ranges;
pub mod capture;
pub mod dtls;
pub mod engine;
pub mod fingerprints;
pub mod flow_table;
pub mod hello;
pub mod ip;
pub mod json;
pub mod link;
pub mod pcap;
pub mod pcapng;
pub mod quic;
pub mod store_row;
pub mod tcp;
pub mod tls_stream;

pub use engine::{Engine, Sighting};
