//! Replication over TCP on loopback: an empty copy is seeded from a live
//! active under concurrent commits, receives its log, replays it, resumes
//! from its own position after a break, and ends page-identical to the
//! active; its log reads back as the active's records. A wrong key and a
//! copy of another database are refused before any database or log byte is
//! sent.

mod common;
#[path = "common/serving.rs"]
mod serving;

use common::read_records;
use mailvault::log::Lsn;
use mailvault::pager::data_path;
use mailvault::repl::{ClusterKey, CopyRegistry, CopyState, Follower, ReplError, ShipOptions, serve_copy};
use mailvault::txn::{Database, DbOptions};
use mailvault::vfs::OsVfs;
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

fn small_db() -> DbOptions {
    let mut o = DbOptions {
        page_size: 4096,
        cache_bytes: 1 << 20,
        checkpoint_depth: 256 << 10,
        // Whole-database digests by checkpoint count alone, so that this
        // small database logs some.
        whole_digest_log_factor: 0,
        ..DbOptions::default()
    };
    o.log.generation_size = 512 << 10;
    o
}

use serving::key;

/// Serves copies one connection at a time until `stop`, with a registry
/// of its own; returns each session's outcome.
fn serve(
    db: Arc<Database>,
    listener: TcpListener,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<Vec<Result<(), String>>> {
    serve_with(db, listener, stop, Arc::new(CopyRegistry::new()))
}

fn commit_some(db: &Database, from: u32, n: u32) {
    for i in from..from + n {
        let mut tx = db.begin_write();
        let t = tx.open_table("mail").unwrap();
        let key = format!("k{:05}", i % 700);
        if i % 5 == 0 {
            tx.delete(&t, key.as_bytes()).unwrap();
        } else {
            tx.put(&t, key.as_bytes(), &vec![i as u8; 100 + (i as usize * 37) % 9000])
                .unwrap();
        }
        tx.commit().unwrap();
    }
}

/// An active database in `dir/active` holding an empty table "mail".
fn active_with_mail(dir: &std::path::Path) -> Arc<Database> {
    let db = Arc::new(Database::create(Arc::new(OsVfs), dir.join("active"), small_db()).unwrap());
    let mut tx = db.begin_write();
    tx.create_table("mail").unwrap();
    tx.commit().unwrap();
    db
}

#[test]
fn a_copy_is_seeded_live_follows_resumes_and_ends_page_identical() {
    let tmp = tempfile::tempdir().unwrap();
    let db = active_with_mail(tmp.path());
    commit_some(&db, 0, 300);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let stop = Arc::new(AtomicBool::new(false));
    let server = serve(db.clone(), listener, stop.clone());
    let copy_dir = tmp.path().join("copy");
    let writers: Vec<_> = (0..3)
        .map(|w| {
            let db = db.clone();
            std::thread::spawn(move || commit_some(&db, 1000 + w * 1000, 200))
        })
        .collect();
    // First session: seeded while the writers run; stopped part way, as a
    // copy killed mid-stream would be.
    let mut copy = Follower::open(Arc::new(OsVfs), &copy_dir, key(), 1 << 20).unwrap();
    // The copy keeps its replayed log, to be compared below.
    copy.set_truncation_lag(Duration::from_secs(3600));
    assert_eq!(copy.status().state, CopyState::Seeding);
    let first_stop = |f: &Follower| f.replayed() > Lsn::ZERO && f.replica().end().generation() >= 2;
    copy.session(&addr, Duration::from_secs(5), Some(&first_stop)).unwrap();
    let resumed_at = copy.replica().next();
    drop(copy);
    for w in writers {
        w.join().unwrap();
    }
    // Second session, reopened: resumes from its position and catches up.
    let mut copy = Follower::open(Arc::new(OsVfs), &copy_dir, key(), 1 << 20).unwrap();
    copy.set_truncation_lag(Duration::from_secs(3600));
    assert_eq!(
        copy.replica().next(),
        resumed_at,
        "the copy resumes from its own position"
    );
    let target = db.pager().log().durable_lsn();
    let caught_up = move |f: &Follower| f.replayed() >= target;
    copy.session(&addr, Duration::from_secs(5), Some(&caught_up)).unwrap();
    let status = copy.status();
    // (The active's background checkpoint may have appended a marker since.)
    assert!(status.inspected >= target && status.replayed >= target, "{status:?}");
    // The active's whole-database digests reached the copy and were checked.
    assert!(status.digests_verified + status.digests_skipped >= 1, "{status:?}");
    // Records common to both logs are the same, at the same LSNs.
    let active = read_records(Arc::new(OsVfs), tmp.path().join("active/log"), target);
    let shipped = read_records(Arc::new(OsVfs), copy_dir.join("log"), target);
    let first = active[0].0.max(shipped[0].0);
    let a: Vec<_> = active.iter().filter(|r| r.0 >= first).collect();
    let c: Vec<_> = shipped.iter().filter(|r| r.0 >= first).collect();
    assert!(a.len() > 100, "{} records in common", a.len());
    assert!(a == c, "the copy's log reads back as the active's records");
    // Page-identical at the same LSN: nothing commits now; both checkpoint.
    drop(copy);
    db.checkpoint().unwrap();
    let pages = db.pager().page_count() as usize;
    let (x, y) = (
        std::fs::read(data_path(&tmp.path().join("active"))).unwrap(),
        std::fs::read(data_path(&copy_dir)).unwrap(),
    );
    let ps = 4096;
    let differing: Vec<usize> = (2..pages)
        .filter(|&n| x[n * ps..(n + 1) * ps] != y[n * ps..(n + 1) * ps])
        .collect();
    assert!(pages > 50, "{pages} pages");
    assert!(differing.is_empty(), "pages differ: {differing:?}");
    stop.store(true, Ordering::Relaxed);
    let outcomes = server.join().unwrap();
    assert_eq!(outcomes.len(), 2, "{outcomes:?}");
}

#[test]
fn a_wrong_key_or_another_database_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let db = Arc::new(Database::create(Arc::new(OsVfs), tmp.path().join("a"), small_db()).unwrap());
    let other = Arc::new(Database::create(Arc::new(OsVfs), tmp.path().join("b"), small_db()).unwrap());
    let stop = Arc::new(AtomicBool::new(false));
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let server = serve(db.clone(), listener, stop.clone());
    let listener2 = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr2 = listener2.local_addr().unwrap().to_string();
    let server2 = serve(other.clone(), listener2, stop.clone());

    let wrong = ClusterKey::new(b"not the cluster key at all!!!!!!").unwrap();
    let mut intruder = Follower::open(Arc::new(OsVfs), tmp.path().join("x"), wrong, 1 << 20).unwrap();
    let err = intruder.session(&addr, Duration::from_secs(5), None).unwrap_err();
    assert!(matches!(err, ReplError::AuthFailed(_)), "{err:?}");
    assert!(
        !data_path(&tmp.path().join("x")).exists(),
        "nothing of the database was sent"
    );
    assert_eq!(
        std::fs::read_dir(tmp.path().join("x/log")).unwrap().count(),
        0,
        "nothing of the log was sent"
    );

    // A copy seeded from another database.
    let mut copy = Follower::open(Arc::new(OsVfs), tmp.path().join("y"), key(), 1 << 20).unwrap();
    let seeded = |f: &Follower| f.replayed() > Lsn::ZERO || f.replica().end() > Lsn::ZERO;
    copy.session(&addr2, Duration::from_secs(5), Some(&seeded)).unwrap();
    let err = copy.session(&addr, Duration::from_secs(5), None).unwrap_err();
    assert!(matches!(err, ReplError::Refused { code: 2, .. }), "{err:?}");
    stop.store(true, Ordering::Relaxed);
    let outcomes = server.join().unwrap();
    assert!(outcomes.iter().all(|o| o.is_err()), "{outcomes:?}");
    server2.join().unwrap();
}

