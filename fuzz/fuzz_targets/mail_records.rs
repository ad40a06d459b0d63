//! The mailbox store reading records it did not write: a small store is
//! built on `SimVfs`, then raw table edits (hostile values put under
//! existing or new keys of any mailbox table, or keys deleted) go in
//! underneath the store's API, as a damaged or malicious file would hold
//! them behind valid page checksums. The store is reopened and every read
//! and write operation runs over it. Any error is fine; a panic, a hang or
//! an unbounded allocation is a bug.

#![no_main]

use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use mailvault::mailbox::{
    AppendOptions, Criterion, FlagOp, Flags, MailView, PropOwner, PropValue, Quota, Store, StoreOptions, UidSet,
};
use mailvault::vfs::SimVfs;
use std::ops::Bound;

const TABLES: [&str; 8] = [
    "mail.meta",
    "mail.mailboxes",
    "mail.folders",
    "mail.messages",
    "mail.changes",
    "mail.index",
    "mail.bodies",
    "mail.props",
];

#[derive(Debug, Arbitrary)]
struct Edit {
    table: u8,
    /// Which existing key to hit (modulo their count), unless `key` is set.
    pick: u16,
    key: Option<Vec<u8>>,
    value: Vec<u8>,
    delete: bool,
}

fn opts() -> StoreOptions {
    StoreOptions {
        page_size: 4096,
        cache_bytes: 1 << 20,
        generation_size: 1 << 20,
        max_body_bytes: 256 << 10,
        ..StoreOptions::default()
    }
}

fn build(disk: &std::sync::Arc<SimVfs>) -> Option<()> {
    let s = Store::create(disk.clone(), "/m", opts()).ok()?;
    s.create_mailbox(
        "a",
        Quota {
            bytes: Some(1 << 20),
            messages: Some(100),
        },
    )
    .ok()?;
    s.create_folder("a", "X/Y").ok()?;
    let text = b"Subject: t\r\n\r\nsome words of text ".repeat(2500);
    let mut noise = vec![0u8; 20_000];
    let mut x = 7u64;
    for b in noise.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    let kw = AppendOptions {
        flags: Flags::SEEN,
        keywords: vec!["k".into()],
        internal_date: 5,
    };
    s.append("a", "INBOX", &kw, &text).ok()?;
    s.append("a", "INBOX", &AppendOptions::default(), &noise).ok()?;
    s.append("a", "INBOX", &AppendOptions::default(), b"short").ok()?;
    s.transaction(|tx| {
        tx.copy("a", "INBOX", &UidSet::range(1, 2), "a", "X/Y")?;
        tx.expunge("a", "INBOX", &UidSet::single(3))?;
        tx.set_prop("a", "INBOX", PropOwner::Message(1), "p", &PropValue::Text("v".into()))?;
        tx.set_prop("a", "X/Y", PropOwner::Folder, "q", &PropValue::I64(-1))
    })
    .ok()?;
    s.close().ok()
}

fn apply(disk: &std::sync::Arc<SimVfs>, edits: &[Edit]) -> Option<()> {
    let db = mailvault::txn::Database::open(disk.clone(), "/m", opts_db()).ok()?;
    let mut tx = db.begin_write();
    for e in edits.iter().take(4) {
        let table = tx.open_table(TABLES[e.table as usize % TABLES.len()]).ok()?;
        let key = match &e.key {
            Some(k) => k.clone(),
            None => {
                let keys: Vec<Vec<u8>> = tx
                    .range(&table, Bound::Unbounded, Bound::Unbounded)
                    .ok()?
                    .filter_map(|r| r.ok().map(|(k, _)| k))
                    .collect();
                if keys.is_empty() {
                    continue;
                }
                keys[e.pick as usize % keys.len()].clone()
            }
        };
        let r = if e.delete {
            tx.delete(&table, &key).map(|_| ())
        } else {
            tx.put(&table, &key, &e.value)
        };
        r.ok()?;
    }
    tx.commit().ok()?;
    db.close().ok()
}

fn opts_db() -> mailvault::txn::DbOptions {
    // The same database options the store derives: open through Store to get them.
    let mut db = mailvault::txn::DbOptions {
        page_size: 4096,
        cache_bytes: 1 << 20,
        ..Default::default()
    };
    db.log.generation_size = 1 << 20;
    db
}

fn exercise(s: &Store) {
    let rx = s.read();
    let _ = rx.list_mailboxes();
    let _ = rx.mailbox_info("a");
    for f in ["INBOX", "X", "X/Y"] {
        let _ = rx.folder_info("a", f);
        let uids = rx.uids("a", f).unwrap_or_default();
        let _ = rx.fetch("a", f, &UidSet::all());
        for &uid in uids.iter().take(8) {
            let _ = rx.read_body("a", f, uid);
            let _ = rx.read_body_range("a", f, uid, 17_000, 9000, &mut Vec::new());
            let _ = rx.body_checksum("a", f, uid);
            let _ = rx.props("a", f, PropOwner::Message(uid));
        }
        let _ = rx.changes_since("a", f, 0);
        let _ = rx.search(
            "a",
            f,
            &[Criterion::Keyword("k".into()), Criterion::NotFlag(Flags::DRAFT)],
        );
        let _ = rx.search(
            "a",
            f,
            &[
                Criterion::Since(0),
                Criterion::Larger(10),
                Criterion::NotFlag(Flags::SEEN),
            ],
        );
        let _ = rx.props("a", f, PropOwner::Folder);
    }
    let _ = s.verify();
    drop(rx);
    let _ = s.transaction(|tx| {
        let _ = tx.store_flags("a", "INBOX", &UidSet::all(), FlagOp::Add, Flags::FLAGGED, &[], Some(3));
        let _ = tx.copy("a", "INBOX", &UidSet::all(), "a", "X");
        let _ = tx.move_messages("a", "X/Y", &UidSet::all(), "a", "INBOX");
        let _ = tx.expunge("a", "INBOX", &UidSet::range(1, 2));
        let _ = tx.append("a", "X", &AppendOptions::default(), b"new");
        let _ = tx.rename_folder("a", "X", "Z");
        let _ = tx.delete_folder("a", "Z/Y");
        tx.delete_mailbox("a")
    });
    let _ = s.verify();
}

fuzz_target!(|edits: Vec<Edit>| {
    let disk = SimVfs::new(1);
    if build(&disk).is_none() {
        panic!("building the template store failed");
    }
    if apply(&disk, &edits).is_none() {
        return;
    }
    if let Ok(s) = Store::open(disk.clone(), "/m", opts()) {
        exercise(&s);
    }
});
