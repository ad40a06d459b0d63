//! A passive copy's database: its data file, brought forward by replaying
//! a log shipped from the active (`log::LogReplica`) with the same redo
//! pass as crash recovery. Pages get the active's LSNs, so a copy that has
//! replayed to an LSN holds the active's pages at that LSN, byte for byte.
//!
//! The copy never writes to its log: a checkpoint writes the changed pages
//! (through the double-write area) and a header whose redo point is the
//! next record to replay, instead of appending a marker. Recovery of the
//! copy (or its promotion) then replays from there.

use super::apply::{LogAt, RedoPass};
use super::digest::Verifier;
use super::doublewrite::{DoubleWrite, dw_path};
use super::file::{DbFile, data_path, log_dir};
use super::header::{DbHeader, DbState, read_best, salt_of};
use super::passive_read::{PassiveSnapshot, SnapshotLimits, SnapshotSource, Snapshots};
use super::replay::Changed;
use super::spill::SpillWorker;
use super::{DbError, Result};
use crate::log::{LogReader, Lsn};
use crate::vfs::{OpenMode, SharedVfs};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// What a replay call did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplayProgress {
    /// Records applied by the call.
    pub records: u64,
    /// Page changes applied and skipped (already in the file).
    pub applied: u64,
    pub skipped: u64,
    /// Pages checked against a digest the active logged at a checkpoint.
    pub verified: u64,
    /// Whole-database digests that matched, and that could not be compared
    /// (this copy's state was ahead of the marker, as after a live seed).
    pub digests_verified: u64,
    pub digests_skipped: u64,
    /// The next record to replay.
    pub position: Lsn,
}

/// A passive copy's database, replayed from its shipped log.
pub struct Replayer {
    vfs: SharedVfs,
    dir: PathBuf,
    file: Arc<DbFile>,
    header: DbHeader,
    slot: u32,
    pass: RedoPass,
    budget: usize,
    /// A record start replay reads from: the last record applied (applying
    /// it again changes nothing) or the checkpoint's redo point.
    resume: Lsn,
    /// The end of the last record applied.
    position: Lsn,
    /// Open snapshots; dropped (expiring them) before the lock is released.
    snapshots: Snapshots,
    /// Writes checkpoints of spilled pages on its own thread. Declared
    /// before the lock: dropping it finishes a checkpoint in flight first.
    spilling: SpillWorker,
    /// Set when a background checkpoint failed: the copy is fail-stop
    /// (reopening it replays from the last checkpoint on disk).
    failed: bool,
    _lock: crate::vfs::StoreLock,
}

impl Replayer {
    /// Opens the copy in `dir` (data file and shipped log), holding up to
    /// `cache_bytes` of changed pages between checkpoints.
    pub fn open(vfs: SharedVfs, dir: impl AsRef<Path>, cache_bytes: usize) -> Result<Replayer> {
        let dir = dir.as_ref();
        let lock = super::open::take_lock(&vfs, dir)?;
        let path = data_path(dir);
        let file = vfs
            .open(&path, OpenMode::Existing)
            .map_err(|e| DbError::io(&path, 0, "open", e))?;
        let (header, slot) = read_best(file.as_ref(), &path)?;
        let ps = header.page_size as usize;
        let salt = salt_of(&header.signature);
        let dw = dw_path(dir);
        let dw_file = vfs
            .open(&dw, OpenMode::CreateOrOpen)
            .map_err(|e| DbError::io(&dw, 0, "open", e))?;
        vfs.sync_dir(dir)
            .map_err(|e| DbError::io(dir, 0, "sync directory", e))?;
        let file = Arc::new(DbFile {
            path,
            file,
            page_size: ps,
            salt,
            double_write: Some(DoubleWrite::new(dw, dw_file, ps, salt)),
            known_len: Default::default(),
        });
        file.restore_torn_pages()?;
        let budget = (cache_bytes / ps).max(16);
        let mut pass = RedoPass::new(budget, header.page_count, header.redo_lsn);
        pass.whole = Some(Verifier::default());
        let snapshots = Snapshots::new(file.path.clone());
        let spilling = SpillWorker::new(file.path.clone());
        let mut replayer = Replayer {
            vfs,
            dir: dir.to_path_buf(),
            pass,
            resume: header.redo_lsn,
            position: header.redo_lsn,
            budget,
            file,
            header,
            slot,
            snapshots,
            spilling,
            failed: false,
            _lock: lock,
        };
        replayer.publish_if_wanted();
        Ok(replayer)
    }

    /// The end of the last record replayed.
    pub fn position(&self) -> Lsn {
        self.position
    }

