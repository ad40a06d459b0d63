//! Mailbox reads on a passive copy: [`MailView`] over a snapshot of the
//! copy at its replay point (DESIGN.md, "Readable copies").

use super::error::Result;
use super::schema::Schema;
use super::{MailView, StoreOptions};
use crate::log::Lsn;
use crate::pager::{PageRead, PassiveSnapshot};

/// A read-only view of a copy's mailboxes as of one replay position: every
/// [`MailView`] read. Reads fail with
/// [`crate::pager::DbError::SnapshotTooOld`] (inside [`super::MailError::Db`])
/// once the snapshot expires; open a newer one.
#[derive(Debug, Clone)]
pub struct PassiveMailRead {
    pages: PassiveSnapshot,
    schema: Schema,
}

impl PassiveMailRead {
    /// Opens the store's tables in `snapshot`. `opts.max_body_bytes` bounds
    /// the bodies read (as on the active).
    pub fn open(snapshot: PassiveSnapshot, opts: &StoreOptions) -> Result<PassiveMailRead> {
        let file = snapshot.file_path().to_path_buf();
        let schema = Schema::open(&snapshot, opts.max_body_bytes, opts.text_compression, file)?;
        Ok(PassiveMailRead {
            pages: snapshot,
            schema,
        })
    }

    /// The replay position read at.
    pub fn position(&self) -> Lsn {
        self.pages.position()
    }
}

impl MailView for PassiveMailRead {
    type Pages = PassiveSnapshot;

    fn pages(&self) -> &PassiveSnapshot {
        &self.pages
    }

    fn schema(&self) -> &Schema {
        &self.schema
    }
}
