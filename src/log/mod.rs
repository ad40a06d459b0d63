//! The write-ahead log: fixed-size, pre-allocated, recycled generation files
//! of checksummed frames, with group commit.
//!
//! Committers append records to a shared buffer under a short lock. The first
//! committer that needs durability while no write is in flight becomes the
//! leader: it takes everything appended so far, writes it, issues one
//! fdatasync for the whole batch, raises the durable watermark and wakes every
//! committer it covers. Any write or sync error stops the log (fail-stop).

mod buffer;
mod error;
mod files;
mod format;
mod leader;
mod lsn;
mod prepare;
mod reader;
mod rebuild;
mod records;
mod recovery;
mod scan;

pub use error::{LogError, Result};
pub use files::{GENERATION_SUFFIX, generation_name};
pub use format::{FrameHeader, GenerationHeader, GenerationState, LogSignature};
pub use lsn::Lsn;
pub use reader::LogReader;
pub use records::Record;
pub use recovery::RecoveryReport;
pub use scan::TornTail;

/// Decoders exposed for fuzzing and the `dump` command.
pub mod codec {
    pub use super::format::{
        DATA_START, Defect, FLAG_SEALED, FLAG_SHADOW, FRAME_HEADER_LEN, FRAME_MAGIC, HEADER_LEN, HEADER_MAGIC,
        RECORD_HEADER_LEN, check_geometry, decode_record_header, frame_checksum,
    };
    pub use super::inspect::{FrameReport, ImageReport, RecordReport, decode_frame_stream};
}
mod inspect;

use buffer::Interior;
use buffer::{AppendBuffer, Batch};
use format::{GenerationState as GState, NO_RECORD};
use leader::{ActiveGen, Counters, LeaderState};
use parking_lot::{Condvar, Mutex, MutexGuard};
use prepare::Preparer;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::vfs::SharedVfs;

/// A batch this large already amortizes its sync; its leader does not gather.
const GATHER_BYTES: usize = 256 << 10;

/// Default frame size: one 4 KiB page.
pub const DEFAULT_FRAME_SIZE: u32 = 4096;
/// Default generation size (see DESIGN.md for the measurement behind it).
pub const DEFAULT_GENERATION_SIZE: u64 = 64 << 20;
/// Default append buffer: the most one batch writes.
pub const DEFAULT_BUFFER_SIZE: usize = 8 << 20;
/// Default largest record.
pub const DEFAULT_MAX_RECORD_SIZE: usize = 4 << 20;

/// How to create or open a log.
#[derive(Debug, Clone)]
pub struct LogOptions {
    /// Frame size in bytes (power of two, 512..=32768). Fixed at creation.
    pub frame_size: u32,
    /// Generation file size in bytes. Fixed at creation.
    pub generation_size: u64,
    /// Bytes of appended records held in memory before appends wait for a
    /// write; lowered to at most four generations.
    pub buffer_size: usize,
    /// Largest record body accepted; lowered to what one generation and the
    /// buffer can hold ([`Log::max_record_size`] tells the value in force).
    pub max_record_size: usize,
    /// If set, a leader waits up to this long for more committers before writing.
    pub max_batch_delay: Option<Duration>,
    /// Epoch stamped into new generations (raised at failover).
    pub epoch: u64,
    /// At creation: the signature to use (random if `None`). At open: the
    /// signature the log must have (any if `None`).
    pub signature: Option<LogSignature>,
    /// Old generation files kept for reuse instead of being deleted.
    pub recycle_pool: usize,
    /// Generations from this LSN's on are read and verified at open; older ones
    /// only have their headers checked.
    pub verify_from: Lsn,
}

impl Default for LogOptions {
    fn default() -> Self {
        LogOptions {
            frame_size: DEFAULT_FRAME_SIZE,
            generation_size: DEFAULT_GENERATION_SIZE,
            buffer_size: DEFAULT_BUFFER_SIZE,
            max_record_size: DEFAULT_MAX_RECORD_SIZE,
            max_batch_delay: None,
            epoch: 0,
            signature: None,
            recycle_pool: 2,
            verify_from: Lsn::ZERO,
        }
    }
}

/// Where an appended record lies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    /// Start of the record.
    pub lsn: Lsn,
    /// Just after its last byte: wait for this to be durable.
    pub end: Lsn,
}

