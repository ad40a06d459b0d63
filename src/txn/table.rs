//! Tables and the write transaction's API.
//!
//! The catalog is a B+tree at page 3 mapping a table's name to its root page
//! (u32, little-endian), then, for tables created since values trees came,
//! the root of its values tree (u32; see `btree::put_separating`). Roots
//! never move, so a [`Table`] handle stays valid until the table is dropped.

use super::Durability;
use super::combine::WriterGuard;
use super::write::TxnPages;
use crate::btree::{self, LongValue, Value};
use crate::pager::{DbError, FIRST_DATA_PAGE, PageNo, PageRead, Pager, Result};
use std::ops::Bound;
use std::sync::Arc;

/// Longest table name, in bytes.
pub const MAX_TABLE_NAME: usize = 255;

/// A handle on a table: its name and root page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    name: String,
    root: PageNo,
    /// Where its values of a sixteenth to a quarter page go; None in a
    /// table created before values trees, which keeps them inline.
    values: Option<PageNo>,
}

impl Table {
    /// The table's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The table's root page.
    pub fn root(&self) -> PageNo {
        self.root
    }

    /// The root page of the table's values tree, if it has one.
    pub fn values_root(&self) -> Option<PageNo> {
        self.values
    }

    /// The catalog entry: the root, then the values tree's root.
    fn encode(&self) -> Vec<u8> {
        let mut entry = self.root.to_le_bytes().to_vec();
        if let Some(values) = self.values {
            entry.extend_from_slice(&values.to_le_bytes());
        }
        entry
    }
}

pub(crate) fn check_name(name: &str) -> Result<()> {
    if name.is_empty() || name.len() > MAX_TABLE_NAME {
        return Err(DbError::InvalidArgument(format!(
            "table names are 1 to {MAX_TABLE_NAME} bytes, not {}",
            name.len()
        )));
    }
    Ok(())
}

/// Looks a table up in the catalog of `store`.
pub(crate) fn lookup<S: PageRead + ?Sized>(store: &S, name: &str) -> Result<Table> {
    check_name(name)?;
    let page_at = |entry: &[u8], at: usize| {
        entry
            .get(at..at + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    match btree::get_bytes(store, FIRST_DATA_PAGE, name.as_bytes())? {
        Some(entry) if matches!(entry.len(), 4 | 8) => {
            let root = page_at(&entry, 0).unwrap_or(0);
            let values = page_at(&entry, 4);
            // Page FIRST_DATA_PAGE is the catalog's own root.
            let bad_page = |p: PageNo| p <= FIRST_DATA_PAGE;
            if bad_page(root) || values.is_some_and(|v| bad_page(v) || v == root) {
                return Err(catalog_damage(
                    store,
                    format!("catalog entry for {name:?} names pages {root} and {values:?}"),
                ));
            }
            Ok(Table {
                name: name.to_string(),
                root,
                values,
            })
        }
        Some(bad) => Err(catalog_damage(
            store,
            format!(
                "catalog entry for {name:?} holds {} bytes, not one or two page numbers",
                bad.len()
            ),
        )),
        None => Err(DbError::NoSuchTable { name: name.to_string() }),
    }
}

fn catalog_damage<S: PageRead + ?Sized>(store: &S, reason: String) -> DbError {
    let offset = u64::from(FIRST_DATA_PAGE) * store.page_size() as u64;
    DbError::corrupt_page(store.file_path(), FIRST_DATA_PAGE, offset, reason)
}

/// The names of every table in the catalog of `store`.
pub(crate) fn list<S: PageRead + ?Sized>(store: &S) -> Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in btree::range(store, FIRST_DATA_PAGE, Bound::Unbounded, Bound::Unbounded)? {
        let (key, _) = entry?;
        names.push(String::from_utf8_lossy(&key).into_owned());
    }
    Ok(names)
}

/// The one write transaction. Changes are private until [`WriteTxn::commit`];
/// dropping it rolls back.
pub struct WriteTxn<'db> {
    pager: &'db Arc<Pager>,
    /// None when a combiner holds the lock for it.
    guard: Option<WriterGuard<'db>>,
    pages: TxnPages,
    /// A write failed midway: the transaction can only roll back.
    broken: bool,
}

impl<'db> WriteTxn<'db> {
    pub(crate) fn new(pager: &'db Arc<Pager>, guard: WriterGuard<'db>) -> Self {
        WriteTxn {
            pager,
            guard: Some(guard),
            pages: TxnPages::new(pager.clone()),
            broken: false,
        }
    }

