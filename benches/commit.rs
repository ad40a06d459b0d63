//! The CPU of one commit through the whole stack, without the fsync: one put
//! of a random 16-byte key and a 200-byte value per transaction, committed
//! lazily, into a table of 100k keys held in a cache larger than the tree.
//! This is the serial part of a durable commit: what the writer (or the
//! combiner of `Database::write`) spends per transaction under its lock.
//!
//! `cargo bench --bench commit` (add `-- --quick` for a short run).

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use mailvault::txn::{Database, DbOptions, Durability};
use mailvault::vfs::OsVfs;
use std::sync::Arc;
use std::time::Duration;

mod common;
use common::mix;

const ENTRIES: u64 = 100_000;

fn key(i: u64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&mix(i).to_be_bytes());
    k[8..].copy_from_slice(&i.to_be_bytes());
    k
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let opts = DbOptions {
        cache_bytes: 512 << 20,
        ..DbOptions::default()
    };
    let db = Arc::new(Database::create(Arc::new(OsVfs), dir.path(), opts).expect("create"));
    let value = [7u8; 200];
    let mut tx = db.begin_write();
    let table = tx.create_table("kv").expect("table");
    for i in 0..ENTRIES {
        tx.put(&table, &key(i), &value).expect("put");
        if i % 1000 == 999 {
            tx.commit_with(Durability::Lazy).expect("commit");
            tx = db.begin_write();
        }
    }
    tx.commit().expect("commit");

    let mut group = c.benchmark_group("commit");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_millis(500))
        .throughput(Throughput::Elements(1));
    let mut next = ENTRIES;
    group.bench_function("put_lazy", |b| {
        b.iter(|| {
            next += 1;
            let mut tx = db.begin_write();
            tx.put(&table, &key(next), &value).expect("put");
            tx.commit_with(Durability::Lazy).expect("commit")
        })
    });
    group.bench_function("write_lazy", |b| {
        b.iter(|| {
            next += 1;
            let table = table.clone();
            db.write(Durability::Lazy, move |tx| tx.put(&table, &key(next), &value))
                .expect("write")
        })
    });
    group.finish();
    match Arc::try_unwrap(db) {
        Ok(db) => db.close().expect("close"),
        Err(_) => panic!("the database is still shared"),
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
