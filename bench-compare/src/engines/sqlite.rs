//! SQLite through rusqlite's bundled build, in WAL mode with
//! `synchronous=FULL` (durable at every commit) or NORMAL (the common
//! setting, which may lose the last commits at a power cut). Writes go
//! through one connection behind a mutex, as an application does rather
//! than have its writers spin on SQLITE_BUSY; reads take a connection of
//! their own from a pool, so they run in parallel.

use super::{KvStore, MailStore};
use crate::data::{Delivery, MessageRow, record_key, record_value};
use crate::error::{BenchResult, engine_error};
use parking_lot::Mutex;
use rusqlite::{Connection, OptionalExtension, params};
use std::path::{Path, PathBuf};

/// The `synchronous` pragma of the run.
#[derive(Debug, Clone, Copy)]
pub enum Synchronous {
    Full,
    Normal,
}

impl Synchronous {
    fn engine_name(self) -> &'static str {
        match self {
            Synchronous::Full => "sqlite-full",
            Synchronous::Normal => "sqlite-normal",
        }
    }

    fn pragma(self) -> &'static str {
        match self {
            Synchronous::Full => "FULL",
            Synchronous::Normal => "NORMAL",
        }
    }
}

/// One writer connection and a pool of reader connections on one file.
struct Connections {
    path: PathBuf,
    sync: Synchronous,
    writer: Mutex<Connection>,
    readers: Mutex<Vec<Connection>>,
}

impl Connections {
    fn open(dir: &Path, sync: Synchronous, schema: &str) -> BenchResult<Connections> {
        let path = dir.join("sqlite.db");
        let writer = open_connection(&path, sync)?;
        writer.execute_batch(schema).map_err(engine_error(sync.engine_name()))?;
        Ok(Connections {
            path,
            sync,
            writer: Mutex::new(writer),
            readers: Mutex::new(Vec::new()),
        })
    }

    fn name(&self) -> &'static str {
        self.sync.engine_name()
    }

    fn read<R>(&self, query: impl FnOnce(&Connection) -> rusqlite::Result<R>) -> BenchResult<R> {
        let pooled = self.readers.lock().pop();
        let connection = match pooled {
            Some(c) => c,
            None => open_connection(&self.path, self.sync)?,
        };
        let result = query(&connection).map_err(engine_error(self.name()));
        self.readers.lock().push(connection);
        result
    }

    fn write<R>(&self, change: impl FnOnce(&mut Connection) -> rusqlite::Result<R>) -> BenchResult<R> {
        change(&mut self.writer.lock()).map_err(engine_error(self.name()))
    }

    fn close(self) -> BenchResult<()> {
        let name = self.name();
        for reader in self.readers.into_inner() {
            reader.close().map_err(|(_, e)| engine_error(name)(e))?;
        }
        // The last connection to close checkpoints the WAL into the database.
        self.writer.into_inner().close().map_err(|(_, e)| engine_error(name)(e))
    }
}

fn open_connection(path: &Path, sync: Synchronous) -> BenchResult<Connection> {
    let connection = Connection::open(path).map_err(engine_error(sync.engine_name()))?;
    connection
        .pragma_update(None, "journal_mode", "WAL")
        .map_err(engine_error(sync.engine_name()))?;
    connection
        .pragma_update(None, "synchronous", sync.pragma())
        .map_err(engine_error(sync.engine_name()))?;
    Ok(connection)
}

pub struct SqliteKv {
    connections: Connections,
}

impl SqliteKv {
    pub fn create(dir: &Path, sync: Synchronous) -> BenchResult<SqliteKv> {
        let schema = "CREATE TABLE IF NOT EXISTS kv (k BLOB PRIMARY KEY, v BLOB NOT NULL) WITHOUT ROWID;";
        Ok(SqliteKv {
            connections: Connections::open(dir, sync, schema)?,
        })
    }
}

impl KvStore for SqliteKv {
    fn put_durable(&self, key: &[u8], value: &[u8]) -> BenchResult<()> {
        self.connections.write(|c| {
            c.prepare_cached("INSERT OR REPLACE INTO kv (k, v) VALUES (?1, ?2)")?
                .execute(params![key, value])
                .map(drop)
        })
    }

