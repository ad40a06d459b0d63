//! The double-write area: a side file (`data.mvdw`) that receives each chunk
//! of checkpoint pages, synced, before the pages are written in place. A
//! crash that tears an in-place write leaves the intact copy here; open
//! restores it before redo. With it, the log carries only byte ranges, never
//! full page images (DESIGN.md compares the two).
//!
//! Layout: page 0 is the chunk header, pages 1..=n the copies, sealed as they
//! go in place. Header (little-endian): crc32c of bytes 4..page size (4) |
//! magic "MVDWHDR\0" (8) | database salt u32 | count n u32 | sequence u64 |
//! n × (page number u32, crc32c of the copy u32).

use super::crc_shift::CrcShift;
use super::page::{self, PageNo, PageRef};
use super::{DbError, Result};
use crate::vfs::VfsFile;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Magic of a double-write header.
pub const DW_MAGIC: [u8; 8] = *b"MVDWHDR\0";
/// Most pages per chunk.
pub const DW_MAX_PAGES: usize = 256;
const DW_HEADER: usize = 4 + 8 + 4 + 4 + 8;

/// Pages a chunk can hold with pages of `page_size` bytes.
pub fn chunk_pages(page_size: usize) -> usize {
    ((page_size - DW_HEADER) / 8).min(DW_MAX_PAGES)
}

/// The double-write file of a database.
pub(crate) struct DoubleWrite {
    pub path: PathBuf,
    pub file: Arc<dyn VfsFile>,
    pub page_size: usize,
    pub salt: u32,
    /// Extends a checksum across a page's bytes 4.. (page size - 4 bytes).
    pub page_shift: CrcShift,
}

impl DoubleWrite {
    pub fn new(path: PathBuf, file: Arc<dyn VfsFile>, page_size: usize, salt: u32) -> DoubleWrite {
        DoubleWrite {
            path,
            file,
            page_size,
            salt,
            page_shift: CrcShift::new(page_size - 4),
        }
    }

    /// Writes `pages` as one chunk and syncs. `buf` holds a zeroed page for
    /// the header, then the pages' sealed copies in order; `crcs` are their
    /// page checksums (of bytes 4..page size).
    pub fn write_chunk(&self, pages: &[(PageNo, PageRef)], crcs: &[u32], buf: &mut [u8], sequence: u64) -> Result<()> {
        let ps = self.page_size;
        let (head, copies) = buf.split_at_mut(ps);
        head[4..12].copy_from_slice(&DW_MAGIC);
        head[12..16].copy_from_slice(&self.salt.to_le_bytes());
        head[16..20].copy_from_slice(&(pages.len() as u32).to_le_bytes());
        head[20..28].copy_from_slice(&sequence.to_le_bytes());
        for (i, ((no, _), crc)) in pages.iter().zip(crcs).enumerate() {
            let at = DW_HEADER + i * 8;
            let copy = &copies[i * ps..(i + 1) * ps];
            // The checksum of the whole copy, from that of bytes 4.. and of
            // the first four: no second pass over the page.
            let whole = self.page_shift.combine(crc32c::crc32c(&copy[..4]), *crc);
            head[at..at + 4].copy_from_slice(&no.to_le_bytes());
            head[at + 4..at + 8].copy_from_slice(&whole.to_le_bytes());
        }
        let crc = crc32c::crc32c(&head[4..]);
        head[0..4].copy_from_slice(&crc.to_le_bytes());
        self.file
            .write_at(buf, 0)
            .map_err(|e| DbError::io(&self.path, 0, "write", e))?;
        self.file.sync_data().map_err(|e| DbError::io(&self.path, 0, "sync", e))
    }

    /// The valid copies of the last chunk: (page number, sealed bytes). A torn
    /// or foreign chunk yields nothing (its in-place writes never began).
    pub fn read_copies(&self) -> Result<Vec<(PageNo, Vec<u8>)>> {
        let ps = self.page_size;
        let mut head = vec![0u8; ps];
        let n = super::header::read_full(self.file.as_ref(), &mut head, 0, &self.path)?;
        if n < ps || head[4..12] != DW_MAGIC {
            return Ok(Vec::new());
        }
        let crc = u32::from_le_bytes([head[0], head[1], head[2], head[3]]);
        let salt = u32::from_le_bytes([head[12], head[13], head[14], head[15]]);
        let count = u32::from_le_bytes([head[16], head[17], head[18], head[19]]) as usize;
        if crc != crc32c::crc32c(&head[4..]) || salt != self.salt || count > chunk_pages(ps) {
            return Ok(Vec::new());
        }
        let mut copies = Vec::with_capacity(count);
        for i in 0..count {
            let at = DW_HEADER + i * 8;
            let no = u32::from_le_bytes([head[at], head[at + 1], head[at + 2], head[at + 3]]);
            let want = u32::from_le_bytes([head[at + 4], head[at + 5], head[at + 6], head[at + 7]]);
            let mut copy = vec![0u8; ps];
            let offset = ((i + 1) * ps) as u64;
            let got = super::header::read_full(self.file.as_ref(), &mut copy, offset, &self.path)?;
            if got == ps && crc32c::crc32c(&copy) == want && page::verify(&copy, no, self.salt, &self.path, ps).is_ok()
            {
                copies.push((no, copy));
            }
        }
        Ok(copies)
    }
}

/// The path of the double-write file in `dir`.
pub fn dw_path(dir: &Path) -> PathBuf {
    dir.join("data.mvdw")
}
