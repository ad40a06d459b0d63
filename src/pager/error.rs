//! Errors of the paged layers (pager, btree, txn). Every error about a file
//! names the file and the offset; errors about a page name the page.

use crate::log::{LogError, Lsn};
use std::io;
use std::path::PathBuf;
use std::sync::Arc;

/// Result type of the paged layers.
pub type Result<T, E = DbError> = std::result::Result<T, E>;

/// What went wrong in the database.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DbError {
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
    /// A page that should be valid is not: bad checksum, wrong number, bad layout.
    #[error("corrupt page {page} of {} at offset {offset}: {reason}", file.display())]
    CorruptPage {
        /// The database file.
        file: PathBuf,
        /// The page number.
        page: u32,
        /// Byte offset in the file of the bad byte (or of the page).
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// Any other damage to the database file (header, shadow header, size).
    #[error("corrupt database file {} at offset {offset}: {reason}", file.display())]
    Corrupt {
        /// The file.
        file: PathBuf,
        /// Byte offset of the damage.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// Redo found a page older than the record expects: a write of that page
    /// was lost (the file holds a stale version).
    #[error("lost flush: page {page} of {} is at LSN {found}, but the log record at {record} expects {expected}", file.display())]
    LostFlush {
        /// The database file.
        file: PathBuf,
        /// The page number.
        page: u32,
        /// The page LSN the record expects before it.
        expected: Lsn,
        /// The page LSN found.
        found: Lsn,
        /// The LSN of the log record.
        record: Lsn,
    },
    /// A commit names a page it wrote in place before it was logged (a
    /// large value written once), and the file does not hold that page:
    /// a lost write, or a copy that was never sent the page (it needs a
    /// reseed).
    #[error(
        "page {page} of {} at offset {offset} is not the page the log record at {record} wrote before it (checksum {crc:08x}; found {}): a lost write, or a copy that was not sent the page and needs a reseed",
        file.display(),
        match found { Some(lsn) => format!("a page at LSN {lsn}"), None => "no readable page".to_string() }
    )]
    NotWritten {
        /// The database file.
        file: PathBuf,
        /// The page number.
        page: u32,
        /// Byte offset of the page.
        offset: u64,
        /// The checksum the record names.
        crc: u32,
        /// The LSN of the page found, if it was readable.
        found: Option<Lsn>,
        /// The LSN of the log record.
        record: Lsn,
    },
    /// A log record that passed its checksum but does not decode as a
    /// database record (a bug, or a foreign writer).
    #[error("bad database record at {lsn} in {} at offset {offset}: {reason}", file.display())]
    BadRecord {
        /// The log generation file.
        file: PathBuf,
        /// Byte offset of the record in that file.
        offset: u64,
        /// The record's LSN.
        lsn: Lsn,
        /// What is wrong.
        reason: String,
    },
    /// A passive copy's pages differ from the active's at the same LSN, as
    /// the whole-database digest the active logged shows.
    #[error("this copy diverged from the active: {} of {} at the checkpoint marker {marker} (whole digest logged at {digest}): {reason}", super::digest::fmt_ranges(pages), file.display())]
    Diverged {
        /// The copy's database file.
        file: PathBuf,
        /// The marker whose state was compared.
        marker: Lsn,
        /// Where the digest record is in the log.
        digest: Lsn,
        /// Page ranges `start..end` whose group hashes differ.
        pages: Vec<(u32, u32)>,
        /// What differs.
        reason: String,
    },
    /// The log does not fit the database: missing generations, another
    /// database's log, or a log that ends before the database needs.
    #[error("the log in {} does not match the database: {reason}", dir.display())]
    LogMismatch {
        /// The log directory.
        dir: PathBuf,
        /// What does not match.
        reason: String,
    },
    /// The write-ahead log failed.
    #[error(transparent)]
    Log(#[from] LogError),
    /// A previous write or sync failed; the database accepts no more writes.
    #[error("the database is stopped after an earlier failure: {cause}")]
    Stopped {
        /// The first failure.
        cause: Arc<DbError>,
    },
    /// A key longer than the page size allows.
    #[error("key of {len} bytes exceeds the maximum of {max}")]
    KeyTooLarge {
        /// The key's length.
        len: usize,
        /// The largest key allowed.
        max: usize,
    },
    /// A value longer than the database allows.
    #[error("value of {len} bytes exceeds the maximum of {max}")]
    ValueTooLarge {
        /// The value's length.
        len: u64,
        /// The largest value allowed.
        max: u64,
    },
    /// A transaction grew past its limit: the changed pages it holds in
    /// memory (it cannot write them before it commits) past
    /// `max_transaction_bytes`, or half the cache if that is more.
    #[error("transaction too large: {measure} would be {bytes} bytes, the maximum is {max}")]
    TransactionTooLarge {
        /// What grew too large: "the changed pages it holds".
        measure: &'static str,
        /// Its size.
        bytes: usize,
        /// The limit.
        max: usize,
    },
    /// No table of that name.
    #[error("no table named {name:?}")]
    NoSuchTable {
        /// The name asked for.
        name: String,
    },
    /// A table of that name already exists.
    #[error("a table named {name:?} already exists")]
    TableExists {
        /// The name.
        name: String,
    },
    /// A bad argument or option.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// Another open holds the database: another process, or another
    /// `open` in this one. Nothing was read or written.
    #[error("{}: the database is in use (its lock file is held by another open)", lock.display())]
    InUse {
        /// The lock file.
        lock: PathBuf,
    },
    /// The database directory holds no database, or one that already exists.
    #[error("{}: {reason}", path.display())]
    NotADatabase {
        /// The path.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A snapshot of a passive copy can no longer be read: replay's
    /// checkpoints overwrote pages it reads past its budget for keeping
    /// their old images, or the copy's replay closed. Open a newer one.
    #[error("the snapshot of {} at {position} is too old: {reason}; open a newer one", file.display())]
    SnapshotTooOld {
        /// The copy's database file.
        file: PathBuf,
        /// The replay position the snapshot reads at.
        position: Lsn,
        /// Why it expired.
        reason: String,
    },
    /// A passive copy cannot be read yet: its file holds pages changed by
    /// records replay has not reached (after a seed, or a reopen after a
    /// checkpoint that spilled), so no state is whole yet.
    #[error("the copy {} has replayed to {position}, but its file holds changes up to {required}: readable once replay passes it", file.display())]
    NotYetConsistent {
        /// The copy's database file.
        file: PathBuf,
        /// The end of the last record replayed.
        position: Lsn,
        /// The newest change the file holds.
        required: Lsn,
    },
    /// The cache cannot hold the pages an operation needs (every page pinned
    /// by old snapshots or dirty and not yet checkpointed).
    #[error("the page cache is full: {reason}")]
    CacheFull {
        /// What holds the memory.
        reason: String,
    },
}

impl DbError {
    pub(crate) fn io(file: impl Into<PathBuf>, offset: u64, op: &'static str, source: io::Error) -> Self {
        DbError::Io {
            file: file.into(),
            offset,
            op,
            source,
        }
    }

    pub(crate) fn corrupt_page(file: impl Into<PathBuf>, page: u32, offset: u64, reason: impl Into<String>) -> Self {
        DbError::CorruptPage {
            file: file.into(),
            page,
            offset,
            reason: reason.into(),
        }
    }

    pub(crate) fn corrupt(file: impl Into<PathBuf>, offset: u64, reason: impl Into<String>) -> Self {
        DbError::Corrupt {
            file: file.into(),
            offset,
            reason: reason.into(),
        }
    }
}
