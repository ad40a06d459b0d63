//! Options of the log, their defaults, and the counters it reports.

use super::buffer::AppendBuffer;
use super::format::{self, LogSignature};
use super::{LogError, Lsn, Result};
use std::time::Duration;

/// Default frame size: one 4 KiB page.
pub const DEFAULT_FRAME_SIZE: u32 = 4096;
/// Default generation size (see DESIGN.md for the measurement behind it).
pub const DEFAULT_GENERATION_SIZE: u64 = 64 << 20;
/// Default append buffer: the most one batch writes.
pub const DEFAULT_BUFFER_SIZE: usize = 8 << 20;
/// Default batches a committer yields through before parking (DESIGN.md,
/// group commit: 2 measured best with 64 committers, 1 and 4 close).
pub const DEFAULT_YIELD_ROUNDS: u32 = 2;
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
    /// buffer can hold ([`crate::log::Log::max_record_size`] tells the value in force).
    pub max_record_size: usize,
    /// If set, a leader waits up to this long for more committers before writing.
    pub max_batch_delay: Option<Duration>,
    /// Batches a committer waits out by yielding the CPU in a loop before it
    /// parks (each round lasts until a batch ends, at most twice the last
    /// batch's write time). Waking a parked thread costs far more than a
    /// yield on a virtual machine; 0 parks at once, saving CPU.
    pub yield_rounds: u32,
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
            yield_rounds: DEFAULT_YIELD_ROUNDS,
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

/// Fits the buffer and the record limit to the geometry: both options are
/// upper bounds, lowered to what one generation and one batch can hold.
pub(super) fn fit_options(mut opts: LogOptions, frame_size: u32, generation_size: u64) -> Result<(LogOptions, u32)> {
    let frames = format::check_geometry(frame_size, generation_size).map_err(|e| LogError::InvalidOptions(e.into()))?;
    let fs = frame_size as usize;
    let four_generations = usize::try_from(generation_size.saturating_mul(4)).unwrap_or(usize::MAX);
    opts.buffer_size = opts.buffer_size.min(four_generations).max(4 * fs);
    let room = AppendBuffer::generation_capacity(frame_size, frames).min(opts.buffer_size - 2 * fs);
    opts.max_record_size = opts.max_record_size.min(room - format::RECORD_HEADER_LEN);
    Ok((opts, frames))
}
