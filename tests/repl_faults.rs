//! Replication through a fault-injecting TCP proxy: each connection from
//! the copy to the active suffers one fault in the active's stream (a
//! flipped byte, a cut, a duplicated stretch, or a stall) at a random
//! point. The copy must notice every damaged frame (nothing corrupt is
//! written or replayed), reconnect, resume from its own position, and end
//! page-identical to the active.

use mailvault::log::Lsn;
use mailvault::repl::{ClusterKey, CopyRegistry, Follower, ReplError, ShipOptions, compare, serve_copy};
use mailvault::txn::{Database, DbOptions};
use mailvault::vfs::sim::SimRng;
use mailvault::vfs::{OsVfs, SharedVfs};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

const KEY: &[u8] = b"a cluster key for the fault tests";

#[derive(Clone, Copy, Debug)]
enum Fault {
    Flip,
    Cut,
    Duplicate,
    Stall,
    None,
}

/// Forwards `from` to `to`, applying `fault` once `at` bytes have passed.
fn pump(mut from: TcpStream, mut to: TcpStream, fault: Fault, at: u64, rng: &mut SimRng) {
    let mut buf = vec![0u8; 16 << 10];
    let mut passed = 0u64;
    let mut done = false;
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let chunk = &mut buf[..n];
        if !done && passed + n as u64 > at {
            done = true;
            let i = (at - passed) as usize;
            match fault {
                Fault::Flip => chunk[i] ^= 1 << rng.below(8),
                Fault::Cut => {
                    let _ = to.write_all(&chunk[..i]);
                    break;
                }
                Fault::Duplicate => {
                    let _ = to.write_all(&chunk[..i]);
                    let _ = to.write_all(&chunk[..i]);
                    passed += n as u64;
                    if to.write_all(&chunk[i..]).is_err() {
                        break;
                    }
                    continue;
                }
                Fault::Stall => std::thread::sleep(Duration::from_millis(1500)),
                Fault::None => {}
            }
        }
        passed += n as u64;
        if to.write_all(chunk).is_err() {
            break;
        }
    }
    let _ = to.shutdown(std::net::Shutdown::Both);
    let _ = from.shutdown(std::net::Shutdown::Both);
}

fn proxy(listener: TcpListener, target: String, connections: Arc<AtomicU32>, stop: Arc<AtomicBool>) {
    listener.set_nonblocking(true).unwrap();
    let mut rng = SimRng::new(42);
    while !stop.load(Ordering::Relaxed) {
        let Ok((client, _)) = listener.accept() else {
            std::thread::sleep(Duration::from_millis(2));
            continue;
        };
        client.set_nonblocking(false).unwrap();
        let n = connections.fetch_add(1, Ordering::Relaxed);
        let fault = if n >= 12 {
            Fault::None
        } else {
            [Fault::Flip, Fault::Flip, Fault::Cut, Fault::Duplicate, Fault::Stall][rng.below(5) as usize]
        };
        let at = 200 + rng.below(400_000);
        let server = TcpStream::connect(&target).unwrap();
        let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
        let mut r1 = rng.clone();
        std::thread::spawn(move || pump(c2, s2, Fault::None, u64::MAX, &mut r1));
        let mut r2 = SimRng::new(u64::from(n));
        std::thread::spawn(move || pump(server, client, fault, at, &mut r2));
    }
}

#[test]
fn damaged_streams_are_detected_and_the_copy_still_ends_identical() {
    let tmp = tempfile::tempdir().unwrap();
    let mut o = DbOptions {
        page_size: 4096,
        cache_bytes: 1 << 20,
        ..DbOptions::default()
    };
    o.log.generation_size = 512 << 10;
    let db = Arc::new(Database::create(Arc::new(OsVfs), tmp.path().join("active"), o).unwrap());
    {
        let mut tx = db.begin_write();
        tx.create_table("t").unwrap();
        tx.commit().unwrap();
    }
    for i in 0..600u32 {
        let mut tx = db.begin_write();
        let t = tx.open_table("t").unwrap();
        tx.put(
            &t,
            format!("k{:04}", i % 400).as_bytes(),
            &vec![i as u8; 200 + (i as usize * 53) % 6000],
        )
        .unwrap();
        tx.commit().unwrap();
    }
    let stop = Arc::new(AtomicBool::new(false));
    let active = TcpListener::bind("127.0.0.1:0").unwrap();
    let active_addr = active.local_addr().unwrap().to_string();
    let server = {
        let (db, stop) = (db.clone(), stop.clone());
        active.set_nonblocking(true).unwrap();
        std::thread::spawn(move || {
            let registry = Arc::new(CopyRegistry::new());
            let key = ClusterKey::new(KEY).unwrap();
            let opts = ShipOptions {
                max_chunk: 64 << 10,
                heartbeat: Duration::from_millis(50),
                timeout: Duration::from_secs(2),
                ..ShipOptions::default()
            };
            while !stop.load(Ordering::Relaxed) {
                match active.accept() {
                    Ok((s, _)) => {
                        s.set_nonblocking(false).unwrap();
                        let (db, stop, key, opts) = (db.clone(), stop.clone(), key.clone(), opts.clone());
                        // Sessions run on their own threads: a stalled one
                        // must not hold up the next connection.
                        let registry = registry.clone();
                        std::thread::spawn(move || {
                            let _ = serve_copy(&*db, s, &key, &opts, &stop, &registry);
                        });
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(2)),
                }
            }
        })
    };
    let proxy_listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let proxy_addr = proxy_listener.local_addr().unwrap().to_string();
    let connections = Arc::new(AtomicU32::new(0));
    let proxy_thread = {
        let (c, s) = (connections.clone(), stop.clone());
        std::thread::spawn(move || proxy(proxy_listener, active_addr, c, s))
    };
    let copy_dir = tmp.path().join("copy");
    let mut failures = Vec::new();
    let target = db.pager().log().durable_lsn();
    loop {
        let mut copy = Follower::open(Arc::new(OsVfs), &copy_dir, ClusterKey::new(KEY).unwrap(), 1 << 20).unwrap();
        let done = move |f: &Follower| f.replayed() >= target;
        match copy.session(&proxy_addr, Duration::from_secs(1), Some(&done)) {
            Ok(()) => break,
            Err(e) => failures.push(e),
        }
        assert!(failures.len() < 40, "no progress: {failures:?}");
    }
    if std::env::var("SHOW_FAULTS").is_ok() {
        for f in &failures {
            eprintln!("{f}");
        }
    }
    let checksum = failures
        .iter()
        .filter(|e| matches!(e, ReplError::Wire(_) | ReplError::Db(_) | ReplError::Log(_)))
        .count();
    assert!(failures.len() >= 6, "faults struck: {failures:?}");
    assert!(checksum >= 1, "a damaged frame was caught: {failures:?}");
    stop.store(true, Ordering::Relaxed);
    proxy_thread.join().unwrap();
    server.join().unwrap();
    db.checkpoint().unwrap();
    let vfs: SharedVfs = Arc::new(OsVfs);
    let cmp = compare(&vfs, &tmp.path().join("active"), &copy_dir).unwrap();
    assert!(cmp.identical(), "{cmp:?}");
    assert!(Lsn::ZERO < target);
}
