//! The frame decoder of decrypted Initial payloads: never panics, and every CRYPTO frame it
//! returns lies inside the payload, in order, without overlapping another.
#![no_main]

use ja3svc_engine::quic::frames::crypto_frames;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|payload: &[u8]| {
    // IETF framing and Google's (T050/T051) alike.
    for google in [false, true] {
        let (frames, _) = crypto_frames(payload, google);
        let whole = payload.as_ptr_range();
        let mut after = whole.start;
        for (_, data) in frames {
            let r = data.as_ptr_range();
            assert!(
                r.start >= after && r.end <= whole.end,
                "a CRYPTO frame outside its payload"
            );
            after = r.end;
        }
    }
});
