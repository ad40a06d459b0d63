//! The engines, each behind the same two small traits: [`KvStore`] for the
//! key-value workloads and [`MailStore`] for the mail workloads. Every
//! engine runs with its defaults, plus the durability setting the issue
//! names; each module says which settings it touches and why.

mod fjall;
mod mailvault;
mod raw;
mod redb;
#[cfg(feature = "rocksdb")]
mod rocksdb;
mod sqlite;

use crate::data::{Delivery, MessageRow};
use crate::error::{BenchError, BenchResult};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Key-value records: one table of 16-byte keys.
pub trait KvStore: Send + Sync {
    /// Writes one record in its own transaction; returns once it is durable.
    fn put_durable(&self, key: &[u8], value: &[u8]) -> BenchResult<()>;
    /// Writes `count` records from `first` on (`value_len` bytes, version 0)
    /// in one transaction; returns once it is durable.
    fn put_batch(&self, first: u64, count: u64, value_len: usize) -> BenchResult<()>;
    /// Reads one record's value.
    fn get(&self, key: &[u8]) -> BenchResult<Option<Vec<u8>>>;
    /// Closes cleanly (checkpoints, flushes), as an application would at exit.
    fn close(self: Box<Self>) -> BenchResult<()>;
}

/// Mail: message metadata keyed by (mailbox, folder, UID) and bodies keyed
/// the same way.
pub trait MailStore: Send + Sync {
    /// Makes `mailbox`/`folder` ready for deliveries.
    fn create_folder(&self, mailbox: &str, folder: &str) -> BenchResult<()>;
    /// Stores one message (metadata and body) in one atomic transaction;
    /// returns once it is durable.
    fn deliver(&self, delivery: Delivery) -> BenchResult<()>;
    /// Stores several messages in one transaction (the folder workload's setup).
    fn deliver_batch(&self, deliveries: Vec<Delivery>) -> BenchResult<()>;
    /// A folder's metadata, in UID order.
    fn list(&self, mailbox: &str, folder: &str) -> BenchResult<Vec<MessageRow>>;
    /// One message's body.
    fn body(&self, mailbox: &str, folder: &str, uid: u32) -> BenchResult<Option<Vec<u8>>>;
    /// Closes cleanly.
    fn close(self: Box<Self>) -> BenchResult<()>;
}

/// The engines the comparison knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum EngineKind {
    /// mailvault: `txn::Database` tables for key-value, `mailbox::Store` for mail.
    Mailvault,
    /// SQLite (rusqlite, bundled), WAL, `synchronous=FULL`.
    SqliteFull,
    /// SQLite, WAL, `synchronous=NORMAL` (a commit may be lost at a power cut).
    SqliteNormal,
    /// redb, `Durability::Immediate`.
    Redb,
    /// fjall, write batches committed with `PersistMode::SyncAll`.
    Fjall,
    /// RocksDB, `WriteOptions::set_sync(true)` (needs the `rocksdb` feature).
    Rocksdb,
    /// The floor: pwrite + fdatasync on a preallocated file, no engine.
    Raw,
}

impl EngineKind {
    /// Every engine this binary was built with.
    pub fn available() -> Vec<EngineKind> {
        let mut all = vec![
            EngineKind::Mailvault,
            EngineKind::SqliteFull,
            EngineKind::SqliteNormal,
            EngineKind::Redb,
            EngineKind::Fjall,
        ];
        if cfg!(feature = "rocksdb") {
            all.push(EngineKind::Rocksdb);
        }
        all.push(EngineKind::Raw);
        all
    }

    /// The name used in commands, files and tables.
    pub fn name(self) -> &'static str {
        match self {
            EngineKind::Mailvault => "mailvault",
            EngineKind::SqliteFull => "sqlite-full",
            EngineKind::SqliteNormal => "sqlite-normal",
            EngineKind::Redb => "redb",
            EngineKind::Fjall => "fjall",
            EngineKind::Rocksdb => "rocksdb",
            EngineKind::Raw => "raw",
        }
    }

    /// A peer: an engine a user would pick instead (not mailvault, not the floor).
    /// SQLite with NORMAL is not durable at a power cut, so it is shown but not
    /// the peer the targets compare against.
    pub fn is_durable_peer(self) -> bool {
        matches!(
            self,
            EngineKind::SqliteFull | EngineKind::Redb | EngineKind::Fjall | EngineKind::Rocksdb
        )
    }

    /// Opens (creating) this engine's key-value store in `dir`. `capacity`
    /// is the number of records a workload may address (the raw floor
    /// preallocates a slot for each).
    pub fn open_kv(self, dir: &Path, capacity: u64, value_len: usize) -> BenchResult<Box<dyn KvStore>> {
        std::fs::create_dir_all(dir)?;
        Ok(match self {
            EngineKind::Mailvault => Box::new(mailvault::MailvaultKv::create(dir)?),
            EngineKind::SqliteFull => Box::new(sqlite::SqliteKv::create(dir, sqlite::Synchronous::Full)?),
            EngineKind::SqliteNormal => Box::new(sqlite::SqliteKv::create(dir, sqlite::Synchronous::Normal)?),
            EngineKind::Redb => Box::new(redb::RedbKv::create(dir)?),
            EngineKind::Fjall => Box::new(fjall::FjallKv::create(dir)?),
            EngineKind::Rocksdb => open_rocksdb_kv(dir)?,
            EngineKind::Raw => Box::new(raw::RawKv::create(dir, capacity, value_len)?),
        })
    }

    /// Opens (creating) this engine's mail store in `dir`. `capacity_bytes`
    /// is the most body bytes a workload delivers (the raw floor preallocates it).
    pub fn open_mail(self, dir: &Path, capacity_bytes: u64) -> BenchResult<Box<dyn MailStore>> {
        std::fs::create_dir_all(dir)?;
        Ok(match self {
            EngineKind::Mailvault => Box::new(mailvault::MailvaultMail::create(dir)?),
            EngineKind::SqliteFull => Box::new(sqlite::SqliteMail::create(dir, sqlite::Synchronous::Full)?),
            EngineKind::SqliteNormal => Box::new(sqlite::SqliteMail::create(dir, sqlite::Synchronous::Normal)?),
            EngineKind::Redb => Box::new(redb::RedbMail::create(dir)?),
            EngineKind::Fjall => Box::new(fjall::FjallMail::create(dir)?),
            EngineKind::Rocksdb => open_rocksdb_mail(dir)?,
            EngineKind::Raw => Box::new(raw::RawMail::create(dir, capacity_bytes)?),
        })
    }
}