#[test]
fn a_copy_past_the_retention_cap_needs_a_reseed_and_the_active_disk_stays_bounded() {
    let tmp = tempfile::tempdir().unwrap();
    let db = active_with_mail(tmp.path());
    commit_some(&db, 0, 50);
    let registry = Arc::new(CopyRegistry::with_retention_cap(1 << 20));
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let stop = Arc::new(AtomicBool::new(false));
    let server = {
        let (db, stop, registry) = (db.clone(), stop.clone(), registry.clone());
        listener.set_nonblocking(true).unwrap();
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                registry.enforce(&*db);
                if let Ok((stream, _)) = listener.accept() {
                    stream.set_nonblocking(false).unwrap();
                    let _ = serve_copy(&*db, stream, &key(), &ShipOptions::default(), &stop, &registry);
                } else {
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        })
    };
    let copy_dir = tmp.path().join("copy");
    let mut copy = Follower::open(Arc::new(OsVfs), &copy_dir, key(), 1 << 20).unwrap();
    let target = db.pager().log().durable_lsn();
    let caught_up = move |f: &Follower| f.replayed() >= target;
    copy.session(&addr, Duration::from_secs(5), Some(&caught_up)).unwrap();
    // The copy is away while the active writes far more than the cap.
    let first_before = db.pager().log().first_generation();
    commit_some(&db, 100, 900);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !registry.all()[0].1.needs_reseed && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(registry.all()[0].1.needs_reseed, "the copy is marked needs-reseed");
    db.checkpoint().unwrap();
    db.checkpoint().unwrap();
    assert!(
        db.pager().log().first_generation() > first_before,
        "the released log was recycled"
    );
    let err = copy.session(&addr, Duration::from_secs(5), None).unwrap_err();
    assert!(matches!(err, ReplError::Refused { code: 3, .. }), "{err:?}");
    assert_eq!(copy.status().state, CopyState::NeedsReseed);
    // A reseed brings it back, page-identical.
    copy.reset().unwrap();
    let target = db.pager().log().durable_lsn();
    let caught_up = move |f: &Follower| f.replayed() >= target;
    copy.session(&addr, Duration::from_secs(5), Some(&caught_up)).unwrap();
    assert_eq!(copy.status().state, CopyState::Healthy);
    drop(copy);
    stop.store(true, Ordering::Relaxed);
    server.join().unwrap();
    db.checkpoint().unwrap();
    let cmp = mailvault::repl::compare(
        &(Arc::new(OsVfs) as mailvault::vfs::SharedVfs),
        &tmp.path().join("active"),
        &copy_dir,
    )
    .unwrap();
    assert!(cmp.identical(), "{cmp:?}");
}

