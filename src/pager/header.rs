//! The database header: page 0, with a shadow copy in page 1. Each checkpoint
//! writes the slot that does not hold the newest copy (ping-pong), so a torn
//! header write always leaves the previous checkpoint intact. At open the
//! valid copy with the higher sequence wins.
//!
//! Body (after the 32-byte page header; DESIGN.md has the table):
//! magic "MVDBHDR\0" (8) | format version u16 | state u8 | 0 u8 | page size u32 |
//! database signature (16) | log signature (16) | sequence u64 | redo LSN u64 |
//! required LSN u64 | page count u32 | catalog root u32 | created (µs) u64 |
//! log epoch u64

use super::page::{self, PAGE_HEADER_LEN, PageKind};
use super::{DbError, Result};
use crate::log::{LogSignature, Lsn};
use std::path::Path;

/// Magic at the start of the header body.
pub const DB_MAGIC: [u8; 8] = *b"MVDBHDR\0";
/// Current database format version.
pub const DB_FORMAT_VERSION: u16 = 1;
/// The two header slots.
pub const HEADER_PAGES: [u32; 2] = [0, 1];
/// Bytes of the body that carry data.
const BODY_LEN: usize = 8 + 2 + 1 + 1 + 4 + 16 + 16 + 8 + 8 + 8 + 4 + 4 + 8 + 8;

/// Whether the database was closed cleanly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbState {
    /// Closed by `close`: the file reflects the whole log.
    Clean = 1,
    /// Open, or crashed: recovery must replay the log from the redo LSN.
    Dirty = 2,
}

/// The database header, as decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DbHeader {
    pub state: DbState,
    pub page_size: u32,
    pub signature: LogSignature,
    pub log_signature: LogSignature,
    /// Increases with every header write; the higher valid copy wins.
    pub sequence: u64,
    /// Recovery replays the log from this record (a checkpoint marker).
    pub redo_lsn: Lsn,
    /// The file holds pages changed up to this LSN: a log that ends before
    /// it cannot bring the database to a consistent state.
    pub required_lsn: Lsn,
    /// Pages in the database (the file may be longer: extents).
    pub page_count: u32,
    /// Root of the table catalog.
    pub catalog_root: u32,
    pub created_us: u64,
    /// Log epoch (raised at failover by replication).
    pub epoch: u64,
}

/// The salt every page of a database carries, from its signature.
pub fn salt_of(signature: &LogSignature) -> u32 {
    crc32c::crc32c(&signature.0) | 1
}

impl DbHeader {
    /// Encodes into a whole page for slot `no`, sealed.
    pub fn encode(&self, no: u32, page_size: usize) -> Vec<u8> {
        let mut p = vec![0u8; page_size];
        page::init_header(&mut p, no, PageKind::DbHeader, salt_of(&self.signature));
        page::set_lsn(&mut p, self.redo_lsn);
        let b = &mut p[PAGE_HEADER_LEN..PAGE_HEADER_LEN + BODY_LEN];
        b[0..8].copy_from_slice(&DB_MAGIC);
        b[8..10].copy_from_slice(&DB_FORMAT_VERSION.to_le_bytes());
        b[10] = self.state as u8;
        b[12..16].copy_from_slice(&self.page_size.to_le_bytes());
        b[16..32].copy_from_slice(&self.signature.0);
        b[32..48].copy_from_slice(&self.log_signature.0);
        b[48..56].copy_from_slice(&self.sequence.to_le_bytes());
        b[56..64].copy_from_slice(&self.redo_lsn.0.to_le_bytes());
        b[64..72].copy_from_slice(&self.required_lsn.0.to_le_bytes());
        b[72..76].copy_from_slice(&self.page_count.to_le_bytes());
        b[76..80].copy_from_slice(&self.catalog_root.to_le_bytes());
        b[80..88].copy_from_slice(&self.created_us.to_le_bytes());
        b[88..96].copy_from_slice(&self.epoch.to_le_bytes());
        page::seal(&mut p);
        p
    }

