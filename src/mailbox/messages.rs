//! Message operations of [`MailTxn`]: append, STORE, COPY, MOVE, EXPUNGE.
//! Every change keeps the folder's counters, the change log, the indexes,
//! the body reference counts and the mailbox's usage exact, in the same
//! transaction.

use super::body::BodyMeta;
use super::codec::{ChangeEntry, MessageRecord, keys};
use super::error::{MailError, QuotaKind, Result};
use super::prepare::{self, PreparedBody};
use super::props;
use super::query::{self, FolderRef};
use super::schema::{self, MAX_KEYWORDS, Schema};
use super::search::index_keys;
use super::txn::MailTxn;
use super::types::{AppendOptions, FlagOp, Flags, PropOwner, StoreResult, UidSet};
use super::view::MailView;

/// A folder counter plus `add` minus `sub`; leaving the range means the
/// stored counters are corrupt.
fn count(sc: &Schema, folder_key: &[u8], value: u64, add: u64, sub: u64) -> Result<u64> {
    value.checked_add(add).and_then(|v| v.checked_sub(sub)).ok_or_else(|| {
        sc.corrupt(
            schema::FOLDERS,
            folder_key,
            format!("counter {value} cannot take +{add} -{sub}"),
        )
    })
}

/// Checks, dedupes and sorts keywords.
fn keywords(list: &[String]) -> Result<Vec<String>> {
    let mut out: Vec<String> = Vec::with_capacity(list.len());
    for k in list {
        schema::check_keyword(k)?;
        out.push(k.clone());
    }
    out.sort();
    out.dedup();
    if out.len() > MAX_KEYWORDS {
        return Err(MailError::InvalidArgument(format!(
            "{} keywords on one message, at most {MAX_KEYWORDS}",
            out.len()
        )));
    }
    Ok(out)
}

impl MailTxn<'_, '_> {
    /// Refuses the write if it would take the mailbox past a quota.
    fn check_quota(f: &FolderRef, add_bytes: u64, add_messages: u64) -> Result<()> {
        let m = &f.mbox;
        let needed = m.used_bytes.saturating_add(add_bytes);
        if needed > m.quota_bytes {
            return Err(MailError::QuotaExceeded {
                mailbox: f.mailbox.clone(),
                kind: QuotaKind::Bytes,
                needed,
                limit: m.quota_bytes,
            });
        }
        let needed = m.used_messages.saturating_add(add_messages);
        if needed > m.quota_messages {
            return Err(MailError::QuotaExceeded {
                mailbox: f.mailbox.clone(),
                kind: QuotaKind::Messages,
                needed,
                limit: m.quota_messages,
            });
        }
        Ok(())
    }

    fn bump_modseq(f: &mut FolderRef) -> Result<u64> {
        f.rec.highest_modseq = f
            .rec
            .highest_modseq
            .checked_add(1)
            .ok_or_else(|| MailError::InvalidArgument(format!("folder {:?} has no MODSEQ left", f.name)))?;
        Ok(f.rec.highest_modseq)
    }

    fn take_uid(f: &mut FolderRef) -> Result<u32> {
        let uid = f.rec.uid_next;
        if uid == u32::MAX {
            return Err(MailError::UidsExhausted(f.name.clone()));
        }
        f.rec.uid_next += 1;
        Ok(uid)
    }

    /// Writes a message's record, change-log entry and index entries, and
    /// counts it in the folder and mailbox.
    fn insert_message(&mut self, f: &mut FolderRef, uid: u32, m: &MessageRecord) -> Result<()> {
        self.tx
            .put(&self.sc.messages, &keys::message(f.rec.id, uid), &m.encode())?;
        let change = ChangeEntry {
            uid,
            expunged: false,
            append_modseq: m.append_modseq,
        };
        self.tx
            .put(&self.sc.changes, &keys::change(f.rec.id, m.modseq), &change.encode())?;
        for key in index_keys(f.rec.id, uid, m) {
            self.tx.put(&self.sc.index, &key, &[])?;
        }
        let unseen = u64::from(!m.flags.contains(Flags::SEEN));
        let sc = self.sc;
        let at = keys::folder(f.mbox.id, &f.name);
        f.rec.messages = count(sc, &at, f.rec.messages, 1, 0)?;
        f.rec.bytes = count(sc, &at, f.rec.bytes, m.size, 0)?;
        f.rec.unseen = count(sc, &at, f.rec.unseen, unseen, 0)?;
        f.mbox.used_bytes = f.mbox.used_bytes.saturating_add(m.size);
        f.mbox.used_messages = f.mbox.used_messages.saturating_add(1);
        Ok(())
    }