/// Counters for monitoring and benchmarks.
#[derive(Debug, Clone, Default)]
pub struct LogStats {
    /// Write batches made durable.
    pub batches: u64,
    /// fdatasync calls on generation files by the commit path.
    pub syncs: u64,
    /// Bytes written to generation files by the commit path.
    pub bytes_written: u64,
    /// Records appended.
    pub records: u64,
    /// Record body bytes appended.
    pub record_bytes: u64,
    /// Generation switches.
    pub generation_switches: u64,
    /// Switches that had to prepare the next file on the commit path.
    pub preparation_stalls: u64,
    /// Frames of large records written by their committers, off the leader's path.
    pub interior_frames: u64,
    /// The durable watermark.
    pub durable: Lsn,
    /// The end of the last appended record.
    pub end: Lsn,
}

struct Shared {
    buffer: AppendBuffer,
    durable: Lsn,
    leader_active: bool,
    failed: Option<Arc<LogError>>,
    /// Records in the last batch: how many committers to expect again.
    last_batch_records: usize,
    /// How long the last batch took to write and sync.
    last_batch_time: Duration,
    /// A leader is gathering until this many records are pending (0: not gathering).
    gather_target: usize,
    /// Where committers may write interior frames of large records.
    active: Option<ActiveGen>,
    /// Parity of the batch being filled; interior writes count against it.
    epoch: usize,
    /// Interior writes in progress, per batch parity.
    eager_pending: [usize; 2],
    /// Chain contributions of finished interior writes, per batch parity.
    eager_chain: [u32; 2],
}

struct Inner {
    vfs: SharedVfs,
    dir: PathBuf,
    signature: LogSignature,
    frame_size: u32,
    opts: LogOptions,
    state: Mutex<Shared>,
    /// Waiters for durability, space, or the end of a batch.
    cv: Condvar,
    /// Wakes a gathering leader when enough records are pending.
    gather_cv: Condvar,
    leader: Mutex<LeaderState>,
    preparer: Arc<Preparer>,
    counters: Arc<Counters>,
    first_generation: AtomicU32,
}

/// An open write-ahead log.
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