    /// Parts read of a transaction whose commit has not arrived yet: they
    /// apply when it does, and keep the copy's redo point (and its log) at
    /// the first of them meanwhile.
    pub fn parts_waiting(&self) -> u32 {
        self.pass.parts_waiting()
    }

    /// The database header as of the last checkpoint.
    pub fn header(&self) -> &DbHeader {
        &self.header
    }

    /// Whole-database digests verified and skipped since the copy opened.
    pub fn digests(&self) -> (u64, u64) {
        self.pass.whole.as_ref().map_or((0, 0), |v| (v.verified, v.skipped))
    }

    /// The data file's path.
    pub fn file_path(&self) -> &Path {
        &self.file.path
    }

    /// Replays every complete record the shipped log holds (it must be
    /// synced: see `log::LogReplica::sync`). A record whose frames have not
    /// all arrived waits for the next call. Checkpoints by itself when the
    /// changed pages fill the budget.
    pub fn replay(&mut self) -> Result<ReplayProgress> {
        self.replay_until(Lsn::MAX, None)
    }

    /// As [`Replayer::replay`], stopping before the first record that ends
    /// after `limit` (a lagged copy's replay point). `written`, if known, is
    /// where the shipped frames end: nothing past it is read ahead.
    pub fn replay_until(&mut self, limit: Lsn, written: Option<Lsn>) -> Result<ReplayProgress> {
        self.check_not_failed()?;
        let before = (self.pass.applied, self.pass.skipped, self.pass.verified);
        let digests_before = self.digests();
        let mut progress = ReplayProgress {
            position: self.position,
            ..ReplayProgress::default()
        };
        let ldir = log_dir(&self.dir);
        let log = LogAt {
            vfs: self.vfs.clone(),
            dir: ldir.clone(),
            signature: self.header.log_signature,
        };
        // No limit: the shipped frames may end inside a record, which the
        // reader then leaves for later instead of calling the log short.
        let mut reader =
            LogReader::new(self.vfs.clone(), &ldir, self.resume, Lsn::MAX)?.expect_signature(self.header.log_signature);
        if let Some(end) = written {
            reader = reader.written_up_to(end);
        }
        for record in reader {
            let record = record?;
            if record.end <= self.position {
                continue;
            }
            if record.end > limit {
                break;
            }
            if self.pass.pages.is_full() {
                // One background checkpoint at a time: replay waits here
                // only if the last one is still writing.
                self.finish_spill()?;
                let (pages, redo) = self.pass.pages.spill_to_write(self.pass.floor(record.lsn), false);
                self.start_spill(pages, redo)?;
            }
            self.pass.apply(&self.file, &record, &log)?;
            self.resume = record.lsn;
            self.position = record.end;
            progress.records += 1;
        }
        if self.spilling.is_finished() {
            self.finish_spill()?;
        }
        self.publish_if_wanted();
        progress.applied = self.pass.applied - before.0;
        progress.skipped = self.pass.skipped - before.1;
        progress.verified = self.pass.verified - before.2;
        let digests = self.digests();
        progress.digests_verified = digests.0 - digests_before.0;
        progress.digests_skipped = digests.1 - digests_before.1;
        progress.position = self.position;
        Ok(progress)
    }

    /// Writes every changed page and a header whose redo point is the last
    /// record replayed; the shipped log before it is no longer needed.
    pub fn checkpoint(&mut self) -> Result<()> {
        self.check_not_failed()?;
        self.finish_spill()?;
        self.pass.check_whole(&self.file, self.position)?;
        // A transaction whose parts were read keeps redo at its first.
        let redo = self.pass.floor(self.resume);
        let fresh = RedoPass::new(self.budget, self.pass.page_count, redo);
        let mut pass = std::mem::replace(&mut self.pass, fresh);
        pass.carry_into(&mut self.pass);
        // A whole digest announced before the checkpoint may arrive after it.
        self.pass.whole = pass.whole.take();
        let changed = pass.pages.into_changed();
        self.start_spill(changed, redo)?;
        self.finish_spill()
    }

    /// As [`Replayer::checkpoint`], written on a thread of its own while
    /// replay goes on; the header (and what the log may be truncated to)
    /// moves when it is done, seen by the next replay or checkpoint call.
    /// Pages still waiting for a full image stay, and keep redo before them.
    pub fn checkpoint_in_background(&mut self) -> Result<()> {
        self.check_not_failed()?;
        self.finish_spill()?;
        let (pages, redo) = self.pass.pages.spill_to_write(self.pass.floor(self.resume), true);
        self.start_spill(pages, redo)
    }

