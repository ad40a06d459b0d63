//! The result of `bench log`: computed figures, their JSON form, and the table.

use crate::error::Result;
use crate::histogram::Histogram;
use crate::output::row;
use crate::raw::RawFloor;
use mailvault::log::LogStats;
use serde::Serialize;
use std::time::Duration;

#[derive(Debug, Serialize)]
pub struct BenchReport {
    pub units: Units,
    pub config: BenchConfig,
    pub raw: RawFloor,
    pub log: LogResult,
    pub ratio: Ratio,
    /// One committing thread, same records, same log, in every round just
    /// before the measured phase (with more than one thread only).
    pub one_thread: Option<OneThread>,
    /// Each round's raw phases and log phase, in order.
    pub rounds: Vec<RoundFigures>,
    pub memory: Memory,
}

#[derive(Debug, Serialize)]
pub struct Units {
    pub mb: &'static str,
    pub latency: &'static str,
    pub rss: &'static str,
}

#[derive(Debug, Serialize)]
pub struct BenchConfig {
    pub threads: u32,
    pub record_size: usize,
    pub seconds: f64,
    pub generation_size: u64,
    pub frame_size: u32,
    pub buffer_size: usize,
    pub max_record_size: usize,
    /// Batches a committer yields through before parking.
    pub yield_rounds: u32,
    /// Where the log (and the raw scratch files) lived.
    pub dir: String,
    /// Whether the log was kept (`--dir`) or removed with its temporary directory.
    pub dir_kept: bool,
    pub acked: Option<String>,
    /// Whether generations were released and recycled during the run.
    pub circular: bool,
    /// Rounds of raw phases then log phase.
    pub rounds: u32,
}

#[derive(Debug, Serialize)]
pub struct LogResult {
    /// Commits that returned Ok.
    pub commits: u64,
    pub elapsed_sec: f64,
    pub commits_per_sec: f64,
    /// Record payload, MB (10^6 bytes) per second.
    pub mb_per_sec: f64,
    pub fsyncs: u64,
    pub fsyncs_per_sec: f64,
    pub batches: u64,
    /// Records per write batch.
    pub mean_batch: f64,
    /// Bytes the commit path wrote (frames, shadow copies, headers).
    pub bytes_written: u64,
    pub latency_us: Latency,
    pub generation_switches: u64,
    pub preparation_stalls: u64,
    pub interior_frames: u64,
}

