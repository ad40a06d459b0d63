//! The file layer: a small trait over files and directories, so that every
//! persistence path can run on the real OS or on the simulated, fault-injecting
//! implementation in [`sim`].
//!
//! Errors are plain `std::io::Error`; the layers above add the file name and
//! offset. A handle whose store has "crashed" (simulation) keeps failing.

use std::io;
use std::path::Path;
use std::sync::Arc;

mod os;
pub mod sim;

pub use os::OsVfs;
pub use sim::{FaultKind, SimVfs};

/// An open file. All I/O is positional, so a handle can be shared between threads.
pub trait VfsFile: Send + Sync {
    /// Reads up to `buf.len()` bytes at `offset`; returns the count read (0 at end of file).
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize>;
    /// Writes all of `buf` at `offset`, growing the file if needed.
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()>;
    /// Writes all of `bufs`, one after the other, starting at `offset`.
    fn write_vectored_at(&self, bufs: &[io::IoSlice<'_>], offset: u64) -> io::Result<()> {
        let joined: Vec<u8> = bufs.iter().flat_map(|b| b.iter().copied()).collect();
        self.write_at(&joined, offset)
    }

    /// Makes every completed write to this file durable (fdatasync).
    fn sync_data(&self) -> io::Result<()>;
    /// Asks the OS to start writing `offset..offset + len` to the disk now,
    /// without waiting for it. A hint only: what is durable still depends on
    /// `sync_data` alone. The default does nothing.
    fn start_writeback(&self, _offset: u64, _len: u64) -> io::Result<()> {
        Ok(())
    }
    /// Sets the file length; a grown file reads as zeros.
    fn set_len(&self, len: u64) -> io::Result<()>;
    /// Current length of the file.
    fn len(&self) -> io::Result<u64>;

    /// Whether the file is empty.
    fn is_empty(&self) -> io::Result<bool> {
        Ok(self.len()? == 0)
    }

    /// Reads exactly `buf.len()` bytes at `offset`, or fails with `UnexpectedEof`.
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let mut done = 0;
        while done < buf.len() {
            let n = self.read_at(&mut buf[done..], offset + done as u64)?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("short read: {} of {} bytes at offset {offset}", done, buf.len()),
                ));
            }
            done += n;
        }
        Ok(())
    }

    /// Grows the file to `len` bytes without writing them, for a file whose
    /// new blocks are written and synced in bulk anyway (the database file,
    /// at a checkpoint), where writing zeros first would double the bytes
    /// written as the file grows. New bytes read as zeros. The default
    /// writes zeros, as [`VfsFile::allocate`].
    fn reserve(&self, len: u64) -> io::Result<()> {
        self.allocate(len)
    }

    /// Gives back the disk blocks of `offset..offset + len` while keeping
    /// the file's length: the range reads as zeros afterwards. Returns
    /// whether anything was given back; the default (a file system that
    /// cannot) keeps the blocks and their bytes.
    fn release(&self, _offset: u64, _len: u64) -> io::Result<bool> {
        Ok(false)
    }

    /// Grows the file to `len` bytes with blocks that are physically written
    /// (zeros), so that later overwrites followed by `sync_data` carry no
    /// metadata. Writing zeros is measurably cheaper for later commits than
    /// `fallocate` or a sparse `set_len` (see DESIGN.md).
    fn allocate(&self, len: u64) -> io::Result<()> {
        const CHUNK: usize = 1 << 20;
        let zeros = vec![0u8; CHUNK];
        let mut at = self.len()?;
        while at < len {
            let n = ((len - at) as usize).min(CHUNK);
            self.write_at(&zeros[..n], at)?;
            at += n as u64;
        }
        Ok(())
    }
}

/// How [`Vfs::open`] treats a missing or existing file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMode {
    /// The file must exist.
    Existing,
    /// Create the file if missing (the directory entry is durable only after `sync_dir`).
    CreateOrOpen,
    /// Create the file; fail if it exists.
    CreateNew,
}

/// Files and directories. Paths are absolute or relative to the process; the
/// simulation treats them as plain keys.
pub trait Vfs: Send + Sync {
    /// Opens a file for reading and writing.
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn VfsFile>>;
    /// Removes a file (durable after `sync_dir` of its directory).
    fn remove(&self, path: &Path) -> io::Result<()>;
    /// Atomically renames a file within one directory (durable after `sync_dir`).
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Makes creates, renames and removes in `dir` durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    /// Lists the file names (not paths) in `dir`, sorted.
    fn list(&self, dir: &Path) -> io::Result<Vec<String>>;
    /// Creates `dir` and its parents if missing.
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// Whether a file or directory exists at `path`.
    fn exists(&self, path: &Path) -> io::Result<bool>;
    /// Takes the exclusive lock named by `path` (a lock file, created if
    /// missing), or returns `None` while another holder has it: another
    /// process, or another open in this one. The lock lasts as long as the
    /// returned value. The default takes no lock (for layers with one user).
    fn try_lock(&self, _path: &Path) -> io::Result<Option<StoreLock>> {
        Ok(Some(StoreLock::new(())))
    }

    /// Opens an existing file a second time, for large writes that bypass
    /// the OS's page cache (`O_DIRECT`): every write's buffer, offset and
    /// length must be multiples of [`UNCACHED_ALIGN`], or it fails with
    /// `InvalidInput`. What it writes is durable after `sync_data` on any
    /// handle of the file. `None` where the layer or file system has no
    /// such mode (the default).
    fn open_uncached(&self, _path: &Path) -> io::Result<Option<Arc<dyn VfsFile>>> {
        Ok(None)
    }
}

/// Alignment of a write through [`Vfs::open_uncached`]: buffer address,
/// file offset and length (the largest logical block size in use).
pub const UNCACHED_ALIGN: usize = 4096;

/// Whether a write of `buf` at `offset` meets [`UNCACHED_ALIGN`].
pub fn uncached_aligned(buf: &[u8], offset: u64) -> bool {
    let a = UNCACHED_ALIGN;
    (buf.as_ptr() as usize).is_multiple_of(a) && buf.len().is_multiple_of(a) && offset.is_multiple_of(a as u64)
}

/// A handle from [`Vfs::open_uncached`]: refuses unaligned writes with a
/// clear error before the OS does, on the simulated layer too.
pub(crate) struct Uncached(pub Arc<dyn VfsFile>);

impl VfsFile for Uncached {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        if !uncached_aligned(buf, offset) {
            return Err(unaligned(buf.len(), offset));
        }
        self.0.read_at(buf, offset)
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        if !uncached_aligned(buf, offset) {
            return Err(unaligned(buf.len(), offset));
        }
        self.0.write_at(buf, offset)
    }

    fn sync_data(&self) -> io::Result<()> {
        self.0.sync_data()
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }

    fn len(&self) -> io::Result<u64> {
        self.0.len()
    }
}

fn unaligned(len: usize, offset: u64) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("an uncached write of {len} bytes at offset {offset} is not aligned to {UNCACHED_ALIGN}"),
    )
}

/// Proof that this process holds a store's lock; dropping it releases it.
pub struct StoreLock {
    _held: Box<dyn std::any::Any + Send + Sync>,
}

impl StoreLock {
    /// Wraps whatever keeps the lock held (an open file, a guard).
    pub fn new(held: impl std::any::Any + Send + Sync) -> StoreLock {
        StoreLock { _held: Box::new(held) }
    }
}

impl std::fmt::Debug for StoreLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StoreLock")
    }
}

/// A shared handle to a file system implementation.
pub type SharedVfs = Arc<dyn Vfs>;
