//! The simulated file system's state and the logic of every operation. All
//! of it runs under the one mutex in [`super::SimVfs`].

use super::rng::SimRng;
use super::{CrashMode, FaultKind, MAX_FILE_SIZE, OpenMode};
use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Component, Path, PathBuf};

/// Identifies an inode; never reused within one `SimVfs`.
pub(super) type InodeId = u64;

/// A change made since the inode's last successful `sync_data`.
#[derive(Debug, Clone)]
pub(super) enum Pending {
    Write { offset: u64, data: Vec<u8> },
    SetLen(u64),
}

/// A file's contents, independent of the names that point to it.
#[derive(Debug, Default)]
pub(super) struct Inode {
    /// What reads see.
    pub(super) written: Vec<u8>,
    /// What survives a power cut.
    pub(super) durable: Vec<u8>,
    /// `durable` + `pending` applied in order == `written` (unless `poke` was used).
    pub(super) pending: Vec<Pending>,
    /// Entries in the written namespace that name this inode.
    pub(super) written_links: u64,
    /// Entries in the durable namespace that name this inode.
    pub(super) durable_links: u64,
    /// Open handles of the current epoch.
    pub(super) handles: u64,
}

impl Inode {
    /// Unreachable by name and handle: nothing can observe it any more.
    fn is_dead(&self) -> bool {
        self.written_links == 0 && self.durable_links == 0 && self.handles == 0
    }
}

/// Everything the simulation knows. Iteration is over `BTreeMap`s only, so
/// that the RNG is consumed in the same order on every run (determinism).
#[derive(Debug)]
pub(super) struct State {
    pub(super) seed: u64,
    /// Store locks held, by path; a crash (the process dies) drops them all.
    pub(super) locks: std::collections::BTreeSet<std::path::PathBuf>,
    pub(super) rng: SimRng,
    pub(super) mode: CrashMode,
    /// Calls so far (the index the next call gets).
    pub(super) ops: u64,
    /// Sync calls so far.
    pub(super) syncs: u64,
    /// `start_writeback` calls that ran (a hint: nothing else changes).
    pub(super) writeback_hints: u64,
    pub(super) faults: BTreeMap<u64, FaultKind>,
    pub(super) crash_syncs: BTreeSet<u64>,
    pub(super) crashed: bool,
    /// Raised at each crash; a handle of an older epoch fails forever.
    pub(super) epoch: u64,
    pub(super) next_inode: InodeId,
    pub(super) inodes: BTreeMap<InodeId, Inode>,
    /// Names as reads see them.
    pub(super) written_ns: BTreeMap<PathBuf, InodeId>,
    /// Names that survive a power cut.
    pub(super) durable_ns: BTreeMap<PathBuf, InodeId>,
    /// Directories; always durable. The roots ("" and "/") are implicit.
    pub(super) dirs: BTreeSet<PathBuf>,
}

/// Which check a call needs before it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Call {
    /// A `Vfs` method other than `sync_dir`.
    Vfs,
    /// A `VfsFile` method other than `sync_data`, on a handle of this epoch.
    File(u64),
    /// `sync_dir`.
    SyncDir,
    /// `sync_data` on a handle of this epoch.
    SyncData(u64),
}

pub(super) fn crashed_error() -> io::Error {
    io::Error::other("simulated crash: the file system is down until restart()")
}

fn stale_error() -> io::Error {
    io::Error::other("simulated crash: handle was opened before a crash")
}

fn injected_crash_error() -> io::Error {
    io::Error::other("simulated crash: injected power cut during this call")
}

fn error(kind: io::ErrorKind, what: &str, path: &Path) -> io::Error {
    io::Error::new(kind, format!("simulated: {what}: {}", path.display()))
}

pub(super) fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, format!("simulated: {msg}"))
}

/// The key for `path`: its components with "." removed (".." is kept as a
/// plain name, not resolved).
pub(super) fn normalize(path: &Path) -> PathBuf {
    path.components().filter(|c| *c != Component::CurDir).collect()
}

/// The directory holding `path`; "" for a bare relative name.
fn parent_of(path: &Path) -> &Path {
    path.parent().unwrap_or(Path::new(""))
}

