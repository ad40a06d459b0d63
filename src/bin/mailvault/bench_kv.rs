//! `mailvault bench kv`: a new database in one directory, measured phase by
//! phase: memory while writing four times the cache, N threads inserting one
//! key per durable commit (in rounds with the raw fsync floor), point reads
//! and range scans from a warm cache, and recovery of a deep log against the
//! disk's cold sequential read.

use crate::acked::{AckedWriter, KvAckedLine};
use crate::bench::{self, LogRound, RECORD_PREFIX, fill_body, stamp};
use crate::bench_report::{Units, ratio};
use crate::error::{CliError, Result};
use crate::histogram::Histogram;
use crate::kv_keys::{KeySpace, Rng};
use crate::kv_report::{Insert, KvConfig, KvMemory, KvRatio, KvRaw, KvReport, KvRound};
use crate::workers::{self, Worker};
use crate::{kv_phases, kv_recovery, output, raw};
use clap::Args;
use mailvault::pager::DEFAULT_PAGE_SIZE;
use mailvault::txn::{Database, DbOptions, Durability, Table};
use mailvault::vfs::OsVfs;
use parking_lot::Mutex;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The table of the insert phase; `--acked` lines name it.
pub const TABLE: &str = "messages";
/// Bytes of each raw fsync write: a small commit.
const RAW_WRITE: usize = 4096;

#[derive(Debug, Args)]
pub struct BenchKvArgs {
    /// Directory for the database; must be empty or absent, and is kept afterwards.
    /// Default: a temporary directory in the current directory, removed at the end.
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// Inserting threads (one put per durable commit each).
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=4096))]
    threads: u32,
    /// Reading threads of the read and scan phases [default: --threads]; with
    /// more than one, reads are also measured with one thread.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=4096))]
    read_threads: Option<u32>,
    /// Duration of the insert phase, over all rounds; each raw phase runs
    /// min(S, 3) seconds in all, each read and scan phase S/5 (0.2 to 2 s).
    #[arg(long, value_name = "S", default_value_t = 10.0, value_parser = bench::parse_seconds)]
    seconds: f64,
    /// Rounds of raw fsync phase then insert phase [default: one per 2 s, 1 to 5].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=100))]
    rounds: Option<u32>,
    /// Bytes per value (at least 12: an id and the thread number).
    #[arg(long, value_name = "BYTES", default_value_t = 200,
          value_parser = clap::value_parser!(u64).range(RECORD_PREFIX as u64..=1 << 20))]
    value_size: u64,
    /// Page size of the new database: a power of two, 4096 to 65536.
    #[arg(long, value_name = "BYTES", default_value_t = DEFAULT_PAGE_SIZE, value_parser = parse_page_size)]
    page_size: usize,
    /// Page cache size in MiB (the memory phase writes four times as much)
    /// [default: the library's default, 64].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=65536))]
    cache_mib: Option<u64>,
    /// MiB of log the recovery phase writes after its last checkpoint, then replays.
    #[arg(long, value_name = "N", default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=4096))]
    recovery_mib: u64,
    /// Batches a committer yields through before parking (`LogOptions::yield_rounds`) [default: the library's default]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(0..=1000))]
    yield_rounds: Option<u32>,
    /// Write a line `<table> <key hex> <value len> <crc32c>` for every acknowledged insert to FILE.
    #[arg(long, value_name = "FILE")]
    acked: Option<PathBuf>,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

pub fn parse_page_size(s: &str) -> Result<usize, String> {
    let v: usize = s.parse().map_err(|e| format!("{e}"))?;
    if v.is_power_of_two() && (4096..=65536).contains(&v) {
        Ok(v)
    } else {
        Err("must be a power of two from 4096 to 65536".into())
    }
}

/// Each read and scan phase: a fifth of the insert phase, 0.2 to 2 s.
fn phase_duration(seconds: f64) -> Duration {
    Duration::from_secs_f64((seconds / 5.0).clamp(0.2, 2.0))
}

