//! `mailvault bench log`: N threads commit records to a new log for S
//! seconds; the result is compared with the raw disk floor measured in the
//! same directory just before.

use crate::acked::{AckedLine, AckedWriter};
use crate::bench_report::{BenchConfig, BenchReport, LogResult, RoundFigures};
use crate::error::{CliError, Context, Result};
use crate::histogram::Histogram;
use crate::raw::RawFloor;
use crate::workers::{self, Worker};
use crate::{output, raw};
use clap::Args;
use mailvault::log::{DEFAULT_GENERATION_SIZE, DEFAULT_YIELD_ROUNDS, Log, LogError, LogOptions, LogStats, Lsn};
use mailvault::vfs::OsVfs;
use parking_lot::Mutex;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Bytes at the start of every record: the id (u64) and the thread (u32).
pub const RECORD_PREFIX: usize = 12;

#[derive(Debug, Args)]
pub struct BenchLogArgs {
    /// Directory for the log; must be empty or absent, and is kept afterwards.
    /// Default: a temporary directory in the current directory, removed at the end.
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// Committing threads.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=4096))]
    threads: u32,
    /// Bytes per record (at least 12: id and thread number).
    #[arg(long, value_name = "BYTES", default_value_t = 4096, value_parser = clap::value_parser!(u64).range(RECORD_PREFIX as u64..))]
    record_size: u64,
    /// Duration of the log run, over all rounds (each raw phase runs
    /// min(S, 3) seconds in all, at least 0.2 per round).
    #[arg(long, value_name = "S", default_value_t = 10.0, value_parser = parse_seconds)]
    seconds: f64,
    /// Rounds of raw phases then log phase, so that the disk's drift hits
    /// both sides of the ratios alike [default: one per 2 s, 1 to 5].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=100))]
    rounds: Option<u32>,
    /// Write a line `<id> <lsn> <len> <crc32c>` for every acknowledged commit to FILE (created or truncated).
    #[arg(long, value_name = "FILE")]
    acked: Option<PathBuf>,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
    /// Batches a committer yields through before parking (`LogOptions::yield_rounds`; 0 parks at once) [default: the library's default]
    #[arg(long, value_name = "N")]
    yield_rounds: Option<u32>,
    /// Generation file size in bytes [default: the library's default].
    #[arg(long, value_name = "BYTES")]
    generation_size: Option<u64>,
    /// Circular logging: a checkpointer thread releases every generation
    /// before the current one, so files are recycled instead of created, as
    /// in a store whose checkpoint keeps up. Without it the log only grows.
    #[arg(long, conflicts_with = "acked")]
    circular: bool,
}

pub fn parse_seconds(s: &str) -> Result<f64, String> {
    let v: f64 = s.parse().map_err(|e| format!("{e}"))?;
    if v.is_finite() && v > 0.0 && v <= 1e6 {
        Ok(v)
    } else {
        Err("must be a positive number of seconds".into())
    }
}

pub fn run(args: &BenchLogArgs) -> Result<()> {
    let record_size = usize::try_from(args.record_size).context(|| "--record-size")?;
    let opts = LogOptions {
        generation_size: args.generation_size.unwrap_or(DEFAULT_GENERATION_SIZE),
        yield_rounds: args.yield_rounds.unwrap_or(DEFAULT_YIELD_ROUNDS),
        ..LogOptions::default()
    };
    if record_size > opts.max_record_size {
        // Fail before the raw phases; this is the error `Log::append` returns.
        return Err(LogError::RecordTooLarge {
            len: record_size,
            max: opts.max_record_size,
        }
        .into());
    }
    let acked = match &args.acked {
        Some(path) => Some(Mutex::new(AckedWriter::create(path)?)),
        None => None,
    };
    let (dir, _temp) = bench_dir(args.dir.as_deref())?;
    let rounds = args.rounds.unwrap_or_else(|| default_rounds(args.seconds));
    // The log first: it wants an empty directory. The raw scratch files
    // then share it (same file system) and are gone before the log closes.
    let log = Log::create(Arc::new(OsVfs), &dir, opts.clone())?;
    tracing::info!(dir = %dir.display(), rounds, "pre-allocating the raw scratch files");
    let mut raw = raw::RawDisk::new(&dir, record_size)?;
    let (log_result, round_figures) = run_rounds(&log, args, rounds, &mut raw, acked.as_ref())?;
    let raw_total = raw.total();
    raw.close()?;
    log.close()?;
    if let Some(acked) = acked {
        acked.into_inner().finish()?;
    }
    let (peak_rss_kib, rss_kib) = output::memory_kib();
    let config = BenchConfig {
        threads: args.threads,
        record_size,
        seconds: args.seconds,
        generation_size: opts.generation_size,
        frame_size: opts.frame_size,
        buffer_size: opts.buffer_size,
        max_record_size: opts.max_record_size,
        yield_rounds: opts.yield_rounds,
        dir: dir.display().to_string(),
        dir_kept: args.dir.is_some(),
        acked: args.acked.as_ref().map(|p| p.display().to_string()),
        circular: args.circular,
        rounds,
    };
    let report = BenchReport::new(config, raw_total, log_result, round_figures, peak_rss_kib, rss_kib);
    if args.json {
        output::print_json(&report)
    } else {
        report.print_table()
    }
}

