//! Micro-benchmarks of the log's encoding paths, through the public API only.
//!
//! `cargo bench --bench log_codec` (add `-- --quick` for a short run). Every
//! benchmark runs on the simulated file system, so the figures measure CPU
//! work (checksums, framing, buffering), not a disk.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use mailvault::log::codec::decode_frame_stream;
use mailvault::log::{
    FrameHeader, GenerationHeader, GenerationState, Log, LogOptions, LogSignature, Lsn, generation_name,
};
use mailvault::vfs::SimVfs;
use std::hint::black_box;
use std::path::Path;
use std::time::Duration;

const FRAME: usize = 4096;
const DIR: &str = "/bench/log";

fn frame_with_payload() -> Vec<u8> {
    let mut frame = vec![0u8; FRAME];
    for (i, b) in frame.iter_mut().enumerate().skip(32) {
        *b = (i * 31 % 251) as u8;
    }
    frame
}

fn frame_header() -> FrameHeader {
    FrameHeader {
        crc: 0,
        salt: 0x1234_5678,
        lsn: Lsn::new(3, 7 * FRAME as u32),
        shadow_seq: 0,
        used: (FRAME - 32) as u16,
        first_record: 0,
        flags: 0,
        batch_start: 5,
    }
}

fn generation_header() -> GenerationHeader {
    GenerationHeader {
        state: GenerationState::Active,
        frame_size: FRAME as u32,
        generation: 7,
        generation_size: 16 << 20,
        signature: LogSignature([7; 16]),
        epoch: 1,
        created_us: 1_700_000_000_000_000,
        nonce: 42,
        prev_created_us: 1_699_999_999_000_000,
        prev_salt: 0xdead_beef,
        prev_chain: 0x0bad_f00d,
        max_write_span: 8 << 20,
    }
}

fn bench_crc(c: &mut Criterion) {
    let frame = frame_with_payload();
    let mut g = c.benchmark_group("crc32c");
    g.throughput(Throughput::Bytes(FRAME as u64));
    g.bench_function("frame_4k", |b| b.iter(|| crc32c::crc32c(black_box(&frame[4..]))));
    g.finish();
}

fn bench_frame_header(c: &mut Criterion) {
    let mut g = c.benchmark_group("frame_header");
    g.throughput(Throughput::Bytes(FRAME as u64));
    let mut frame = frame_with_payload();
    g.bench_function("seal_4k", |b| {
        b.iter(|| {
            let mut h = frame_header();
            h.seal_into(black_box(&mut frame));
            h.crc
        })
    });
    let mut sealed = frame_with_payload();
    frame_header().seal_into(&mut sealed);
    assert!(FrameHeader::decode(&sealed).is_ok());
    g.bench_function("decode_4k", |b| b.iter(|| FrameHeader::decode(black_box(&sealed))));
    g.finish();
}

fn bench_generation_header(c: &mut Criterion) {
    let mut g = c.benchmark_group("generation_header");
    let header = generation_header();
    let mut out = vec![0u8; FRAME];
    g.bench_function("encode", |b| b.iter(|| black_box(&header).encode(black_box(&mut out))));
    header.encode(&mut out);
    assert!(GenerationHeader::decode(&out).is_ok());
    g.bench_function("decode", |b| b.iter(|| GenerationHeader::decode(black_box(&out))));
    g.finish();
}

/// Options for a log of 1 MiB generations of 4 KiB frames.
fn small_log_opts() -> LogOptions {
    LogOptions {
        frame_size: FRAME as u32,
        generation_size: 1 << 20,
        buffer_size: 256 << 10,
        max_record_size: 64 << 10,
        recycle_pool: 2,
        signature: Some(LogSignature([3; 16])),
        ..LogOptions::default()
    }
}

/// The full, sealed first generation (1 MiB) of a log filled by real commits.
fn real_image() -> Vec<u8> {
    let sim = SimVfs::new(1);
    let log = Log::create(sim.clone(), DIR, small_log_opts()).expect("create");
    let mut i = 0u32;
    while log.stats().generation_switches == 0 {
        let len = 100 + (i as usize * 397) % 3000;
        let body: Vec<u8> = (0..len).map(|j| (j as u32 ^ i) as u8).collect();
        log.append(&body).expect("append");
        if i.is_multiple_of(8) {
            log.flush().expect("flush");
        }
        i += 1;
    }
    log.close().expect("close");
    let image = sim
        .written_image(&Path::new(DIR).join(generation_name(1)))
        .expect("generation 1");
    assert_eq!(image.len(), 1 << 20);
    image
}

fn bench_frame_stream(c: &mut Criterion) {
    let image = real_image();
    let report = decode_frame_stream(&image, FRAME as u32, usize::MAX);
    assert!(report.header.is_ok() && !report.records.is_empty());
    assert!(report.records.iter().all(|r| r.checksum_ok));
    let mut g = c.benchmark_group("decode_frame_stream");
    g.throughput(Throughput::Bytes(image.len() as u64));
    g.bench_function("image_1m", |b| {
        b.iter(|| decode_frame_stream(black_box(&image), FRAME as u32, usize::MAX))
    });
    g.finish();
}

fn bench_append(c: &mut Criterion) {
    const RECORD: usize = 1024;
    const FLUSH_EVERY: u64 = 256;
    let sim = SimVfs::new(2);
    let log = Log::create(sim, DIR, small_log_opts()).expect("create");
    let body = vec![0x5au8; RECORD];
    let mut g = c.benchmark_group("log_append");
    g.throughput(Throughput::Bytes(RECORD as u64));
    let mut n = 0u64;
    g.bench_with_input(BenchmarkId::new("sim", "1k_records"), &body, |b, body| {
        b.iter(|| {
            let a = log.append(black_box(body)).expect("append");
            n += 1;
            if n.is_multiple_of(FLUSH_EVERY) {
                let durable = log.flush().expect("flush");
                // Keep the simulated disk small: drop whole generations behind the durable end.
                log.recycle_before(durable).expect("recycle");
            }
            a
        })
    });
    g.finish();
    log.close().expect("close");
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(30)
}

criterion_group! {
    name = benches;
    config = config();
    targets = bench_crc, bench_frame_header, bench_generation_header, bench_frame_stream, bench_append
}
criterion_main!(benches);
