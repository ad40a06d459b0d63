//! Group commit: the state committers share, the leader's batch, gathering,
//! and the interior frames of large records that committers write themselves.

use super::buffer::{AppendBuffer, Batch, Interior};
use super::format::{self, FrameHeader, NO_RECORD};
use super::leader::{ActiveGen, Counters, LeaderState};
use super::prepare::Preparer;
use super::{LogError, LogOptions, LogSignature, Lsn, Result};
use crate::vfs::SharedVfs;
use parking_lot::{Condvar, Mutex, MutexGuard};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Whether a leader first waits for the last batch's committers to append again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Gather {
    Yes,
    /// The caller batched already (a writer thread's batch): sync what is there.
    No,
}

/// A batch this large already amortizes its sync; its leader does not gather.
const GATHER_BYTES: usize = 256 << 10;

pub(super) struct Shared {
    pub(super) buffer: AppendBuffer,
    pub(super) durable: Lsn,
    pub(super) leader_active: bool,
    pub(super) failed: Option<Arc<LogError>>,
    /// Records in the last batch: how many committers to expect again.
    pub(super) last_batch_records: usize,
    /// How long the last batch took to write and sync.
    pub(super) last_batch_time: Duration,
    /// A leader is gathering until this many records are pending (0: not gathering).
    pub(super) gather_target: usize,
    /// Where committers may write interior frames of large records.
    pub(super) active: Option<ActiveGen>,
    /// Parity of the batch being filled; interior writes count against it.
    pub(super) epoch: usize,
    /// Interior writes in progress, per batch parity.
    pub(super) eager_pending: [usize; 2],
    /// Chain contributions of finished interior writes, per batch parity.
    pub(super) eager_chain: [u32; 2],
    /// Committers parked until the watermark reaches their end, woken one by
    /// one: a batch wakes the committers it covers and one to lead the next
    /// batch, not every waiter.
    pub(super) sleepers: Vec<(Lsn, std::thread::Thread)>,
    /// Reused list of threads to unpark once the state is unlocked.
    pub(super) wake_list: Vec<std::thread::Thread>,
}

pub(super) struct Inner {
    pub(super) vfs: SharedVfs,
    pub(super) dir: PathBuf,
    pub(super) signature: LogSignature,
    pub(super) frame_size: u32,
    pub(super) opts: LogOptions,
    pub(super) state: Mutex<Shared>,
    /// Waiters for durability, space, or the end of a batch.
    pub(super) cv: Condvar,
    /// Wakes a gathering leader when enough records are pending.
    pub(super) gather_cv: Condvar,
    pub(super) leader: Mutex<LeaderState>,
    pub(super) preparer: Arc<Preparer>,
    pub(super) counters: Arc<Counters>,
    pub(super) first_generation: AtomicU32,
    /// Batches ended (written or failed): what a yielding committer watches.
    pub(super) batches_ended: AtomicU64,
}

/// Interior frames of one record, for its committer to write.
pub(super) struct InteriorJob {
    pub(super) interior: Interior,
    pub(super) active: ActiveGen,
    pub(super) epoch: usize,
    pub(super) frontier: u32,
}

/// Longest one round of yielding before a committer parks.
const MAX_YIELD: Duration = Duration::from_millis(1);

/// Interior frames written per call.
const INTERIOR_CHUNK_FRAMES: usize = 512;

impl Inner {
    /// Writes the interior frames of a large record from the committer's own
    /// thread, so that copying them into the page cache overlaps the leader's
    /// sync instead of adding to it. The leader of the batch that holds the
    /// record waits for these writes before its sync. No sync here.
    pub(super) fn write_interior(&self, job: &InteriorJob, data: &[u8]) -> Result<()> {
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
            // Parked committers may be waiting for a leader that will now never
            // come: a committer woken to lead sees the failure and just returns.
            self.wake_sleepers(&mut st);
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
    pub(super) fn lead(&self, st: &mut MutexGuard<'_, Shared>, gather: Gather) {
        st.leader_active = true;
        if gather == Gather::Yes {
            self.gather(st);
        }
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
            self.batches_ended.fetch_add(1, Ordering::Release);
            self.wake_sleepers(st);
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
        self.batches_ended.fetch_add(1, Ordering::Release);
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
        self.wake_sleepers(st);
        self.cv.notify_all();
    }

    /// Yields the CPU until the batch in flight ends, for at most twice the
    /// last batch's write time and never over `MAX_YIELD` (a slow disk would
    /// otherwise turn waiting into burning CPU). Called with the state locked and a leader
    /// active; returns with it locked. A yielding thread stays runnable, so
    /// the end of the batch reaches it without a wake-up.
    pub(super) fn yield_through_batch(&self, st: &mut MutexGuard<'_, Shared>) {
        let seen = self.batches_ended.load(Ordering::Acquire);
        let limit = (st.last_batch_time * 2).min(MAX_YIELD);
        MutexGuard::unlocked(st, || {
            let started = Instant::now();
            while self.batches_ended.load(Ordering::Acquire) == seen && started.elapsed() < limit {
                std::thread::yield_now();
            }
        });
    }

    /// Wakes the committers the watermark now covers (all of them if the log
    /// failed), and one more to lead the next batch if any are left: that one
    /// first. The unparks happen with the state unlocked, so committers of the
    /// next batch append while the leader wakes the last one's.
    fn wake_sleepers(&self, st: &mut MutexGuard<'_, Shared>) {
        let (durable, failed) = (st.durable, st.failed.is_some());
        let mut wake = std::mem::take(&mut st.wake_list);
        if !st.leader_active
            && let Some(pos) = st.sleepers.iter().rposition(|(end, _)| failed || *end > durable)
        {
            wake.push(st.sleepers.swap_remove(pos).1);
        }
        st.sleepers.retain(|(end, thread)| {
            let done = failed || *end <= durable;
            if done {
                wake.push(thread.clone());
            }
            !done
        });
        if wake.is_empty() {
            st.wake_list = wake;
            return;
        }
        MutexGuard::unlocked(st, || {
            for thread in wake.drain(..) {
                thread.unpark();
            }
        });
        st.wake_list = wake;
    }
}
