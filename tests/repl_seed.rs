//! Seeding over TCP on loopback: a seed paced to a byte rate takes at
//! least as long as the rate says; a seed cut off part way (by a proxy
//! that drops the connection) resumes from the page it had saved, sends
//! only the rest, and the copy ends page-identical to the active.

#[path = "common/serving.rs"]
mod serving;

use mailvault::repl::wire::{self, Message};
use mailvault::repl::{CopyRegistry, CopyState, Follower, ShipOptions, compare};
use mailvault::txn::{Database, DbOptions};
use mailvault::vfs::{OsVfs, SharedVfs};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

const RATE: u64 = 4 << 20;

use serving::key;

fn options() -> DbOptions {
    let mut o = DbOptions {
        page_size: 4096,
        cache_bytes: 4 << 20,
        checkpoint_depth: 1 << 20,
        ..DbOptions::default()
    };
    o.log.generation_size = 1 << 20;
    o
}

fn fill(db: &Database, from: u32, n: u32) {
    for i in from..from + n {
        let mut tx = db.begin_write();
        let t = tx.open_table("mail").unwrap();
        tx.put(
            &t,
            format!("k{i:06}").as_bytes(),
            &vec![(i % 251) as u8; 3000 + (i as usize * 37) % 5000],
        )
        .unwrap();
        tx.commit().unwrap();
    }
}

/// Serves copies, one at a time, with seeds paced to `RATE`.
fn serve(db: Arc<Database>, listener: TcpListener, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    let opts = ShipOptions {
        seed_rate: Some(RATE),
        ..serving::ship_options()
    };
    let sessions = serving::serve_sessions(db, listener, stop, opts, Arc::new(CopyRegistry::new()));
    // A session's end (the copy leaving) is not under test.
    std::thread::spawn(move || {
        sessions.join().unwrap();
    })
}

/// What a proxy saw the active send.
#[derive(Default)]
struct Seen {
    passed: AtomicU64,
    seed_page_bytes: AtomicU64,
    seed_begun: AtomicBool,
    resumed_from: AtomicU64,
}

/// Passes what it reads from the active on to the copy, counting, until
/// `cut_after` bytes have passed.
struct Tee {
    from: TcpStream,
    to: TcpStream,
    cut_after: u64,
    seen: Arc<Seen>,
}

impl Read for Tee {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.seen.passed.load(Ordering::Relaxed) >= self.cut_after {
            return Err(std::io::Error::other("cut"));
        }
        let n = self.from.read(buf)?;
        self.seen.passed.fetch_add(n as u64, Ordering::Relaxed);
        self.to.write_all(&buf[..n])?;
        Ok(n)
    }
}

/// Forwards one connection to `target`, decoding what the active sends,
/// and drops it once `cut_after` bytes from the active have passed.
fn proxy_once(target: String, cut_after: u64, seen: Arc<Seen>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        let (client, _) = listener.accept().unwrap();
        let server = TcpStream::connect(&target).unwrap();
        let (mut c_in, mut s_out) = (client.try_clone().unwrap(), server.try_clone().unwrap());
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 16 << 10];
            while let Ok(n) = c_in.read(&mut buf) {
                if n == 0 || s_out.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        });
        let mut tee = Tee {
            from: server.try_clone().unwrap(),
            to: client.try_clone().unwrap(),
            cut_after,
            seen: seen.clone(),
        };
        while let Ok(msg) = wire::read_message(&mut tee) {
            match msg {
                Message::SeedBegin { .. } => seen.seed_begun.store(true, Ordering::Relaxed),
                Message::SeedResumed { first } => seen.resumed_from.store(u64::from(first), Ordering::Relaxed),
                Message::SeedPages { bytes, .. } => {
                    seen.seed_page_bytes.fetch_add(bytes.len() as u64, Ordering::Relaxed);
                }
                _ => {}
            }
        }
        let _ = client.shutdown(std::net::Shutdown::Both);
        let _ = server.shutdown(std::net::Shutdown::Both);
    });
    addr
}

/// An active database in `dir/active` on `vfs` holding an empty table "mail".
fn active_with_mail(vfs: &SharedVfs, dir: &std::path::Path) -> Arc<Database> {
    let db = Arc::new(Database::create(vfs.clone(), dir.join("active"), options()).unwrap());
    let mut tx = db.begin_write();
    tx.create_table("mail").unwrap();
    tx.commit().unwrap();
    db
}

