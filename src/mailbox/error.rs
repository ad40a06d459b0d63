//! The mailbox store's error type.

use crate::pager::DbError;
use std::path::PathBuf;

/// Result of a mailbox-store call.
pub type Result<T, E = MailError> = std::result::Result<T, E>;

/// Which quota a write would exceed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuotaKind {
    /// Total bytes of the mailbox's messages.
    Bytes,
    /// Number of messages in the mailbox.
    Messages,
}

impl std::fmt::Display for QuotaKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            QuotaKind::Bytes => "bytes",
            QuotaKind::Messages => "messages",
        })
    }
}

/// Everything a mailbox-store call can fail with. A call that fails leaves
/// the store unchanged: its transaction rolls back.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MailError {
    /// The database underneath failed (I/O, corruption, fail-stop, limits).
    #[error(transparent)]
    Db(#[from] DbError),
    /// A name (mailbox, folder, keyword, property) is not acceptable.
    #[error("invalid {what} name {name:?}: {reason}")]
    InvalidName {
        /// What was being named.
        what: &'static str,
        /// The name, cut to 100 characters.
        name: String,
        /// Why it is refused.
        reason: String,
    },
    /// An argument is out of range or inconsistent.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// No mailbox has this name.
    #[error("no mailbox named {0:?}")]
    NoSuchMailbox(String),
    /// A mailbox with this name exists.
    #[error("a mailbox named {0:?} already exists")]
    MailboxExists(String),
    /// No folder has this name in the mailbox.
    #[error("no folder {folder:?} in mailbox {mailbox:?}")]
    NoSuchFolder {
        /// The mailbox.
        mailbox: String,
        /// The folder.
        folder: String,
    },
    /// A folder with this name exists in the mailbox.
    #[error("folder {folder:?} already exists in mailbox {mailbox:?}")]
    FolderExists {
        /// The mailbox.
        mailbox: String,
        /// The folder.
        folder: String,
    },
    /// The folder has children; delete them first.
    #[error("folder {folder:?} has child folders")]
    FolderHasChildren {
        /// The folder.
        folder: String,
    },
    /// INBOX cannot be deleted or renamed.
    #[error("folder {0:?} cannot be deleted or renamed")]
    ProtectedFolder(String),
    /// No message has this UID in the folder.
    #[error("no message with UID {uid} in folder {folder:?}")]
    NoSuchMessage {
        /// The folder.
        folder: String,
        /// The UID asked for.
        uid: u32,
    },
    /// The write would take the mailbox past a quota; nothing was written.
    #[error("mailbox {mailbox:?} would exceed its {kind} quota: {needed} needed, limit {limit}")]
    QuotaExceeded {
        /// The mailbox.
        mailbox: String,
        /// Which quota.
        kind: QuotaKind,
        /// The usage the write would reach.
        needed: u64,
        /// The limit.
        limit: u64,
    },
    /// A message body is larger than the store accepts.
    #[error("message body of {len} bytes exceeds the maximum of {max}")]
    BodyTooLarge {
        /// The body's length (or what was read before giving up).
        len: u64,
        /// The store's `max_body_bytes`.
        max: u64,
    },
    /// The folder ran out of UIDs (UIDNEXT reached 2^32 - 1).
    #[error("folder {0:?} has no UIDs left")]
    UidsExhausted(String),
    /// Reading a message from the caller's reader failed.
    #[error("reading the message body failed: {0}")]
    Read(#[source] std::io::Error),
    /// A stored record does not decode.
    #[error("corrupt {table} record in {} (key {key}): {reason}", file.display())]
    Corrupt {
        /// The database file.
        file: PathBuf,
        /// The table.
        table: &'static str,
        /// The record's key, in hex.
        key: String,
        /// What is wrong.
        reason: String,
    },
}

impl MailError {
    pub(crate) fn invalid_name(what: &'static str, name: &str, reason: impl Into<String>) -> MailError {
        MailError::InvalidName {
            what,
            name: name.chars().take(100).collect(),
            reason: reason.into(),
        }
    }
}

/// Hex of a key, for error messages.
pub(crate) fn hex(key: &[u8]) -> String {
    key.iter().map(|b| format!("{b:02x}")).collect()
}
