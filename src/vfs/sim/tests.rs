//! Namespace, I/O, accounting and fault-injection tests. Crash outcomes are
//! in `tests_crash.rs`.

use super::*;
use std::path::PathBuf;

pub(super) fn p(s: &str) -> PathBuf {
    PathBuf::from(s)
}

/// A fresh system with directory "d" and an open file "d/f".
pub(super) fn setup(seed: u64) -> (Arc<SimVfs>, Arc<dyn VfsFile>) {
    let vfs = SimVfs::new(seed);
    vfs.create_dir_all(&p("d")).expect("mkdir");
    let file = vfs.open(&p("d/f"), OpenMode::CreateNew).expect("open");
    (vfs, file)
}

pub(super) fn read_all(file: &dyn VfsFile) -> Vec<u8> {
    let len = file.len().expect("len") as usize;
    let mut buf = vec![0; len];
    file.read_exact_at(&mut buf, 0).expect("read");
    buf
}

pub(super) fn is_crash_error(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::Other && e.to_string().contains("simulated crash")
}

#[test]
fn is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<SimVfs>();
    check::<SimFile>();
}

#[test]
fn write_read_roundtrip() {
    let (vfs, file) = setup(1);
    file.write_at(b"hello", 0).unwrap();
    file.write_at(b"world", 10).unwrap();
    assert_eq!(file.len().unwrap(), 15);
    assert_eq!(read_all(&*file), b"hello\0\0\0\0\0world");
    let mut buf = [0u8; 8];
    assert_eq!(file.read_at(&mut buf, 12).unwrap(), 3);
    assert_eq!(&buf[..3], b"rld");
    assert_eq!(file.read_at(&mut buf, 15).unwrap(), 0);
    assert_eq!(file.read_at(&mut buf, 1 << 40).unwrap(), 0);
    let err = file.read_exact_at(&mut buf, 10).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    // A second handle sees the same inode.
    let again = vfs.open(&p("d/f"), OpenMode::Existing).unwrap();
    assert_eq!(read_all(&*again), read_all(&*file));
    assert_eq!(vfs.written_image(&p("d/f")).unwrap(), read_all(&*file));
    // Nothing synced yet: the file is not even durably named.
    assert_eq!(vfs.durable_image(&p("d/f")), None);
}

#[test]
fn open_modes_and_errors() {
    let (vfs, _file) = setup(1);
    let kind = |r: io::Result<Arc<dyn VfsFile>>| r.err().map(|e| e.kind());
    assert_eq!(
        kind(vfs.open(&p("d/g"), OpenMode::Existing)),
        Some(io::ErrorKind::NotFound)
    );
    assert_eq!(
        kind(vfs.open(&p("d/f"), OpenMode::CreateNew)),
        Some(io::ErrorKind::AlreadyExists)
    );
    assert_eq!(kind(vfs.open(&p("d/f"), OpenMode::CreateOrOpen)), None);
    assert_eq!(
        kind(vfs.open(&p("x/f"), OpenMode::CreateOrOpen)),
        Some(io::ErrorKind::NotFound)
    );
    assert_eq!(
        kind(vfs.open(&p("d"), OpenMode::CreateOrOpen)),
        Some(io::ErrorKind::IsADirectory)
    );
    assert_eq!(
        kind(vfs.open(&p("d/f/g"), OpenMode::CreateOrOpen)),
        Some(io::ErrorKind::NotADirectory)
    );
    // "." components are ignored; relative names live in "".
    assert_eq!(kind(vfs.open(&p("./d/./f"), OpenMode::Existing)), None);
    assert_eq!(kind(vfs.open(&p("top"), OpenMode::CreateNew)), None);
    assert_eq!(vfs.list(&p("")).unwrap(), ["d", "top"]);
    assert_eq!(vfs.list(&p(".")).unwrap(), ["d", "top"]);
}

