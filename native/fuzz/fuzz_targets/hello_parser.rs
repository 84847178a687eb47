//! The ClientHello and ServerHello parsers and every fingerprint computed from what they accept:
//! never a panic, and a hello that parses always gets well-formed fingerprints.
#![no_main]

use ja3svc_engine::fingerprints::{
    client_fingerprints, server_fingerprints, DovecotProfile, Transport,
};
use ja3svc_engine::hello::{parse_client_hello, parse_server_hello};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|body: &[u8]| {
    if let Ok(h) = parse_client_hello(body) {
        for transport in [Transport::Tcp, Transport::Quic, Transport::Dtls] {
            for profile in [DovecotProfile::OpenSsl30, DovecotProfile::OpenSsl32] {
                let f = client_fingerprints(&h, transport, profile);
                assert_eq!(f.ja3_hash.len(), 32);
                assert_eq!(f.ja4.len(), 36, "{}", f.ja4);
                assert_eq!(f.ja3.matches(',').count(), 4);
            }
        }
    }
    if let Ok(h) = parse_server_hello(body) {
        let f = server_fingerprints(&h);
        assert_eq!(f.ja3s_hash.len(), 32);
        assert_eq!(f.ja3s.matches(',').count(), 2);
    }
});