pub fn run(args: &BenchKvArgs) -> Result<()> {
    let value_size = args.value_size as usize;
    let cache_bytes = match args.cache_mib {
        Some(mib) => usize::try_from(mib << 20).map_err(|_| CliError::msg("--cache-mib is too large"))?,
        None => DbOptions::default().cache_bytes,
    };
    let read_threads = args.read_threads.unwrap_or(args.threads);
    let acked = match &args.acked {
        Some(path) => Some(Mutex::new(AckedWriter::create(path)?)),
        None => None,
    };
    let (dir, _temp) = bench::bench_dir(args.dir.as_deref())?;
    let mut opts = DbOptions {
        page_size: args.page_size,
        cache_bytes,
        ..DbOptions::default()
    };
    if let Some(rounds) = args.yield_rounds {
        opts.log.yield_rounds = rounds;
    }
    let rounds = args.rounds.unwrap_or_else(|| bench::default_rounds(args.seconds));
    let phase = phase_duration(args.seconds);
    let db = Database::create(Arc::new(OsVfs), &dir, opts.clone())?;
    // Memory first, on the new database: the RSS it starts from is the
    // process and an empty database, not what 64 committing threads left.
    tracing::info!("memory phase");
    let memory = kv_phases::memory(&db, value_size, cache_bytes)?;
    let table = kv_phases::new_table(&db, TABLE)?;
    let keys = KeySpace::default();
    tracing::info!(dir = %dir.display(), rounds, "pre-allocating the raw scratch file");
    let mut raw = raw::RawDisk::fsync_only(&dir, RAW_WRITE)?;
    let work = InsertWork {
        db: &db,
        table: &table,
        keys: &keys,
        value_size,
        acked: acked.as_ref(),
    };
    let mut next_seq = vec![0u64; args.threads as usize];
    let (log_result, each) = bench::alternate_rounds(db.pager().log(), args.seconds, rounds, &mut raw, |slice, _| {
        insert_round(&work, slice, &mut next_seq)
    })?;
    let raw_total = raw.total();
    raw.close()?;
    if let Some(acked) = acked {
        acked.into_inner().finish()?;
    }
    let existing = keys.existing();
    tracing::info!("read phases");
    let reads = kv_phases::reads(&db, &table, &existing, read_threads, phase)?;
    let scans = kv_phases::scans(&db, &table, &existing, read_threads, phase)?;
    db.close()?;
    tracing::info!("recovery phase");
    let recovery = kv_recovery::run(&dir, &opts, value_size, args.recovery_mib << 20)?;
    let memory = KvMemory {
        process_peak_rss_kib: output::memory_kib().0,
        ..memory
    };
    let report = KvReport {
        units: Units {
            mb: "10^6 bytes",
            latency: "microseconds",
            rss: "KiB",
        },
        config: KvConfig {
            threads: args.threads,
            read_threads,
            seconds: args.seconds,
            phase_seconds: phase.as_secs_f64(),
            rounds,
            value_size,
            page_size: args.page_size,
            cache_bytes,
            checkpoint_depth: opts.checkpoint_depth,
            recovery_target_bytes: args.recovery_mib << 20,
            dir: dir.display().to_string(),
            dir_kept: args.dir.is_some(),
            acked: args.acked.as_ref().map(|p| p.display().to_string()),
            table: TABLE,
        },
        raw: KvRaw {
            fsyncs_per_sec: raw_total.fsyncs_per_sec,
            fsync_write_bytes: raw_total.fsync_write_bytes,
            seconds_per_phase: raw_total.seconds_per_phase,
        },
        ratio: KvRatio {
            commits_vs_raw_fsyncs: ratio(log_result.commits_per_sec, raw_total.fsyncs_per_sec),
            recovery_vs_raw_read: ratio(recovery.mb_per_sec, recovery.raw_read_mb_per_sec),
            replay_vs_raw_read: ratio(recovery.replay_mb_per_sec, recovery.raw_read_mb_per_sec),
        },
        rounds: each
            .iter()
            .map(|(raw, log)| KvRound::new(raw.fsyncs_per_sec, log.commits_per_sec))
            .collect(),
        insert: Insert {
            log: log_result,
            keys: existing.total(),
        },
        reads,
        scans,
        memory,
        recovery,
    };
    if args.json {
        output::print_json(&report)
    } else {
        report.print_table();
        Ok(())
    }
}

/// What every inserting thread shares.
struct InsertWork<'a> {
    db: &'a Database,
    table: &'a Table,
    keys: &'a KeySpace,
    value_size: usize,
    acked: Option<&'a Mutex<AckedWriter>>,
}

/// Runs the inserting threads for `slice`, then a checkpoint (timed with the
/// round); `next_seq` holds each thread's next value id, so that ids stay
/// unique across rounds.
fn insert_round(work: &InsertWork<'_>, slice: Duration, next_seq: &mut [u64]) -> Result<LogRound> {
    let seqs: &[u64] = next_seq;
    let (results, (), start) = workers::run_timed(
        "kv-insert",
        seqs.len(),
        slice,
        |w| insert_loop(work, w, seqs[w.index]),
        |_| Ok(()),
    )?;
    // The round ends with a checkpoint of what it dirtied and the log's file
    // preparation idle, so that its writes are charged to it, not to the raw
    // phase after it.
    work.db.checkpoint()?;
    work.db.pager().log().wait_prepared();
    let elapsed = start.elapsed();
    let mut latency = Histogram::default();
    let mut commits = 0;
    for ((n, h), seq) in results.into_iter().zip(next_seq.iter_mut()) {
        latency.merge(&h);
        commits += n;
        *seq += n;
    }
    Ok(LogRound {
        counters_from: None,
        commits,
        elapsed,
        latency,
    })
}

/// One put per transaction, committed durably; returns the commits and
/// their latency (from `begin_write` to the commit's return).
fn insert_loop(work: &InsertWork<'_>, worker: &Worker<'_>, first_seq: u64) -> Result<(u64, Histogram)> {
    let thread = worker.index as u32;
    let mut rng = Rng::new(first_seq ^ (u64::from(thread) << 32) ^ 0x6b76);
    let mut value = vec![0u8; work.value_size];
    fill_body(&mut value, thread);
    let mut key = Vec::with_capacity(64);
    let mut latency = Histogram::default();
    let mut seq = first_seq;
    while worker.running() {
        work.keys.allocate(&mut rng, &mut key);
        stamp(&mut value, (u64::from(thread) << 40) | seq, thread);
        let t0 = Instant::now();
        // Combined with the other threads' transactions (`Database::write`).
        let (table, k, v) = (work.table.clone(), key.clone(), value.clone());
        work.db.write(Durability::Durable, move |tx| tx.put(&table, &k, &v))?;
        latency.record(t0.elapsed().as_nanos() as u64);
        seq += 1;
        if let Some(acked) = work.acked {
            let line = KvAckedLine {
                table: TABLE.to_string(),
                key: key.clone(),
                len: value.len() as u32,
                crc: crc32c::crc32c(&value),
            };
            acked.lock().write(&line)?;
        }
    }
    Ok((seq - first_seq, latency))
}
