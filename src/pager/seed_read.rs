//! Reading a live data file's pages for a seed, on the active or on a
//! passive copy that seeds another: a page torn by a checkpoint writing it
//! at that moment is read again.

use super::file::DbFile;
use super::header::{read_best, read_full, salt_of};
use super::page::{self, PageBuf, PageNo};
use super::{DbError, Result};
use crate::vfs::{OpenMode, SharedVfs};
use std::path::Path;

impl DbFile {
    /// Page `no` as the file holds it now; `None` if it was never written
    /// (all zeros, or beyond the file's end): the log from the seed's redo
    /// point then holds a full image of it.
    pub(crate) fn read_page_for_seed(&self, no: PageNo) -> Result<Option<PageBuf>> {
        for _ in 0..1000 {
            if let Some(page) = self.read_page_for_redo(no)? {
                return Ok(Some(page));
            }
            let mut raw = vec![0u8; self.page_size];
            let n = read_full(self.file.as_ref(), &mut raw, self.offset(no), &self.path)?;
            if n < raw.len() || raw.iter().all(|&b| b == 0) {
                return Ok(None);
            }
            std::thread::sleep(std::time::Duration::from_micros(200));
        }
        Err(DbError::corrupt_page(
            &self.path,
            no,
            self.offset(no),
            "the page stayed invalid while it was read for a seed",
        ))
    }
}

impl DbFile {
    /// Pages `first..` as the file holds them now, into `out` (whole
    /// pages): one read for them all, then each page checked, and one found
    /// torn read again on its own. A page never written (zeros, or beyond
    /// the file's end) is left zero.
    pub(crate) fn read_pages_for_seed(&self, first: PageNo, out: &mut [u8]) -> Result<()> {
        let ps = self.page_size;
        let n = read_full(self.file.as_ref(), out, self.offset(first), &self.path)?;
        out[n..].fill(0);
        for (i, page) in out.chunks_exact_mut(ps).enumerate() {
            // `out` holds at most u32::MAX pages past `first` only if the
            // caller asked past the last page number: refused here.
            let no = u32::try_from(i)
                .ok()
                .and_then(|i| first.checked_add(i))
                .ok_or_else(|| {
                    DbError::corrupt_page(&self.path, first, self.offset(first), "read past the last page")
                })?;
            if page.iter().all(|&b| b == 0) || page::verify(page, no, self.salt, &self.path, ps).is_ok() {
                continue;
            }
            match self.read_page_for_seed(no)? {
                Some(p) => page.copy_from_slice(&p),
                None => page.fill(0),
            }
        }
        Ok(())
    }
}

/// A data file opened for reading only, to seed another copy from it while
/// its owner goes on writing it.
pub struct SeedPages {
    file: DbFile,
}

impl SeedPages {
    /// Opens `path`; the page size and salt come from its header.
    pub fn open(vfs: &SharedVfs, path: &Path) -> Result<SeedPages> {
        let file = vfs
            .open(path, OpenMode::Existing)
            .map_err(|e| DbError::io(path, 0, "open", e))?;
        let (header, _) = read_best(file.as_ref(), path)?;
        Ok(SeedPages {
            file: DbFile {
                path: path.to_path_buf(),
                file,
                page_size: header.page_size as usize,
                salt: salt_of(&header.signature),
                double_write: None,
                known_len: Default::default(),
            },
        })
    }

    pub fn page_size(&self) -> usize {
        self.file.page_size
    }

    /// Pages the file holds now.
    pub fn page_count(&self) -> Result<u32> {
        let len = self
            .file
            .file
            .len()
            .map_err(|e| DbError::io(&self.file.path, 0, "stat", e))?;
        Ok(u32::try_from(len / self.file.page_size as u64).unwrap_or(u32::MAX))
    }

    /// See [`DbFile::read_pages_for_seed`].
    pub fn read(&self, first: PageNo, out: &mut [u8]) -> Result<()> {
        self.file.read_pages_for_seed(first, out)
    }
}
