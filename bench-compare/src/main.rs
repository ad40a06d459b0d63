//! `mailvault-bench-compare`: mailvault against the engines a mail-server
//! author would pick instead (SQLite, redb, fjall, RocksDB) and against the
//! raw disk, on the workloads of issue 6, with each engine's defaults and
//! the durability settings the issue names. Built only on request
//! (`cargo run -p mailvault-bench-compare`), never by the main crate's
//! `cargo test`.
//!
//! `run` drives a campaign, one child process per (engine, workload,
//! round), and writes a results file; `report` turns it into BENCHMARKS.md
//! and plots; `one` is the child.

mod data;
mod driver;
mod engines;
mod error;
mod report;
mod results;
mod sysinfo;
mod workloads;

use clap::{Parser, Subcommand};
use engines::EngineKind;
use error::BenchResult;
use results::ChildReport;
use std::path::PathBuf;
use std::process::ExitCode;
use workloads::{Params, Workload};

#[derive(Debug, Parser)]
#[command(name = "mailvault-bench-compare", about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the campaign: every engine, workload and round, each in a child process.
    Run(driver::RunArgs),
    /// Turn a results file into BENCHMARKS.md and plots.
    Report(report::ReportArgs),
    /// Run one workload on one engine in this process and print a JSON report (the driver's child).
    One(OneArgs),
}

#[derive(Debug, clap::Args)]
struct OneArgs {
    #[arg(long)]
    engine: EngineKind,
    #[arg(long)]
    workload: Workload,
    /// Directory to create the engine's files in (must not exist or be empty).
    #[arg(long)]
    dir: PathBuf,
    #[command(flatten)]
    params: Params,
}

fn one(args: &OneArgs) -> BenchResult<()> {
    let outcome = if args.workload.runs_on(args.engine) {
        workloads::run(args.engine, args.workload, &args.dir, &args.params)
    } else {
        Err(error::BenchError::Unsupported {
            engine: args.engine.name(),
            workload: args.workload.name().into(),
        })
    };
    let report = match outcome {
        Ok(metrics) => ChildReport {
            metrics: Some(metrics),
            error: None,
            peak_rss_bytes: sysinfo::peak_rss_bytes(),
        },
        Err(e) => ChildReport {
            metrics: None,
            error: Some(e.to_string()),
            peak_rss_bytes: sysinfo::peak_rss_bytes(),
        },
    };
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}

fn main() -> ExitCode {
    let result = match Cli::parse().command {
        Command::Run(args) => driver::run(args).map(|campaign| {
            let failed = campaign.runs.iter().filter(|r| r.error.is_some()).count();
            eprintln!("{} runs, {failed} failed", campaign.runs.len());
        }),
        Command::Report(args) => report::write(&args),
        Command::One(args) => one(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
