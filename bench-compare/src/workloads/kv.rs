//! The key-value workloads: durable commits (1), the bulk load (3), warm
//! point reads (4) and the 90/10 mix (6).

use super::timing::{for_seconds, micros_since, percentile};
use super::{Metrics, Params};
use crate::data::{check_value, expect_record, record_key, record_value};
use crate::engines::{EngineKind, KvStore};
use crate::error::{BenchResult, check_failed};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

/// Workload 1's record: 1 KiB.
const COMMIT_VALUE: usize = 1024;
/// Slots of the raw floor's file in workload 1 (64 MiB of 1 KiB records).
const COMMIT_SLOTS: u64 = 65_536;
/// Workload 3's small record: a 16-byte key and a 32-byte value.
const BULK_VALUE: usize = 32;
/// Records of workloads 4 and 6: a 16-byte key and a 100-byte value.
const READ_VALUE: usize = 100;
/// Records per transaction when loading before reads (small enough for
/// every engine's default transaction limit).
const LOAD_BATCH: u64 = 1_000;

/// A splitmix stream per thread, for random indices.
struct Rng(u64);

impl Rng {
    fn new(seed: u64, thread: usize) -> Rng {
        Rng(seed ^ (thread as u64 + 1).wrapping_mul(0xd1b5_4a32_d192_ed03))
    }

    fn below(&mut self, bound: u64) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        (z ^ (z >> 31)) % bound
    }
}

fn metric(metrics: &mut Metrics, name: &str, value: f64) {
    metrics.insert(name.to_string(), value);
}

/// Workload 1: each thread commits one 1 KiB record per durable transaction.
/// Thread `t` writes records `t`, `t + threads`, ..., so nothing is overwritten
/// (the raw floor's slots wrap, and are checked accordingly).
pub fn commits(engine: EngineKind, dir: &Path, threads: usize, params: &Params) -> BenchResult<Metrics> {
    let store = engine.open_kv(dir, COMMIT_SLOTS, COMMIT_VALUE)?;
    let (per_thread, elapsed) = for_seconds(threads, params.seconds, |thread, stop| {
        let mut latencies = Vec::new();
        let mut written = 0u64;
        while !stop.load(Ordering::Relaxed) {
            let index = written * threads as u64 + thread as u64;
            let value = record_value(index, 0, COMMIT_VALUE);
            let start = Instant::now();
            store.put_durable(&record_key(index), &value)?;
            latencies.push(micros_since(start));
            written += 1;
        }
        Ok((written, latencies))
    })?;
    for (thread, (written, _)) in per_thread.iter().enumerate() {
        let first_checked = if engine == EngineKind::Raw {
            written.saturating_sub(1)
        } else {
            0
        };
        for n in first_checked..*written {
            expect_record(|k| store.get(k), n * threads as u64 + thread as u64, COMMIT_VALUE)?;
        }
    }
    store.close()?;
    let commits: u64 = per_thread.iter().map(|(n, _)| n).sum();
    let mut latencies: Vec<f64> = per_thread.into_iter().flat_map(|(_, l)| l).collect();
    let mut metrics = Metrics::new();
    metric(&mut metrics, "commits", commits as f64);
    metric(&mut metrics, "commits_per_sec", commits as f64 / elapsed);
    metric(&mut metrics, "p50_us", percentile(&mut latencies, 50.0));
    metric(&mut metrics, "p99_us", percentile(&mut latencies, 99.0));
    Ok(metrics)
}

/// Workload 3: `bulk_records` records of 48 bytes in one transaction, timed
/// until it is durable.
pub fn bulk_load(engine: EngineKind, dir: &Path, params: &Params) -> BenchResult<Metrics> {
    let records = params.bulk_records;
    let store = engine.open_kv(dir, records, BULK_VALUE)?;
    let start = Instant::now();
    store.put_batch(0, records, BULK_VALUE)?;
    let elapsed = start.elapsed().as_secs_f64();
    let mut rng = Rng::new(params.seed, 0);
    for _ in 0..10_000.min(records) {
        expect_record(|k| store.get(k), rng.below(records), BULK_VALUE)?;
    }
    expect_record(|k| store.get(k), records - 1, BULK_VALUE)?;
    if engine != EngineKind::Raw && store.get(&record_key(records))?.is_some() {
        return Err(check_failed(format!("record {records} was never written and is there")));
    }
    store.close()?;
    let mut metrics = Metrics::new();
    metric(&mut metrics, "records", records as f64);
    metric(&mut metrics, "seconds", elapsed);
    metric(&mut metrics, "records_per_sec", records as f64 / elapsed);
    Ok(metrics)
}

