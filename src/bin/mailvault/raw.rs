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
    /// Time spent in each phase.
    pub seconds_per_phase: f64,
}

/// Writes counted over some time.
#[derive(Debug, Clone, Copy, Default)]
pub struct Ops {
    count: u64,
    elapsed: Duration,
}

impl Ops {
    fn rate(&self) -> f64 {
        self.count as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    fn add(&mut self, other: Ops) {
        self.count += other.count;
        self.elapsed += other.elapsed;
    }
}

/// The two scratch files, measured in slices between the log's rounds so that
/// the disk's drift from minute to minute hits both sides of the ratio alike.
/// Without the sequential file, only the fsync phase runs.
pub struct RawDisk {
    fsync: Scratch,
    seq: Option<Scratch>,
    fsync_total: Ops,
    seq_total: Ops,
}

impl RawDisk {
    /// Creates and pre-allocates both scratch files (hidden, removed on drop).
    pub fn new(dir: &Path, write_size: usize) -> Result<Self> {
        Self::with_phases(dir, write_size, true)
    }

    /// Only the fsync phase: its scratch file alone.
    pub fn fsync_only(dir: &Path, write_size: usize) -> Result<Self> {
        Self::with_phases(dir, write_size, false)
    }

    fn with_phases(dir: &Path, write_size: usize, sequential: bool) -> Result<Self> {
        let fsync_len = FSYNC_FILE.max(2 * write_size as u64) / write_size as u64 * write_size as u64;
        let seq = match sequential {
            true => Some(Scratch::new(dir, SEQ_FILE, SEQ_WRITE)?),
            false => None,
        };
        Ok(RawDisk {
            fsync: Scratch::new(dir, fsync_len, write_size)?,
            seq,
            fsync_total: Ops::default(),
            seq_total: Ops::default(),
        })
    }

    /// Runs both phases for `phase` each; returns this round's figures.
    pub fn round(&mut self, phase: Duration) -> Result<RawFloor> {
        let fsync = self.fsync.overwrite_for(phase)?;
        let seq = match &mut self.seq {
            Some(seq) => seq.overwrite_for(phase)?,
            None => Ops::default(),
        };
        self.fsync_total.add(fsync);
        self.seq_total.add(seq);
        Ok(self.floor(fsync, seq))
    }

    /// The figures over every round so far.
    pub fn total(&self) -> RawFloor {
        self.floor(self.fsync_total, self.seq_total)
    }

    fn floor(&self, fsync: Ops, seq: Ops) -> RawFloor {
        RawFloor {
            fsyncs_per_sec: fsync.rate(),
            fsync_write_bytes: self.fsync.buf.len(),
            seq_mb_per_sec: seq.rate() * SEQ_WRITE as f64 / 1e6,
            seq_write_bytes: SEQ_WRITE,
            seconds_per_phase: fsync.elapsed.as_secs_f64(),
        }
    }

    /// Removes the scratch files, reporting an error (drop would ignore it).
    pub fn close(self) -> Result<()> {
        for scratch in std::iter::once(self.fsync).chain(self.seq) {
            let path = scratch.file.path().to_path_buf();
            scratch
                .file
                .close()
                .context(|| format!("removing {}", path.display()))?;
        }
        Ok(())
    }
}

/// A pre-allocated file overwritten front to back, wrapping around.
struct Scratch {
    file: tempfile::NamedTempFile,
    len: u64,
    offset: u64,
    written: u64,
    buf: Vec<u8>,
}

impl Scratch {
    /// Creates the file and fills it with synced zeros.
    fn new(dir: &Path, len: u64, write_size: usize) -> Result<Self> {
        let file = tempfile::Builder::new()
            .prefix(".mailvault-raw-")
            .tempfile_in(dir)
            .context(|| format!("creating a scratch file in {}", dir.display()))?;
        fill_file(file.as_file(), len, &vec![0u8; SEQ_WRITE])
            .context(|| format!("pre-allocating {len} bytes in {}", file.path().display()))?;
        let mut buf = vec![0u8; write_size];
        fill_pattern(&mut buf);
        Ok(Scratch {
            file,
            len,
            offset: 0,
            written: 0,
            buf,
        })
    }

    /// For `phase`, one pwrite + fdatasync after another.
    fn overwrite_for(&mut self, phase: Duration) -> Result<Ops> {
        let step = self.buf.len() as u64;
        let (path, file) = (self.file.path(), self.file.as_file());
        let mut count = 0u64;
        let start = Instant::now();
        while start.elapsed() < phase {
            if self.offset + step > self.len {
                self.offset = 0;
            }
            self.buf[..8].copy_from_slice(&self.written.to_le_bytes());
            file.write_all_at(&self.buf, self.offset)
                .context(|| format!("write at offset {} of {}", self.offset, path.display()))?;
            file.sync_data()
                .context(|| format!("fdatasync of {}", path.display()))?;
            self.offset += step;
            self.written += 1;
            count += 1;
        }
        Ok(Ops {
            count,
            elapsed: start.elapsed(),
        })
    }
}

/// Appends `len` bytes, `chunk` after `chunk`, and syncs.
fn fill_file(mut file: &File, len: u64, chunk: &[u8]) -> std::io::Result<()> {
    let mut left = len;
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        file.write_all(&chunk[..n])?;
        left -= n as u64;
    }
    file.sync_all()
}

/// Makes `file` durable, then drops its pages from the OS page cache, so that
/// the next read of it comes from the disk.
pub fn evict(file: &File) -> std::io::Result<()> {
    file.sync_all()?;
    rustix::fs::fadvise(file, 0, None, rustix::fs::Advice::DontNeed)?;
    Ok(())
}

/// The disk's sequential read bandwidth, measured as recovery meets its log:
/// a file of `len` bytes (at least 1 MiB) is written, synced and dropped from
/// the page cache, then read back front to back with 1 MiB reads. MB (10^6
/// bytes) per second; the file is removed.
pub fn cold_read_mb_per_sec(dir: &Path, len: u64) -> Result<f64> {
    let len = len.max(SEQ_WRITE as u64);
    let file = tempfile::Builder::new()
        .prefix(".mailvault-raw-")
        .tempfile_in(dir)
        .context(|| format!("creating a scratch file in {}", dir.display()))?;
    let path = file.path().to_path_buf();
    let mut buf = vec![0u8; SEQ_WRITE];
    fill_pattern(&mut buf);
    fill_file(file.as_file(), len, &buf).context(|| format!("writing {len} bytes to {}", path.display()))?;
    evict(file.as_file()).context(|| format!("dropping {} from the page cache", path.display()))?;
    let start = Instant::now();
    let mut offset = 0u64;
    while offset < len {
        let n = (len - offset).min(SEQ_WRITE as u64) as usize;
        file.as_file()
            .read_exact_at(&mut buf[..n], offset)
            .context(|| format!("read at offset {offset} of {}", path.display()))?;
        offset += n as u64;
    }
    let elapsed = start.elapsed().as_secs_f64();
    file.close().context(|| format!("removing {}", path.display()))?;
    Ok(len as f64 / 1e6 / elapsed.max(1e-9))
}

/// Non-zero bytes, so that no layer can treat the writes as holes.
fn fill_pattern(buf: &mut [u8]) {
    for (i, b) in buf.iter_mut().enumerate() {
        *b = (i as u8).wrapping_mul(31).wrapping_add(7);
    }
}
