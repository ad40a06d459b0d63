//! The transaction layer end to end on the simulated disk: tables, rollback,
//! snapshots, durability modes, limits, reopen and recovery.

use mailvault::log::LogOptions;
use mailvault::pager::DbError;
use mailvault::txn::{Database, DbOptions, Durability};
use mailvault::vfs::{SimVfs, Vfs};
use std::ops::Bound;
use std::sync::Arc;

const DIR: &str = "/db";

fn opts() -> DbOptions {
    DbOptions {
        page_size: 4096,
        cache_bytes: 256 * 4096,
        max_transaction_bytes: 512 << 10,
        log: LogOptions {
            generation_size: 1 << 20,
            max_record_size: 512 << 10,
            ..LogOptions::default()
        },
        ..DbOptions::default()
    }
}

fn key(i: u32) -> Vec<u8> {
    format!("key-{i:06}").into_bytes()
}

#[test]
fn tables_commit_rollback_and_reopen() {
    let sim = SimVfs::new(1);
    let db = Database::create(sim.clone(), DIR, opts()).expect("create");
    let mut tx = db.begin_write();
    let a = tx.create_table("a").expect("create a");
    let b = tx.create_table("b").expect("create b");
    assert!(matches!(tx.create_table("a"), Err(DbError::TableExists { .. })));
    for i in 0..500 {
        tx.put(&a, &key(i), &i.to_le_bytes()).expect("put");
    }
    tx.put(&b, b"big", &vec![7u8; 100_000]).expect("long value");
    tx.commit().expect("commit");

    let mut tx = db.begin_write();
    tx.put(&a, b"never", b"seen").expect("put");
    tx.delete(&a, &key(3)).expect("delete");
    tx.rollback();

    let rx = db.begin_read();
    assert_eq!(rx.list_tables().expect("list"), vec!["a".to_string(), "b".to_string()]);
    assert_eq!(rx.get(&a, b"never").expect("get"), None);
    assert_eq!(rx.get(&a, &key(3)).expect("get"), Some(3u32.to_le_bytes().to_vec()));
    assert_eq!(rx.get(&b, b"big").expect("get"), Some(vec![7u8; 100_000]));
    let back: Vec<Vec<u8>> = rx
        .range(&a, Bound::Included(&key(10)[..]), Bound::Excluded(&key(20)[..]))
        .expect("range")
        .rev()
        .map(|e| e.expect("entry").0)
        .collect();
    assert_eq!(back, (10..20).rev().map(key).collect::<Vec<_>>());
    drop(rx);
    db.close().expect("close");

    let db = Database::open(sim.clone(), DIR, opts()).expect("reopen");
    assert_eq!(db.recovery_stats().applied, 0, "a clean close leaves nothing to redo");
    let mut tx = db.begin_write();
    tx.drop_table("b").expect("drop");
    assert!(matches!(tx.open_table("b"), Err(DbError::NoSuchTable { .. })));
    tx.commit().expect("commit");
    let rx = db.begin_read();
    let a = rx.open_table("a").expect("a");
    assert_eq!(
        rx.range(&a, Bound::Unbounded, Bound::Unbounded).expect("range").count(),
        500
    );
    drop(rx);
    db.close().expect("close");
}

#[test]
fn a_crash_keeps_every_commit_and_recovery_replays_them() {
    let sim = SimVfs::new(2);
    let db = Database::create(sim.clone(), DIR, opts()).expect("create");
    let mut tx = db.begin_write();
    let t = tx.create_table("t").expect("create");
    tx.commit().expect("commit");
    for i in 0..300 {
        let mut tx = db.begin_write();
        tx.put(&t, &key(i), &vec![i as u8; 50 + (i as usize % 700)])
            .expect("put");
        tx.commit().expect("commit");
    }
    db.pager().stop_background();
    drop(db);
    sim.crash();
    sim.restart();
    let db = Database::open(sim.clone(), DIR, opts()).expect("recover");
    assert!(db.recovery_stats().applied > 0, "recovery replayed the commits");
    let rx = db.begin_read();
    for i in 0..300 {
        assert_eq!(
            rx.get(&t, &key(i)).expect("get"),
            Some(vec![i as u8; 50 + (i as usize % 700)]),
            "key {i}"
        );
    }
}