#[test]
fn rename_and_remove_in_written_view() {
    let (vfs, file) = setup(1);
    file.write_at(b"one", 0).unwrap();
    let other = vfs.open(&p("d/g"), OpenMode::CreateNew).unwrap();
    other.write_at(b"two", 0).unwrap();
    let missing = vfs.rename(&p("d/nope"), &p("d/x")).unwrap_err();
    assert_eq!(missing.kind(), io::ErrorKind::NotFound);
    // Rename replaces the target; the replaced inode lives on through its handle.
    vfs.rename(&p("d/f"), &p("d/g")).unwrap();
    assert_eq!(vfs.list(&p("d")).unwrap(), ["g"]);
    assert_eq!(vfs.written_image(&p("d/g")).unwrap(), b"one");
    assert_eq!(read_all(&*other), b"two");
    vfs.rename(&p("d/g"), &p("d/g")).unwrap();
    assert_eq!(vfs.written_image(&p("d/g")).unwrap(), b"one");
    let err = vfs.rename(&p("d/g"), &p("nodir/g")).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::NotFound);
    let err = vfs.rename(&p("d/g"), &p("d")).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::IsADirectory);
    // Remove; the open handle keeps working.
    assert_eq!(vfs.remove(&p("d/f")).unwrap_err().kind(), io::ErrorKind::NotFound);
    assert_eq!(vfs.remove(&p("d")).unwrap_err().kind(), io::ErrorKind::IsADirectory);
    vfs.remove(&p("d/g")).unwrap();
    assert!(!vfs.exists(&p("d/g")).unwrap());
    file.write_at(b"!", 3).unwrap();
    assert_eq!(read_all(&*file), b"one!");
    file.sync_data().unwrap();
}

#[test]
fn list_and_dirs() {
    let vfs = SimVfs::new(1);
    assert_eq!(vfs.list(&p("a")).unwrap_err().kind(), io::ErrorKind::NotFound);
    vfs.create_dir_all(&p("/a/b/c")).unwrap();
    vfs.create_dir_all(&p("/a/b/c")).unwrap();
    vfs.open(&p("/a/z"), OpenMode::CreateNew).unwrap();
    vfs.open(&p("/a/m"), OpenMode::CreateNew).unwrap();
    assert_eq!(vfs.list(&p("/a")).unwrap(), ["b", "m", "z"]);
    assert_eq!(vfs.list(&p("/a/b")).unwrap(), ["c"]);
    assert!(vfs.list(&p("/a/b/c")).unwrap().is_empty());
    assert_eq!(vfs.list(&p("/")).unwrap(), ["a"]);
    assert_eq!(vfs.list(&p("/a/z")).unwrap_err().kind(), io::ErrorKind::NotADirectory);
    let err = vfs.create_dir_all(&p("/a/z")).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
    let err = vfs.create_dir_all(&p("/a/z/y")).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::NotADirectory);
    assert!(vfs.exists(&p("/a/b")).unwrap());
    assert!(vfs.exists(&p("/a/m")).unwrap());
    assert!(!vfs.exists(&p("/a/q")).unwrap());
    assert!(vfs.exists(&p("/")).unwrap());
    assert_eq!(vfs.sync_dir(&p("/q")).unwrap_err().kind(), io::ErrorKind::NotFound);
    let err = vfs.sync_dir(&p("/a/z")).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::NotADirectory);
}

