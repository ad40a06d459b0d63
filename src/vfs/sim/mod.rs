//! A deterministic, fault-injecting file system in memory.
//!
//! Model:
//! - A file is an inode with a *written* image (what reads see), a *durable*
//!   image (what survives a power cut) and the ops (writes, `set_len`) issued
//!   since its last `sync_data`. `sync_data` applies them to the durable image.
//! - Names live in a written namespace and a durable one. Create, rename and
//!   remove change the written one; `sync_dir(d)` copies every entry directly
//!   inside `d` (presence or absence) into the durable one.
//! - [`SimVfs::crash`] is a power cut: each pending op is dropped, kept, or
//!   (writes) torn per 512-byte sector into kept, dropped and garbage sectors,
//!   as the seeded RNG decides (see [`CrashMode`]). The written state is then
//!   reset to the durable state, and every call fails until
//!   [`SimVfs::restart`]; handles opened before the crash fail forever.
//! - An unlinked file stays usable through its open handles; it is gone at
//!   the crash unless the durable namespace still names it.
//! - The same seed and the same sequence of calls give the same outcome.
//!
//! Simplifications, on purpose:
//! - Directories are created durably at once by `create_dir_all` and are
//!   never removed. Only files can be renamed or removed.
//! - Paths are keys: "." components are dropped, ".." is not resolved.
//!   A rename between directories is allowed; each side becomes durable with
//!   the `sync_dir` of its own directory, so a crash may keep both or neither.
//! - Unsynced namespace changes are always lost at a crash (a real file
//!   system may keep some); unsynced data follows the crash mode.
//! - An injected EIO or ENOSPC makes the call fail without effect; an
//!   injected crash cuts power during the call, which fails. A failed
//!   `sync_data` behaves like Linux after a writeback error (fsyncgate): the
//!   pending writes stay readable but are forgotten, so they never become
//!   durable, not even through a later successful sync.
//! - Files are capped at [`MAX_FILE_SIZE`] and held in memory whole.

mod crash;
mod rng;
mod state;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_crash;

pub use crash::SECTOR_SIZE;
pub use rng::SimRng;

use super::{OpenMode, StoreLock, Vfs, VfsFile};
use parking_lot::Mutex;
use state::{Call, InodeId, State, normalize};
use std::fmt;
use std::io;
use std::path::Path;
use std::sync::Arc;

/// Largest simulated file; bigger offsets or lengths fail with `InvalidInput`.
pub const MAX_FILE_SIZE: u64 = 1 << 34;

/// A fault to inject at a chosen call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    /// The call fails with EIO (raw OS error 5).
    Eio,
    /// The call fails with ENOSPC (raw OS error 28).
    Enospc,
    /// A power cut happens during the call, which fails.
    Crash,
}

/// What a crash does to the ops pending since the last sync.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CrashMode {
    /// Each op is dropped, kept or torn, as the seeded RNG decides.
    #[default]
    Random,
    /// Every pending op survives intact.
    KeepAll,
    /// Every pending op is lost.
    DropAll,
}

/// The simulated file system. Cheap to share: clones of the `Arc` from
/// [`SimVfs::new`] and every open handle see one state behind one mutex.
pub struct SimVfs {
    state: Arc<Mutex<State>>,
}

impl SimVfs {
    /// An empty file system whose random choices all derive from `seed`.
    pub fn new(seed: u64) -> Arc<SimVfs> {
        Arc::new(SimVfs {
            state: Arc::new(Mutex::new(State::new(seed))),
        })
    }

    /// The seed given to [`SimVfs::new`].
    pub fn seed(&self) -> u64 {
        self.state.lock().seed
    }

    /// Calls so far of any `Vfs` or `VfsFile` method, failed ones included.
    pub fn op_count(&self) -> u64 {
        self.state.lock().ops
    }

