//! The write-ahead log: fixed-size, pre-allocated, recycled generation files
//! of checksummed frames, with group commit.
//!
//! Committers append records to a shared buffer under a short lock. The first
//! committer that needs durability while no write is in flight becomes the
//! leader: it takes everything appended so far, writes it, issues one
//! fdatasync for the whole batch, raises the durable watermark and wakes every
//! committer it covers. Any write or sync error stops the log (fail-stop).

mod buffer;
mod commit;
mod error;
mod files;
mod format;
mod leader;
mod lsn;
mod options;
mod prepare;
mod reader;
mod rebuild;
mod records;
mod recovery;
mod replica_pool;
mod scan;
mod ship;

pub use error::{LogError, Result};
pub use files::{GENERATION_SUFFIX, generation_name, parse_generation_name};
pub use format::{FrameHeader, GenerationHeader, GenerationState, LogSignature};
pub(crate) use leader::now_us;
pub use lsn::Lsn;
pub use options::{
    Appended, DEFAULT_BUFFER_SIZE, DEFAULT_FRAME_SIZE, DEFAULT_GENERATION_SIZE, DEFAULT_MAX_RECORD_SIZE,
    DEFAULT_YIELD_ROUNDS, LogOptions, LogStats,
};
pub use reader::LogReader;
pub use records::Record;
pub use recovery::RecoveryReport;
pub use replica_pool::{REPLICA_POOL, retire_generations};
pub use scan::TornTail;
pub use ship::{FrameSource, LogReplica, ShipChunk};

/// The frame size of generation `generation` in `dir`, from its header.
pub fn frame_size_of(vfs: &dyn crate::vfs::Vfs, dir: &std::path::Path, generation: u32) -> Result<u32> {
    Ok(files::GenFile::open(vfs, dir, generation)?.header.frame_size)
}

/// Decoders exposed for fuzzing and the `dump` command.
pub mod codec {
    pub use super::format::{
        DATA_START, Defect, FLAG_SEALED, FLAG_SHADOW, FRAME_HEADER_LEN, FRAME_MAGIC, HEADER_LEN, HEADER_MAGIC,
        RECORD_HEADER_LEN, check_geometry, decode_record_header, frame_checksum,
    };
    pub use super::inspect::{FrameReport, ImageReport, RecordReport, decode_frame_stream};
}
mod inspect;

use buffer::AppendBuffer;
use commit::{Gather, Inner, InteriorJob, Shared};
use format::{GenerationState as GState, NO_RECORD};
use leader::{Counters, LeaderState};
use options::fit_options;
use parking_lot::{Condvar, Mutex, MutexGuard};
use prepare::Preparer;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use crate::vfs::SharedVfs;

/// What the leader runs before writing a batch (`Log::set_before_write`).
pub type BeforeWrite = Arc<dyn Fn() -> Result<()> + Send + Sync>;

/// Longest a parked committer sleeps before it looks at the watermark itself.
const SLEEPER_TIMEOUT: Duration = Duration::from_millis(50);

/// An open write-ahead log.
///
/// ```
/// use mailvault::log::{Log, LogOptions, Lsn};
/// use mailvault::vfs::SimVfs;
///
/// let disk = SimVfs::new(7);
/// let log = Log::create(disk.clone(), "/store/log", LogOptions::default())?;
/// let first = log.commit(b"deliver message 1")?;
/// log.commit(b"deliver message 2")?;
/// log.close()?;
///
/// // A power cut loses nothing that was committed.
/// disk.crash();
/// disk.restart();
/// let log = Log::open(disk, "/store/log", LogOptions::default())?;
/// let bodies: Vec<Vec<u8>> = log.reader(first.lsn)?.map(|r| r.map(|r| r.data)).collect::<Result<_, _>>()?;
/// assert_eq!(bodies, [b"deliver message 1".to_vec(), b"deliver message 2".to_vec()]);
/// # Ok::<(), mailvault::log::LogError>(())
/// ```
pub struct Log {
    inner: Arc<Inner>,
    preparer_thread: Option<std::thread::JoinHandle<()>>,
    report: RecoveryReport,
}