#[test]
fn op_count_counts_every_call() {
    let vfs = SimVfs::new(1);
    assert_eq!(vfs.op_count(), 0);
    vfs.create_dir_all(&p("d")).unwrap();
    let file = vfs.open(&p("d/f"), OpenMode::CreateNew).unwrap();
    file.write_at(&[1; 10], 0).unwrap();
    file.len().unwrap();
    file.set_len(20).unwrap();
    file.sync_data().unwrap();
    vfs.sync_dir(&p("d")).unwrap();
    vfs.list(&p("d")).unwrap();
    vfs.exists(&p("d/f")).unwrap();
    vfs.rename(&p("d/f"), &p("d/g")).unwrap();
    assert_eq!(vfs.op_count(), 10);
    // Failed calls count too.
    assert!(vfs.remove(&p("d/f")).is_err());
    assert!(vfs.open(&p("d/f"), OpenMode::Existing).is_err());
    assert_eq!(vfs.op_count(), 12);
    vfs.remove(&p("d/g")).unwrap();
    assert_eq!(vfs.op_count(), 13);
    // read_exact_at is one read_at here; allocate is len + one write_at.
    let mut buf = [0u8; 4];
    file.read_exact_at(&mut buf, 0).unwrap();
    assert_eq!(vfs.op_count(), 14);
    file.allocate(100).unwrap();
    assert_eq!(vfs.op_count(), 16);
    assert_eq!(vfs.sync_count(), 2);
    // Helpers are not ops.
    vfs.poke(&p("d/f"), 0, b"x").unwrap(); // Durably named only.
    let _ = vfs.durable_image(&p("d/g"));
    let _ = vfs.written_image(&p("d/g"));
    assert_eq!(vfs.op_count(), 16);
    drop(file);
    assert_eq!(vfs.op_count(), 16);
}

#[test]
fn inject_eio_fails_exactly_that_op() {
    let (vfs, file) = setup(1);
    let n = vfs.op_count();
    vfs.inject_at_op(n + 1, FaultKind::Eio);
    file.write_at(b"a", 0).unwrap();
    let err = file.write_at(b"b", 1).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(5));
    file.write_at(b"c", 2).unwrap();
    // The failed write had no effect.
    assert_eq!(read_all(&*file), b"a\0c");
    // One-shot: consumed when its index passed.
    assert!(vfs.state.lock().faults.is_empty());
}

#[test]
fn inject_enospc_and_vfs_calls() {
    let (vfs, file) = setup(1);
    let n = vfs.op_count();
    vfs.inject_at_op(n, FaultKind::Enospc);
    vfs.inject_at_op(n + 2, FaultKind::Eio);
    vfs.inject_at_op(n - 1, FaultKind::Eio); // Already passed: ignored.
    let err = file.set_len(10).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(28));
    assert_eq!(file.len().unwrap(), 0);
    let err = vfs.open(&p("d/g"), OpenMode::CreateNew).err().unwrap();
    assert_eq!(err.raw_os_error(), Some(5));
    assert!(!vfs.exists(&p("d/g")).unwrap());
    vfs.open(&p("d/g"), OpenMode::CreateNew).unwrap();
}

#[test]
fn inject_crash_at_op() {
    let (vfs, file) = setup(1);
    let n = vfs.op_count();
    vfs.inject_at_op(n + 1, FaultKind::Crash);
    file.write_at(b"a", 0).unwrap();
    let err = file.sync_data().unwrap_err();
    assert!(is_crash_error(&err), "{err}");
    assert!(vfs.is_crashed());
    vfs.restart();
    // The file was never durably named.
    assert!(!vfs.exists(&p("d/f")).unwrap());
}

#[test]
fn crash_at_sync_index() {
    let (vfs, file) = setup(1);
    vfs.set_crash_mode(CrashMode::DropAll);
    vfs.crash_at_sync(2);
    file.write_at(b"a", 0).unwrap();
    file.sync_data().unwrap(); // sync 0
    vfs.sync_dir(&p("d")).unwrap(); // sync 1
    file.write_at(b"b", 1).unwrap();
    assert_eq!(vfs.sync_count(), 2);
    let err = file.sync_data().unwrap_err(); // sync 2
    assert!(is_crash_error(&err));
    assert!(vfs.is_crashed());
    assert_eq!(vfs.sync_count(), 3);
    vfs.restart();
    assert_eq!(vfs.durable_image(&p("d/f")).unwrap(), b"a");
    let file = vfs.open(&p("d/f"), OpenMode::Existing).unwrap();
    assert_eq!(read_all(&*file), b"a");
}

