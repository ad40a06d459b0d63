//! redb with its defaults and `Durability::Immediate` (its default too, set
//! explicitly so the run says what it measures). One table of byte keys for
//! the key-value workloads; for mail, one table whose composite keys put a
//! folder's metadata together and its bodies together.

use super::{KvStore, MailStore, body_key, decode_row, encode_row, folder_prefix, message_key, row_of};
use crate::data::{Delivery, MessageRow, record_key, record_value};
use crate::error::{BenchError, BenchResult};
use redb::{Database, Durability, ReadableDatabase, TableDefinition, WriteTransaction};
use std::path::Path;

const NAME: &str = "redb";
const KV: TableDefinition<&[u8], &[u8]> = TableDefinition::new("kv");
const MAIL: TableDefinition<&[u8], &[u8]> = TableDefinition::new("mail");

fn redb_error(e: impl Into<redb::Error>) -> BenchError {
    BenchError::Engine {
        engine: NAME,
        message: e.into().to_string(),
    }
}

fn create(dir: &Path, table: TableDefinition<&[u8], &[u8]>) -> BenchResult<Database> {
    let db = Database::create(dir.join("redb.db")).map_err(redb_error)?;
    // Reads before the first write need the table to exist.
    write(&db, |tx| tx.open_table(table).map(drop).map_err(redb_error))?;
    Ok(db)
}

/// One durable write transaction.
fn write(db: &Database, change: impl FnOnce(&WriteTransaction) -> BenchResult<()>) -> BenchResult<()> {
    let mut tx = db.begin_write().map_err(redb_error)?;
    tx.set_durability(Durability::Immediate).map_err(redb_error)?;
    change(&tx)?;
    tx.commit().map_err(redb_error)
}

fn get(db: &Database, table: TableDefinition<&[u8], &[u8]>, key: &[u8]) -> BenchResult<Option<Vec<u8>>> {
    let tx = db.begin_read().map_err(redb_error)?;
    let table = tx.open_table(table).map_err(redb_error)?;
    Ok(table.get(key).map_err(redb_error)?.map(|v| v.value().to_vec()))
}

pub struct RedbKv {
    db: Database,
}

impl RedbKv {
    pub fn create(dir: &Path) -> BenchResult<RedbKv> {
        Ok(RedbKv { db: create(dir, KV)? })
    }
}

impl KvStore for RedbKv {
    fn put_durable(&self, key: &[u8], value: &[u8]) -> BenchResult<()> {
        write(&self.db, |tx| {
            let mut table = tx.open_table(KV).map_err(redb_error)?;
            table.insert(key, value).map_err(redb_error)?;
            Ok(())
        })
    }

    fn put_batch(&self, first: u64, count: u64, value_len: usize) -> BenchResult<()> {
        write(&self.db, |tx| {
            let mut table = tx.open_table(KV).map_err(redb_error)?;
            for index in first..first + count {
                let value = record_value(index, 0, value_len);
                table.insert(&record_key(index)[..], &value[..]).map_err(redb_error)?;
            }
            Ok(())
        })
    }

    fn get(&self, key: &[u8]) -> BenchResult<Option<Vec<u8>>> {
        get(&self.db, KV, key)
    }

    fn close(self: Box<Self>) -> BenchResult<()> {
        drop(self.db);
        Ok(())
    }
}

pub struct RedbMail {
    db: Database,
}

impl RedbMail {
    pub fn create(dir: &Path) -> BenchResult<RedbMail> {
        Ok(RedbMail { db: create(dir, MAIL)? })
    }
}

fn insert_delivery(table: &mut redb::Table<'_, &[u8], &[u8]>, d: &Delivery) -> BenchResult<()> {
    let row = encode_row(&row_of(d));
    table
        .insert(&message_key(&d.mailbox, &d.folder, d.uid)[..], &row[..])
        .map_err(redb_error)?;
    table
        .insert(&body_key(&d.mailbox, &d.folder, d.uid)[..], &d.body[..])
        .map_err(redb_error)?;
    Ok(())
}

impl MailStore for RedbMail {
    fn create_folder(&self, _mailbox: &str, _folder: &str) -> BenchResult<()> {
        Ok(())
    }

    fn deliver(&self, delivery: Delivery) -> BenchResult<()> {
        write(&self.db, |tx| {
            let mut table = tx.open_table(MAIL).map_err(redb_error)?;
            insert_delivery(&mut table, &delivery)
        })
    }

    fn deliver_batch(&self, deliveries: Vec<Delivery>) -> BenchResult<()> {
        write(&self.db, |tx| {
            let mut table = tx.open_table(MAIL).map_err(redb_error)?;
            deliveries.iter().try_for_each(|d| insert_delivery(&mut table, d))
        })
    }

    fn list(&self, mailbox: &str, folder: &str) -> BenchResult<Vec<MessageRow>> {
        let tx = self.db.begin_read().map_err(redb_error)?;
        let table = tx.open_table(MAIL).map_err(redb_error)?;
        let prefix = folder_prefix(b'm', mailbox, folder);
        let mut rows = Vec::new();
        for entry in table.range(&prefix[..]..).map_err(redb_error)? {
            let (key, value) = entry.map_err(redb_error)?;
            if !key.value().starts_with(&prefix) {
                break;
            }
            rows.push(decode_row(NAME, value.value())?);
        }
        Ok(rows)
    }

    fn body(&self, mailbox: &str, folder: &str, uid: u32) -> BenchResult<Option<Vec<u8>>> {
        get(&self.db, MAIL, &body_key(mailbox, folder, uid))
    }

    fn close(self: Box<Self>) -> BenchResult<()> {
        drop(self.db);
        Ok(())
    }
}
