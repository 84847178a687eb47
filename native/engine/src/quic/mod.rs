//! QUIC v1 (RFC 9001) and v2 (RFC 9369) Initial packets: the TLS hellos inside them.
//!
//! Also the versions before RFC 9000 still seen on the wire (IETF drafts 23-34, Facebook mvfst,
//! Google T050/T051): `keys::version` knows every version whose Initials can be read.
//!
//! Public surface: [`QuicInitialAssembler`] (one per connection, fed UDP payloads) and
//! [`looks_like_quic_initial`] (the cheap pre-check). The submodules hold the wire pieces:
//! `keys` (key derivation and packet protection), `packets` (long headers, coalescing),
//! `frames` (CRYPTO and the frames around it), `assembler` (per-connection reassembly).

/// This module is the real port (not the interface stub it replaced): the binding exports
/// `quic::IMPLEMENTED && dtls::IMPLEMENTED` so that `ja3svc pcap` only defaults to the Rust
/// engine when no QUIC or DTLS hello would be missed.
pub const IMPLEMENTED: bool = true;

pub mod assembler;
pub mod frames;
pub mod keys;
pub mod packets;

pub use assembler::{looks_like_quic_initial, CryptoStream, QuicInitialAssembler};
pub use keys::{QUIC_V1, QUIC_V2};

#[cfg(test)]
pub(crate) mod tests;
