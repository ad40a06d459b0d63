//! Shared by the readable-copy tests: the active's options, its random
//! work on table "t", and the table read on the active and on a copy.

#![allow(dead_code)]

#[path = "workload.rs"]
mod workload;

use mailvault::btree;
use mailvault::txn::{Database, DbOptions, PassiveRead};
use mailvault::vfs::sim::SimRng;
use std::collections::BTreeMap;
use std::ops::Bound;
use workload::{Mix, work_mix};

pub const PS: usize = 4096;
/// The copy's replay budget: 32 pages, so replay spills on its own too.
pub const COPY_CACHE: usize = 32 * PS;

/// The active checkpoints only when told: a background checkpoint's
/// records, appended between a commit and a ship, would leave the log's
/// open frame not yet shippable and the copy short of the last commit.
pub fn opts() -> DbOptions {
    let mut o = DbOptions {
        page_size: PS,
        cache_bytes: 1024 * PS,
        checkpoint_depth: 1 << 30,
        ..DbOptions::default()
    };
    o.log.frame_size = 512;
    o.log.generation_size = 128 << 10;
    o.max_transaction_bytes = 256 << 10;
    o.log.max_record_size = 256 << 10;
    o
}

pub type Rows = BTreeMap<Vec<u8>, Vec<u8>>;

/// A new active database at `path` with the empty table "t".
pub fn create_with_table(vfs: mailvault::vfs::SharedVfs, path: std::path::PathBuf, opts: DbOptions) -> Database {
    let db = Database::create(vfs, path, opts).unwrap();
    let mut tx = db.begin_write();
    tx.create_table("t").unwrap();
    tx.commit().unwrap();
    db
}

/// One transaction: puts (some long, over several pages) and deletes.
pub fn work(db: &Database, rng: &mut SimRng, round: u64) {
    work_mix(
        db,
        rng,
        round,
        &Mix {
            ops_below: 6,
            keys: 120,
            delete_one_in: 5,
            long_one_in: 6,
            long_min: 5000,
            long_span: 12_000,
            short_below: 400,
        },
    );
}

pub fn active_rows(db: &Database) -> Rows {
    let rx = db.begin_read();
    let t = rx.open_table("t").unwrap();
    let mut rows = Rows::new();
    for entry in rx.range(&t, Bound::Unbounded, Bound::Unbounded).unwrap() {
        let (key, value) = entry.unwrap();
        rows.insert(key, btree::read_value(rx.pages(), &value).unwrap());
    }
    rows
}

/// The table through a copy's snapshot: by a scan, each value checked
/// again by a point read.
pub fn copy_rows(rx: &PassiveRead) -> mailvault::pager::Result<Rows> {
    let t = rx.open_table("t")?;
    let mut rows = Rows::new();
    for entry in rx.range(&t, Bound::Unbounded, Bound::Unbounded)? {
        let (key, value) = entry?;
        let bytes = btree::read_value(rx.pages(), &value)?;
        assert_eq!(rx.get(&t, &key)?.as_deref(), Some(&bytes[..]), "scan and get agree");
        rows.insert(key, bytes);
    }
    Ok(rows)
}