/// Checks that `[offset, offset + len)` fits in a simulated file and in memory.
pub(super) fn check_range(offset: u64, len: usize) -> io::Result<u64> {
    let end = u64::try_from(len)
        .ok()
        .and_then(|len| offset.checked_add(len))
        .filter(|&end| end <= MAX_FILE_SIZE && usize::try_from(end).is_ok());
    end.ok_or_else(|| {
        invalid(format!(
            "range {offset}+{len} exceeds the simulated file size limit {MAX_FILE_SIZE}"
        ))
    })
}

/// Writes `data` at `offset`, zero-filling any gap. The caller has checked
/// the range with [`check_range`], so it fits in `usize`.
pub(super) fn apply_write(image: &mut Vec<u8>, offset: u64, data: &[u8]) {
    if data.is_empty() {
        return;
    }
    let start = offset as usize;
    let end = start + data.len();
    if image.len() < end {
        image.resize(end, 0);
    }
    image[start..end].copy_from_slice(data);
}

/// Truncates or zero-extends to `len` (checked by the caller, fits in `usize`).
pub(super) fn apply_set_len(image: &mut Vec<u8>, len: u64) {
    image.resize(len as usize, 0);
}

impl State {
    pub(super) fn new(seed: u64) -> State {
        State {
            seed,
            locks: std::collections::BTreeSet::new(),
            rng: SimRng::new(seed),
            mode: CrashMode::Random,
            ops: 0,
            syncs: 0,
            writeback_hints: 0,
            faults: BTreeMap::new(),
            crash_syncs: BTreeSet::new(),
            crashed: false,
            epoch: 0,
            next_inode: 0,
            inodes: BTreeMap::new(),
            written_ns: BTreeMap::new(),
            durable_ns: BTreeMap::new(),
            dirs: BTreeSet::new(),
        }
    }

    /// Counts the call, then fails it if the system is down, an injected
    /// crash is due (even on a stale handle, so a scheduled crash always
    /// happens), the handle is stale, or an error was injected. A fault is
    /// tied to its index: it is consumed even when the call fails otherwise.
    pub(super) fn begin(&mut self, call: Call) -> io::Result<()> {
        let index = self.ops;
        self.ops += 1;
        let fault = self.faults.remove(&index);
        let sync_crash = match call {
            Call::SyncDir | Call::SyncData(_) => {
                let sync = self.syncs;
                self.syncs += 1;
                self.crash_syncs.remove(&sync)
            }
            Call::Vfs | Call::File(_) => false,
        };
        if self.crashed {
            return Err(crashed_error());
        }
        if sync_crash || fault == Some(FaultKind::Crash) {
            self.crash();
            return Err(injected_crash_error());
        }
        if let Call::File(epoch) | Call::SyncData(epoch) = call
            && epoch != self.epoch
        {
            return Err(stale_error());
        }
        match fault {
            Some(FaultKind::Eio) => Err(io::Error::from_raw_os_error(5)),
            Some(FaultKind::Enospc) => Err(io::Error::from_raw_os_error(28)),
            Some(FaultKind::Crash) | None => Ok(()),
        }
    }

    /// Whether `path` (normalized) is a directory.
    fn is_dir(&self, path: &Path) -> bool {
        path.parent().is_none() || self.dirs.contains(path)
    }

    /// Fails unless `dir` is an existing directory.
    fn require_dir(&self, dir: &Path) -> io::Result<()> {
        if self.is_dir(dir) {
            Ok(())
        } else if self.written_ns.contains_key(dir) {
            Err(error(io::ErrorKind::NotADirectory, "not a directory", dir))
        } else {
            Err(error(io::ErrorKind::NotFound, "no such directory", dir))
        }
    }

    /// Fails unless `path` may name a file: not a directory, parent exists.
    fn require_file_path(&self, path: &Path) -> io::Result<()> {
        if self.is_dir(path) {
            return Err(error(io::ErrorKind::IsADirectory, "is a directory", path));
        }
        self.require_dir(parent_of(path))
    }

    pub(super) fn inode(&self, id: InodeId) -> io::Result<&Inode> {
        // Only reachable if the link/handle accounting is wrong; fail, never panic.
        self.inodes
            .get(&id)
            .ok_or_else(|| io::Error::other("simulated: internal error: inode vanished"))
    }

    pub(super) fn inode_mut(&mut self, id: InodeId) -> io::Result<&mut Inode> {
        self.inodes
            .get_mut(&id)
            .ok_or_else(|| io::Error::other("simulated: internal error: inode vanished"))
    }

