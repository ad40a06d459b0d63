//! Log shipping over TCP on loopback: an active database under concurrent
//! commits serves a copy, which receives its log into a directory of its
//! own; the copy's log then reads back as exactly the active's records. A
//! wrong key and a copy of another database are refused before any log
//! byte is sent, and a copy reconnecting resumes from its own position.

use mailvault::log::{LogReader, Lsn};
use mailvault::repl::{ClusterKey, CopyRegistry, Follower, ReplError, ShipOptions, serve_copy};
use mailvault::txn::{Database, DbOptions};
use mailvault::vfs::OsVfs;
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

const KEY: &[u8] = b"a cluster key for the tests, 32b";

fn small_db() -> DbOptions {
    let mut o = DbOptions {
        page_size: 4096,
        cache_bytes: 1 << 20,
        checkpoint_depth: 256 << 10,
        ..DbOptions::default()
    };
    o.log.generation_size = 512 << 10;
    o
}

/// Serves copies one connection at a time until `stop`.
fn serve(
    db: Arc<Database>,
    listener: TcpListener,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<Vec<Result<(), String>>> {
    listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        let mut outcomes = Vec::new();
        let registry = CopyRegistry::new();
        let opts = ShipOptions {
            heartbeat: Duration::from_millis(50),
            ..ShipOptions::default()
        };
        while !stop.load(Ordering::Relaxed) {
            match listener.accept() {
                Ok((stream, _)) => {
                    stream.set_nonblocking(false).unwrap();
                    let r = serve_copy(&db, stream, &ClusterKey::new(KEY).unwrap(), &opts, &stop, &registry);
                    outcomes.push(r.map_err(|e| e.to_string()));
                }
                Err(_) => std::thread::sleep(Duration::from_millis(5)),
            }
        }
        outcomes
    })
}

fn commit_some(db: &Database, from: u32, n: u32) {
    for i in from..from + n {
        let mut tx = db.begin_write();
        let t = tx.open_table("mail").unwrap();
        tx.put(
            &t,
            format!("k{i:05}").as_bytes(),
            &vec![i as u8; 100 + (i as usize * 37) % 3000],
        )
        .unwrap();
        tx.commit().unwrap();
    }
}

fn records(dir: &std::path::Path, limit: Lsn) -> Vec<(Lsn, Vec<u8>)> {
    LogReader::new(Arc::new(OsVfs), dir, Lsn::ZERO, limit)
        .unwrap()
        .map(|r| {
            let r = r.unwrap();
            (r.lsn, r.data)
        })
        .collect()
}

#[test]
fn a_copy_receives_the_log_under_load_and_resumes_after_a_break() {
    let tmp = tempfile::tempdir().unwrap();
    let db = Arc::new(Database::create(Arc::new(OsVfs), tmp.path().join("active"), small_db()).unwrap());
    {
        let mut tx = db.begin_write();
        tx.create_table("mail").unwrap();
        tx.commit().unwrap();
    }
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let stop = Arc::new(AtomicBool::new(false));
    let server = serve(db.clone(), listener, stop.clone());
    let copy_dir = tmp.path().join("copy");
    let copy_log = copy_dir.join("log");
    let writers: Vec<_> = (0..3)
        .map(|w| {
            let db = db.clone();
            std::thread::spawn(move || commit_some(&db, w * 1000, 150))
        })
        .collect();
    // First session: stop part way, as a copy killed mid-stream would.
    let mut copy = Follower::open(Arc::new(OsVfs), &copy_dir, ClusterKey::new(KEY).unwrap()).unwrap();
    let first_stop = |f: &Follower| f.replica().end() > Lsn::new(1, 64 << 10);
    copy.session(&addr, Duration::from_secs(5), Some(&first_stop)).unwrap();
    let resumed_at = copy.replica().next();
    drop(copy);
    for w in writers {
        w.join().unwrap();
    }
    // Second session, from a reopened replica: resumes, then catches up.
    let mut copy = Follower::open(Arc::new(OsVfs), &copy_dir, ClusterKey::new(KEY).unwrap()).unwrap();
    assert_eq!(
        copy.replica().next(),
        resumed_at,
        "the copy resumes from its own position"
    );
    let target = db.pager().log().durable_lsn();
    let caught_up = move |f: &Follower| f.replica().end() >= target;
    copy.session(&addr, Duration::from_secs(5), Some(&caught_up)).unwrap();
    assert!(target.generation() >= 2, "the load crossed generations ({target})");
    // The active may have recycled its oldest generations since; every
    // record it still holds must be in the copy, at the same LSN.
    let active = records(&tmp.path().join("active/log"), target);
    let shipped = records(&copy_log, target);
    let from = shipped
        .iter()
        .position(|(lsn, _)| *lsn == active[0].0)
        .expect("the copy holds the active's oldest record");
    assert_eq!(shipped.len() - from, active.len());
    assert!(
        shipped[from..] == active[..],
        "the copy's log reads back as the active's records"
    );
    assert_eq!(shipped.last().map(|r| r.0), active.last().map(|r| r.0));
    stop.store(true, Ordering::Relaxed);
    let outcomes = server.join().unwrap();
    assert_eq!(outcomes.len(), 2, "{outcomes:?}");
}

#[test]
fn a_wrong_key_or_another_database_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let db = Arc::new(Database::create(Arc::new(OsVfs), tmp.path().join("a"), small_db()).unwrap());
    let other = Database::create(Arc::new(OsVfs), tmp.path().join("b"), small_db()).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let stop = Arc::new(AtomicBool::new(false));
    let server = serve(db.clone(), listener, stop.clone());

    let mut intruder = Follower::open(
        Arc::new(OsVfs),
        tmp.path().join("x"),
        ClusterKey::new(b"not the cluster key at all!!!!!!").unwrap(),
    )
    .unwrap();
    let err = intruder.session(&addr, Duration::from_secs(5), None).unwrap_err();
    assert!(matches!(err, ReplError::AuthFailed(_)), "{err:?}");
    assert_eq!(
        std::fs::read_dir(tmp.path().join("x/log")).unwrap().count(),
        0,
        "nothing was received"
    );

    // A copy that already holds another database's log.
    let ship_other = Arc::new(other);
    let listener2 = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr2 = listener2.local_addr().unwrap().to_string();
    let server2 = serve(ship_other.clone(), listener2, stop.clone());
    let mut copy = Follower::open(Arc::new(OsVfs), tmp.path().join("y"), ClusterKey::new(KEY).unwrap()).unwrap();
    let got_some = |f: &Follower| f.replica().end() > Lsn::ZERO;
    copy.session(&addr2, Duration::from_secs(5), Some(&got_some)).unwrap();
    let err = copy.session(&addr, Duration::from_secs(5), None).unwrap_err();
    assert!(matches!(err, ReplError::Refused { code: 2, .. }), "{err:?}");
    stop.store(true, Ordering::Relaxed);
    let outcomes = server.join().unwrap();
    assert!(outcomes.iter().all(|o| o.is_err()), "{outcomes:?}");
    server2.join().unwrap();
}
