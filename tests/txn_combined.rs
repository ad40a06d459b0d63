//! `Database::write`: transactions submitted from many threads and run by a
//! combiner. Each stays its own transaction: every acknowledged one is
//! there after a crash, a failing or panicking one rolls back alone, and the
//! classic `begin_write` path interleaves with it.

use mailvault::btree::Value;
use mailvault::log::LogOptions;
use mailvault::pager::DbError;
use mailvault::txn::{Database, DbOptions, Durability, Table};
use mailvault::vfs::{FaultKind, SimVfs};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

const DIR: &str = "/db";

fn opts() -> DbOptions {
    DbOptions {
        page_size: 4096,
        cache_bytes: 256 * 4096,
        checkpoint_depth: 512 << 10,
        log: LogOptions {
            generation_size: 1 << 20,
            ..LogOptions::default()
        },
        ..DbOptions::default()
    }
}

fn setup(seed: u64) -> (Arc<SimVfs>, Arc<Database>, Table) {
    let sim = SimVfs::new(seed);
    let db = Database::create(sim.clone(), DIR, opts()).expect("create");
    let mut tx = db.begin_write();
    let t = tx.create_table("t").expect("table");
    tx.commit().expect("commit");
    (sim, Arc::new(db), t)
}

fn key(thread: u64, i: u64) -> Vec<u8> {
    format!("t{thread:02}-{i:05}").into_bytes()
}

/// Runs `f(thread)` on `n` threads at once; their results in thread order.
fn on_threads<R: Send + 'static>(n: u64, f: impl Fn(u64) -> R + Send + Sync + 'static) -> Vec<R> {
    let f = Arc::new(f);
    let handles: Vec<_> = (0..n)
        .map(|th| {
            let f = f.clone();
            std::thread::spawn(move || f(th))
        })
        .collect();
    handles.into_iter().map(|h| h.join().expect("thread")).collect()
}

