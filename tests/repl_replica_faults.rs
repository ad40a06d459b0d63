//! A copy's log replica under failures: a failed frame write or sync stops
//! it (fail-stop: nothing it acknowledged is missing from the disk), and
//! truncation racing a generation switch on the spare pool does not fail
//! the switch. (Found in review; each test failed before its fix.)

mod common;

use mailvault::log::{FrameSource, Log, LogError, LogReplica, Lsn, retire_generations};
use mailvault::vfs::sim::SimRng;
use mailvault::vfs::{FaultKind, OpenMode, SimVfs, StoreLock, Vfs, VfsFile};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

fn active(seed: u64, generations: u32) -> (Arc<SimVfs>, Log, FrameSource) {
    let disk = SimVfs::new(seed);
    let log = Log::create(disk.clone(), "/active", common::small_opts()).unwrap();
    let mut rng = SimRng::new(seed);
    let mut n = 0u32;
    while log.durable_lsn().generation() <= generations {
        let mut v = vec![0u8; 200 + rng.below(1200) as usize];
        rng.fill(&mut v);
        v[0] = n as u8;
        log.commit(&v).unwrap();
        n += 1;
    }
    let source = FrameSource::new(disk.clone(), "/active");
    (disk, log, source)
}

/// Applies chunks until the replica's next position is `until`.
fn ship_to(source: &FrameSource, log: &Log, replica: &mut LogReplica, until: Lsn) {
    while replica.next() < until {
        let chunk = source.read(replica.next(), log.durable_lsn(), 4096).unwrap();
        assert!(!chunk.is_empty());
        replica.apply(&chunk).unwrap();
    }
    replica.sync().unwrap();
}

/// Delegates to a SimVfs; the first open of a spare ("recycle-...") starts
/// `retire_generations` on another thread, as the replay thread may run it
/// between the receiving thread's choice of a spare and its rename, and
/// gives it 200 ms to finish (it cannot while the pool is locked).
struct Hook {
    inner: Arc<SimVfs>,
    dir: PathBuf,
    armed: Mutex<Option<u32>>,
    truncation: Mutex<Option<std::thread::JoinHandle<u32>>>,
}

impl Vfs for Hook {
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn VfsFile>> {
        let spare = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("recycle-"));
        if spare && let Some(before) = self.armed.lock().unwrap().take() {
            let (inner, dir) = (self.inner.clone(), self.dir.clone());
            let (done, finished) = std::sync::mpsc::channel();
            let handle = std::thread::spawn(move || {
                let n = retire_generations(inner.as_ref(), &dir, before).unwrap();
                let _ = done.send(());
                n
            });
            let _ = finished.recv_timeout(std::time::Duration::from_millis(200));
            *self.truncation.lock().unwrap() = Some(handle);
        }
        self.inner.open(path, mode)
    }
    fn remove(&self, p: &Path) -> io::Result<()> {
        self.inner.remove(p)
    }
    fn rename(&self, a: &Path, b: &Path) -> io::Result<()> {
        self.inner.rename(a, b)
    }
    fn sync_dir(&self, d: &Path) -> io::Result<()> {
        self.inner.sync_dir(d)
    }
    fn list(&self, d: &Path) -> io::Result<Vec<String>> {
        self.inner.list(d)
    }
    fn create_dir_all(&self, d: &Path) -> io::Result<()> {
        self.inner.create_dir_all(d)
    }
    fn exists(&self, p: &Path) -> io::Result<bool> {
        self.inner.exists(p)
    }
    fn try_lock(&self, p: &Path) -> io::Result<Option<StoreLock>> {
        self.inner.try_lock(p)
    }
}

