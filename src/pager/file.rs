//! The database file: page reads with verification, page writes in page
//! order with the file grown in extents, and header writes.

use super::header::{DbHeader, read_full};
use super::page::{self, PageBuf, PageNo, PageRef};
use super::{DbError, Result};
use crate::vfs::VfsFile;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A page and the version of it to write.
type PageVersion = (PageNo, PageRef);

/// Smallest growth of the file.
const MIN_EXTENT: u64 = 4 << 20;
/// Largest growth of the file.
const MAX_EXTENT: u64 = 256 << 20;
/// Most bytes one write carries when adjacent pages are coalesced.
const MAX_WRITE: usize = 1 << 20;

pub(crate) struct DbFile {
    pub path: PathBuf,
    pub file: Arc<dyn VfsFile>,
    pub page_size: usize,
    pub salt: u32,
    /// The double-write area, when torn pages are handled that way.
    pub double_write: Option<super::doublewrite::DoubleWrite>,
    /// Serialises growth: a checkpoint and a commit writing pages once may
    /// both grow the file, and a growth by `set_len` (where the file system
    /// has no `fallocate`) must never shrink what the other grew. Holds the
    /// file's length once known: only `grow_to` changes it while the file is
    /// open, and a stat per commit cost the writer thread 5 % of its time.
    pub known_len: parking_lot::Mutex<Option<u64>>,
}

impl DbFile {
    /// Reads and verifies page `no`.
    pub fn read_page(&self, no: PageNo) -> Result<PageBuf> {
        let mut buf = PageBuf::zeroed(self.page_size);
        let offset = self.offset(no);
        let n = read_full(self.file.as_ref(), &mut buf, offset, &self.path)?;
        if n < self.page_size {
            return Err(DbError::corrupt_page(
                &self.path,
                no,
                offset,
                format!("file ends {} bytes into the page", n),
            ));
        }
        page::verify(&buf, no, self.salt, &self.path, self.page_size)?;
        Ok(buf)
    }