#[test]
fn a_lagged_copy_holds_its_lag_and_play_down_catches_it_up() {
    let tmp = tempfile::tempdir().unwrap();
    let db = active_with_mail(tmp.path());
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let stop = Arc::new(AtomicBool::new(false));
    let server = serve(db.clone(), listener, stop.clone());
    let mut copy = Follower::open(Arc::new(OsVfs), tmp.path().join("copy"), key(), 1 << 20).unwrap();
    let seeded = |f: &Follower| f.replayed() > Lsn::ZERO;
    copy.session(&addr, Duration::from_secs(5), Some(&seeded)).unwrap();
    let lag = Duration::from_millis(600);
    copy.set_replay_lag(lag);
    commit_some(&db, 0, 100);
    let target = db.pager().log().durable_lsn();
    let seen: std::cell::Cell<Option<std::time::Instant>> = std::cell::Cell::new(None);
    let held = std::cell::Cell::new(true);
    let until = |f: &Follower| {
        if f.replica().end() >= target && seen.get().is_none() {
            seen.set(Some(std::time::Instant::now()));
            let state = f.status().state;
            held.set(f.replayed() < target && matches!(state, CopyState::Lagged | CopyState::CatchingUp));
        }
        f.replayed() >= target
    };
    copy.session(&addr, Duration::from_secs(5), Some(&until)).unwrap();
    assert!(held.get(), "on arrival the log was not replayed yet");
    let waited = seen.get().unwrap().elapsed();
    assert!(
        waited + Duration::from_millis(100) >= lag,
        "replay waited {waited:?} of a {lag:?} lag"
    );
    // More log arrives; play-down replays it at once.
    commit_some(&db, 1000, 50);
    let target = db.pager().log().durable_lsn();
    let inspected = move |f: &Follower| f.replica().end() >= target;
    copy.session(&addr, Duration::from_secs(5), Some(&inspected)).unwrap();
    assert!(copy.replayed() < target, "the lag still holds");
    copy.play_down().unwrap();
    assert!(copy.replayed() >= target, "play-down replays everything received");
    stop.store(true, Ordering::Relaxed);
    server.join().unwrap();
}

