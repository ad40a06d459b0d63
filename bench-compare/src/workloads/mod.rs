//! The workloads of issue 6, each run on one engine in one process. A
//! workload returns named figures (`Metrics`) and fails with a typed error
//! if the engine gave back anything other than what it was given.

mod kv;
mod mail;
mod timing;

use crate::engines::EngineKind;
use crate::error::BenchResult;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// Named figures of one run (`commits_per_sec`, `p99_us`, ...).
pub type Metrics = BTreeMap<String, f64>;

/// A workload and, where the issue asks for several, its thread count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Workload {
    /// 1: durable commits of one 1 KiB record, 1 thread.
    #[serde(rename = "commits-1")]
    #[value(name = "commits-1")]
    Commits1,
    /// 1: the same, 8 threads.
    #[serde(rename = "commits-8")]
    #[value(name = "commits-8")]
    Commits8,
    /// 1: the same, 64 threads.
    #[serde(rename = "commits-64")]
    #[value(name = "commits-64")]
    Commits64,
    /// 2 and 7: realistic-mix mail, 16 writers, one durable delivery each; then the size on disk.
    Ingest,
    /// 3: one transaction of many small records.
    BulkLoad,
    /// 4: random point reads from a warm cache, 1 thread.
    #[serde(rename = "reads-1")]
    #[value(name = "reads-1")]
    Reads1,
    /// 4: the same, 8 threads.
    #[serde(rename = "reads-8")]
    #[value(name = "reads-8")]
    Reads8,
    /// 5: list a 10,000-message folder's metadata; fetch bodies by UID.
    Folder,
    /// 6: 90 % reads, 10 % durable writes, 8 threads.
    Mixed,
}

impl Workload {
    pub fn all() -> Vec<Workload> {
        vec![
            Workload::Commits1,
            Workload::Commits8,
            Workload::Commits64,
            Workload::Ingest,
            Workload::BulkLoad,
            Workload::Reads1,
            Workload::Reads8,
            Workload::Folder,
            Workload::Mixed,
        ]
    }

    pub fn name(self) -> &'static str {
        match self {
            Workload::Commits1 => "commits-1",
            Workload::Commits8 => "commits-8",
            Workload::Commits64 => "commits-64",
            Workload::Ingest => "ingest",
            Workload::BulkLoad => "bulk-load",
            Workload::Reads1 => "reads-1",
            Workload::Reads8 => "reads-8",
            Workload::Folder => "folder",
            Workload::Mixed => "mixed",
        }
    }

    /// Threads of the workloads that have a thread count.
    pub fn threads(self) -> Option<usize> {
        match self {
            Workload::Commits1 | Workload::Reads1 => Some(1),
            Workload::Commits8 | Workload::Reads8 | Workload::Mixed => Some(8),
            Workload::Commits64 => Some(64),
            Workload::Ingest => Some(mail::INGEST_WRITERS),
            Workload::BulkLoad | Workload::Folder => None,
        }
    }

    /// Whether `engine` can run it (the raw floor has no folders to list).
    pub fn runs_on(self, engine: EngineKind) -> bool {
        !(engine == EngineKind::Raw && self == Workload::Folder)
    }
}

/// Sizes and durations of the workloads (the same for every engine of a campaign).
#[derive(Debug, Clone, Serialize, Deserialize, clap::Args)]
pub struct Params {
    /// Seconds of each timed phase (commits, reads, mixed; the folder
    /// workload splits it between listings and body fetches).
    #[arg(long, default_value_t = 5.0, value_parser = positive_seconds)]
    pub seconds: f64,
    /// Messages delivered by the ingest workload (in all, over 16 writers).
    #[arg(long, default_value_t = 2_000, value_parser = clap::value_parser!(u64).range(16..))]
    pub ingest_messages: u64,
    /// Records of the bulk load, in one transaction.
    #[arg(long, default_value_t = 1_000_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub bulk_records: u64,
    /// Records loaded before the read and mixed workloads.
    #[arg(long, default_value_t = 200_000, value_parser = clap::value_parser!(u64).range(1_000..))]
    pub read_records: u64,
    /// Messages in the listed folder (the same number sits in a second folder).
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..))]
    pub folder_messages: u32,
    /// Seed of every generated key, value and message.
    #[arg(long, default_value_t = 6)]
    pub seed: u64,
}

fn positive_seconds(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(s) if s.is_finite() && s > 0.0 && s <= 3600.0 => Ok(s),
        _ => Err(format!("`{text}` is not a number of seconds in (0, 3600]")),
    }
}

/// Runs `workload` on `engine` in `dir` (which it fills), in this process.
pub fn run(engine: EngineKind, workload: Workload, dir: &Path, params: &Params) -> BenchResult<Metrics> {
    match workload {
        Workload::Commits1 | Workload::Commits8 | Workload::Commits64 => {
            kv::commits(engine, dir, workload.threads().unwrap_or(1), params)
        }
        Workload::BulkLoad => kv::bulk_load(engine, dir, params),
        Workload::Reads1 | Workload::Reads8 => kv::reads(engine, dir, workload.threads().unwrap_or(1), params),
        Workload::Mixed => kv::mixed(engine, dir, workload.threads().unwrap_or(8), params),
        Workload::Ingest => mail::ingest(engine, dir, params),
        Workload::Folder => mail::folder(engine, dir, params),
    }
}
