//! fjall with its defaults; every write is a write batch committed with
//! `PersistMode::SyncAll` (the journal is fsynced before the commit
//! returns). One keyspace for the key-value workloads; for mail, one
//! keyspace with composite keys (metadata and bodies of a folder together).

use super::{KvStore, MailStore, body_key, decode_row, encode_row, folder_prefix, message_key, row_of};
use crate::data::{Delivery, MessageRow, record_key, record_value};
use crate::error::{BenchResult, engine_error};
use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};
use std::path::Path;

const NAME: &str = "fjall";

struct Fjall {
    db: Database,
    keyspace: Keyspace,
}

impl Fjall {
    fn create(dir: &Path, keyspace: &str) -> BenchResult<Fjall> {
        let db = Database::builder(dir.join("fjall"))
            .open()
            .map_err(engine_error(NAME))?;
        let keyspace = db
            .keyspace(keyspace, KeyspaceCreateOptions::default)
            .map_err(engine_error(NAME))?;
        Ok(Fjall { db, keyspace })
    }

    /// Commits the pairs atomically and durably.
    fn commit(&self, pairs: impl IntoIterator<Item = (Vec<u8>, Vec<u8>)>) -> BenchResult<()> {
        let mut batch = self.db.batch().durability(Some(PersistMode::SyncAll));
        for (key, value) in pairs {
            batch.insert(&self.keyspace, key, value);
        }
        batch.commit().map_err(engine_error(NAME))
    }

    fn get(&self, key: &[u8]) -> BenchResult<Option<Vec<u8>>> {
        Ok(self.keyspace.get(key).map_err(engine_error(NAME))?.map(|v| v.to_vec()))
    }

    fn close(self) -> BenchResult<()> {
        self.db.persist(PersistMode::SyncAll).map_err(engine_error(NAME))
    }
}

pub struct FjallKv {
    inner: Fjall,
}

impl FjallKv {
    pub fn create(dir: &Path) -> BenchResult<FjallKv> {
        Ok(FjallKv {
            inner: Fjall::create(dir, "kv")?,
        })
    }
}

impl KvStore for FjallKv {
    fn put_durable(&self, key: &[u8], value: &[u8]) -> BenchResult<()> {
        self.inner.commit([(key.to_vec(), value.to_vec())])
    }

    fn put_batch(&self, first: u64, count: u64, value_len: usize) -> BenchResult<()> {
        self.inner
            .commit((first..first + count).map(|index| (record_key(index).to_vec(), record_value(index, 0, value_len))))
    }

    fn get(&self, key: &[u8]) -> BenchResult<Option<Vec<u8>>> {
        self.inner.get(key)
    }

    fn close(self: Box<Self>) -> BenchResult<()> {
        self.inner.close()
    }
}

pub struct FjallMail {
    inner: Fjall,
}

impl FjallMail {
    pub fn create(dir: &Path) -> BenchResult<FjallMail> {
        Ok(FjallMail {
            inner: Fjall::create(dir, "mail")?,
        })
    }
}

fn delivery_pairs(d: Delivery) -> [(Vec<u8>, Vec<u8>); 2] {
    let row = encode_row(&row_of(&d)).to_vec();
    [
        (message_key(&d.mailbox, &d.folder, d.uid), row),
        (body_key(&d.mailbox, &d.folder, d.uid), d.body),
    ]
}

impl MailStore for FjallMail {
    fn create_folder(&self, _mailbox: &str, _folder: &str) -> BenchResult<()> {
        Ok(())
    }

    fn deliver(&self, delivery: Delivery) -> BenchResult<()> {
        self.inner.commit(delivery_pairs(delivery))
    }

    fn deliver_batch(&self, deliveries: Vec<Delivery>) -> BenchResult<()> {
        self.inner.commit(deliveries.into_iter().flat_map(delivery_pairs))
    }

    fn list(&self, mailbox: &str, folder: &str) -> BenchResult<Vec<MessageRow>> {
        let mut rows = Vec::new();
        for entry in self.inner.keyspace.prefix(folder_prefix(b'm', mailbox, folder)) {
            let value = entry.value().map_err(engine_error(NAME))?;
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
