//! RocksDB with its defaults (`DB::open_default`) and `sync=true` on every
//! write (the WAL is fsynced before the write returns). One key space for
//! the key-value workloads; for mail, composite keys in the default column
//! family (metadata and bodies of a folder together).

use super::{KvStore, MailStore, body_key, decode_row, encode_row, folder_prefix, message_key, row_of};
use crate::data::{Delivery, MessageRow, record_key, record_value};
use crate::error::{BenchResult, engine_error};
use rocksdb::{DB, Direction, IteratorMode, WriteBatch, WriteOptions};
use std::path::Path;

const NAME: &str = "rocksdb";

struct Rocks {
    db: DB,
    sync: WriteOptions,
}

impl Rocks {
    fn create(dir: &Path) -> BenchResult<Rocks> {
        let db = DB::open_default(dir.join("rocksdb")).map_err(engine_error(NAME))?;
        let mut sync = WriteOptions::default();
        sync.set_sync(true);
        Ok(Rocks { db, sync })
    }

    fn commit(&self, batch: WriteBatch) -> BenchResult<()> {
        self.db.write_opt(batch, &self.sync).map_err(engine_error(NAME))
    }

    fn get(&self, key: &[u8]) -> BenchResult<Option<Vec<u8>>> {
        self.db.get(key).map_err(engine_error(NAME))
    }

    fn close(self) -> BenchResult<()> {
        self.db.flush_wal(true).map_err(engine_error(NAME))
    }
}

pub struct RocksKv {
    inner: Rocks,
}

impl RocksKv {
    pub fn create(dir: &Path) -> BenchResult<RocksKv> {
        Ok(RocksKv {
            inner: Rocks::create(dir)?,
        })
    }
}

impl KvStore for RocksKv {
    fn put_durable(&self, key: &[u8], value: &[u8]) -> BenchResult<()> {
        self.inner
            .db
            .put_opt(key, value, &self.inner.sync)
            .map_err(engine_error(NAME))
    }

    fn put_batch(&self, first: u64, count: u64, value_len: usize) -> BenchResult<()> {
        let mut batch = WriteBatch::default();
        for index in first..first + count {
            batch.put(record_key(index), record_value(index, 0, value_len));
        }
        self.inner.commit(batch)
    }

    fn get(&self, key: &[u8]) -> BenchResult<Option<Vec<u8>>> {
        self.inner.get(key)
    }

    fn close(self: Box<Self>) -> BenchResult<()> {
        self.inner.close()
    }
}

pub struct RocksMail {
    inner: Rocks,
}

impl RocksMail {
    pub fn create(dir: &Path) -> BenchResult<RocksMail> {
        Ok(RocksMail {
            inner: Rocks::create(dir)?,
        })
    }
}

fn add_delivery(batch: &mut WriteBatch, d: &Delivery) {
    batch.put(message_key(&d.mailbox, &d.folder, d.uid), encode_row(&row_of(d)));
    batch.put(body_key(&d.mailbox, &d.folder, d.uid), &d.body);
}

impl MailStore for RocksMail {
    fn create_folder(&self, _mailbox: &str, _folder: &str) -> BenchResult<()> {
        Ok(())
    }

    fn deliver(&self, delivery: Delivery) -> BenchResult<()> {
        let mut batch = WriteBatch::default();
        add_delivery(&mut batch, &delivery);
        self.inner.commit(batch)
    }

    fn deliver_batch(&self, deliveries: Vec<Delivery>) -> BenchResult<()> {
        let mut batch = WriteBatch::default();
        for delivery in &deliveries {
            add_delivery(&mut batch, delivery);
        }
        self.inner.commit(batch)
    }

    fn list(&self, mailbox: &str, folder: &str) -> BenchResult<Vec<MessageRow>> {
        let prefix = folder_prefix(b'm', mailbox, folder);
        let mut rows = Vec::new();
        // No prefix extractor is configured by default, so the scan stops itself.
        for entry in self.inner.db.iterator(IteratorMode::From(&prefix, Direction::Forward)) {
            let (key, value) = entry.map_err(engine_error(NAME))?;
            if !key.starts_with(&prefix) {
                break;
            }
            rows.push(decode_row(NAME, &value)?);
        }
        Ok(rows)
    }

    fn body(&self, mailbox: &str, folder: &str, uid: u32) -> BenchResult<Option<Vec<u8>>> {
        self.inner.get(&body_key(mailbox, folder, uid))
    }

    fn close(self: Box<Self>) -> BenchResult<()> {
        self.inner.close()
    }
}