/// Loads `records` records in transactions of [`LOAD_BATCH`], then reads
/// every one once (warming every cache, and checking each).
fn load_and_warm(store: &dyn KvStore, records: u64) -> BenchResult<f64> {
    let start = Instant::now();
    let mut first = 0;
    while first < records {
        let count = LOAD_BATCH.min(records - first);
        store.put_batch(first, count, READ_VALUE)?;
        first += count;
    }
    let load_secs = start.elapsed().as_secs_f64();
    for index in 0..records {
        expect_record(|k| store.get(k), index, READ_VALUE)?;
    }
    Ok(load_secs)
}

/// Workload 4: random point reads of loaded records from a warm cache.
pub fn reads(engine: EngineKind, dir: &Path, threads: usize, params: &Params) -> BenchResult<Metrics> {
    let records = params.read_records;
    let store = engine.open_kv(dir, records, READ_VALUE)?;
    let load_secs = load_and_warm(store.as_ref(), records)?;
    let (per_thread, elapsed) = for_seconds(threads, params.seconds, |thread, stop| {
        let mut rng = Rng::new(params.seed, thread);
        let mut done = 0u64;
        while !stop.load(Ordering::Relaxed) {
            expect_record(|k| store.get(k), rng.below(records), READ_VALUE)?;
            done += 1;
        }
        Ok(done)
    })?;
    store.close()?;
    let reads: u64 = per_thread.iter().sum();
    let mut metrics = Metrics::new();
    metric(&mut metrics, "reads_per_sec", reads as f64 / elapsed);
    metric(&mut metrics, "load_secs", load_secs);
    Ok(metrics)
}

/// Workload 6: each operation reads a random record (90 %) or overwrites
/// one with a new version in a durable transaction (10 %).
pub fn mixed(engine: EngineKind, dir: &Path, threads: usize, params: &Params) -> BenchResult<Metrics> {
    let records = params.read_records;
    let store = engine.open_kv(dir, records, READ_VALUE)?;
    load_and_warm(store.as_ref(), records)?;
    let (per_thread, elapsed) = for_seconds(threads, params.seconds, |thread, stop: &AtomicBool| {
        let mut rng = Rng::new(params.seed, thread);
        let (mut reads, mut writes) = (0u64, 0u64);
        while !stop.load(Ordering::Relaxed) {
            let index = rng.below(records);
            if rng.below(10) == 0 {
                // Versions are unique per writer and write, so a torn or
                // misplaced value cannot pass for another.
                let version = ((thread as u64 + 1) << 40) | (writes + 1);
                store.put_durable(&record_key(index), &record_value(index, version, READ_VALUE))?;
                writes += 1;
            } else {
                expect_record(|k| store.get(k), index, READ_VALUE)?;
                reads += 1;
            }
        }
        Ok((reads, writes))
    })?;
    let mut rng = Rng::new(params.seed, threads + 1);
    for _ in 0..1_000 {
        let index = rng.below(records);
        match store.get(&record_key(index))? {
            Some(value) => {
                check_value(index, &value, READ_VALUE)?;
            }
            None => return Err(check_failed(format!("record {index} disappeared during the mix"))),
        }
    }
    store.close()?;
    let reads: u64 = per_thread.iter().map(|(r, _)| r).sum();
    let writes: u64 = per_thread.iter().map(|(_, w)| w).sum();
    let mut metrics = Metrics::new();
    metric(&mut metrics, "ops_per_sec", (reads + writes) as f64 / elapsed);
    metric(&mut metrics, "reads_per_sec", reads as f64 / elapsed);
    metric(&mut metrics, "writes_per_sec", writes as f64 / elapsed);
    Ok(metrics)
}