    /// Decodes the copy in slot `no`. `bytes` holds at least the page.
    pub fn decode(bytes: &[u8], no: u32, file: &Path) -> Result<DbHeader> {
        let offset = |page_size: usize| no as u64 * page_size as u64;
        let bad = |page_size: usize, why: &str| {
            DbError::corrupt(file, offset(page_size), format!("database header copy {no}: {why}"))
        };
        if bytes.len() < super::page::MIN_PAGE_SIZE {
            return Err(bad(0, "file too short"));
        }
        let b = &bytes[PAGE_HEADER_LEN..PAGE_HEADER_LEN + BODY_LEN];
        if b[0..8] != DB_MAGIC {
            return Err(bad(0, "no database magic (not a mailvault database, or damaged)"));
        }
        let u32_at = |at: usize| u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
        let u64_at = |at: usize| {
            let mut x = [0u8; 8];
            x.copy_from_slice(&b[at..at + 8]);
            u64::from_le_bytes(x)
        };
        let page_size = u32_at(12) as usize;
        if !page_size.is_power_of_two()
            || !(super::page::MIN_PAGE_SIZE..=super::page::MAX_PAGE_SIZE).contains(&page_size)
        {
            return Err(bad(0, &format!("invalid page size {page_size}")));
        }
        if bytes.len() < page_size {
            return Err(bad(page_size, "shorter than a page"));
        }
        let mut signature = LogSignature::default();
        signature.0.copy_from_slice(&b[16..32]);
        page::verify(&bytes[..page_size], no, salt_of(&signature), file, page_size)?;
        if page::page_kind(bytes) != Some(PageKind::DbHeader) {
            return Err(bad(page_size, "wrong page kind"));
        }
        if u16::from_le_bytes([b[8], b[9]]) != DB_FORMAT_VERSION {
            return Err(bad(page_size, "unsupported format version"));
        }
        let state = match b[10] {
            1 => DbState::Clean,
            2 => DbState::Dirty,
            _ => return Err(bad(page_size, "invalid state")),
        };
        let mut log_signature = LogSignature::default();
        log_signature.0.copy_from_slice(&b[32..48]);
        let header = DbHeader {
            state,
            page_size: page_size as u32,
            signature,
            log_signature,
            sequence: u64_at(48),
            redo_lsn: Lsn(u64_at(56)),
            required_lsn: Lsn(u64_at(64)),
            page_count: u32_at(72),
            catalog_root: u32_at(76),
            created_us: u64_at(80),
            epoch: u64_at(88),
        };
        if header.page_count < super::FIRST_DATA_PAGE || header.catalog_root > header.page_count {
            return Err(bad(page_size, "page count or catalog root out of range"));
        }
        Ok(header)
    }
}

/// Reads both header copies and returns the newest valid one and its slot.
/// Copy 0 tells the page size; if it is damaged, copy 1 is looked for at
/// every possible page size.
pub fn read_best(file: &dyn crate::vfs::VfsFile, path: &Path) -> Result<(DbHeader, u32)> {
    let mut first = vec![0u8; super::page::MAX_PAGE_SIZE];
    let n = read_full(file, &mut first, 0, path)?;
    let first = &first[..n];
    let primary = DbHeader::decode(first, 0, path);
    let sizes: Vec<usize> = match &primary {
        Ok(h) => vec![h.page_size as usize],
        Err(_) => (12..=16).map(|s| 1usize << s).collect(),
    };
    let mut shadow = None;
    for size in sizes {
        let mut buf = vec![0u8; size];
        let n = read_full(file, &mut buf, size as u64, path)?;
        if let Ok(h) = DbHeader::decode(&buf[..n], 1, path) {
            shadow = Some(h);
            break;
        }
    }
    match (primary, shadow) {
        (Ok(a), Some(b)) if b.sequence > a.sequence && b.signature == a.signature => Ok((b, 1)),
        (Ok(a), _) => Ok((a, 0)),
        (Err(_), Some(b)) => Ok((b, 1)),
        (Err(e), None) => Err(e),
    }
}

/// Reads as much of `buf` as the file holds at `offset`.
pub(crate) fn read_full(file: &dyn crate::vfs::VfsFile, buf: &mut [u8], offset: u64, path: &Path) -> Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        let n = file
            .read_at(&mut buf[got..], offset + got as u64)
            .map_err(|e| DbError::io(path, offset + got as u64, "read", e))?;
        if n == 0 {
            break;
        }
        got += n;
    }
    Ok(got)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> DbHeader {
        DbHeader {
            state: DbState::Dirty,
            page_size: 8192,
            signature: LogSignature([3; 16]),
            log_signature: LogSignature([4; 16]),
            sequence: 9,
            redo_lsn: Lsn::new(2, 4096),
            required_lsn: Lsn::new(2, 8192),
            page_count: 64,
            catalog_root: 3,
            created_us: 77,
            epoch: 1,
        }
    }

    #[test]
    fn roundtrip_and_damage() {
        let path = Path::new("db");
        for no in HEADER_PAGES {
            let bytes = header().encode(no, 8192);
            assert_eq!(DbHeader::decode(&bytes, no, path).expect("decode"), header());
            let mut bad = bytes.clone();
            bad[PAGE_HEADER_LEN + 50] ^= 1;
            assert!(DbHeader::decode(&bad, no, path).is_err());
            assert!(
                DbHeader::decode(&bytes, 1 - no, path).is_err(),
                "copy in the wrong slot"
            );
        }
    }
}
