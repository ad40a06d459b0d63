//! mailvault: a paged, ESE-style mailbox store with a write-ahead log and
//! continuous replication.
//!
//! Layers, each depending only on those below it:
//! - [`vfs`]: files and directories, real or simulated with crashes and faults;
//! - [`log`]: the write-ahead log: generations, frames, group commit, readers, recovery;
//! - [`pager`]: checksummed pages, the buffer cache, redo records,
//!   checkpoints, recovery and log truncation;
//! - [`btree`]: B+trees of variable-length keys and values, long values;
//! - [`txn`]: the database: tables, one writer with early lock release,
//!   snapshot readers, durable or lazy commits.

#![deny(unsafe_code)]

pub mod btree;
pub mod log;
pub mod mailbox;
pub mod pager;
pub mod repl;
pub mod txn;
pub mod vfs;
