//! The write transaction of the mailbox store: mailboxes and folders.
//! Message operations are in `messages.rs`.

use super::codec::{FolderRecord, MailboxRecord, keys};
use super::error::{MailError, Result};
use super::props;
use super::query::{self, FolderRef};
use super::schema::{self, KEY_NEXT_ID, KEY_NEXT_UIDVALIDITY, Schema};
use super::types::{PropOwner, PropValue};
use super::view::MailView;
use crate::txn::{TxnPages, WriteTxn};

/// Quotas of a mailbox; `None` is no limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Quota {
    /// Most bytes of messages.
    pub bytes: Option<u64>,
    /// Most messages.
    pub messages: Option<u64>,
}

/// One atomic transaction of the mailbox store: every change in it commits
/// together or not at all. Reads through [`MailView`] see its own changes.
/// A failed call leaves the transaction as it was before the call only for
/// argument errors; any error returned from the transaction's body rolls
/// the whole transaction back.
pub struct MailTxn<'t, 'db> {
    pub(crate) tx: &'t mut WriteTxn<'db>,
    pub(crate) sc: &'t Schema,
}

impl MailView for MailTxn<'_, '_> {
    type Pages = TxnPages;

    fn pages(&self) -> &TxnPages {
        self.tx.pages()
    }

    fn schema(&self) -> &Schema {
        self.sc
    }
}

impl<'t, 'db> MailTxn<'t, 'db> {
    pub(crate) fn new(tx: &'t mut WriteTxn<'db>, sc: &'t Schema) -> Self {
        MailTxn { tx, sc }
    }

    fn meta_u64(&mut self, key: &[u8]) -> Result<u64> {
        let b = self.tx.get(&self.sc.meta, key)?.unwrap_or_default();
        let arr: [u8; 8] = b
            .as_slice()
            .try_into()
            .map_err(|_| self.sc.corrupt(schema::META, key, format!("{} bytes", b.len())))?;
        Ok(u64::from_le_bytes(arr))
    }

    /// A new id for a mailbox, folder or body: never reused.
    pub(crate) fn next_id(&mut self) -> Result<u64> {
        let id = self.meta_u64(KEY_NEXT_ID)?;
        let next = id
            .checked_add(1)
            .ok_or_else(|| self.sc.corrupt(schema::META, KEY_NEXT_ID, "ids exhausted".into()))?;
        self.tx.put(&self.sc.meta, KEY_NEXT_ID, &next.to_le_bytes())?;
        Ok(id)
    }

    /// A new UIDVALIDITY: strictly increasing over the store's life, so a
    /// folder deleted and created again never reuses one.
    fn next_uid_validity(&mut self) -> Result<u32> {
        let b = self.tx.get(&self.sc.meta, KEY_NEXT_UIDVALIDITY)?.unwrap_or_default();
        let arr: [u8; 4] = b.as_slice().try_into().map_err(|_| {
            self.sc
                .corrupt(schema::META, KEY_NEXT_UIDVALIDITY, format!("{} bytes", b.len()))
        })?;
        let v = u32::from_le_bytes(arr);
        let next = v.checked_add(1).ok_or_else(|| {
            self.sc
                .corrupt(schema::META, KEY_NEXT_UIDVALIDITY, "UIDVALIDITY exhausted".into())
        })?;
        self.tx.put(&self.sc.meta, KEY_NEXT_UIDVALIDITY, &next.to_le_bytes())?;
        Ok(v)
    }

    pub(crate) fn put_mailbox(&mut self, name: &str, rec: &MailboxRecord) -> Result<()> {
        self.tx.put(&self.sc.mailboxes, name.as_bytes(), &rec.encode())?;
        Ok(())
    }

    pub(crate) fn put_folder(&mut self, f: &FolderRef) -> Result<()> {
        self.tx
            .put(&self.sc.folders, &keys::folder(f.mbox.id, &f.name), &f.rec.encode())?;
        Ok(())
    }

    /// Creates a mailbox (a user) with its INBOX.
    pub fn create_mailbox(&mut self, name: &str, quota: Quota) -> Result<()> {
        schema::check_text("mailbox", name, schema::MAX_MAILBOX_NAME)?;
        if self.tx.get(&self.sc.mailboxes, name.as_bytes())?.is_some() {
            return Err(MailError::MailboxExists(name.to_string()));
        }
        let rec = MailboxRecord {
            id: self.next_id()?,
            quota_bytes: quota.bytes.unwrap_or(u64::MAX),
            quota_messages: quota.messages.unwrap_or(u64::MAX),
            used_bytes: 0,
            used_messages: 0,
        };
        self.put_mailbox(name, &rec)?;
        self.create_folder(name, "INBOX")
    }