    /// A transaction run by a combiner, which holds the writer lock.
    pub(crate) fn unguarded(pager: &'db Arc<Pager>) -> Self {
        WriteTxn {
            pager,
            guard: None,
            pages: TxnPages::new(pager.clone()),
            broken: false,
        }
    }

    /// Appends the commit record without waiting; returns its end (None for
    /// a transaction that changed nothing).
    pub(crate) fn append(mut self) -> Result<Option<crate::log::Lsn>> {
        self.usable()?;
        let pages = std::mem::replace(&mut self.pages, TxnPages::spent(self.pager.clone()));
        pages.commit()
    }

    /// The transaction's view of the pages: its own changes over the last
    /// commit (for layers that read through the B+tree functions).
    pub fn pages(&self) -> &TxnPages {
        &self.pages
    }

    pub(crate) fn pages_mut(&mut self) -> &mut TxnPages {
        &mut self.pages
    }

    /// A failed write leaves the trees in an unknown state, so the
    /// transaction can only roll back; arguments refused up front change
    /// nothing and leave it usable.
    fn track<T>(&mut self, result: Result<T>) -> Result<T> {
        if let Err(e) = &result
            && !matches!(
                e,
                DbError::KeyTooLarge { .. } | DbError::ValueTooLarge { .. } | DbError::InvalidArgument(_)
            )
        {
            self.broken = true;
        }
        result
    }

    fn usable(&self) -> Result<()> {
        if self.broken {
            return Err(DbError::InvalidArgument(
                "an earlier write of this transaction failed; it can only roll back".into(),
            ));
        }
        Ok(())
    }

    /// Creates an empty table.
    pub fn create_table(&mut self, name: &str) -> Result<Table> {
        self.usable()?;
        check_name(name)?;
        match lookup(&self.pages, name) {
            Ok(_) => return Err(DbError::TableExists { name: name.to_string() }),
            Err(DbError::NoSuchTable { .. }) => {}
            Err(e) => return Err(e),
        }
        let result = btree::create(&mut self.pages).and_then(|root| {
            let table = Table {
                name: name.to_string(),
                root,
                values: Some(btree::create(&mut self.pages)?),
            };
            btree::put(&mut self.pages, FIRST_DATA_PAGE, name.as_bytes(), &table.encode())?;
            Ok(table)
        });
        self.track(result)
    }

    /// The table named `name`.
    pub fn open_table(&self, name: &str) -> Result<Table> {
        lookup(&self.pages, name)
    }

    /// Removes a table and frees its pages.
    pub fn drop_table(&mut self, name: &str) -> Result<()> {
        self.usable()?;
        let table = lookup(&self.pages, name)?;
        let dropped = match table.values {
            Some(values) => btree::drop_with_values(&mut self.pages, table.root, values),
            None => btree::drop_tree(&mut self.pages, table.root),
        };
        let result = dropped.and_then(|_| btree::delete(&mut self.pages, FIRST_DATA_PAGE, name.as_bytes()).map(|_| ()));
        self.track(result)
    }

    /// Every table's name, in order.
    pub fn list_tables(&self) -> Result<Vec<String>> {
        list(&self.pages)
    }

    /// Sets `key` to `value` (long values are stored out of the leaf, and
    /// values of a sixteenth to a quarter page in the table's values tree).
    pub fn put(&mut self, table: &Table, key: &[u8], value: &[u8]) -> Result<()> {
        self.usable()?;
        let result = match table.values {
            Some(values) => btree::put_separating(&mut self.pages, table.root, values, key, value),
            None => btree::put(&mut self.pages, table.root, key, value),
        };
        let result = result.map(|_| ());
        self.track(result)
    }

    /// Sets `key` to `len` bytes read from `reader`, without holding them all.
    pub fn put_stream(&mut self, table: &Table, key: &[u8], reader: &mut dyn std::io::Read, len: u64) -> Result<()> {
        self.usable()?;
        let role = btree::Role::Table(table.values);
        let result = btree::put_stream_in(&mut self.pages, table.root, key, reader, len, role).map(|_| ());
        self.track(result)
    }