#[test]
fn failed_sync_forgets_its_writes() {
    let (vfs, file) = setup(1);
    vfs.set_crash_mode(CrashMode::DropAll);
    vfs.sync_dir(&p("d")).unwrap();
    file.write_at(b"data", 0).unwrap();
    vfs.inject_at_op(vfs.op_count(), FaultKind::Eio);
    assert_eq!(file.sync_data().unwrap_err().raw_os_error(), Some(5));
    assert_eq!(vfs.durable_image(&p("d/f")).unwrap(), b"");
    vfs.crash();
    vfs.restart();
    assert_eq!(vfs.durable_image(&p("d/f")).unwrap(), b"");
    // fsyncgate: after a failed sync, a successful one does not bring the
    // forgotten writes back, though reads still see them.
    let file = vfs.open(&p("d/f"), OpenMode::Existing).unwrap();
    file.write_at(b"data", 0).unwrap();
    vfs.inject_at_op(vfs.op_count(), FaultKind::Eio);
    assert!(file.sync_data().is_err());
    file.sync_data().unwrap();
    assert_eq!(read_all(&*file), b"data");
    assert_eq!(vfs.durable_image(&p("d/f")).unwrap(), b"");
    // Writing the same bytes again makes them durable.
    file.write_at(b"data", 0).unwrap();
    file.sync_data().unwrap();
    assert_eq!(vfs.durable_image(&p("d/f")).unwrap(), b"data");
}

#[test]
fn calls_fail_while_crashed_and_old_handles_forever() {
    let (vfs, file) = setup(1);
    vfs.sync_dir(&p("d")).unwrap();
    vfs.crash();
    vfs.crash(); // Idempotent.
    assert!(vfs.is_crashed());
    let mut buf = [0u8; 1];
    let errors = [
        vfs.open(&p("d/f"), OpenMode::Existing).err().unwrap(),
        vfs.remove(&p("d/f")).unwrap_err(),
        vfs.rename(&p("d/f"), &p("d/g")).unwrap_err(),
        vfs.sync_dir(&p("d")).unwrap_err(),
        vfs.list(&p("d")).unwrap_err(),
        vfs.create_dir_all(&p("e")).unwrap_err(),
        vfs.exists(&p("d")).unwrap_err(),
        file.read_at(&mut buf, 0).unwrap_err(),
        file.write_at(b"x", 0).unwrap_err(),
        file.sync_data().unwrap_err(),
        file.set_len(0).unwrap_err(),
        file.len().unwrap_err(),
    ];
    for err in &errors {
        assert!(is_crash_error(err), "{err}");
    }
    vfs.restart();
    assert!(!vfs.is_crashed());
    assert!(is_crash_error(&file.len().unwrap_err()));
    assert!(is_crash_error(&file.write_at(b"x", 0).unwrap_err()));
    let fresh = vfs.open(&p("d/f"), OpenMode::Existing).unwrap();
    fresh.write_at(b"x", 0).unwrap();
    assert_eq!(read_all(&*fresh), b"x");
    // Still failing after another crash cycle.
    vfs.crash();
    vfs.restart();
    assert!(is_crash_error(&fresh.len().unwrap_err()));
    assert!(is_crash_error(&file.len().unwrap_err()));
    vfs.restart(); // Without a crash: a no-op.
    assert!(vfs.exists(&p("d/f")).unwrap());
}

#[test]
fn set_len_semantics() {
    let (vfs, file) = setup(1);
    file.write_at(&[7; 10], 0).unwrap();
    file.set_len(4).unwrap();
    assert_eq!(read_all(&*file), [7; 4]);
    file.set_len(8).unwrap();
    assert_eq!(read_all(&*file), [7, 7, 7, 7, 0, 0, 0, 0]);
    file.sync_data().unwrap();
    vfs.sync_dir(&p("d")).unwrap();
    assert_eq!(vfs.durable_image(&p("d/f")).unwrap(), [7, 7, 7, 7, 0, 0, 0, 0]);
    // Unsynced set_len: kept or dropped at a crash by the mode.
    file.set_len(2).unwrap();
    vfs.set_crash_mode(CrashMode::DropAll);
    vfs.crash();
    vfs.restart();
    assert_eq!(vfs.durable_image(&p("d/f")).unwrap().len(), 8);
    let file = vfs.open(&p("d/f"), OpenMode::Existing).unwrap();
    file.set_len(2).unwrap();
    vfs.set_crash_mode(CrashMode::KeepAll);
    vfs.crash();
    vfs.restart();
    assert_eq!(vfs.durable_image(&p("d/f")).unwrap(), [7, 7]);
}

