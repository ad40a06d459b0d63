//! A copy serving another: copy A follows the active; copy B is seeded
//! from A (not from the active) while writes go on, then follows A's log.
//! Both end page-identical to the active, and A keeps the log B still
//! needs.

use mailvault::log::{FrameSource, Lsn};
use mailvault::repl::{ClusterKey, CopyRegistry, Follower, ShipOptions, ShipSource, compare, serve_copy};
use mailvault::txn::{Database, DbOptions};
use mailvault::vfs::{OsVfs, SharedVfs};
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

const KEY: &[u8] = b"a cluster key for the tests, 32b";

fn key() -> ClusterKey {
    ClusterKey::new(KEY).unwrap()
}

fn options() -> DbOptions {
    let mut o = DbOptions {
        page_size: 4096,
        cache_bytes: 2 << 20,
        checkpoint_depth: 512 << 10,
        ..DbOptions::default()
    };
    o.log.generation_size = 512 << 10;
    o
}

fn fill(db: &Database, from: u32, n: u32) {
    for i in from..from + n {
        let mut tx = db.begin_write();
        let t = tx.open_table("mail").unwrap();
        let key = format!("k{:05}", i % 900);
        if i % 7 == 0 {
            tx.delete(&t, key.as_bytes()).unwrap();
        } else {
            tx.put(
                &t,
                key.as_bytes(),
                &vec![(i % 251) as u8; 200 + (i as usize * 53) % 7000],
            )
            .unwrap();
        }
        tx.commit().unwrap();
    }
}

