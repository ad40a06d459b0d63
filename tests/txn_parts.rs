//! Transactions larger than one log record: their changes go to the log in
//! parts before the commit that names them. A large transaction commits and
//! recovers whole; a crash, a torn write or an I/O error at any point of a
//! workload of large and small transactions leaves the state after the last
//! acknowledged commit or after the one in flight, never part of one;
//! checkpoints that fall between a transaction's parts and its commit keep
//! the parts (redo and the log) for recovery; a commit naming parts the log
//! does not hold is refused with the file and offset. Long values are
//! written once (in place, before their commit), so the faults also strike
//! those writes and the data file's sync before the commit's batch.

use mailvault::log::{LogOptions, LogReader, Lsn};
use mailvault::pager::redo::{DbRecord, RECORD_COMMIT_PARTS, RECORD_PART};
use mailvault::pager::{DbError, TornPages, log_dir};
use mailvault::txn::{Database, DbOptions};
use mailvault::vfs::{FaultKind, SharedVfs, SimVfs, sim::SimRng};
use std::collections::BTreeMap;
use std::ops::Bound;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

const DIR: &str = "/db";
/// About the number of file-system calls the workload after the warm-up makes.
const WORKLOAD_OPS: u64 = 320;
type Model = BTreeMap<Vec<u8>, Vec<u8>>;

/// Records of at most 8 KiB with 4 KiB pages: a transaction of a few pages
/// already takes parts. Both ways of repairing torn pages, by the seed.
fn opts(seed: u64) -> DbOptions {
    DbOptions {
        torn_pages: if seed.is_multiple_of(2) {
            TornPages::DoubleWrite
        } else {
            TornPages::FullPageImages
        },
        page_size: 4096,
        cache_bytes: 64 * 4096,
        checkpoint_depth: 64 << 10,
        max_transaction_bytes: 1 << 20,
        log: LogOptions {
            frame_size: 512,
            generation_size: 128 << 10,
            max_record_size: 8 << 10,
            buffer_size: 32 << 10,
            ..LogOptions::default()
        },
        ..DbOptions::default()
    }
}

fn filled(len: usize, id: u64) -> Vec<u8> {
    let mut v = vec![0u8; len];
    SimRng::new(id).fill(&mut v);
    v
}

/// The puts of one transaction: a few small ones, or (one in three) many
/// scattered ones or a long value of several pages.
fn puts(rng: &mut SimRng, id: u64) -> Vec<(Vec<u8>, Vec<u8>)> {
    let key = |rng: &mut SimRng| format!("k{:04}", rng.below(400)).into_bytes();
    match rng.below(6) {
        0 => (0..20 + rng.below(60))
            .map(|i| (key(rng), filled(200 + rng.below(1300) as usize, id * 1000 + i)))
            .collect(),
        1 => vec![(key(rng), filled(20_000 + rng.below(40_000) as usize, id * 1000))],
        _ => (0..1 + rng.below(3))
            .map(|i| (key(rng), filled(rng.below(300) as usize, id * 1000 + i)))
            .collect(),
    }
}

fn transaction(db: &Database, rng: &mut SimRng, model: &Model, id: u64) -> Result<Model, DbError> {
    let mut next = model.clone();
    let mut tx = db.begin_write();
    let t = tx.open_table("t")?;
    for (k, v) in puts(rng, id) {
        tx.put(&t, &k, &v)?;
        next.insert(k, v);
    }
    tx.commit()?;
    Ok(next)
}

fn read_all(db: &Database) -> Result<Model, DbError> {
    let rx = db.begin_read();
    let t = rx.open_table("t")?;
    let mut rows = Model::new();
    for entry in rx.range(&t, Bound::Unbounded, Bound::Unbounded)? {
        let (k, v) = entry?;
        let bytes = match v {
            mailvault::btree::Value::Inline(b) => b,
            long => mailvault::btree::read_value(rx.pages(), &long)?,
        };
        rows.insert(k, bytes);
    }
    Ok(rows)
}

fn create(vfs: SharedVfs, o: DbOptions) -> Database {
    let db = Database::create(vfs, DIR, o).expect("create");
    let mut tx = db.begin_write();
    tx.create_table("t").expect("table");
    tx.commit().expect("commit");
    db
}