#[cfg(feature = "rocksdb")]
fn open_rocksdb_kv(dir: &Path) -> BenchResult<Box<dyn KvStore>> {
    Ok(Box::new(rocksdb::RocksKv::create(dir)?))
}

#[cfg(feature = "rocksdb")]
fn open_rocksdb_mail(dir: &Path) -> BenchResult<Box<dyn MailStore>> {
    Ok(Box::new(rocksdb::RocksMail::create(dir)?))
}

#[cfg(not(feature = "rocksdb"))]
fn open_rocksdb_kv(_dir: &Path) -> BenchResult<Box<dyn KvStore>> {
    Err(rocksdb_missing())
}

#[cfg(not(feature = "rocksdb"))]
fn open_rocksdb_mail(_dir: &Path) -> BenchResult<Box<dyn MailStore>> {
    Err(rocksdb_missing())
}

#[cfg(not(feature = "rocksdb"))]
fn rocksdb_missing() -> BenchError {
    BenchError::Engine {
        engine: "rocksdb",
        message: "this binary was built without the `rocksdb` feature (cargo build --features rocksdb)".into(),
    }
}

/// The metadata key of a message in the key-value engines: ordered by
/// mailbox, folder, UID, so a folder is one prefix scan.
pub fn message_key(mailbox: &str, folder: &str, uid: u32) -> Vec<u8> {
    let mut key = folder_prefix(b'm', mailbox, folder);
    key.extend_from_slice(&uid.to_be_bytes());
    key
}

/// The body key of a message in the key-value engines.
pub fn body_key(mailbox: &str, folder: &str, uid: u32) -> Vec<u8> {
    let mut key = folder_prefix(b'b', mailbox, folder);
    key.extend_from_slice(&uid.to_be_bytes());
    key
}

/// `kind`, then the names each ended by a NUL (names hold no NUL), so one
/// folder's prefix is never the prefix of another's.
pub fn folder_prefix(kind: u8, mailbox: &str, folder: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(mailbox.len() + folder.len() + 7);
    key.push(kind);
    key.extend_from_slice(mailbox.as_bytes());
    key.push(0);
    key.extend_from_slice(folder.as_bytes());
    key.push(0);
    key
}

/// A message row as the key-value engines store it (20 bytes).
pub fn encode_row(row: &MessageRow) -> [u8; 24] {
    let mut out = [0u8; 24];
    out[..4].copy_from_slice(&row.uid.to_be_bytes());
    out[4..12].copy_from_slice(&row.internal_date.to_be_bytes());
    out[12..20].copy_from_slice(&row.size.to_be_bytes());
    out[20..].copy_from_slice(&row.flags.to_be_bytes());
    out
}

/// Decodes [`encode_row`]'s bytes.
pub fn decode_row(engine: &'static str, bytes: &[u8]) -> BenchResult<MessageRow> {
    let field = |range: std::ops::Range<usize>| {
        bytes.get(range).ok_or_else(|| BenchError::Engine {
            engine,
            message: format!("a message row of {} bytes, not 24", bytes.len()),
        })
    };
    let u32_at = |r| field(r).map(|b| u32::from_be_bytes(b.try_into().unwrap_or_default()));
    let u64_at = |r| field(r).map(|b| u64::from_be_bytes(b.try_into().unwrap_or_default()));
    Ok(MessageRow {
        uid: u32_at(0..4)?,
        internal_date: u64_at(4..12)? as i64,
        size: u64_at(12..20)?,
        flags: u32_at(20..24)?,
    })
}

/// The row a delivery stores.
pub fn row_of(delivery: &Delivery) -> MessageRow {
    MessageRow {
        uid: delivery.uid,
        internal_date: delivery.internal_date,
        size: delivery.body.len() as u64,
        flags: delivery.flags,
    }
}
