//! The pager's shared state: the cache with its snapshots, page reads,
//! visibility, log pins and fail-stop (the commit path is in `commit`).

use super::cache::PageCache;
use super::file::DbFile;
use super::header::DbHeader;
use super::page::{PageNo, PageRef};
pub use super::snapshots::Registered as Snapshot;
use super::snapshots::SnapshotRegistry;
use super::{DbError, Result};
use crate::log::{Log, LogOptions, Lsn};
use crate::vfs::SharedVfs;
use parking_lot::{Condvar, Mutex};
use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

/// Default bound on a transaction's changed pages (DESIGN.md, "Database
/// defaults": a bulk load of a million small records fits).
pub const DEFAULT_MAX_TRANSACTION_BYTES: usize = 256 << 20;

/// Snapshot that reads the newest committed versions (the writer's view).
pub const LATEST: u64 = u64::MAX;

/// How a page torn by a crash during its write is repaired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TornPages {
    /// The first change of a page after a checkpoint began is logged whole.
    FullPageImages,
    /// Checkpoint pages go to a synced side file first (`data.mvdw`).
    DoubleWrite,
}

/// Options of a database.
#[derive(Debug, Clone)]
pub struct PagerOptions {
    /// How torn page writes are repaired (DESIGN.md: the measured choice).
    pub torn_pages: TornPages,
    /// Page size in bytes, fixed at creation (power of two, 4–64 KiB).
    pub page_size: usize,
    /// Bytes of page versions the cache holds.
    pub cache_bytes: usize,
    /// A checkpoint starts when this many bytes of log lie after the last one.
    pub checkpoint_depth: u64,
    /// Most bytes of changed pages a transaction may hold (whole pages, in
    /// memory until it commits), and so the most it may log; never below
    /// half the cache. Changes beyond one log record go in parts.
    pub max_transaction_bytes: usize,
    /// Longest a lazy commit stays in memory before a background flush.
    pub lazy_flush_interval: Duration,
    /// Every this many checkpoints (by checkpoint number) the active logs a
    /// digest of the whole database, which passive copies check; 0: never.
    pub whole_digest_every: u64,
    /// And only once this many times the data file's size in log has been
    /// written since the last one (0: no such bound), so that scanning the
    /// file costs at most 1/factor of the log's own I/O.
    pub whole_digest_log_factor: u64,
    /// Pages of large values that are new to the file are written to it in
    /// place and synced before their commit, which names them by checksum,
    /// instead of going to the log and again through a checkpoint
    /// (DESIGN.md, "Large values written once"). Never while a log pin is
    /// held: whoever reads that log gets every page from it.
    pub write_large_values_once: bool,
    /// Options of the write-ahead log.
    pub log: LogOptions,
}

impl Default for PagerOptions {
    fn default() -> Self {
        PagerOptions {
            torn_pages: TornPages::DoubleWrite,
            page_size: super::DEFAULT_PAGE_SIZE,
            cache_bytes: 64 << 20,
            checkpoint_depth: 32 << 20,
            max_transaction_bytes: DEFAULT_MAX_TRANSACTION_BYTES,
            lazy_flush_interval: Duration::from_millis(10),
            whole_digest_every: 8,
            whole_digest_log_factor: 16,
            write_large_values_once: true,
            log: LogOptions::default(),
        }
    }
}

pub(crate) struct PagerState {
    /// Last committed sequence.
    pub seq: u64,
    /// Committed, not yet visible: (sequence, end of its record, page
    /// count after it).
    pub pending: VecDeque<(u64, Lsn, u32)>,
    /// Where the latest checkpoint began: a page last changed before it is
    /// logged whole at its next change (torn-write repair).
    pub redo_point: Lsn,
    /// Log pins: id → oldest LSN the holder needs.
    pub pins: BTreeMap<u64, Lsn>,
    pub next_pin: u64,
    pub failed: Option<Arc<DbError>>,
    /// Lazy commits wait for the background flush.
    pub lazy_pending: bool,
    /// The first part of the transaction being appended in parts: redo and
    /// the log are kept from there until its commit.
    pub parts_from: Option<Lsn>,
    /// A commit is writing pages in place before its record: no pin may be
    /// taken until its record is appended (`Pager::pin` waits).
    pub writing_once: bool,
}

/// What the checkpointer owns: the header as last written.
pub(crate) struct CheckpointState {
    pub header: DbHeader,
    pub slot: u32,
    pub number: u64,
    /// The redo point of the last checkpoint that logged a whole digest.
    pub last_whole: Lsn,
}

