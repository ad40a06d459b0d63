//! The pager: the database file of fixed-size checksummed pages, the buffer
//! cache with snapshot versions, the redo records, checkpoints, recovery and
//! log truncation.

mod apply;
mod cache;
mod checkpoint;
mod commit;
mod crc_shift;
mod diff;
pub mod digest;
mod doublewrite;
mod engine;
mod error;
mod file;
pub mod freemap;
pub mod header;
mod open;
pub mod page;
mod passive;
mod passive_read;
pub mod redo;
mod replay;
mod seed_read;
mod snapshots;
mod spill;
mod store;
mod txn_records;

pub use doublewrite::dw_path;
pub use engine::{DEFAULT_MAX_TRANSACTION_BYTES, LATEST, Pager, PagerOptions, Snapshot, TornPages};
pub use error::{DbError, Result};
pub use file::{data_path, lock_path, log_dir};
pub use open::RecoveryStats;
pub use page::{PageBuf, PageKind, PageNo, PageRef};
pub use passive::{ReplayProgress, Replayer};
pub use passive_read::{PassiveSnapshot, SnapshotLimits, SnapshotSource};
pub use seed_read::SeedPages;
pub use store::{PageRead, PageWrite};

/// Default page size: see DESIGN.md for the measurement behind it.
pub const DEFAULT_PAGE_SIZE: usize = 16384;
/// The first page that holds data: 0 and 1 are the header copies, 2 the
/// first free-space map; page 3 is the table catalog's root.
pub const FIRST_DATA_PAGE: u32 = 3;
