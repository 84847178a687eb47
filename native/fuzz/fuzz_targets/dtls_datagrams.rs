//! UDP payloads in both directions into one association's DTLS assembler: never panics, its
//! counters agree with what it returned, and every ClientHello it returns is a body the cookie
//! was cut from (at least version, random and the session_id length).
#![no_main]

mod common;

use ja3svc_engine::dtls::{looks_like_dtls_client_hello, DtlsHandshakeAssembler};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut asm = DtlsHandshakeAssembler::new();
    let (mut clients, mut servers) = (0u64, 0u64);
    for (from_server, datagram) in common::datagrams(data) {
        let _ = looks_like_dtls_client_hello(datagram);
        if from_server {
            servers += asm.feed_server(datagram).len() as u64;
        } else {
            let hellos = asm.feed(datagram);
            assert!(hellos.iter().all(|h| h.len() >= 35));
            clients += hellos.len() as u64;
        }
    }
    assert_eq!((asm.client_hellos, asm.server_hellos), (clients, servers));
});
