//! Micro-benchmarks of the B+tree on an in-memory page store, so the figures
//! measure the tree's CPU work: point gets, inserts and short range scans on
//! a warm tree of 100k mail-like entries (16-40 byte keys, 100-300 byte
//! values) in 16 KiB pages.
//!
//! `cargo bench --bench btree` (add `-- --quick` for a short run).

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use mailvault::btree::{self, MemStore};
use mailvault::pager::PageNo;
use std::hint::black_box;
use std::ops::Bound;
use std::time::Duration;

mod common;
use common::mix;

const ENTRIES: u64 = 100_000;
const PAGE_SIZE: usize = 16384;

/// Key `i`: a mailbox path and a message number, 16 to 40 bytes.
fn key(i: u64) -> Vec<u8> {
    let r = mix(i);
    let folder = ["INBOX", "Sent", "Archive/2024", "Lists/rust-users"][(r % 4) as usize];
    let mut key = format!("u{:04}/{folder}/{i:08}", r % 1000 / 7).into_bytes();
    key.truncate(40);
    key
}

fn value(i: u64) -> Vec<u8> {
    let len = 100 + (mix(i ^ 0xabc) % 201) as usize;
    (0..len).map(|j| (i as usize + j) as u8).collect()
}

fn build() -> (MemStore, PageNo) {
    let mut store = MemStore::new(PAGE_SIZE);
    let root = btree::create(&mut store).expect("create");
    for n in 0..ENTRIES {
        // A fixed permutation of 0..ENTRIES: 48271 is prime and does not divide it.
        let i = n * 48_271 % ENTRIES;
        btree::put(&mut store, root, &key(i), &value(i)).expect("put");
    }
    (store, root)
}

fn bench(c: &mut Criterion) {
    let (store, root) = build();
    let report = btree::verify(&store, root).expect("verify");
    assert!(report.is_ok());
    eprintln!(
        "tree: {} entries, height {}, {} node pages",
        report.entries, report.height, report.node_pages
    );
    let mut group = c.benchmark_group("btree");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(2))
        .warm_up_time(Duration::from_millis(500));

    // Keys are made ahead, so only the tree's work is measured.
    let hits: Vec<Vec<u8>> = (0..ENTRIES).map(|n| key(mix(n) % ENTRIES)).collect();
    let misses: Vec<Vec<u8>> = (0..ENTRIES).map(|n| key(ENTRIES + mix(n) % ENTRIES)).collect();
    let mut n = 0usize;
    group.throughput(Throughput::Elements(1));
    group.bench_function("get_hit", |b| {
        b.iter(|| {
            n = (n + 1) % hits.len();
            black_box(btree::get(&store, root, black_box(&hits[n])).expect("get"))
        })
    });
    group.bench_function("get_miss", |b| {
        b.iter(|| {
            n = (n + 1) % misses.len();
            black_box(btree::get(&store, root, black_box(&misses[n])).expect("get"))
        })
    });

    // Inserts of new keys into a copy of the warm tree (pages shared until
    // changed, like a write transaction's copy-on-write).
    let mut writer = store.clone();
    let mut next = ENTRIES;
    group.bench_function("insert", |b| {
        b.iter(|| {
            next += 1;
            btree::put(&mut writer, root, &key(next), &value(next)).expect("put")
        })
    });
    drop(writer);

    group.throughput(Throughput::Elements(100));
    group.bench_function("scan_100", |b| {
        b.iter(|| {
            n = (n + 1) % hits.len();
            let start = &hits[n];
            let range = btree::range(&store, root, Bound::Included(start), Bound::Unbounded).expect("range");
            let bytes: usize = range.take(100).map(|item| item.expect("item").0.len()).sum();
            black_box(bytes)
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