#[test]
fn snapshots_see_one_state_while_the_writer_moves_on() {
    let sim = SimVfs::new(3);
    let db = Database::create(sim, DIR, opts()).expect("create");
    let mut tx = db.begin_write();
    let t = tx.create_table("t").expect("create");
    tx.put(&t, b"k", b"old").expect("put");
    tx.commit().expect("commit");
    let before = db.begin_read();
    let mut tx = db.begin_write();
    tx.put(&t, b"k", b"new").expect("put");
    for i in 0..200 {
        tx.put(&t, &key(i), &[1u8; 300]).expect("put");
    }
    tx.commit().expect("commit");
    db.checkpoint().expect("checkpoint writes the new versions");
    assert_eq!(before.get(&t, b"k").expect("get"), Some(b"old".to_vec()));
    assert_eq!(
        before
            .range(&t, Bound::Unbounded, Bound::Unbounded)
            .expect("range")
            .count(),
        1
    );
    let after = db.begin_read();
    assert_eq!(after.get(&t, b"k").expect("get"), Some(b"new".to_vec()));
}

/// Puts `rows` rows of 900 bytes in one transaction and commits it; returns
/// the error that refused it (at a put, or at the commit), rolling back.
fn one_transaction_of(db: &Database, t: &mailvault::txn::Table, rows: u32) -> DbError {
    let mut tx = db.begin_write();
    for i in 0..rows {
        if let Err(e) = tx.put(t, &key(i), &[9u8; 900]) {
            tx.rollback();
            return e;
        }
    }
    match tx.commit() {
        Ok(()) => panic!("a transaction of {rows} rows of 900 bytes was accepted"),
        Err(e) => e,
    }
}

#[test]
fn limits_give_typed_errors() {
    let sim = SimVfs::new(4);
    let db = Database::create(sim, DIR, opts()).expect("create");
    let mut tx = db.begin_write();
    let t = tx.create_table("t").expect("create");
    assert!(matches!(tx.create_table(""), Err(DbError::InvalidArgument(_))));
    assert!(matches!(
        tx.put(&t, &vec![0u8; 5000], b"v"),
        Err(DbError::KeyTooLarge { .. })
    ));
    tx.commit().expect("commit");
    let err = one_transaction_of(&db, &t, 10_000);
    assert!(
        matches!(err, DbError::TransactionTooLarge { .. }),
        "a 9 MB transaction exceeds 512 KiB: {err:?}"
    );
    // Nothing of it was committed; the database goes on.
    let mut tx = db.begin_write();
    tx.put(&t, b"after", b"ok").expect("put");
    tx.commit().expect("commit");
    let rx = db.begin_read();
    assert_eq!(rx.get(&t, &key(0)).expect("get"), None);
    assert_eq!(rx.get(&t, b"after").expect("get"), Some(b"ok".to_vec()));
}

/// The log's record limit is not a transaction limit: a transaction past it
/// goes to the log in parts, commits, and survives a reopen.
#[test]
fn a_transaction_over_the_logs_real_limit_commits_in_parts() {
    // 128 KiB generations hold records far smaller than the 360 KB below.
    let mut o = opts();
    o.log.generation_size = 128 << 10;
    let sim = SimVfs::new(14);
    let db = Database::create(sim.clone(), DIR, o.clone()).expect("create");
    let limit = db.pager().log().max_record_size();
    assert!(limit < 128 << 10, "the log fits its limit to the geometry: {limit}");
    let mut tx = db.begin_write();
    let t = tx.create_table("t").expect("create");
    tx.commit().expect("commit");
    let mut tx = db.begin_write();
    for i in 0..400 {
        tx.put(&t, &key(i), &[9u8; 900]).expect("put");
    }
    tx.commit().expect("360 KB commits in parts");
    db.close().expect("close");
    let db = Database::open(sim, DIR, o).expect("reopen");
    let rx = db.begin_read();
    let t = rx.open_table("t").expect("table");
    for i in 0..400 {
        assert_eq!(rx.get(&t, &key(i)).expect("get"), Some(vec![9u8; 900]), "row {i}");
    }
}

