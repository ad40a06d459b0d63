//! Table reads on a passive copy: the read-transaction API over a
//! [`PassiveSnapshot`] (DESIGN.md, "Readable copies").

use super::table::{Table, list, lookup};
use crate::btree::{self, LongValue, Value};
use crate::log::Lsn;
use crate::pager::{PassiveSnapshot, Result};
use std::ops::Bound;

/// Reads of a copy's tables at one replay position. Every read sees the
/// committed state there; once the snapshot expires, reads fail with
/// [`crate::pager::DbError::SnapshotTooOld`].
#[derive(Debug, Clone)]
pub struct PassiveRead {
    pages: PassiveSnapshot,
}

impl PassiveRead {
    /// Table reads over `snapshot`.
    pub fn new(snapshot: PassiveSnapshot) -> PassiveRead {
        PassiveRead { pages: snapshot }
    }

    /// The replay position read at.
    pub fn position(&self) -> Lsn {
        self.pages.position()
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
    ) -> Result<btree::Range<'_, PassiveSnapshot>> {
        btree::range(&self.pages, table.root(), start, end)
    }

    /// The snapshot's pages.
    pub fn pages(&self) -> &PassiveSnapshot {
        &self.pages
    }
}