/// Counts the records of each kind in the log from its oldest generation:
/// (parts, commits of parts, checkpoint markers between a part and its commit).
fn log_kinds(vfs: &SharedVfs) -> (u64, u64, u64) {
    let reader = LogReader::new(vfs.clone(), log_dir(Path::new(DIR)), Lsn::ZERO, Lsn::MAX).expect("reader");
    let (mut parts, mut commits, mut between) = (0, 0, 0);
    let mut in_parts = false;
    for record in reader {
        let record = record.expect("record");
        match record.data.first() {
            Some(&RECORD_PART) => {
                parts += 1;
                in_parts = true;
            }
            Some(&RECORD_COMMIT_PARTS) => {
                commits += 1;
                in_parts = false;
            }
            Some(&mailvault::pager::redo::RECORD_CHECKPOINT) if in_parts => between += 1,
            _ => {}
        }
    }
    (parts, commits, between)
}

#[test]
fn a_transaction_larger_than_a_log_record_commits_in_parts_and_recovers() {
    // No checkpoint after the commit: recovery must replay it from its parts.
    let mut o = opts(0);
    o.cache_bytes = 4 << 20;
    o.checkpoint_depth = 64 << 20;
    let sim = SimVfs::new(1);
    let db = create(sim.clone(), o.clone());
    let mut model = Model::new();
    let mut tx = db.begin_write();
    let t = tx.open_table("t").expect("table");
    for i in 0..300u64 {
        let (k, v) = (format!("k{:04}", (i * 7919) % 1000).into_bytes(), filled(900, i));
        tx.put(&t, &k, &v).expect("put");
        model.insert(k, v);
    }
    tx.put(&t, b"long", &filled(100_000, 9)).expect("long put");
    model.insert(b"long".to_vec(), filled(100_000, 9));
    let before = db.pager().log().stats().records;
    tx.commit().expect("a 400 KB transaction commits with 8 KiB records");
    let records = db.pager().log().stats().records - before;
    assert_eq!(read_all(&db).expect("read"), model);
    // Checkpoints may add a few records; the commit takes about 50 parts.
    assert!(records >= 40, "{records} records");
    // A crash after the acknowledgement: recovery replays the parts.
    db.pager().stop_background();
    drop(db);
    sim.crash();
    sim.restart();
    let db = Database::open(sim.clone(), DIR, o.clone()).expect("reopen");
    let stats = db.recovery_stats().clone();
    assert!(
        stats.applied > 100 && stats.part_commits == 1,
        "the parts were applied: {stats:?}"
    );
    assert_eq!(stats.abandoned_parts, 0);
    assert_eq!(read_all(&db).expect("read"), model);
    db.close().expect("close");
    let db = Database::open(sim.clone(), DIR, o).expect("reopen after close");
    assert_eq!(read_all(&db).expect("read"), model);
    let report = db.begin_read().verify().expect("verify");
    assert!(report.problems.is_empty(), "{:?}", report.problems);
}

#[test]
fn a_transaction_past_its_limit_is_refused_early_and_nothing_of_it_stays() {
    let mut o = opts(0);
    o.max_transaction_bytes = 64 << 10;
    let sim = SimVfs::new(2);
    let db = create(sim.clone(), o.clone());
    let mut tx = db.begin_write();
    let t = tx.open_table("t").expect("table");
    let err = (0..10_000u64)
        .find_map(|i| tx.put(&t, format!("k{i:05}").as_bytes(), &filled(1000, i)).err())
        .expect("10 MB of puts pass 64 KiB (half the cache: 128 KiB)");
    match err {
        DbError::TransactionTooLarge { measure, bytes, max } => {
            assert_eq!(measure, "the changed pages it holds");
            assert!(bytes > max && max == (128 << 10) + 16 * 4096, "{bytes} > {max}");
        }
        other => panic!("expected TransactionTooLarge, got {other:?}"),
    }
    tx.rollback();
    let mut tx = db.begin_write();
    let t = tx.open_table("t").expect("table");
    tx.put(&t, b"after", b"ok").expect("the database goes on");
    tx.commit().expect("commit");
    assert_eq!(read_all(&db).expect("read").len(), 1);
}

/// What a fault case saw: whether the fault stopped the workload, and what
/// recovery did with transactions in parts.
#[derive(Default)]
struct Seen {
    stopped: u64,
    part_commits: u64,
    abandoned: u64,
    /// Pages of long values that recovery found written once, in place.
    written_once: u64,
}

