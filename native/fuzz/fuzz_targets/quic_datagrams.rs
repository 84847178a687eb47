//! Whole UDP payloads in both directions into one connection's Initial assembler: never
//! panics, and its counters agree with what it returned.
#![no_main]

mod common;

use ja3svc_engine::quic::{looks_like_quic_initial, QuicInitialAssembler};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut asm = QuicInitialAssembler::new();
    let (mut clients, mut servers) = (0u64, 0u64);
    for (from_server, datagram) in common::datagrams(data) {
        let _ = looks_like_quic_initial(datagram);
        if from_server {
            servers += asm.feed_server(datagram).len() as u64;
        } else {
            clients += asm.feed(datagram).len() as u64;
        }
    }
    assert_eq!((asm.client_hellos, asm.server_hellos), (clients, servers));
});
