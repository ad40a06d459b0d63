//! An active and a passive copy on loopback, in one process: writers
//! deliver mail to the active while it seeds an empty copy and ships it the
//! log; the copy replays it. Queue lengths are printed as they move; once
//! the writers stop, the copy catches up, the two are compared page by page,
//! and the copy is opened as a store of its own and verified.
//!
//! cargo run --release --example ha_pair

use mailvault::log::Lsn;
use mailvault::mailbox::workload::MailGenerator;
use mailvault::mailbox::{AppendOptions, MailView, Quota, Store, StoreOptions};
use mailvault::repl::{ClusterKey, CopyRegistry, CopyStatus, Follower, ShipOptions, compare, serve_copy};
use mailvault::vfs::{OsVfs, SharedVfs};
use parking_lot::Mutex;
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

const WRITERS: u64 = 4;
const MESSAGES: u64 = 1200;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let tmp = tempfile::tempdir()?;
    let (active_dir, copy_dir) = (tmp.path().join("active"), tmp.path().join("passive"));
    let vfs: SharedVfs = Arc::new(OsVfs);
    let key = ClusterKey::new(b"example cluster key, keep it secret")?;
    let store = Arc::new(Store::create(vfs.clone(), &active_dir, StoreOptions::default())?);
    for user in ["alice", "bob", "carol", "dave"] {
        store.create_mailbox(user, Quota::default())?;
    }

    // The active's replication listener.
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?.to_string();
    let stop = Arc::new(AtomicBool::new(false));
    let registry = Arc::new(CopyRegistry::new());
    let server = {
        let (store, key, stop, registry) = (store.clone(), key.clone(), stop.clone(), registry.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { break };
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                if let Err(e) = serve_copy(
                    store.database(),
                    stream,
                    &key,
                    &ShipOptions::default(),
                    &stop,
                    &registry,
                ) {
                    eprintln!("active: a session ended: {e}");
                }
            }
        })
    };

    // Writers: realistic mail, one durable transaction per message.
    let delivered = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let (store, delivered) = (store.clone(), delivered.clone());
            std::thread::spawn(move || -> Result<(), mailvault::mailbox::MailError> {
                let mut generator = MailGenerator::new(w);
                let user = ["alice", "bob", "carol", "dave"][w as usize];
                for _ in 0..MESSAGES / WRITERS {
                    let m = generator.message();
                    let opts = AppendOptions {
                        internal_date: m.internal_date,
                        ..AppendOptions::default()
                    };
                    store.append(user, "INBOX", &opts, &m.bytes)?;
                    delivered.fetch_add(m.bytes.len() as u64, Ordering::Relaxed);
                }
                Ok(())
            })
        })
        .collect();

    // The passive copy: empty, so it is seeded first, while the writers run.
    let status: Arc<Mutex<Option<CopyStatus>>> = Arc::default();
    let target = Arc::new(AtomicU64::new(u64::MAX));
    let follower = {
        let (vfs, key, addr, status, target) = (vfs.clone(), key.clone(), addr.clone(), status.clone(), target.clone());
        let copy_dir = copy_dir.clone();
        std::thread::spawn(move || -> Result<Follower, mailvault::repl::ReplError> {
            let mut copy = Follower::open(
                vfs,
                &copy_dir,
                key,
                mailvault::pager::PagerOptions::default().cache_bytes,
            )?;
            let until = |f: &Follower| {
                *status.lock() = Some(f.status());
                f.replayed().0 >= target.load(Ordering::Relaxed)
            };
            copy.session(&addr, Duration::from_secs(10), Some(&until))?;
            Ok(copy)
        })
    };

    println!(
        "{:>6}  {:>10}  {:>12}  {:>12}  {:>12}  {:>11}  {:>11}  state",
        "time", "delivered", "active end", "inspected", "replayed", "copy queue", "replay queue"
    );
    let show = |status: &Mutex<Option<CopyStatus>>, delivered: u64| {
        let durable = store.database().pager().log().durable_lsn();
        match &*status.lock() {
            Some(s) => println!(
                "{:>5.1}s  {:>8.1}MB  {:>12}  {:>12}  {:>12}  {:>9}KB  {:>9}KB  {:?}",
                started.elapsed().as_secs_f64(),
                delivered as f64 / 1e6,
                durable.to_string(),
                s.inspected.to_string(),
                s.replayed.to_string(),
                s.copy_queue_bytes / 1024,
                s.replay_queue_bytes / 1024,
                s.state
            ),
            None => println!(
                "{:>5.1}s  {:>8.1}MB  {:>12}  (connecting)",
                started.elapsed().as_secs_f64(),
                delivered as f64 / 1e6,
                durable.to_string()
            ),
        }
    };
    while writers.iter().any(|w| !w.is_finished()) {
        std::thread::sleep(Duration::from_millis(250));
        show(&status, delivered.load(Ordering::Relaxed));
    }
    for w in writers {
        w.join().map_err(|_| "a writer panicked")??;
    }
    let end: Lsn = store.database().pager().log().durable_lsn();
    target.store(end.0, Ordering::Relaxed);
    println!(
        "writers done after {:.1}s; the copy catches up to {end}",
        started.elapsed().as_secs_f64()
    );
    while !follower.is_finished() {
        std::thread::sleep(Duration::from_millis(100));
        show(&status, delivered.load(Ordering::Relaxed));
    }
    let copy = follower.join().map_err(|_| "the follower panicked")??;
    println!("copy status: {:?}", copy.status());
    for (id, p) in registry.all() {
        println!(
            "active's view of copy {:02x?}..: shipped {} inspected {} replayed {}",
            &id[..4],
            p.shipped,
            p.inspected,
            p.replayed
        );
    }
    drop(copy);

    // Page by page, at the same LSN: nothing commits any more; checkpoint.
    store.database().checkpoint()?;
    let cmp = compare(&vfs, &active_dir, &copy_dir)?;
    println!(
        "compare: {} pages, {} differ; identical: {}",
        cmp.pages,
        cmp.differing.len(),
        cmp.identical()
    );
    stop.store(true, Ordering::Relaxed);
    let _ = std::net::TcpStream::connect(&addr);
    server.join().map_err(|_| "the server panicked")?;
    if !cmp.identical() {
        return Err(format!("the copy differs from the active: pages {:?}", cmp.differing).into());
    }

    // The copy is a whole store: open it (as a failover would) and verify.
    let passive = Store::open(vfs, &copy_dir, StoreOptions::default())?;
    let report = passive.verify()?;
    let rx = passive.read();
    let inbox = rx.folder_info("alice", "INBOX")?;
    println!(
        "the copy opened as a store: {} messages, {} bodies, {} problems; alice's INBOX holds {} messages",
        report.messages,
        report.bodies,
        report.problems.len(),
        inbox.messages
    );
    Ok(())
}
