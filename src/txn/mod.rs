//! Transactions over named tables: one writer at a time with early lock
//! release, and snapshot readers that never block it nor wait for it.
//!
//! ```
//! use mailvault::txn::{Database, DbOptions};
//! use mailvault::vfs::SimVfs;
//!
//! let disk = SimVfs::new(1);
//! let db = Database::create(disk.clone(), "/store", DbOptions::default())?;
//! let mut tx = db.begin_write();
//! let inbox = tx.create_table("inbox")?;
//! tx.put(&inbox, b"msg-1", b"Subject: hello")?;
//! tx.commit()?;
//! let rx = db.begin_read();
//! let inbox = rx.open_table("inbox")?;
//! assert_eq!(rx.get(&inbox, b"msg-1")?, Some(b"Subject: hello".to_vec()));
//! db.close()?;
//! # Ok::<(), mailvault::pager::DbError>(())
//! ```

mod combine;
mod passive;
mod read;
mod table;
mod verify;
mod write;

pub use passive::PassiveRead;
pub use read::{ReadTxn, SnapshotPages};
pub(crate) use table::lookup as lookup_table;
pub use table::{Table, WriteTxn};
pub use verify::{DbVerifyReport, PageProblem};
pub use write::TxnPages;

use crate::pager::{DbError, Pager, PagerOptions, RecoveryStats, Result};
use crate::vfs::SharedVfs;
use combine::{Combiner, WriterLock};
use std::path::Path;
use std::sync::Arc;

/// Options of a database (see [`PagerOptions`]).
pub type DbOptions = PagerOptions;

/// When a commit returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// After the transaction's log record is on disk (fdatasync).
    #[default]
    Durable,
    /// At once; the background thread makes it durable within
    /// `lazy_flush_interval` (plus one fsync). A crash in that window loses it.
    Lazy,
}

/// An open database: the data file, its log, and its tables.
pub struct Database {
    pager: Arc<Pager>,
    writer: Arc<WriterLock>,
    /// The writer and commit threads of contended `write` calls.
    combiner: Combiner,
    recovery: RecoveryStats,
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Database")
            .field("pager", &self.pager)
            .finish_non_exhaustive()
    }
}

impl Database {
    /// Creates a database in `dir`.
    pub fn create(vfs: SharedVfs, dir: impl AsRef<Path>, opts: DbOptions) -> Result<Database> {
        let pager = Pager::create(vfs, dir, opts)?;
        let db = Database {
            pager,
            writer: Arc::default(),
            combiner: Combiner::default(),
            recovery: RecoveryStats::default(),
        };
        let mut tx = db.begin_write();
        let root = crate::btree::create(tx.pages_mut())?;
        if root != crate::pager::FIRST_DATA_PAGE {
            return Err(DbError::corrupt(
                db.pager.file_path(),
                0,
                format!(
                    "the catalog was created at page {root}, not {}",
                    crate::pager::FIRST_DATA_PAGE
                ),
            ));
        }
        tx.commit()?;
        Ok(db)
    }

    /// Opens the database in `dir`, recovering from a crash if needed.
    pub fn open(vfs: SharedVfs, dir: impl AsRef<Path>, opts: DbOptions) -> Result<Database> {
        let (pager, recovery) = Pager::open(vfs, dir, opts)?;
        Ok(Database {
            pager,
            writer: Arc::default(),
            combiner: Combiner::default(),
            recovery,
        })
    }

    /// What recovery did when the database was opened.
    pub fn recovery_stats(&self) -> &RecoveryStats {
        &self.recovery
    }

    /// Starts the write transaction, waiting for the current one to end.
    pub fn begin_write(&self) -> WriteTxn<'_> {
        let guard = self.writer.lock();
        WriteTxn::new(&self.pager, guard)
    }

    /// Starts a read transaction on the last durable state.
    pub fn begin_read(&self) -> ReadTxn<'_> {
        ReadTxn::new(self)
    }

    /// Runs a checkpoint now.
    pub fn checkpoint(&self) -> Result<()> {
        self.pager.checkpoint()
    }

    /// Holds the log from `lsn` on until the pin is dropped.
    pub fn pin_log(&self, lsn: crate::log::Lsn) -> LogPin {
        LogPin {
            pager: self.pager.clone(),
            id: self.pager.pin(lsn),
        }
    }

    /// The pager underneath (for tools and replication).
    pub fn pager(&self) -> &Arc<Pager> {
        &self.pager
    }

    /// Waits for running transactions, checkpoints and closes cleanly.
    pub fn close(self) -> Result<()> {
        self.combiner.stop();
        let _writer = self.writer.lock();
        self.pager.close()
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        self.combiner.stop();
        self.pager.stop_background();
    }
}

/// Keeps log generations from `lsn` on from being recycled (a backup, a copy).
pub struct LogPin {
    pager: Arc<Pager>,
    id: u64,
}

impl LogPin {
    /// Releases the log before `lsn`.
    pub fn advance(&self, lsn: crate::log::Lsn) {
        self.pager.move_pin(self.id, lsn);
    }
}

impl Drop for LogPin {
    fn drop(&mut self) {
        self.pager.unpin(self.id);
    }
}