impl std::fmt::Debug for Log {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Log")
            .field("dir", &self.inner.dir)
            .finish_non_exhaustive()
    }
}

impl Log {
    /// Creates a new log in `dir`, which must be empty or absent.
    pub fn create(vfs: SharedVfs, dir: impl AsRef<Path>, opts: LogOptions) -> Result<Log> {
        let dir = dir.as_ref();
        let (frame_size, generation_size) = (opts.frame_size, opts.generation_size);
        let (opts, _) = fit_options(opts, frame_size, generation_size)?;
        vfs.create_dir_all(dir)
            .map_err(|e| LogError::io(dir, 0, "create directory", e))?;
        let names = vfs.list(dir).map_err(|e| LogError::io(dir, 0, "list", e))?;
        if !names.is_empty() {
            return Err(LogError::AlreadyExists { dir: dir.to_path_buf() });
        }
        let signature = match opts.signature {
            Some(s) => s,
            None => LogSignature::random().map_err(|e| LogError::io(dir, 0, "getrandom", e))?,
        };
        let preparer = Preparer::new(
            vfs.clone(),
            dir.to_path_buf(),
            opts.frame_size,
            opts.generation_size,
            signature,
            0,
            vec![],
        );
        let (prepared, _) = preparer.prepare(1)?;
        preparer.zero_fill_now(&prepared)?;
        let header = GenerationHeader {
            state: GState::Active,
            frame_size: opts.frame_size,
            generation: 1,
            generation_size: opts.generation_size,
            signature,
            epoch: opts.epoch,
            created_us: leader::now_us(),
            nonce: leader::random_u64()?,
            prev_created_us: 0,
            prev_salt: 0,
            prev_chain: 0,
            max_write_span: (2 * opts.buffer_size + 4 * opts.frame_size as usize) as u64,
        };
        let mut frame = vec![0u8; opts.frame_size as usize];
        header.encode(&mut frame);
        prepared
            .file
            .write_at(&frame, 0)
            .map_err(|e| LogError::io(&prepared.path, 0, "write", e))?;
        prepared
            .file
            .sync_data()
            .map_err(|e| LogError::io(&prepared.path, 0, "sync", e))?;
        let mut opts = opts;
        opts.signature = Some(signature);
        Log::open(vfs, dir, opts)
    }