    fn check_not_failed(&self) -> Result<()> {
        if self.failed {
            return Err(DbError::corrupt(
                &self.file.path,
                0,
                "an earlier checkpoint of this copy failed; reopen it to recover",
            ));
        }
        Ok(())
    }

    /// Writes spilled pages and a header with redo point `redo` on a thread
    /// of its own, so that replay does not stand still while the disk
    /// writes (the replication lag's p99 was these stops). Snapshots open
    /// now keep the file's old versions first.
    ///
    /// Pages the log rebuilds from an image skip the double-write area. A
    /// torn write of one can only happen before the new header is written
    /// (they are synced first), and the header then in place has a redo
    /// point at or before the image, which replay applies whatever the file
    /// holds.
    fn start_spill(&mut self, changed: Changed, redo: Lsn) -> Result<()> {
        let Changed {
            mut protected,
            mut rebuilt,
        } = changed;
        self.snapshots.before_write(&self.file, &protected);
        self.snapshots.before_write(&self.file, &rebuilt);
        let (file, header, slot, page_count) = (self.file.clone(), self.header, self.slot, self.pass.page_count);
        self.spilling.submit(Box::new(move || {
            let began = std::time::Instant::now();
            let pages = (protected.len(), rebuilt.len());
            let (header, slot, _) = file.write_checkpoint_with(
                &header,
                slot,
                (&mut protected, &mut rebuilt),
                redo,
                page_count,
                DbState::Dirty,
            )?;
            tracing::debug!(
                protected = pages.0,
                rebuilt = pages.1,
                %redo,
                elapsed_ms = began.elapsed().as_secs_f64() * 1e3,
                "copy checkpoint written"
            );
            Ok((header, slot))
        }))
    }

    /// Waits for the background checkpoint, if any, and takes its header.
    fn finish_spill(&mut self) -> Result<()> {
        if !self.spilling.in_flight() {
            return Ok(());
        }
        let began = std::time::Instant::now();
        let unfinished = !self.spilling.is_finished();
        let Some(outcome) = self.spilling.wait() else {
            return Ok(());
        };
        match outcome {
            Ok((header, slot)) => {
                if unfinished {
                    let waited_ms = began.elapsed().as_secs_f64() * 1e3;
                    tracing::debug!(waited_ms, "replay waited for the copy's background checkpoint");
                }
                self.header = header;
                self.slot = slot;
                self.pass.pages.written();
                Ok(())
            }
            Err(e) => {
                self.failed = true;
                Err(e)
            }
        }
    }

    /// A read-only snapshot of the committed state at [`Replayer::position`]
    /// (see `PassiveSnapshot`); replay goes on. `NotYetConsistent` while
    /// the file holds changes replay has not reached yet.
    pub fn snapshot(&mut self) -> Result<PassiveSnapshot> {
        let required = self.header.required_lsn;
        // Page LSNs are record starts and the position a record end: the
        // file is whole at the position once it is past every page's LSN.
        if required != Lsn::ZERO && self.position <= required {
            self.snapshots.set_pending(self.position, required);
            return Err(DbError::NotYetConsistent {
                file: self.file.path.clone(),
                position: self.position,
                required,
            });
        }
        let pages = &self.pass.pages;
        Ok(self
            .snapshots
            .capture(&self.file, &self.header, self.position, self.pass.page_count, || {
                pages.capture()
            }))
    }

    /// A handle other threads take snapshots from while replay runs: each
    /// replay call publishes a new one when a reader asked since the last.
    pub fn snapshot_source(&self) -> SnapshotSource {
        self.snapshots.source()
    }

    /// Bounds the memory open snapshots hold (default `SnapshotLimits::default()`).
    pub fn set_snapshot_limits(&mut self, limits: SnapshotLimits) {
        self.snapshots.set_limits(limits);
    }

    fn publish_if_wanted(&mut self) {
        if self.snapshots.wanted(self.position) {
            // Not consistent yet: noted for the source, which says so.
            let _ = self.snapshot();
        }
    }

    /// Retires shipped generations wholly before the checkpoint's redo
    /// point and before `keep` (what the copy still has to ship onward or
    /// hold for a lag); returns how many.
    pub fn truncate_log(&self, keep: Lsn) -> Result<u32> {
        let ldir = log_dir(&self.dir);
        let before = self.header.redo_lsn.min(keep).generation();
        // The newest become spares the replica writes its next generations
        // into (`log::retire_generations`).
        Ok(crate::log::retire_generations(self.vfs.as_ref(), &ldir, before)?)
    }
}
