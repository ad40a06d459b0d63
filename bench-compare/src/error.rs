//! One error type for the whole binary: every engine's errors become an
//! `Engine` error naming the engine, so a run's report says who failed.

use std::fmt;

/// Everything that can stop a benchmark run.
#[derive(Debug)]
pub enum BenchError {
    /// An engine's own error, as its crate formats it.
    Engine { engine: &'static str, message: String },
    /// A workload read back something other than what it wrote.
    Check(String),
    /// The engine does not implement this workload (the raw floor has no folders).
    Unsupported { engine: &'static str, workload: String },
    /// File system errors of the harness itself.
    Io(std::io::Error),
    /// Reading or writing the results file.
    Json(serde_json::Error),
    /// Drawing a plot.
    Plot(String),
}

impl fmt::Display for BenchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BenchError::Engine { engine, message } => write!(f, "{engine}: {message}"),
            BenchError::Check(what) => write!(f, "result check failed: {what}"),
            BenchError::Unsupported { engine, workload } => write!(f, "{engine} does not run workload {workload}"),
            BenchError::Io(e) => write!(f, "I/O: {e}"),
            BenchError::Json(e) => write!(f, "JSON: {e}"),
            BenchError::Plot(what) => write!(f, "plot: {what}"),
        }
    }
}

impl std::error::Error for BenchError {}

impl From<std::io::Error> for BenchError {
    fn from(e: std::io::Error) -> Self {
        BenchError::Io(e)
    }
}

impl From<serde_json::Error> for BenchError {
    fn from(e: serde_json::Error) -> Self {
        BenchError::Json(e)
    }
}

/// Result of anything in this binary.
pub type BenchResult<T> = Result<T, BenchError>;

/// Wraps an engine's error with the engine's name (`.map_err(engine_error("redb"))`).
pub fn engine_error<E: fmt::Display>(engine: &'static str) -> impl Fn(E) -> BenchError {
    move |e| BenchError::Engine {
        engine,
        message: e.to_string(),
    }
}

/// A failed result check.
pub fn check_failed(what: impl Into<String>) -> BenchError {
    BenchError::Check(what.into())
}