#[test]
fn a_paced_seed_cut_part_way_resumes_from_its_saved_page_and_ends_identical() {
    let _ = tracing_subscriber::fmt().with_test_writer().try_init();
    let tmp = tempfile::tempdir().unwrap();
    let vfs: SharedVfs = Arc::new(OsVfs);
    let db = active_with_mail(&vfs, tmp.path());
    fill(&db, 0, 2000);
    db.checkpoint().unwrap();
    let file_bytes = u64::from(db.pager().page_count()) * 4096;
    assert!(file_bytes > 10 << 20, "{file_bytes} bytes");
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let stop = Arc::new(AtomicBool::new(false));
    let server = serve(db.clone(), listener, stop.clone());
    // Writes go on during the seed.
    let writer = {
        let db = db.clone();
        std::thread::spawn(move || fill(&db, 5000, 300))
    };

    // First session, through a proxy that cuts it after 60% of the file.
    let copy_dir = tmp.path().join("copy");
    let first = Arc::new(Seen::default());
    let via = proxy_once(addr.clone(), file_bytes * 6 / 10, first.clone());
    let mut copy = Follower::open(vfs.clone(), &copy_dir, key(), 1 << 20).unwrap();
    let started = Instant::now();
    let r = copy.session(&via, Duration::from_secs(5), None);
    let first_secs = started.elapsed().as_secs_f64();
    assert!(r.is_err(), "the cut session fails: {r:?}");
    assert_eq!(copy.status().state, CopyState::Seeding);
    let sent = first.passed.load(Ordering::Relaxed);
    let first_pages = first.seed_page_bytes.load(Ordering::Relaxed);
    assert!(first.seed_begun.load(Ordering::Relaxed));
    assert!(first_pages > file_bytes / 2, "{first_pages} bytes of pages passed");
    // Paced: the bytes that passed could not have passed faster.
    assert!(
        first_secs >= sent as f64 / RATE as f64 * 0.9,
        "{sent} bytes in {first_secs:.2} s at {RATE} B/s"
    );
    drop(copy);
    assert!(
        !copy_dir.join("data.mvdb").exists(),
        "no data file before the seed is whole"
    );
    let state = std::fs::read(copy_dir.join("seed.state")).unwrap();
    let saved = u64::from(u32::from_le_bytes(state[8..12].try_into().unwrap()));
    // Saved at least once a second: at most about a second of pages is lost.
    assert!(
        (saved - 2) * 4096 + 2 * RATE >= first_pages,
        "saved page {saved}, {first_pages} bytes of pages passed"
    );

    // Second session, reopened: resumes from the saved page; nothing
    // before it is sent again.
    let second = Arc::new(Seen::default());
    let via = proxy_once(addr.clone(), u64::MAX, second.clone());
    let mut copy = Follower::open(vfs.clone(), &copy_dir, key(), 1 << 20).unwrap();
    writer.join().unwrap();
    let target = db.pager().log().durable_lsn();
    let caught_up = move |f: &Follower| f.replayed() >= target;
    copy.session(&via, Duration::from_secs(10), Some(&caught_up)).unwrap();
    assert!(!second.seed_begun.load(Ordering::Relaxed), "no fresh seed");
    assert_eq!(second.resumed_from.load(Ordering::Relaxed), saved);
    let pages_now = u64::from(db.pager().page_count());
    let resent = second.seed_page_bytes.load(Ordering::Relaxed);
    assert!(
        resent > 0 && resent <= (pages_now - saved) * 4096,
        "{resent} bytes of pages after resuming at page {saved} of {pages_now}"
    );
    assert!(
        !copy_dir.join("seed.state").exists(),
        "the state goes once the seed is whole"
    );
    drop(copy);
    stop.store(true, Ordering::Relaxed);
    server.join().unwrap();
    db.checkpoint().unwrap();
    let cmp = compare(&vfs, &tmp.path().join("active"), &copy_dir).unwrap();
    assert!(cmp.identical(), "pages differ: {:?}", cmp.differing);
}

