//! The mailbox store: what a mail server (IMAP, POP3, a delivery agent)
//! links. Mailboxes (users) hold hierarchical folders of messages, with the
//! semantics of IMAP4rev2, UIDPLUS, CONDSTORE and QRESYNC: UIDs that never
//! repeat within a UIDVALIDITY, per-message MODSEQs, a change log with
//! tombstones, counters kept exact by every write, bodies compressed in
//! chunks and shared by copies, indexes for SEARCH, property bags, quotas,
//! and atomic multi-operation transactions.
//!
//! ```
//! use mailvault::mailbox::{AppendOptions, MailView, Quota, Store, StoreOptions, UidSet};
//! use mailvault::vfs::SimVfs;
//!
//! let store = Store::create(SimVfs::new(7), "/mail", StoreOptions::default())?;
//! store.create_mailbox("alice", Quota::default())?;
//! let uid = store.append("alice", "INBOX", &AppendOptions::default(), b"Subject: hi\r\n\r\nhello")?;
//! let moved = store.transaction(move |tx| {
//!     tx.create_folder("alice", "Archive/2026")?;
//!     tx.move_messages("alice", "INBOX", &UidSet::single(uid), "alice", "Archive/2026")
//! })?;
//! let rx = store.read();
//! assert_eq!(rx.read_body("alice", "Archive/2026", moved[0].1)?, b"Subject: hi\r\n\r\nhello");
//! assert_eq!(rx.folder_info("alice", "INBOX")?.messages, 0);
//! # Ok::<(), mailvault::mailbox::MailError>(())
//! ```

mod base64_lines;
mod body;
mod codec;
mod error;
mod messages;
mod passive;
mod prepare;
mod props;
mod query;
mod schema;
mod search;
mod txn;
mod types;
mod verify;
mod view;
pub mod workload;

/// The body codecs' decoders, for the fuzz targets; not a stable API.
#[doc(hidden)]
pub mod fuzzing {
    pub use super::base64_lines::{pack as pack_base64_lines, unpack as unpack_base64_lines};
}

pub use body::CHUNK_RAW;
pub use error::{MailError, QuotaKind, Result};
pub use passive::PassiveMailRead;
pub use prepare::PreparedBody;
pub use schema::{
    MAX_FOLDER_NAME, MAX_KEYWORD_LEN, MAX_KEYWORDS, MAX_MAILBOX_NAME, MAX_PROP_NAME, MAX_PROP_VALUE, Schema,
};
pub use txn::{MailTxn, Quota};
pub use types::{
    AppendOptions, Changes, Criterion, FlagOp, Flags, FolderInfo, MailboxInfo, MessageMeta, PropOwner, PropValue,
    StoreResult, UidSet,
};
pub use verify::StoreReport;
pub use view::MailView;

use crate::pager::{PageNo, PageRead, PageRef};
use crate::txn::{Database, DbOptions, Durability, ReadTxn, SnapshotPages};
use crate::vfs::SharedVfs;
use std::cell::Cell;
use std::io::Read;
use std::path::Path;
use std::sync::Arc;

/// How the chunks of a long body that are not base64 lines (its text,
/// mostly) are compressed; a body of one chunk always takes LZ4, and lines
/// are always packed to their bytes (DESIGN.md, "Text chunks: LZ4").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TextCompression {
    /// LZ4: about twice as fast as zstd, to about 0.52 of the text.
    #[default]
    Lz4,
    /// zstd at this level (-7 to 22): to about 0.34 at level 1, slower.
    Zstd(i32),
}
/// Default largest message body.
pub const DEFAULT_MAX_BODY_BYTES: u64 = 16 << 20;
/// Hard ceiling on `max_body_bytes`: chunk-table offsets are 31 bits.
pub const MAX_BODY_LIMIT: u64 = 1 << 30;

/// How to create or open a store.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Bytes of pages the cache holds.
    pub cache_bytes: usize,
    /// Page size, fixed at creation.
    pub page_size: usize,
    /// Log generation file size, fixed at creation.
    pub generation_size: u64,
    /// A checkpoint starts when this much log lies after the last one.
    pub checkpoint_depth: u64,
    /// Durability of the convenience calls and of [`Store::transaction`].
    pub durability: Durability,
    /// Largest message body accepted (lowered, at open, to what one
    /// transaction may hold).
    pub max_body_bytes: u64,
    /// How the text of long bodies is compressed.
    pub text_compression: TextCompression,
    /// Folder hierarchy delimiter, fixed at creation.
    pub delimiter: char,
    /// Bodies' pages are written once, in place, instead of to the log and
    /// again by a checkpoint, while no copy holds the log
    /// (`PagerOptions::write_large_values_once`).
    pub write_large_values_once: bool,
}