    fn put_batch(&self, first: u64, count: u64, value_len: usize) -> BenchResult<()> {
        self.connections.write(|c| {
            let tx = c.transaction()?;
            {
                let mut insert = tx.prepare_cached("INSERT OR REPLACE INTO kv (k, v) VALUES (?1, ?2)")?;
                for index in first..first + count {
                    insert.execute(params![&record_key(index)[..], record_value(index, 0, value_len)])?;
                }
            }
            tx.commit()
        })
    }

    fn get(&self, key: &[u8]) -> BenchResult<Option<Vec<u8>>> {
        self.connections.read(|c| {
            c.prepare_cached("SELECT v FROM kv WHERE k = ?1")?
                .query_row([key], |row| row.get(0))
                .optional()
        })
    }

    fn close(self: Box<Self>) -> BenchResult<()> {
        self.connections.close()
    }
}

pub struct SqliteMail {
    connections: Connections,
}

/// Metadata in a clustered (WITHOUT ROWID) table, so a folder listing reads
/// contiguous rows; bodies in an ordinary table (large rows belong in a rowid
/// table, whose leaves stay small) with the same key as its primary key.
const MAIL_SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS messages (
        mailbox TEXT NOT NULL, folder TEXT NOT NULL, uid INTEGER NOT NULL,
        internal_date INTEGER NOT NULL, size INTEGER NOT NULL, flags INTEGER NOT NULL,
        PRIMARY KEY (mailbox, folder, uid)) WITHOUT ROWID;
    CREATE TABLE IF NOT EXISTS bodies (
        mailbox TEXT NOT NULL, folder TEXT NOT NULL, uid INTEGER NOT NULL, data BLOB NOT NULL,
        PRIMARY KEY (mailbox, folder, uid));";

impl SqliteMail {
    pub fn create(dir: &Path, sync: Synchronous) -> BenchResult<SqliteMail> {
        Ok(SqliteMail {
            connections: Connections::open(dir, sync, MAIL_SCHEMA)?,
        })
    }
}

fn insert_delivery(tx: &rusqlite::Transaction<'_>, d: &Delivery) -> rusqlite::Result<()> {
    tx.prepare_cached("INSERT INTO messages VALUES (?1, ?2, ?3, ?4, ?5, ?6)")?
        .execute(params![
            d.mailbox,
            d.folder,
            d.uid,
            d.internal_date,
            d.body.len() as i64,
            d.flags
        ])?;
    tx.prepare_cached("INSERT INTO bodies VALUES (?1, ?2, ?3, ?4)")?
        .execute(params![d.mailbox, d.folder, d.uid, d.body])?;
    Ok(())
}

impl MailStore for SqliteMail {
    fn create_folder(&self, _mailbox: &str, _folder: &str) -> BenchResult<()> {
        Ok(())
    }

    fn deliver(&self, delivery: Delivery) -> BenchResult<()> {
        self.connections.write(|c| {
            let tx = c.transaction()?;
            insert_delivery(&tx, &delivery)?;
            tx.commit()
        })
    }

    fn deliver_batch(&self, deliveries: Vec<Delivery>) -> BenchResult<()> {
        self.connections.write(|c| {
            let tx = c.transaction()?;
            for delivery in &deliveries {
                insert_delivery(&tx, delivery)?;
            }
            tx.commit()
        })
    }

    fn list(&self, mailbox: &str, folder: &str) -> BenchResult<Vec<MessageRow>> {
        self.connections.read(|c| {
            c.prepare_cached(
                "SELECT uid, internal_date, size, flags FROM messages
                 WHERE mailbox = ?1 AND folder = ?2 ORDER BY uid",
            )?
            .query_map([mailbox, folder], |row| {
                Ok(MessageRow {
                    uid: row.get(0)?,
                    internal_date: row.get(1)?,
                    size: row.get(2)?,
                    flags: row.get(3)?,
                })
            })?
            .collect()
        })
    }

    fn body(&self, mailbox: &str, folder: &str, uid: u32) -> BenchResult<Option<Vec<u8>>> {
        self.connections.read(|c| {
            c.prepare_cached("SELECT data FROM bodies WHERE mailbox = ?1 AND folder = ?2 AND uid = ?3")?
                .query_row(params![mailbox, folder, uid], |row| row.get(0))
                .optional()
        })
    }

    fn close(self: Box<Self>) -> BenchResult<()> {
        self.connections.close()
    }
}
