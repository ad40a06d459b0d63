//! Creating and opening a database: the first pages, and recovery, which
//! replays the log from the checkpoint marker the header names.

use super::apply::{LogAt, RedoPass};
use super::cache::PageCache;
use super::doublewrite::{DoubleWrite, dw_path};
use super::engine::{CheckpointState, Pager, PagerOptions, PagerState, TornPages};
use super::file::{DbFile, data_path, lock_path, log_dir};
use super::freemap::{self, FIRST_MAP_PAGE};
use super::header::{DbHeader, DbState, read_best, salt_of};
use super::page::{self, PageBuf, PageKind};
use super::redo::DbRecord;
use super::snapshots::SnapshotRegistry;
use super::{DbError, FIRST_DATA_PAGE, Result};
use crate::log::{Log, LogSignature, Lsn};
use crate::vfs::{OpenMode, SharedVfs};
use parking_lot::{Condvar, Mutex};
use std::collections::{BTreeMap, VecDeque};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

/// What recovery did at open.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RecoveryStats {
    /// Log records read from the checkpoint on.
    pub records: u64,
    /// Page changes applied (the rest were already in the file).
    pub applied: u64,
    pub skipped: u64,
    /// Bytes of log replayed.
    pub log_bytes: u64,
    /// Where replay started and ended.
    pub from: Lsn,
    pub to: Lsn,
    /// Times recovery wrote its pages midway to stay within the cache size.
    pub flushes: u64,
    /// Torn pages put back from the double-write area before redo.
    pub restored: u64,
    /// Parts of transactions whose commit the log does not hold (a crash
    /// while a large transaction was being appended): never applied.
    pub abandoned_parts: u64,
    /// Transactions in parts replayed (their parts read again from the log).
    pub part_commits: u64,
    /// Pages of large values written in place before their commit, found
    /// in the file as their records say.
    pub written_once: u64,
    /// Seconds opening the log took (its own scan and rebuild of the last
    /// generation), the redo pass, and the closing checkpoint.
    pub log_open_secs: f64,
    pub replay_secs: f64,
    pub checkpoint_secs: f64,
}

/// The directory's lock, or `InUse` while another open holds it.
pub(super) fn take_lock(vfs: &SharedVfs, dir: &Path) -> Result<crate::vfs::StoreLock> {
    let path = lock_path(dir);
    match vfs.try_lock(&path) {
        Ok(Some(lock)) => Ok(lock),
        Ok(None) => Err(DbError::InUse { lock: path }),
        Err(e) => Err(DbError::io(&path, 0, "lock", e)),
    }
}

fn check_options(opts: &PagerOptions) -> Result<()> {
    let ps = opts.page_size;
    if !ps.is_power_of_two() || !(page::MIN_PAGE_SIZE..=page::MAX_PAGE_SIZE).contains(&ps) {
        return Err(DbError::InvalidArgument(format!(
            "page size {ps} must be a power of two from 4 KiB to 64 KiB"
        )));
    }
    if opts.cache_bytes < 16 * ps {
        return Err(DbError::InvalidArgument(format!(
            "cache of {} bytes holds fewer than 16 pages",
            opts.cache_bytes
        )));
    }
    Ok(())
}

impl Pager {
    /// Creates a database in `dir` (which must not hold one): the data file
    /// and the log directory.
    pub fn create(vfs: SharedVfs, dir: impl AsRef<Path>, opts: PagerOptions) -> Result<Arc<Pager>> {
        check_options(&opts)?;
        let dir = dir.as_ref();
        let path = data_path(dir);
        vfs.create_dir_all(dir)
            .map_err(|e| DbError::io(dir, 0, "create directory", e))?;
        let lock = take_lock(&vfs, dir)?;
        if vfs.exists(&path).map_err(|e| DbError::io(&path, 0, "stat", e))? {
            return Err(DbError::NotADatabase {
                path,
                reason: "a database already exists here".into(),
            });
        }
        let log = Log::create(vfs.clone(), log_dir(dir), opts.log.clone())?;
        let signature = LogSignature::random().map_err(|e| DbError::io(dir, 0, "getrandom", e))?;
        let salt = salt_of(&signature);
        let ps = opts.page_size;
        let marker = log.append(
            &DbRecord::Checkpoint {
                number: 1,
                whole_digest: false,
            }
            .encode(),
        )?;
        log.wait_durable(marker.end)?;
        let header = DbHeader {
            state: DbState::Dirty,
            page_size: ps as u32,
            signature,
            log_signature: log.signature(),
            sequence: 1,
            redo_lsn: marker.lsn,
            required_lsn: Lsn::ZERO,
            page_count: FIRST_DATA_PAGE,
            catalog_root: FIRST_DATA_PAGE,
            created_us: crate::log::now_us(),
            epoch: 0,
        };
        let file = vfs
            .open(&path, OpenMode::CreateNew)
            .map_err(|e| DbError::io(&path, 0, "create", e))?;
        let db_file = DbFile {
            path: path.clone(),
            file,
            page_size: ps,
            salt,
            double_write: None,
            known_len: Default::default(),
        };
        let mut map = PageBuf::zeroed(ps);
        page::init_header(&mut map, FIRST_MAP_PAGE, PageKind::FreeMap, salt);
        for no in 0..FIRST_DATA_PAGE {
            freemap::put(&mut map, no as usize, true);
        }
        db_file.write_pages(&[(FIRST_MAP_PAGE, Arc::new(map))])?;
        db_file.write_header(&header, 0)?;
        db_file.sync()?;
        vfs.sync_dir(dir)
            .map_err(|e| DbError::io(dir, 0, "sync directory", e))?;
        drop(log);
        Pager::open_locked(vfs, dir, opts, lock).map(|(p, _)| p)
    }

