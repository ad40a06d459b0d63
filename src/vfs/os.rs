//! The production file layer: `std::fs` with positional I/O.

use super::{OpenMode, StoreLock, Vfs, VfsFile};
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

/// The operating system's file system.
#[derive(Debug, Default, Clone, Copy)]
pub struct OsVfs;

struct OsFile {
    file: File,
}

impl VfsFile for OsFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        loop {
            match self.file.read_at(buf, offset) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                other => return other,
            }
        }
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.file.write_all_at(buf, offset)
    }

    /// pwritev: the kernel gathers the pieces, so callers need not copy them
    /// into one buffer first (measured on large log records, see DESIGN.md).
    fn write_vectored_at(&self, bufs: &[io::IoSlice<'_>], offset: u64) -> io::Result<()> {
        const IOV_MAX: usize = 1024;
        let mut slices: Vec<io::IoSlice<'_>> = bufs.to_vec();
        let mut rest: &mut [io::IoSlice<'_>] = &mut slices;
        let mut at = offset;
        while !rest.is_empty() {
            let n = rustix::io::pwritev(&self.file, &rest[..rest.len().min(IOV_MAX)], at)?;
            if n == 0 {
                return Err(io::Error::new(io::ErrorKind::WriteZero, "pwritev wrote nothing"));
            }
            at += n as u64;
            io::IoSlice::advance_slices(&mut rest, n);
        }
        Ok(())
    }

    fn sync_data(&self) -> io::Result<()> {
        self.file.sync_data()
    }

    /// sync_file_range(SYNC_FILE_RANGE_WRITE): queues the range's dirty
    /// pages for writing and returns, so that the fdatasync which follows
    /// finds them on their way (DESIGN.md, "Writeback started early").
    #[cfg(target_os = "linux")]
    #[allow(unsafe_code)]
    fn start_writeback(&self, offset: u64, len: u64) -> io::Result<()> {
        use std::os::fd::AsRawFd;
        let (Ok(offset), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "writeback range past i64"));
        };
        // SAFETY: the descriptor is open for as long as `self.file` lives,
        // and the call reads no memory of ours.
        let rc = unsafe { libc::sync_file_range(self.file.as_raw_fd(), offset, len, libc::SYNC_FILE_RANGE_WRITE) };
        if rc == 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            // A file system without it: the hint is lost, nothing else.
            Some(libc::ENOSYS) | Some(libc::EOPNOTSUPP) | Some(libc::EINVAL) | Some(libc::ESPIPE) => Ok(()),
            _ => Err(e),
        }
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.file.set_len(len)
    }

    fn len(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }

    /// fallocate: blocks reserved as unwritten extents, converted when the
    /// checkpoint writes them (its one fdatasync carries the conversion).
    /// Where the file system cannot, a sparse `set_len` does.
    /// fallocate(PUNCH_HOLE | KEEP_SIZE); false where the file system has
    /// no holes.
    fn release(&self, offset: u64, len: u64) -> io::Result<bool> {
        use rustix::fs::FallocateFlags;
        match rustix::fs::fallocate(
            &self.file,
            FallocateFlags::PUNCH_HOLE | FallocateFlags::KEEP_SIZE,
            offset,
            len,
        ) {
            Ok(()) => Ok(true),
            Err(e) if e == rustix::io::Errno::OPNOTSUPP || e == rustix::io::Errno::NOSYS => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    fn reserve(&self, len: u64) -> io::Result<()> {
        let current = self.len()?;
        if len <= current {
            return Ok(());
        }
        match rustix::fs::fallocate(&self.file, rustix::fs::FallocateFlags::empty(), current, len - current) {
            Ok(()) => Ok(()),
            Err(e) if e == rustix::io::Errno::OPNOTSUPP || e == rustix::io::Errno::NOSYS => self.file.set_len(len),
            Err(e) => Err(e.into()),
        }
    }
}

impl Vfs for OsVfs {
    /// `O_DIRECT`; a file system without it (tmpfs before Linux 6.6)
    /// refuses the open with `EINVAL`, which gives `None`.
    #[cfg(target_os = "linux")]
    fn open_uncached(&self, path: &Path) -> io::Result<Option<Arc<dyn VfsFile>>> {
        use std::os::unix::fs::OpenOptionsExt;
        let opened = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(rustix::fs::OFlags::DIRECT.bits() as i32)
            .open(path);
        match opened {
            Ok(file) => Ok(Some(Arc::new(super::Uncached(Arc::new(OsFile { file }))))),
            Err(e) if e.raw_os_error() == Some(rustix::io::Errno::INVAL.raw_os_error()) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// flock(LOCK_EX | LOCK_NB) on the lock file, held by its open file: a
    /// second open, in this process or another, finds it taken. The kernel
    /// drops it when the process dies, so a crash leaves no stale lock.
    fn try_lock(&self, path: &Path) -> io::Result<Option<StoreLock>> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => Ok(Some(StoreLock::new(file))),
            Err(rustix::io::Errno::WOULDBLOCK) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn VfsFile>> {
        let mut options = OpenOptions::new();
        options.read(true).write(true);
        match mode {
            OpenMode::Existing => {}
            OpenMode::CreateOrOpen => {
                options.create(true);
            }
            OpenMode::CreateNew => {
                options.create_new(true);
            }
        }
        Ok(Arc::new(OsFile {
            file: options.open(path)?,
        }))
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        fs::remove_file(path)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::rename(from, to)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in fs::read_dir(dir)? {
            let entry = entry?;
            names.push(entry.file_name().to_string_lossy().into_owned());
        }
        names.sort();
        Ok(names)
    }

    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        fs::create_dir_all(dir)
    }

    fn exists(&self, path: &Path) -> io::Result<bool> {
        path.try_exists()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vfs::{SimVfs, UNCACHED_ALIGN, Vfs};

    /// `len` bytes of `byte` at an aligned address, in `storage`.
    fn aligned(storage: &mut Vec<u8>, len: usize, byte: u8) -> &mut [u8] {
        storage.resize(len + UNCACHED_ALIGN, byte);
        let skip = storage.as_ptr().align_offset(UNCACHED_ALIGN);
        &mut storage[skip..skip + len]
    }

    #[test]
    fn writeback_hints_change_nothing_and_refuse_ranges_past_the_offset_type() {
        let dir = tempfile::tempdir().unwrap();
        let file = OsVfs.open(&dir.path().join("f"), OpenMode::CreateNew).unwrap();
        let bytes: Vec<u8> = (0..1u32 << 20).map(|i| (i % 251) as u8).collect();
        file.write_at(&bytes, 4096).unwrap();
        file.start_writeback(4096, bytes.len() as u64).unwrap();
        // Past the end of the file, and of length zero ("to the end"): a hint still.
        file.start_writeback(1 << 30, 4096).unwrap();
        file.start_writeback(0, 0).unwrap();
        let err = file.start_writeback(u64::MAX - 10, 5).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{err}");
        file.sync_data().unwrap();
        let mut back = vec![0u8; bytes.len()];
        file.read_exact_at(&mut back, 4096).unwrap();
        assert!(back == bytes, "the bytes read back are the ones written");
        assert_eq!(file.len().unwrap(), 4096 + bytes.len() as u64);
    }

    #[test]
    fn uncached_writes_must_be_aligned_and_are_read_back_through_the_cache() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let file = OsVfs.open(&path, OpenMode::CreateNew).unwrap();
        // A file system without O_DIRECT gives None (said, not hidden);
        // ext4, xfs and tmpfs since Linux 6.6 have it.
        let Some(direct) = OsVfs.open_uncached(&path).unwrap() else {
            eprintln!("{}: no O_DIRECT here, nothing to check", dir.path().display());
            return;
        };
        let mut storage = Vec::new();
        let block = aligned(&mut storage, 2 * UNCACHED_ALIGN, 0xa5);
        direct.write_at(block, UNCACHED_ALIGN as u64).unwrap();
        let err = direct.write_at(&block[1..UNCACHED_ALIGN + 1], 0).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{err}");
        let err = direct.write_at(&block[..100], 0).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        let err = direct.write_at(block, 100).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        direct.sync_data().unwrap();
        let mut back = vec![0u8; 3 * UNCACHED_ALIGN];
        file.read_exact_at(&mut back, 0).unwrap();
        assert!(back[..UNCACHED_ALIGN].iter().all(|&b| b == 0));
        assert!(back[UNCACHED_ALIGN..].iter().all(|&b| b == 0xa5));
    }

    #[test]
    fn the_simulated_disk_refuses_unaligned_uncached_writes_too() {
        let sim = SimVfs::new(1);
        let path = Path::new("/f");
        let file = sim.open(path, OpenMode::CreateNew).unwrap();
        let direct = sim.open_uncached(path).unwrap().unwrap();
        let mut storage = Vec::new();
        let block = aligned(&mut storage, UNCACHED_ALIGN, 7);
        assert_eq!(
            direct.write_at(&block[..10], 0).unwrap_err().kind(),
            io::ErrorKind::InvalidInput
        );
        direct.write_at(block, 0).unwrap();
        let mut back = vec![0u8; UNCACHED_ALIGN];
        file.read_exact_at(&mut back, 0).unwrap();
        assert!(back.iter().all(|&b| b == 7));
    }
}