#[test]
fn every_acknowledged_combined_write_survives_a_crash() {
    let (sim, db, t) = setup(21);
    // Per thread: every write before this index was acknowledged durable
    // (a durable acknowledgement covers the thread's earlier lazy writes,
    // which precede it in the log).
    let acked: Arc<Vec<AtomicU64>> = Arc::new((0..8).map(|_| AtomicU64::new(0)).collect());
    let threads: Vec<_> = (0..8u64)
        .map(|th| {
            let (db, t, acked) = (db.clone(), t.clone(), acked.clone());
            std::thread::spawn(move || {
                for i in 0..150u64 {
                    let (t, k) = (t.clone(), key(th, i));
                    let v = (th * 1000 + i).to_le_bytes().to_vec();
                    let durability = if i % 3 == 0 {
                        Durability::Lazy
                    } else {
                        Durability::Durable
                    };
                    let got = db.write(durability, move |tx| {
                        tx.put(&t, &k, &v)?;
                        Ok(i)
                    });
                    assert_eq!(got.expect("write"), i, "the body's result comes back");
                    if durability == Durability::Durable {
                        acked[th as usize].store(i + 1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for h in threads {
        h.join().expect("writer thread");
    }
    // A power cut: whatever was not synced is dropped or torn.
    sim.crash();
    drop(db);
    sim.restart();
    let db = Database::open(sim, DIR, opts()).expect("reopen");
    let rx = db.begin_read();
    let t = rx.open_table("t").expect("table");
    for th in 0..8u64 {
        let through = acked[th as usize].load(Ordering::Relaxed);
        assert!(through >= 149, "the last durable write of thread {th} was acknowledged");
        for i in 0..150u64 {
            let v = rx.get(&t, &key(th, i)).expect("get");
            if i < through {
                assert_eq!(v, Some((th * 1000 + i).to_le_bytes().to_vec()), "thread {th} write {i}");
            } else if let Some(v) = v {
                assert_eq!(v, (th * 1000 + i).to_le_bytes().to_vec(), "thread {th} write {i}");
            }
        }
    }
}

#[test]
fn a_failing_body_rolls_back_alone() {
    let (_sim, db, t) = setup(22);
    let t2 = t.clone();
    let err = db
        .write(Durability::Durable, move |tx| {
            tx.put(&t2, b"half", b"done")?;
            Err::<(), _>(DbError::InvalidArgument("the caller changed its mind".into()))
        })
        .expect_err("the body's error is returned");
    assert!(
        matches!(err, DbError::InvalidArgument(ref m) if m.contains("changed its mind")),
        "{err:?}"
    );
    let t2 = t.clone();
    db.write(Durability::Durable, move |tx| tx.put(&t2, b"next", b"ok"))
        .expect("the next write");
    let rx = db.begin_read();
    assert_eq!(rx.get(&t, b"half").expect("get"), None, "rolled back");
    assert_eq!(rx.get(&t, b"next").expect("get"), Some(b"ok".to_vec()));
}

#[test]
fn a_panicking_body_panics_its_caller_and_changes_nothing() {
    let (_sim, db, t) = setup(23);
    let (db2, t2) = (db.clone(), t.clone());
    let caught = std::thread::spawn(move || {
        db2.write(Durability::Durable, move |tx| {
            tx.put(&t2, b"doomed", b"x")?;
            panic!("body panics");
            #[allow(unreachable_code)]
            Ok(())
        })
    })
    .join();
    let payload = caught.expect_err("the panic reaches the caller's thread");
    assert_eq!(payload.downcast_ref::<&str>(), Some(&"body panics"));
    let t2 = t.clone();
    db.write(Durability::Durable, move |tx| tx.put(&t2, b"after", b"ok"))
        .expect("the database goes on");
    let rx = db.begin_read();
    assert_eq!(rx.get(&t, b"doomed").expect("get"), None);
    assert_eq!(rx.get(&t, b"after").expect("get"), Some(b"ok".to_vec()));
}

#[test]
fn combined_and_classic_writers_interleave() {
    let (_sim, db, t) = setup(24);
    let threads: Vec<_> = (0..6u64)
        .map(|th| {
            let (db, t) = (db.clone(), t.clone());
            std::thread::spawn(move || {
                for i in 0..100u64 {
                    let k = key(th, i);
                    if th % 2 == 0 {
                        let mut tx = db.begin_write();
                        tx.put(&t, &k, b"classic").expect("put");
                        tx.commit().expect("commit");
                    } else {
                        let t = t.clone();
                        db.write(Durability::Durable, move |tx| tx.put(&t, &k, b"combined"))
                            .expect("write");
                    }
                }
            })
        })
        .collect();
    for h in threads {
        h.join().expect("writer thread");
    }
    let rx = db.begin_read();
    let mut n = 0;
    for entry in rx
        .range(&t, std::ops::Bound::Unbounded, std::ops::Bound::Unbounded)
        .expect("range")
    {
        let (k, v) = entry.expect("entry");
        let th = u64::from(k[1] - b'0') * 10 + u64::from(k[2] - b'0');
        let want: &[u8] = if th % 2 == 0 { b"classic" } else { b"combined" };
        assert_eq!(v, Value::Inline(want.to_vec()));
        n += 1;
    }
    assert_eq!(n, 600);
}

#[test]
fn a_stopped_database_fails_combined_writes_cleanly() {
    let (sim, db, t) = setup(25);
    // Every later call to the disk fails: the next durable commit stops the database.
    let now = sim.op_count();
    for op in now..now + 2000 {
        sim.inject_at_op(op, FaultKind::Eio);
    }
    let t2 = t.clone();
    let err = db
        .write(Durability::Durable, move |tx| tx.put(&t2, b"k", b"v"))
        .expect_err("the sync fails");
    assert!(matches!(err, DbError::Stopped { .. }), "{err:?}");
    let t2 = t.clone();
    let again = db
        .write(Durability::Durable, move |tx| tx.put(&t2, b"k2", b"v"))
        .expect_err("stopped");
    assert!(matches!(again, DbError::Stopped { .. }), "{again:?}");
}

/// Where a body ran: the writer thread's name, or the caller's.
fn runner() -> String {
    std::thread::current().name().unwrap_or("unnamed").to_string()
}

#[test]
fn an_uncontended_write_runs_on_its_callers_thread_and_contended_ones_on_the_writer_thread() {
    let (_sim, db, t) = setup(26);
    let t2 = t.clone();
    let alone = db
        .write(Durability::Durable, move |tx| {
            tx.put(&t2, b"alone", b"1")?;
            Ok(runner())
        })
        .expect("write");
    assert_eq!(alone, runner(), "nobody else was writing");
    // One body holds the writer lock for a while; the writes submitted
    // meanwhile go to the writer thread, each still its own transaction.
    let started = Arc::new(std::sync::Barrier::new(2));
    let (db2, t2, s2) = (db.clone(), t.clone(), started.clone());
    let slow = std::thread::spawn(move || {
        db2.write(Durability::Durable, move |tx| {
            s2.wait();
            std::thread::sleep(std::time::Duration::from_millis(100));
            tx.put(&t2, b"slow", b"1")?;
            Ok(runner())
        })
    });
    started.wait();
    let waiting: Vec<_> = (0..6u64)
        .map(|th| {
            let (db, t) = (db.clone(), t.clone());
            std::thread::spawn(move || {
                let k = key(th, 0);
                let durability = if th % 2 == 0 {
                    Durability::Durable
                } else {
                    Durability::Lazy
                };
                db.write(durability, move |tx| {
                    tx.put(&t, &k, b"queued")?;
                    Ok(runner())
                })
            })
        })
        .collect();
    let ran_on: Vec<String> = waiting
        .into_iter()
        .map(|h| h.join().expect("thread").expect("write"))
        .collect();
    assert_ne!(slow.join().expect("thread").expect("write"), "mailvault-writer");
    assert!(
        ran_on.iter().all(|name| name == "mailvault-writer"),
        "bodies queued behind a held lock run on the writer thread: {ran_on:?}"
    );
    // Readers see a lazy write once it is synced (a run under load found one
    // queued last, after the commit thread's sync): a durable write syncs it.
    let t3 = t.clone();
    db.write(Durability::Durable, move |tx| tx.put(&t3, b"after", b"1"))
        .expect("write");
    let rx = db.begin_read();
    for th in 0..6u64 {
        assert_eq!(rx.get(&t, &key(th, 0)).expect("get"), Some(b"queued".to_vec()));
    }
    assert_eq!(rx.get(&t, b"slow").expect("get"), Some(b"1".to_vec()));
}

#[test]
fn contended_bodies_that_fail_or_panic_roll_back_alone() {
    let (_sim, db, t) = setup(27);
    let (db2, t2) = (db.clone(), t.clone());
    on_threads(8, move |th| {
        for i in 0..60u64 {
            let (t, k) = (t2.clone(), key(th, i));
            let kind = (th + i) % 4;
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                db2.write(Durability::Durable, move |tx| {
                    tx.put(&t, &k, b"v")?;
                    match kind {
                        0 => Err(DbError::InvalidArgument(format!("refused {th} {i}"))),
                        1 => panic!("body {th} {i} panics"),
                        _ => Ok(kind),
                    }
                })
            }));
            match (kind, outcome) {
                (0, Ok(Err(DbError::InvalidArgument(m)))) => assert_eq!(m, format!("refused {th} {i}")),
                (1, Err(payload)) => assert_eq!(
                    payload.downcast_ref::<String>().map(String::as_str),
                    Some(format!("body {th} {i} panics").as_str())
                ),
                (k, Ok(Ok(got))) => assert_eq!(got, k),
                (k, other) => panic!("body kind {k} of {th}/{i} ended as {:?}", other.map(|r| r.err())),
            }
        }
    });
    let rx = db.begin_read();
    for th in 0..8u64 {
        for i in 0..60u64 {
            let want = ((th + i) % 4 >= 2).then(|| b"v".to_vec());
            assert_eq!(rx.get(&t, &key(th, i)).expect("get"), want, "thread {th} write {i}");
        }
    }
}

#[test]
fn a_failed_sync_under_contention_fails_every_waiting_write_and_the_threads_end() {
    let (sim, db, t) = setup(28);
    // Start the writer and commit threads with a first contended round.
    let round = |db: &Arc<Database>, tag: u64| -> Vec<Result<(), DbError>> {
        let (db, t) = (db.clone(), t.clone());
        on_threads(8, move |th| {
            (0..20u64)
                .map(|i| {
                    let (t, k) = (t.clone(), key(th, tag * 100 + i));
                    db.write(Durability::Durable, move |tx| tx.put(&t, &k, b"v"))
                })
                .collect::<Vec<_>>()
        })
        .into_iter()
        .flatten()
        .collect()
    };
    assert!(round(&db, 0).iter().all(Result::is_ok));
    let now = sim.op_count();
    for op in now..now + 20_000 {
        sim.inject_at_op(op, FaultKind::Eio);
    }
    let failed = round(&db, 1);
    assert!(
        failed.iter().all(|r| matches!(r, Err(DbError::Stopped { .. }))),
        "every write after the failed sync is refused: {:?}",
        failed.iter().find(|r| !matches!(r, Err(DbError::Stopped { .. })))
    );
    // Dropping the database joins its threads, which release the pager.
    let pager = db.pager().clone();
    drop(Arc::into_inner(db).expect("the only handle"));
    assert_eq!(Arc::strong_count(&pager), 1, "the writer and commit threads ended");
}

/// Eight threads write through the writer and commit threads until a power
/// cut at `crash` (a sync index or a call index) stops the database; after
/// recovery every acknowledged write is there and nothing else is changed.
/// Returns whether the crash struck during the writes.
fn crash_while_combining(seed: u64, crash: impl FnOnce(&SimVfs)) -> bool {
    fault_while_combining(seed, true, crash)
}

/// As above, for a fault that is a power cut (`power_cut`) or an I/O error
/// (then any error ends a thread's writes, and the database is closed by
/// dropping it, without a crash).
fn fault_while_combining(seed: u64, power_cut: bool, crash: impl FnOnce(&SimVfs)) -> bool {
    let (sim, db, t) = setup(seed);
    let acked: Arc<Vec<AtomicU64>> = Arc::new((0..8).map(|_| AtomicU64::new(0)).collect());
    crash(&sim);
    let (db2, t2, acked2) = (db.clone(), t.clone(), acked.clone());
    let struck = on_threads(8, move |th| {
        for i in 0..120u64 {
            let (t, k) = (t2.clone(), key(th, i));
            let v = (th * 1000 + i).to_le_bytes().to_vec();
            let durability = if i % 4 == 3 {
                Durability::Lazy
            } else {
                Durability::Durable
            };
            match db2.write(durability, move |tx| tx.put(&t, &k, &v)) {
                Ok(()) if durability == Durability::Durable => acked2[th as usize].store(i + 1, Ordering::Relaxed),
                Ok(()) => {}
                Err(DbError::Stopped { .. }) => return true,
                Err(_) if !power_cut => return true,
                Err(e) => panic!("thread {th} write {i}: {e:?}"),
            }
        }
        false
    })
    .contains(&true);
    if power_cut {
        sim.crash();
    }
    drop(db);
    sim.clear_faults();
    sim.restart();
    let db = Database::open(sim, DIR, opts()).expect("reopen after the fault");
    let rx = db.begin_read();
    let t = rx.open_table("t").expect("table");
    for th in 0..8u64 {
        let through = acked[th as usize].load(Ordering::Relaxed);
        let mut present = 0;
        for i in 0..120u64 {
            match rx.get(&t, &key(th, i)).expect("get") {
                Some(v) => {
                    assert_eq!(
                        v,
                        (th * 1000 + i).to_le_bytes().to_vec(),
                        "seed {seed}: thread {th} write {i}"
                    );
                    present += 1;
                }
                None => assert!(i >= through, "seed {seed}: acknowledged write {i} of thread {th} lost"),
            }
        }
        assert!(present >= through, "seed {seed}: thread {th}");
    }
    struck
}

#[test]
fn acknowledged_combined_writes_survive_a_crash_in_flight() {
    // MAILVAULT_CRASH_POINTS=N runs N crash points instead of 40.
    let points: u64 = std::env::var("MAILVAULT_CRASH_POINTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .map_or(40, |n: u64| n.max(2));
    let mut struck = 0;
    for n in 0..points {
        let hit = if n % 2 == 0 {
            crash_while_combining(100 + n, |sim| sim.crash_at_sync(sim.sync_count() + 2 + n % 40))
        } else {
            crash_while_combining(100 + n, |sim| {
                sim.inject_at_op(sim.op_count() + 20 + (n * 37) % 400, FaultKind::Crash)
            })
        };
        struck += u64::from(hit);
    }
    assert!(
        struck * 4 >= points * 3,
        "only {struck} of {points} crashes struck during the writes"
    );
}

#[test]
fn io_errors_while_combining_at_every_call_in_turn() {
    // The calls of the contended writes in turn (threads interleave, so
    // "in turn" is by index from the start of the writes).
    let mut struck = 0;
    for op in 0..300u64 {
        let kind = if op % 2 == 0 { FaultKind::Eio } else { FaultKind::Enospc };
        struck += u64::from(fault_while_combining(5_000 + op, false, move |sim| {
            sim.inject_at_op(sim.op_count() + op, kind)
        }));
    }
    assert!(struck >= 290, "only {struck} of 300 faults struck during the writes");
}
