//! Model-based property test of the transaction layer against `BTreeMap`s:
//! random sequences of puts, deletes, reads, range scans, commits,
//! rollbacks, checkpoints, clean reopens and crashes. After a crash every
//! committed change is there and nothing rolled back or uncommitted is.

use mailvault::btree::read_value;
use mailvault::log::LogOptions;
use mailvault::pager::TornPages;
use mailvault::txn::{Database, DbOptions};
use mailvault::vfs::SimVfs;
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::ops::Bound;

type Model = BTreeMap<u8, BTreeMap<Vec<u8>, Vec<u8>>>;

#[derive(Debug, Clone)]
enum Op {
    Put {
        table: u8,
        key: u16,
        len: u16,
        fill: u8,
    },
    Delete {
        table: u8,
        key: u16,
    },
    Get {
        table: u8,
        key: u16,
    },
    Scan {
        table: u8,
        from: u16,
        to: u16,
        backward: bool,
    },
    Commit,
    Rollback,
    Checkpoint,
    Reopen,
    Crash,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (0..3u8, 0..200u16, prop_oneof![4 => 0..200u16, 1 => 200..6000u16], any::<u8>())
            .prop_map(|(table, key, len, fill)| Op::Put { table, key, len, fill }),
        3 => (0..3u8, 0..200u16).prop_map(|(table, key)| Op::Delete { table, key }),
        2 => (0..3u8, 0..200u16).prop_map(|(table, key)| Op::Get { table, key }),
        1 => (0..3u8, 0..200u16, 0..200u16, any::<bool>())
            .prop_map(|(table, from, to, backward)| Op::Scan { table, from, to, backward }),
        3 => Just(Op::Commit),
        1 => Just(Op::Rollback),
        1 => Just(Op::Checkpoint),
        1 => Just(Op::Reopen),
        1 => Just(Op::Crash),
    ]
}

fn opts(seed: u64) -> DbOptions {
    DbOptions {
        torn_pages: if seed.is_multiple_of(2) {
            TornPages::DoubleWrite
        } else {
            TornPages::FullPageImages
        },
        page_size: 4096,
        cache_bytes: 32 * 4096,
        checkpoint_depth: 128 << 10,
        log: LogOptions {
            frame_size: 1024,
            generation_size: 256 << 10,
            ..LogOptions::default()
        },
        ..DbOptions::default()
    }
}

fn key(k: u16) -> Vec<u8> {
    format!("mbox/{}/msg/{k:05}", k % 7).into_bytes()
}

fn name(t: u8) -> String {
    format!("table{t}")
}

fn value(len: u16, fill: u8) -> Vec<u8> {
    (0..len).map(|i| fill.wrapping_add(i as u8)).collect()
}

/// Everything the database holds, read on a snapshot.
fn read_all(db: &Database) -> Model {
    let rx = db.begin_read();
    let mut out = Model::new();
    for t in 0..3u8 {
        let table = rx.open_table(&name(t)).expect("table");
        let rows = rx
            .range(&table, Bound::Unbounded, Bound::Unbounded)
            .expect("range")
            .map(|e| {
                let (k, v) = e.expect("entry");
                (k, read_value(rx.pages(), &v).expect("value"))
            })
            .collect();
        out.insert(t, rows);
    }
    out
}

fn run(ops: Vec<Op>, seed: u64) {
    let sim = SimVfs::new(seed);
    let mut db = Database::create(sim.clone(), "/db", opts(seed)).expect("create");
    let mut tx = db.begin_write();
    for t in 0..3 {
        tx.create_table(&name(t)).expect("create table");
    }
    tx.commit().expect("commit");
    let mut committed: Model = (0..3).map(|t| (t, BTreeMap::new())).collect();
    let mut pending = committed.clone();
    let mut ops = ops.into_iter();
    loop {
        // One write transaction over the ops up to the next one that ends it.
        let end = {
            let mut tx = db.begin_write();
            loop {
                let Some(op) = ops.next() else {
                    tx.rollback();
                    break None;
                };
                match op {
                    Op::Put {
                        table,
                        key: k,
                        len,
                        fill,
                    } => {
                        let t = tx.open_table(&name(table)).expect("table");
                        let v = value(len, fill);
                        tx.put(&t, &key(k), &v).expect("put");
                        pending.get_mut(&table).expect("model").insert(key(k), v);
                    }
                    Op::Delete { table, key: k } => {
                        let t = tx.open_table(&name(table)).expect("table");
                        let was = tx.delete(&t, &key(k)).expect("delete");
                        assert_eq!(was, pending.get_mut(&table).expect("model").remove(&key(k)).is_some());
                    }
                    Op::Get { table, key: k } => {
                        let t = tx.open_table(&name(table)).expect("table");
                        assert_eq!(tx.get(&t, &key(k)).expect("get"), pending[&table].get(&key(k)).cloned());
                        // A snapshot sees only what was committed.
                        let rx = db.begin_read();
                        let rt = rx.open_table(&name(table)).expect("table");
                        assert_eq!(
                            rx.get(&rt, &key(k)).expect("get"),
                            committed[&table].get(&key(k)).cloned()
                        );
                    }
                    Op::Scan {
                        table,
                        from,
                        to,
                        backward,
                    } => {
                        let t = tx.open_table(&name(table)).expect("table");
                        let (a, b) = (key(from), key(to));
                        let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
                        let range = tx
                            .range(&t, Bound::Included(&lo[..]), Bound::Excluded(&hi[..]))
                            .expect("range");
                        let mut got: Vec<Vec<u8>> = if backward {
                            range.rev().map(|e| e.expect("entry").0).collect()
                        } else {
                            range.map(|e| e.expect("entry").0).collect()
                        };
                        if backward {
                            got.reverse();
                        }
                        let want: Vec<Vec<u8>> = pending[&table].range(lo..hi).map(|(k, _)| k.clone()).collect();
                        assert_eq!(got, want);
                    }
                    Op::Commit => {
                        tx.commit().expect("commit");
                        committed = pending.clone();
                        break Some(Op::Commit);
                    }
                    other => {
                        tx.rollback();
                        pending = committed.clone();
                        break Some(other);
                    }
                }
            }
        };
        match end {
            None => break,
            Some(Op::Checkpoint) => db.checkpoint().expect("checkpoint"),
            Some(op @ (Op::Reopen | Op::Crash)) => {
                if matches!(op, Op::Reopen) {
                    db.close().expect("close");
                } else {
                    db.pager().stop_background();
                    drop(db);
                    sim.crash();
                    sim.restart();
                }
                db = Database::open(sim.clone(), "/db", opts(seed)).expect("reopen");
                assert_eq!(read_all(&db), committed, "after {op:?}");
            }
            Some(_) => {}
        }
    }
    assert_eq!(read_all(&db), committed);
    let report = db.begin_read().verify().expect("verify");
    assert!(report.is_ok(), "verify: {:?}", report.problems);
    db.close().expect("close");
}

proptest! {
    // MAILVAULT_PROPTEST_CASES runs a longer campaign.
    #![proptest_config(ProptestConfig {
        cases: std::env::var("MAILVAULT_PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(128),
        ..ProptestConfig::default()
    })]

    #[test]
    fn transactions_match_the_model(ops in proptest::collection::vec(op(), 1..120), seed in any::<u64>()) {
        run(ops, seed);
    }
}
