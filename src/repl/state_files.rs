//! The decoders of the replication state files a store keeps for itself
//! (`copies.state` on the active, `seed.state` on a copy being seeded),
//! reachable from outside the crate only for the fuzz target
//! `repl_state_files`. A damaged disk can hand them any bytes.

use crate::log::Lsn;
use std::path::Path;

/// What a `seed.state` holds: the next page wanted and the newest page LSN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeedStateFields {
    pub header_page: Vec<u8>,
    pub next: u32,
    pub required: Lsn,
}

/// Decodes a `seed.state`; Err names what is wrong.
pub fn decode_seed_state(bytes: &[u8]) -> Result<SeedStateFields, String> {
    let p = super::copy::seed::decode_state(bytes, Path::new("seed.state"))?;
    Ok(SeedStateFields {
        header_page: p.header_page,
        next: p.next,
        required: p.required,
    })
}

/// Encodes a `seed.state` (what the copy writes).
pub fn encode_seed_state(fields: &SeedStateFields) -> Vec<u8> {
    super::copy::seed::encode_state(&fields.header_page, fields.next, fields.required)
}

/// Decodes a `copies.state`: each copy's id and the LSN it holds.
pub fn decode_copy_registry(bytes: &[u8]) -> Result<Vec<([u8; 16], Lsn)>, String> {
    super::registry_file::decode(bytes)
}

/// Encodes a `copies.state` (what the active writes).
pub fn encode_copy_registry(copies: &[([u8; 16], Lsn)]) -> Vec<u8> {
    super::registry_file::encode(copies)
}
