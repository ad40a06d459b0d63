//! The result of `bench kv`: its JSON form and the table.

use crate::bench_report::{LogResult, Units, per_sec, ratio, show_kib, show_ratio};
use crate::output::row;
use serde::Serialize;
use std::time::Duration;

#[derive(Debug, Serialize)]
pub struct KvReport {
    pub units: Units,
    pub config: KvConfig,
    pub raw: KvRaw,
    pub insert: Insert,
    pub reads: Reads,
    pub scans: Scans,
    pub memory: KvMemory,
    pub recovery: Recovery,
    pub ratio: KvRatio,
    /// Each round's raw fsync phase and the insert phase that followed it.
    pub rounds: Vec<KvRound>,
}

#[derive(Debug, Serialize)]
pub struct KvConfig {
    pub threads: u32,
    pub read_threads: u32,
    /// Duration of the insert phase, over all rounds.
    pub seconds: f64,
    /// Duration of each read and scan phase.
    pub phase_seconds: f64,
    pub rounds: u32,
    pub value_size: usize,
    pub page_size: usize,
    pub cache_bytes: usize,
    pub checkpoint_depth: u64,
    /// Log the recovery phase writes after its last checkpoint.
    pub recovery_target_bytes: u64,
    pub dir: String,
    /// Whether the database was kept (`--dir`) or removed with its temporary directory.
    pub dir_kept: bool,
    pub acked: Option<String>,
    /// The table of the insert phase (the one `--acked` lines name).
    pub table: &'static str,
}

/// The raw fsync floor (one thread, pwrite + fdatasync on a preallocated file).
#[derive(Debug, Serialize)]
pub struct KvRaw {
    pub fsyncs_per_sec: f64,
    pub fsync_write_bytes: usize,
    pub seconds_per_phase: f64,
}

/// Transactions of one put each, committed durably.
#[derive(Debug, Serialize)]
pub struct Insert {
    #[serde(flatten)]
    pub log: LogResult,
    /// Keys in the table after the phase.
    pub keys: u64,
}

/// Operations of some threads over a timed phase.
#[derive(Debug, Serialize)]
pub struct Rate {
    pub threads: u32,
    pub ops: u64,
    pub elapsed_sec: f64,
    pub per_sec: f64,
    pub per_thread_per_sec: f64,
    /// CPU time of the whole process (CLOCK_PROCESS_CPUTIME_ID, every
    /// thread) during the phase, divided by the operations.
    pub cpu_us_per_op: f64,
}

impl Rate {
    pub fn new(threads: u32, ops: u64, elapsed: Duration, cpu: Duration) -> Rate {
        let secs = elapsed.as_secs_f64();
        let total = per_sec(ops as f64, secs);
        Rate {
            threads,
            ops,
            elapsed_sec: secs,
            per_sec: total,
            per_thread_per_sec: total / f64::from(threads.max(1)),
            cpu_us_per_op: if ops > 0 {
                cpu.as_secs_f64() * 1e6 / ops as f64
            } else {
                0.0
            },
        }
    }

    fn print_rows(&self, what: &str) {
        row(
            &format!("{what}/s, {} thread(s)", self.threads),
            format!("{:.0}", self.per_sec),
        );
        row(
            &format!("{what}/s per thread"),
            format!("{:.0}", self.per_thread_per_sec),
        );
        row(
            &format!("CPU µs per {what} (process CPU time)"),
            format!("{:.2}", self.cpu_us_per_op),
        );
    }
}

/// Point reads: a read transaction and one get of a random existing key.
#[derive(Debug, Serialize)]
pub struct Reads {
    #[serde(flatten)]
    pub rate: Rate,
    /// The same with one thread (when the phase above has more).
    pub one_thread: Option<Rate>,
    /// Keys read once before timing, to warm the cache.
    pub warmed_keys: u64,
    pub warm_up_sec: f64,
    /// Cache bytes held after the warm-up.
    pub cache_held_bytes: usize,
}

