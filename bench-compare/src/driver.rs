//! The campaign: every (engine, workload, round) in a child process of its
//! own, so each engine's peak memory is its own and no engine inherits
//! another's heap or page-cache warmth in the process. Within a round, each
//! workload runs on every engine back to back, in an order that rotates
//! from round to round, so the disk's drift hits every engine alike.

use crate::engines::EngineKind;
use crate::error::{BenchError, BenchResult};
use crate::results::{Campaign, ChildReport, RunRecord, versions};
use crate::sysinfo::{Machine, today};
use crate::workloads::{Params, Workload};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub params: Params,
    /// Rounds; the report gives each figure's median over them.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=99))]
    pub rounds: u32,
    /// Engines to run (default: every engine this binary was built with).
    #[arg(long, value_delimiter = ',')]
    pub engines: Vec<EngineKind>,
    /// Workloads to run (default: all).
    #[arg(long, value_delimiter = ',')]
    pub workloads: Vec<Workload>,
    /// Scratch directory on the disk to measure (emptied run by run).
    #[arg(long, default_value = "target/bench-compare-data")]
    pub dir: PathBuf,
    /// Results file to write (rewritten after every run, so a cut campaign keeps its runs).
    #[arg(long, default_value = "bench-compare/results.json")]
    pub out: PathBuf,
}

/// The flags that hand `params` to a child.
fn params_args(params: &Params) -> Vec<String> {
    vec![
        format!("--seconds={}", params.seconds),
        format!("--ingest-messages={}", params.ingest_messages),
        format!("--bulk-records={}", params.bulk_records),
        format!("--read-records={}", params.read_records),
        format!("--folder-messages={}", params.folder_messages),
        format!("--seed={}", params.seed),
    ]
}

/// The command line that reproduces this campaign.
fn reproducing_command() -> String {
    let features = if cfg!(feature = "rocksdb") {
        " --features rocksdb"
    } else {
        ""
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    format!(
        "cargo run --release -p mailvault-bench-compare{features} -- {}",
        args.join(" ")
    )
}

fn git_commit() -> String {
    Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into())
}

/// Runs the campaign and writes the results file.
pub fn run(args: RunArgs) -> BenchResult<Campaign> {
    let available = EngineKind::available();
    let engines = if args.engines.is_empty() {
        available.clone()
    } else {
        args.engines.clone()
    };
    if let Some(missing) = engines.iter().find(|e| !available.contains(e)) {
        return Err(BenchError::Engine {
            engine: missing.name(),
            message: "not built into this binary (RocksDB needs `--features rocksdb`)".into(),
        });
    }
    let workloads = if args.workloads.is_empty() {
        Workload::all()
    } else {
        args.workloads.clone()
    };
    std::fs::create_dir_all(&args.dir)?;
    if let Some(parent) = args.out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    let mut campaign = Campaign {
        date: today(),
        machine: Machine::describe(&args.dir),
        versions: versions(),
        command: reproducing_command(),
        mailvault_commit: git_commit(),
        rounds: args.rounds,
        params: args.params.clone(),
        engines: engines.clone(),
        workloads: workloads.clone(),
        runs: Vec::new(),
    };
    for round in 0..args.rounds {
        for &workload in &workloads {
            let runnable: Vec<EngineKind> = engines.iter().copied().filter(|e| workload.runs_on(*e)).collect();
            for i in 0..runnable.len() {
                let engine = runnable[(i + round as usize) % runnable.len()];
                let record = run_child(engine, workload, round, &args.dir, &args.params)?;
                eprintln!("{}", progress_line(&record, args.rounds));
                campaign.runs.push(record);
                campaign.save(&args.out)?;
            }
        }
    }
    Ok(campaign)
}

fn progress_line(record: &RunRecord, rounds: u32) -> String {
    let figures = match &record.error {
        Some(error) => format!("FAILED: {error}"),
        None => record
            .metrics
            .iter()
            .map(|(name, value)| format!("{name}={value:.1}"))
            .collect::<Vec<_>>()
            .join(" "),
    };
    format!(
        "round {}/{rounds} {:<10} {:<13} {:>5.1} s, peak RSS {:.1} MiB: {figures}",
        record.round + 1,
        record.workload.name(),
        record.engine.name(),
        record.wall_secs,
        record.peak_rss_bytes as f64 / (1 << 20) as f64
    )
}

/// Runs one (engine, workload) in a child process of this binary.
fn run_child(
    engine: EngineKind,
    workload: Workload,
    round: u32,
    dir: &Path,
    params: &Params,
) -> BenchResult<RunRecord> {
    let child_dir = dir.join(format!("{}-{}-r{}", engine.name(), workload.name(), round + 1));
    if child_dir.exists() {
        std::fs::remove_dir_all(&child_dir)?;
    }
    let start = Instant::now();
    let output = Command::new(std::env::current_exe()?)
        .arg("one")
        .arg(format!("--engine={}", engine.name()))
        .arg(format!("--workload={}", workload.name()))
        .arg("--dir")
        .arg(&child_dir)
        .args(params_args(params))
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()?;
    let wall_secs = start.elapsed().as_secs_f64();
    if child_dir.exists() {
        std::fs::remove_dir_all(&child_dir)?;
    }
    let report: ChildReport = match serde_json::from_slice(&output.stdout) {
        Ok(report) => report,
        Err(_) => ChildReport {
            metrics: None,
            error: Some(format!("the child exited with {} and printed no report", output.status)),
            peak_rss_bytes: 0,
        },
    };
    Ok(RunRecord {
        engine,
        workload,
        round,
        metrics: report.metrics.unwrap_or_default(),
        error: report.error,
        peak_rss_bytes: report.peak_rss_bytes,
        wall_secs,
    })
}
