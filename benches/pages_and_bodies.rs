//! Micro-benchmarks of two per-byte costs every write and read pays: the
//! page checksum (crc32c over a 16 KiB page, sealed before a write and
//! verified after a read) and body compression as the mailbox store does
//! it (zstd at the store's default level, in 16 KiB chunks, through
//! `Store::prepare_body`), on messages from the seeded realistic-mix
//! generator.
//!
//! `cargo bench --bench pages_and_bodies` (add `-- --quick` for a short run).

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use mailvault::mailbox::workload::{MailGenerator, MessageKind};
use mailvault::mailbox::{CHUNK_RAW, Store, StoreOptions};
use mailvault::pager::PageKind;
use mailvault::pager::page::{init_header, seal, verify};
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
    targets = checksum, compression
}
criterion_main!(benches);