    /// Opens the log in `dir`, running recovery: the torn tail of the last
    /// generation, if any, is cut off and reported; anything else invalid is an error.
    pub fn open(vfs: SharedVfs, dir: impl AsRef<Path>, opts: LogOptions) -> Result<Log> {
        let dir = dir.as_ref().to_path_buf();
        let rec = recovery::recover(vfs.as_ref(), &dir, opts.signature, opts.verify_from, false, &mut |_| {
            Ok(())
        })?;
        let last = rec.last;
        let header = last.header;
        let (opts, frames) = fit_options(opts, header.frame_size, header.generation_size)?;
        if let Some((file, torn)) = &rec.report.torn_tail {
            tracing::warn!(file = %file.display(), offset = torn.offset, reason = %torn.reason, "cut off the torn tail of the log");
        }
        let counters = Arc::new(Counters::default());
        let preparer = Preparer::new(
            vfs.clone(),
            dir.clone(),
            header.frame_size,
            header.generation_size,
            header.signature,
            opts.recycle_pool,
            rec.report.recycled.clone(),
        );
        let mut leader = LeaderState {
            current: last.clone(),
            current_sealed: rec.last_scan.sealed,
            // For a sealed generation this is its full chain, which the next header names.
            chain: rec.last_scan.chain,
            shadow_seq: rec.last_scan.max_shadow_seq,
            shadow_slot: None,
            epoch: opts.epoch.max(header.epoch),
            max_write_span: (2 * opts.buffer_size + 4 * header.frame_size as usize) as u64,
            preparer: preparer.clone(),
            fill_allowed: 0,
            counters: counters.clone(),
            before_write: None,
        };
        for g in &rec.report.leftover_rebuilds {
            let path = rebuild::rebuild_path(&dir, *g);
            vfs.remove(&path).map_err(|e| LogError::io(&path, 0, "remove", e))?;
        }
        let rebuilt = rebuild::rebuild_last_generation(vfs.as_ref(), &dir, &last, &rec.last_scan)?;
        leader.current = rebuilt.file.clone();
        leader.shadow_slot = rebuilt.shadow_slot;
        leader.shadow_seq = rebuilt.shadow_seq;
        let buffer = match &rec.last_scan.resume {
            None => AppendBuffer::new(
                header.frame_size,
                frames,
                header.generation + 1,
                format::DATA_START,
                &[],
                NO_RECORD,
                rec.last_scan.end,
            ),
            Some(resume) => {
                if resume.index >= frames {
                    return Err(LogError::corrupt(
                        &last.path,
                        last.frame_offset(frames - 1),
                        "generation is full but not sealed",
                    ));
                }
                leader.chain = resume.chain;
                AppendBuffer::new(
                    header.frame_size,
                    frames,
                    header.generation,
                    resume.index,
                    &resume.content,
                    resume.first_record,
                    rec.last_scan.end,
                )
            }
        };
        let durable = buffer.end;
        let active = leader.active();
        preparer.request(header.generation + 1);
        leader.allow_fill_past_half(durable);
        let thread = preparer.spawn()?;
        let signature = header.signature;
        Ok(Log {
            inner: Arc::new(Inner {
                vfs,
                dir,
                signature,
                frame_size: header.frame_size,
                opts,
                state: Mutex::new(Shared {
                    buffer,
                    durable,
                    leader_active: false,
                    failed: None,
                    last_batch_records: 0,
                    last_batch_time: Duration::ZERO,
                    gather_target: 0,
                    active,
                    epoch: 0,
                    eager_pending: [0; 2],
                    eager_chain: [0; 2],
                    sleepers: Vec::new(),
                    wake_list: Vec::new(),
                }),
                cv: Condvar::new(),
                gather_cv: Condvar::new(),
                leader: Mutex::new(leader),
                preparer,
                counters,
                first_generation: AtomicU32::new(rec.report.first_generation),
                batches_ended: std::sync::atomic::AtomicU64::new(0),
            }),
            preparer_thread: Some(thread),
            report: rec.report,
        })
    }

    /// Verifies the log in `dir` without writing anything: every header, the
    /// generation chain, every frame and record checksum. Each record is passed
    /// to `visit`. A torn tail is reported, not an error.
    pub fn verify(
        vfs: &dyn crate::vfs::Vfs,
        dir: impl AsRef<Path>,
        expected: Option<LogSignature>,
        visit: &mut dyn FnMut(Record) -> Result<()>,
    ) -> Result<RecoveryReport> {
        Ok(recovery::recover(vfs, dir.as_ref(), expected, Lsn::ZERO, true, visit)?.report)
    }

    /// What recovery found when this log was opened.
    pub fn recovery_report(&self) -> &RecoveryReport {
        &self.report
    }

    /// The largest record this log accepts.
    pub fn max_record_size(&self) -> usize {
        self.inner.opts.max_record_size
    }

    /// Runs `hook` in every batch after the batch is taken and before any of
    /// it is written: what its records depend on (pages written in place
    /// before their commit) is made durable first. An error stops the log.
    pub fn set_before_write(&self, hook: BeforeWrite) {
        self.inner.leader.lock().before_write = Some(hook);
    }

    /// The log's signature.
    pub fn signature(&self) -> LogSignature {
        self.inner.signature
    }

