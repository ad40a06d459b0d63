//! Readers and a writer at once. The writer moves money between accounts in
//! transactions that keep the total constant and stamp every account with
//! the transaction's number; readers check that each snapshot shows one
//! committed state: the total is right and all stamps are equal. A reader
//! that saw a torn state (part of a transaction) would fail either check.

use mailvault::log::LogOptions;
use mailvault::txn::{Database, DbOptions};
use mailvault::vfs::SimVfs;
use std::ops::Bound;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

const ACCOUNTS: u64 = 150;
const START: u64 = 1000;

fn opts() -> DbOptions {
    DbOptions {
        page_size: 4096,
        cache_bytes: 128 * 4096,
        checkpoint_depth: 256 << 10,
        log: LogOptions {
            generation_size: 1 << 20,
            ..LogOptions::default()
        },
        ..DbOptions::default()
    }
}

fn account(i: u64) -> Vec<u8> {
    format!("account-{i:04}").into_bytes()
}

fn encode(balance: u64, stamp: u64) -> Vec<u8> {
    encode_len(balance, stamp, 120)
}

fn encode_len(balance: u64, stamp: u64, len: usize) -> Vec<u8> {
    // Padding makes the rows span many pages, so a transaction changes several.
    let mut v = vec![0u8; len];
    v[..8].copy_from_slice(&balance.to_le_bytes());
    v[8..16].copy_from_slice(&stamp.to_le_bytes());
    v
}

fn decode(v: &[u8]) -> (u64, u64) {
    let b = u64::from_le_bytes(v[..8].try_into().expect("8 bytes"));
    let s = u64::from_le_bytes(v[8..16].try_into().expect("8 bytes"));
    (b, s)
}