    /// Opens the database in `dir`, replaying the log from its checkpoint.
    pub fn open(vfs: SharedVfs, dir: impl AsRef<Path>, opts: PagerOptions) -> Result<(Arc<Pager>, RecoveryStats)> {
        let dir = dir.as_ref();
        let path = data_path(dir);
        if !vfs.exists(&path).map_err(|e| DbError::io(&path, 0, "stat", e))? {
            return Err(DbError::NotADatabase {
                path,
                reason: "no database file".into(),
            });
        }
        let lock = take_lock(&vfs, dir)?;
        Pager::open_locked(vfs, dir, opts, lock)
    }

    fn open_locked(
        vfs: SharedVfs,
        dir: &Path,
        opts: PagerOptions,
        lock: crate::vfs::StoreLock,
    ) -> Result<(Arc<Pager>, RecoveryStats)> {
        let path = data_path(dir);
        let file = vfs
            .open(&path, OpenMode::Existing)
            .map_err(|e| DbError::io(&path, 0, "open", e))?;
        let (header, slot) = read_best(file.as_ref(), &path)?;
        let ps = header.page_size as usize;
        let opts = PagerOptions { page_size: ps, ..opts };
        check_options(&opts)?;
        let ldir = log_dir(dir);
        if !vfs.exists(&ldir).map_err(|e| DbError::io(&ldir, 0, "stat", e))? {
            return Err(DbError::LogMismatch {
                dir: ldir,
                reason: "the log directory is missing".into(),
            });
        }
        let log_open = std::time::Instant::now();
        let log = Log::open(vfs.clone(), &ldir, opts.log.clone())?;
        let log_open_secs = log_open.elapsed().as_secs_f64();
        if log.signature() != header.log_signature {
            return Err(DbError::LogMismatch {
                dir: ldir,
                reason: format!(
                    "the log is signed {} but the database expects {}: it belongs to another database",
                    log.signature(),
                    header.log_signature
                ),
            });
        }
        if log.first_generation() > header.redo_lsn.generation() {
            return Err(DbError::LogMismatch {
                dir: ldir,
                reason: format!(
                    "recovery needs the log from {} (generation {}), but the oldest generation present is {}",
                    header.redo_lsn,
                    header.redo_lsn.generation(),
                    log.first_generation()
                ),
            });
        }
        let salt = salt_of(&header.signature);
        // The side file is read at every open that finds it, whatever the
        // options say now: a crash may have left torn pages that only it holds.
        let dw = dw_path(dir);
        let dw_exists = vfs.exists(&dw).map_err(|e| DbError::io(&dw, 0, "stat", e))?;
        let double_write = if dw_exists || opts.torn_pages == TornPages::DoubleWrite {
            let file = vfs
                .open(&dw, OpenMode::CreateOrOpen)
                .map_err(|e| DbError::io(&dw, 0, "open", e))?;
            if !dw_exists {
                vfs.sync_dir(dir)
                    .map_err(|e| DbError::io(dir, 0, "sync directory", e))?;
            }
            Some(DoubleWrite::new(dw, file, ps, salt))
        } else {
            None
        };
        let mut db_file = DbFile {
            path,
            file,
            page_size: ps,
            salt,
            double_write,
            known_len: Default::default(),
        };
        let restored = db_file.restore_torn_pages()?;
        if opts.torn_pages == TornPages::FullPageImages {
            db_file.double_write = None;
        }
        // The log may accept less than its option says (it fits records to
        // its geometry): every record must still hold one page's change.
        let least = super::txn_records::largest_change(ps) + super::redo::COMMIT_PARTS_HEADER_LEN;
        if log.max_record_size() < least {
            return Err(DbError::InvalidArgument(format!(
                "the log's records hold at most {} bytes, less than the {least} one change of a {ps}-byte page may take",
                log.max_record_size()
            )));
        }
        let pager = Arc::new(Pager {
            dir: dir.to_path_buf(),
            vfs,
            file: db_file,
            log,
            state: Mutex::new(PagerState {
                seq: 0,
                pending: VecDeque::new(),
                redo_point: header.redo_lsn,
                pins: BTreeMap::new(),
                next_pin: 0,
                failed: None,
                lazy_pending: false,
                parts_from: None,
                writing_once: false,
            }),
            cache: PageCache::new(ps, opts.cache_bytes),
            snapshots: SnapshotRegistry::new(0),
            page_count: AtomicU32::new(header.page_count),
            visible_pages: AtomicU32::new(header.page_count),
            visible_change: AtomicU64::new(0),
            opts,
            wake: Condvar::new(),
            checkpointer: Mutex::new(CheckpointState {
                header,
                slot,
                number: 0,
                last_whole: Lsn::ZERO,
            }),
            shutdown: AtomicBool::new(false),
            checkpoint_wanted: AtomicBool::new(false),
            free_search_from: AtomicU32::new(FIRST_DATA_PAGE),
            unsynced_written: Arc::new(AtomicBool::new(false)),
            pages_written_once: AtomicU64::new(0),
            written_once_done: Condvar::new(),
            background: Mutex::new(None),
            _lock: lock,
        });
        pager.log.set_before_write(written_once_hook(&pager));
        let mut stats = pager.recover()?;
        stats.restored = restored;
        stats.log_open_secs = log_open_secs;
        let runner = pager.clone();
        let handle = std::thread::Builder::new()
            .name("mailvault-db".into())
            .spawn(move || runner.background_loop())
            .map_err(|e| DbError::io(dir, 0, "spawn background thread", e))?;
        *pager.background.lock() = Some(handle);
        Ok((pager, stats))
    }

