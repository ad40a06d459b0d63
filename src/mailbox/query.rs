//! Reads shared by read and write transactions: generic over the page view,
//! so a write transaction sees its own changes.

use super::codec::{ChangeEntry, FolderRecord, MailboxRecord, MessageRecord, keys};
use super::error::{MailError, Result};
use super::schema::{self, Schema};
use super::types::{Changes, FolderInfo, MailboxInfo, MessageMeta, UidSet};
use crate::btree::{self, Value};
use crate::pager::{PageNo, PageRead};
use std::ops::Bound;

/// A resolved folder: its mailbox and its record.
#[derive(Debug, Clone)]
pub(crate) struct FolderRef {
    pub mailbox: String,
    pub mbox: MailboxRecord,
    pub name: String,
    pub rec: FolderRecord,
}

/// Entries whose key starts with `prefix`, in order.
pub(crate) fn scan<'s, S: PageRead + ?Sized>(
    s: &'s S,
    root: PageNo,
    prefix: &[u8],
) -> Result<impl DoubleEndedIterator<Item = crate::pager::Result<(Vec<u8>, Value)>> + 's> {
    let end = keys::prefix_end(prefix);
    let end = match &end {
        Some(e) => Bound::Excluded(e.as_slice()),
        None => Bound::Unbounded,
    };
    Ok(btree::range(s, root, Bound::Included(prefix), end)?)
}

/// The bytes of an inline value; records are small, so a long one is corrupt.
pub(crate) fn inline<'v>(sc: &Schema, table: &'static str, key: &[u8], v: &'v Value) -> Result<&'v [u8]> {
    match v {
        Value::Inline(b) => Ok(b),
        Value::Long(l) => Err(sc.corrupt(table, key, format!("a {}-byte record stored as a long value", l.len()))),
    }
}

pub(crate) fn mailbox<S: PageRead + ?Sized>(s: &S, sc: &Schema, name: &str) -> Result<MailboxRecord> {
    schema::check_text("mailbox", name, schema::MAX_MAILBOX_NAME)?;
    match btree::get_bytes(s, sc.mailboxes.root(), name.as_bytes())? {
        Some(b) => MailboxRecord::decode(&b).map_err(|e| sc.corrupt(schema::MAILBOXES, name.as_bytes(), e)),
        None => Err(MailError::NoSuchMailbox(name.to_string())),
    }
}

pub(crate) fn folder<S: PageRead + ?Sized>(
    s: &S,
    sc: &Schema,
    mailbox_name: &str,
    folder_name: &str,
) -> Result<FolderRef> {
    let mbox = mailbox(s, sc, mailbox_name)?;
    let name = sc.folder_name(folder_name)?;
    let key = keys::folder(mbox.id, &name);
    match btree::get_bytes(s, sc.folders.root(), &key)? {
        Some(b) => Ok(FolderRef {
            mailbox: mailbox_name.to_string(),
            mbox,
            rec: FolderRecord::decode(&b).map_err(|e| sc.corrupt(schema::FOLDERS, &key, e))?,
            name,
        }),
        None => Err(MailError::NoSuchFolder {
            mailbox: mailbox_name.to_string(),
            folder: name,
        }),
    }
}

pub(crate) fn message<S: PageRead + ?Sized>(
    s: &S,
    sc: &Schema,
    folder_id: u64,
    uid: u32,
) -> Result<Option<MessageRecord>> {
    let key = keys::message(folder_id, uid);
    match btree::get_bytes(s, sc.messages.root(), &key)? {
        Some(b) => Ok(Some(
            MessageRecord::decode(&b).map_err(|e| sc.corrupt(schema::MESSAGES, &key, e))?,
        )),
        None => Ok(None),
    }
}

pub(crate) fn meta_of(uid: u32, m: MessageRecord) -> MessageMeta {
    let mut keywords = m.keywords;
    keywords.sort();
    MessageMeta {
        uid,
        modseq: m.modseq,
        internal_date: m.internal_date,
        size: m.size,
        flags: m.flags,
        keywords,
        body_id: m.body,
    }
}

pub(crate) fn folder_info(name: String, r: &FolderRecord) -> FolderInfo {
    FolderInfo {
        name,
        uid_validity: r.uid_validity,
        uid_next: r.uid_next,
        highest_modseq: r.highest_modseq,
        messages: r.messages,
        unseen: r.unseen,
        bytes: r.bytes,
        subscribed: r.subscribed,
    }
}

pub(crate) fn mailbox_info(name: String, r: &MailboxRecord) -> MailboxInfo {
    let limit = |q: u64| (q != u64::MAX).then_some(q);
    MailboxInfo {
        name,
        quota_bytes: limit(r.quota_bytes),
        quota_messages: limit(r.quota_messages),
        used_bytes: r.used_bytes,
        used_messages: r.used_messages,
    }
}