    /// `sync_data` and `sync_dir` calls so far, failed ones included.
    pub fn sync_count(&self) -> u64 {
        self.state.lock().syncs
    }

    /// `start_writeback` calls that ran, failed ones not included.
    pub fn writeback_hint_count(&self) -> u64 {
        self.state.lock().writeback_hints
    }

    /// The call numbered `op` (0-based, as [`SimVfs::op_count`] counts) fails
    /// with `kind` instead of running. An index already passed never fires.
    pub fn inject_at_op(&self, op: u64, kind: FaultKind) {
        let mut state = self.state.lock();
        if op >= state.ops {
            state.faults.insert(op, kind);
        }
    }

    /// The sync call numbered `sync_index` (0-based, as
    /// [`SimVfs::sync_count`] counts) crashes instead of running.
    pub fn crash_at_sync(&self, sync_index: u64) {
        let mut state = self.state.lock();
        if sync_index >= state.syncs {
            state.crash_syncs.insert(sync_index);
        }
    }

    /// Cancels every injected fault and crash that has not fired yet.
    pub fn clear_faults(&self) {
        let mut state = self.state.lock();
        state.faults.clear();
        state.crash_syncs.clear();
    }

    /// Power cut now; a no-op if already crashed.
    pub fn crash(&self) {
        self.state.lock().crash();
    }

    /// Whether the system is down (crashed and not restarted).
    pub fn is_crashed(&self) -> bool {
        self.state.lock().crashed
    }

    /// Brings the system back up after a crash. Old handles keep failing.
    pub fn restart(&self) {
        self.state.lock().crashed = false;
    }

    /// Chooses what later crashes do with pending ops.
    pub fn set_crash_mode(&self, mode: CrashMode) {
        self.state.lock().mode = mode;
    }

    /// Durable content of the file durably named `path`. Not counted as an op.
    pub fn durable_image(&self, path: &Path) -> Option<Vec<u8>> {
        let state = self.state.lock();
        let id = state.durable_ns.get(&normalize(path))?;
        Some(state.inodes.get(id)?.durable.clone())
    }

    /// Current content of the file named `path`. Not counted as an op.
    pub fn written_image(&self, path: &Path) -> Option<Vec<u8>> {
        let state = self.state.lock();
        let id = state.written_ns.get(&normalize(path))?;
        Some(state.inodes.get(id)?.written.clone())
    }

    /// Test helper (bit rot): overwrites bytes in both the written and the
    /// durable image, growing them if needed. Not counted as an op, allowed
    /// while crashed.
    pub fn poke(&self, path: &Path, offset: u64, bytes: &[u8]) -> io::Result<()> {
        self.state.lock().poke(path, offset, bytes)
    }
}

impl fmt::Debug for SimVfs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.state.lock();
        f.debug_struct("SimVfs")
            .field("seed", &state.seed)
            .field("ops", &state.ops)
            .field("syncs", &state.syncs)
            .field("crashed", &state.crashed)
            .field("epoch", &state.epoch)
            .finish_non_exhaustive()
    }
}

/// A simulated store lock: released when dropped, unless a crash (the
/// process dying) released it first and a new holder may have it now.
struct SimLock {
    state: Arc<Mutex<State>>,
    path: std::path::PathBuf,
    epoch: u64,
}

impl Drop for SimLock {
    fn drop(&mut self) {
        let mut state = self.state.lock();
        if state.epoch == self.epoch {
            state.locks.remove(&self.path);
        }
    }
}

impl Vfs for SimVfs {
    /// In memory and not counted as a call: faults and crash points keep
    /// their numbering. The lock file itself is not created.
    fn try_lock(&self, path: &Path) -> io::Result<Option<StoreLock>> {
        let mut state = self.state.lock();
        if state.crashed {
            return Err(io::Error::other("simulated crash: the system is down"));
        }
        let path = normalize(path);
        if !state.locks.insert(path.clone()) {
            return Ok(None);
        }
        Ok(Some(StoreLock::new(SimLock {
            state: self.state.clone(),
            path,
            epoch: state.epoch,
        })))
    }

    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn VfsFile>> {
        let mut state = self.state.lock();
        state.begin(Call::Vfs)?;
        let inode = state.open(path, mode)?;
        Ok(Arc::new(SimFile {
            state: Arc::clone(&self.state),
            inode,
            epoch: state.epoch,
        }))
    }

