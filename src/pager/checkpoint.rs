//! Fuzzy checkpoints, log truncation and the background thread.
//!
//! A checkpoint appends a marker record (recovery starts there), takes the
//! newest version of every dirty page under the state lock, and from then on
//! writers continue: it waits for the log to be durable up to the marker (the
//! WAL rule: every version taken is older), writes the pages in page order,
//! syncs, writes the header copy that does not hold the newest header, syncs
//! again, and only then recycles the log generations wholly before the marker
//! (or before the oldest pin, if older).

use super::engine::Pager;
use super::header::DbState;
use super::page::{self, PageNo, PageRef};
use super::redo::DbRecord;
use super::{DbError, Result};
use crate::log::Lsn;
use std::sync::Arc;
use std::sync::atomic::Ordering;

/// Whether a checkpoint recycles the log generations it made unneeded.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Recycle {
    Yes,
    No,
}

impl Pager {
    /// Runs a checkpoint now.
    pub fn checkpoint(&self) -> Result<()> {
        self.checkpoint_with_state(DbState::Dirty)
    }

    pub(crate) fn checkpoint_with_state(&self, state: DbState) -> Result<()> {
        self.checkpoint_locked(self.checkpointer.lock(), state, Recycle::Yes)
    }

    /// Recovery's closing checkpoint recycles no log: whoever restores
    /// holds after open (a copy registry, `repl::CopyRegistry::restore`)
    /// must find the log they hold still there.
    pub(crate) fn recovery_checkpoint(&self) -> Result<()> {
        self.checkpoint_locked(self.checkpointer.lock(), DbState::Dirty, Recycle::No)
    }

    /// Runs a checkpoint holding the checkpointer's lock.
    pub(crate) fn checkpoint_locked(
        &self,
        mut ck: parking_lot::MutexGuard<'_, super::engine::CheckpointState>,
        state: DbState,
        recycle: Recycle,
    ) -> Result<()> {
        self.checkpoint_wanted.store(false, Ordering::Relaxed);
        let started = std::time::Instant::now();
        // Informational only: a hostile log may carry any number.
        let number = ck.number.wrapping_add(1);
        let every = self.opts.whole_digest_every;
        // Not at close: a shutdown does not wait for a scan of the file.
        let factor = self.opts.whole_digest_log_factor;
        let file_bytes = u64::from(self.page_count()) * self.page_size() as u64;
        let written = self.log_distance(ck.last_whole, self.log.end_lsn());
        let whole_digest = every != 0
            && number.is_multiple_of(every)
            && state != DbState::Clean
            && (factor == 0 || written >= factor.saturating_mul(file_bytes));
        let marker = DbRecord::Checkpoint { number, whole_digest }.encode();
        let (marker, redo, end, pages, page_count) = {
            let mut st = self.state.lock();
            self.check_failed(&st)?;
            let appended = match self.log.append(&marker) {
                Ok(a) => a,
                Err(e) => {
                    drop(st);
                    return Err(self.fail(e.into()));
                }
            };
            st.redo_point = appended.lsn;
            // A transaction appending its parts commits after this marker:
            // recovery must read them, so redo starts at the first.
            let redo = st.parts_from.map_or(appended.lsn, |first| first.min(appended.lsn));
            (
                appended.lsn,
                redo,
                appended.end,
                self.cache.dirty_pages(),
                self.page_count(),
            )
        };
        if let Err(e) = self.log.wait_durable(end) {
            return Err(self.fail(e.into()));
        }
        ck.number = number;
        // What whoever replays this log must find in these pages: their
        // checksums as sealed for the write.
        let digest = self
            .write_checkpoint(&mut ck, redo, pages, page_count, state)
            .map_err(|e| self.fail(e))?;
        // In records the log accepts; durable with the next batch, and
        // nothing waits for them.
        let per_record = (self.log.max_record_size().saturating_sub(16) / 16).max(1);
        for part in digest.chunks(per_record) {
            if let Err(e) = self.log.append(&DbRecord::Digest { pages: part.to_vec() }.encode()) {
                return Err(self.fail(e.into()));
            }
        }
        if whole_digest {
            ck.last_whole = marker;
            self.log_whole_digest(marker, page_count)?;
        }
        tracing::debug!(number, %marker, %redo, pages = digest.len(), elapsed = ?started.elapsed(), "checkpoint written");
        match recycle {
            Recycle::Yes => self.truncate_log(redo),
            Recycle::No => Ok(()),
        }
    }

    /// Logs the digest of the whole database as of the marker at `redo`.
    /// Called holding the checkpointer's lock right after the checkpoint
    /// wrote its pages: only checkpoints write the file (no-steal), and this
    /// one wrote the newest committed version, as of the marker, of every
    /// page changed since the last, so the file holds exactly that state.
    fn log_whole_digest(&self, redo: Lsn, page_count: u32) -> Result<()> {
        let started = std::time::Instant::now();
        // A check, not a duty: a failed read skips it (copies then compare
        // nothing), and the checkpoint, already complete, stands.
        let state = match super::digest::scan(&self.file, page_count, redo, None) {
            Ok(state) => state,
            Err(e) => {
                tracing::error!(error = %e, marker = %redo, "whole-database digest skipped");
                return Ok(());
            }
        };
        for part in state.records(self.log.max_record_size()) {
            if let Err(e) = self.log.append(&DbRecord::WholeDigest(part).encode()) {
                return Err(self.fail(e.into()));
            }
        }
        tracing::debug!(marker = %redo, pages = page_count, elapsed = ?started.elapsed(), "whole-database digest logged");
        Ok(())
    }