pub(crate) fn list_mailboxes<S: PageRead + ?Sized>(s: &S, sc: &Schema) -> Result<Vec<MailboxInfo>> {
    let mut out = Vec::new();
    for entry in scan(s, sc.mailboxes.root(), &[])? {
        let (key, value) = entry?;
        let rec = MailboxRecord::decode(inline(sc, schema::MAILBOXES, &key, &value)?)
            .map_err(|e| sc.corrupt(schema::MAILBOXES, &key, e))?;
        let name = String::from_utf8(key.clone())
            .map_err(|_| sc.corrupt(schema::MAILBOXES, &key, "name is not UTF-8".into()))?;
        out.push(mailbox_info(name, &rec));
    }
    Ok(out)
}

/// Every folder of a mailbox (or only those under `prefix`), with records.
pub(crate) fn folders<S: PageRead + ?Sized>(
    s: &S,
    sc: &Schema,
    mailbox_id: u64,
    prefix: &str,
) -> Result<Vec<(String, FolderRecord)>> {
    let mut out = Vec::new();
    for entry in scan(s, sc.folders.root(), &keys::folder(mailbox_id, prefix))? {
        let (key, value) = entry?;
        let rec = FolderRecord::decode(inline(sc, schema::FOLDERS, &key, &value)?)
            .map_err(|e| sc.corrupt(schema::FOLDERS, &key, e))?;
        let name = String::from_utf8(key[8..].to_vec())
            .map_err(|_| sc.corrupt(schema::FOLDERS, &key, "name is not UTF-8".into()))?;
        out.push((name, rec));
    }
    Ok(out)
}

/// Messages of a folder with UIDs in `set`, in UID order.
pub(crate) fn messages<S: PageRead + ?Sized>(
    s: &S,
    sc: &Schema,
    folder_id: u64,
    set: &UidSet,
) -> Result<Vec<(u32, MessageRecord)>> {
    let mut out = Vec::new();
    visit_messages(s, sc, folder_id, set, |uid, rec| {
        out.push((uid, rec));
        Ok(())
    })?;
    Ok(out)
}

/// Calls `each` with every message of `set`, in UID order, decoded straight
/// from the pages: a listing decodes thousands of rows, so nothing is
/// gathered first.
pub(crate) fn visit_messages<S: PageRead + ?Sized>(
    s: &S,
    sc: &Schema,
    folder_id: u64,
    set: &UidSet,
    mut each: impl FnMut(u32, MessageRecord) -> Result<()>,
) -> Result<()> {
    for &(first, last) in set.ranges() {
        let start = keys::message(folder_id, first);
        let end = keys::message(folder_id, last);
        btree::visit_range(
            s,
            sc.messages.root(),
            Bound::Included(&start[..]),
            Bound::Included(&end[..]),
            |key, value| {
                let bytes = match value {
                    btree::ValueRef::Inline(bytes) => bytes,
                    btree::ValueRef::Long(l) => {
                        return Err(sc.corrupt(
                            schema::MESSAGES,
                            key,
                            format!("a {}-byte record stored as a long value", l.len()),
                        ));
                    }
                };
                let rec = MessageRecord::decode(bytes).map_err(|e| sc.corrupt(schema::MESSAGES, key, e))?;
                each(uid_of(sc, schema::MESSAGES, key)?, rec)?;
                Ok(true)
            },
        )?;
    }
    Ok(())
}

/// The UID at the end of a message or index key.
pub(crate) fn uid_of(sc: &Schema, table: &'static str, key: &[u8]) -> Result<u32> {
    match key.len().checked_sub(4).map(|at| &key[at..]) {
        Some(b) if key.len() >= 12 => Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]])),
        _ => Err(sc.corrupt(table, key, "key too short for a UID".into())),
    }
}

/// Everything that changed in a folder after `since` (exact: every change
/// leaves one entry at its MODSEQ and removes the message's older one).
pub(crate) fn changes_since<S: PageRead + ?Sized>(
    s: &S,
    sc: &Schema,
    folder: &FolderRecord,
    since: u64,
) -> Result<Changes> {
    let mut changes = Changes {
        highest_modseq: folder.highest_modseq,
        ..Changes::default()
    };
    let Some(from) = since.checked_add(1) else {
        return Ok(changes);
    };
    let start = keys::change(folder.id, from);
    let end = keys::change(folder.id, u64::MAX);
    for entry in btree::range(
        s,
        sc.changes.root(),
        Bound::Included(&start[..]),
        Bound::Included(&end[..]),
    )? {
        let (key, value) = entry?;
        let c = ChangeEntry::decode(inline(sc, schema::CHANGES, &key, &value)?)
            .map_err(|e| sc.corrupt(schema::CHANGES, &key, e))?;
        if c.expunged {
            changes.expunged.push(c.uid);
        } else if c.append_modseq > since {
            changes.new.push(c.uid);
        } else {
            changes.changed.push(c.uid);
        }
    }
    changes.new.sort_unstable();
    changes.changed.sort_unstable();
    changes.expunged.sort_unstable();
    Ok(changes)
}
