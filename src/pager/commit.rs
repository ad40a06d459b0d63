//! The commit path: a transaction's new large-value pages written once in
//! place, its other changes appended to the log as records (in parts if
//! they outgrow one), its page versions published, and its wait for the
//! sync (visibility then moves in `engine`).

use super::engine::{Pager, PagerState, TornPages};
use super::page::{self, PageKind, PageNo, PageRef};
use super::txn_records::TxnRecords;
use super::{DbError, Result};
use crate::log::Lsn;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// How a durable commit waits for its sync (`Log::wait_durable` or
/// `Log::wait_durable_batched`).
#[derive(Clone, Copy)]
enum SyncWait {
    Gathering,
    Batched,
}

impl Pager {
    /// Appends a transaction's records and publishes its pages. `changed`
    /// holds each page the transaction changed: (number, the committed
    /// version it started from or `None` for a new page, new version).
    /// `bases` holds the committed versions the transaction started from
    /// (for a reused page, the content it had before it was freed): they
    /// are cached beside the new versions for older snapshots, so that
    /// neither an eviction during the transaction nor a checkpoint writing
    /// the new content can take them from under those snapshots.
    ///
    /// Changes that do not fit one log record go first as parts, then the
    /// commit names them; each page takes the LSN of the record holding its
    /// change, as redo gives it. Called by the single writer; returns the
    /// commit's sequence and the end of its record.
    pub fn append_commit(
        &self,
        mut changed: Vec<(PageNo, Option<PageRef>, PageRef)>,
        page_count: u32,
        bases: Vec<(PageNo, PageRef)>,
    ) -> Result<(u64, Lsn)> {
        let written = self.write_once(&mut changed)?;
        let result = self.append_records(changed, page_count, bases, &written);
        if !written.is_empty() {
            self.end_writing_once();
        }
        result
    }

    /// Pins may be taken again: the commit that wrote pages once has
    /// appended its record, or failed.
    fn end_writing_once(&self) {
        self.state.lock().writing_once = false;
        self.written_once_done.notify_all();
    }

    /// Takes out of `changed` the pages of large values new to the file,
    /// writes them in place (stamped with an LSN below their record's) and
    /// returns each with its checksum, for the commit to name. None while a
    /// log pin is held, or when the option is off. Pages at or beyond the
    /// committed page count never held committed content, so no snapshot
    /// and no checkpoint reads or writes them meanwhile.
    fn write_once(&self, changed: &mut Vec<(PageNo, Option<PageRef>, PageRef)>) -> Result<Vec<(PageNo, u32)>> {
        if !self.opts.write_large_values_once {
            return Ok(Vec::new());
        }
        let committed = {
            let mut st = self.state.lock();
            self.check_failed(&st)?;
            let committed = self.page_count.load(Ordering::Acquire);
            if !st.pins.is_empty() || !changed.iter().any(|(no, base, new)| once(*no, base, new, committed)) {
                return Ok(Vec::new());
            }
            // Only the one writer commits, so `page_count` stays put until
            // this commit publishes; pins wait for it.
            st.writing_once = true;
            committed
        };
        // Strictly below the record's LSN, so that redo always checks the
        // page rather than taking it for a later version.
        let stamp = Lsn(self.log.end_lsn().0.saturating_sub(1));
        // The transaction's pages are handed over, so stamping and sealing
        // them copies nothing (`make_mut` copies only a page something else
        // still holds), and they are written from where they are.
        let mut pages: Vec<(PageNo, PageRef)> = changed
            .extract_if(.., |(no, base, new)| once(*no, base, new, committed))
            .map(|(no, _, new)| (no, new))
            .collect();
        pages.sort_unstable_by_key(|(no, _)| *no);
        let crcs: Vec<(PageNo, u32)> = pages
            .iter_mut()
            .map(|(no, new)| {
                let page = &mut Arc::make_mut(new)[..];
                page::set_lsn(page, stamp);
                (*no, page::seal(page))
            })
            .collect();
        let written = self.file.write_sealed_pages(&pages).and_then(|()| {
            // Sorted and non-empty (`once` matched one).
            self.file.start_writeback(pages[0].0, pages[pages.len() - 1].0)
        });
        if let Err(e) = written {
            self.end_writing_once();
            return Err(self.fail(e));
        }
        // Set after the writes, before the record can be appended: a
        // leader that takes the record then sees it (its lock orders the two).
        self.unsynced_written.store(true, Ordering::Release);
        self.pages_written_once.fetch_add(pages.len() as u64, Ordering::Relaxed);
        Ok(crcs)
    }

