//! Fuzzes the ClientHello codec: `cargo fuzz run -s none hello` (stable).
//!
//! Checks more than "no panic": the answer is consistent with the codec's
//! contract, and re-framing a hello into other record sizes never changes
//! the name or the random read from it.
#![no_main]

use egressgen::serve::hello::{self, Parsed, build};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match hello::parse(data) {
        Parsed::NeedMore(n) => assert!(n > data.len()),
        Parsed::Invalid(_) => {}
        Parsed::Hello(h) => {
            assert!(h.len <= data.len() && h.records >= 1);
            let (random, sni) = (h.random, h.sni.map(|s| s.into_owned()));
            // The same handshake in 1-byte and 100-byte records: same answer.
            for chunk in [1, 100] {
                let Some(wire) = build::refragment(data, chunk) else {
                    continue;
                };
                if wire.len() > hello::MAX_WIRE {
                    continue;
                }
                match hello::parse(&wire) {
                    Parsed::Hello(again) => {
                        assert_eq!(again.random, random);
                        assert_eq!(again.sni.map(|s| s.into_owned()), sni)
                    }
                    other => panic!("re-framed hello parsed as {other:?}"),
                }
            }
        }
    }
});