/// Commit latency in microseconds.
#[derive(Debug, Serialize)]
pub struct Latency {
    pub min: f64,
    pub mean: f64,
    pub p50: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

#[derive(Debug, Serialize)]
pub struct OneThread {
    pub commits: u64,
    pub elapsed_sec: f64,
    pub commits_per_sec: f64,
    pub fsyncs_per_sec: f64,
}

#[derive(Debug, Serialize)]
pub struct Ratio {
    /// Log commits/s ÷ raw fsyncs/s.
    pub commits_vs_raw_fsyncs: Option<f64>,
    /// Log MB/s ÷ raw sequential MB/s.
    pub mb_vs_raw_seq: Option<f64>,
    /// Log commits/s ÷ the one-thread reference's commits/s.
    pub commits_vs_one_thread: Option<f64>,
}

/// One round: the raw phases and the log phase that followed them.
#[derive(Debug, Serialize)]
pub struct RoundFigures {
    pub raw_fsyncs_per_sec: f64,
    pub raw_seq_mb_per_sec: f64,
    pub log_commits_per_sec: f64,
    pub log_mb_per_sec: f64,
    pub commits_vs_raw_fsyncs: Option<f64>,
    pub mb_vs_raw_seq: Option<f64>,
    pub one_thread_commits: Option<u64>,
    pub one_thread_elapsed_sec: Option<f64>,
    pub one_thread_fsyncs: Option<u64>,
    pub commits_vs_one_thread: Option<f64>,
}

impl RoundFigures {
    pub fn new(raw: &RawFloor, log: &LogResult, one_thread: Option<&LogResult>) -> Self {
        RoundFigures {
            one_thread_commits: one_thread.map(|o| o.commits),
            one_thread_elapsed_sec: one_thread.map(|o| o.elapsed_sec),
            one_thread_fsyncs: one_thread.map(|o| o.fsyncs),
            commits_vs_one_thread: one_thread.and_then(|o| ratio(log.commits_per_sec, o.commits_per_sec)),
            raw_fsyncs_per_sec: raw.fsyncs_per_sec,
            raw_seq_mb_per_sec: raw.seq_mb_per_sec,
            log_commits_per_sec: log.commits_per_sec,
            log_mb_per_sec: log.mb_per_sec,
            commits_vs_raw_fsyncs: ratio(log.commits_per_sec, raw.fsyncs_per_sec),
            mb_vs_raw_seq: ratio(log.mb_per_sec, raw.seq_mb_per_sec),
        }
    }
}

#[derive(Debug, Serialize)]
pub struct Memory {
    pub peak_rss_kib: Option<u64>,
    pub rss_kib: Option<u64>,
}

pub fn per_sec(n: f64, elapsed: f64) -> f64 {
    if elapsed > 0.0 { n / elapsed } else { 0.0 }
}

pub fn ratio(a: f64, b: f64) -> Option<f64> {
    (b > 0.0).then(|| a / b)
}

/// A ratio for a table, or "n/a".
pub fn show_ratio(v: Option<f64>) -> String {
    v.map_or_else(|| "n/a".to_string(), |v| format!("{v:.3}"))
}

/// A size in KiB for a table, or "n/a".
pub fn show_kib(v: Option<u64>) -> String {
    v.map_or_else(|| "n/a".to_string(), |v| format!("{v} KiB"))
}

impl OneThread {
    /// The reference phases of all rounds together; None if there were none.
    fn total(rounds: &[RoundFigures]) -> Option<OneThread> {
        let (mut commits, mut elapsed, mut fsyncs) = (0u64, 0.0f64, 0u64);
        for r in rounds {
            commits += r.one_thread_commits?;
            elapsed += r.one_thread_elapsed_sec?;
            fsyncs += r.one_thread_fsyncs?;
        }
        (!rounds.is_empty()).then(|| OneThread {
            commits,
            elapsed_sec: elapsed,
            commits_per_sec: per_sec(commits as f64, elapsed),
            fsyncs_per_sec: per_sec(fsyncs as f64, elapsed),
        })
    }
}

impl LogResult {
    /// `stats` holds the counters accumulated during the run only.
    pub fn new(commits: u64, elapsed: Duration, stats: &LogStats, latency: &Histogram) -> Self {
        let secs = elapsed.as_secs_f64();
        let us = |ns: f64| ns / 1000.0;
        LogResult {
            commits,
            elapsed_sec: secs,
            commits_per_sec: per_sec(commits as f64, secs),
            mb_per_sec: per_sec(stats.record_bytes as f64 / 1e6, secs),
            fsyncs: stats.syncs,
            fsyncs_per_sec: per_sec(stats.syncs as f64, secs),
            batches: stats.batches,
            mean_batch: if stats.batches > 0 {
                stats.records as f64 / stats.batches as f64
            } else {
                0.0
            },
            bytes_written: stats.bytes_written,
            latency_us: Latency {
                min: us(latency.min() as f64),
                mean: us(latency.mean()),
                p50: us(latency.quantile(0.5)),
                p99: us(latency.quantile(0.99)),
                p999: us(latency.quantile(0.999)),
                max: us(latency.max() as f64),
            },
            generation_switches: stats.generation_switches,
            preparation_stalls: stats.preparation_stalls,
            interior_frames: stats.interior_frames,
        }
    }
}

impl LogResult {
    /// The rows of the commit figures in a table.
    pub fn print_rows(&self) {
        row("commits", self.commits);
        row("commits/s", format!("{:.0}", self.commits_per_sec));
        row("MB/s (record payload)", format!("{:.2}", self.mb_per_sec));
        row("fsyncs/s", format!("{:.0}", self.fsyncs_per_sec));
        row(
            "mean batch (records per fsync batch)",
            format!("{:.2}", self.mean_batch),
        );
        let lat = &self.latency_us;
        row(
            "latency p50 / p99 / p99.9",
            format!("{:.0} / {:.0} / {:.0}", lat.p50, lat.p99, lat.p999),
        );
        row(
            "latency min / mean / max",
            format!("{:.0} / {:.0} / {:.0}", lat.min, lat.mean, lat.max),
        );
    }
}

impl BenchReport {
    pub fn new(
        config: BenchConfig,
        raw: RawFloor,
        log: LogResult,
        rounds: Vec<RoundFigures>,
        peak_rss_kib: Option<u64>,
        rss_kib: Option<u64>,
    ) -> Self {
        let one_thread = OneThread::total(&rounds);
        let ratio = Ratio {
            commits_vs_raw_fsyncs: ratio(log.commits_per_sec, raw.fsyncs_per_sec),
            mb_vs_raw_seq: ratio(log.mb_per_sec, raw.seq_mb_per_sec),
            commits_vs_one_thread: one_thread
                .as_ref()
                .and_then(|o| ratio(log.commits_per_sec, o.commits_per_sec)),
        };
        BenchReport {
            units: Units {
                mb: "10^6 bytes",
                latency: "microseconds",
                rss: "KiB",
            },
            config,
            raw,
            log,
            ratio,
            one_thread,
            rounds,
            memory: Memory { peak_rss_kib, rss_kib },
        }
    }

