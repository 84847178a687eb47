//! QUIC v1/v2 Initial decryption and CRYPTO reassembly (port of `ja3svc/quic/`).
//!
//! Owned by the `nativequic` work: this file fixes the interface the engine calls. Until it is
//! filled in, `looks_like_quic_initial` says no, so QUIC datagrams are counted as
//! `skipped.udp_not_quic_dtls` (the differential test shows the difference).

/// Whether this module is the real port. The binding exports `quic::IMPLEMENTED &&
/// dtls::IMPLEMENTED` as `ja3svc._native.COMPLETE`; `ja3svc pcap` defaults to the Rust engine
/// only when it is true (a stub would silently miss QUIC hellos). The port sets it to true.
pub const IMPLEMENTED: bool = false;

/// Cheap test on a UDP payload before a session is created (Python: `looks_like_quic_initial`).
pub fn looks_like_quic_initial(_datagram: &[u8]) -> bool {
    false
}

/// The hellos of one QUIC connection (Python: `QuicInitialAssembler`).
#[derive(Default)]
pub struct QuicInitialAssembler {
    /// ClientHellos returned so far (the index of the last one).
    pub client_hellos: u64,
    /// ServerHellos (HelloRetryRequests included) returned so far.
    pub server_hellos: u64,
    /// Nothing more can come from Initial packets.
    pub done: bool,
}

impl QuicInitialAssembler {
    pub fn new() -> Self {
        Self::default()
    }

    /// A client-to-server UDP payload; the ClientHello bodies (no 4-byte header) it completed.
    pub fn feed(&mut self, _datagram: &[u8]) -> Vec<Vec<u8>> {
        Vec::new()
    }

    /// A server-to-client UDP payload; the ServerHello bodies it completed.
    pub fn feed_server(&mut self, _datagram: &[u8]) -> Vec<Vec<u8>> {
        Vec::new()
    }
}
