//! The replication wire decoder on hostile bytes: frames decoded one after
//! another until the input runs out or an error; every message that decodes
//! must encode back to an equivalent frame. No panic, no unbounded
//! allocation (lengths are bounded before anything is allocated).

#![no_main]

use libfuzzer_sys::fuzz_target;
use mailvault::repl::wire;

fuzz_target!(|data: &[u8]| {
    let mut rest = data;
    // The reader that reuses its buffers from frame to frame (a stream)
    // must give what decoding frame by frame gives.
    let mut reader = wire::FrameReader::default();
    let mut stream = data;
    while let Ok(Some((msg, used))) = wire::decode(rest) {
        let again = wire::encode(&msg, None);
        let (back, _) = wire::decode(&again).expect("re-encoded frame decodes").expect("whole");
        assert_eq!(back, msg);
        rest = &rest[used..];
        let payload = reader.read(&mut stream).expect("a frame that decodes reads");
        assert_eq!(payload.message().as_ref(), Ok(&msg));
        if let Some(pages) = payload.seed_pages() {
            let pages = pages.expect("decoded SeedPages");
            match &msg {
                wire::Message::SeedPages {
                    first,
                    page_size,
                    bytes,
                } => {
                    assert_eq!(
                        (pages.first, pages.page_size, pages.bytes),
                        (*first, *page_size, &bytes[..])
                    )
                }
                other => panic!("seed_pages() on {}", other.name()),
            }
        }
    }
    // Each payload decoder alone, on the raw bytes.
    if let Some((&kind, payload)) = data.split_first()
        && let Ok(msg) = wire::Message::decode(kind, payload)
    {
        let frame = wire::encode(&msg, Some(1));
        assert_eq!(wire::decode(&frame).ok().flatten().map(|m| m.0), Some(msg));
    }
});
