//! Micro-benchmarks of two per-byte costs every write and read pays: the
//! page checksum (crc32c over a 16 KiB page, sealed before a write and
//! verified after a read) and body compression as the mailbox store does
//! it (zstd at the store's default level, in 16 KiB chunks, through
//! `Store::prepare_body`), on messages from the seeded realistic-mix
//! generator.
//!
//! Also the encoding of a commit's redo record, which the single writer
//! does for every transaction: one put (three pages changed by ranges) and
//! a leaf split (a half-empty new page logged as a sparse image).
//!
//! `cargo bench --bench pages_and_bodies` (add `-- --quick` for a short run).

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use mailvault::log::Lsn;
use mailvault::mailbox::workload::{MailGenerator, MessageKind};
use mailvault::mailbox::{CHUNK_RAW, Store, StoreOptions};
use mailvault::pager::PageKind;
use mailvault::pager::page::{init_header, seal, verify};
use mailvault::pager::redo::{DbRecord, LOGGED_FROM, PageChange, diff};
use mailvault::vfs::OsVfs;
use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

const PAGE_SIZE: usize = 16384;
const SALT: u32 = 0x5eed_0006;

/// A leaf-like page: header, then bytes that vary as cells do.
fn page() -> Vec<u8> {
    let mut page = vec![0u8; PAGE_SIZE];
    init_header(&mut page, 42, PageKind::Leaf, SALT);
    for (i, b) in page.iter_mut().enumerate().skip(64) {
        *b = (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[1];
    }
    page
}

fn checksum(c: &mut Criterion) {
    let mut group = c.benchmark_group("page_checksum");
    group.throughput(Throughput::Bytes(PAGE_SIZE as u64));
    let mut sealed = page();
    seal(&mut sealed);
    group.bench_function("seal_16k", |b| {
        let mut page = page();
        b.iter(|| seal(black_box(&mut page)))
    });
    group.bench_function("verify_16k", |b| {
        b.iter(|| verify(black_box(&sealed), 42, SALT, Path::new("bench"), PAGE_SIZE))
    });
    group.finish();
}

/// The record of one 220-byte insert into a leaf (a slot shifted in, the
/// cell written) and of the branch and root above it (counts changed).
fn one_put_record() -> DbRecord {
    let old = page();
    let changes = (0..3u32)
        .map(|i| {
            let mut new = old.clone();
            new[34] ^= 1;
            let at = 52 + 6 * (10 + 7 * i as usize);
            new.copy_within(at..at + 300, at + 6);
            if i == 0 {
                new[9000..9220].fill(0x5a);
            }
            let ranges = diff(&old, &new);
            (
                7 + i,
                PageChange::Ranges {
                    before: Lsn::new(1, 4096),
                    ranges,
                },
            )
        })
        .collect();
    DbRecord::Commit {
        seq: 9,
        page_count: 100,
        changes,
    }
}

/// A split: the new right page half full (slots at the front, cells at the
/// back, zeros between) and the left page rewritten.
fn split_record() -> DbRecord {
    let full = page();
    let mut right = vec![0u8; PAGE_SIZE];
    right[..52 + 6 * 35].copy_from_slice(&full[..52 + 6 * 35]);
    right[PAGE_SIZE - 35 * 220..].copy_from_slice(&full[PAGE_SIZE - 35 * 220..]);
    let mut left = full.clone();
    left[52 + 6 * 35..PAGE_SIZE / 2].fill(0);
    DbRecord::Commit {
        seq: 10,
        page_count: 101,
        changes: vec![
            (
                8,
                PageChange::Ranges {
                    before: Lsn::new(1, 4096),
                    ranges: diff(&full, &left),
                },
            ),
            (100, PageChange::Image(right[LOGGED_FROM..].to_vec())),
        ],
    }
}

fn records(c: &mut Criterion) {
    let mut group = c.benchmark_group("redo_record");
    // The diff of one insert into a 16 KiB leaf: a slot shifted in and a
    // cell written; the whole page is compared.
    let old = page();
    let mut new = old.clone();
    new[34] ^= 1;
    new.copy_within(112..412, 118);
    new[9000..9220].fill(0x5a);
    group.bench_function("diff_one_put", |b| b.iter(|| diff(black_box(&old), black_box(&new))));
    for (name, record) in [("one_put", one_put_record()), ("split", split_record())] {
        group.bench_function(BenchmarkId::new("encode", name), |b| {
            b.iter(|| black_box(&record).encode())
        });
    }
    group.finish();
}

fn compression(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("a temporary directory for the store");
    let store = Store::create(Arc::new(OsVfs), dir.path().join("store"), StoreOptions::default()).expect("a new store");
    let mut generator = MailGenerator::new(6);
    let bodies = [
        ("plain_chunk", generator.message_of(MessageKind::Plain, CHUNK_RAW).bytes),
        ("html_chunk", generator.message_of(MessageKind::Html, CHUNK_RAW).bytes),
        (
            "attachment_256k",
            generator.message_of(MessageKind::Attachment, 256 << 10).bytes,
        ),
    ];
    let mut group = c.benchmark_group("body_compression");
    for (name, body) in &bodies {
        group.throughput(Throughput::Bytes(body.len() as u64));
        group.bench_with_input(BenchmarkId::new("prepare_body", name), body, |b, body| {
            b.iter(|| store.prepare_body(&mut black_box(&body[..])).expect("compressible"))
        });
    }
    group.finish();
    store.close().expect("a clean close");
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3));
    targets = checksum, records, compression
}
criterion_main!(benches);
