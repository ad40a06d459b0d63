//! The page format shared by every page of the database file.
//! DESIGN.md documents every byte; keep the two in step.
//!
//! Header (32 bytes), then the body, which belongs to the page's kind:
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 4 | crc32c of bytes 4..page_size |
//! | 4 | 4 | page number |
//! | 8 | 8 | page LSN: the log record that last changed the page |
//! | 16 | 1 | kind ([`PageKind`]) |
//! | 17 | 3 | zero |
//! | 20 | 4 | database salt (from the database signature) |
//! | 24 | 8 | zero |

use super::{DbError, Result};
use crate::log::Lsn;
use std::path::Path;
use std::sync::Arc;

/// A page number: its position in the database file, in pages.
pub type PageNo = u32;

/// Bytes of the page header.
pub const PAGE_HEADER_LEN: usize = 32;
/// Smallest and largest page sizes.
pub const MIN_PAGE_SIZE: usize = 4096;
/// Largest page size.
pub const MAX_PAGE_SIZE: usize = 65536;

/// What a page holds. The value is the header's kind byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PageKind {
    /// Page 0 and its shadow, page 1: the database header.
    DbHeader = 1,
    /// A free-space bitmap.
    FreeMap = 2,
    /// A B+tree leaf.
    Leaf = 3,
    /// A B+tree branch (interior node).
    Branch = 4,
    /// A page of a long value's bytes.
    LongData = 5,
    /// A page listing the data pages of a long value.
    LongIndex = 6,
    /// A free page (contents meaningless).
    Free = 7,
}

impl PageKind {
    /// Decodes a kind byte.
    pub fn from_byte(b: u8) -> Option<PageKind> {
        Some(match b {
            1 => PageKind::DbHeader,
            2 => PageKind::FreeMap,
            3 => PageKind::Leaf,
            4 => PageKind::Branch,
            5 => PageKind::LongData,
            6 => PageKind::LongIndex,
            7 => PageKind::Free,
            _ => return None,
        })
    }
}

/// One page's bytes, header included. Committed versions are shared as
/// [`PageRef`]; a writer changes a private copy.
#[derive(PartialEq, Eq)]
pub struct PageBuf(Box<[u8]>);

impl PageBuf {
    /// A zeroed page.
    pub fn zeroed(page_size: usize) -> PageBuf {
        match pool::take(page_size) {
            Some(mut bytes) => {
                bytes.fill(0);
                PageBuf(bytes)
            }
            None => PageBuf(vec![0u8; page_size].into_boxed_slice()),
        }
    }

    /// A page holding `bytes`.
    pub fn from_vec(bytes: Vec<u8>) -> PageBuf {
        PageBuf(bytes.into_boxed_slice())
    }
}

impl Clone for PageBuf {
    fn clone(&self) -> PageBuf {
        match pool::take(self.0.len()) {
            Some(mut bytes) => {
                bytes.copy_from_slice(&self.0);
                PageBuf(bytes)
            }
            None => PageBuf(self.0.clone()),
        }
    }
}

impl Drop for PageBuf {
    fn drop(&mut self) {
        pool::give(std::mem::take(&mut self.0));
    }
}

/// Page buffers freed recently, reused newest first: every commit copies a
/// page and frees an older version of one, and a buffer taken from here is
/// still in the CPU's cache and skips the allocator (measured: `cargo bench
/// --bench commit`, DESIGN.md). Bounded, so memory stays the cache plus a
/// fixed overhead.
mod pool {
    use parking_lot::Mutex;

    /// Bytes of free buffers kept per page size. Enough for the pages of the
    /// bodies in flight: a delivering thread builds them and the writer frees
    /// them, and without a pool shared by the threads each one's allocator
    /// arena keeps the most it ever built (DESIGN.md, "Bodies built in their
    /// pages").
    pub(super) const BYTES_PER_SIZE: usize = 16 << 20;
    /// Page sizes pooled: 4 KiB to 64 KiB, the sizes a database can have.
    const SIZES: [usize; 5] = [4096, 8192, 16384, 32768, 65536];

    /// Free buffers by page size, newest last.
    pub(super) struct Pool([Mutex<Vec<Box<[u8]>>>; 5]);

    static FREE: Pool = Pool::new();

    fn class(len: usize) -> Option<usize> {
        SIZES.iter().position(|&s| s == len)
    }

    impl Pool {
        pub(super) const fn new() -> Pool {
            Pool([const { Mutex::new(Vec::new()) }; 5])
        }

        pub(super) fn take(&self, len: usize) -> Option<Box<[u8]>> {
            self.0[class(len)?].lock().pop()
        }

        pub(super) fn give(&self, bytes: Box<[u8]>) {
            if let Some(c) = class(bytes.len()) {
                let mut free = self.0[c].lock();
                if (free.len() + 1) * bytes.len() <= BYTES_PER_SIZE {
                    free.push(bytes);
                }
            }
        }

        /// Bytes of free buffers kept for `len`-byte pages.
        #[cfg(test)]
        pub(super) fn held(&self, len: usize) -> usize {
            class(len).map_or(0, |c| self.0[c].lock().len() * len)
        }
    }

    pub(super) fn take(len: usize) -> Option<Box<[u8]>> {
        FREE.take(len)
    }

    pub(super) fn give(bytes: Box<[u8]>) {
        FREE.give(bytes)
    }
}

impl std::ops::Deref for PageBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.0
    }
}

impl std::ops::DerefMut for PageBuf {
    fn deref_mut(&mut self) -> &mut [u8] {
        &mut self.0
    }
}

