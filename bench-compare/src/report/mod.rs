//! Turns a results file into BENCHMARKS.md and plots.

mod plots;

use crate::error::BenchResult;
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    /// Results file written by `run`.
    #[arg(long, default_value = "bench-compare/results.json")]
    pub results: PathBuf,
    /// Markdown file to write.
    #[arg(long, default_value = "BENCHMARKS.md")]
    pub out: PathBuf,
    /// Directory for the plots (SVG).
    #[arg(long, default_value = "docs/plots")]
    pub plots: PathBuf,
}

pub fn write(_args: &ReportArgs) -> BenchResult<()> {
    Ok(())
}
