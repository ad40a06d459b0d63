//! Whole-store verification: every counter recomputed from the messages,
//! every change-log and index entry matched to its message, every body's
//! reference count matched to the messages that share it.

use super::body;
use super::codec::{ChangeEntry, keys};
use super::error::Result;
use super::query;
use super::schema;
use super::search::index_keys;
use super::types::{Flags, UidSet};
use super::view::MailView;
use std::collections::{BTreeMap, BTreeSet};

/// What verification found.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct StoreReport {
    /// Mailboxes checked.
    pub mailboxes: u64,
    /// Folders checked.
    pub folders: u64,
    /// Messages checked.
    pub messages: u64,
    /// Distinct stored bodies.
    pub bodies: u64,
    /// Bytes of messages (as delivered).
    pub message_bytes: u64,
    /// Every inconsistency, described.
    pub problems: Vec<String>,
}

impl StoreReport {
    /// Whether nothing is wrong.
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }
}

pub(crate) fn run<V: MailView>(view: &V) -> Result<StoreReport> {
    let (s, sc) = (view.pages(), view.schema());
    let mut report = StoreReport::default();
    let mut refs: BTreeMap<u64, u32> = BTreeMap::new();
    let mut live_folders = BTreeSet::new();
    let mut index_total = 0u64;
    for mbox in view.list_mailboxes()? {
        report.mailboxes += 1;
        let rec = query::mailbox(s, sc, &mbox.name)?;
        let (mut bytes, mut count) = (0u64, 0u64);
        for (name, f) in query::folders(s, sc, rec.id, "")? {
            report.folders += 1;
            live_folders.insert(f.id);
            let at = format!("{}/{name:?}", mbox.name);
            let (mut n, mut unseen, mut size) = (0u64, 0u64, 0u64);
            for (uid, m) in query::messages(s, sc, f.id, &UidSet::all())? {
                n += 1;
                size = size.saturating_add(m.size);
                if !m.flags.contains(Flags::SEEN) {
                    unseen += 1;
                }
                if uid >= f.uid_next {
                    report
                        .problems
                        .push(format!("{at}: UID {uid} is not below UIDNEXT {}", f.uid_next));
                }
                if m.modseq > f.highest_modseq {
                    report.problems.push(format!(
                        "{at}: UID {uid} has MODSEQ {} above HIGHESTMODSEQ {}",
                        m.modseq, f.highest_modseq
                    ));
                }
                let change = btree_get(s, sc.changes.root(), &keys::change(f.id, m.modseq))?;
                let expect = ChangeEntry {
                    uid,
                    expunged: false,
                    append_modseq: m.append_modseq,
                };
                if change.as_deref() != Some(&expect.encode()[..]) {
                    report.problems.push(format!(
                        "{at}: UID {uid} has no change-log entry at its MODSEQ {}",
                        m.modseq
                    ));
                }
                for key in index_keys(f.id, uid, &m) {
                    index_total += 1;
                    if btree_get(s, sc.index.root(), &key)?.is_none() {
                        report.problems.push(format!(
                            "{at}: UID {uid} is missing index entry {}",
                            super::error::hex(&key)
                        ));
                    }
                }
                let r = refs.entry(m.body).or_default();
                *r = r.saturating_add(1);
            }
            if (n, unseen, size) != (f.messages, f.unseen, f.bytes) {
                report.problems.push(format!(
                    "{at}: counters say {} messages, {} unseen, {} bytes; the messages give {n}, {unseen}, {size}",
                    f.messages, f.unseen, f.bytes
                ));
            }
            let mut changes = 0u64;
            for entry in query::scan(s, sc.changes.root(), &f.id.to_be_bytes())? {
                let (key, value) = entry?;
                changes += 1;
                let c = ChangeEntry::decode(query::inline(sc, schema::CHANGES, &key, &value)?)
                    .map_err(|e| sc.corrupt(schema::CHANGES, &key, e))?;
                if c.expunged && query::message(s, sc, f.id, c.uid)?.is_some() {
                    report
                        .problems
                        .push(format!("{at}: UID {} is both live and expunged", c.uid));
                }
            }
            if changes < n {
                report
                    .problems
                    .push(format!("{at}: {changes} change-log entries for {n} messages"));
            }
            report.messages += n;
            report.message_bytes = report.message_bytes.saturating_add(size);
            bytes = bytes.saturating_add(size);
            count += n;
        }
        if (bytes, count) != (rec.used_bytes, rec.used_messages) {
            report.problems.push(format!(
                "mailbox {:?}: usage says {} bytes in {} messages; the folders hold {bytes} in {count}",
                mbox.name, rec.used_bytes, rec.used_messages
            ));
        }
    }
    let mut indexed = 0u64;
    for entry in query::scan(s, sc.index.root(), &[])? {
        let (key, _) = entry?;
        indexed += 1;
        let fid = key
            .get(..8)
            .map(|b| u64::from_be_bytes(b.try_into().unwrap_or_default()));
        if !fid.is_some_and(|f| live_folders.contains(&f)) {
            report
                .problems
                .push(format!("index entry {} belongs to no folder", super::error::hex(&key)));
        }
    }
    if indexed != index_total {
        report
            .problems
            .push(format!("{indexed} index entries where the messages need {index_total}"));
    }
    let mut stored = BTreeSet::new();
    for entry in query::scan(s, sc.bodies.root(), &[])? {
        let (key, _) = entry?;
        if key.len() == 9 && key[8] == 0 {
            let id = u64::from_be_bytes(key[..8].try_into().unwrap_or_default());
            stored.insert(id);
            match body::open(s, sc.bodies.root(), id, sc.max_body_bytes) {
                Ok(b) => {
                    let want = refs.get(&id).copied().unwrap_or(0);
                    if b.meta.refcount != want {
                        report.problems.push(format!(
                            "body {id}: reference count {} but {want} messages use it",
                            b.meta.refcount
                        ));
                    }
                }
                Err(e) => report.problems.push(format!("body {id}: {e}")),
            }
        }
    }
    for id in refs.keys().filter(|id| !stored.contains(id)) {
        report.problems.push(format!("body {id} is used but not stored"));
    }
    report.bodies = stored.len() as u64;
    Ok(report)
}

fn btree_get<S: crate::pager::PageRead + ?Sized>(
    s: &S,
    root: crate::pager::PageNo,
    key: &[u8],
) -> Result<Option<Vec<u8>>> {
    Ok(crate::btree::get_bytes(s, root, key)?)
}