/// Fits the buffer and the record limit to the geometry: both options are
/// upper bounds, lowered to what one generation and one batch can hold.
fn fit_options(mut opts: LogOptions, frame_size: u32, generation_size: u64) -> Result<(LogOptions, u32)> {
    let frames = format::check_geometry(frame_size, generation_size).map_err(|e| LogError::InvalidOptions(e.into()))?;
    let fs = frame_size as usize;
    let four_generations = usize::try_from(generation_size.saturating_mul(4)).unwrap_or(usize::MAX);
    opts.buffer_size = opts.buffer_size.min(four_generations).max(4 * fs);
    let room = AppendBuffer::generation_capacity(frame_size, frames).min(opts.buffer_size - 2 * fs);
    opts.max_record_size = opts.max_record_size.min(room - format::RECORD_HEADER_LEN);
    Ok((opts, frames))
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
            counters: counters.clone(),
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
                }),
                cv: Condvar::new(),
                gather_cv: Condvar::new(),
                leader: Mutex::new(leader),
                preparer,
                counters,
                first_generation: AtomicU32::new(rec.report.first_generation),
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
                inner.lead(&mut st);
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
        let inner = &self.inner;
        let mut st = inner.state.lock();
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
            if st.leader_active {
                inner.cv.wait(&mut st);
            } else {
                inner.lead(&mut st);
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

/// Interior frames of one record, for its committer to write.
struct InteriorJob {
    interior: buffer::Interior,
    active: ActiveGen,
    epoch: usize,
    frontier: u32,
}

/// Interior frames written per call.
const INTERIOR_CHUNK_FRAMES: usize = 512;

impl Inner {
    /// Writes the interior frames of a large record from the committer's own
    /// thread, so that copying them into the page cache overlaps the leader's
    /// sync instead of adding to it. The leader of the batch that holds the
    /// record waits for these writes before its sync. No sync here.
    fn write_interior(&self, job: &InteriorJob, data: &[u8]) -> Result<()> {
        let fs = self.frame_size as usize;
        let cap = fs - format::FRAME_HEADER_LEN;
        let Interior {
            generation,
            first_index,
            frames,
            data_from,
        } = job.interior;
        let mut chain = 0u32;
        let mut result = Ok(());
        let hl = format::FRAME_HEADER_LEN;
        let mut headers = vec![0u8; INTERIOR_CHUNK_FRAMES.min(frames as usize) * hl];
        let mut done = 0usize;
        while done < frames as usize && result.is_ok() {
            let n = INTERIOR_CHUNK_FRAMES.min(frames as usize - done);
            // Each frame is its header and a slice of the record: no copy of the body.
            for (j, head) in headers[..n * hl].chunks_exact_mut(hl).enumerate() {
                let index = first_index + (done + j) as u32;
                let from = data_from + (done + j) * cap;
                let payload_crc = crc32c::crc32c(&data[from..from + cap]);
                let mut header = FrameHeader {
                    crc: 0,
                    salt: job.active.salt,
                    lsn: Lsn::new(generation, index * self.frame_size),
                    shadow_seq: 0,
                    used: cap as u16,
                    first_record: NO_RECORD,
                    flags: 0,
                    batch_start: job.frontier,
                };
                header.seal_with_payload_crc(head, payload_crc);
                chain = format::chain_add(chain, index, header.crc);
            }
            let slices: Vec<std::io::IoSlice<'_>> = headers[..n * hl]
                .chunks_exact(hl)
                .enumerate()
                .flat_map(|(j, head)| {
                    let from = data_from + (done + j) * cap;
                    [
                        std::io::IoSlice::new(head),
                        std::io::IoSlice::new(&data[from..from + cap]),
                    ]
                })
                .collect();
            let offset = (first_index as usize + done) as u64 * fs as u64;
            result = job
                .active
                .file
                .write_vectored_at(&slices, offset)
                .map_err(|e| LogError::io(&job.active.path, offset, "write", e));
            done += n;
        }
        self.counters
            .bytes_written
            .fetch_add((done * fs) as u64, Ordering::Relaxed);
        self.counters.interior_frames.fetch_add(done as u64, Ordering::Relaxed);
        let mut st = self.state.lock();
        st.eager_chain[job.epoch] = st.eager_chain[job.epoch].wrapping_add(chain);
        st.eager_pending[job.epoch] -= 1;
        if let Err(e) = result {
            tracing::error!(error = %e, "log write failed; the log is stopped");
            let cause = Arc::new(e);
            st.failed.get_or_insert(cause.clone());
            self.cv.notify_all();
            return Err(LogError::Stopped { cause });
        }
        self.cv.notify_all();
        Ok(())
    }

    /// Before taking a batch, waits briefly for the committers of the last
    /// batch to append again: they were released a moment ago and are on
    /// their way. A lone committer never waits (its last batch held one
    /// record). The wait is capped at half the last batch's write time and
    /// ends early once as many records are pending as the last batch held, or
    /// the buffer is half full. `max_batch_delay` replaces this with a fixed wait.
    fn gather(&self, st: &mut MutexGuard<'_, Shared>) {
        if let Some(delay) = self.opts.max_batch_delay {
            self.gather_cv.wait_for(st, delay);
            return;
        }
        let target = st.last_batch_records;
        if target <= 1 || st.buffer.pending_records >= target || st.buffer.pending_bytes >= GATHER_BYTES {
            return;
        }
        let deadline = Instant::now() + (st.last_batch_time / 2).min(Duration::from_millis(2));
        st.gather_target = target;
        while st.buffer.pending_records < target
            && st.buffer.pending_bytes < GATHER_BYTES.min(self.opts.buffer_size / 2)
            && !self.gather_cv.wait_until(st, deadline).timed_out()
        {}
        st.gather_target = 0;
    }

    /// Runs one group-commit batch as leader. Called with the state locked and
    /// no leader active; returns with the state locked.
    fn lead(&self, st: &mut MutexGuard<'_, Shared>) {
        st.leader_active = true;
        self.gather(st);
        let mut batch: Batch = st.buffer.take_batch();
        let records = batch.records;
        let epoch = st.epoch;
        st.epoch ^= 1;
        self.cv.notify_all();
        // The interior frames of this batch's records must be written before its sync.
        while st.eager_pending[epoch] > 0 {
            self.cv.wait(st);
        }
        batch.eager_chain = std::mem::take(&mut st.eager_chain[epoch]);
        if st.failed.is_some() {
            st.leader_active = false;
            self.cv.notify_all();
            return;
        }
        let started = Instant::now();
        let result = MutexGuard::unlocked(st, || {
            let mut leader = self.leader.lock();
            leader.write_batch(&mut batch).map(|end| (end, leader.active()))
        });
        st.buffer.recycle(batch);
        st.last_batch_time = started.elapsed();
        st.last_batch_records = records;
        st.leader_active = false;
        match result {
            Ok((end, active)) => {
                st.durable = st.durable.max(end);
                st.active = active;
            }
            Err(e) => {
                tracing::error!(error = %e, "log write failed; the log is stopped");
                st.failed = Some(Arc::new(e));
            }
        }
        self.cv.notify_all();
    }
}