    fn put_counts(&mut self, f: &FolderRef) -> Result<()> {
        self.put_folder(f)?;
        self.put_mailbox(&f.mailbox, &f.mbox)
    }

    /// Stores a new body with one reference; returns its id.
    fn insert_body(&mut self, body: PreparedBody) -> Result<u64> {
        if body.raw_len > self.sc.max_body_bytes {
            return Err(MailError::BodyTooLarge {
                len: body.raw_len,
                max: self.sc.max_body_bytes,
            });
        }
        // Checked before anything is written: a refused body leaves no meta record.
        if body.data.page_size() != self.sc.page_size {
            return Err(MailError::InvalidArgument(format!(
                "a body prepared for {}-byte pages appended to a store of {}-byte pages",
                body.data.page_size(),
                self.sc.page_size
            )));
        }
        let id = self.next_id()?;
        self.tx
            .put(&self.sc.bodies, &keys::body_meta(id), &BodyMeta::of(&body).encode())?;
        self.tx.put_built(&self.sc.bodies, &keys::body_data(id), body.data)?;
        Ok(id)
    }

    fn body_meta(&mut self, id: u64) -> Result<BodyMeta> {
        let key = keys::body_meta(id);
        let b = self.tx.get(&self.sc.bodies, &key)?.ok_or_else(|| {
            self.sc
                .corrupt(schema::BODIES, &key, "a message refers to a missing body".into())
        })?;
        BodyMeta::decode(&b).map_err(|e| self.sc.corrupt(schema::BODIES, &key, e))
    }

    fn retain_body(&mut self, id: u64) -> Result<()> {
        let mut meta = self.body_meta(id)?;
        meta.refcount = meta
            .refcount
            .checked_add(1)
            .ok_or_else(|| MailError::InvalidArgument(format!("body {id} has too many copies")))?;
        self.tx.put(&self.sc.bodies, &keys::body_meta(id), &meta.encode())?;
        Ok(())
    }

    /// Drops one reference; the last one frees the body's pages.
    pub(crate) fn release_body(&mut self, id: u64) -> Result<()> {
        let mut meta = self.body_meta(id)?;
        meta.refcount -= 1;
        if meta.refcount == 0 {
            for key in [keys::body_meta(id), keys::body_data(id)] {
                self.tx.delete(&self.sc.bodies, &key)?;
            }
        } else {
            self.tx.put(&self.sc.bodies, &keys::body_meta(id), &meta.encode())?;
        }
        Ok(())
    }

    /// Compresses `bytes` and appends them; returns the UID (UIDPLUS).
    pub fn append(&mut self, mailbox: &str, folder: &str, opts: &AppendOptions, bytes: &[u8]) -> Result<u32> {
        let body = prepare::prepare(&mut &bytes[..], self.sc.text, self.sc.max_body_bytes, self.sc.page_size)?;
        self.append_prepared(mailbox, folder, opts, body)
    }

    /// Appends a body prepared outside the transaction (see
    /// [`super::Store::prepare_body`]); returns the UID. The body's pages
    /// become the message's: to file one body in several folders, append it
    /// once and copy the message.
    pub fn append_prepared(
        &mut self,
        mailbox: &str,
        folder: &str,
        opts: &AppendOptions,
        body: PreparedBody,
    ) -> Result<u32> {
        let mut f = query::folder(self.pages(), self.sc, mailbox, folder)?;
        let kw = keywords(&opts.keywords)?;
        Self::check_quota(&f, body.raw_len, 1)?;
        let uid = Self::take_uid(&mut f)?;
        let modseq = Self::bump_modseq(&mut f)?;
        let size = body.raw_len;
        let id = self.insert_body(body)?;
        let m = MessageRecord {
            modseq,
            append_modseq: modseq,
            internal_date: opts.internal_date,
            size,
            flags: opts.flags,
            body: id,
            keywords: kw,
        };
        self.insert_message(&mut f, uid, &m)?;
        self.put_counts(&f)?;
        Ok(uid)
    }