    /// Drops the inode if nothing refers to it any more.
    fn collect(&mut self, id: InodeId) {
        if self.inodes.get(&id).is_some_and(Inode::is_dead) {
            self.inodes.remove(&id);
        }
    }

    /// Points `path` in the written namespace at `id` (or at nothing).
    fn set_written(&mut self, path: &Path, id: Option<InodeId>) {
        let old = match id {
            Some(id) => {
                if let Some(inode) = self.inodes.get_mut(&id) {
                    inode.written_links += 1;
                }
                self.written_ns.insert(path.to_path_buf(), id)
            }
            None => self.written_ns.remove(path),
        };
        if let Some(old) = old {
            if let Some(inode) = self.inodes.get_mut(&old) {
                inode.written_links -= 1;
            }
            self.collect(old);
        }
    }

    /// Points `path` in the durable namespace at `id` (or at nothing).
    fn set_durable(&mut self, path: &Path, id: Option<InodeId>) {
        let old = match id {
            Some(id) => {
                if let Some(inode) = self.inodes.get_mut(&id) {
                    inode.durable_links += 1;
                }
                self.durable_ns.insert(path.to_path_buf(), id)
            }
            None => self.durable_ns.remove(path),
        };
        if let Some(old) = old {
            if let Some(inode) = self.inodes.get_mut(&old) {
                inode.durable_links -= 1;
            }
            self.collect(old);
        }
    }

    /// Opens (maybe creates) the file and registers a handle; returns its inode.
    pub(super) fn open(&mut self, path: &Path, mode: OpenMode) -> io::Result<InodeId> {
        let path = normalize(path);
        self.require_file_path(&path)?;
        let id = match (self.written_ns.get(&path).copied(), mode) {
            (Some(_), OpenMode::CreateNew) => {
                return Err(error(io::ErrorKind::AlreadyExists, "file exists", &path));
            }
            (Some(id), _) => id,
            (None, OpenMode::Existing) => {
                return Err(error(io::ErrorKind::NotFound, "no such file", &path));
            }
            (None, OpenMode::CreateOrOpen | OpenMode::CreateNew) => {
                let id = self.next_inode;
                self.next_inode += 1;
                self.inodes.insert(id, Inode::default());
                self.set_written(&path, Some(id));
                id
            }
        };
        self.inode_mut(id)?.handles += 1;
        Ok(id)
    }

    /// A handle is gone; a stale one no longer counts (the crash reset counts).
    pub(super) fn close(&mut self, id: InodeId, epoch: u64) {
        if epoch != self.epoch {
            return;
        }
        if let Some(inode) = self.inodes.get_mut(&id) {
            inode.handles = inode.handles.saturating_sub(1);
        }
        self.collect(id);
    }

    pub(super) fn remove(&mut self, path: &Path) -> io::Result<()> {
        let path = normalize(path);
        if self.is_dir(&path) {
            return Err(error(io::ErrorKind::IsADirectory, "is a directory", &path));
        }
        if !self.written_ns.contains_key(&path) {
            return Err(error(io::ErrorKind::NotFound, "no such file", &path));
        }
        self.set_written(&path, None);
        Ok(())
    }

    pub(super) fn rename(&mut self, from: &Path, to: &Path) -> io::Result<()> {
        let (from, to) = (normalize(from), normalize(to));
        if self.is_dir(&from) {
            return Err(error(io::ErrorKind::IsADirectory, "is a directory", &from));
        }
        let Some(id) = self.written_ns.get(&from).copied() else {
            return Err(error(io::ErrorKind::NotFound, "no such file", &from));
        };
        self.require_file_path(&to)?;
        if from != to {
            // Link the new name first so the inode never looks dead in between.
            self.set_written(&to, Some(id));
            self.set_written(&from, None);
        }
        Ok(())
    }

    /// Copies every written entry directly inside `dir` (and every absence)
    /// into the durable namespace.
    pub(super) fn sync_dir(&mut self, dir: &Path) -> io::Result<()> {
        let dir = normalize(dir);
        self.require_dir(&dir)?;
        let names: BTreeSet<PathBuf> = self
            .written_ns
            .keys()
            .chain(self.durable_ns.keys())
            .filter(|p| parent_of(p) == dir)
            .cloned()
            .collect();
        for name in names {
            let written = self.written_ns.get(&name).copied();
            if written != self.durable_ns.get(&name).copied() {
                self.set_durable(&name, written);
            }
        }
        Ok(())
    }

