//! The phases of `bench kv` after the inserts: point reads and range scans
//! from a warm cache, and memory while writing four times the cache. Also
//! the batched writer that the memory and recovery phases share.

use crate::bench::{fill_body, stamp};
use crate::error::{CliError, Result};
use crate::kv_keys::{Existing, KeySpace, Rng, key as key_of};
use crate::kv_report::{KvMemory, Rate, Reads, Scans};
use crate::output::{memory_kib, process_cpu_time};
use crate::workers;
use mailvault::txn::{Database, Table};
use std::ops::Bound;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Entries per range scan.
pub const SCAN_LENGTH: usize = 100;
/// The warm-up reads every key once, but stops after this long.
const WARM_UP_LIMIT: Duration = Duration::from_secs(5);
/// How often the memory phase samples the RSS.
const SAMPLE_EVERY: Duration = Duration::from_millis(10);

fn missing(key: &[u8]) -> CliError {
    CliError::msg(format!(
        "key {:?} was inserted but is not in the database",
        String::from_utf8_lossy(key)
    ))
}

/// Reads every existing key once (to warm the cache), then times point reads
/// with one thread (if `threads` > 1) and with `threads`.
pub fn reads(db: &Database, table: &Table, existing: &Existing, threads: u32, phase: Duration) -> Result<Reads> {
    if existing.total() == 0 {
        return Err(CliError::msg("the insert phase inserted nothing: no keys to read"));
    }
    let start = Instant::now();
    let mut key = Vec::new();
    let mut warmed = 0;
    {
        let rx = db.begin_read();
        while warmed < existing.total() && start.elapsed() < WARM_UP_LIMIT {
            existing.nth(warmed, &mut key);
            rx.get(table, &key)?.ok_or_else(|| missing(&key))?;
            warmed += 1;
        }
    }
    let warm_up_sec = start.elapsed().as_secs_f64();
    let cache_held_bytes = db.pager().cache_usage().0;
    let read = |rng: &mut Rng, key: &mut Vec<u8>| -> Result<u64> {
        existing.random(rng, key);
        let rx = db.begin_read();
        rx.get(table, key)?.ok_or_else(|| missing(key))?;
        Ok(1)
    };
    let one_thread = match threads {
        1 => None,
        _ => Some(timed_ops("kv-read", 1, phase, read)?.0),
    };
    let (rate, _) = timed_ops("kv-read", threads, phase, read)?;
    Ok(Reads {
        rate,
        one_thread,
        warmed_keys: warmed,
        warm_up_sec,
        cache_held_bytes,
    })
}

/// Times range scans of [`SCAN_LENGTH`] entries from random existing keys.
pub fn scans(db: &Database, table: &Table, existing: &Existing, threads: u32, phase: Duration) -> Result<Scans> {
    let scan = |rng: &mut Rng, key: &mut Vec<u8>| -> Result<u64> {
        existing.random(rng, key);
        let rx = db.begin_read();
        let mut entries = 0;
        for entry in rx
            .range(table, Bound::Included(key.as_slice()), Bound::Unbounded)?
            .take(SCAN_LENGTH)
        {
            entry?;
            entries += 1;
        }
        Ok(entries)
    };
    let (rate, entries) = timed_ops("kv-scan", threads, phase, scan)?;
    let mean_entries = if rate.ops > 0 {
        entries as f64 / rate.ops as f64
    } else {
        0.0
    };
    Ok(Scans {
        rate,
        length: SCAN_LENGTH,
        mean_entries,
    })
}

/// Runs `op` in a loop on `threads` threads for `phase`; returns the rate and
/// the sum of what `op` returned.
fn timed_ops(
    name: &str,
    threads: u32,
    phase: Duration,
    op: impl Fn(&mut Rng, &mut Vec<u8>) -> Result<u64> + Sync,
) -> Result<(Rate, u64)> {
    let cpu = process_cpu_time();
    let (results, (), start) = workers::run_timed(
        name,
        threads as usize,
        phase,
        |w| {
            let mut rng = Rng::new(w.index as u64 + 1);
            let mut key = Vec::with_capacity(64);
            let (mut ops, mut sum) = (0u64, 0u64);
            while w.running() {
                sum += op(&mut rng, &mut key)?;
                ops += 1;
            }
            Ok((ops, sum))
        },
        |_| Ok(()),
    )?;
    let (elapsed, cpu) = (start.elapsed(), process_cpu_time().saturating_sub(cpu));
    let ops = results.iter().map(|r| r.0).sum();
    let sum = results.iter().map(|r| r.1).sum();
    Ok((Rate::new(threads, ops, elapsed, cpu), sum))
}