    /// Writes `pages` and then a header saying recovery starts at `redo`.
    /// Returns (page, page LSN, checksum) of every page written.
    pub(crate) fn write_checkpoint(
        &self,
        ck: &mut super::engine::CheckpointState,
        redo: Lsn,
        pages: Vec<(PageNo, PageRef)>,
        page_count: u32,
        state: DbState,
    ) -> Result<Vec<(PageNo, Lsn, u32)>> {
        // Pages at or beyond the page count of the header in place did not
        // exist at its redo point, so the log from there holds each one's
        // first version whole (a new page is logged as an image): a write
        // that tears one is rebuilt by replay, and needs no double-write copy.
        let (mut direct, mut protected): (Vec<_>, Vec<_>) =
            pages.into_iter().partition(|(no, _)| *no >= ck.header.page_count);
        let (header, slot, crcs) = self.file.write_checkpoint_with(
            &ck.header,
            ck.slot,
            (&mut protected, &mut direct),
            redo,
            page_count,
            state,
        )?;
        ck.header = header;
        ck.slot = slot;
        let pages: Vec<_> = protected.into_iter().chain(direct).collect();
        let digest = pages
            .iter()
            .zip(crcs)
            .map(|((no, p), crc)| (*no, page::page_lsn(p), crc))
            .collect();
        let _st = self.state.lock();
        for (no, p) in &pages {
            self.cache.mark_written(*no, p);
        }
        let oldest = self.snapshots.oldest();
        self.cache.evict(oldest);
        Ok(digest)
    }

    /// Recycles the log generations nobody needs: wholly before the last
    /// checkpoint's marker and before every pin.
    fn truncate_log(&self, redo: Lsn) -> Result<()> {
        let keep = {
            let st = self.state.lock();
            st.pins.values().copied().min().unwrap_or(redo).min(redo)
        };
        match self.log.recycle_before(keep) {
            Ok(_) => Ok(()),
            Err(e) => Err(self.fail(e.into())),
        }
    }

    /// Bytes of log written after `from`.
    pub(crate) fn log_distance(&self, from: Lsn, to: Lsn) -> u64 {
        let generation_size = self.opts.log.generation_size;
        let whole = u64::from(to.generation().saturating_sub(from.generation())) * generation_size;
        (whole + u64::from(to.offset())).saturating_sub(u64::from(from.offset()))
    }

    /// The background thread: flushes lazy commits, and checkpoints when the
    /// log since the last checkpoint exceeds the depth target or the cache
    /// fills with dirty pages.
    pub(crate) fn background_loop(self: &Arc<Self>) {
        loop {
            {
                let mut st = self.state.lock();
                if self.shutdown.load(Ordering::Relaxed) {
                    return;
                }
                if !st.lazy_pending && !self.checkpoint_wanted.load(Ordering::Relaxed) {
                    self.wake.wait_for(&mut st, self.opts.lazy_flush_interval);
                }
                if self.shutdown.load(Ordering::Relaxed) {
                    return;
                }
                if st.failed.is_some() {
                    // Stopped: nothing to flush or checkpoint; wait for close.
                    self.wake.wait_for(&mut st, self.opts.lazy_flush_interval);
                    continue;
                }
            }
            let lazy = std::mem::take(&mut self.state.lock().lazy_pending);
            if lazy {
                // Sleep out the window so that one flush covers many lazy commits.
                std::thread::sleep(self.opts.lazy_flush_interval);
                if let Err(e) = self.log.flush() {
                    self.fail(e.into());
                    continue;
                }
                self.advance_visible();
            }
            let (redo, half_dirty) = {
                let st = self.state.lock();
                (st.redo_point, self.cache.dirty_bytes() * 2 > self.cache.capacity())
            };
            let deep = self.log_distance(redo, self.log.end_lsn()) > self.opts.checkpoint_depth;
            // The request is checked again here: commits during the last
            // checkpoint asked for another while the pages it was writing
            // still counted as dirty (measured: every checkpoint was followed
            // at once by one of half its size).
            let wanted = self.checkpoint_wanted.swap(false, Ordering::Relaxed) && half_dirty;
            if (deep || wanted)
                && let Err(e) = self.checkpoint()
            {
                tracing::error!(error = %e, "background checkpoint failed");
            }
        }
    }

    /// Stops the background thread (lazy flushes, checkpoints). `close` does
    /// it too; call it before dropping a pager that is not closed.
    pub fn stop_background(&self) {
        self.shutdown.store(true, Ordering::Relaxed);
        self.wake.notify_all();
        if let Some(t) = self.background.lock().take() {
            // A panic in the background thread leaves nothing to clean up here.
            let _ = t.join();
        }
    }

    /// Checkpoints with the clean state and closes the log, giving back the
    /// space it keeps ready for commits (its spare generation files and the
    /// unused tail of the current one): a closed store takes the disk space
    /// of its data and its live log only.
    pub fn close(&self) -> Result<()> {
        self.stop_background();
        self.log.flush().map_err(DbError::from)?;
        self.advance_visible();
        self.checkpoint_with_state(DbState::Clean)?;
        let released = self.log.release_spare_space().map_err(DbError::from)?;
        tracing::debug!(bytes = released, "log space given back at close");
        Ok(())
    }
}