    fn append_records(
        &self,
        changed: Vec<(PageNo, Option<PageRef>, PageRef)>,
        page_count: u32,
        bases: Vec<(PageNo, PageRef)>,
        written: &[(PageNo, u32)],
    ) -> Result<(u64, Lsn)> {
        // Full page images depend on the redo point, so the records are
        // built under the state lock. With a double-write area no page needs
        // an image: they are built (and parts appended) while snapshots
        // read. The sequence cannot move: only the one writer commits.
        let mut held = (self.opts.torn_pages == TornPages::FullPageImages).then(|| self.state.lock());
        let (seq, redo_point) = match &held {
            Some(st) => (st.seq, st.redo_point),
            None => (self.state.lock().seq, Lsn::ZERO),
        };
        let seq = next_seq(seq)?;
        let mut records = TxnRecords::new(seq, page_count, self.log.max_record_size());
        let mut pages = Vec::with_capacity(changed.len());
        // (pages before it, LSN) of each part appended.
        let mut parts: Vec<(usize, Lsn)> = Vec::new();
        for (no, base, new) in changed {
            let (kept, part) = records.add(no, base.as_deref().map(|b| &b[..]), &new, redo_point);
            if let Some(part) = part {
                let lsn = self.append_part(&mut held, part.bytes(), parts.is_empty())?;
                parts.push((pages.len(), lsn));
            }
            if kept {
                pages.push((no, Arc::try_unwrap(new).unwrap_or_else(|shared| (*shared).clone())));
            }
        }
        // Last, so that only the records appended from here name them. The
        // pages need no sync here, even for a record whose committer writes
        // its interior frames at once: a record's last frame always goes
        // through a batch, and every batch's leader syncs the data file
        // first (`Log::set_before_write`), so no record that names them is
        // whole in the log before they are durable (DESIGN.md).
        for &(no, crc) in written {
            if let Some(part) = records.add_written(no, crc) {
                let lsn = self.append_part(&mut held, part.bytes(), parts.is_empty())?;
                parts.push((pages.len(), lsn));
            }
        }
        let commit = records.finish(parts.first().map(|&(_, lsn)| lsn));
        let mut st = match held {
            Some(st) => st,
            None => self.state.lock(),
        };
        self.check_failed(&st)?;
        let appended = match self.log.append(commit.bytes()) {
            Ok(a) => a,
            Err(e) => {
                drop(st);
                return Err(self.fail(e.into()));
            }
        };
        st.parts_from = None;
        // Each base goes in with its page's new version, under one shard
        // lock: a reader's eviction between the two could drop the base, and
        // an old snapshot would then read the new content from the file.
        let mut bases: super::cache::PageMap<PageRef> = bases.into_iter().collect();
        let mut next_part = 0;
        for (i, (no, mut page)) in pages.into_iter().enumerate() {
            while next_part < parts.len() && parts[next_part].0 <= i {
                next_part += 1;
            }
            // Page i is in the first part appended after it was added.
            let lsn = parts.get(next_part).map_or(appended.lsn, |&(_, lsn)| lsn);
            page::set_lsn(&mut page, lsn);
            self.cache.publish(no, bases.remove(&no), seq, Arc::new(page));
        }
        for (no, base) in bases {
            self.cache.insert_from_file(no, base);
        }
        st.seq = seq;
        self.page_count.fetch_max(page_count, Ordering::AcqRel);
        st.pending.push_back((seq, appended.end, page_count));
        if self.cache.dirty_bytes() * 2 > self.cache.capacity() {
            self.checkpoint_wanted.store(true, Ordering::Relaxed);
            self.wake.notify_all();
        }
        Ok((seq, appended.end))
    }

