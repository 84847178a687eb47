//! DTLS handshake reassembly (port of `ja3svc/dtls.py`).
//!
//! Owned by the `nativequic` work: this file fixes the interface the engine calls. Until it is
//! filled in, `looks_like_dtls_client_hello` says no.

/// Whether this module is the real port (see `quic::IMPLEMENTED`).
pub const IMPLEMENTED: bool = false;

/// Cheap test on a UDP payload before a session is created (Python:
/// `looks_like_dtls_client_hello`).
pub fn looks_like_dtls_client_hello(_datagram: &[u8]) -> bool {
    false
}

/// The hellos of one DTLS association (Python: `DtlsHandshakeAssembler`). It has no `done`:
/// the engine stops feeding it after `MAX_UDP_HANDSHAKE_DATAGRAMS`, as in Python.
#[derive(Default)]
pub struct DtlsHandshakeAssembler {
    pub client_hellos: u64,
    pub server_hellos: u64,
}

impl DtlsHandshakeAssembler {
    pub fn new() -> Self {
        Self::default()
    }

    /// A client-to-server UDP payload; ClientHello bodies with the cookie removed.
    pub fn feed(&mut self, _datagram: &[u8]) -> Vec<Vec<u8>> {
        Vec::new()
    }

    /// A server-to-client UDP payload; ServerHello bodies (same layout as TLS).
    pub fn feed_server(&mut self, _datagram: &[u8]) -> Vec<Vec<u8>> {
        Vec::new()
    }
}