fn generations(dir: &std::path::Path) -> Vec<u32> {
    let mut g: Vec<u32> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| mailvault::log::parse_generation_name(e.unwrap().file_name().to_str()?))
        .collect();
    g.sort_unstable();
    g
}

#[test]
fn a_truncation_lag_keeps_replayed_log_on_the_copy_until_it_expires() {
    let tmp = tempfile::tempdir().unwrap();
    let db = active_with_mail(tmp.path());
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let stop = Arc::new(AtomicBool::new(false));
    let server = serve(db.clone(), listener, stop.clone());
    let copy_dir = tmp.path().join("copy");
    let mut copy = Follower::open(Arc::new(OsVfs), &copy_dir, key(), 1 << 20).unwrap();
    copy.set_truncation_lag(Duration::from_secs(3600));
    commit_some(&db, 0, 20);
    let target = db.pager().log().durable_lsn();
    let caught_up = move |f: &Follower| f.replayed() >= target;
    copy.session(&addr, Duration::from_secs(5), Some(&caught_up)).unwrap();
    let first = generations(&copy_dir.join("log"))[0];
    commit_some(&db, 100, 400);
    let target = db.pager().log().durable_lsn();
    let caught_up = move |f: &Follower| f.replayed() >= target;
    copy.session(&addr, Duration::from_secs(5), Some(&caught_up)).unwrap();
    let held = generations(&copy_dir.join("log"));
    assert!(target.generation() >= first + 3, "{target} from generation {first}");
    assert_eq!(held[0], first, "the lag holds every replayed generation: {held:?}");
    // With the lag gone, the next clean end of a session removes them.
    copy.set_truncation_lag(Duration::ZERO);
    commit_some(&db, 2000, 5);
    let target = db.pager().log().durable_lsn();
    let caught_up = move |f: &Follower| f.replayed() >= target;
    copy.session(&addr, Duration::from_secs(5), Some(&caught_up)).unwrap();
    let left = generations(&copy_dir.join("log"));
    assert!(left[0] > first + 2, "{left:?} after replaying to {target}");
    stop.store(true, Ordering::Relaxed);
    server.join().unwrap();
}

/// Serves copies one connection at a time with `registry` until `stop`;
/// returns each session's outcome.
fn serve_with(
    db: Arc<Database>,
    listener: TcpListener,
    stop: Arc<AtomicBool>,
    registry: Arc<CopyRegistry>,
) -> std::thread::JoinHandle<Vec<Result<(), String>>> {
    serving::serve_sessions(db, listener, stop, serving::ship_options(), registry)
}