    /// The log directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// Appends a record to the buffer; it is durable once [`Log::wait_durable`]
    /// returns for its `end`. The record is whole in the buffer or not at all.
    pub fn append(&self, data: &[u8]) -> Result<Appended> {
        let inner = &self.inner;
        if data.len() > inner.opts.max_record_size {
            return Err(LogError::RecordTooLarge {
                len: data.len(),
                max: inner.opts.max_record_size,
            });
        }
        let fs = inner.frame_size as usize;
        // Checksum the body before taking the lock that every committer needs.
        let data_crc = crc32c::crc32c(data);
        let mut st = inner.state.lock();
        loop {
            if let Some(cause) = &st.failed {
                return Err(LogError::Stopped { cause: cause.clone() });
            }
            if st.buffer.pending_bytes == 0 || st.buffer.pending_bytes + data.len() + 2 * fs <= inner.opts.buffer_size {
                break;
            }
            if st.leader_active {
                if st.gather_target > 0 {
                    inner.gather_cv.notify_one();
                }
                inner.cv.wait(&mut st);
            } else {
                inner.lead(&mut st, Gather::Yes);
            }
        }
        let eager_generation = st.active.as_ref().map(|a| a.generation);
        let placed = st.buffer.append(data, data_crc, eager_generation);
        if st.gather_target > 0 && st.buffer.pending_records >= st.gather_target {
            inner.gather_cv.notify_one();
        }
        let active = placed.interior.and_then(|_| st.active.clone());
        let job = match (placed.interior, active) {
            (Some(interior), Some(active)) => {
                let epoch = st.epoch;
                st.eager_pending[epoch] += 1;
                // Frames before the one holding the last durable byte are durable
                // at home (that frame itself may live only in a shadow slot).
                let frontier = if st.durable.generation() == interior.generation {
                    (st.durable.offset().saturating_sub(1) / inner.frame_size).max(format::DATA_START)
                } else {
                    format::DATA_START
                };
                Some(InteriorJob {
                    interior,
                    active,
                    epoch,
                    frontier,
                })
            }
            _ => None,
        };
        drop(st);
        if let Some(job) = job {
            inner.write_interior(&job, data)?;
        }
        let (lsn, end) = (placed.lsn, placed.end);
        inner.counters.records.fetch_add(1, Ordering::Relaxed);
        inner
            .counters
            .record_bytes
            .fetch_add(data.len() as u64, Ordering::Relaxed);
        Ok(Appended { lsn, end })
    }

    /// Waits until everything up to `end` is durable, leading a group-commit
    /// batch if no write is in flight.
    pub fn wait_durable(&self, end: Lsn) -> Result<()> {
        self.wait_durable_with(end, Gather::Yes)
    }

    /// [`Log::wait_durable`] for a caller that has batched commits already
    /// (a writer thread): if it leads, it syncs what is pending at once,
    /// without waiting for more committers to append.
    pub fn wait_durable_batched(&self, end: Lsn) -> Result<()> {
        self.wait_durable_with(end, Gather::No)
    }

    fn wait_durable_with(&self, end: Lsn, gather: Gather) -> Result<()> {
        let inner = &self.inner;
        let mut st = inner.state.lock();
        let mut yields = inner.opts.yield_rounds;
        loop {
            if st.durable >= end {
                return Ok(());
            }
            if let Some(cause) = &st.failed {
                return Err(LogError::Stopped { cause: cause.clone() });
            }
            if end > st.buffer.end {
                return Err(LogError::InvalidOptions(format!(
                    "cannot wait for {end}: the log ends at {}",
                    st.buffer.end
                )));
            }
            if st.leader_active && yields > 0 {
                yields -= 1;
                inner.yield_through_batch(&mut st);
            } else if st.leader_active {
                st.sleepers.push((end, std::thread::current()));
                // Woken by the leader that covers `end`, by a failure, or to lead
                // the next batch. The timeout is defence in depth: a missed
                // wake-up costs 50 ms instead of a hang.
                MutexGuard::unlocked(&mut st, || std::thread::park_timeout(SLEEPER_TIMEOUT));
            } else {
                inner.lead(&mut st, gather);
            }
        }
    }

    /// Appends a record and waits until it is durable.
    pub fn commit(&self, data: &[u8]) -> Result<Appended> {
        let appended = self.append(data)?;
        self.wait_durable(appended.end)?;
        Ok(appended)
    }

    /// Makes everything appended so far durable; returns the durable end.
    pub fn flush(&self) -> Result<Lsn> {
        let end = self.inner.state.lock().buffer.end;
        self.wait_durable(end)?;
        Ok(end)
    }