impl Default for StoreOptions {
    fn default() -> Self {
        let db = DbOptions::default();
        StoreOptions {
            cache_bytes: db.cache_bytes,
            page_size: db.page_size,
            generation_size: db.log.generation_size,
            checkpoint_depth: db.checkpoint_depth,
            durability: Durability::Durable,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            text_compression: TextCompression::default(),
            delimiter: '/',
            write_large_values_once: db.write_large_values_once,
        }
    }
}

impl StoreOptions {
    fn db_options(&self) -> Result<DbOptions> {
        if self.max_body_bytes == 0 || self.max_body_bytes > MAX_BODY_LIMIT {
            return Err(MailError::InvalidArgument(format!(
                "max_body_bytes is 1 to {MAX_BODY_LIMIT}, not {}",
                self.max_body_bytes
            )));
        }
        if let TextCompression::Zstd(level) = self.text_compression
            && !(-7..=22).contains(&level)
        {
            return Err(MailError::InvalidArgument(format!(
                "compression level {level} is outside zstd's -7..=22"
            )));
        }
        if self.delimiter.is_control()
            || self.delimiter.is_alphanumeric()
            || self.delimiter == '*'
            || self.delimiter == '%'
        {
            return Err(MailError::InvalidArgument(format!(
                "{:?} cannot be the delimiter",
                self.delimiter
            )));
        }
        let mut db = DbOptions {
            cache_bytes: self.cache_bytes,
            page_size: self.page_size,
            checkpoint_depth: self.checkpoint_depth,
            write_large_values_once: self.write_large_values_once,
            ..DbOptions::default()
        };
        db.log.generation_size = self.generation_size;
        // A body's pages are held until its commit (and logged in parts):
        // room for the largest, with its page headers and the tree changes
        // around it.
        let needed = (self.max_body_bytes + self.max_body_bytes / 8 + record_slack(self.page_size)) as usize;
        db.max_transaction_bytes = db.max_transaction_bytes.max(needed);
        Ok(db)
    }
}

/// An open mailbox store: one directory with its database file and log.
/// A second open of the same directory (this process or another) gets
/// [`crate::pager::DbError::InUse`].
pub struct Store {
    db: Database,
    schema: Arc<Schema>,
    durability: Durability,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("db", &self.db).finish_non_exhaustive()
    }
}

/// Transaction room beyond a body's pages: the tree pages one append changes.
fn record_slack(page_size: usize) -> u64 {
    32 * page_size as u64
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_secs())
}

impl Store {
    /// Creates a store in `dir`.
    pub fn create(vfs: SharedVfs, dir: impl AsRef<Path>, opts: StoreOptions) -> Result<Store> {
        let db = Database::create(vfs, dir, opts.db_options()?)?;
        let mut tx = db.begin_write();
        // UIDVALIDITY starts at the creation time, as is customary, so a
        // store created again from scratch does not reuse old values.
        schema::Schema::create(&mut tx, opts.delimiter, now_secs().min(u64::from(u32::MAX / 2)) as u32)?;
        tx.commit()?;
        Store::finish_open(db, &opts)
    }

    /// Opens the store in `dir`, recovering from a crash if needed.
    pub fn open(vfs: SharedVfs, dir: impl AsRef<Path>, opts: StoreOptions) -> Result<Store> {
        let db = Database::open(vfs, dir, opts.db_options()?)?;
        Store::finish_open(db, &opts)
    }

    fn finish_open(db: Database, opts: &StoreOptions) -> Result<Store> {
        let room = db.pager().options().max_transaction_bytes as u64;
        let max_body = opts
            .max_body_bytes
            .min(room.saturating_sub(record_slack(db.pager().page_size())) * 8 / 9);
        let schema = {
            let rx = db.begin_read();
            Schema::open(
                rx.pages(),
                max_body,
                opts.text_compression,
                db.pager().file_path().to_path_buf(),
            )?
        };
        Ok(Store {
            db,
            schema: Arc::new(schema),
            durability: opts.durability,
        })
    }

    /// The largest body this store accepts.
    pub fn max_body_bytes(&self) -> u64 {
        self.schema.max_body_bytes
    }

    /// The database underneath (tables, checkpoints, pins, statistics).
    pub fn database(&self) -> &Database {
        &self.db
    }

    /// Compresses a body on the calling thread, ahead of its transaction.
    pub fn prepare_body(&self, reader: &mut dyn Read) -> Result<PreparedBody> {
        prepare::prepare(
            reader,
            self.schema.text,
            self.schema.max_body_bytes,
            self.schema.page_size,
        )
    }