impl std::fmt::Debug for PageBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PageBuf(no {}, {} bytes)", page_no(self), self.0.len())
    }
}

/// A shared, immutable page version.
pub type PageRef = Arc<PageBuf>;

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// The page number field.
pub fn page_no(page: &[u8]) -> PageNo {
    u32_at(page, 4)
}

/// The page LSN field.
pub fn page_lsn(page: &[u8]) -> Lsn {
    let mut b = [0u8; 8];
    b.copy_from_slice(&page[8..16]);
    Lsn(u64::from_le_bytes(b))
}

/// The kind byte, decoded.
pub fn page_kind(page: &[u8]) -> Option<PageKind> {
    PageKind::from_byte(page[16])
}

/// Sets the page number, kind and salt fields (a fresh page).
pub fn init_header(page: &mut [u8], no: PageNo, kind: PageKind, salt: u32) {
    page[..PAGE_HEADER_LEN].fill(0);
    page[4..8].copy_from_slice(&no.to_le_bytes());
    page[16] = kind as u8;
    page[20..24].copy_from_slice(&salt.to_le_bytes());
}

/// Sets the kind byte.
pub fn set_kind(page: &mut [u8], kind: PageKind) {
    page[16] = kind as u8;
}

/// Sets the page LSN field.
pub fn set_lsn(page: &mut [u8], lsn: Lsn) {
    page[8..16].copy_from_slice(&lsn.0.to_le_bytes());
}

/// Computes and stores the checksum; done just before a page is written.
pub fn seal(page: &mut [u8]) -> u32 {
    let crc = crc32c::crc32c(&page[4..]);
    page[0..4].copy_from_slice(&crc.to_le_bytes());
    crc
}

/// Verifies a page read from position `no` of `file`: checksum, number, salt
/// and kind. An all-zero page (never written) is reported as such.
pub fn verify(page: &[u8], no: PageNo, salt: u32, file: &Path, page_size: usize) -> Result<()> {
    let offset = u64::from(no) * page_size as u64;
    let bad = |reason: String| DbError::corrupt_page(file, no, offset, reason);
    if page.len() != page_size {
        return Err(bad(format!("read {} bytes of a {page_size}-byte page", page.len())));
    }
    if page.iter().all(|&b| b == 0) {
        return Err(bad("page was never written (all zeros)".into()));
    }
    let crc = u32_at(page, 0);
    if crc != crc32c::crc32c(&page[4..]) {
        return Err(bad("checksum mismatch".into()));
    }
    if page_no(page) != no {
        return Err(bad(format!(
            "page claims to be page {} (misplaced write)",
            page_no(page)
        )));
    }
    if u32_at(page, 20) != salt {
        return Err(bad("page belongs to another database (salt differs)".into()));
    }
    if page_kind(page).is_none() {
        return Err(bad(format!("unknown page kind {}", page[16])));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn freed_buffers_are_reused_newest_first_and_the_pool_is_bounded() {
        // A pool of the test's own: the global one is shared by every test
        // thread of this process.
        let pool = pool::Pool::new();
        let first = vec![1u8; 8192].into_boxed_slice();
        let at = first.as_ptr();
        pool.give(first);
        pool.give(vec![2u8; 8192].into_boxed_slice());
        let newest = pool.take(8192).expect("a buffer");
        assert_eq!(newest[0], 2, "the newest freed buffer comes back first");
        let oldest = pool.take(8192).expect("a buffer");
        assert_eq!(oldest.as_ptr(), at);
        assert!(pool.take(8192).is_none() && pool.take(4096).is_none());
        pool.give(vec![0u8; 1000].into_boxed_slice());
        assert!(pool.take(1000).is_none(), "only page sizes are pooled");
        for _ in 0..(pool::BYTES_PER_SIZE / 8192 + 300) {
            pool.give(vec![0u8; 8192].into_boxed_slice());
        }
        assert_eq!(pool.held(8192), 16 << 20, "at most 16 MiB is kept per page size");
    }

    #[test]
    fn pages_from_reused_buffers_are_zeroed_or_copied_exactly() {
        for _ in 0..50 {
            let mut page = PageBuf::zeroed(8192);
            assert!(page.iter().all(|&b| b == 0), "a new page is zeroed");
            page[100] = 7;
            page[8191] = 9;
            let copy = page.clone();
            assert_eq!(copy[..], page[..]);
            assert_ne!(copy.as_ptr(), page.as_ptr());
        }
    }

    #[test]
    fn sealed_page_verifies_and_detects_every_flip() {
        let mut page = PageBuf::zeroed(MIN_PAGE_SIZE);
        init_header(&mut page, 9, PageKind::Leaf, 0xabcd);
        set_lsn(&mut page, Lsn::new(3, 4096));
        page[100] = 7;
        seal(&mut page);
        let file = Path::new("db");
        verify(&page, 9, 0xabcd, file, MIN_PAGE_SIZE).expect("valid");
        assert!(verify(&page, 8, 0xabcd, file, MIN_PAGE_SIZE).is_err(), "wrong place");
        assert!(verify(&page, 9, 0xabce, file, MIN_PAGE_SIZE).is_err(), "foreign");
        for i in (0..MIN_PAGE_SIZE).step_by(7) {
            let mut bad = page.clone();
            bad[i] ^= 0x40;
            assert!(verify(&bad, 9, 0xabcd, file, MIN_PAGE_SIZE).is_err(), "flip at {i}");
        }
        assert_eq!(page_lsn(&page), Lsn::new(3, 4096));
        assert_eq!(page_kind(&page), Some(PageKind::Leaf));
    }
}
