//! mailvault with its defaults: `txn::Database` with one table for the
//! key-value workloads (`Database::write`, the API that combines concurrent
//! writers, each its own durable commit), and `mailbox::Store` for mail
//! (which compresses bodies with zstd by default).

use super::{KvStore, MailStore};
use crate::data::{Delivery, MessageRow, record_key, record_value};
use crate::error::{BenchError, BenchResult, engine_error};
use mailvault::mailbox::{AppendOptions, Flags, MailView, Quota, Store, StoreOptions, UidSet};
use mailvault::txn::{Database, DbOptions, Durability, Table};
use mailvault::vfs::OsVfs;
use std::path::Path;
use std::sync::Arc;

const NAME: &str = "mailvault";

pub struct MailvaultKv {
    db: Database,
    table: Table,
}

impl MailvaultKv {
    pub fn create(dir: &Path) -> BenchResult<MailvaultKv> {
        let db = Database::create(Arc::new(OsVfs), dir.join("db"), DbOptions::default()).map_err(engine_error(NAME))?;
        let table = db
            .write(Durability::Durable, |tx| tx.create_table("kv"))
            .map_err(engine_error(NAME))?;
        Ok(MailvaultKv { db, table })
    }
}

impl KvStore for MailvaultKv {
    fn put_durable(&self, key: &[u8], value: &[u8]) -> BenchResult<()> {
        let (table, key, value) = (self.table.clone(), key.to_vec(), value.to_vec());
        self.db
            .write(Durability::Durable, move |tx| tx.put(&table, &key, &value))
            .map_err(engine_error(NAME))
    }

    fn put_batch(&self, first: u64, count: u64, value_len: usize) -> BenchResult<()> {
        let table = self.table.clone();
        self.db
            .write(Durability::Durable, move |tx| {
                for index in first..first + count {
                    tx.put(&table, &record_key(index), &record_value(index, 0, value_len))?;
                }
                Ok(())
            })
            .map_err(engine_error(NAME))
    }

    fn get(&self, key: &[u8]) -> BenchResult<Option<Vec<u8>>> {
        self.db.begin_read().get(&self.table, key).map_err(engine_error(NAME))
    }

    fn close(self: Box<Self>) -> BenchResult<()> {
        self.db.close().map_err(engine_error(NAME))
    }
}

pub struct MailvaultMail {
    store: Store,
}

impl MailvaultMail {
    pub fn create(dir: &Path) -> BenchResult<MailvaultMail> {
        let store =
            Store::create(Arc::new(OsVfs), dir.join("store"), StoreOptions::default()).map_err(engine_error(NAME))?;
        Ok(MailvaultMail { store })
    }
}

impl MailStore for MailvaultMail {
    fn create_folder(&self, mailbox: &str, folder: &str) -> BenchResult<()> {
        let exists = self.store.read().mailbox_info(mailbox).is_ok();
        if !exists {
            self.store
                .create_mailbox(mailbox, Quota::default())
                .map_err(engine_error(NAME))?;
        }
        if folder != "INBOX" {
            self.store.create_folder(mailbox, folder).map_err(engine_error(NAME))?;
        }
        Ok(())
    }

    fn deliver(&self, delivery: Delivery) -> BenchResult<()> {
        let options = append_options(&delivery);
        let uid = self
            .store
            .append(&delivery.mailbox, &delivery.folder, &options, &delivery.body)
            .map_err(engine_error(NAME))?;
        expect_uid(&delivery, uid)
    }

    fn deliver_batch(&self, deliveries: Vec<Delivery>) -> BenchResult<()> {
        // Bodies are compressed before the transaction, as `Store::append` does.
        let mut prepared = Vec::with_capacity(deliveries.len());
        for delivery in deliveries {
            let body = self
                .store
                .prepare_body(&mut &delivery.body[..])
                .map_err(engine_error(NAME))?;
            prepared.push((
                append_options(&delivery),
                delivery.mailbox,
                delivery.folder,
                delivery.uid,
                body,
            ));
        }
        let uids_wrong = self
            .store
            .transaction(move |tx| {
                let mut wrong = Vec::new();
                for (options, mailbox, folder, uid, body) in prepared {
                    let given = tx.append_prepared(&mailbox, &folder, &options, body)?;
                    if given != uid {
                        wrong.push((uid, given));
                    }
                }
                Ok(wrong)
            })
            .map_err(engine_error(NAME))?;
        match uids_wrong.first() {
            None => Ok(()),
            Some((expected, given)) => Err(BenchError::Engine {
                engine: NAME,
                message: format!("UID {given} given where the workload expected {expected}"),
            }),
        }
    }

    fn list(&self, mailbox: &str, folder: &str) -> BenchResult<Vec<MessageRow>> {
        let messages = self
            .store
            .read()
            .fetch(mailbox, folder, &UidSet::all())
            .map_err(engine_error(NAME))?;
        Ok(messages
            .into_iter()
            .map(|m| MessageRow {
                uid: m.uid,
                internal_date: m.internal_date,
                size: m.size,
                flags: m.flags.bits(),
            })
            .collect())
    }

    fn body(&self, mailbox: &str, folder: &str, uid: u32) -> BenchResult<Option<Vec<u8>>> {
        match self.store.read().read_body(mailbox, folder, uid) {
            Ok(body) => Ok(Some(body)),
            Err(mailvault::mailbox::MailError::NoSuchMessage { .. }) => Ok(None),
            Err(e) => Err(engine_error(NAME)(e)),
        }
    }

    fn close(self: Box<Self>) -> BenchResult<()> {
        self.store.close().map_err(engine_error(NAME))
    }
}

fn append_options(delivery: &Delivery) -> AppendOptions {
    AppendOptions {
        internal_date: delivery.internal_date,
        flags: Flags::from_bits(delivery.flags).unwrap_or_default(),
        keywords: Vec::new(),
    }
}

fn expect_uid(delivery: &Delivery, uid: u32) -> BenchResult<()> {
    if uid == delivery.uid {
        Ok(())
    } else {
        Err(BenchError::Engine {
            engine: NAME,
            message: format!(
                "UID {uid} given in {}/{} where the workload expected {}",
                delivery.mailbox, delivery.folder, delivery.uid
            ),
        })
    }
}
