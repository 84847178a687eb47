//! Fuzzer-chosen plaintext behind real Initial packet protection: each record of the input is
//! sealed as a client (or server) Initial under the keys of RFC 9001's example DCID, so every
//! byte the fuzzer picks reaches the frame parser and the CRYPTO streams, as a capture would.
#![no_main]

mod common;

use ja3svc_engine::quic::keys::{initial_keys, V1};
use ja3svc_engine::quic::packets::seal_initial;
use ja3svc_engine::quic::QuicInitialAssembler;
use libfuzzer_sys::fuzz_target;

const DCID: [u8; 8] = [0x83, 0x94, 0xc8, 0xf0, 0x3e, 0x51, 0x57, 0x08];

fuzz_target!(|data: &[u8]| {
    let (client, server) = initial_keys(&V1, &DCID);
    let mut asm = QuicInitialAssembler::new();
    let (mut clients, mut servers) = (0u64, 0u64);
    for (pn, (from_server, plaintext)) in common::datagrams(data).into_iter().enumerate() {
        let mut payload = plaintext.to_vec();
        payload.resize(payload.len().max(16), 0); // PADDING up to the header-protection sample
        let keys = if from_server { &server } else { &client };
        let Some(packet) = seal_initial(&V1, keys, &DCID, b"", pn as u32, &payload) else {
            continue;
        };
        if from_server {
            servers += asm.feed_server(&packet).len() as u64;
        } else {
            clients += asm.feed(&packet).len() as u64;
        }
    }
    assert_eq!((asm.client_hellos, asm.server_hellos), (clients, servers));
});
