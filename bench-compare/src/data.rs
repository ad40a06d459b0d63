//! The bytes every engine is given: record keys and self-checking values for
//! the key-value workloads, and deliveries from mailvault's seeded mail
//! generator for the mail workloads. Same seed, same bytes, for every engine.

use crate::error::{BenchResult, check_failed};
use mailvault::mailbox::workload::{MailGenerator, MessageKind};

/// Length of every record key.
pub const KEY_LEN: usize = 16;
/// Smallest value: it carries its own index and version.
pub const VALUE_HEADER: usize = 16;

/// A bijection of u64 (odd multiplier, then xor-shift), so keys arrive in
/// random order without repeating.
fn scramble(index: u64) -> u64 {
    let x = index.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    x ^ (x >> 29)
}

fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The key of record `index`: a scrambled prefix (random order in every
/// index) followed by the index itself, which the raw floor uses as a slot.
pub fn record_key(index: u64) -> [u8; KEY_LEN] {
    let mut key = [0u8; KEY_LEN];
    key[..8].copy_from_slice(&scramble(index).to_be_bytes());
    key[8..].copy_from_slice(&index.to_be_bytes());
    key
}

/// The index a record key was made from.
pub fn key_index(key: &[u8]) -> Option<u64> {
    let tail: [u8; 8] = key.get(8..KEY_LEN)?.try_into().ok()?;
    Some(u64::from_be_bytes(tail))
}

/// Value `version` of record `index`, `len` bytes (at least [`VALUE_HEADER`]):
/// index, version, then filler derived from both, so any read can be checked.
pub fn record_value(index: u64, version: u64, len: usize) -> Vec<u8> {
    let mut value = Vec::with_capacity(len.max(VALUE_HEADER));
    value.extend_from_slice(&index.to_be_bytes());
    value.extend_from_slice(&version.to_be_bytes());
    let mut state = index.rotate_left(17) ^ version;
    while value.len() < len {
        value.extend_from_slice(&splitmix(&mut state).to_le_bytes());
    }
    value.truncate(len.max(VALUE_HEADER));
    value
}

/// Checks a value read for record `index` and returns its version.
pub fn check_value(index: u64, value: &[u8], len: usize) -> BenchResult<u64> {
    if value.len() != len.max(VALUE_HEADER) {
        return Err(check_failed(format!(
            "record {index}: {} bytes read, {} written",
            value.len(),
            len.max(VALUE_HEADER)
        )));
    }
    let version = u64::from_be_bytes(value[8..16].try_into().unwrap_or_default());
    if value != record_value(index, version, len).as_slice() {
        return Err(check_failed(format!(
            "record {index}: the bytes read are not what was written"
        )));
    }
    Ok(version)
}

/// Reads record `index` through `get` and checks it is there and whole.
pub fn expect_record(
    get: impl FnOnce(&[u8]) -> BenchResult<Option<Vec<u8>>>,
    index: u64,
    len: usize,
) -> BenchResult<u64> {
    match get(&record_key(index))? {
        Some(value) => check_value(index, &value, len),
        None => Err(check_failed(format!("record {index} was written and is missing"))),
    }
}

/// A cheap 64-bit digest (FNV-1a) of a body, to check bodies read back
/// without keeping them in memory.
pub fn digest(bytes: &[u8]) -> u64 {
    let mut hash = 0xcbf2_9ce4_8422_2325u64;
    for &b in bytes {
        hash = (hash ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash ^ bytes.len() as u64
}

/// One message as every engine receives it. UIDs are handed out by the
/// workload (one writer per mailbox), so every engine stores the same rows.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub mailbox: String,
    pub folder: String,
    pub uid: u32,
    pub internal_date: i64,
    /// System flags as mailvault numbers them (`Flags::bits`).
    pub flags: u32,
    pub body: Vec<u8>,
}

/// A folder listing's row: what IMAP `FETCH 1:* (UID FLAGS INTERNALDATE RFC822.SIZE)` needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageRow {
    pub uid: u32,
    pub internal_date: i64,
    pub size: u64,
    pub flags: u32,
}

/// Flags of the `n`th message of a folder: mostly seen, some answered or flagged.
pub fn flags_of(n: u32) -> u32 {
    use mailvault::mailbox::Flags;
    let mut flags = 0;
    if n % 10 < 7 {
        flags |= Flags::SEEN.bits();
    }
    if n.is_multiple_of(9) {
        flags |= Flags::ANSWERED.bits();
    }
    if n.is_multiple_of(23) {
        flags |= Flags::FLAGGED.bits();
    }
    flags
}

/// The deliveries of one ingest writer: the realistic mix, seeded per writer.
pub struct IngestStream {
    generator: MailGenerator,
    mailbox: String,
    next_uid: u32,
}

impl IngestStream {
    pub fn new(seed: u64, writer: usize) -> IngestStream {
        IngestStream {
            generator: MailGenerator::new(seed.wrapping_add(writer as u64)),
            mailbox: mailbox_name(writer),
            next_uid: 1,
        }
    }

    pub fn next_delivery(&mut self) -> Delivery {
        let message = self.generator.message();
        let uid = self.next_uid;
        self.next_uid += 1;
        Delivery {
            mailbox: self.mailbox.clone(),
            folder: "INBOX".into(),
            uid,
            internal_date: message.internal_date,
            flags: flags_of(uid),
            body: message.bytes,
        }
    }
}

/// The mailbox (user) of writer `n`.
pub fn mailbox_name(writer: usize) -> String {
    format!("user{writer:02}")
}

/// Plain-text messages of 2–8 KiB for the folder workload (a folder of
/// 10,000 messages of the whole mix would hold over a gigabyte).
pub struct PlainStream {
    generator: MailGenerator,
}

impl PlainStream {
    pub fn new(seed: u64) -> PlainStream {
        PlainStream {
            generator: MailGenerator::new(seed),
        }
    }

    pub fn next_body(&mut self) -> (Vec<u8>, i64) {
        let size = self.generator.between(2 << 10, 8 << 10) as usize;
        let message = self.generator.message_of(MessageKind::Plain, size);
        (message.bytes, message.internal_date)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_check_themselves() {
        let value = record_value(7, 3, 100);
        assert_eq!(check_value(7, &value, 100).ok(), Some(3));
        assert!(check_value(8, &value, 100).is_err());
        let mut damaged = value.clone();
        damaged[50] ^= 1;
        assert!(check_value(7, &damaged, 100).is_err());
        assert_eq!(key_index(&record_key(123_456)), Some(123_456));
    }
}