    /// Replays every record from the header's redo point, then writes the
    /// result with a new checkpoint so the next open starts from here.
    fn recover(&self) -> Result<RecoveryStats> {
        let replay = std::time::Instant::now();
        let header = self.checkpointer.lock().header;
        let mut stats = RecoveryStats {
            from: header.redo_lsn,
            ..RecoveryStats::default()
        };
        // The whole cache is free while recovery runs: redo may fill it.
        let mut pass = RedoPass::new(
            self.opts.cache_bytes / self.file.page_size,
            header.page_count,
            header.redo_lsn,
        );
        let ldir = log_dir(&self.dir);
        let limit = self.log.durable_lsn();
        let reader = crate::log::LogReader::new(self.vfs.clone(), &ldir, header.redo_lsn, limit)?
            .expect_signature(header.log_signature);
        let log = LogAt {
            vfs: self.vfs.clone(),
            dir: ldir.clone(),
            signature: header.log_signature,
        };
        let mut end = header.redo_lsn;
        for record in reader {
            let record = record?;
            if pass.pages.is_full() {
                // Bound memory: everything before this record is applied, so
                // the coldest pages can be written under a checkpoint whose
                // redo starts at the oldest change still only in memory.
                let (list, redo_from) = pass.pages.spill(pass.floor(record.lsn));
                let mut ck = self.checkpointer.lock();
                self.write_checkpoint(&mut ck, redo_from, list.all(), pass.page_count, DbState::Dirty)?;
                stats.flushes += 1;
            }
            stats.records += 1;
            stats.log_bytes += record.end.0 - record.lsn.0;
            end = record.end;
            pass.apply(&self.file, &record, &log)?;
        }
        pass.check_whole(&self.file, end)?;
        stats.to = end;
        stats.applied = pass.applied;
        stats.skipped = pass.skipped;
        stats.abandoned_parts = pass.abandoned_parts();
        stats.part_commits = pass.part_commits;
        stats.written_once = pass.written;
        if end < header.required_lsn {
            return Err(DbError::LogMismatch {
                dir: ldir,
                reason: format!(
                    "the log ends at {end}, but the database file holds changes up to {}: log generations are missing or were replaced",
                    header.required_lsn
                ),
            });
        }
        let (seq, page_count, checkpoints) = (pass.seq, pass.page_count, pass.checkpoints);
        {
            let mut st = self.state.lock();
            st.seq = seq;
            self.snapshots.set_visible(seq);
            self.page_count.store(page_count, Ordering::Release);
            self.visible_pages.store(page_count, Ordering::SeqCst);
            for (no, p) in pass.pages.into_pages() {
                self.cache.publish(no, None, 0, p);
            }
        }
        self.checkpointer.lock().number = checkpoints;
        stats.replay_secs = replay.elapsed().as_secs_f64();
        let checkpoint = std::time::Instant::now();
        self.recovery_checkpoint()?;
        stats.checkpoint_secs = checkpoint.elapsed().as_secs_f64();
        tracing::info!(records = stats.records, applied = stats.applied, from = %stats.from, to = %stats.to, "recovery done");
        Ok(stats)
    }
}

/// The log's leader runs this before writing a batch: pages written in place
/// before their commit are synced before any record naming them is written.
fn written_once_hook(pager: &Pager) -> crate::log::BeforeWrite {
    let unsynced = pager.unsynced_written.clone();
    let file = pager.file.file.clone();
    let path = pager.file.path.clone();
    Arc::new(move || {
        super::commit::sync_if_written(&unsynced, file.as_ref())
            .map_err(|e| crate::log::LogError::io(&path, 0, "sync", e))
    })
}