#[test]
fn huge_offsets_are_errors_not_allocations() {
    let (vfs, file) = setup(1);
    let invalid = |r: io::Result<()>| r.unwrap_err().kind() == io::ErrorKind::InvalidInput;
    assert!(invalid(file.write_at(b"x", u64::MAX)));
    assert!(invalid(file.write_at(b"x", MAX_FILE_SIZE)));
    assert!(invalid(file.write_at(&[], u64::MAX)));
    assert!(invalid(file.set_len(u64::MAX)));
    assert!(invalid(file.set_len(MAX_FILE_SIZE + 1)));
    let mut buf = [0u8; 4];
    let err = file.read_at(&mut buf, u64::MAX).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    vfs.sync_dir(&p("d")).unwrap();
    assert!(invalid(vfs.poke(&p("d/f"), u64::MAX - 1, b"xy")));
    assert_eq!(file.len().unwrap(), 0);
}

#[test]
fn poke_rots_both_images() {
    let (vfs, file) = setup(1);
    file.write_at(b"abcdef", 0).unwrap();
    file.sync_data().unwrap();
    vfs.sync_dir(&p("d")).unwrap();
    vfs.poke(&p("d/f"), 2, b"XY").unwrap();
    assert_eq!(read_all(&*file), b"abXYef");
    assert_eq!(vfs.durable_image(&p("d/f")).unwrap(), b"abXYef");
    vfs.poke(&p("d/f"), 8, b"Z").unwrap();
    assert_eq!(vfs.written_image(&p("d/f")).unwrap(), b"abXYef\0\0Z");
    assert_eq!(vfs.durable_image(&p("d/f")).unwrap(), b"abXYef\0\0Z");
    assert_eq!(
        vfs.poke(&p("d/x"), 0, b"1").unwrap_err().kind(),
        io::ErrorKind::NotFound
    );
}

#[test]
fn dead_inodes_are_freed() {
    let (vfs, file) = setup(1);
    vfs.sync_dir(&p("d")).unwrap();
    vfs.remove(&p("d/f")).unwrap();
    // Still durably named and open.
    assert_eq!(vfs.state.lock().inodes.len(), 1);
    vfs.sync_dir(&p("d")).unwrap();
    assert_eq!(vfs.state.lock().inodes.len(), 1);
    drop(file);
    assert!(vfs.state.lock().inodes.is_empty());
    // Replaced by rename, never open, never durable.
    drop(vfs.open(&p("d/a"), OpenMode::CreateNew).unwrap());
    drop(vfs.open(&p("d/b"), OpenMode::CreateNew).unwrap());
    assert_eq!(vfs.state.lock().inodes.len(), 2);
    vfs.rename(&p("d/a"), &p("d/b")).unwrap();
    assert_eq!(vfs.state.lock().inodes.len(), 1);
}

#[test]
fn concurrent_handles() {
    let (vfs, file) = setup(1);
    let threads: Vec<_> = (0..4u8)
        .map(|t| {
            let file = Arc::clone(&file);
            std::thread::spawn(move || {
                for i in 0..100u64 {
                    file.write_at(&[t; 8], (u64::from(t) * 100 + i) * 8).unwrap();
                }
                file.sync_data().unwrap();
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let data = read_all(&*file);
    assert_eq!(data.len(), 3200);
    for (i, chunk) in data.chunks(800).enumerate() {
        assert!(chunk.iter().all(|&b| usize::from(b) == i));
    }
    assert_eq!(vfs.op_count(), 2 + 404 + 2);
}

#[test]
fn injected_crash_fires_even_on_a_stale_handle() {
    let (vfs, file) = setup(1);
    vfs.crash();
    vfs.restart();
    vfs.inject_at_op(vfs.op_count(), FaultKind::Crash);
    assert!(is_crash_error(&file.len().unwrap_err()));
    assert!(vfs.is_crashed());
}
