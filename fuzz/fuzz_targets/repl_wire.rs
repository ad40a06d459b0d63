//! The replication wire decoder on hostile bytes: frames decoded one after
//! another until the input runs out or an error; every message that decodes
//! must encode back to an equivalent frame. No panic, no unbounded
//! allocation (lengths are bounded before anything is allocated).

#![no_main]

use libfuzzer_sys::fuzz_target;
use mailvault::repl::wire;

fuzz_target!(|data: &[u8]| {
    let mut rest = data;
    while let Ok(Some((msg, used))) = wire::decode(rest) {
        let again = wire::encode(&msg, None);
        let (back, _) = wire::decode(&again).expect("re-encoded frame decodes").expect("whole");
        assert_eq!(back, msg);
        rest = &rest[used..];
    }
    // Each payload decoder alone, on the raw bytes.
    if let Some((&kind, payload)) = data.split_first() {
        if let Ok(msg) = wire::Message::decode(kind, payload) {
            let frame = wire::encode(&msg, Some(1));
            assert_eq!(wire::decode(&frame).ok().flatten().map(|m| m.0), Some(msg));
        }
    }
});