/// The pager: database file, cache, log.
pub struct Pager {
    pub(crate) dir: PathBuf,
    pub(crate) vfs: SharedVfs,
    pub(crate) file: DbFile,
    pub(crate) log: Log,
    pub(crate) opts: PagerOptions,
    pub(crate) state: Mutex<PagerState>,
    /// Committed page versions. Lock order: `state` before a cache shard;
    /// readers take only the shard.
    pub(crate) cache: PageCache,
    /// Live snapshots and the visible sequence (`state` before its shards).
    pub(crate) snapshots: SnapshotRegistry,
    /// Pages in the database (committed); set under `state`.
    pub(crate) page_count: AtomicU32,
    /// Pages as of the visible sequence, moved with it under a sequence
    /// lock: `visible_change` is odd while the two move (under `state`),
    /// so a snapshot's begin can read both as one state.
    pub(crate) visible_pages: AtomicU32,
    pub(crate) visible_change: AtomicU64,
    /// Signals the background thread (lazy flush, checkpoint requests, shutdown).
    pub(crate) wake: Condvar,
    pub(crate) checkpointer: Mutex<CheckpointState>,
    pub(crate) shutdown: AtomicBool,
    pub(crate) checkpoint_wanted: AtomicBool,
    /// No page below this is free in the committed state: where the next
    /// writer's free-space search starts. Read and set only by the writer.
    pub(crate) free_search_from: AtomicU32,
    /// Pages written in place that no sync has covered yet: the log's
    /// leader syncs the data file before writing a batch while it is set.
    pub(crate) unsynced_written: Arc<AtomicBool>,
    /// Pages written once, in place before their commit, since open.
    pub(crate) pages_written_once: AtomicU64,
    /// Signalled when `writing_once` clears.
    pub(crate) written_once_done: Condvar,
    pub(crate) background: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// Held for the pager's life: no second open of the same directory.
    pub(crate) _lock: crate::vfs::StoreLock,
}

impl std::fmt::Debug for Pager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pager").field("dir", &self.dir).finish_non_exhaustive()
    }
}

impl Pager {
    pub fn page_size(&self) -> usize {
        self.file.page_size
    }

    pub fn salt(&self) -> u32 {
        self.file.salt
    }

    pub fn file_path(&self) -> &std::path::Path {
        &self.file.path
    }

    pub fn log(&self) -> &Log {
        &self.log
    }

    /// The file layer the database lives on.
    pub fn vfs(&self) -> &SharedVfs {
        &self.vfs
    }

    /// The header of the last completed checkpoint: a seed starts from its
    /// redo point, which every page in the file has reached.
    pub fn checkpoint_header(&self) -> super::header::DbHeader {
        self.checkpointer.lock().header
    }

    /// Pages `first..` as the file holds them now, for a seed, into `out`
    /// (whole pages). A page torn by a checkpoint writing it at this moment
    /// is read again; a page never written (all zeros, or beyond the
    /// file's end) is left zero: the log from the seed's redo point then
    /// holds a full image of it.
    pub fn read_file_pages(&self, first: PageNo, out: &mut [u8]) -> Result<()> {
        self.file.read_pages_for_seed(first, out)
    }

    /// The database's signature (random, fixed at creation).
    pub fn signature(&self) -> crate::log::LogSignature {
        self.checkpointer.lock().header.signature
    }

    /// The epoch of the database header.
    pub fn epoch(&self) -> u64 {
        self.checkpointer.lock().header.epoch
    }

    pub fn options(&self) -> &PagerOptions {
        &self.opts
    }

    pub(crate) fn check_failed(&self, st: &PagerState) -> Result<()> {
        match &st.failed {
            Some(cause) => Err(DbError::Stopped { cause: cause.clone() }),
            None => Ok(()),
        }
    }

    /// Stops the database after a write or sync failure; returns the error.
    pub(crate) fn fail(&self, e: DbError) -> DbError {
        let mut st = self.state.lock();
        let cause = st.failed.get_or_insert_with(|| Arc::new(e)).clone();
        tracing::error!(error = %cause, "database write failed; the database is stopped");
        DbError::Stopped { cause }
    }

    /// Page `no` as seen by `snapshot`.
    pub fn read(&self, no: PageNo, snapshot: u64) -> Result<PageRef> {
        if let Some(p) = self.cached(no, snapshot)? {
            return Ok(p);
        }
        let page = Arc::new(self.file.read_page(no)?);
        // A bound at or below the oldest snapshot: eviction by it keeps every
        // version a snapshot may read.
        Ok(self.cache.insert_and_evict(no, page, self.snapshots.oldest_bound()))
    }