/// What [`write_batches`] wrote.
#[derive(Debug, Default, Clone, Copy)]
pub struct Written {
    pub puts: u64,
    /// Key and value bytes.
    pub bytes: u64,
}

/// Key and value bytes per transaction of [`write_batches`].
const BATCH_BYTES: usize = 256 << 10;

/// Appends new keys with `value_size`-byte values to `table`, about
/// [`BATCH_BYTES`] per durable commit, each batch to the end of one random
/// mailbox, until `done` says so (asked before every commit). Few pages
/// change per batch, so the log carries about the data written.
pub fn write_batches(
    db: &Database,
    table: &Table,
    value_size: usize,
    mut done: impl FnMut(&Written) -> bool,
) -> Result<Written> {
    let per_batch = (BATCH_BYTES / (value_size + 40)).max(1) as u64;
    let keys = KeySpace::default();
    let mut rng = Rng::new(value_size as u64);
    let mut value = vec![0u8; value_size];
    fill_body(&mut value, u32::MAX);
    let mut key = Vec::with_capacity(64);
    let mut written = Written::default();
    while !done(&written) {
        let (mailbox, first) = keys.allocate_run(&mut rng, per_batch);
        let mut tx = db.begin_write();
        for uid in first..first + per_batch {
            key_of(mailbox, uid, &mut key);
            stamp(&mut value, written.puts, u32::MAX);
            tx.put(table, &key, &value)?;
            written.puts += 1;
            written.bytes += (key.len() + value.len()) as u64;
        }
        tx.commit()?;
    }
    Ok(written)
}

/// Creates `name` and returns it.
pub fn new_table(db: &Database, name: &str) -> Result<Table> {
    let mut tx = db.begin_write();
    let table = tx.create_table(name)?;
    tx.commit()?;
    Ok(table)
}

/// Writes four times `cache_bytes` of keys and values into a new table while
/// a thread samples the RSS and the bytes the page cache holds.
pub fn memory(db: &Database, value_size: usize, cache_bytes: usize) -> Result<KvMemory> {
    let table = new_table(db, "memory")?;
    let target = 4 * cache_bytes as u64;
    let start_rss_kib = memory_kib().1;
    let done = AtomicBool::new(false);
    let start = Instant::now();
    let (written, (peak_rss, peak_cache, samples)) = std::thread::scope(|s| {
        let sampler = s.spawn(|| {
            let (mut peak_rss, mut peak_cache, mut samples) = (None::<u64>, 0usize, 0u64);
            loop {
                let finished = done.load(Ordering::Relaxed);
                if let Some(rss) = memory_kib().1 {
                    peak_rss = Some(peak_rss.map_or(rss, |p| p.max(rss)));
                }
                peak_cache = peak_cache.max(db.pager().cache_usage().0);
                samples += 1;
                if finished {
                    return (peak_rss, peak_cache, samples);
                }
                std::thread::sleep(SAMPLE_EVERY);
            }
        });
        let written = write_batches(db, &table, value_size, |w| w.bytes >= target);
        done.store(true, Ordering::Relaxed);
        let sampled = sampler
            .join()
            .map_err(|_| CliError::msg("the memory sampler panicked"))?;
        written.map(|w| (w, sampled))
    })?;
    let cache_kib = (cache_bytes >> 10) as u64;
    Ok(KvMemory {
        cache_kib,
        written_bytes: written.bytes,
        puts: written.puts,
        elapsed_sec: start.elapsed().as_secs_f64(),
        start_rss_kib,
        peak_rss_kib: peak_rss,
        overhead_kib: peak_rss.map(|p| p as i64 - cache_kib as i64),
        peak_cache_held_kib: (peak_cache >> 10) as u64,
        samples,
        process_peak_rss_kib: None,
    })
}
