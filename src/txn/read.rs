//! Read transactions: a snapshot of the last durable commit.

use super::Database;
use super::table::{Table, list, lookup};
use crate::btree::{self, LongValue, Value};
use crate::pager::{PageNo, PageRead, PageRef, Pager, Result};
use std::ops::Bound;
use std::path::Path;
use std::sync::Arc;

/// The pages of one snapshot.
pub struct SnapshotPages {
    pager: Arc<Pager>,
    snapshot: crate::pager::Snapshot,
    page_count: u32,
}

impl PageRead for SnapshotPages {
    fn page_size(&self) -> usize {
        self.pager.page_size()
    }

    fn file_path(&self) -> &Path {
        self.pager.file_path()
    }

    fn page(&self, no: PageNo) -> Result<PageRef> {
        self.pager.read(no, self.snapshot.seq)
    }

    fn page_in_passing(&self, no: PageNo) -> Result<PageRef> {
        self.pager.read_in_passing(no, self.snapshot.seq)
    }
}

impl SnapshotPages {
    /// Pages in the database as of the snapshot (the file may hold more,
    /// of later commits).
    pub fn page_count(&self) -> u32 {
        self.page_count
    }
}

impl Drop for SnapshotPages {
    fn drop(&mut self) {
        self.pager.end_snapshot(self.snapshot);
    }
}

/// A consistent view of the database as of its start. It never blocks the
/// writer and is never blocked by it; the page versions it reads stay in
/// memory until it ends.
pub struct ReadTxn<'db> {
    pages: SnapshotPages,
    _db: std::marker::PhantomData<&'db Database>,
}

impl<'db> ReadTxn<'db> {
    pub(crate) fn new(db: &'db Database) -> Self {
        let (snapshot, page_count) = db.pager.begin_snapshot();
        ReadTxn {
            pages: SnapshotPages {
                pager: db.pager.clone(),
                snapshot,
                page_count,
            },
            _db: std::marker::PhantomData,
        }
    }

    /// The commit sequence this snapshot sees.
    pub fn sequence(&self) -> u64 {
        self.pages.snapshot.seq
    }

    /// The table named `name`.
    pub fn open_table(&self, name: &str) -> Result<Table> {
        lookup(&self.pages, name)
    }

    /// Every table's name, in order.
    pub fn list_tables(&self) -> Result<Vec<String>> {
        list(&self.pages)
    }

    /// The value of `key`, read whole.
    pub fn get(&self, table: &Table, key: &[u8]) -> Result<Option<Vec<u8>>> {
        btree::get_bytes(&self.pages, table.root(), key)
    }

    /// The value of `key` as stored (a long value is not read).
    pub fn get_value(&self, table: &Table, key: &[u8]) -> Result<Option<Value>> {
        btree::get(&self.pages, table.root(), key)
    }

    /// Reads part of a long value.
    pub fn read_long(&self, value: &LongValue, offset: u64, buf: &mut [u8]) -> Result<usize> {
        btree::read_long(&self.pages, value, offset, buf)
    }

    /// Entries with keys in the given bounds, in order (reversible).
    pub fn range(
        &self,
        table: &Table,
        start: Bound<&[u8]>,
        end: Bound<&[u8]>,
    ) -> Result<btree::Range<'_, SnapshotPages>> {
        btree::range(&self.pages, table.root(), start, end)
    }

    /// The snapshot's page store (for verification tools).
    pub fn pages(&self) -> &SnapshotPages {
        &self.pages
    }
}