    pub(super) fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let dir = normalize(dir);
        self.require_dir(&dir)?;
        let mut names: Vec<String> = self
            .written_ns
            .keys()
            .chain(self.dirs.iter())
            .filter(|p| parent_of(p) == dir)
            .filter_map(|p| p.file_name())
            .map(|n| n.to_string_lossy().into_owned())
            .collect();
        names.sort();
        names.dedup();
        Ok(names)
    }

    /// Creates `dir` and its ancestors, durably at once. A durable-only file
    /// entry at one of those names is dropped: the directory replaced it.
    pub(super) fn create_dir_all(&mut self, dir: &Path) -> io::Result<()> {
        let dir = normalize(dir);
        let mut missing = Vec::new();
        for ancestor in dir.ancestors() {
            if self.is_dir(ancestor) {
                break;
            }
            if self.written_ns.contains_key(ancestor) {
                let kind = if ancestor == dir {
                    io::ErrorKind::AlreadyExists
                } else {
                    io::ErrorKind::NotADirectory
                };
                return Err(error(kind, "a file is in the way", ancestor));
            }
            missing.push(ancestor.to_path_buf());
        }
        for new_dir in missing.into_iter().rev() {
            if self.durable_ns.contains_key(&new_dir) {
                self.set_durable(&new_dir, None);
            }
            self.dirs.insert(new_dir);
        }
        Ok(())
    }

    pub(super) fn exists(&self, path: &Path) -> bool {
        let path = normalize(path);
        self.is_dir(&path) || self.written_ns.contains_key(&path)
    }

    pub(super) fn read_at(&self, id: InodeId, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        if offset > i64::MAX as u64 {
            // What pread does with an offset that is negative as off_t.
            return Err(invalid(format!("read offset {offset} is out of range")));
        }
        let image = &self.inode(id)?.written;
        let Some(rest) = usize::try_from(offset).ok().and_then(|at| image.get(at..)) else {
            return Ok(0);
        };
        let n = rest.len().min(buf.len());
        buf[..n].copy_from_slice(&rest[..n]);
        Ok(n)
    }

    pub(super) fn write_at(&mut self, id: InodeId, buf: &[u8], offset: u64) -> io::Result<()> {
        check_range(offset, buf.len())?;
        let inode = self.inode_mut(id)?;
        if buf.is_empty() {
            return Ok(());
        }
        apply_write(&mut inode.written, offset, buf);
        inode.pending.push(Pending::Write {
            offset,
            data: buf.to_vec(),
        });
        Ok(())
    }

    pub(super) fn set_len(&mut self, id: InodeId, len: u64) -> io::Result<()> {
        check_range(len, 0)?;
        let inode = self.inode_mut(id)?;
        apply_set_len(&mut inode.written, len);
        inode.pending.push(Pending::SetLen(len));
        Ok(())
    }

    /// Applies the pending ops to the durable image, in order.
    pub(super) fn sync_data(&mut self, id: InodeId) -> io::Result<()> {
        let inode = self.inode_mut(id)?;
        for op in std::mem::take(&mut inode.pending) {
            match op {
                Pending::Write { offset, data } => apply_write(&mut inode.durable, offset, &data),
                Pending::SetLen(len) => apply_set_len(&mut inode.durable, len),
            }
        }
        Ok(())
    }

    pub(super) fn len(&self, id: InodeId) -> io::Result<u64> {
        Ok(self.inode(id)?.written.len() as u64)
    }

    /// Test helper: overwrites bytes in both images of the file at `path`
    /// (written name first, else durable name).
    pub(super) fn poke(&mut self, path: &Path, offset: u64, bytes: &[u8]) -> io::Result<()> {
        let path = normalize(path);
        check_range(offset, bytes.len())?;
        let id = self
            .written_ns
            .get(&path)
            .or_else(|| self.durable_ns.get(&path))
            .copied()
            .ok_or_else(|| error(io::ErrorKind::NotFound, "no such file", &path))?;
        let inode = self.inode_mut(id)?;
        apply_write(&mut inode.written, offset, bytes);
        apply_write(&mut inode.durable, offset, bytes);
        Ok(())
    }
}