impl std::ops::AddAssign for Seen {
    fn add_assign(&mut self, o: Seen) {
        self.stopped += o.stopped;
        self.part_commits += o.part_commits;
        self.abandoned += o.abandoned;
        self.written_once += o.written_once;
    }
}

/// Runs the workload with a fault armed, then crashes and reopens.
fn fault_case(seed: u64, fault: impl FnOnce(&SimVfs)) -> Seen {
    let sim = SimVfs::new(seed);
    let db = create(sim.clone(), opts(seed));
    let mut rng = SimRng::new(seed ^ 0xfeed);
    let mut acked = Model::new();
    for id in 0..4 {
        acked = transaction(&db, &mut rng, &acked, id).expect("warm-up");
    }
    fault(&sim);
    let mut in_flight = None;
    let mut stopped = false;
    let (ops0, syncs0) = (sim.op_count(), sim.sync_count());
    for id in 4..24 {
        let mut replay = rng.clone();
        match transaction(&db, &mut rng, &acked, id) {
            Ok(next) => acked = next,
            Err(_) => {
                // The commit that failed may have reached the log whole.
                let mut next = acked.clone();
                next.extend(puts(&mut replay, id));
                in_flight = Some(next);
                stopped = true;
                break;
            }
        }
        if rng.below(8) == 0 && db.checkpoint().is_err() {
            stopped = true;
            break;
        }
    }
    if std::env::var("SHOW_OPS").is_ok() {
        eprintln!("ops {} syncs {}", sim.op_count() - ops0, sim.sync_count() - syncs0);
    }
    db.pager().stop_background();
    drop(db);
    sim.crash();
    sim.clear_faults();
    sim.restart();
    let db = Database::open(sim.clone(), DIR, opts(seed)).unwrap_or_else(|e| panic!("seed {seed}: reopen: {e}"));
    let got = read_all(&db).unwrap_or_else(|e| panic!("seed {seed}: read: {e}"));
    assert!(
        got == acked || in_flight.as_ref() == Some(&got),
        "seed {seed}: recovered state is neither the acknowledged one nor the one in flight"
    );
    let stats = db.recovery_stats().clone();
    db.close().expect("close");
    Seen {
        stopped: u64::from(stopped),
        part_commits: stats.part_commits,
        abandoned: stats.abandoned_parts,
        written_once: stats.written_once,
    }
}

/// Some recoveries replayed a transaction from its parts, some dropped the
/// parts of one that never committed: the faults reached both. Some met
/// long values written once and found their pages in the file.
fn assert_both_seen(seen: &Seen, what: &str) {
    assert!(
        seen.part_commits > 0 && seen.abandoned > 0 && seen.written_once > 0,
        "{what}: {} commits of parts replayed, {} parts dropped, {} pages found written once",
        seen.part_commits,
        seen.abandoned,
        seen.written_once
    );
}

#[test]
fn crash_at_every_sync() {
    let syncs = 60;
    let mut seen = Seen::default();
    for n in 0..syncs {
        seen += fault_case(n, |sim| sim.crash_at_sync(sim.sync_count() + n));
    }
    let stopped = seen.stopped;
    assert!(
        stopped * 4 >= syncs * 3,
        "only {stopped} of {syncs} crashes struck during the workload"
    );
    assert_both_seen(&seen, "crashes at every sync");
}