/// Truncation (the replay thread) and a generation switch (the receiving
/// thread) share the spare pool: a truncation that retires two generations
/// trims spares, and without the pool's lock it removed the one the switch
/// had just chosen (the switch failed with "no such file").
#[test]
fn truncation_racing_a_generation_switch_does_not_fail_it() {
    let (_a, log, source) = active(1, 7);
    let disk = SimVfs::new(2);
    let hook = Arc::new(Hook {
        inner: disk.clone(),
        dir: "/copy".into(),
        armed: Mutex::new(None),
        truncation: Mutex::new(None),
    });
    let mut replica = LogReplica::open(hook.clone(), "/copy").unwrap();
    replica.start_at(Lsn::new(1, 0));
    ship_to(&source, &log, &mut replica, Lsn::new(6, 0)); // 1..=5 (5 sealed), next (6, 0)
    assert_eq!(retire_generations(disk.as_ref(), Path::new("/copy"), 3).unwrap(), 2); // spares 1, 2
    *hook.armed.lock().unwrap() = Some(5); // replay is done with 3 and 4
    let chunk = source.read(replica.next(), log.durable_lsn(), 4096).unwrap();
    assert!(chunk.header.is_some());
    let r = replica.apply(&chunk);
    assert!(
        r.is_ok(),
        "the generation switch failed because truncation ran at the same time: {}",
        r.unwrap_err()
    );
    let truncation = hook.truncation.lock().unwrap().take().expect("a spare was opened");
    assert_eq!(truncation.join().expect("truncation"), 2);
    ship_to(&source, &log, &mut replica, Lsn::new(7, 0));
    let reopened = LogReplica::open(disk.clone(), "/copy").unwrap();
    assert_eq!(reopened.end(), replica.end());
}

/// A failed frame write leaves the positions where they were and stops the
/// replica: before, `apply` moved them first, and the next session's chunks
/// (a Follower keeps its replica across sessions) went on after a hole the
/// copy then acknowledged.
#[test]
fn a_failed_frame_write_stops_the_replica_where_it_was() {
    let (_a, log, source) = active(3, 2);
    let disk = SimVfs::new(4);
    let mut replica = LogReplica::open(disk.clone(), "/copy").unwrap();
    replica.start_at(Lsn::new(1, 0));
    let chunk = source.read(replica.next(), log.durable_lsn(), 4096).unwrap();
    replica.apply(&chunk).unwrap(); // header and first frames
    replica.sync().unwrap();
    let chunk = source.read(replica.next(), log.durable_lsn(), 2048).unwrap();
    assert!(!chunk.frames.is_empty() && chunk.header.is_none());
    let acked = replica.end();
    let next = replica.next();
    disk.inject_at_op(disk.op_count(), FaultKind::Eio); // its write_at
    assert!(replica.apply(&chunk).is_err());
    assert!(replica.is_stopped());
    assert_eq!(
        (replica.end(), replica.next()),
        (acked, next),
        "positions moved past a failed write"
    );
    // A later session's chunk, and a sync, are refused: the replica stopped.
    let chunk = source.read(replica.next(), log.durable_lsn(), 2048).unwrap();
    assert!(matches!(replica.apply(&chunk), Err(LogError::Stopped { .. })));
    assert!(matches!(replica.sync(), Err(LogError::Stopped { .. })));
    assert_eq!(replica.end(), acked);
    let reopened = LogReplica::open(disk.clone(), "/copy").unwrap();
    assert!(
        reopened.end() >= acked,
        "acknowledged {acked}, the disk holds up to {}",
        reopened.end()
    );
}

/// After a failed sync (whose writes the kernel may have dropped) a retried
/// sync is refused: before, it succeeded and the replica reported as synced
/// an end a power cut then lost.
#[test]
fn a_failed_sync_stops_the_replica_and_a_retry_is_refused() {
    let (_a, log, source) = active(5, 2);
    let disk = SimVfs::new(6);
    let mut replica = LogReplica::open(disk.clone(), "/copy").unwrap();
    replica.start_at(Lsn::new(1, 0));
    ship_to(&source, &log, &mut replica, Lsn::new(1, 10 * 512));
    let acked = replica.end();
    let chunk = source.read(replica.next(), log.durable_lsn(), 4096).unwrap();
    replica.apply(&chunk).unwrap();
    disk.inject_at_op(disk.op_count(), FaultKind::Eio);
    assert!(replica.sync().is_err());
    // A retried sync would succeed with the writes dropped: it is refused.
    assert!(matches!(replica.sync(), Err(LogError::Stopped { .. })));
    assert!(replica.is_stopped());
    disk.crash();
    disk.restart();
    let reopened = LogReplica::open(disk.clone(), "/copy").unwrap();
    assert!(
        reopened.end() >= acked,
        "synced {acked}, after a power cut {}",
        reopened.end()
    );
}