    /// Appends one part of a transaction. The first is appended under the
    /// state lock, which a checkpoint takes its marker under, and noted as
    /// `parts_from`: from then until the commit, checkpoints keep redo (and
    /// the log) from there, so that whoever replays the commit reads its
    /// parts first.
    fn append_part(
        &self,
        held: &mut Option<parking_lot::MutexGuard<'_, PagerState>>,
        bytes: &[u8],
        first: bool,
    ) -> Result<Lsn> {
        let appended = match held {
            Some(st) => {
                self.check_failed(st)?;
                let appended = self.log.append(bytes);
                if let Ok(a) = &appended
                    && first
                {
                    st.parts_from = Some(a.lsn);
                }
                appended
            }
            None if first => {
                let mut st = self.state.lock();
                self.check_failed(&st)?;
                let appended = self.log.append(bytes);
                if let Ok(a) = &appended {
                    st.parts_from = Some(a.lsn);
                }
                appended
            }
            None => self.log.append(bytes),
        };
        match appended {
            Ok(a) => Ok(a.lsn),
            Err(e) => {
                // `fail` takes the state lock.
                held.take();
                Err(self.fail(e.into()))
            }
        }
    }

    /// Waits until the commit ending at `end` is durable (durable commits),
    /// then makes it visible to new snapshots. With the cache mostly dirty it
    /// runs a checkpoint first, so memory stays bounded.
    pub fn finish_commit(&self, end: Lsn, durable: bool) -> Result<()> {
        self.finish_commit_with(end, durable.then_some(SyncWait::Gathering))
    }

    /// [`Pager::finish_commit`] of a durable batch that a writer thread has
    /// gathered already: its sync does not wait for more committers.
    pub fn finish_batched_commit(&self, end: Lsn) -> Result<()> {
        self.finish_commit_with(end, Some(SyncWait::Batched))
    }

    /// `durable`: how to wait for the sync; None for a lazy commit.
    fn finish_commit_with(&self, end: Lsn, durable: Option<SyncWait>) -> Result<()> {
        if let Some(wait) = durable {
            let waited = match wait {
                SyncWait::Gathering => self.log.wait_durable(end),
                SyncWait::Batched => self.log.wait_durable_batched(end),
            };
            if let Err(e) = waited {
                return Err(self.fail(e.into()));
            }
        } else {
            self.state.lock().lazy_pending = true;
            self.wake.notify_all();
        }
        self.advance_visible();
        if self.mostly_dirty() {
            // Committers that find the cache mostly dirty wait for one
            // checkpoint; only one of them runs it.
            let ck = self.checkpointer.lock();
            if self.mostly_dirty() {
                tracing::debug!("the cache is mostly dirty: a committer runs the checkpoint");
                return self.checkpoint_locked(ck, super::header::DbState::Dirty, super::checkpoint::Recycle::Yes);
            }
        }
        Ok(())
    }

    fn mostly_dirty(&self) -> bool {
        self.cache.dirty_bytes() * 4 > self.cache.capacity() * 3
    }
}

/// Whether `new`, page `no` of a commit (from `base`, None when allocated
/// by it), is written once: a large value's page new to the file, which
/// held `committed` pages.
fn once(no: PageNo, base: &Option<PageRef>, new: &[u8], committed: u32) -> bool {
    base.is_none() && no >= committed && matches!(page::page_kind(new), Some(PageKind::LongData | PageKind::LongIndex))
}

/// Syncs the data file `file` if pages were written once since the last
/// such sync (`unsynced`); the commit path and the log's leader share it.
pub(crate) fn sync_if_written(unsynced: &AtomicBool, file: &dyn crate::vfs::VfsFile) -> std::io::Result<()> {
    if unsynced.swap(false, Ordering::AcqRel) {
        file.sync_data()?;
    }
    Ok(())
}

/// The sequence after `seq`. Recovery takes the sequence from the log, so a
/// hostile log could set it to the end of the range.
fn next_seq(seq: u64) -> Result<u64> {
    seq.checked_add(1)
        .ok_or_else(|| DbError::InvalidArgument("commit sequence exhausted".into()))
}
