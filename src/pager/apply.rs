//! Applying log records to pages: the redo pass shared by crash recovery
//! and by a passive copy's continuous replay, so that both produce the same
//! pages from the same log.

use super::digest::Verifier;
use super::file::DbFile;
use super::page::{self, PageBuf, PageNo};
use super::redo::{self, DbRecord};
use super::replay::RedoSet;
use super::{DbError, Result};
use crate::log::{Lsn, Record, generation_name};
use std::path::Path;
use std::sync::Arc;

/// The state of a redo pass: pages changed in memory and what the records
/// said about the database.
pub(crate) struct RedoPass {
    pub pages: RedoSet,
    /// Pages in the database after the last commit applied.
    pub page_count: u32,
    /// Highest commit sequence applied.
    pub seq: u64,
    /// Highest checkpoint number seen.
    pub checkpoints: u64,
    pub applied: u64,
    pub skipped: u64,
    /// Pages checked against a digest the active logged.
    pub verified: u64,
    /// Where the pass started (named in errors).
    pub from: Lsn,
    /// Checks whole-database digests (a passive copy); `None` in crash
    /// recovery, whose state at a marker may hold later pages.
    pub whole: Option<Verifier>,
}

impl RedoPass {
    pub fn new(budget: usize, page_count: u32, from: Lsn) -> RedoPass {
        RedoPass {
            pages: RedoSet::new(budget),
            page_count,
            seq: 0,
            checkpoints: 0,
            applied: 0,
            skipped: 0,
            verified: 0,
            from,
            whole: None,
        }
    }

    /// Applies one record to the pages it names (read from `file` when not
    /// yet in memory). Idempotent by page LSN.
    pub fn apply(&mut self, file: &DbFile, record: &Record, ldir: &Path) -> Result<()> {
        let ps = file.page_size;
        let bad = |reason: String| DbError::BadRecord {
            file: ldir.join(generation_name(record.lsn.generation())),
            offset: u64::from(record.lsn.offset()),
            lsn: record.lsn,
            reason,
        };
        match DbRecord::decode(&record.data, ps).map_err(bad)? {
            DbRecord::Checkpoint { number, whole_digest } => {
                self.checkpoints = self.checkpoints.max(number);
                if whole_digest && let Some(v) = &mut self.whole {
                    v.at_marker(file, &self.pages, self.page_count, record.lsn)?;
                }
            }
            DbRecord::WholeDigest(d) => {
                if let Some(v) = &mut self.whole {
                    v.check(&file.path, &d, record.lsn)?;
                }
            }
            DbRecord::Digest { pages } => {
                for (no, lsn, crc) in pages {
                    // A page changed since (or freed) is not comparable.
                    let found = match self.pages.get_mut(no) {
                        Some(p) if !p.unreadable => Some((page::page_lsn(&p.buf), crc32c::crc32c(&p.buf[4..]))),
                        Some(_) => None,
                        None => file
                            .read_page_for_redo(no)?
                            .map(|p| (page::page_lsn(&p), crc32c::crc32c(&p[4..]))),
                    };
                    match found {
                        Some((at, sum)) if at == lsn && sum != crc => {
                            return Err(DbError::corrupt_page(
                                &file.path,
                                no,
                                file.offset(no),
                                format!(
                                    "page at LSN {lsn} has checksum {sum:08x}, but the digest logged at {} says {crc:08x}: this copy diverged",
                                    record.lsn
                                ),
                            ));
                        }
                        Some((at, _)) if at == lsn => self.verified += 1,
                        _ => {}
                    }
                }
            }
            DbRecord::Commit {
                seq,
                page_count,
                changes,
            } => {
                if seq == u64::MAX {
                    // The next commit would have no number.
                    return Err(bad("commit sequence number at the end of its range".into()));
                }
                self.seq = self.seq.max(seq);
                self.page_count = self.page_count.max(page_count);
                for (no, change) in changes {
                    if !self.pages.contains(no) {
                        // A full image needs nothing from the file: whatever
                        // the file holds, the chain of changes after the image
                        // starts from it (and new pages are most images).
                        // Beyond the file's end a page reads as unreadable too.
                        let from_file = match change {
                            redo::PageChange::Image(_) => None,
                            redo::PageChange::Ranges { .. } => file.read_page_for_redo(no)?,
                        };
                        let unreadable = from_file.is_none();
                        self.pages
                            .insert(no, from_file.unwrap_or_else(|| PageBuf::zeroed(ps)), unreadable);
                    }
                    let Some(page) = self.pages.get_mut(no) else {
                        continue;
                    };
                    let current = (!page.unreadable).then(|| page::page_lsn(&page.buf));
                    // Copies the page first if a snapshot holds it.
                    let buf = Arc::make_mut(&mut page.buf);
                    match redo::apply(buf, current, &change, record.lsn) {
                        Ok(redo::Applied::Applied) => {
                            self.applied += 1;
                            if page.unreadable {
                                // A full image: the page is whole again, at its own
                                // position, and nothing of it came from the file.
                                page.unreadable = false;
                                buf[4..8].copy_from_slice(&no.to_le_bytes());
                                page.rebuilt_from = Some(record.lsn);
                            }
                            self.pages.changed(no, record.lsn);
                        }
                        Ok(redo::Applied::Skipped) => self.skipped += 1,
                        Err(found) => return Err(redo_failure(file, no, &change, found, record.lsn, self.from)),
                    }
                }
            }
        }
        Ok(())
    }

    /// Fails if a page the log touched is still unreadable: torn or never
    /// written, and no full image of it came along.
    pub fn check_whole(&self, file: &DbFile, end: Lsn) -> Result<()> {
        match self.pages.first_unreadable() {
            Some(no) => Err(redo_failure(
                file,
                no,
                &redo::PageChange::Image(Vec::new()),
                None,
                end,
                self.from,
            )),
            None => Ok(()),
        }
    }
}

fn redo_failure(
    file: &DbFile,
    no: PageNo,
    change: &redo::PageChange,
    found: Option<Lsn>,
    record: Lsn,
    from: Lsn,
) -> DbError {
    match found {
        Some(found) => DbError::LostFlush {
            file: file.path.clone(),
            page: no,
            expected: match change {
                redo::PageChange::Ranges { before, .. } => *before,
                redo::PageChange::Image(_) => Lsn::ZERO,
            },
            found,
            record,
        },
        None => DbError::corrupt_page(
            &file.path,
            no,
            file.offset(no),
            format!("page is unreadable (torn or never written) and the log from {from} holds no full image of it"),
        ),
    }
}
