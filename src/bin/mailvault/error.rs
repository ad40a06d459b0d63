//! The binary's error: a message that already says what failed and where.

use mailvault::log::LogError;
use mailvault::pager::DbError;
use std::fmt;

/// An error for the operator. Library errors keep their own message, which
/// names the file and offset; other errors get context via [`Context`].
#[derive(Debug)]
pub struct CliError(String);

/// Result type of the binary.
pub type Result<T, E = CliError> = std::result::Result<T, E>;

impl CliError {
    pub fn msg(message: impl Into<String>) -> Self {
        CliError(message.into())
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CliError {}

impl From<LogError> for CliError {
    fn from(e: LogError) -> Self {
        CliError(e.to_string())
    }
}

impl From<DbError> for CliError {
    fn from(e: DbError) -> Self {
        CliError(e.to_string())
    }
}

/// Adds what was being done (and to which file) to an error.
pub trait Context<T> {
    fn context<C: fmt::Display>(self, what: impl FnOnce() -> C) -> Result<T>;
}

impl<T, E: fmt::Display> Context<T> for std::result::Result<T, E> {
    fn context<C: fmt::Display>(self, what: impl FnOnce() -> C) -> Result<T> {
        self.map_err(|e| CliError(format!("{}: {e}", what())))
    }
}

impl From<mailvault::mailbox::MailError> for CliError {
    fn from(e: mailvault::mailbox::MailError) -> Self {
        CliError(e.to_string())
    }
}

impl From<mailvault::repl::ReplError> for CliError {
    fn from(e: mailvault::repl::ReplError) -> Self {
        CliError(e.to_string())
    }
}