/// The directory a bench works in: `dir` (absent or empty; created), or a
/// new temporary directory in the current directory, removed when the
/// returned guard drops.
pub fn bench_dir(dir: Option<&Path>) -> Result<(PathBuf, Option<tempfile::TempDir>)> {
    match dir {
        Some(dir) => Ok((prepare_dir(dir)?, None)),
        None => {
            let cwd = std::env::current_dir().context(|| "finding the current directory")?;
            let temp = tempfile::Builder::new()
                .prefix(".mailvault-bench-")
                .tempdir_in(&cwd)
                .context(|| format!("creating a temporary directory in {}", cwd.display()))?;
            Ok((temp.path().to_path_buf(), Some(temp)))
        }
    }
}

/// Checks that `dir` is absent or an empty directory, and creates it.
fn prepare_dir(dir: &Path) -> Result<PathBuf> {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(CliError::msg(format!(
                    "{} is not empty; bench needs an empty or absent directory",
                    dir.display()
                )));
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(dir).context(|| format!("creating {}", dir.display()))?;
        }
        Err(e) => return Err(CliError::msg(format!("{}: {e}", dir.display()))),
    }
    Ok(dir.to_path_buf())
}

/// One round per 2 s of log time, between 1 and 5.
pub fn default_rounds(seconds: f64) -> u32 {
    ((seconds / 2.0) as u32).clamp(1, 5)
}

/// What every committing thread shares during one round.
struct Workload<'a> {
    log: &'a Log,
    record_size: usize,
    acked: Option<&'a Mutex<AckedWriter>>,
    /// The thread number of worker 0 (record ids carry it).
    thread_base: u32,
}

struct ThreadResult {
    commits: u64,
    latency: Histogram,
}

/// What one round of commits measured.
pub struct LogRound {
    /// The log's counters where the measured commits began, when that was
    /// not where the round began.
    pub counters_from: Option<LogStats>,
    pub commits: u64,
    pub elapsed: Duration,
    /// Commit latency in nanoseconds.
    pub latency: Histogram,
}

/// Alternates raw phases and log phases on one log; returns the log's
/// totals and the figures of each round.
fn run_rounds(
    log: &Log,
    args: &BenchLogArgs,
    rounds: u32,
    raw: &mut raw::RawDisk,
    acked: Option<&Mutex<AckedWriter>>,
) -> Result<(LogResult, Vec<RoundFigures>)> {
    // Each thread's next record id, so that ids stay unique across rounds.
    let mut next_seq = vec![0u64; args.threads as usize];
    // The one-thread reference commits as thread number `threads`, after
    // the workers, so its record ids are its own.
    let mut reference_seq = [0u64];
    let mut references = Vec::new();
    let (total, each) = alternate_rounds(log, args.seconds, rounds, raw, |slice, raw_phase| {
        if args.threads == 1 {
            return run_log_round(log, args, slice, &mut next_seq, acked, 0);
        }
        let before = log.stats();
        let one = run_log_round(log, args, raw_phase, &mut reference_seq, acked, args.threads)?;
        let counters_from = log.stats();
        references.push(LogResult::new(
            one.commits,
            one.elapsed,
            &delta(&before, &counters_from),
            &one.latency,
        ));
        let round = run_log_round(log, args, slice, &mut next_seq, acked, 0)?;
        Ok(LogRound {
            counters_from: Some(counters_from),
            ..round
        })
    })?;
    let figures = each
        .iter()
        .enumerate()
        .map(|(i, (raw, log))| RoundFigures::new(raw, log, references.get(i)))
        .collect();
    Ok((total, figures))
}

/// Runs `rounds` rounds of the raw phases then `round` (the measured phase,
/// which commits to `log`): `seconds` of `round` in all, and min(`seconds`,
/// 3) of each raw phase (at least 0.2 s per round). `round` is given its
/// slice and the raw phase's length (for a reference phase of its own,
/// whose counters it must take itself: they are not the round's). Returns
/// the totals of `round` with the log's counters, and each round's figures.
pub fn alternate_rounds(
    log: &Log,
    seconds: f64,
    rounds: u32,
    raw: &mut raw::RawDisk,
    mut round: impl FnMut(Duration, Duration) -> Result<LogRound>,
) -> Result<(LogResult, Vec<(RawFloor, LogResult)>)> {
    let slice = Duration::from_secs_f64(seconds / f64::from(rounds));
    let raw_phase = Duration::from_secs_f64((seconds.min(3.0) / f64::from(rounds)).max(0.2));
    let mut latency = Histogram::default();
    let (mut commits, mut elapsed) = (0u64, Duration::ZERO);
    let mut figures = Vec::with_capacity(rounds as usize);
    log.wait_prepared();
    let first = log.stats();
    for number in 0..rounds {
        tracing::info!(round = number, "raw phases");
        let raw_round = raw.round(raw_phase)?;
        tracing::info!(round = number, "measured phase");
        let before = log.stats();
        let result = round(slice, raw_phase)?;
        // After a reference phase inside `round`, the round's counters start later.
        let stats = delta(result.counters_from.as_ref().unwrap_or(&before), &log.stats());
        let log_round = LogResult::new(result.commits, result.elapsed, &stats, &result.latency);
        figures.push((raw_round, log_round));
        latency.merge(&result.latency);
        commits += result.commits;
        elapsed += result.elapsed;
    }
    let stats = delta(&first, &log.stats());
    Ok((LogResult::new(commits, elapsed, &stats, &latency), figures))
}

