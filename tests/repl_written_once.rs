//! Replication and large values written once. While a copy (or a seed)
//! holds the active's log, long values go through the log, so a copy gets
//! every page it replays from the stream. Values written once before a copy
//! pinned the log are replayed from the seeded file: the copy ends
//! page-identical. A copy that resumes into log written while nobody held
//! it finds a page it was never sent: it reports needs-reseed, replays
//! nothing wrong, and a reseed brings it back.

#[path = "common/serving.rs"]
mod serving;

use mailvault::log::{LogReader, Lsn};
use mailvault::pager::redo::{DbRecord, PageChange};
use mailvault::pager::{data_path, log_dir};
use mailvault::repl::{CopyRegistry, CopyState, Follower, ReplError};
use mailvault::txn::{Database, DbOptions};
use mailvault::vfs::OsVfs;
use std::net::TcpListener;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

const PS: usize = 4096;

/// No checkpoint and no truncation behind the test's back.
fn options() -> DbOptions {
    let mut o = DbOptions {
        page_size: PS,
        cache_bytes: 4 << 20,
        checkpoint_depth: 256 << 20,
        ..DbOptions::default()
    };
    o.log.generation_size = 1 << 20;
    o
}

fn put_long(db: &Database, from: u32, n: u32) {
    for i in from..from + n {
        let mut tx = db.begin_write();
        let t = tx.open_table("mail").unwrap();
        tx.put(
            &t,
            format!("m{i:05}").as_bytes(),
            &vec![(i % 251) as u8; 9_000 + i as usize * 61 % 20_000],
        )
        .unwrap();
        tx.commit().unwrap();
    }
}

fn active(dir: &Path) -> Arc<Database> {
    let db = Arc::new(Database::create(Arc::new(OsVfs), dir.join("active"), options()).unwrap());
    let mut tx = db.begin_write();
    tx.create_table("mail").unwrap();
    tx.commit().unwrap();
    db
}

/// Pages the log in `dir` names as written once.
fn written_in_log(dir: &Path) -> usize {
    let reader = LogReader::new(Arc::new(OsVfs), log_dir(dir), Lsn::ZERO, Lsn::MAX).unwrap();
    reader
        .map(|r| r.unwrap())
        .filter_map(|r| match DbRecord::decode(&r.data, PS) {
            Ok(DbRecord::Commit { changes, .. }) => Some(changes),
            _ => None,
        })
        .map(|changes| {
            changes
                .iter()
                .filter(|(_, c)| matches!(c, PageChange::Written { .. }))
                .count()
        })
        .sum()
}

/// Pages 2.. that differ between the two data files, after both checkpointed.
fn differing(a: &Path, b: &Path, pages: usize) -> Vec<usize> {
    let (x, y) = (
        std::fs::read(data_path(a)).unwrap(),
        std::fs::read(data_path(b)).unwrap(),
    );
    (2..pages)
        .filter(|&n| x[n * PS..(n + 1) * PS] != y[n * PS..(n + 1) * PS])
        .collect()
}

struct Server {
    stop: Arc<AtomicBool>,
    handle: std::thread::JoinHandle<Vec<Result<(), String>>>,
    addr: String,
}

fn serve(db: &Arc<Database>) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let stop = Arc::new(AtomicBool::new(false));
    // A registry of its own: dropped with the server, with its holds.
    let handle = serving::serve_sessions(
        db.clone(),
        listener,
        stop.clone(),
        serving::ship_options(),
        Arc::new(CopyRegistry::new()),
    );
    Server { stop, handle, addr }
}

impl Server {
    fn end(self) -> Vec<Result<(), String>> {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.join().unwrap()
    }
}

fn catch_up(copy: &mut Follower, db: &Database, addr: &str) -> Result<(), ReplError> {
    let target = db.pager().log().durable_lsn();
    let done = move |f: &Follower| f.replayed() >= target;
    copy.session(addr, Duration::from_secs(5), Some(&done))
}