    /// Runs `body` as one atomic transaction with the store's default
    /// durability (see [`Store::transaction_with`]).
    pub fn transaction<R, F>(&self, body: F) -> Result<R>
    where
        R: Send + 'static,
        F: FnOnce(&mut MailTxn<'_, '_>) -> Result<R> + Send + 'static,
    {
        self.transaction_with(self.durability, body)
    }

    /// Runs `body` as one atomic transaction: all its changes commit
    /// together, or, if it returns an error, none do. Concurrent callers'
    /// transactions are combined into one log write and fsync; each still
    /// commits or fails on its own. Returns once the commit is durable (or
    /// at once for [`Durability::Lazy`]).
    pub fn transaction_with<R, F>(&self, durability: Durability, body: F) -> Result<R>
    where
        R: Send + 'static,
        F: FnOnce(&mut MailTxn<'_, '_>) -> Result<R> + Send + 'static,
    {
        let schema = self.schema.clone();
        self.db
            .write_fallible(durability, move |tx| body(&mut MailTxn::new(tx, &schema)))
    }

    /// A consistent snapshot for reading; it never blocks writers.
    pub fn read(&self) -> MailRead<'_> {
        MailRead {
            pages: CountingPages {
                inner: self.db.begin_read(),
                reads: Cell::new(0),
            },
            schema: &self.schema,
        }
    }

    /// Creates a mailbox with its INBOX.
    pub fn create_mailbox(&self, name: &str, quota: Quota) -> Result<()> {
        let name = name.to_string();
        self.transaction(move |tx| tx.create_mailbox(&name, quota))
    }

    /// Creates a folder (and missing parents).
    pub fn create_folder(&self, mailbox: &str, folder: &str) -> Result<()> {
        let (m, f) = (mailbox.to_string(), folder.to_string());
        self.transaction(move |tx| tx.create_folder(&m, &f))
    }

    /// Delivers one message; the body is compressed on this thread before
    /// the transaction. Returns the UID once the commit is durable.
    pub fn append(&self, mailbox: &str, folder: &str, opts: &AppendOptions, bytes: &[u8]) -> Result<u32> {
        let body = self.prepare_body(&mut &bytes[..])?;
        self.append_prepared(mailbox, folder, opts, body)
    }

    /// Delivers a message read from `reader` (at most `max_body_bytes`).
    pub fn append_from(&self, mailbox: &str, folder: &str, opts: &AppendOptions, reader: &mut dyn Read) -> Result<u32> {
        let body = self.prepare_body(reader)?;
        self.append_prepared(mailbox, folder, opts, body)
    }

    /// Delivers a body prepared with [`Store::prepare_body`].
    pub fn append_prepared(
        &self,
        mailbox: &str,
        folder: &str,
        opts: &AppendOptions,
        body: PreparedBody,
    ) -> Result<u32> {
        let (m, f, o) = (mailbox.to_string(), folder.to_string(), opts.clone());
        self.transaction(move |tx| tx.append_prepared(&m, &f, &o, body))
    }

    /// Verifies every record, counter, index entry and reference count.
    pub fn verify(&self) -> Result<StoreReport> {
        let rx = self.read();
        verify::run(&rx)
    }

    /// Checkpoints and closes cleanly.
    pub fn close(self) -> Result<()> {
        Ok(self.db.close()?)
    }
}

/// A page view that counts the pages it reads (for partial-fetch figures).
pub struct CountingPages<'db> {
    inner: ReadTxn<'db>,
    reads: Cell<u64>,
}

impl PageRead for CountingPages<'_> {
    fn page_size(&self) -> usize {
        self.inner.pages().page_size()
    }

    fn file_path(&self) -> &Path {
        self.inner.pages().file_path()
    }

    fn page(&self, no: PageNo) -> crate::pager::Result<PageRef> {
        self.reads.set(self.reads.get() + 1);
        self.inner.pages().page(no)
    }

    fn page_in_passing(&self, no: PageNo) -> crate::pager::Result<PageRef> {
        self.reads.set(self.reads.get() + 1);
        self.inner.pages().page_in_passing(no)
    }
}

/// A read snapshot of the store: every read sees one committed state.
pub struct MailRead<'s> {
    pages: CountingPages<'s>,
    schema: &'s Schema,
}

impl<'s> MailView for MailRead<'s> {
    type Pages = CountingPages<'s>;

    fn pages(&self) -> &CountingPages<'s> {
        &self.pages
    }

    fn schema(&self) -> &Schema {
        self.schema
    }
}

impl MailRead<'_> {
    /// Pages read through this snapshot so far (cache hits included).
    pub fn pages_read(&self) -> u64 {
        self.pages.reads.get()
    }

    /// The snapshot's underlying pages (for verification tools).
    pub fn snapshot_pages(&self) -> &SnapshotPages {
        self.pages.inner.pages()
    }
}