    /// For a clean close: gives back the disk space the log keeps ready for
    /// commits. Everything appended is made durable first; then the prepared
    /// next generation and the recycled files are removed, and the blocks of
    /// the current generation past the frame that holds the end are released
    /// (they read as zeros, as the unused tail of a new generation does).
    /// Opening again rebuilds the last generation whole and prepares spares
    /// in the background. Returns the bytes given back. The log still takes
    /// records after this, preparing each new generation in place.
    pub fn release_spare_space(&self) -> Result<u64> {
        let end = self.flush()?;
        let removed = self.inner.preparer.remove_spares()?;
        let leader = self.inner.leader.lock();
        let current = &leader.current;
        let mut released = u64::from(removed) * current.header.generation_size;
        if !leader.current_sealed && current.header.generation == end.generation() {
            let frame = u64::from(current.header.frame_size);
            let from = (u64::from(end.offset()) / frame + 1) * frame;
            let size = current.frame_offset(current.frames());
            if from < size
                && current
                    .file
                    .release(from, size - from)
                    .map_err(|e| LogError::io(&current.path, from, "release", e))?
            {
                released += size - from;
            }
        }
        Ok(released)
    }

    /// Whether a group-commit batch is being written and synced now: records
    /// appended meanwhile will be taken by the next batch's leader.
    pub fn sync_in_flight(&self) -> bool {
        self.inner.state.lock().leader_active
    }

    /// The durable watermark: every record ending at or before it survives a crash.
    pub fn durable_lsn(&self) -> Lsn {
        self.inner.state.lock().durable
    }

    /// The end of the last appended record.
    pub fn end_lsn(&self) -> Lsn {
        self.inner.state.lock().buffer.end
    }

    /// The oldest generation still in the log.
    pub fn first_generation(&self) -> u32 {
        self.inner.first_generation.load(Ordering::Acquire)
    }

    /// Reads durable records from `from` (see [`LogReader::new`]).
    pub fn reader(&self, from: Lsn) -> Result<LogReader> {
        let limit = self.durable_lsn();
        Ok(
            LogReader::new(self.inner.vfs.clone(), &self.inner.dir, from, limit)?
                .expect_signature(self.inner.signature),
        )
    }

    /// Recycles (or removes) every generation that lies wholly before `lsn`.
    /// Returns how many were retired. The caller guarantees nothing before
    /// `lsn` is needed any more.
    pub fn recycle_before(&self, lsn: Lsn) -> Result<u32> {
        let inner = &self.inner;
        let limit = lsn.generation().min(self.durable_lsn().generation());
        let mut retired = 0;
        loop {
            let first = inner.first_generation.load(Ordering::Acquire);
            if first >= limit {
                return Ok(retired);
            }
            inner.preparer.retire(first)?;
            inner.first_generation.store(first + 1, Ordering::Release);
            retired += 1;
        }
    }

    /// Waits until the background preparation of the next generation file
    /// (creation or recycling, and the zero fill of a new file) is finished.
    /// A benchmark calls it so that this work is charged to the log and does
    /// not overlap a measurement of the raw disk.
    pub fn wait_prepared(&self) {
        self.inner.preparer.wait_idle();
    }

    /// Counters and watermarks.
    pub fn stats(&self) -> LogStats {
        let c = &self.inner.counters;
        let st = self.inner.state.lock();
        LogStats {
            batches: c.batches.load(Ordering::Relaxed),
            syncs: c.syncs.load(Ordering::Relaxed),
            bytes_written: c.bytes_written.load(Ordering::Relaxed),
            records: c.records.load(Ordering::Relaxed),
            record_bytes: c.record_bytes.load(Ordering::Relaxed),
            generation_switches: c.generation_switches.load(Ordering::Relaxed),
            preparation_stalls: c.preparation_stalls.load(Ordering::Relaxed),
            interior_frames: c.interior_frames.load(Ordering::Relaxed),
            durable: st.durable,
            end: st.buffer.end,
        }
    }

    /// Flushes everything and closes the log.
    pub fn close(mut self) -> Result<()> {
        let result = self.flush().map(|_| ());
        self.stop_preparer();
        result
    }

    fn stop_preparer(&mut self) {
        self.inner.preparer.shutdown();
        if let Some(t) = self.preparer_thread.take() {
            // A panic in the preparer thread has nothing left to clean up.
            let _ = t.join();
        }
    }
}

impl Drop for Log {
    fn drop(&mut self) {
        self.stop_preparer();
    }
}
