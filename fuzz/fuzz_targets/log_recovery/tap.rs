//! A VFS that counts the committing thread's data writes, for step 1's power cut.

use super::*;

/// Forwards to the `SimVfs`, and cuts the power at the n-th write past offset 0
/// made by a thread other than the preparer (so the count does not depend on
/// how the preparer thread is scheduled).
pub(super) struct TapVfs {
    pub(super) sim: Arc<SimVfs>,
    pub(super) tap: Arc<Tap>,
}

pub(super) struct Tap {
    pub(super) armed: AtomicBool,
    pub(super) at: u64,
    pub(super) after_write: bool,
    pub(super) seen: AtomicU64,
}

impl Tap {
    fn on_write(&self, sim: &SimVfs, offset: u64, write: impl FnOnce() -> io::Result<()>) -> io::Result<()> {
        let counted =
            offset > 0 && self.armed.load(Ordering::Acquire) && std::thread::current().name() != Some(PREPARER_THREAD);
        if !counted || self.seen.fetch_add(1, Ordering::AcqRel) != self.at {
            return write();
        }
        self.armed.store(false, Ordering::Release);
        if self.after_write {
            let _ = write();
        }
        sim.crash();
        Err(io::Error::other("fuzz: power cut"))
    }
}

struct TapFile {
    inner: Arc<dyn VfsFile>,
    sim: Arc<SimVfs>,
    tap: Arc<Tap>,
}

impl VfsFile for TapFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.inner.read_at(buf, offset)
    }
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.tap
            .on_write(&self.sim, offset, || self.inner.write_at(buf, offset))
    }
    fn sync_data(&self) -> io::Result<()> {
        self.inner.sync_data()
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.inner.set_len(len)
    }
    fn len(&self) -> io::Result<u64> {
        self.inner.len()
    }
}

impl Vfs for TapVfs {
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn VfsFile>> {
        let inner = self.sim.open(path, mode)?;
        Ok(Arc::new(TapFile {
            inner,
            sim: self.sim.clone(),
            tap: self.tap.clone(),
        }))
    }
    fn remove(&self, path: &Path) -> io::Result<()> {
        self.sim.remove(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.sim.rename(from, to)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        self.sim.sync_dir(dir)
    }
    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        self.sim.list(dir)
    }
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        self.sim.create_dir_all(dir)
    }
    fn exists(&self, path: &Path) -> io::Result<bool> {
        self.sim.exists(path)
    }
}

// ---------------------------------------------------------------- step 1: a real log