    /// Sets `key` to the value built in `value`, taking over its pages
    /// (see [`btree::ValueBuilder`]): the same as [`WriteTxn::put`] of its bytes.
    pub fn put_built(&mut self, table: &Table, key: &[u8], value: btree::ValueBuilder) -> Result<()> {
        self.usable()?;
        let role = btree::Role::Table(table.values);
        let result = btree::put_built_in(&mut self.pages, table.root, key, value, role).map(|_| ());
        self.track(result)
    }

    /// Removes `key`; returns whether it was there.
    pub fn delete(&mut self, table: &Table, key: &[u8]) -> Result<bool> {
        self.usable()?;
        let result = match table.values {
            Some(values) => btree::delete_with_values(&mut self.pages, table.root, values, key),
            None => btree::delete(&mut self.pages, table.root, key),
        };
        self.track(result)
    }

    /// The value of `key`, read whole.
    pub fn get(&self, table: &Table, key: &[u8]) -> Result<Option<Vec<u8>>> {
        btree::get_bytes(&self.pages, table.root, key)
    }

    /// The value of `key` as stored (a long value is not read).
    pub fn get_value(&self, table: &Table, key: &[u8]) -> Result<Option<Value>> {
        btree::get(&self.pages, table.root, key)
    }

    /// Reads part of a long value.
    pub fn read_long(&self, value: &LongValue, offset: u64, buf: &mut [u8]) -> Result<usize> {
        btree::read_long(&self.pages, value, offset, buf)
    }

    /// Entries with keys in the given bounds, in order (reversible).
    pub fn range<'t>(
        &'t self,
        table: &Table,
        start: Bound<&[u8]>,
        end: Bound<&[u8]>,
    ) -> Result<btree::Range<'t, TxnPages>> {
        btree::range(&self.pages, table.root, start, end)
    }

    /// Commits durably: returns once the transaction is on disk.
    pub fn commit(self) -> Result<()> {
        self.commit_with(Durability::Durable)
    }

    /// Commits with the given durability. The writer lock is released before
    /// the durability wait, so the next writer's commit joins the same fsync.
    pub fn commit_with(mut self, durability: Durability) -> Result<()> {
        self.usable()?;
        let pages = std::mem::replace(&mut self.pages, TxnPages::spent(self.pager.clone()));
        let end = pages.commit()?;
        drop(self.guard.take());
        match end {
            Some(end) => self.pager.finish_commit(end, durability == Durability::Durable),
            None => Ok(()),
        }
    }

    /// Discards every change.
    pub fn rollback(self) {}
}

#[cfg(test)]
mod tests {
    use crate::btree;
    use crate::pager::FIRST_DATA_PAGE;
    use crate::txn::{Database, DbOptions};
    use crate::vfs::SimVfs;

    /// A table from before values trees (a 4-byte catalog entry) keeps its
    /// values inline; a damaged entry is a typed error naming the catalog.
    #[test]
    fn old_catalog_entries_keep_values_inline_and_bad_ones_are_refused() {
        let opts = DbOptions {
            page_size: 4096,
            ..DbOptions::default()
        };
        let db = Database::create(SimVfs::new(3), "/db", opts).unwrap();
        let mut tx = db.begin_write();
        let root = btree::create(tx.pages_mut()).unwrap();
        btree::put(tx.pages_mut(), FIRST_DATA_PAGE, b"old", &root.to_le_bytes()).unwrap();
        btree::put(tx.pages_mut(), FIRST_DATA_PAGE, b"bad", &[9, 0, 0, 0, 9, 0, 0, 0]).unwrap();
        let old = tx.open_table("old").unwrap();
        assert_eq!(old.values_root(), None);
        tx.put(&old, b"k", &[7; 700]).unwrap();
        let err = tx.open_table("bad").unwrap_err();
        assert!(err.to_string().contains("names pages 9 and Some(9)"), "{err}");
        tx.commit().unwrap();
        let rx = db.begin_read();
        assert_eq!(rx.get(&old, b"k").unwrap(), Some(vec![7; 700]));
        let report = btree::verify(rx.pages(), root).unwrap();
        assert_eq!((report.entries, report.separated_values), (1, 0));
        let new = {
            let mut tx = db.begin_write();
            let t = tx.create_table("new").unwrap();
            tx.put(&t, b"k", &[7; 700]).unwrap();
            tx.commit().unwrap();
            t
        };
        let rx = db.begin_read();
        let report = btree::verify_with_values(rx.pages(), new.root(), new.values_root().unwrap()).unwrap();
        assert_eq!((report.entries, report.separated_values), (1, 1));
    }
}