    /// Changes a mailbox's quotas. Usage above a new quota stays; only new
    /// writes are refused.
    pub fn set_quota(&mut self, name: &str, quota: Quota) -> Result<()> {
        let mut rec = query::mailbox(self.pages(), self.sc, name)?;
        rec.quota_bytes = quota.bytes.unwrap_or(u64::MAX);
        rec.quota_messages = quota.messages.unwrap_or(u64::MAX);
        self.put_mailbox(name, &rec)
    }

    /// Renames a mailbox; its folders and messages follow (they hang off its id).
    pub fn rename_mailbox(&mut self, from: &str, to: &str) -> Result<()> {
        let rec = query::mailbox(self.pages(), self.sc, from)?;
        schema::check_text("mailbox", to, schema::MAX_MAILBOX_NAME)?;
        if from == to {
            return Ok(());
        }
        if self.tx.get(&self.sc.mailboxes, to.as_bytes())?.is_some() {
            return Err(MailError::MailboxExists(to.to_string()));
        }
        self.tx.delete(&self.sc.mailboxes, from.as_bytes())?;
        self.put_mailbox(to, &rec)
    }

    /// Deletes a mailbox with every folder and message in it.
    pub fn delete_mailbox(&mut self, name: &str) -> Result<()> {
        let rec = query::mailbox(self.pages(), self.sc, name)?;
        for (folder, _) in query::folders(self.pages(), self.sc, rec.id, "")? {
            let f = query::folder(self.pages(), self.sc, name, &folder)?;
            self.destroy_folder(f)?;
        }
        self.tx.delete(&self.sc.mailboxes, name.as_bytes())?;
        Ok(())
    }

    /// Creates a folder, and any missing parent levels (as IMAP CREATE does).
    pub fn create_folder(&mut self, mailbox: &str, name: &str) -> Result<()> {
        let mbox = query::mailbox(self.pages(), self.sc, mailbox)?;
        let name = self.sc.folder_name(name)?;
        let key = keys::folder(mbox.id, &name);
        if self.tx.get(&self.sc.folders, &key)?.is_some() {
            return Err(MailError::FolderExists {
                mailbox: mailbox.to_string(),
                folder: name,
            });
        }
        self.create_parents(&mbox, &name)?;
        self.insert_folder(&mbox, &name)
    }

    fn insert_folder(&mut self, mbox: &MailboxRecord, name: &str) -> Result<()> {
        let rec = FolderRecord {
            id: self.next_id()?,
            uid_validity: self.next_uid_validity()?,
            uid_next: 1,
            highest_modseq: 1,
            messages: 0,
            unseen: 0,
            bytes: 0,
            subscribed: false,
        };
        self.tx
            .put(&self.sc.folders, &keys::folder(mbox.id, name), &rec.encode())?;
        Ok(())
    }

    fn create_parents(&mut self, mbox: &MailboxRecord, name: &str) -> Result<()> {
        let d = self.sc.delimiter;
        for (at, _) in name.match_indices(d) {
            let parent = &name[..at];
            if self.tx.get(&self.sc.folders, &keys::folder(mbox.id, parent))?.is_none() {
                self.insert_folder(mbox, parent)?;
            }
        }
        Ok(())
    }

    /// Renames a folder; its children follow. UIDs, UIDVALIDITY and
    /// messages stay, since they hang off the folder's id.
    pub fn rename_folder(&mut self, mailbox: &str, from: &str, to: &str) -> Result<()> {
        let f = query::folder(self.pages(), self.sc, mailbox, from)?;
        let to = self.sc.folder_name(to)?;
        if f.name == "INBOX" || to == "INBOX" {
            return Err(MailError::ProtectedFolder("INBOX".into()));
        }
        if to == f.name {
            return Ok(());
        }
        let d = self.sc.delimiter;
        if to.starts_with(&format!("{}{d}", f.name)) {
            return Err(MailError::InvalidArgument(format!(
                "cannot move folder {:?} under itself",
                f.name
            )));
        }
        let mut moving = vec![(f.name.clone(), f.rec.clone())];
        moving.extend(query::folders(
            self.pages(),
            self.sc,
            f.mbox.id,
            &format!("{}{d}", f.name),
        )?);
        let renamed: Vec<String> = moving
            .iter()
            .map(|(n, _)| format!("{to}{}", &n[f.name.len()..]))
            .collect();
        for new in &renamed {
            if new.len() > schema::MAX_FOLDER_NAME {
                return Err(MailError::invalid_name("folder", new, "too long after the rename"));
            }
            if self.tx.get(&self.sc.folders, &keys::folder(f.mbox.id, new))?.is_some() {
                return Err(MailError::FolderExists {
                    mailbox: mailbox.to_string(),
                    folder: new.clone(),
                });
            }
        }
        for ((old, rec), new) in moving.iter().zip(&renamed) {
            self.tx.delete(&self.sc.folders, &keys::folder(f.mbox.id, old))?;
            self.tx
                .put(&self.sc.folders, &keys::folder(f.mbox.id, new), &rec.encode())?;
        }
        self.create_parents(&f.mbox, &to)
    }