#[test]
fn a_disk_error_while_seeding_names_the_copy_file_and_a_retry_completes_the_seed() {
    let tmp = tempfile::tempdir().unwrap();
    let (db, listener, addr, stop) = active_listening(tmp.path(), 300);
    let server = serve(db.clone(), listener, stop.clone());
    let mut copies = Vec::new();
    // How many disk calls a whole seed takes: a probe copy stops at the
    // first moment it could (the seed done, streaming not begun).
    let seed_calls = {
        let sim = mailvault::vfs::SimVfs::new(2);
        let mut probe = Follower::open(sim.clone(), "/copy", key(), 1 << 20).unwrap();
        let from = sim.op_count();
        probe
            .session(&addr, Duration::from_secs(10), Some(&|_: &Follower| true))
            .unwrap();
        sim.op_count() - from
    };
    assert!(seed_calls > 20, "a seed of 300 rows takes {seed_calls} disk calls");
    // Each copy lives on a simulated disk that fails one call with EIO
    // somewhere in the seed (early, a quarter, half way, near the end, and
    // each of the last calls, where the seed is renamed into place and
    // opened); the next session completes it.
    // The calls at the end of a seed come in the same order every time;
    // every other one of the last 24 hits one of the two calls between
    // the rename and the removal of the saved state.
    let tail = (seed_calls.saturating_sub(24)..seed_calls).step_by(2);
    let points: Vec<u64> = [5, seed_calls / 4, seed_calls / 2, seed_calls * 9 / 10]
        .into_iter()
        .chain(tail)
        .collect();
    for (i, after) in points.into_iter().enumerate() {
        let sim = mailvault::vfs::SimVfs::new(3 + i as u64);
        let copy_vfs: SharedVfs = sim.clone();
        let mut copy = Follower::open(copy_vfs.clone(), "/copy", key(), 1 << 20).unwrap();
        sim.inject_at_op(sim.op_count() + after, mailvault::vfs::FaultKind::Eio);
        let err = copy
            .session(&addr, Duration::from_secs(10), None)
            .expect_err("the injected error ends the session");
        // A typed error of the copy's own files (database or log), naming
        // the file: not a connection error.
        let typed = matches!(
            &err,
            mailvault::repl::ReplError::Db(mailvault::pager::DbError::Io { .. })
                | mailvault::repl::ReplError::Db(mailvault::pager::DbError::Log(mailvault::log::LogError::Io { .. }))
                | mailvault::repl::ReplError::Log(mailvault::log::LogError::Io { .. })
        );
        assert!(typed && err.to_string().contains("/copy"), "call {after}: {err}");
        let target = db.pager().log().durable_lsn();
        let caught_up = move |f: &Follower| f.replayed() >= target;
        copy.session(&addr, Duration::from_secs(10), Some(&caught_up)).unwrap();
        drop(copy);
        copies.push(sim);
    }
    stop.store(true, Ordering::Relaxed);
    server.join().unwrap();
    let rows = {
        let rx = db.begin_read();
        let t = rx.open_table("mail").unwrap();
        rx.range(&t, std::ops::Bound::Unbounded, std::ops::Bound::Unbounded)
            .unwrap()
            .count()
    };
    assert_eq!(rows, 300);
    db.checkpoint().unwrap();
    for sim in copies {
        assert_copy_identical(tmp.path(), &sim, "a copy after a disk error");
    }
}

/// The data file of the copy in `/copy` on `sim` holds the same pages as
/// the active's in `dir/active` (pages 2 on; the headers differ).
fn assert_copy_identical(dir: &std::path::Path, sim: &mailvault::vfs::SimVfs, context: &str) {
    let active_file = std::fs::read(mailvault::pager::data_path(&dir.join("active"))).unwrap();
    let copy_file = sim
        .written_image(&mailvault::pager::data_path(std::path::Path::new("/copy")))
        .unwrap();
    let ps = 4096;
    let pages = active_file.len().min(copy_file.len()) / ps;
    let differing: Vec<usize> = (2..pages)
        .filter(|&n| active_file[n * ps..(n + 1) * ps] != copy_file[n * ps..(n + 1) * ps])
        .collect();
    assert!(differing.is_empty(), "{context}: pages differ: {differing:?}");
}

/// An active holding `rows` rows of mail, checkpointed, in `dir/active`,
/// and a listener for it: (database, listener, its address, a stop flag).
fn active_listening(dir: &std::path::Path, rows: u32) -> (Arc<Database>, TcpListener, String, Arc<AtomicBool>) {
    let vfs: SharedVfs = Arc::new(OsVfs);
    let db = active_with_mail(&vfs, dir);
    fill(&db, 0, rows);
    db.checkpoint().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    (db, listener, addr, Arc::new(AtomicBool::new(false)))
}

