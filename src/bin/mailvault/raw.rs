//! The raw disk floor the log is compared with, measured with `std::fs` in
//! the log's directory: what one thread gets from pwrite + fdatasync when it
//! overwrites blocks that are already allocated and durable (as the log does
//! in its pre-allocated generation files).

use crate::error::{Context, Result};
use serde::Serialize;
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::{Duration, Instant};

/// Size of the file overwritten by the fsync phase.
const FSYNC_FILE: u64 = 64 << 20;
/// Size of the file overwritten by the sequential phase, and its write size.
const SEQ_FILE: u64 = 256 << 20;
const SEQ_WRITE: usize = 1 << 20;

/// What the raw phases measured.
#[derive(Debug, Clone, Serialize)]
pub struct RawFloor {
    /// One thread: pwrite of `fsync_write_bytes` + fdatasync, per second.
    pub fsyncs_per_sec: f64,
    pub fsync_write_bytes: usize,
    /// Sequential 1 MiB pwrites, each followed by fdatasync, in MB (10^6 bytes) per second.
    pub seq_mb_per_sec: f64,
    pub seq_write_bytes: usize,
    /// Duration of each phase.
    pub seconds_per_phase: f64,
}

/// Runs both phases in `dir` for `phase` each. The scratch files are hidden
/// temporary files, removed before returning (also on error).
pub fn measure(dir: &Path, write_size: usize, phase: Duration) -> Result<RawFloor> {
    let mut block = vec![0u8; write_size];
    fill_pattern(&mut block);
    let fsync_len = FSYNC_FILE.max(2 * write_size as u64) / write_size as u64 * write_size as u64;
    let fsync_ops = overwrite_loop(dir, fsync_len, &mut block, phase)?;
    let mut chunk = vec![0u8; SEQ_WRITE];
    fill_pattern(&mut chunk);
    let seq_ops = overwrite_loop(dir, SEQ_FILE, &mut chunk, phase)?;
    Ok(RawFloor {
        fsyncs_per_sec: fsync_ops.rate(),
        fsync_write_bytes: write_size,
        seq_mb_per_sec: seq_ops.rate() * SEQ_WRITE as f64 / 1e6,
        seq_write_bytes: SEQ_WRITE,
        seconds_per_phase: phase.as_secs_f64(),
    })
}

struct Ops {
    count: u64,
    elapsed: Duration,
}

impl Ops {
    fn rate(&self) -> f64 {
        self.count as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Pre-allocates a scratch file of `len` bytes (zeros, synced), then for
/// `phase` overwrites it front to back with `buf`, wrapping around, with one
/// fdatasync per write.
fn overwrite_loop(dir: &Path, len: u64, buf: &mut [u8], phase: Duration) -> Result<Ops> {
    let scratch = tempfile::Builder::new()
        .prefix(".mailvault-raw-")
        .tempfile_in(dir)
        .context(|| format!("creating a scratch file in {}", dir.display()))?;
    let path = scratch.path().to_path_buf();
    let file = scratch.as_file();
    preallocate(file, len).context(|| format!("pre-allocating {len} bytes in {}", path.display()))?;
    let step = buf.len() as u64;
    let mut offset = 0u64;
    let mut count = 0u64;
    let start = Instant::now();
    while start.elapsed() < phase {
        if offset + step > len {
            offset = 0;
        }
        buf[..8].copy_from_slice(&count.to_le_bytes());
        file.write_all_at(buf, offset)
            .context(|| format!("write at offset {offset} of {}", path.display()))?;
        file.sync_data()
            .context(|| format!("fdatasync of {}", path.display()))?;
        offset += step;
        count += 1;
    }
    let elapsed = start.elapsed();
    scratch.close().context(|| format!("removing {}", path.display()))?;
    Ok(Ops { count, elapsed })
}

fn preallocate(mut file: &File, len: u64) -> std::io::Result<()> {
    let zeros = vec![0u8; 1 << 20];
    let mut left = len;
    while left > 0 {
        let n = left.min(zeros.len() as u64) as usize;
        file.write_all(&zeros[..n])?;
        left -= n as u64;
    }
    file.sync_all()
}

/// Non-zero bytes, so that no layer can treat the writes as holes.
fn fill_pattern(buf: &mut [u8]) {
    for (i, b) in buf.iter_mut().enumerate() {
        *b = (i as u8).wrapping_mul(31).wrapping_add(7);
    }
}