#[test]
fn a_kept_registry_holds_a_copys_log_across_a_restart_of_the_active() {
    let tmp = tempfile::tempdir().unwrap();
    let vfs: mailvault::vfs::SharedVfs = Arc::new(OsVfs);
    let db = Arc::new(Database::create(vfs.clone(), tmp.path().join("active"), small_db()).unwrap());
    {
        let mut tx = db.begin_write();
        tx.create_table("mail").unwrap();
        tx.commit().unwrap();
    }
    commit_some(&db, 0, 100);
    let state = tmp.path().join("active/copies.state");
    let registry = Arc::new(CopyRegistry::persistent(vfs.clone(), state.clone(), None));
    assert_eq!(registry.restore(&*db), 0, "nothing saved yet");
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let stop = Arc::new(AtomicBool::new(false));
    let server = serve_with(db.clone(), listener, stop.clone(), registry.clone());
    let mut copy = Follower::open(vfs.clone(), tmp.path().join("copy"), key(), 1 << 20).unwrap();
    let target = db.pager().log().durable_lsn();
    let caught_up = move |f: &Follower| f.replayed() >= target;
    copy.session(&addr, Duration::from_secs(5), Some(&caught_up)).unwrap();
    let needs = copy.replica().next();
    // The active's serving stops and it closes, as in a restart. The
    // registry outlives the close: the closing checkpoint must not recycle
    // the log the copy still needs (`serve` and `load --serve` dropped it
    // first, and the restarted active told every copy to reseed).
    stop.store(true, Ordering::Relaxed);
    server.join().unwrap();
    commit_some(&db, 500, 400);
    Arc::try_unwrap(db)
        .unwrap_or_else(|_| panic!("the server is gone"))
        .close()
        .unwrap();
    drop(registry);
    let db = Arc::new(Database::open(vfs.clone(), tmp.path().join("active"), small_db()).unwrap());
    assert!(
        db.pager().log().first_generation() <= needs.generation(),
        "the close kept generation {} for the copy (the log starts at {})",
        needs.generation(),
        db.pager().log().first_generation()
    );
    // Restarted: the saved registry holds the copy's log again, so the
    // checkpoints below recycle nothing it needs.
    let registry = Arc::new(CopyRegistry::persistent(vfs.clone(), state, None));
    assert_eq!(registry.restore(&*db), 1, "the copy is known again");
    commit_some(&db, 1000, 400);
    db.checkpoint().unwrap();
    let redo = db.pager().checkpoint_header().redo_lsn;
    assert!(
        redo.generation() > needs.generation() + 1,
        "the checkpoint ({redo}) moved past what the copy needs ({needs})"
    );
    assert!(
        db.pager().log().first_generation() <= needs.generation(),
        "generation {} kept for the copy (the log starts at {})",
        needs.generation(),
        db.pager().log().first_generation()
    );
    // The copy resumes from its own position: no reseed.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let stop = Arc::new(AtomicBool::new(false));
    let server = serve_with(db.clone(), listener, stop.clone(), registry.clone());
    let target = db.pager().log().durable_lsn();
    let caught_up = move |f: &Follower| f.replayed() >= target;
    copy.session(&addr, Duration::from_secs(5), Some(&caught_up)).unwrap();
    assert_eq!(copy.status().state, CopyState::Healthy);
    stop.store(true, Ordering::Relaxed);
    server.join().unwrap();
}

/// An idle active whose log ends inside a partly filled frame (kept in a
/// shadow slot) sends that frame once, not over and over: this loop used
/// to keep a core busy on both sides whenever the active paused.
#[test]
fn an_idle_active_sends_its_open_tail_frame_once() {
    let tmp = tempfile::tempdir().unwrap();
    let db = active_with_mail(tmp.path());
    // Small commits: the log's end lies inside a frame.
    for i in 0..5u32 {
        let mut tx = db.begin_write();
        let t = tx.open_table("mail").unwrap();
        tx.put(&t, &i.to_be_bytes(), b"short").unwrap();
        tx.commit().unwrap();
    }
    let durable = db.pager().log().durable_lsn();
    assert_ne!(durable.offset() % 4096, 0, "the log ends inside a frame");
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let stop = Arc::new(AtomicBool::new(false));
    let registry = Arc::new(CopyRegistry::new());
    let server = serve_with(db.clone(), listener, stop.clone(), registry.clone());
    let mut copy = Follower::open(Arc::new(OsVfs), tmp.path().join("copy"), key(), 1 << 20).unwrap();
    let sent = || registry.all().iter().map(|(_, p)| p.sent_bytes).sum::<u64>();
    let caught_up: std::cell::Cell<Option<(std::time::Instant, u64)>> = std::cell::Cell::new(None);
    let idle = Duration::from_millis(600);
    let until = |f: &Follower| {
        if f.replica().end() >= durable && caught_up.get().is_none() {
            caught_up.set(Some((std::time::Instant::now(), sent())));
        }
        caught_up.get().is_some_and(|(at, _)| at.elapsed() >= idle)
    };
    copy.session(&addr, Duration::from_secs(5), Some(&until)).unwrap();
    let (_, sent_at_catch_up) = caught_up.get().unwrap();
    let sent_while_idle = sent() - sent_at_catch_up;
    // Nothing new was committed: at most the open frame again (one message
    // of one frame), never a stream of them.
    assert!(
        sent_while_idle <= 2 * (4096 + 64),
        "{sent_while_idle} bytes sent to a copy in {idle:?} of an idle active"
    );
    assert!(sent_at_catch_up > 0);
    stop.store(true, Ordering::Relaxed);
    server.join().unwrap();
}
