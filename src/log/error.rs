//! Errors of the log layer. Every error about a file names the file and the offset.

use super::Lsn;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;

/// Result type of the log layer.
pub type Result<T, E = LogError> = std::result::Result<T, E>;

/// What went wrong in the log.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LogError {
    /// The operating system (or the simulation) failed an operation.
    #[error("I/O error during {op} on {} at offset {offset}: {source}", file.display())]
    Io {
        /// The file or directory.
        file: PathBuf,
        /// Byte offset of the operation (0 for whole-file operations).
        offset: u64,
        /// The operation, such as "write" or "sync".
        op: &'static str,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// Bytes that should be valid are not: a bad checksum, field or record.
    #[error("corrupt log file {} at offset {offset}: {reason}", file.display())]
    Corrupt {
        /// The file.
        file: PathBuf,
        /// Byte offset of the bad frame, header or record.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// A file in the log directory that is not a generation of a log.
    #[error("foreign file in the log directory: {} at offset {offset}: {reason}", file.display())]
    ForeignFile {
        /// The file.
        file: PathBuf,
        /// Byte offset of the first thing that does not fit.
        offset: u64,
        /// Why it is not ours.
        reason: String,
    },
    /// A generation between the first and the last is absent.
    #[error("generation {generation} is missing from {} (between {} and {})", dir.display(), before.display(), after.display())]
    MissingGeneration {
        /// The log directory.
        dir: PathBuf,
        /// The missing generation number.
        generation: u32,
        /// The file before the gap.
        before: PathBuf,
        /// The file after the gap.
        after: PathBuf,
    },
    /// A generation signed by another log.
    #[error("{} at offset {offset} belongs to another log: signature {found}, expected {expected}", file.display())]
    WrongSignature {
        /// The file.
        file: PathBuf,
        /// Offset of the signature field.
        offset: u64,
        /// The signature this log has.
        expected: String,
        /// The signature in the file.
        found: String,
    },
    /// A generation does not continue the one before it.
    #[error("divergent log history: {} at offset {offset}: {reason}", file.display())]
    Divergent {
        /// The file whose header does not chain.
        file: PathBuf,
        /// Offset of the field that does not match.
        offset: u64,
        /// What does not match.
        reason: String,
    },
    /// The log stopped accepting writes after an earlier write or sync failure
    /// (fail-stop). Reopen the log to recover.
    #[error("log is stopped after an earlier failure; reopen to recover: {cause}")]
    Stopped {
        /// The failure that stopped the log.
        cause: Arc<LogError>,
    },
    /// A record larger than the configured maximum.
    #[error("record of {len} bytes exceeds the maximum record size of {max} bytes")]
    RecordTooLarge {
        /// Size asked for.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// An LSN that is not the start of a record.
    #[error("{lsn} is not a record boundary in {} (offset {offset})", file.display())]
    NotARecordBoundary {
        /// The LSN given.
        lsn: Lsn,
        /// The generation file.
        file: PathBuf,
        /// The offset within it.
        offset: u64,
    },
    /// Options that cannot work, such as a frame size that is not a power of two.
    #[error("invalid log options: {0}")]
    InvalidOptions(String),
    /// There is no log where one was expected.
    #[error("no log in {}: {reason}", dir.display())]
    NoLog {
        /// The directory.
        dir: PathBuf,
        /// Why.
        reason: String,
    },
    /// A log already exists where a new one was to be created.
    #[error("a log already exists in {}", dir.display())]
    AlreadyExists {
        /// The directory.
        dir: PathBuf,
    },
}

impl LogError {
    pub(crate) fn io(file: impl Into<PathBuf>, offset: u64, op: &'static str, source: io::Error) -> Self {
        LogError::Io {
            file: file.into(),
            offset,
            op,
            source,
        }
    }

    pub(crate) fn corrupt(file: impl Into<PathBuf>, offset: u64, reason: impl Into<String>) -> Self {
        LogError::Corrupt {
            file: file.into(),
            offset,
            reason: reason.into(),
        }
    }
}