#[test]
fn crash_at_random_points() {
    let points: u64 = std::env::var("MAILVAULT_CRASH_POINTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .map_or(200, |n: u64| n / 5);
    let mut rng = SimRng::new(7);
    let mut seen = Seen::default();
    for i in 0..points {
        let op = rng.below(WORKLOAD_OPS);
        seen += fault_case(30_000 + i, move |sim| {
            sim.inject_at_op(sim.op_count() + op, FaultKind::Crash)
        });
    }
    let stopped = seen.stopped;
    assert!(
        stopped * 2 >= points,
        "only {stopped} of {points} crashes struck during the workload"
    );
    assert_both_seen(&seen, "crashes at random calls");
}

#[test]
fn io_errors_at_every_call() {
    let mut seen = Seen::default();
    for op in 0..WORKLOAD_OPS {
        let kind = if op % 2 == 0 { FaultKind::Eio } else { FaultKind::Enospc };
        seen += fault_case(40_000 + op, move |sim| sim.inject_at_op(sim.op_count() + op, kind));
    }
    let stopped = seen.stopped;
    assert!(
        stopped * 10 >= WORKLOAD_OPS * 6,
        "only {stopped} of {WORKLOAD_OPS} errors struck during the workload"
    );
    assert!(seen.written_once > 0, "no recovery met a page written once");
}

/// Checkpoints run on another thread, without pause, while large
/// transactions commit, and the disk crashes right after a commit: some
/// markers fall between a transaction's parts and its commit, and
/// truncation runs after each. Recovery loses nothing acknowledged.
#[test]
fn checkpoints_between_parts_keep_them_for_recovery() {
    for torn in [0u64, 1] {
        let mut between = 0;
        // Twelve seeds each; where the interleaving this test is about has
        // not happened yet (it depends on the scheduler: a loaded CI machine
        // once ran twelve without it), more seeds, up to sixty.
        let mut seed = 0u64;
        while seed < 12 || (torn == 0 && between == 0 && seed < 60) {
            let sim = SimVfs::new(50 + seed);
            let db = Arc::new(create(sim.clone(), opts(torn)));
            let stop = Arc::new(AtomicBool::new(false));
            let checkpointer = {
                let (db, stop) = (db.clone(), stop.clone());
                // Fails once the disk has crashed.
                std::thread::spawn(move || while !stop.load(Ordering::Relaxed) && db.checkpoint().is_ok() {})
            };
            let mut model = Model::new();
            for id in 0..10 + seed * 3 {
                let mut tx = db.begin_write();
                let t = tx.open_table("t").expect("table");
                for i in 0..40u64 {
                    let key = format!("k{:04}", (id * 131 + i * 17) % 500).into_bytes();
                    let v = filled(700, id * 100 + i);
                    tx.put(&t, &key, &v).expect("put");
                    model.insert(key, v);
                }
                tx.commit().expect("commit");
            }
            sim.crash();
            stop.store(true, Ordering::Relaxed);
            checkpointer.join().expect("checkpointer");
            let db = Arc::try_unwrap(db).unwrap_or_else(|_| panic!("one owner left"));
            db.pager().stop_background();
            drop(db);
            sim.restart();
            let shared: SharedVfs = sim.clone();
            between += log_kinds(&shared).2;
            let db = Database::open(sim.clone(), DIR, opts(torn))
                .unwrap_or_else(|e| panic!("torn {torn} seed {seed}: reopen: {e}"));
            assert_eq!(read_all(&db).expect("read"), model, "torn {torn} seed {seed}");
            db.close().expect("close");
            seed += 1;
        }
        if torn == 0 {
            assert!(between >= 1, "no checkpoint fell between parts and commit");
        } else {
            // Full page images: the parts are appended under the state lock
            // that a checkpoint takes its marker under.
            assert_eq!(between, 0, "a marker fell between parts appended under the lock");
        }
    }
}

/// A commit that names parts the log does not hold (here: a part at an
/// LSN where there is none) is refused at open, naming the log file and
/// the commit's offset, rather than applied without them.
#[test]
fn a_commit_naming_parts_the_log_lacks_is_refused_with_its_place() {
    let sim = SimVfs::new(3);
    let db = create(sim.clone(), opts(0));
    let log = db.pager().log();
    let bogus = DbRecord::CommitParts {
        seq: 1_000,
        page_count: db.pager().page_count(),
        parts: mailvault::pager::redo::Parts {
            count: 2,
            first: Lsn::new(1, 0),
        },
        changes: Vec::new(),
    };
    let at = log.append(&bogus.encode()).expect("append");
    log.wait_durable(at.end).expect("durable");
    db.pager().stop_background();
    drop(db);
    sim.crash();
    sim.restart();
    match Database::open(sim.clone(), DIR, opts(0)) {
        Err(DbError::BadRecord {
            file,
            offset,
            lsn,
            reason,
        }) => {
            assert_eq!(lsn, at.lsn);
            assert_eq!(offset, u64::from(at.lsn.offset()));
            assert!(file.to_string_lossy().contains("/db/log/"), "{}", file.display());
            assert!(reason.contains("names 2 parts"), "{reason}");
        }
        other => panic!("expected BadRecord, got {other:?}"),
    }
}