    /// Reads page `no` for redo: `None` when it is unreadable (torn, never
    /// written, beyond the end), which only a full page image may repair.
    pub fn read_page_for_redo(&self, no: PageNo) -> Result<Option<PageBuf>> {
        match self.read_page(no) {
            Ok(p) => Ok(Some(p)),
            Err(DbError::CorruptPage { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub fn offset(&self, no: PageNo) -> u64 {
        u64::from(no) * self.page_size as u64
    }

    /// The runs of `pages` (sorted by number) that go to the file in one
    /// write each: adjacent page numbers, at most `MAX_WRITE` bytes. Grows
    /// the file first, in extents, to hold the last page.
    fn runs(&self, pages: &[PageVersion]) -> Result<Vec<std::ops::Range<usize>>> {
        let Some(last) = pages.last() else {
            return Ok(Vec::new());
        };
        self.grow_to(self.offset(last.0 + 1))?;
        let max_run = (MAX_WRITE / self.page_size).max(1);
        let mut runs = Vec::new();
        let mut start = 0;
        for i in 1..=pages.len() {
            if i == pages.len() || pages[i].0 != pages[i - 1].0 + 1 || i - start >= max_run {
                runs.push(start..i);
                start = i;
            }
        }
        Ok(runs)
    }

    /// Writes the pages (sorted by number, sealed here) with adjacent pages
    /// coalesced. No sync. Returns each page's checksum, in order.
    pub fn write_pages(&self, pages: &[PageVersion]) -> Result<Vec<u32>> {
        let mut crcs = Vec::with_capacity(pages.len());
        let mut run: Vec<u8> = Vec::with_capacity(MAX_WRITE.min(pages.len() * self.page_size));
        for range in self.runs(pages)? {
            run.clear();
            for (_, version) in &pages[range.clone()] {
                let at = run.len();
                run.extend_from_slice(version);
                crcs.push(page::seal(&mut run[at..]));
            }
            self.write_at(&run, pages[range.start].0)?;
        }
        Ok(crcs)
    }

    /// Writes pages that are sealed already (sorted by number), each run of
    /// adjacent pages in one vectored write, so no page is copied. No sync.
    pub fn write_sealed_pages(&self, pages: &[PageVersion]) -> Result<()> {
        for range in self.runs(pages)? {
            let run: Vec<std::io::IoSlice<'_>> = pages[range.clone()]
                .iter()
                .map(|(_, page)| std::io::IoSlice::new(&page[..]))
                .collect();
            let offset = self.offset(pages[range.start].0);
            self.file
                .write_vectored_at(&run, offset)
                .map_err(|e| DbError::io(&self.path, offset, "write", e))?;
        }
        Ok(())
    }

    /// Writes pages already sealed, laid out one after another in `sealed`
    /// in the order of `pages` (sorted): adjacent pages in one write.
    fn write_sealed(&self, pages: &[PageVersion], sealed: &[u8]) -> Result<()> {
        let ps = self.page_size;
        for range in self.runs(pages)? {
            self.write_at(&sealed[range.start * ps..range.end * ps], pages[range.start].0)?;
        }
        Ok(())
    }

    /// Writes the pages (sorted) and syncs so that no torn write can lose
    /// them: through the double-write area chunk by chunk when there is one
    /// (copies synced before the in-place writes), else directly (the log
    /// then holds full images of them). Each page is copied and checksummed
    /// once: the in-place writes take the double-write copies' bytes.
    /// Returns each page's checksum, in order.
    pub fn write_pages_synced(&self, pages: &[PageVersion], sequence: u64) -> Result<Vec<u32>> {
        let Some(dw) = &self.double_write else {
            let crcs = self.write_pages(pages)?;
            self.sync()?;
            return Ok(crcs);
        };
        let ps = self.page_size;
        let mut crcs = Vec::with_capacity(pages.len());
        for chunk in pages.chunks(super::doublewrite::chunk_pages(ps)) {
            // The chunk's header page, then its sealed copies.
            let mut buf = Vec::with_capacity((chunk.len() + 1) * ps);
            buf.resize(ps, 0);
            let first = crcs.len();
            for (_, version) in chunk {
                let at = buf.len();
                buf.extend_from_slice(version);
                crcs.push(page::seal(&mut buf[at..]));
            }
            dw.write_chunk(chunk, &crcs[first..], &mut buf, sequence)?;
            self.write_sealed(chunk, &buf[ps..])?;
            self.sync()?;
        }
        Ok(crcs)
    }

    /// Puts back every page a crash tore during an in-place write, from the
    /// double-write area; returns how many.
    pub fn restore_torn_pages(&self) -> Result<u64> {
        let Some(dw) = &self.double_write else {
            return Ok(0);
        };
        let mut restored = 0;
        for (no, copy) in dw.read_copies()? {
            if self.read_page(no).is_err() {
                self.grow_to(self.offset(no + 1))?;
                let offset = self.offset(no);
                self.file
                    .write_at(&copy, offset)
                    .map_err(|e| DbError::io(&self.path, offset, "write", e))?;
                restored += 1;
            }
        }
        if restored > 0 {
            self.sync()?;
        }
        Ok(restored)
    }

    fn write_at(&self, bytes: &[u8], first: PageNo) -> Result<()> {
        let offset = self.offset(first);
        self.file
            .write_at(bytes, offset)
            .map_err(|e| DbError::io(&self.path, offset, "write", e))
    }

    /// Grows the file to at least `len`, by at least an extent (an eighth of
    /// the file, between 4 MiB and 256 MiB), reserved without writing.
    fn grow_to(&self, len: u64) -> Result<()> {
        let mut known = self.known_len.lock();
        let current = match *known {
            Some(current) => current,
            None => self.file.len().map_err(|e| DbError::io(&self.path, 0, "stat", e))?,
        };
        *known = Some(current);
        if current >= len {
            return Ok(());
        }
        let extent = (current / 8).clamp(MIN_EXTENT, MAX_EXTENT);
        let target = len.max(current + extent).div_ceil(self.page_size as u64) * self.page_size as u64;
        // A failed growth may have grown part of the way: stat again next time.
        *known = None;
        self.file
            .reserve(target)
            .map_err(|e| DbError::io(&self.path, current, "extend", e))?;
        *known = Some(target);
        Ok(())
    }

    /// Writes a checkpoint: `pages` (sorted here) through the double-write
    /// area, then `direct` in place without it (the log from `redo` rebuilds
    /// them whole if a write tears), synced, then the header after `current`,
    /// naming `redo` as the redo point, into the other slot, and syncs.
    /// Returns the new header, its slot, and the checksum of each page of
    /// `pages`, then of `direct`, each as sorted.
    pub fn write_checkpoint_with(
        &self,
        current: &DbHeader,
        slot: u32,
        (pages, direct): (&mut [PageVersion], &mut [PageVersion]),
        redo: crate::log::Lsn,
        page_count: u32,
        state: super::header::DbState,
    ) -> Result<(DbHeader, u32, Vec<u32>)> {
        pages.sort_by_key(|(no, _)| *no);
        direct.sort_by_key(|(no, _)| *no);
        let newest = pages
            .iter()
            .chain(direct.iter())
            .map(|(_, p)| page::page_lsn(p))
            .max()
            .unwrap_or(crate::log::Lsn::ZERO);
        let sequence = current
            .sequence
            .checked_add(1)
            .ok_or_else(|| DbError::corrupt(&self.path, 0, "database header sequence at its maximum"))?;
        let mut crcs = self.write_pages_synced(pages, sequence)?;
        if !direct.is_empty() {
            crcs.extend(self.write_pages(direct)?);
            self.sync()?;
        }
        let header = DbHeader {
            state,
            sequence,
            redo_lsn: redo,
            required_lsn: current.required_lsn.max(newest),
            page_count: page_count.max(current.page_count),
            ..*current
        };
        let slot = 1 - slot;
        self.write_header(&header, slot)?;
        self.sync()?;
        Ok((header, slot, crcs))
    }

    /// Writes header copy `slot` (0 or 1). No sync.
    pub fn write_header(&self, header: &DbHeader, slot: u32) -> Result<()> {
        let bytes = header.encode(slot, self.page_size);
        self.write_at(&bytes, slot)
    }

    /// Starts the disk writing pages `first..=last` (already written), for
    /// the sync that will follow.
    pub fn start_writeback(&self, first: PageNo, last: PageNo) -> Result<()> {
        let offset = self.offset(first);
        self.file
            .start_writeback(offset, self.offset(last + 1) - offset)
            .map_err(|e| DbError::io(&self.path, offset, "start writeback", e))
    }

    pub fn sync(&self) -> Result<()> {
        self.file.sync_data().map_err(|e| DbError::io(&self.path, 0, "sync", e))
    }
}

/// The path of the database file in `dir`.
pub fn data_path(dir: &Path) -> PathBuf {
    dir.join("data.mvdb")
}

/// The log directory in `dir`.
pub fn lock_path(dir: &Path) -> PathBuf {
    dir.join("mailvault.lock")
}

/// The directory of the database's log.
pub fn log_dir(dir: &Path) -> PathBuf {
    dir.join("log")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pager::PageKind;
    use crate::vfs::{FaultKind, OpenMode, SimVfs, Vfs};

    const PS: usize = 4096;
    const SALT: u32 = 0x5eed;

    fn db_file(vfs: &Arc<SimVfs>) -> DbFile {
        vfs.create_dir_all(Path::new("/db")).unwrap();
        let path = PathBuf::from("/db/data.mvdb");
        let file = vfs.open(&path, OpenMode::CreateNew).unwrap();
        DbFile {
            path,
            file,
            page_size: PS,
            salt: SALT,
            double_write: None,
            known_len: Default::default(),
        }
    }

    fn page(no: PageNo) -> PageVersion {
        let mut buf = PageBuf::zeroed(PS);
        page::init_header(&mut buf, no, PageKind::Leaf, SALT);
        buf[PS - 1] = no as u8;
        (no, Arc::new(buf))
    }

    #[test]
    fn the_file_is_stat_once_and_its_length_followed() {
        let vfs = SimVfs::new(1);
        let file = db_file(&vfs);
        file.write_pages(&[page(3)]).unwrap();
        assert_eq!(file.file.len().unwrap(), MIN_EXTENT, "the first growth is one extent");
        // Within the extent a write is one call: no stat, no growth.
        let before = vfs.op_count();
        file.write_pages(&[page(5)]).unwrap();
        assert_eq!(vfs.op_count() - before, 1);
        let past = (MIN_EXTENT / PS as u64) as PageNo + 1;
        file.write_pages(&[page(past)]).unwrap();
        assert_eq!(file.file.len().unwrap(), 2 * MIN_EXTENT);
        assert_eq!(*file.known_len.lock(), Some(2 * MIN_EXTENT));
        for no in [3, 5, past] {
            assert_eq!(file.read_page(no).unwrap()[PS - 1], no as u8);
        }
    }

    #[test]
    fn a_failed_growth_looks_the_length_up_again() {
        let vfs = SimVfs::new(2);
        let file = db_file(&vfs);
        file.write_pages(&[page(3)]).unwrap();
        let past = (MIN_EXTENT / PS as u64) as PageNo + 1;
        vfs.inject_at_op(vfs.op_count(), FaultKind::Enospc);
        let err = file.write_pages(&[page(past)]).unwrap_err();
        assert!(matches!(err, DbError::Io { .. }), "{err}");
        assert_eq!(
            *file.known_len.lock(),
            None,
            "the length is unknown after a failed growth"
        );
        file.write_pages(&[page(past)]).unwrap();
        assert_eq!(*file.known_len.lock(), Some(file.file.len().unwrap()));
        assert_eq!(file.read_page(past).unwrap()[PS - 1], past as u8);
    }
}