    pub fn print_table(&self) -> Result<()> {
        let (c, r, l) = (&self.config, &self.raw, &self.log);
        let kept = if c.dir_kept { "kept" } else { "removed" };
        outln!(
            "mailvault bench log: {} thread(s), {}-byte records, {} s, generation size {} bytes, yield rounds {}, {}",
            c.threads,
            c.record_size,
            c.seconds,
            c.generation_size,
            c.yield_rounds,
            if c.circular {
                "circular (generations recycled)"
            } else {
                "growing log (new files)"
            }
        );
        outln!(
            "directory {} ({kept}); MB = 10^6 bytes; latencies in microseconds",
            c.dir
        );
        outln!();
        outln!(
            "raw disk floor (std::fs, same directory, {:.2} s per phase over {} round(s))",
            r.seconds_per_phase,
            c.rounds
        );
        row(
            &format!("fsyncs/s ({}-byte pwrite + fdatasync)", r.fsync_write_bytes),
            format!("{:.0}", r.fsyncs_per_sec),
        );
        row(
            "sequential MB/s (1 MiB pwrite + fdatasync)",
            format!("{:.1}", r.seq_mb_per_sec),
        );
        outln!();
        outln!("log ({:.2} s)", l.elapsed_sec);
        l.print_rows();
        row("generation switches", l.generation_switches);
        row("preparation stalls", l.preparation_stalls);
        row("interior frames written by committers", l.interior_frames);
        if let Some(o) = &self.one_thread {
            outln!();
            outln!("one-thread reference (same record size, same log, before each round's log phase)");
            row("commits/s", format!("{:.0}", o.commits_per_sec));
            row("fsyncs/s", format!("{:.0}", o.fsyncs_per_sec));
        }
        outln!();
        outln!("ratios");
        let show = show_ratio;
        row("commits/s ÷ raw fsyncs/s", show(self.ratio.commits_vs_raw_fsyncs));
        row("MB/s ÷ raw sequential MB/s", show(self.ratio.mb_vs_raw_seq));
        if self.one_thread.is_some() {
            row(
                "commits/s ÷ one-thread commits/s",
                show(self.ratio.commits_vs_one_thread),
            );
        }
        if self.rounds.len() > 1 {
            let each = |f: fn(&RoundFigures) -> Option<f64>| {
                self.rounds.iter().map(|r| show(f(r))).collect::<Vec<_>>().join(" ")
            };
            row("  per round: commits ÷ fsyncs", each(|r| r.commits_vs_raw_fsyncs));
            row("  per round: MB/s ÷ sequential", each(|r| r.mb_vs_raw_seq));
            if self.one_thread.is_some() {
                row("  per round: commits ÷ one thread", each(|r| r.commits_vs_one_thread));
            }
        }
        outln!();
        outln!("memory");
        let kib = show_kib;
        row("peak RSS (VmHWM)", kib(self.memory.peak_rss_kib));
        row("RSS (VmRSS)", kib(self.memory.rss_kib));
        Ok(())
    }
}