    /// Changes flags and keywords (IMAP STORE). With `unchanged_since`, a
    /// message changed after that MODSEQ is left alone and reported in
    /// `modified` (CONDSTORE). Each message that changes gets a new MODSEQ.
    #[allow(clippy::too_many_arguments)]
    pub fn store_flags(
        &mut self,
        mailbox: &str,
        folder: &str,
        set: &UidSet,
        op: FlagOp,
        flags: Flags,
        keyword_list: &[String],
        unchanged_since: Option<u64>,
    ) -> Result<StoreResult> {
        let mut f = query::folder(self.pages(), self.sc, mailbox, folder)?;
        let kw = keywords(keyword_list)?;
        let mut result = StoreResult::default();
        for (uid, old) in query::messages(self.pages(), self.sc, f.rec.id, set)? {
            if unchanged_since.is_some_and(|u| old.modseq > u) {
                result.modified.push(uid);
                continue;
            }
            let mut new = old.clone();
            match op {
                FlagOp::Set => {
                    new.flags = flags;
                    new.keywords = kw.clone();
                }
                FlagOp::Add => {
                    new.flags |= flags;
                    new.keywords.extend(kw.iter().cloned());
                    new.keywords.sort();
                    new.keywords.dedup();
                }
                FlagOp::Remove => {
                    new.flags = new.flags.without(flags);
                    new.keywords.retain(|k| !kw.contains(k));
                }
            }
            if new.keywords.len() > MAX_KEYWORDS {
                return Err(MailError::InvalidArgument(format!(
                    "message {uid} would have {} keywords, at most {MAX_KEYWORDS}",
                    new.keywords.len()
                )));
            }
            if new.flags == old.flags && new.keywords == old.keywords {
                continue;
            }
            new.modseq = Self::bump_modseq(&mut f)?;
            self.replace_message(&mut f, uid, &old, &new)?;
            result.changed.push((uid, new.modseq));
        }
        if !result.changed.is_empty() {
            self.put_folder(&f)?;
        }
        Ok(result)
    }

    fn replace_message(&mut self, f: &mut FolderRef, uid: u32, old: &MessageRecord, new: &MessageRecord) -> Result<()> {
        self.tx
            .put(&self.sc.messages, &keys::message(f.rec.id, uid), &new.encode())?;
        self.tx.delete(&self.sc.changes, &keys::change(f.rec.id, old.modseq))?;
        let change = ChangeEntry {
            uid,
            expunged: false,
            append_modseq: new.append_modseq,
        };
        self.tx
            .put(&self.sc.changes, &keys::change(f.rec.id, new.modseq), &change.encode())?;
        let old_keys = index_keys(f.rec.id, uid, old);
        let new_keys = index_keys(f.rec.id, uid, new);
        for k in old_keys.iter().filter(|k| !new_keys.contains(k)) {
            self.tx.delete(&self.sc.index, k)?;
        }
        for k in new_keys.iter().filter(|k| !old_keys.contains(k)) {
            self.tx.put(&self.sc.index, k, &[])?;
        }
        let at = keys::folder(f.mbox.id, &f.name);
        f.rec.unseen = match (old.flags.contains(Flags::SEEN), new.flags.contains(Flags::SEEN)) {
            (false, true) => count(self.sc, &at, f.rec.unseen, 0, 1)?,
            (true, false) => count(self.sc, &at, f.rec.unseen, 1, 0)?,
            _ => f.rec.unseen,
        };
        Ok(())
    }

    /// Copies messages to another folder, of this or another mailbox of the
    /// store. The bodies are shared, not duplicated. Returns (source UID,
    /// new UID) pairs in UID order (UIDPLUS COPYUID).
    pub fn copy(
        &mut self,
        mailbox: &str,
        folder: &str,
        set: &UidSet,
        to_mailbox: &str,
        to_folder: &str,
    ) -> Result<Vec<(u32, u32)>> {
        let src = query::folder(self.pages(), self.sc, mailbox, folder)?;
        self.copy_from(&src, set, to_mailbox, to_folder, true)
    }

