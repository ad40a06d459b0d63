//! Applying log records to pages: the redo pass shared by crash recovery
//! and by a passive copy's continuous replay, so that both produce the same
//! pages from the same log.

use super::digest::Verifier;
use super::file::DbFile;
use super::page::{self, PageBuf, PageNo};
use super::redo::{self, DbRecord, PageChange, Parts};
use super::replay::RedoSet;
use super::{DbError, Result};
use crate::log::{LogReader, LogSignature, Lsn, Record, generation_name};
use crate::vfs::SharedVfs;
use std::path::PathBuf;
use std::sync::Arc;

/// The log a redo pass reads, for going back to a transaction's parts.
pub(crate) struct LogAt {
    pub vfs: SharedVfs,
    pub dir: PathBuf,
    pub signature: LogSignature,
}

/// The parts read so far of a transaction whose commit has not been read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PendingParts {
    seq: u64,
    first: Lsn,
    count: u32,
}

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
    /// Pages written before their record (large values written once),
    /// found in the file as their records say.
    pub written: u64,
    /// Pages named as written once that the file did not hold readable:
    /// page → (checksum, record). An error unless a later image repairs them.
    written_unreadable: std::collections::BTreeMap<PageNo, (u32, Lsn)>,
    /// Pages checked against a digest the active logged.
    pub verified: u64,
    /// Where the pass started (named in errors).
    pub from: Lsn,
    /// Checks whole-database digests (a passive copy); `None` in crash
    /// recovery, whose state at a marker may hold later pages.
    pub whole: Option<Verifier>,
    /// Parts read of the transaction being appended in parts: applied when
    /// its commit is read, by reading them again from the log.
    pub pending: Option<PendingParts>,
    /// Parts of transactions that never committed, dropped.
    abandoned: u64,
    /// Commits of transactions in parts applied.
    pub part_commits: u64,
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
            written: 0,
            written_unreadable: std::collections::BTreeMap::new(),
            verified: 0,
            from,
            whole: None,
            pending: None,
            abandoned: 0,
            part_commits: 0,
        }
    }

    /// Where redo must start, at the latest, for a checkpoint or spill
    /// taken before the record at `next`: the first part of a transaction
    /// whose commit is still to come, if that is earlier.
    pub fn floor(&self, next: Lsn) -> Lsn {
        self.pending.map_or(next, |p| p.first.min(next))
    }

    /// Parts dropped so far, and those read of a transaction whose commit
    /// was not read (at the end of the log: they never will be).
    pub fn abandoned_parts(&self) -> u64 {
        self.abandoned + self.pending.map_or(0, |p| u64::from(p.count))
    }

    /// Parts read of a transaction whose commit was not read yet.
    pub fn parts_waiting(&self) -> u32 {
        self.pending.map_or(0, |p| p.count)
    }

    /// Carries what the pass knows of the log into a fresh pass (a copy's
    /// checkpoint starts one).
    pub fn carry_into(&self, fresh: &mut RedoPass) {
        fresh.seq = self.seq;
        fresh.checkpoints = self.checkpoints;
        fresh.page_count = self.page_count;
        fresh.pending = self.pending;
        fresh.abandoned = self.abandoned;
        fresh.part_commits = self.part_commits;
    }

    /// Applies one record to the pages it names (read from `file` when not
    /// yet in memory). Idempotent by page LSN.
    pub fn apply(&mut self, file: &DbFile, record: &Record, log: &LogAt) -> Result<()> {
        let ps = file.page_size;
        let bad = |reason: String| bad_record(log, record.lsn, reason);
        if record.data.first() == Some(&redo::RECORD_PART) {
            // Only its header now: the changes are decoded when the commit
            // that names the part is read, if it ever is.
            let (seq, index) = redo::part_header(&record.data).map_err(bad)?;
            self.note_part(seq, index, record.lsn);
            return Ok(());
        }
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
                if let Some(p) = self.pending.take() {
                    // A transaction appended in parts never committed.
                    self.abandoned += u64::from(p.count);
                }
                self.note_commit(seq, page_count).map_err(bad)?;
                self.apply_changes(file, changes, record.lsn)?;
            }
            DbRecord::CommitParts {
                seq,
                page_count,
                parts,
                changes,
            } => {
                let expected = Some(PendingParts {
                    seq,
                    first: parts.first,
                    count: parts.count,
                });
                let pending = self.pending.take();
                if pending.is_none() && record.lsn == self.from {
                    // The pass starts at this commit: a copy's checkpoint
                    // after applying it (its redo point is the last record
                    // applied), or a spill that had written every page its
                    // parts changed (a page kept would hold redo at its
                    // part). Either way the file holds the parts.
                    self.note_commit(seq, page_count).map_err(bad)?;
                    return self.apply_changes(file, changes, record.lsn);
                }
                if pending != expected {
                    return Err(bad(format!(
                        "commit {seq} names {} parts from {}, but the log read from {} holds {}",
                        parts.count,
                        parts.first,
                        self.from,
                        match pending {
                            Some(p) => format!("{} parts of transaction {} from {}", p.count, p.seq, p.first),
                            None => "none".into(),
                        }
                    )));
                }
                self.note_commit(seq, page_count).map_err(bad)?;
                self.apply_parts(file, log, seq, parts, record.lsn)?;
                self.apply_changes(file, changes, record.lsn)?;
                self.part_commits += 1;
            }
            // Handled above from its header alone.
            DbRecord::Part { .. } => {}
        }
        Ok(())
    }

    /// Notes part `index` of transaction `seq`, read at `lsn`. A part 0
    /// starts a transaction (one still pending never committed); a part
    /// out of sequence is left out, and the commit naming it then fails.
    fn note_part(&mut self, seq: u64, index: u32, lsn: Lsn) {
        if index == 0 {
            if let Some(p) = self.pending.take() {
                self.abandoned += u64::from(p.count);
            }
            self.pending = Some(PendingParts {
                seq,
                first: lsn,
                count: 1,
            });
        } else if let Some(p) = &mut self.pending
            && p.seq == seq
            && p.count == index
        {
            p.count += 1;
        }
    }

    fn note_commit(&mut self, seq: u64, page_count: u32) -> std::result::Result<(), String> {
        if seq == u64::MAX {
            // The next commit would have no number.
            return Err("commit sequence number at the end of its range".into());
        }
        self.seq = self.seq.max(seq);
        self.page_count = self.page_count.max(page_count);
        Ok(())
    }

    /// Reads the parts of the transaction committed at `commit` again from
    /// the log and applies them, in order, each at its own LSN.
    fn apply_parts(&mut self, file: &DbFile, log: &LogAt, seq: u64, parts: Parts, commit: Lsn) -> Result<()> {
        let reader = LogReader::new(log.vfs.clone(), &log.dir, parts.first, commit)?.expect_signature(log.signature);
        let mut next = 0u32;
        for part in reader {
            let part = part?;
            if part.lsn >= commit {
                break;
            }
            if part.data.first() != Some(&redo::RECORD_PART) {
                // Checkpoint markers and digests between the parts.
                continue;
            }
            let decoded = DbRecord::decode(&part.data, file.page_size).map_err(|e| bad_record(log, part.lsn, e))?;
            match decoded {
                DbRecord::Part {
                    seq: s, index, changes, ..
                } if s == seq && index == next => {
                    self.apply_changes(file, changes, part.lsn)?;
                    next += 1;
                }
                _ => {
                    return Err(bad_record(
                        log,
                        part.lsn,
                        format!("read again for commit {seq} at {commit}, this is not its part {next}"),
                    ));
                }
            }
        }
        if next != parts.count {
            return Err(bad_record(
                log,
                commit,
                format!(
                    "commit {seq} names {} parts from {}, the log holds {next}",
                    parts.count, parts.first
                ),
            ));
        }
        Ok(())
    }

    /// Applies the changes of the record at `lsn`, page by page.
    fn apply_changes(&mut self, file: &DbFile, changes: Vec<(u32, PageChange)>, lsn: Lsn) -> Result<()> {
        let ps = file.page_size;
        for (no, change) in changes {
            if let PageChange::Written { crc } = change
                && self.pages.whole_page(no).is_none()
            {
                // Checked in the file, where it was written: nothing to keep.
                let Some(mut from_file) = file.read_page_for_redo(no)? else {
                    // Torn or absent. A later checkpoint may have torn a
                    // later version of the page, which a full image further
                    // on repairs: only a page still unreadable at the end
                    // of redo is a lost write (`check_whole`).
                    if !self.pages.contains(no) {
                        self.pages.insert(no, PageBuf::zeroed(ps), true);
                    }
                    self.written_unreadable.insert(no, (crc, lsn));
                    continue;
                };
                let current = Some(page::page_lsn(&from_file));
                match redo::apply(&mut from_file, current, &change, lsn) {
                    Ok(redo::Applied::Skipped) => self.skipped += 1,
                    Ok(_) => self.written += 1,
                    Err(found) => return Err(redo_failure(file, no, &change, found, lsn, self.from)),
                }
                continue;
            }
            if !self.pages.contains(no) {
                // A full image needs nothing from the file: whatever
                // the file holds, the chain of changes after the image
                // starts from it (and new pages are most images).
                // Beyond the file's end a page reads as unreadable too.
                let from_file = match change {
                    PageChange::Image(_) => None,
                    PageChange::Ranges { .. } | PageChange::Written { .. } => file.read_page_for_redo(no)?,
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
            match redo::apply(buf, current, &change, lsn) {
                Ok(redo::Applied::Applied) => {
                    self.applied += 1;
                    if page.unreadable {
                        // A full image: the page is whole again, at its own
                        // position, and nothing of it came from the file.
                        page.unreadable = false;
                        buf[4..8].copy_from_slice(&no.to_le_bytes());
                        page.rebuilt_from = Some(lsn);
                    }
                    self.pages.changed(no, lsn);
                }
                Ok(redo::Applied::Skipped) => self.skipped += 1,
                Ok(redo::Applied::Present) => self.written += 1,
                Err(found) => return Err(redo_failure(file, no, &change, found, lsn, self.from)),
            }
        }
        Ok(())
    }

    /// Fails if a page the log touched is still unreadable: torn or never
    /// written, and no full image of it came along.
    pub fn check_whole(&self, file: &DbFile, end: Lsn) -> Result<()> {
        let Some(no) = self.pages.first_unreadable() else {
            return Ok(());
        };
        // A page named as written once keeps its own record and error.
        let (change, record) = match self.written_unreadable.get(&no) {
            Some(&(crc, record)) => (PageChange::Written { crc }, record),
            None => (PageChange::Image(Vec::new()), end),
        };
        Err(redo_failure(file, no, &change, None, record, self.from))
    }
}

/// A record that cannot be what the log says, named by file and offset.
fn bad_record(log: &LogAt, lsn: Lsn, reason: String) -> DbError {
    DbError::BadRecord {
        file: log.dir.join(generation_name(lsn.generation())),
        offset: u64::from(lsn.offset()),
        lsn,
        reason,
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
    if let redo::PageChange::Written { crc } = change {
        return DbError::NotWritten {
            file: file.path.clone(),
            page: no,
            offset: file.offset(no),
            crc: *crc,
            found,
            record,
        };
    }
    match found {
        Some(found) => DbError::LostFlush {
            file: file.path.clone(),
            page: no,
            expected: match change {
                redo::PageChange::Ranges { before, .. } => *before,
                redo::PageChange::Image(_) | redo::PageChange::Written { .. } => Lsn::ZERO,
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