/// The copy follows: neither failed nor waiting for a reseed.
fn assert_following(copy: &Follower) {
    let status = copy.status();
    assert!(
        matches!(status.state, CopyState::Healthy | CopyState::CatchingUp),
        "{status:?}"
    );
}

#[test]
fn values_written_once_before_a_seed_are_replayed_from_the_seeded_file() {
    let tmp = tempfile::tempdir().unwrap();
    let db = active(tmp.path());
    put_long(&db, 0, 40);
    let once = db.pager().pages_written_once();
    assert!(once > 80, "{once} pages written once");
    let server = serve(&db);
    let copy_dir = tmp.path().join("copy");
    let mut copy = Follower::open(Arc::new(OsVfs), &copy_dir, serving::key(), 4 << 20).unwrap();
    copy.set_truncation_lag(Duration::from_secs(3600));
    catch_up(&mut copy, &db, &server.addr).unwrap();
    // While the copy holds the log, values go through it.
    put_long(&db, 100, 20);
    assert_eq!(db.pager().pages_written_once(), once, "written once under a hold");
    catch_up(&mut copy, &db, &server.addr).unwrap();
    assert_following(&copy);
    // The copy's log holds the records that name pages written once: it
    // replayed them against the pages its seed brought.
    assert!(written_in_log(&copy_dir) > 0, "the copy replayed no page written once");
    drop(copy);
    server.end();
    db.checkpoint().unwrap();
    let pages = db.pager().page_count() as usize;
    assert!(pages > 100, "{pages} pages");
    let diff = differing(&tmp.path().join("active"), &copy_dir, pages);
    assert!(diff.is_empty(), "pages differ: {diff:?}");
}

#[test]
fn a_copy_that_resumes_into_values_written_once_needs_a_reseed_and_gets_one() {
    let tmp = tempfile::tempdir().unwrap();
    let db = active(tmp.path());
    put_long(&db, 0, 10);
    let copy_dir = tmp.path().join("copy");
    let mut copy = Follower::open(Arc::new(OsVfs), &copy_dir, serving::key(), 4 << 20).unwrap();
    let server = serve(&db);
    catch_up(&mut copy, &db, &server.addr).unwrap();
    // The active stops serving: nobody holds its log, and it writes once.
    let outcomes = server.end();
    assert!(outcomes.iter().all(|o| o.is_ok()), "{outcomes:?}");
    let once = db.pager().pages_written_once();
    put_long(&db, 200, 10);
    assert!(
        db.pager().pages_written_once() > once,
        "no value written once while unheld"
    );
    // Serving again, with the log still there: the copy resumes into it.
    let server = serve(&db);
    let replayed_before = copy.replayed();
    // Met in the session, or at the checkpoint that ends replay (redo waits
    // for a later image that could repair an unreadable page).
    let err = match catch_up(&mut copy, &db, &server.addr) {
        Err(e) => e,
        Ok(()) => copy.play_down().expect_err("the copy lacks pages written once"),
    };
    assert!(
        matches!(err, ReplError::Db(mailvault::pager::DbError::NotWritten { .. })),
        "{err:?}"
    );
    let status = copy.status();
    assert_eq!(status.state, CopyState::NeedsReseed, "{status:?}");
    assert!(
        status.reason.as_deref().is_some_and(|r| r.contains("does not hold")),
        "{status:?}"
    );
    assert!(copy.replayed() >= replayed_before);
    // A reseed brings it back, page-identical.
    copy.reset().unwrap();
    catch_up(&mut copy, &db, &server.addr).unwrap();
    assert_following(&copy);
    drop(copy);
    server.end();
    db.checkpoint().unwrap();
    let pages = db.pager().page_count() as usize;
    let diff = differing(&tmp.path().join("active"), &copy_dir, pages);
    assert!(diff.is_empty(), "pages differ: {diff:?}");
}
