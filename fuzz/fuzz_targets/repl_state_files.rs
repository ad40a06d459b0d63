//! The replication state files a store reads back at start: `seed.state`
//! (a copy's seed cut off part way) and `copies.state` (the active's copy
//! registry), decoded from arbitrary bytes.
//!
//! - Neither decoder panics or allocates beyond its input's size.
//! - Whatever decodes re-encodes to exactly the input: no two files mean the
//!   same state, and nothing in a file is silently ignored.
//! - A registry names at most 1,024 copies.
//!
//! - Whatever the writers encode decodes back to the same state (a seed
//!   state only when its header page is a valid database header).
//!
//! Input: one selector byte, then the body. Selector % 4: 0, the body is a
//! `seed.state`; 1, a `copies.state`; 2, the body is a seed state's next
//! page (4 bytes), newest LSN (8) and header page (the rest), encoded then
//! decoded; 3, the body is registry entries (24 bytes each), encoded then
//! decoded.

#![no_main]

use libfuzzer_sys::fuzz_target;
use mailvault::log::Lsn;
use mailvault::repl::state_files;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    match selector % 4 {
        0 => {
            if let Ok(fields) = state_files::decode_seed_state(body) {
                assert_eq!(state_files::encode_seed_state(&fields), body, "seed state round trip");
            }
        }
        1 => {
            if let Ok(copies) = state_files::decode_copy_registry(body) {
                assert!(copies.len() <= 1024);
                assert_eq!(state_files::encode_copy_registry(&copies), body, "registry round trip");
            }
        }
        2 => {
            if body.len() < 12 {
                return;
            }
            let fields = state_files::SeedStateFields {
                next: u32::from_le_bytes(body[..4].try_into().unwrap()),
                required: Lsn(u64::from_le_bytes(body[4..12].try_into().unwrap())),
                header_page: body[12..].to_vec(),
            };
            let file = state_files::encode_seed_state(&fields);
            if let Ok(back) = state_files::decode_seed_state(&file) {
                assert_eq!(back, fields, "seed state: encoded then decoded");
            }
        }
        _ => {
            let copies: Vec<([u8; 16], Lsn)> = body
                .chunks_exact(24)
                .take(1024)
                .map(|e| {
                    (
                        e[..16].try_into().unwrap(),
                        Lsn(u64::from_le_bytes(e[16..].try_into().unwrap())),
                    )
                })
                .collect();
            let file = state_files::encode_copy_registry(&copies);
            assert_eq!(
                state_files::decode_copy_registry(&file).as_deref(),
                Ok(&copies[..]),
                "registry: encoded then decoded"
            );
        }
    }
});
