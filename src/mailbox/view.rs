//! What both read and write transactions can read: the [`MailView`] trait.

use super::body::{self, StoredBody};
use super::codec::keys;
use super::error::{MailError, Result};
use super::props;
use super::query::{self, FolderRef};
use super::schema::Schema;
use super::search;
use super::types::{Changes, Criterion, FolderInfo, MailboxInfo, MessageMeta, PropOwner, PropValue, UidSet};
use crate::pager::PageRead;
use std::io::Write;

/// Reads of the mailbox store, on a read snapshot ([`super::MailRead`]) or
/// inside a write transaction ([`super::MailTxn`], which sees its own
/// changes).
pub trait MailView {
    /// The page view reads go through.
    type Pages: PageRead + ?Sized;

    #[doc(hidden)]
    fn pages(&self) -> &Self::Pages;

    #[doc(hidden)]
    fn schema(&self) -> &Schema;

    /// Every mailbox, by name.
    fn list_mailboxes(&self) -> Result<Vec<MailboxInfo>> {
        query::list_mailboxes(self.pages(), self.schema())
    }

    /// One mailbox's quotas and usage.
    fn mailbox_info(&self, mailbox: &str) -> Result<MailboxInfo> {
        let rec = query::mailbox(self.pages(), self.schema(), mailbox)?;
        Ok(query::mailbox_info(mailbox.to_string(), &rec))
    }

    /// Every folder of a mailbox, by name (children right after parents).
    fn list_folders(&self, mailbox: &str) -> Result<Vec<FolderInfo>> {
        let mbox = query::mailbox(self.pages(), self.schema(), mailbox)?;
        Ok(query::folders(self.pages(), self.schema(), mbox.id, "")?
            .into_iter()
            .map(|(name, rec)| query::folder_info(name, &rec))
            .collect())
    }

    /// A folder's counters (SELECT/STATUS), kept up to date by every write.
    fn folder_info(&self, mailbox: &str, folder: &str) -> Result<FolderInfo> {
        let f = query::folder(self.pages(), self.schema(), mailbox, folder)?;
        Ok(query::folder_info(f.name, &f.rec))
    }

    /// Metadata of the messages with UIDs in `set`, in UID order.
    fn fetch(&self, mailbox: &str, folder: &str, set: &UidSet) -> Result<Vec<MessageMeta>> {
        let f = query::folder(self.pages(), self.schema(), mailbox, folder)?;
        // At most the folder's count (from the file: bounded before use).
        let span: u64 = set.ranges().iter().map(|&(a, b)| u64::from(b - a) + 1).sum();
        let mut out = Vec::with_capacity(span.min(f.rec.messages).min(1 << 16) as usize);
        query::visit_messages(self.pages(), self.schema(), f.rec.id, set, |uid, m| {
            out.push(query::meta_of(uid, m));
            Ok(())
        })?;
        Ok(out)
    }

    /// Every UID of a folder, in order.
    fn uids(&self, mailbox: &str, folder: &str) -> Result<Vec<u32>> {
        let f = query::folder(self.pages(), self.schema(), mailbox, folder)?;
        let mut out = Vec::with_capacity(f.rec.messages as usize);
        for entry in query::scan(self.pages(), self.schema().messages.root(), &f.rec.id.to_be_bytes())? {
            let (key, _) = entry?;
            out.push(query::uid_of(self.schema(), super::schema::MESSAGES, &key)?);
        }
        Ok(out)
    }

    /// Writes bytes `offset..offset + len` of a message's body to `out`
    /// (IMAP partial fetch), reading only the chunks that hold them. Returns
    /// the bytes written (fewer at the body's end).
    fn read_body_range(
        &self,
        mailbox: &str,
        folder: &str,
        uid: u32,
        offset: u64,
        len: u64,
        out: &mut dyn Write,
    ) -> Result<u64> {
        let f = query::folder(self.pages(), self.schema(), mailbox, folder)?;
        let stored = open_body(self, &f, uid)?;
        stored.copy_range(offset, len, out)
    }

    /// A message's whole body.
    fn read_body(&self, mailbox: &str, folder: &str, uid: u32) -> Result<Vec<u8>> {
        let f = query::folder(self.pages(), self.schema(), mailbox, folder)?;
        open_body(self, &f, uid)?.read_all()
    }

    /// A message's body length and crc32c, from its stored record.
    fn body_checksum(&self, mailbox: &str, folder: &str, uid: u32) -> Result<(u64, u32)> {
        let f = query::folder(self.pages(), self.schema(), mailbox, folder)?;
        let stored = open_body(self, &f, uid)?;
        Ok((stored.meta.raw_len, stored.meta.checksum))
    }

    /// New, changed and expunged UIDs since `modseq` (CONDSTORE/QRESYNC).
    fn changes_since(&self, mailbox: &str, folder: &str, modseq: u64) -> Result<Changes> {
        let f = query::folder(self.pages(), self.schema(), mailbox, folder)?;
        query::changes_since(self.pages(), self.schema(), &f.rec, modseq)
    }

    /// UIDs matching every criterion, in order, found through the indexes.
    fn search(&self, mailbox: &str, folder: &str, criteria: &[Criterion]) -> Result<Vec<u32>> {
        let f = query::folder(self.pages(), self.schema(), mailbox, folder)?;
        search::run(self.pages(), self.schema(), &f.rec, criteria)
    }

    /// One property of a folder or message.
    fn prop(&self, mailbox: &str, folder: &str, owner: PropOwner, name: &str) -> Result<Option<PropValue>> {
        let f = query::folder(self.pages(), self.schema(), mailbox, folder)?;
        props::get(self.pages(), self.schema(), &f, owner, name)
    }

    /// Every property of a folder or message, by name.
    fn props(&self, mailbox: &str, folder: &str, owner: PropOwner) -> Result<Vec<(String, PropValue)>> {
        let f = query::folder(self.pages(), self.schema(), mailbox, folder)?;
        props::list(self.pages(), self.schema(), &f, owner)
    }
}

fn open_body<'v, V: MailView + ?Sized>(view: &'v V, f: &FolderRef, uid: u32) -> Result<StoredBody<'v, V::Pages>> {
    let m = query::message(view.pages(), view.schema(), f.rec.id, uid)?.ok_or_else(|| MailError::NoSuchMessage {
        folder: f.name.clone(),
        uid,
    })?;
    let sc = view.schema();
    let stored = body::open(view.pages(), sc.bodies.root(), m.body, sc.max_body_bytes)?;
    if stored.meta.raw_len != m.size {
        return Err(sc.corrupt(
            super::schema::MESSAGES,
            &keys::message(f.rec.id, uid),
            format!("size {} but its body holds {}", m.size, stored.meta.raw_len),
        ));
    }
    Ok(stored)
}