/// Range scans of `length` entries from a random existing key.
#[derive(Debug, Serialize)]
pub struct Scans {
    #[serde(flatten)]
    pub rate: Rate,
    pub length: usize,
    pub mean_entries: f64,
}

#[derive(Debug, Serialize)]
pub struct KvMemory {
    pub cache_kib: u64,
    /// Key and value bytes written by the phase (4 × the cache).
    pub written_bytes: u64,
    pub puts: u64,
    pub elapsed_sec: f64,
    /// VmRSS when the phase began.
    pub start_rss_kib: Option<u64>,
    /// Highest VmRSS sampled during the phase.
    pub peak_rss_kib: Option<u64>,
    /// Peak RSS minus the cache size.
    pub overhead_kib: Option<i64>,
    /// Highest bytes the page cache held, sampled with the RSS.
    pub peak_cache_held_kib: u64,
    pub samples: u64,
    /// VmHWM at the end of the run: the process's peak over every phase
    /// (the recovery phase builds its log with a larger cache).
    pub process_peak_rss_kib: Option<u64>,
}

#[derive(Debug, Serialize)]
pub struct Recovery {
    /// Time to write the log the open replays.
    pub build_sec: f64,
    pub records: u64,
    pub applied: u64,
    pub skipped: u64,
    /// Checkpoints written during the redo pass to bound its memory.
    pub flushes: u64,
    /// Log bytes replayed (RecoveryStats.log_bytes).
    pub log_bytes: u64,
    pub from: String,
    pub to: String,
    /// `Database::open`: the log's open, replay and the closing checkpoint.
    pub open_sec: f64,
    /// Log bytes ÷ the whole open.
    pub mb_per_sec: f64,
    /// The redo pass alone (RecoveryStats.replay_secs): reading, decoding and
    /// applying the log from the checkpoint.
    pub replay_sec: f64,
    pub replay_mb_per_sec: f64,
    /// The log's own open (scan and rebuild of its last generation).
    pub log_open_sec: f64,
    /// The checkpoint that ends recovery.
    pub checkpoint_sec: f64,
    /// Mean of the two cold sequential reads.
    pub raw_read_mb_per_sec: f64,
    /// The cold read just before the open, and just after it.
    pub raw_read_runs_mb_per_sec: [f64; 2],
    pub raw_read_bytes: u64,
    /// The same log records read cold with `LogReader` and decoded, no
    /// pages applied: the log-reading part of the open (None if the reader
    /// could not start there).
    pub log_read_bytes: Option<u64>,
    pub log_read_mb_per_sec: Option<f64>,
    /// What was dropped from the OS page cache before the open.
    pub evicted: &'static str,
}

#[derive(Debug, Serialize)]
pub struct KvRatio {
    /// Insert commits/s ÷ raw fsyncs/s.
    pub commits_vs_raw_fsyncs: Option<f64>,
    /// Whole-open MB/s ÷ cold sequential read MB/s.
    pub recovery_vs_raw_read: Option<f64>,
    /// Redo-pass MB/s ÷ cold sequential read MB/s.
    pub replay_vs_raw_read: Option<f64>,
}

#[derive(Debug, Serialize)]
pub struct KvRound {
    pub raw_fsyncs_per_sec: f64,
    pub commits_per_sec: f64,
    pub commits_vs_raw_fsyncs: Option<f64>,
}

impl KvRound {
    pub fn new(raw_fsyncs_per_sec: f64, commits_per_sec: f64) -> KvRound {
        KvRound {
            raw_fsyncs_per_sec,
            commits_per_sec,
            commits_vs_raw_fsyncs: ratio(commits_per_sec, raw_fsyncs_per_sec),
        }
    }
}

