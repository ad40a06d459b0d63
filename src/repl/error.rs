//! The replication layer's error type.

use super::wire::{RecvError, WireError};
use crate::log::LogError;
use crate::pager::DbError;

/// Result of a replication call.
pub type Result<T, E = ReplError> = std::result::Result<T, E>;

/// What replication can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReplError {
    /// The network failed or the peer closed the connection.
    #[error("replication connection: {0}")]
    Io(#[from] std::io::Error),
    /// A damaged or invalid frame arrived.
    #[error("replication frame: {0}")]
    Wire(#[from] WireError),
    /// The peer failed to prove the cluster key.
    #[error("authentication failed: {0}")]
    AuthFailed(String),
    /// The peer refused the session.
    #[error("refused by the peer (code {code}): {reason}")]
    Refused {
        /// Why, as a number (see `auth::codes`).
        code: u16,
        /// Why, in words.
        reason: String,
    },
    /// The peer broke the protocol.
    #[error("protocol violation: {0}")]
    Protocol(String),
    /// The cluster key is unusable.
    #[error("cluster key: {0}")]
    BadKey(String),
    /// The log failed.
    #[error(transparent)]
    Log(#[from] LogError),
    /// The database failed.
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<RecvError> for ReplError {
    fn from(e: RecvError) -> Self {
        match e {
            RecvError::Io(e) => ReplError::Io(e),
            RecvError::Wire(e) => ReplError::Wire(e),
        }
    }
}
