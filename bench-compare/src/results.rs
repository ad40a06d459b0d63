//! The results file: what a campaign ran, on what, and every run's figures.

use crate::engines::EngineKind;
use crate::error::BenchResult;
use crate::sysinfo::Machine;
use crate::workloads::{Metrics, Params, Workload};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// What one child process prints: its figures or its error, and its peak memory.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChildReport {
    pub metrics: Option<Metrics>,
    pub error: Option<String>,
    pub peak_rss_bytes: u64,
}

/// One (engine, workload, round).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunRecord {
    pub engine: EngineKind,
    pub workload: Workload,
    pub round: u32,
    /// Empty if the run failed.
    pub metrics: Metrics,
    pub error: Option<String>,
    pub peak_rss_bytes: u64,
    /// Wall time of the whole child, setup and checks included.
    pub wall_secs: f64,
}

/// A whole campaign.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Campaign {
    pub date: String,
    pub machine: Machine,
    /// Crate versions (and SQLite's own library version).
    pub versions: BTreeMap<String, String>,
    /// The command that reproduces it.
    pub command: String,
    pub mailvault_commit: String,
    pub rounds: u32,
    pub params: Params,
    pub engines: Vec<EngineKind>,
    pub workloads: Vec<Workload>,
    pub runs: Vec<RunRecord>,
}

impl Campaign {
    pub fn load(path: &Path) -> BenchResult<Campaign> {
        Ok(serde_json::from_slice(&std::fs::read(path)?)?)
    }

    pub fn save(&self, path: &Path) -> BenchResult<()> {
        let temporary = path.with_extension("json.partial");
        std::fs::write(&temporary, serde_json::to_vec_pretty(self)?)?;
        std::fs::rename(&temporary, path)?;
        Ok(())
    }
}

/// The versions of everything measured, as this binary was built.
pub fn versions() -> BTreeMap<String, String> {
    let mut versions = BTreeMap::new();
    let mut add = |name: &str, version: &str| versions.insert(name.to_string(), version.to_string());
    add("mailvault", env!("BENCH_VERSION_MAILVAULT"));
    add("rusqlite", env!("BENCH_VERSION_RUSQLITE"));
    add("libsqlite3-sys", env!("BENCH_VERSION_LIBSQLITE3_SYS"));
    add("SQLite library", rusqlite::version());
    add("redb", env!("BENCH_VERSION_REDB"));
    add("fjall", env!("BENCH_VERSION_FJALL"));
    if cfg!(feature = "rocksdb") {
        add("rocksdb (crate)", env!("BENCH_VERSION_ROCKSDB"));
        add("librocksdb-sys (+RocksDB)", env!("BENCH_VERSION_LIBROCKSDB_SYS"));
    }
    versions
}