/// Serves copies from `source` until `stop`, one thread per connection.
fn serve(source: Arc<dyn ShipSource>, stop: Arc<AtomicBool>) -> (String, std::thread::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    listener.set_nonblocking(true).unwrap();
    let handle = std::thread::spawn(move || {
        let registry = Arc::new(CopyRegistry::new());
        let opts = ShipOptions {
            heartbeat: Duration::from_millis(50),
            ..ShipOptions::default()
        };
        std::thread::scope(|s| {
            while !stop.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        stream.set_nonblocking(false).unwrap();
                        let (source, stop, registry, opts) = (source.clone(), &stop, registry.clone(), &opts);
                        s.spawn(move || {
                            let _ = serve_copy(source.as_ref(), stream, &key(), opts, stop, &registry);
                        });
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
    });
    (addr, handle)
}

/// An active holding `records` writes, served, and copy A seeded from it
/// and caught up.
struct ActiveAndCopyA {
    tmp: tempfile::TempDir,
    vfs: SharedVfs,
    db: Arc<Database>,
    stop_active: Arc<AtomicBool>,
    active_addr: String,
    active_server: std::thread::JoinHandle<()>,
    a_dir: std::path::PathBuf,
    a: Follower,
}

fn active_and_copy_a(records: u32) -> ActiveAndCopyA {
    let tmp = tempfile::tempdir().unwrap();
    let vfs: SharedVfs = Arc::new(OsVfs);
    let db = Arc::new(Database::create(vfs.clone(), tmp.path().join("active"), options()).unwrap());
    {
        let mut tx = db.begin_write();
        tx.create_table("mail").unwrap();
        tx.commit().unwrap();
    }
    fill(&db, 0, records);
    let stop_active = Arc::new(AtomicBool::new(false));
    let (active_addr, active_server) = serve(db.clone(), stop_active.clone());
    let a_dir = tmp.path().join("copy-a");
    let mut a = Follower::open(vfs.clone(), &a_dir, key(), 1 << 20).unwrap();
    let target = db.pager().log().durable_lsn();
    let caught_up = move |f: &Follower| f.replayed() >= target;
    a.session(&active_addr, Duration::from_secs(5), Some(&caught_up))
        .unwrap();
    ActiveAndCopyA {
        tmp,
        vfs,
        db,
        stop_active,
        active_addr,
        active_server,
        a_dir,
        a,
    }
}

/// Stops the active's server, checkpoints it, and checks every copy in
/// `dirs` page-identical to it.
fn stop_and_compare(
    vfs: &SharedVfs,
    root: &std::path::Path,
    db: &Database,
    stop: &AtomicBool,
    server: std::thread::JoinHandle<()>,
    dirs: &[&std::path::PathBuf],
) {
    stop.store(true, Ordering::Relaxed);
    server.join().unwrap();
    db.checkpoint().unwrap();
    for dir in dirs {
        let cmp = compare(vfs, &root.join("active"), dir).unwrap();
        assert!(cmp.identical(), "{}: pages differ: {:?}", dir.display(), cmp.differing);
    }
}

#[test]
fn a_copy_seeded_from_another_copy_follows_it_and_ends_identical() {
    // Copy A: seeded from the active, caught up, then serving copies.
    let ActiveAndCopyA {
        tmp,
        vfs,
        db,
        stop_active,
        active_addr,
        active_server,
        a_dir,
        mut a,
    } = active_and_copy_a(400);
    let a_source = a.source();
    assert!(a_source.ready());
    let stop_a_server = Arc::new(AtomicBool::new(false));
    let (a_addr, a_server) = serve(a_source.clone(), stop_a_server.clone());

    // Copy B: seeded from A, and caught up with it.
    let b_dir = tmp.path().join("copy-b");
    let mut b = Follower::open(vfs.clone(), &b_dir, key(), 1 << 20).unwrap();
    let a_end = a_source.durable();
    let with_a = move |f: &Follower| f.replayed() >= a_end;
    b.session(&a_addr, Duration::from_secs(5), Some(&with_a)).unwrap();
    assert_eq!(b.database, db.pager().signature().0);
    let b_needs = b.replica().next();

    // B is away; the active takes more writes and A follows them, then
    // checkpoints and truncates its log, which must keep what B needs.
    fill(&db, 1000, 500);
    let target = db.pager().log().durable_lsn();
    let caught_up = move |f: &Follower| f.replayed() >= target;
    a.session(&active_addr, Duration::from_secs(5), Some(&caught_up))
        .unwrap();
    let a_redo = a_source.seed_header().unwrap().redo_lsn;
    assert!(
        a_redo.generation() > b_needs.generation(),
        "A's checkpoint ({a_redo}) moved past what B needs ({b_needs}), so only B's hold keeps it"
    );
    assert!(
        a_source.first_generation() <= b_needs.generation(),
        "A kept generation {} for B (its log starts at {})",
        b_needs.generation(),
        a_source.first_generation()
    );

    // B resumes from its own position, from A, and catches up.
    let caught_up = move |f: &Follower| f.replayed() >= target;
    b.session(&a_addr, Duration::from_secs(10), Some(&caught_up)).unwrap();
    assert!(b.replayed() >= target);
    drop(b);
    stop_a_server.store(true, Ordering::Relaxed);
    a_server.join().unwrap();
    drop(a);
    stop_and_compare(&vfs, tmp.path(), &db, &stop_active, active_server, &[&a_dir, &b_dir]);
}

/// Copy A stops right after its source sealed a generation, before the next
/// one's header: A's log ends at the seal. Copy B, following A, received the
/// seal and so asks A for the first position of the next generation, past
/// A's durable end. A must take B on and ship once it has that generation,
/// not refuse B as needing a reseed.
#[test]
fn a_copy_that_received_the_seal_resumes_from_a_copy_that_has_no_next_generation_yet() {
    let ActiveAndCopyA {
        tmp,
        vfs,
        db,
        stop_active,
        active_addr,
        active_server,
        a_dir,
        mut a,
    } = active_and_copy_a(300);

    // The active rolls several generations; A takes them only up to the
    // first seal it meets.
    fill(&db, 1000, 400);
    let from = a.replica().next();
    let at_seal = move |f: &Follower| f.replica().next().offset() == 0 && f.replica().next() > from;
    a.session(&active_addr, Duration::from_secs(5), Some(&at_seal)).unwrap();
    let sealed_next = a.replica().next();
    assert_eq!(sealed_next.offset(), 0, "A stopped at a generation's start");
    let a_source = a.source();
    assert!(
        a_source.durable() < sealed_next && a_source.durable().generation() + 1 == sealed_next.generation(),
        "A's log ends at the seal of {} ({}), short of {sealed_next}",
        a_source.durable().generation(),
        a_source.durable()
    );

    let a_frames = FrameSource::new(vfs.clone(), a_source.log_dir());
    assert!(a_frames.sealed_at(a_source.durable()).unwrap());
    let short_of_seal = Lsn(a_source.durable().0 - 1);
    assert!(
        !a_frames.sealed_at(short_of_seal).unwrap(),
        "{short_of_seal} is not where the seal ends"
    );

    // B is seeded from A and takes everything A has: the seal included.
    let stop_a_server = Arc::new(AtomicBool::new(false));
    let (a_addr, a_server) = serve(a_source.clone(), stop_a_server.clone());
    let b_dir = tmp.path().join("copy-b");
    let mut b = Follower::open(vfs.clone(), &b_dir, key(), 1 << 20).unwrap();
    let with_a = move |f: &Follower| f.replica().next() == sealed_next;
    b.session(&a_addr, Duration::from_secs(5), Some(&with_a)).unwrap();
    assert_eq!(b.replica().next(), sealed_next);

    // B comes back while A still has no next generation: taken on.
    let accepted = |_: &Follower| true;
    b.session(&a_addr, Duration::from_secs(5), Some(&accepted))
        .expect("A takes B on at the start of the generation after its seal");
    assert_eq!(a_source.durable().generation() + 1, sealed_next.generation());

    // B connects first and waits at the next generation's start; only then
    // does A follow the active to its end, so A ships B that generation
    // while B's session is open. Both end identical.
    let target = db.pager().log().durable_lsn();
    let (accepted_tx, accepted_rx) = std::sync::mpsc::channel();
    let b_follows = {
        let a_addr = a_addr.clone();
        std::thread::spawn(move || {
            // `until` is first asked after the Accept.
            let until = move |f: &Follower| {
                let _ = accepted_tx.send(());
                f.replayed() >= target
            };
            b.session(&a_addr, Duration::from_secs(10), Some(&until)).unwrap();
            b
        })
    };
    accepted_rx.recv_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(
        a_source.durable().generation() + 1,
        sealed_next.generation(),
        "B waits at the start of a generation A does not have yet"
    );
    let caught_up = move |f: &Follower| f.replayed() >= target;
    a.session(&active_addr, Duration::from_secs(10), Some(&caught_up))
        .unwrap();
    let b = b_follows.join().unwrap();
    assert!(b.replayed() >= target);
    drop(b);
    stop_a_server.store(true, Ordering::Relaxed);
    a_server.join().unwrap();
    drop(a);
    stop_and_compare(&vfs, tmp.path(), &db, &stop_active, active_server, &[&a_dir, &b_dir]);
}