    /// The same simulated file, refusing unaligned writes as the OS would:
    /// the simulation has no page cache to bypass.
    fn open_uncached(&self, path: &Path) -> io::Result<Option<Arc<dyn VfsFile>>> {
        let file = self.open(path, OpenMode::Existing)?;
        Ok(Some(Arc::new(crate::vfs::Uncached(file))))
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        let mut state = self.state.lock();
        state.begin(Call::Vfs)?;
        state.remove(path)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut state = self.state.lock();
        state.begin(Call::Vfs)?;
        state.rename(from, to)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let mut state = self.state.lock();
        state.begin(Call::SyncDir)?;
        state.sync_dir(dir)
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut state = self.state.lock();
        state.begin(Call::Vfs)?;
        state.list(dir)
    }

    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        let mut state = self.state.lock();
        state.begin(Call::Vfs)?;
        state.create_dir_all(dir)
    }

    fn exists(&self, path: &Path) -> io::Result<bool> {
        let mut state = self.state.lock();
        state.begin(Call::Vfs)?;
        Ok(state.exists(path))
    }
}

/// An open file: the shared state, the inode and the epoch it was opened in.
struct SimFile {
    state: Arc<Mutex<State>>,
    inode: InodeId,
    epoch: u64,
}

impl VfsFile for SimFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let mut state = self.state.lock();
        state.begin(Call::File(self.epoch))?;
        state.read_at(self.inode, buf, offset)
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        let mut state = self.state.lock();
        state.begin(Call::File(self.epoch))?;
        state.write_at(self.inode, buf, offset)
    }

    /// A hole reads as zeros: modelled as a write of zeros over the part of
    /// the range inside the file, durable (or torn, or lost) like any write.
    fn release(&self, offset: u64, len: u64) -> io::Result<bool> {
        let mut state = self.state.lock();
        state.begin(Call::File(self.epoch))?;
        let end = offset.saturating_add(len).min(state.len(self.inode)?);
        if end > offset {
            let zeros = vec![0u8; usize::try_from(end - offset).map_err(|_| io::Error::other("range too large"))?];
            state.write_at(self.inode, &zeros, offset)?;
        }
        Ok(true)
    }

    fn sync_data(&self) -> io::Result<()> {
        let mut state = self.state.lock();
        if let Err(e) = state.begin(Call::SyncData(self.epoch)) {
            if e.raw_os_error().is_some() && !state.crashed {
                // Linux after a failed writeback: the pages are marked clean, so
                // the data stays readable but will never reach the disk (fsyncgate).
                state.inode_mut(self.inode)?.pending.clear();
            }
            return Err(e);
        }
        state.sync_data(self.inode)
    }

    /// Nothing to simulate, but a call that can fail, so that the fault
    /// sweeps reach its error path.
    fn start_writeback(&self, _offset: u64, _len: u64) -> io::Result<()> {
        let mut state = self.state.lock();
        state.begin(Call::File(self.epoch))?;
        state.writeback_hints += 1;
        Ok(())
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        let mut state = self.state.lock();
        state.begin(Call::File(self.epoch))?;
        state.set_len(self.inode, len)
    }

    fn len(&self) -> io::Result<u64> {
        let mut state = self.state.lock();
        state.begin(Call::File(self.epoch))?;
        state.len(self.inode)
    }
}

impl Drop for SimFile {
    fn drop(&mut self) {
        self.state.lock().close(self.inode, self.epoch);
    }
}