/// Runs the committing threads for `slice`. The round ends when they have
/// stopped and the log's background file preparation is idle, so that work
/// is charged to the log, not to the next raw phase.
fn run_log_round(
    log: &Log,
    args: &BenchLogArgs,
    slice: Duration,
    next_seq: &mut [u64],
    acked: Option<&Mutex<AckedWriter>>,
    thread_base: u32,
) -> Result<LogRound> {
    let work = Workload {
        log,
        record_size: args.record_size as usize,
        acked,
        thread_base,
    };
    let seqs: &[u64] = next_seq;
    let (results, (), start) = workers::run_timed(
        "bench",
        seqs.len(),
        slice,
        |w| commit_loop(&work, w, seqs[w.index]),
        |running| {
            // The checkpointer of a circular log.
            while args.circular && running() {
                log.recycle_before(Lsn::new(log.durable_lsn().generation(), 0))?;
                std::thread::sleep(Duration::from_millis(10));
            }
            Ok(())
        },
    )?;
    log.wait_prepared();
    let elapsed = start.elapsed();
    let mut latency = Histogram::default();
    let mut commits = 0;
    for (r, seq) in results.into_iter().zip(next_seq.iter_mut()) {
        latency.merge(&r.latency);
        commits += r.commits;
        *seq += r.commits;
    }
    Ok(LogRound {
        counters_from: None,
        commits,
        elapsed,
        latency,
    })
}

fn commit_loop(work: &Workload<'_>, worker: &Worker<'_>, first_seq: u64) -> Result<ThreadResult> {
    let thread = work.thread_base + worker.index as u32;
    let mut record = vec![0u8; work.record_size];
    fill_body(&mut record, thread);
    let mut latency = Histogram::default();
    let mut seq = first_seq;
    while worker.running() {
        let id = (u64::from(thread) << 40) | seq;
        stamp(&mut record, id, thread);
        let t0 = Instant::now();
        let appended = work.log.commit(&record)?;
        latency.record(t0.elapsed().as_nanos() as u64);
        seq += 1;
        if let Some(acked) = work.acked {
            let line = AckedLine {
                id,
                lsn: appended.lsn.0,
                len: record.len() as u32,
                crc: crc32c::crc32c(&record),
            };
            acked.lock().write(&line)?;
        }
    }
    Ok(ThreadResult {
        commits: seq - first_seq,
        latency,
    })
}

/// Bytes 0..8 of a record: its id; 8..12: the thread. Set for every commit.
pub fn stamp(record: &mut [u8], id: u64, thread: u32) {
    record[..8].copy_from_slice(&id.to_le_bytes());
    record[8..RECORD_PREFIX].copy_from_slice(&thread.to_le_bytes());
}

/// The rest: a xorshift stream seeded by the thread, made once per thread so
/// that the log phase measures the log, not the generation of test data
/// (the raw phases write a buffer filled once, too).
pub fn fill_body(record: &mut [u8], thread: u32) {
    let mut x = (u64::from(thread) + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    for chunk in record[RECORD_PREFIX..].chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
    }
}

/// Counters accumulated between two snapshots.
fn delta(before: &LogStats, after: &LogStats) -> LogStats {
    LogStats {
        batches: after.batches - before.batches,
        syncs: after.syncs - before.syncs,
        bytes_written: after.bytes_written - before.bytes_written,
        records: after.records - before.records,
        record_bytes: after.record_bytes - before.record_bytes,
        generation_switches: after.generation_switches - before.generation_switches,
        preparation_stalls: after.preparation_stalls - before.preparation_stalls,
        interior_frames: after.interior_frames - before.interior_frames,
        durable: after.durable,
        end: after.end,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_deterministic_and_distinct() {
        let (mut a, mut b, mut c) = (vec![0u8; 100], vec![0u8; 100], vec![0u8; 100]);
        fill_body(&mut a, 1);
        fill_body(&mut b, 1);
        fill_body(&mut c, 2);
        stamp(&mut a, 5, 1);
        stamp(&mut b, 6, 1);
        assert_eq!(a[12..], b[12..]);
        assert_ne!(a[..12], b[..12], "ids tell records apart");
        assert_ne!(a[12..], c[12..]);
        assert_eq!(u64::from_le_bytes(a[..8].try_into().expect("8 bytes")), 5);
        let mut minimal = vec![0u8; RECORD_PREFIX];
        fill_body(&mut minimal, 2);
        stamp(&mut minimal, 1, 2);
    }
}