#[test]
fn a_second_open_is_refused_while_the_first_holds_the_database() {
    let sim = SimVfs::new(15);
    let db = Database::create(sim.clone(), DIR, opts()).expect("create");
    let err = Database::open(sim.clone(), DIR, opts()).expect_err("a second open");
    assert!(
        matches!(err, DbError::InUse { ref lock } if lock.ends_with("mailvault.lock")),
        "{err:?}"
    );
    let err = Database::create(sim.clone(), DIR, opts()).expect_err("a create over it");
    assert!(matches!(err, DbError::InUse { .. }), "{err:?}");
    db.close().expect("close");
    let db = Database::open(sim.clone(), DIR, opts()).expect("open after close");
    // A crash kills the process that held the lock: the next boot opens.
    sim.crash();
    sim.restart();
    let again = Database::open(sim.clone(), DIR, opts()).expect("open after a crash");
    // The dead process's handle going away must not free the new holder's lock.
    drop(db);
    let err = Database::open(sim, DIR, opts()).expect_err("still held by the new open");
    assert!(matches!(err, DbError::InUse { .. }), "{err:?}");
    drop(again);
}

#[test]
fn a_second_open_on_the_real_file_system_is_refused() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let vfs = Arc::new(mailvault::vfs::OsVfs);
    let db = Database::create(vfs.clone(), tmp.path(), opts()).expect("create");
    let err = Database::open(vfs.clone(), tmp.path(), opts()).expect_err("a second open");
    assert!(matches!(err, DbError::InUse { .. }), "{err:?}");
    drop(db);
    Database::open(vfs, tmp.path(), opts()).expect("open after the first is gone");
}