    /// Deletes a folder and its messages. A folder with children is refused.
    pub fn delete_folder(&mut self, mailbox: &str, name: &str) -> Result<()> {
        let f = query::folder(self.pages(), self.sc, mailbox, name)?;
        if f.name == "INBOX" {
            return Err(MailError::ProtectedFolder("INBOX".into()));
        }
        let d = self.sc.delimiter;
        if !query::folders(self.pages(), self.sc, f.mbox.id, &format!("{}{d}", f.name))?.is_empty() {
            return Err(MailError::FolderHasChildren { folder: f.name });
        }
        self.destroy_folder(f)
    }

    /// Removes a folder's messages (releasing bodies and quota), its change
    /// log, indexes and properties, then its record.
    fn destroy_folder(&mut self, f: FolderRef) -> Result<()> {
        let fid = f.rec.id.to_be_bytes();
        let messages = query::messages(self.pages(), self.sc, f.rec.id, &super::types::UidSet::all())?;
        let mut mbox = query::mailbox(self.pages(), self.sc, &f.mailbox)?;
        for (uid, m) in &messages {
            self.tx.delete(&self.sc.messages, &keys::message(f.rec.id, *uid))?;
            self.release_body(m.body)?;
            mbox.used_bytes = mbox.used_bytes.saturating_sub(m.size);
            mbox.used_messages = mbox.used_messages.saturating_sub(1);
        }
        self.put_mailbox(&f.mailbox, &mbox)?;
        let changes = self.sc.changes.clone();
        let index = self.sc.index.clone();
        self.delete_prefix(&changes, &fid)?;
        self.delete_prefix(&index, &fid)?;
        let props = self.sc.props.clone();
        self.delete_prefix(&props, &props::owner_prefix(f.rec.id, PropOwner::Folder))?;
        let mut message_props = vec![2u8];
        message_props.extend_from_slice(&fid);
        self.delete_prefix(&props, &message_props)?;
        self.tx.delete(&self.sc.folders, &keys::folder(f.mbox.id, &f.name))?;
        Ok(())
    }

    pub(crate) fn delete_prefix(&mut self, table: &crate::txn::Table, prefix: &[u8]) -> Result<()> {
        let mut doomed = Vec::new();
        for entry in query::scan(self.tx.pages(), table.root(), prefix)? {
            doomed.push(entry?.0);
        }
        for key in doomed {
            self.tx.delete(table, &key)?;
        }
        Ok(())
    }

    /// Subscribes to or unsubscribes from a folder.
    pub fn subscribe(&mut self, mailbox: &str, folder: &str, subscribed: bool) -> Result<()> {
        let mut f = query::folder(self.pages(), self.sc, mailbox, folder)?;
        f.rec.subscribed = subscribed;
        self.put_folder(&f)
    }

    /// Sets a property of a folder or message.
    pub fn set_prop(
        &mut self,
        mailbox: &str,
        folder: &str,
        owner: PropOwner,
        name: &str,
        value: &PropValue,
    ) -> Result<()> {
        let f = query::folder(self.pages(), self.sc, mailbox, folder)?;
        let key = props::key(f.rec.id, owner, name)?;
        let value = props::encode(value)?;
        if let PropOwner::Message(uid) = owner
            && query::message(self.pages(), self.sc, f.rec.id, uid)?.is_none()
        {
            return Err(MailError::NoSuchMessage { folder: f.name, uid });
        }
        self.tx.put(&self.sc.props, &key, &value)?;
        Ok(())
    }

    /// Removes a property; returns whether it was set.
    pub fn delete_prop(&mut self, mailbox: &str, folder: &str, owner: PropOwner, name: &str) -> Result<bool> {
        let f = query::folder(self.pages(), self.sc, mailbox, folder)?;
        let key = props::key(f.rec.id, owner, name)?;
        Ok(self.tx.delete(&self.sc.props, &key)?)
    }
}