    /// [`Pager::read`], leaving a page read from the file out of the cache:
    /// the data pages of a large value are read once, and caching them
    /// would evict the tree pages every lookup needs (and hold the memory).
    pub fn read_in_passing(&self, no: PageNo, snapshot: u64) -> Result<PageRef> {
        if let Some(p) = self.cached(no, snapshot)? {
            return Ok(p);
        }
        let page = Arc::new(self.file.read_page(no)?);
        // A commit may have published the page (with its base, the version
        // this snapshot reads) and a checkpoint written the new one to the
        // file since the lookup above: the cache's version wins, as in
        // `PageCache::insert_from_file`.
        Ok(self.cache.get(no, snapshot).unwrap_or(page))
    }

    /// The version of page `no` that `snapshot` reads, if cached.
    fn cached(&self, no: PageNo, snapshot: u64) -> Result<Option<PageRef>> {
        // Set before the commit that grew the file becomes visible, so a
        // snapshot sees at least its own page count.
        let page_count = self.page_count.load(Ordering::Acquire);
        if no >= page_count {
            return Err(DbError::corrupt_page(
                &self.file.path,
                no,
                self.file.offset(no),
                format!("page number beyond the database's {page_count} pages"),
            ));
        }
        Ok(self.cache.get(no, snapshot))
    }

    /// Registers a snapshot of the visible state, and returns it with that
    /// state's page count (pages at or past it do not exist for it). End it
    /// with [`Pager::end_snapshot`] (on any thread).
    pub fn begin_snapshot(&self) -> (Snapshot, u32) {
        loop {
            let before = self.visible_change.load(Ordering::SeqCst);
            if before.is_multiple_of(2) {
                let snapshot = self.snapshots.begin();
                let pages = self.visible_pages.load(Ordering::SeqCst);
                if self.visible_change.load(Ordering::SeqCst) == before {
                    return (snapshot, pages);
                }
                // Visibility moved meanwhile: the two may not match.
                self.end_snapshot(snapshot);
            }
            std::hint::spin_loop();
        }
    }

    pub fn end_snapshot(&self, snapshot: Snapshot) {
        // Only the oldest snapshot's end can let versions go, and the
        // oldest is at the bound (which never passes a live snapshot):
        // others leave pruning to the next move of visibility, so that
        // reads overlapping commits do not all take every lock here.
        if self.snapshots.end(snapshot) && snapshot.seq <= self.snapshots.oldest_bound() {
            let _st = self.state.lock();
            let oldest = self.snapshots.oldest();
            self.cache.prune(oldest);
            self.cache.evict(oldest);
        }
    }

    /// Pages in the database as of the last commit.
    pub fn page_count(&self) -> u32 {
        self.page_count.load(Ordering::Acquire)
    }

    /// Makes every durable commit visible.
    pub fn advance_visible(&self) {
        let durable = self.log.durable_lsn();
        let mut st = self.state.lock();
        let mut moved = None;
        while let Some(&(seq, end, pages)) = st.pending.front() {
            if end > durable {
                break;
            }
            st.pending.pop_front();
            moved = Some((seq, pages));
        }
        if let Some((seq, pages)) = moved {
            self.visible_change.fetch_add(1, Ordering::SeqCst);
            self.snapshots.set_visible(seq);
            self.visible_pages.fetch_max(pages, Ordering::SeqCst);
            self.visible_change.fetch_add(1, Ordering::SeqCst);
            let oldest = self.snapshots.oldest();
            self.cache.prune(oldest);
            self.cache.evict(oldest);
        }
    }

    /// Holds the log from `lsn` on (a backup or a copy that still needs it).
    pub fn pin(&self, lsn: Lsn) -> u64 {
        let mut st = self.state.lock();
        // Whoever holds a pin reads the log and must find every page in it.
        while st.writing_once {
            self.written_once_done.wait(&mut st);
        }
        let id = st.next_pin;
        st.next_pin += 1;
        st.pins.insert(id, lsn);
        id
    }

    /// Moves a pin forward.
    pub fn move_pin(&self, id: u64, lsn: Lsn) {
        if let Some(p) = self.state.lock().pins.get_mut(&id) {
            *p = lsn;
        }
    }

    pub fn unpin(&self, id: u64) {
        self.state.lock().pins.remove(&id);
    }

    /// Pages of large values written once (in place, before their commit)
    /// since this database was opened.
    pub fn pages_written_once(&self) -> u64 {
        self.pages_written_once.load(Ordering::Relaxed)
    }

    /// Cache figures: (bytes held, dirty bytes, capacity).
    pub fn cache_usage(&self) -> (usize, usize, usize) {
        (self.cache.bytes(), self.cache.dirty_bytes(), self.cache.capacity())
    }
}