#[test]
fn lazy_commits_become_durable_within_the_window() {
    let sim = SimVfs::new(5);
    let db = Database::create(sim.clone(), DIR, opts()).expect("create");
    let mut tx = db.begin_write();
    let t = tx.create_table("t").expect("create");
    tx.commit().expect("commit");
    let mut tx = db.begin_write();
    tx.put(&t, b"lazy", b"1").expect("put");
    tx.commit_with(Durability::Lazy).expect("lazy commit");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while db.pager().log().durable_lsn() < db.pager().log().end_lsn() {
        assert!(std::time::Instant::now() < deadline, "lazy commit never flushed");
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    db.pager().stop_background();
    drop(db);
    sim.crash();
    sim.restart();
    let db = Database::open(sim, DIR, opts()).expect("recover");
    let rx = db.begin_read();
    let t = rx.open_table("t").expect("t");
    assert_eq!(rx.get(&t, b"lazy").expect("get"), Some(b"1".to_vec()));
}

#[test]
fn opening_refuses_a_missing_or_foreign_log() {
    let sim = SimVfs::new(6);
    let db = Database::create(sim.clone(), DIR, opts()).expect("create");
    db.close().expect("close");
    let other = Database::create(sim.clone(), "/other", opts()).expect("create other");
    other.close().expect("close");
    // Swap the other database's log in.
    for name in sim.list(std::path::Path::new("/db/log")).expect("list") {
        sim.remove(&std::path::Path::new("/db/log").join(&name))
            .expect("remove");
    }
    for name in sim.list(std::path::Path::new("/other/log")).expect("list") {
        let from = std::path::Path::new("/other/log").join(&name);
        let bytes = sim.written_image(&from).expect("image");
        let to = sim
            .open(
                &std::path::Path::new("/db/log").join(&name),
                mailvault::vfs::OpenMode::CreateNew,
            )
            .expect("create");
        to.write_at(&bytes, 0).expect("write");
    }
    let err = Database::open(sim, DIR, opts()).expect_err("a foreign log is refused");
    assert!(matches!(err, DbError::LogMismatch { .. }), "{err:?}");
}

#[test]
fn recovery_of_a_long_log_stays_within_the_cache() {
    let sim = SimVfs::new(7);
    // Written with a large cache (no checkpoint on the way), recovered with a small one.
    let large = DbOptions {
        cache_bytes: 4096 * 4096,
        checkpoint_depth: 1 << 40,
        ..opts()
    };
    let small = DbOptions {
        cache_bytes: 32 * 4096,
        ..large.clone()
    };
    let db = Database::create(sim.clone(), DIR, large).expect("create");
    let mut tx = db.begin_write();
    let t = tx.create_table("t").expect("create");
    tx.commit().expect("commit");
    for batch in 0..40u32 {
        let mut tx = db.begin_write();
        for i in 0..20 {
            tx.put(&t, &key(batch * 20 + i), &[batch as u8; 400]).expect("put");
        }
        tx.commit().expect("commit");
    }
    db.pager().stop_background();
    drop(db);
    sim.crash();
    sim.restart();
    let db = Database::open(sim, DIR, small).expect("recover");
    assert!(
        db.recovery_stats().flushes > 0,
        "recovery wrote pages midway: {:?}",
        db.recovery_stats()
    );
    let rx = db.begin_read();
    for batch in 0..40u32 {
        for i in 0..20 {
            assert_eq!(
                rx.get(&t, &key(batch * 20 + i)).expect("get"),
                Some(vec![batch as u8; 400])
            );
        }
    }
    assert!(rx.verify().expect("verify").is_ok());
}

/// Writes 800 rows (keys in random order, so some leaves keep changing and
/// others settle) with a large cache and no checkpoint, then cuts the power.
fn long_log_then_crash(sim: &Arc<SimVfs>) -> DbOptions {
    let large = DbOptions {
        cache_bytes: 4096 * 4096,
        checkpoint_depth: 1 << 40,
        ..opts()
    };
    let db = Database::create(sim.clone(), DIR, large.clone()).expect("create");
    let mut tx = db.begin_write();
    let t = tx.create_table("t").expect("create");
    tx.commit().expect("commit");
    for batch in 0..40u32 {
        let mut tx = db.begin_write();
        for i in 0..20u32 {
            let n = (batch * 20 + i) * 331 % 800;
            tx.put(&t, &key(n), &[(n % 251) as u8; 400]).expect("put");
        }
        tx.commit().expect("commit");
    }
    db.pager().stop_background();
    drop(db);
    sim.crash();
    sim.restart();
    DbOptions {
        cache_bytes: 24 * 4096,
        ..large
    }
}

#[test]
fn a_crash_during_recovery_spills_loses_nothing() {
    let mut crashed = 0;
    for n in 0u64.. {
        let sim = SimVfs::new(70 + n);
        let small = long_log_then_crash(&sim);
        sim.crash_at_sync(sim.sync_count() + n);
        match Database::open(sim.clone(), DIR, small.clone()) {
            Ok(db) => {
                sim.clear_faults();
                if !sim.is_crashed() {
                    // The crash point lies beyond this recovery: every sync was covered.
                    assert!(db.recovery_stats().flushes >= 2, "{:?}", db.recovery_stats());
                    db.close().expect("close");
                    break;
                }
                // A background thread's sync met it: a crash just after recovery.
                db.pager().stop_background();
            }
            Err(_) => crashed += 1,
        }
        sim.crash();
        sim.clear_faults();
        sim.restart();
        let db = Database::open(sim, DIR, small).unwrap_or_else(|e| panic!("crash at recovery sync {n}: reopen: {e}"));
        let rx = db.begin_read();
        let t = rx.open_table("t").expect("table");
        for k in 0..800u32 {
            assert_eq!(
                rx.get(&t, &key(k)).expect("get"),
                Some(vec![(k % 251) as u8; 400]),
                "crash at recovery sync {n}: row {k}"
            );
        }
        assert!(rx.verify().expect("verify").is_ok(), "crash at recovery sync {n}");
    }
    assert!(crashed >= 4, "only {crashed} crashes struck during recovery");
}

#[test]
fn checkpoints_truncate_the_log_unless_a_pin_holds_it() {
    let sim = SimVfs::new(8);
    let small_log = DbOptions {
        log: LogOptions {
            generation_size: 64 << 10,
            max_record_size: 32 << 10,
            ..LogOptions::default()
        },
        max_transaction_bytes: 32 << 10,
        ..opts()
    };
    let db = Database::create(sim, DIR, small_log).expect("create");
    let mut tx = db.begin_write();
    let t = tx.create_table("t").expect("create");
    tx.commit().expect("commit");
    let log = db.pager().log();
    let pinned_at = log.end_lsn();
    let pin = db.pin_log(pinned_at);
    let write_some = |from: u32| {
        for i in from..from + 60 {
            let mut tx = db.begin_write();
            tx.put(&t, &key(i), &[i as u8; 1500]).expect("put");
            tx.commit().expect("commit");
        }
        db.checkpoint().expect("checkpoint");
    };
    write_some(0);
    assert!(
        log.end_lsn().generation() > pinned_at.generation() + 1,
        "the workload spans generations"
    );
    assert!(
        log.first_generation() <= pinned_at.generation(),
        "the pin holds its generation"
    );
    drop(pin);
    write_some(60);
    assert!(
        log.first_generation() > pinned_at.generation(),
        "without the pin, checkpoints recycle old generations (first {}, pinned {})",
        log.first_generation(),
        pinned_at.generation()
    );
}

#[test]
fn a_snapshot_survives_its_pages_being_freed_reused_and_checkpointed() {
    let sim = SimVfs::new(9);
    let small_cache = DbOptions {
        cache_bytes: 32 * 4096,
        ..opts()
    };
    let db = Database::create(sim, DIR, small_cache).expect("create");
    let mut tx = db.begin_write();
    let t = tx.create_table("t").expect("create");
    for i in 0..400 {
        tx.put(&t, &key(i), &[1u8; 300]).expect("put");
    }
    tx.commit().expect("commit");
    db.checkpoint().expect("checkpoint");
    let old = db.begin_read();
    // Free every page of the tree, then reuse them for other content.
    let mut tx = db.begin_write();
    for i in 0..400 {
        tx.delete(&t, &key(i)).expect("delete");
    }
    tx.commit().expect("commit");
    db.checkpoint().expect("checkpoint");
    for round in 0..4u32 {
        let mut tx = db.begin_write();
        for i in 0..100 {
            tx.put(&t, format!("other-{round}-{i:04}").as_bytes(), &[2u8; 300])
                .expect("put");
        }
        tx.commit().expect("commit");
        db.checkpoint().expect("checkpoint");
    }
    let rows: Vec<(Vec<u8>, Vec<u8>)> = old
        .range(&t, Bound::Unbounded, Bound::Unbounded)
        .expect("range")
        .map(|e| {
            let (k, v) = e.expect("the old snapshot's pages are intact");
            (k, mailvault::btree::read_value(old.pages(), &v).expect("value"))
        })
        .collect();
    assert_eq!(rows.len(), 400);
    assert!(
        rows.iter()
            .enumerate()
            .all(|(i, (k, v))| *k == key(i as u32) && v[..] == [1u8; 300])
    );
}

/// A transaction of many small changes spread over many pages commits: the
/// record holds only the ranges changed, and the pages it holds meanwhile
/// are bounded by half the cache when that is more than the transaction
/// limit. With a small cache the same transaction is refused, naming what
/// grew too large and the transaction limit.
#[test]
fn many_small_changes_over_many_pages_fit_one_transaction() {
    let scatter = |i: u64| (i.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ i).to_be_bytes();
    let attempt = |cache_bytes: usize| {
        let mut o = DbOptions {
            page_size: 4096,
            cache_bytes,
            max_transaction_bytes: 256 << 10,
            ..DbOptions::default()
        };
        o.log.generation_size = 8 << 20;
        let tmp = tempfile::tempdir().expect("tempdir");
        let db = Database::create(Arc::new(mailvault::vfs::OsVfs), tmp.path(), o).expect("create");
        let mut tx = db.begin_write();
        let t = tx.create_table("t").expect("create");
        tx.commit().expect("commit");
        // 24,000 rows in transactions of 20: a tree of several hundred leaves.
        for batch in 0..1200u64 {
            let mut tx = db.begin_write();
            for i in batch * 20..(batch + 1) * 20 {
                tx.put(&t, &scatter(i), &[1u8; 50]).expect("put");
            }
            tx.commit().expect("commit");
        }
        let before = db.pager().log().stats().record_bytes;
        let mut tx = db.begin_write();
        for i in 1_000_000..1_000_600u64 {
            tx.put(&t, &scatter(i), &[2u8; 50])?;
        }
        tx.commit()?;
        let record = (db.pager().log().stats().record_bytes - before) as usize;
        let rx = db.begin_read();
        assert_eq!(rx.get(&t, &scatter(1_000_599)).expect("get"), Some(vec![2u8; 50]));
        Ok(record)
    };
    let record = attempt(4 << 20).expect("half a 4 MiB cache holds the pages; the record is small");
    assert!(record < 256 << 10, "its record was {record} bytes");
    // Half of 256 KiB is less than the transaction limit, which bounds it.
    match attempt(256 << 10) {
        Err(DbError::TransactionTooLarge { measure, bytes, max }) => {
            assert_eq!(measure, "the changed pages it holds");
            assert!(bytes > max && max == (256 << 10) + 16 * 4096, "{bytes} > {max}");
        }
        other => panic!("600 scattered puts hold more than 320 KiB of pages: {other:?}"),
    }
}

/// A snapshot keeps the page count of the state it sees while later commits
/// grow the file, here past the first free-space map's span (a new map page
/// the snapshot has no version of): its online verification stays clean.
#[test]
fn a_snapshot_verifies_at_its_own_page_count_while_the_file_grows() {
    let sim = SimVfs::new(3);
    let mut o = opts();
    o.max_transaction_bytes = 8 << 20;
    let db = Database::create(sim, DIR, o).expect("create");
    let mut tx = db.begin_write();
    let t = tx.create_table("t").expect("table");
    for i in 0..200 {
        tx.put(&t, &key(i), &i.to_le_bytes()).expect("put");
    }
    tx.commit().expect("commit");
    let rx = db.begin_read();
    let before = rx.pages().page_count();
    let span = mailvault::pager::freemap::span(4096);
    let value = vec![0x5au8; 4 << 20];
    let mut i = 1000;
    while db.begin_read().pages().page_count() <= span + 64 {
        let mut tx = db.begin_write();
        tx.put(&t, &key(i), &value).expect("put a long value");
        tx.commit().expect("commit");
        i += 1;
    }
    assert_eq!(rx.pages().page_count(), before);
    let report = rx.verify().expect("verify");
    assert!(report.is_ok(), "{:?}", report.problems);
    assert_eq!(report.page_count, before);
    assert_eq!(report.tables, vec![("t".to_string(), 200)]);
    let now = db.begin_read().verify().expect("verify");
    assert!(now.is_ok(), "{:?}", now.problems);
    assert!(now.page_count > span, "{}", now.page_count);
    assert_eq!(now.tables, vec![("t".to_string(), 200 + u64::from(i - 1000))]);
}

/// The data pages of a large value are read around the cache: reading a
/// value of 256 pages leaves the cache about where it was, and a short long
/// value's pages are cached as before.
#[test]
fn large_values_are_read_in_passing_and_short_ones_cached() {
    let sim = SimVfs::new(4);
    let mut o = opts();
    o.max_transaction_bytes = 4 << 20;
    let db = Database::create(sim, DIR, o).expect("create");
    let big: Vec<u8> = (0..1u32 << 20).map(|i| (i % 251) as u8).collect();
    let short = vec![7u8; 10_000];
    let mut tx = db.begin_write();
    let t = tx.create_table("t").expect("table");
    tx.put(&t, b"big", &big).expect("put");
    tx.put(&t, b"short", &short).expect("put");
    tx.commit().expect("commit");
    db.checkpoint().expect("checkpoint");
    let held = || db.pager().cache_usage().0;
    let before = held();
    let rx = db.begin_read();
    assert_eq!(rx.get(&t, b"big").expect("get"), Some(big.clone()));
    let after_big = held();
    assert!(
        after_big <= before + 8 * 4096,
        "reading 256 pages grew the cache from {before} to {after_big} bytes"
    );
    assert_eq!(rx.get(&t, b"short").expect("get"), Some(short));
    assert!(
        held() >= after_big + 3 * 4096,
        "a 3-page value was not cached: {} bytes",
        held()
    );
    // Read again, from the file: the same bytes.
    assert_eq!(rx.get(&t, b"big").expect("get"), Some(big));
}

/// Values of a sixteenth to a quarter page go to the table's values tree:
/// reads, snapshots, overwrites, deletes, drop and recovery see one table.
#[test]
fn separated_values_behave_as_inline_ones_across_reopen_and_drop() {
    let sim = SimVfs::new(7);
    let db = Database::create(sim.clone(), DIR, opts()).expect("create");
    let mut tx = db.begin_write();
    let t = tx.create_table("mail").expect("create");
    assert!(t.values_root().is_some(), "new tables have a values tree");
    let sized = |i: u32, len: usize| -> Vec<u8> { (0..len).map(|j| (i as usize + j * 3) as u8).collect() };
    for i in 0..300 {
        tx.put(&t, &key(i), &sized(i, 300 + (i as usize % 5) * 150))
            .expect("put");
    }
    tx.commit().expect("commit");
    let before = db.begin_read();
    let mut tx = db.begin_write();
    for i in 0..300 {
        match i % 3 {
            0 => assert!(tx.delete(&t, &key(i)).expect("delete")),
            1 => tx.put(&t, &key(i), &sized(i + 1, 40)).expect("to inline"),
            _ => tx.put(&t, &key(i), &sized(i + 2, 700)).expect("separated again"),
        }
    }
    tx.commit().expect("commit");
    // The older snapshot still reads the first values.
    assert_eq!(before.get(&t, &key(3)).expect("get"), Some(sized(3, 750)));
    assert_eq!(before.get(&t, &key(4)).expect("get"), Some(sized(4, 900)));
    drop(before);
    let report = db.begin_read().verify().expect("verify");
    assert!(report.is_ok(), "{:?}", report.problems);
    assert_eq!(report.tables, vec![("mail".to_string(), 200)]);
    drop(db);
    // Recovery replays it all (no clean close).
    let db = Database::open(sim.clone(), DIR, opts()).expect("open");
    let rx = db.begin_read();
    let t = rx.open_table("mail").expect("table");
    for i in 0..300 {
        let want = match i % 3 {
            0 => None,
            1 => Some(sized(i + 1, 40)),
            _ => Some(sized(i + 2, 700)),
        };
        assert_eq!(rx.get(&t, &key(i)).expect("get"), want, "key {i}");
    }
    let listed: Vec<_> = rx
        .range(&t, Bound::Unbounded, Bound::Unbounded)
        .expect("range")
        .map(|e| e.expect("entry").0)
        .collect();
    assert_eq!(listed.len(), 200);
    drop(rx);
    let used = db.begin_read().verify().expect("verify").used_pages;
    let mut tx = db.begin_write();
    tx.drop_table("mail").expect("drop");
    tx.commit().expect("commit");
    let report = db.begin_read().verify().expect("verify");
    assert!(report.is_ok(), "{:?}", report.problems);
    assert!(report.tables.is_empty());
    assert!(
        report.used_pages + 4 < used,
        "both trees freed: {} of {used} pages",
        report.used_pages
    );
}
