//! The whole engine on arbitrary frames of every link type it knows (Ethernet, cooked, raw IP,
//! loopback...), so link layers, tunnels, IP, the flow table and the UDP/TCP dispatch are all
//! reached: never a panic, and the hello counters agree with the sightings returned.
#![no_main]

mod common;

use ja3svc_engine::fingerprints::DovecotProfile;
use ja3svc_engine::Engine;
use libfuzzer_sys::fuzz_target;

const LINKTYPES: [u32; 10] = [0, 1, 12, 14, 101, 108, 113, 228, 229, 276];

fuzz_target!(|data: &[u8]| {
    let mut engine = Engine::new(64, 300.0, DovecotProfile::OpenSsl30);
    let mut found = 0u64;
    for (i, (flag, frame)) in common::frames(data).into_iter().enumerate() {
        let linktype = LINKTYPES[usize::from(flag) % LINKTYPES.len()];
        engine.feed_frame(i as f64, linktype, frame);
        found += engine.found.drain(..).count() as u64;
    }
    engine.finish();
    let counted = engine.stats.get("hellos.client") + engine.stats.get("hellos.server");
    assert_eq!(found, counted);
});