impl KvReport {
    pub fn print_table(&self) {
        let c = &self.config;
        let kept = if c.dir_kept { "kept" } else { "removed" };
        outln!(
            "mailvault bench kv: {} writer thread(s), {} reader thread(s), {}-byte values, {}-byte pages, {} KiB cache",
            c.threads,
            c.read_threads,
            c.value_size,
            c.page_size,
            c.cache_bytes >> 10
        );
        outln!(
            "directory {} ({kept}); MB = 10^6 bytes; latencies in microseconds",
            c.dir
        );
        outln!();
        outln!(
            "raw disk floor (std::fs, same directory, {:.2} s over {} round(s))",
            self.raw.seconds_per_phase,
            c.rounds
        );
        row(
            &format!("fsyncs/s ({}-byte pwrite + fdatasync)", self.raw.fsync_write_bytes),
            format!("{:.0}", self.raw.fsyncs_per_sec),
        );
        outln!();
        let l = &self.insert.log;
        outln!(
            "insert: one put per durable commit ({:.2} s, table {:?})",
            l.elapsed_sec,
            c.table
        );
        l.print_rows();
        row("keys in the table", self.insert.keys);
        outln!();
        outln!(
            "point reads, warm cache ({} keys read first in {:.2} s; {:.2} s per phase)",
            self.reads.warmed_keys,
            self.reads.warm_up_sec,
            c.phase_seconds
        );
        if let Some(one) = &self.reads.one_thread {
            one.print_rows("read");
        }
        self.reads.rate.print_rows("read");
        outln!();
        outln!(
            "range scans of {} entries (mean {:.1} returned)",
            self.scans.length,
            self.scans.mean_entries
        );
        self.scans.rate.print_rows("scan");
        outln!();
        let m = &self.memory;
        outln!(
            "memory: {} MB written in {:.2} s with a {} KiB cache",
            m.written_bytes / 1_000_000,
            m.elapsed_sec,
            m.cache_kib
        );
        row("RSS at start (VmRSS)", show_kib(m.start_rss_kib));
        row(&format!("peak RSS ({} samples)", m.samples), show_kib(m.peak_rss_kib));
        row(
            "overhead (peak RSS - cache)",
            m.overhead_kib.map_or_else(|| "n/a".into(), |v| format!("{v} KiB")),
        );
        row("peak cache held", format!("{} KiB", m.peak_cache_held_kib));
        row("process peak RSS, whole run (VmHWM)", show_kib(m.process_peak_rss_kib));
        outln!();
        let r = &self.recovery;
        outln!(
            "recovery: open after a stop without checkpoint ({} evicted from the page cache)",
            r.evicted
        );
        row("log replayed", format!("{} bytes, {} records", r.log_bytes, r.records));
        row(
            "page changes applied / skipped",
            format!("{} / {}", r.applied, r.skipped),
        );
        row("flushes during the redo pass", r.flushes.to_string());
        row("open (log open + redo + checkpoint)", format!("{:.3} s", r.open_sec));
        row(
            "  log open / redo pass / checkpoint",
            format!(
                "{:.3} / {:.3} / {:.3} s",
                r.log_open_sec, r.replay_sec, r.checkpoint_sec
            ),
        );
        row("  redo pass MB/s", format!("{:.1}", r.replay_mb_per_sec));
        row("replay MB/s (log bytes ÷ open time)", format!("{:.1}", r.mb_per_sec));
        row(
            "log reader, cold, read + decode only MB/s",
            r.log_read_mb_per_sec
                .map_or_else(|| "n/a".into(), |v| format!("{v:.1}")),
        );
        let [before, after] = r.raw_read_runs_mb_per_sec;
        row(
            "raw cold sequential read MB/s (1 MiB reads)",
            format!("{:.1} (before {before:.1}, after {after:.1})", r.raw_read_mb_per_sec),
        );
        outln!();
        outln!("ratios");
        row("commits/s ÷ raw fsyncs/s", show_ratio(self.ratio.commits_vs_raw_fsyncs));
        if self.rounds.len() > 1 {
            let each: Vec<String> = self
                .rounds
                .iter()
                .map(|r| show_ratio(r.commits_vs_raw_fsyncs))
                .collect();
            row("  per round", each.join(" "));
        }
        row(
            "whole open MB/s ÷ raw read MB/s",
            show_ratio(self.ratio.recovery_vs_raw_read),
        );
        row(
            "redo pass MB/s ÷ raw read MB/s",
            show_ratio(self.ratio.replay_vs_raw_read),
        );
    }
}