#[test]
fn snapshots_never_see_a_torn_transaction() {
    let sim = SimVfs::new(11);
    let db = Database::create(sim, "/db", opts()).expect("create");
    let mut tx = db.begin_write();
    let t = tx.create_table("accounts").expect("create");
    for i in 0..ACCOUNTS {
        tx.put(&t, &account(i), &encode(START, 0)).expect("put");
    }
    tx.commit().expect("commit");

    let stop = AtomicBool::new(false);
    let checks = AtomicU64::new(0);
    let seen_stamps = AtomicU64::new(0);
    std::thread::scope(|s| {
        let readers: Vec<_> = (0..3u64)
            .map(|r| {
                let (db, stop, checks, seen_stamps) = (&db, &stop, &checks, &seen_stamps);
                s.spawn(move || {
                    let mut last = 0;
                    while !stop.load(Ordering::Relaxed) {
                        let rx = db.begin_read();
                        let t = rx.open_table("accounts").expect("table");
                        let rows: Vec<(u64, u64)> = if r % 2 == 0 {
                            rx.range(&t, Bound::Unbounded, Bound::Unbounded)
                                .expect("range")
                                .map(|e| {
                                    decode(
                                        &mailvault::btree::read_value(rx.pages(), &e.expect("row").1).expect("value"),
                                    )
                                })
                                .collect()
                        } else {
                            (0..ACCOUNTS)
                                .rev()
                                .map(|i| decode(&rx.get(&t, &account(i)).expect("get").expect("present")))
                                .collect()
                        };
                        assert_eq!(rows.len() as u64, ACCOUNTS);
                        let total: u64 = rows.iter().map(|(b, _)| b).sum();
                        assert_eq!(
                            total,
                            ACCOUNTS * START,
                            "snapshot {} shows money out of thin air",
                            rx.sequence()
                        );
                        let stamp = rows[0].1;
                        assert!(rows.iter().all(|(_, s)| *s == stamp), "snapshot mixes transactions");
                        assert!(stamp >= last, "a later snapshot went back in time");
                        last = stamp;
                        checks.fetch_add(1, Ordering::Relaxed);
                        seen_stamps.fetch_max(stamp, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        let mut balances = vec![START; ACCOUNTS as usize];
        let mut rng = mailvault::vfs::sim::SimRng::new(3);
        // 120 transfers, then more until the readers have checked enough
        // snapshots (and seen a transfer): a loaded machine may be slower.
        let mut stamp = 0u64;
        // A reader that ended (it failed) ends the wait: its panic is the report.
        let readers_done = || {
            checks.load(Ordering::Relaxed) > 10 && seen_stamps.load(Ordering::Relaxed) > 0
                || readers.iter().any(|h| h.is_finished())
        };
        while stamp < 120 || (!readers_done() && stamp < 6_000) {
            stamp += 1;
            let (from, to) = (rng.below(ACCOUNTS) as usize, rng.below(ACCOUNTS) as usize);
            let amount = rng.below(balances[from] + 1);
            balances[from] -= amount;
            balances[to] += amount;
            let mut tx = db.begin_write();
            for (i, b) in balances.iter().enumerate() {
                tx.put(&t, &account(i as u64), &encode(*b, stamp)).expect("put");
            }
            tx.commit().expect("commit");
            if stamp.is_multiple_of(40) {
                db.checkpoint().expect("checkpoint");
            }
        }
        stop.store(true, Ordering::Relaxed);
    });
    assert!(checks.load(Ordering::Relaxed) > 10, "readers ran");
    assert!(
        seen_stamps.load(Ordering::Relaxed) > 0,
        "readers saw the writer's commits"
    );
    db.close().expect("close");
}

/// The same invariant with a cache far smaller than the data, so pages are
/// evicted and re-read under the readers, and with transactions that delete
/// every row and insert it again, so pages are freed and reused while older
/// snapshots still read them.
#[test]
fn snapshots_survive_eviction_and_page_reuse() {
    survive_eviction_and_reuse(600, 120, 24, 40);
}

/// The same with a cache of several shards (one per 256 pages), each
/// evicting on its own while readers read and the writer publishes.
#[test]
fn snapshots_survive_eviction_across_cache_shards() {
    survive_eviction_and_reuse(4000, 1200, 1024, 10);
}

/// With values of six pages, whose data pages readers read in passing
/// (around the cache): a snapshot still reads the version it began with
/// after the pages are freed, reused and checkpointed over.
#[test]
fn snapshots_read_large_values_in_passing_across_reuse() {
    survive_eviction_and_reuse(24, 24_000, 64, 30);
}

fn survive_eviction_and_reuse(row_count: u64, value_len: usize, cache_pages: usize, commits: u64) {
    let sim = SimVfs::new(12);
    let small = DbOptions {
        cache_bytes: cache_pages * 4096,
        ..opts()
    };
    let db = Database::create(sim, "/db", small).expect("create");
    let mut tx = db.begin_write();
    let t = tx.create_table("accounts").expect("create");
    for i in 0..row_count {
        tx.put(&t, &account(i), &encode_len(START, 0, value_len)).expect("put");
    }
    tx.commit().expect("commit");
    let stop = AtomicBool::new(false);
    let checks = AtomicU64::new(0);
    std::thread::scope(|s| {
        let readers: Vec<_> = (0..2)
            .map(|_| {
                let (db, stop, checks) = (&db, &stop, &checks);
                s.spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        let rx = db.begin_read();
                        let t = rx.open_table("accounts").expect("table");
                        let rows: Vec<(u64, u64)> = rx
                            .range(&t, Bound::Unbounded, Bound::Unbounded)
                            .expect("range")
                            .map(|e| {
                                decode(&mailvault::btree::read_value(rx.pages(), &e.expect("row").1).expect("value"))
                            })
                            .collect();
                        assert_eq!(rows.len() as u64, row_count, "snapshot {}", rx.sequence());
                        assert_eq!(rows.iter().map(|(b, _)| b).sum::<u64>(), row_count * START);
                        assert!(rows.iter().all(|(_, s)| *s == rows[0].1), "snapshot mixes transactions");
                        checks.fetch_add(1, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        // The planned commits, then more until the readers have checked a
        // few snapshots: on a loaded machine they may not have by then.
        let mut stamp = 0;
        let waiting = || checks.load(Ordering::Relaxed) <= 5 && !readers.iter().any(|h| h.is_finished());
        while stamp < commits || (waiting() && stamp < commits * 50) {
            stamp += 1;
            let mut tx = db.begin_write();
            if stamp % 3 == 0 {
                for i in 0..row_count {
                    tx.delete(&t, &account(i)).expect("delete");
                }
            }
            for i in 0..row_count {
                tx.put(&t, &account(i), &encode_len(START, stamp, value_len))
                    .expect("put");
            }
            tx.commit().expect("commit");
            if stamp % 5 == 0 {
                db.checkpoint().expect("checkpoint");
            }
        }
        stop.store(true, Ordering::Relaxed);
    });
    assert!(checks.load(Ordering::Relaxed) > 5, "readers ran");
    let report = db.begin_read().verify().expect("verify");
    assert!(report.is_ok(), "{:?}", report.problems);
    db.close().expect("close");
}