    fn copy_from(
        &mut self,
        src: &FolderRef,
        set: &UidSet,
        to_mailbox: &str,
        to_folder: &str,
        charge: bool,
    ) -> Result<Vec<(u32, u32)>> {
        let mut dst = query::folder(self.pages(), self.sc, to_mailbox, to_folder)?;
        if dst.rec.id == src.rec.id {
            return Err(MailError::InvalidArgument(format!(
                "copy of folder {:?} onto itself",
                src.name
            )));
        }
        let messages = query::messages(self.pages(), self.sc, src.rec.id, set)?;
        if charge {
            let bytes = messages.iter().fold(0u64, |sum, (_, m)| sum.saturating_add(m.size));
            Self::check_quota(&dst, bytes, messages.len() as u64)?;
        }
        let mut pairs = Vec::with_capacity(messages.len());
        for (uid, m) in messages {
            let new_uid = Self::take_uid(&mut dst)?;
            let modseq = Self::bump_modseq(&mut dst)?;
            self.retain_body(m.body)?;
            let copy = MessageRecord {
                modseq,
                append_modseq: modseq,
                ..m
            };
            self.insert_message(&mut dst, new_uid, &copy)?;
            self.copy_props(src.rec.id, uid, dst.rec.id, new_uid)?;
            pairs.push((uid, new_uid));
        }
        if !pairs.is_empty() {
            self.put_counts(&dst)?;
        }
        Ok(pairs)
    }

    fn copy_props(&mut self, from_folder: u64, from_uid: u32, to_folder: u64, to_uid: u32) -> Result<()> {
        let prefix = props::owner_prefix(from_folder, PropOwner::Message(from_uid));
        let mut found = Vec::new();
        for entry in query::scan(self.tx.pages(), self.sc.props.root(), &prefix)? {
            let (key, value) = entry?;
            let value = crate::btree::read_value(self.tx.pages(), &value)?;
            found.push((key[prefix.len()..].to_vec(), value));
        }
        for (name, value) in found {
            let mut key = props::owner_prefix(to_folder, PropOwner::Message(to_uid));
            key.extend_from_slice(&name);
            self.tx.put(&self.sc.props, &key, &value)?;
        }
        Ok(())
    }

    /// Moves messages (IMAP MOVE): a copy and an expunge in this one
    /// transaction. Within one mailbox the quota is not charged twice.
    pub fn move_messages(
        &mut self,
        mailbox: &str,
        folder: &str,
        set: &UidSet,
        to_mailbox: &str,
        to_folder: &str,
    ) -> Result<Vec<(u32, u32)>> {
        let src = query::folder(self.pages(), self.sc, mailbox, folder)?;
        let dst_mbox = query::mailbox(self.pages(), self.sc, to_mailbox)?;
        let pairs = self.copy_from(&src, set, to_mailbox, to_folder, dst_mbox.id != src.mbox.id)?;
        let moved: Vec<u32> = pairs.iter().map(|p| p.0).collect();
        self.expunge(mailbox, folder, &UidSet::of(&moved))?;
        Ok(pairs)
    }

    /// Removes messages (UID EXPUNGE). Each leaves a tombstone in the
    /// change log at a new MODSEQ, so QRESYNC clients learn of it. Returns
    /// the UIDs removed.
    pub fn expunge(&mut self, mailbox: &str, folder: &str, set: &UidSet) -> Result<Vec<u32>> {
        let mut f = query::folder(self.pages(), self.sc, mailbox, folder)?;
        let messages = query::messages(self.pages(), self.sc, f.rec.id, set)?;
        let mut gone = Vec::with_capacity(messages.len());
        for (uid, m) in messages {
            self.tx.delete(&self.sc.messages, &keys::message(f.rec.id, uid))?;
            self.tx.delete(&self.sc.changes, &keys::change(f.rec.id, m.modseq))?;
            for key in index_keys(f.rec.id, uid, &m) {
                self.tx.delete(&self.sc.index, &key)?;
            }
            let props_table = self.sc.props.clone();
            self.delete_prefix(&props_table, &props::owner_prefix(f.rec.id, PropOwner::Message(uid)))?;
            let modseq = Self::bump_modseq(&mut f)?;
            let tomb = ChangeEntry {
                uid,
                expunged: true,
                append_modseq: m.append_modseq,
            };
            self.tx
                .put(&self.sc.changes, &keys::change(f.rec.id, modseq), &tomb.encode())?;
            self.release_body(m.body)?;
            let at = keys::folder(f.mbox.id, &f.name);
            f.rec.messages = count(self.sc, &at, f.rec.messages, 0, 1)?;
            f.rec.bytes = count(self.sc, &at, f.rec.bytes, 0, m.size)?;
            f.rec.unseen = count(self.sc, &at, f.rec.unseen, 0, u64::from(!m.flags.contains(Flags::SEEN)))?;
            f.mbox.used_bytes = f.mbox.used_bytes.saturating_sub(m.size);
            f.mbox.used_messages = f.mbox.used_messages.saturating_sub(1);
            gone.push(uid);
        }
        if !gone.is_empty() {
            self.put_counts(&f)?;
        }
        Ok(gone)
    }
}
