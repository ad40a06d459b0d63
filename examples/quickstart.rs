//! The mailbox store as a mail server uses it: create a store, deliver a
//! few messages, list a folder, read a body (whole and partially), set
//! flags, move a message, expunge, and ask what changed since a MODSEQ.
//!
//! cargo run --example quickstart

use mailvault::mailbox::{AppendOptions, Criterion, FlagOp, Flags, MailView, Quota, Store, StoreOptions, UidSet};
use mailvault::vfs::OsVfs;
use std::sync::Arc;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let store = Store::create(Arc::new(OsVfs), dir.path(), StoreOptions::default())?;
    store.create_mailbox(
        "alice",
        Quota {
            bytes: Some(1 << 30),
            messages: None,
        },
    )?;
    store.create_folder("alice", "Archive/2026")?;

    // Delivery: each append is one durable transaction; concurrent
    // deliveries share a log write and an fsync.
    let mut generator = mailvault::mailbox::workload::MailGenerator::new(1);
    for _ in 0..5 {
        let m = generator.message();
        let opts = AppendOptions {
            internal_date: m.internal_date,
            ..AppendOptions::default()
        };
        let uid = store.append("alice", "INBOX", &opts, &m.bytes)?;
        println!("delivered UID {uid}: {} bytes ({:?})", m.bytes.len(), m.kind);
    }

    let rx = store.read();
    let inbox = rx.folder_info("alice", "INBOX")?;
    println!(
        "INBOX: {} messages, {} unseen, UIDVALIDITY {}, UIDNEXT {}, HIGHESTMODSEQ {}",
        inbox.messages, inbox.unseen, inbox.uid_validity, inbox.uid_next, inbox.highest_modseq
    );
    for m in rx.fetch("alice", "INBOX", &UidSet::all())? {
        println!(
            "  UID {:>3}  {:>8} bytes  MODSEQ {}  {:?}",
            m.uid,
            m.size,
            m.modseq,
            m.flags.names()
        );
    }
    let body = rx.read_body("alice", "INBOX", 1)?;
    let mut head = Vec::new();
    rx.read_body_range("alice", "INBOX", 1, 0, 120, &mut head)?;
    println!(
        "UID 1: {} bytes; it starts:\n{}",
        body.len(),
        String::from_utf8_lossy(&head)
    );
    drop(rx);

    // Several operations in one atomic transaction: flag two messages, move
    // one to the archive (a copy and an expunge), expunge another.
    let since = inbox.highest_modseq;
    let moved = store.transaction(|tx| {
        tx.store_flags(
            "alice",
            "INBOX",
            &UidSet::range(1, 2),
            FlagOp::Add,
            Flags::SEEN,
            &["$Important".into()],
            None,
        )?;
        let moved = tx.move_messages("alice", "INBOX", &UidSet::single(3), "alice", "Archive/2026")?;
        tx.expunge("alice", "INBOX", &UidSet::single(4))?;
        Ok(moved)
    })?;
    println!("moved INBOX UID {} to Archive/2026 UID {}", moved[0].0, moved[0].1);

    let rx = store.read();
    let changes = rx.changes_since("alice", "INBOX", since)?;
    println!(
        "changed since MODSEQ {since}: changed {:?}, expunged {:?}, new {:?}",
        changes.changed, changes.expunged, changes.new
    );
    let unseen = rx.search("alice", "INBOX", &[Criterion::NotFlag(Flags::SEEN)])?;
    println!("unseen in INBOX: {unseen:?}");
    let archive = rx.folder_info("alice", "Archive/2026")?;
    println!("Archive/2026: {} message(s)", archive.messages);
    drop(rx);

    let report = store.verify()?;
    println!(
        "verified: {} messages, {} bodies, {} problems",
        report.messages,
        report.bodies,
        report.problems.len()
    );
    store.close()?;
    Ok(())
}
