//! Readable passive copies over TCP: a copy seeded live needs the log up to
//! its newest page before it reads as the active, and another thread reads a
//! following copy through `Follower::snapshot` while its session replays.

#[path = "common/readable.rs"]
mod readable;
#[path = "common/serving.rs"]
mod serving;

use mailvault::log::Lsn;
use mailvault::pager::header::read_best;
use mailvault::pager::{DbError, data_path};
use mailvault::repl::{CopyRegistry, Follower};
use mailvault::txn::{Database, PassiveRead};
use mailvault::vfs::sim::SimRng;
use mailvault::vfs::{OpenMode, OsVfs};
use readable::{COPY_CACHE, PS, active_rows, copy_rows, create_with_table, opts, work};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Serves copies one connection at a time until `stop`.
fn serve(db: Arc<Database>, listener: std::net::TcpListener, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    let sessions = serving::serve_sessions(
        db,
        listener,
        stop,
        serving::ship_options(),
        Arc::new(CopyRegistry::new()),
    );
    // A session's end (the copy leaving) is not under test.
    std::thread::spawn(move || {
        sessions.join().unwrap();
    })
}

use serving::key;

/// The newest page LSN in a data file (pages 2.. that were ever written).
fn newest_page_lsn(path: &Path) -> Lsn {
    let bytes = std::fs::read(path).unwrap();
    bytes
        .chunks(PS)
        .skip(2)
        .filter(|p| p.iter().any(|&b| b != 0))
        .map(mailvault::pager::page::page_lsn)
        .max()
        .unwrap_or(Lsn::ZERO)
}

#[test]
fn a_copy_seeded_live_requires_the_log_up_to_its_newest_page_and_reads_as_the_active_once_caught_up() {
    let tmp = tempfile::tempdir().unwrap();
    let vfs: mailvault::vfs::SharedVfs = Arc::new(OsVfs);
    // The active checkpoints often while a writer runs, so the seed may
    // hold pages newer than its header's checkpoint (timing decides: in
    // quick runs it often does not, and then the first check is weaker).
    let mut o = opts();
    o.checkpoint_depth = 64 << 10;
    let db = Arc::new(create_with_table(vfs.clone(), tmp.path().join("active"), o));
    let mut rng = SimRng::new(17);
    for round in 0..100 {
        work(&db, &mut rng, round);
    }
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let stop = Arc::new(AtomicBool::new(false));
    let server = serve(db.clone(), listener, stop.clone());
    let writing = Arc::new(AtomicBool::new(true));
    let writer = {
        let (db, writing) = (db.clone(), writing.clone());
        std::thread::spawn(move || {
            let mut rng = SimRng::new(18);
            let mut round = 100;
            while writing.load(Ordering::Relaxed) {
                work(&db, &mut rng, round);
                round += 1;
            }
        })
    };
    let copy_dir = tmp.path().join("copy");
    let mut copy = Follower::open(vfs.clone(), &copy_dir, key(), COPY_CACHE).unwrap();
    // Ends the session as soon as the seed is in.
    let seeded = |f: &Follower| f.snapshot_source().is_some();
    copy.session(&addr, Duration::from_secs(5), Some(&seeded)).unwrap();
    writing.store(false, Ordering::Relaxed);
    writer.join().unwrap();
    let path = data_path(&copy_dir);
    let file = vfs.open(&path, OpenMode::Existing).unwrap();
    let (header, _) = read_best(file.as_ref(), &path).unwrap();
    let newest = newest_page_lsn(&path);
    assert!(
        header.required_lsn >= newest,
        "the header requires the log up to {}, but a page is at {newest}",
        header.required_lsn
    );
    match copy.snapshot().expect("seeded") {
        Err(DbError::NotYetConsistent { position, required, .. }) => {
            assert_eq!(required, header.required_lsn);
            assert!(position <= required);
        }
        Ok(s) => assert!(s.position() > newest, "a snapshot only once past every page"),
        Err(e) => panic!("{e}"),
    }
    // Caught up, the copy reads as the active.
    let target = db.pager().log().durable_lsn();
    let caught_up = move |f: &Follower| f.replayed() >= target;
    copy.session(&addr, Duration::from_secs(5), Some(&caught_up)).unwrap();
    let rx = PassiveRead::new(copy.snapshot().expect("seeded").unwrap());
    assert_eq!(copy_rows(&rx).unwrap(), active_rows(&db));
    stop.store(true, Ordering::Relaxed);
    server.join().unwrap();
}

#[test]
fn another_thread_reads_a_following_copy_while_its_session_replays() {
    let tmp = tempfile::tempdir().unwrap();
    let vfs: mailvault::vfs::SharedVfs = Arc::new(OsVfs);
    let db = Arc::new(create_with_table(vfs.clone(), tmp.path().join("active"), opts()));
    let mut rng = SimRng::new(23);
    for round in 0..50 {
        work(&db, &mut rng, round);
    }
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let stop = Arc::new(AtomicBool::new(false));
    let server = serve(db.clone(), listener, stop.clone());
    let mut copy = Follower::open(vfs.clone(), tmp.path().join("copy"), key(), COPY_CACHE).unwrap();
    let target = db.pager().log().durable_lsn();
    let caught_up = move |f: &Follower| f.replayed() >= target;
    copy.session(&addr, Duration::from_secs(5), Some(&caught_up)).unwrap();
    let source = copy.snapshot_source().expect("seeded");
    // The session replays on its own thread; a reader on a third thread
    // keeps taking snapshots from the source and reading them whole.
    let (reading, reads) = (
        Arc::new(AtomicBool::new(true)),
        Arc::new(std::sync::atomic::AtomicU64::new(0)),
    );
    let reader = {
        let (reading, reads, source) = (reading.clone(), reads.clone(), source.clone());
        std::thread::spawn(move || {
            let mut last = Lsn::ZERO;
            while reading.load(Ordering::Relaxed) {
                match source.latest() {
                    Ok(s) => {
                        assert!(s.position() >= last, "snapshots move forward");
                        last = s.position();
                        let (pos, pc, kept) = (s.position(), s.page_count(), s.kept_bytes());
                        let rx = PassiveRead::new(s);
                        if let Err(e) = copy_rows(&rx) {
                            panic!("the snapshot at {pos} ({pc} pages, {kept} bytes kept): {e}");
                        }
                        reads.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(DbError::NotYetConsistent { .. }) => {}
                    Err(e) => panic!("{e}"),
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        })
    };
    let writer = {
        let db = db.clone();
        std::thread::spawn(move || {
            let mut rng = SimRng::new(24);
            for round in 50..250 {
                work(&db, &mut rng, round);
            }
        })
    };
    writer.join().unwrap();
    let target = db.pager().log().durable_lsn();
    let caught_up = move |f: &Follower| f.replayed() >= target;
    copy.session(&addr, Duration::from_secs(5), Some(&caught_up)).unwrap();
    reading.store(false, Ordering::Relaxed);
    reader.join().unwrap();
    assert!(reads.load(Ordering::Relaxed) > 0, "the reader read during the session");
    // At rest, caught up: the copy's newest snapshot reads as the active.
    let rx = PassiveRead::new(copy.snapshot().expect("seeded").unwrap());
    assert_eq!(copy_rows(&rx).unwrap(), active_rows(&db));
    stop.store(true, Ordering::Relaxed);
    server.join().unwrap();
}
