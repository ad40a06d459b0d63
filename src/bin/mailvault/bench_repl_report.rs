//! The result of `bench replication`: its figures and their table.

use crate::output;
use serde::Serialize;

#[derive(Debug, Serialize)]
pub struct Report {
    pub dir: String,
    pub threads: u32,
    pub alone_messages_per_sec: f64,
    pub with_copies_messages_per_sec: f64,
    /// With two copies over alone (target ≥ 0.9).
    pub ratio_throughput: f64,
    /// The active's log rate alone, at full load.
    pub active_log_mb_per_sec: f64,
    pub active_log_mb_per_sec_with_copies: f64,
    pub catch_up_mb_per_sec: f64,
    /// A copy catching up over the active making log (target ≥ 3).
    pub ratio_catch_up: f64,
    /// Under the steady load.
    pub steady_messages_per_sec: f64,
    pub commit_p99_ms: f64,
    pub lag_p50_ms: f64,
    pub lag_p99_ms: f64,
    /// Replication lag p99 over the commit p99 (target ≤ 2).
    pub ratio_lag: f64,
    pub seed_bytes: u64,
    pub seed_mb_per_sec: f64,
    pub raw_seq_mb_per_sec: f64,
    /// Seeding over raw sequential writes (target ≥ 0.8).
    pub ratio_seed: f64,
    /// A new file of the seed's size written just after it as a seed
    /// writes one (reserved ahead, 1 MiB uncached writes, one fdatasync at
    /// the end), then removed.
    pub fresh_file_mb_per_sec: f64,
    /// Seeding over writing that new file.
    pub ratio_seed_vs_fresh_file: f64,
    pub identical: bool,
    pub rounds: u32,
    /// With over alone, round by round.
    pub ratio_throughput_per_round: Vec<f64>,
    /// Where the CPU went (seconds of CPU per message, over both cores).
    pub cpu: CpuSplit,
}

/// CPU per delivered message: alone, and with two copies split into the
/// active's own work, its shipping threads, and the copies (receive and
/// replay threads). On one machine the copies' share is taken from the
/// active's two cores; on separate servers it would not be.
#[derive(Debug, Serialize)]
pub struct CpuSplit {
    pub alone_ms_per_message: f64,
    pub with_copies_active_ms_per_message: f64,
    pub with_copies_ship_ms_per_message: f64,
    pub with_copies_copies_ms_per_message: f64,
    /// CPU seconds per second of the phase (2.0 = both cores busy).
    pub alone_cores_busy: f64,
    pub with_copies_cores_busy: f64,
}

/// Prints the report as a table.
pub fn print(report: &Report) {
    outln!(
        "bench replication {} ({} threads, realistic mix)",
        report.dir,
        report.threads
    );
    output::row(
        "messages/s alone / with 2 copies",
        format!(
            "{:.0} / {:.0}",
            report.alone_messages_per_sec, report.with_copies_messages_per_sec
        ),
    );
    output::row(
        "ratio with / alone (target >= 0.9)",
        format!("{:.3}", report.ratio_throughput),
    );
    output::row(
        "  per round",
        report
            .ratio_throughput_per_round
            .iter()
            .map(|r| format!("{r:.3}"))
            .collect::<Vec<_>>()
            .join(" "),
    );
    let c = &report.cpu;
    output::row(
        "CPU ms/message alone / with: active + ship + copies",
        format!(
            "{:.2} / {:.2} + {:.2} + {:.2}",
            c.alone_ms_per_message,
            c.with_copies_active_ms_per_message,
            c.with_copies_ship_ms_per_message,
            c.with_copies_copies_ms_per_message
        ),
    );
    output::row(
        "cores busy alone / with copies",
        format!("{:.2} / {:.2}", c.alone_cores_busy, c.with_copies_cores_busy),
    );
    output::row(
        "active log MB/s alone / copy catch-up MB/s",
        format!(
            "{:.1} / {:.1}",
            report.active_log_mb_per_sec, report.catch_up_mb_per_sec
        ),
    );
    output::row(
        "ratio catch-up / log made (target >= 3)",
        format!("{:.2}", report.ratio_catch_up),
    );
    output::row(
        "steady load: messages/s, commit p99 ms / lag p50, p99 ms",
        format!(
            "{:.0}: {:.2} / {:.2}, {:.2}",
            report.steady_messages_per_sec, report.commit_p99_ms, report.lag_p50_ms, report.lag_p99_ms
        ),
    );
    output::row(
        "ratio lag p99 / commit p99 (target <= 2)",
        format!("{:.2}", report.ratio_lag),
    );
    output::row(
        "seed MB/s / raw sequential MB/s",
        format!("{:.1} / {:.1}", report.seed_mb_per_sec, report.raw_seq_mb_per_sec),
    );
    output::row("ratio seed / raw (target >= 0.8)", format!("{:.3}", report.ratio_seed));
    output::row(
        "new file of the seed's size MB/s; seed / it",
        format!(
            "{:.1}; {:.3}",
            report.fresh_file_mb_per_sec, report.ratio_seed_vs_fresh_file
        ),
    );
    output::row("copies identical to the active", report.identical);
}