/// Serves copies with seeds paced to `rate` bytes per second, in frames
/// of `chunk` bytes.
fn serve_paced(db: Arc<Database>, listener: TcpListener, stop: Arc<AtomicBool>, rate: u64, chunk: usize) {
    let opts = ShipOptions {
        seed_rate: Some(rate),
        max_chunk: chunk,
        ..serving::ship_options()
    };
    serving::serve_sessions(db, listener, stop, opts, Arc::new(CopyRegistry::new()));
}

/// A copy on the simulated disk crashes at every sync of a seed, and at
/// calls spread over it (unsynced writes torn or lost, as the simulation
/// chooses), while the seed's receiver, writer and saver threads run; it
/// reopens, completes the seed (resuming it where its saved state allows)
/// and ends page-identical to the active.
#[test]
fn a_copy_crashed_at_every_sync_of_a_seed_completes_it_and_ends_identical() {
    use mailvault::vfs::{FaultKind, SimVfs, Vfs};
    use std::path::Path;
    let tmp = tempfile::tempdir().unwrap();
    let (db, listener, addr, stop) = active_listening(tmp.path(), 400);
    // About 0.6 s a seed: progress is saved twice in it.
    serve_paced(db.clone(), listener, stop.clone(), 8 << 20, 256 << 10);
    let stop_after_seed = |_: &Follower| true;
    let (syncs, ops) = {
        let sim = SimVfs::new(40);
        let mut probe = Follower::open(sim.clone(), "/copy", key(), 1 << 20).unwrap();
        let (s0, o0) = (sim.sync_count(), sim.op_count());
        probe
            .session(&addr, Duration::from_secs(10), Some(&stop_after_seed))
            .unwrap();
        (sim.sync_count() - s0, sim.op_count() - o0)
    };
    assert!(syncs >= 8 && ops > 40, "a seed makes {syncs} syncs in {ops} calls");
    let cases: Vec<(Option<u64>, Option<u64>)> = (0..syncs)
        .map(|n| (Some(n), None))
        .chain([ops / 5, ops / 2, ops * 4 / 5].map(|o| (None, Some(o))))
        .collect();
    let (mut resumed, mut fired) = (0, 0);
    for (i, &(at_sync, at_op)) in cases.iter().enumerate() {
        let context = format!("crash at sync {at_sync:?} / call {at_op:?} of the seed");
        let sim = SimVfs::new(50 + i as u64);
        let mut copy = Follower::open(sim.clone(), "/copy", key(), 1 << 20).unwrap();
        if let Some(n) = at_sync {
            sim.crash_at_sync(sim.sync_count() + n);
        }
        if let Some(n) = at_op {
            sim.inject_at_op(sim.op_count() + n, FaultKind::Crash);
        }
        // Saves go by time, so a seed's syncs vary by a few: the last
        // points may fall after this one's end.
        let first = copy.session(&addr, Duration::from_secs(10), Some(&stop_after_seed));
        assert_eq!(first.is_err(), sim.is_crashed(), "{context}: {first:?}");
        fired += usize::from(sim.is_crashed());
        drop(copy);
        sim.crash();
        sim.clear_faults();
        sim.restart();
        let partial = ["/copy/seed.state", "/copy/data.mvdb.seeding"];
        if partial.iter().all(|p| sim.exists(Path::new(p)).unwrap()) {
            resumed += 1;
        }
        let mut copy = Follower::open(sim.clone(), "/copy", key(), 1 << 20)
            .unwrap_or_else(|e| panic!("{context}: the copy does not reopen: {e}"));
        let target = db.pager().log().durable_lsn();
        let caught_up = move |f: &Follower| f.replayed() >= target;
        copy.session(&addr, Duration::from_secs(10), Some(&caught_up))
            .unwrap_or_else(|e| panic!("{context}: the next session fails: {e}"));
        drop(copy);
        assert_copy_identical(tmp.path(), &sim, &context);
    }
    assert!(fired + 3 >= cases.len(), "{fired} of {} crashes fired", cases.len());
    // Crashes after the first saved state leave a seed to resume.
    assert!(resumed >= 2, "{resumed} of {fired} crashes left a seed to resume");
    stop.store(true, Ordering::Relaxed);
}
