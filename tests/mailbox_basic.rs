//! The mailbox store's API: mailboxes, folders, messages, flags and MODSEQ,
//! copy/move/expunge, changes since a MODSEQ, search, properties and quotas
//! (bad input and refused opens: `mailbox_refusals.rs`).

use mailvault::mailbox::{
    AppendOptions, Criterion, FlagOp, Flags, MailError, MailView, PropOwner, PropValue, Quota, Store, StoreOptions,
    UidSet,
};
use mailvault::vfs::SimVfs;

#[path = "common/mail_store.rs"]
mod mail_store;

use mail_store::{at, msg, opts, store};

#[test]
fn deliver_list_read_move_and_expunge() {
    let s = store();
    s.create_mailbox("alice", Quota::default()).unwrap();
    s.create_folder("alice", "Work/Projects").unwrap();
    let mut uids = Vec::new();
    for n in 0..20 {
        uids.push(
            s.append("alice", "INBOX", &at(1000 + n as i64, Flags::EMPTY), &msg(n))
                .unwrap(),
        );
    }
    assert_eq!(
        uids,
        (1..=20).collect::<Vec<u32>>(),
        "UIDs are assigned in order from 1"
    );
    let rx = s.read();
    let inbox = rx.folder_info("alice", "inbox").unwrap();
    assert_eq!(inbox.name, "INBOX", "INBOX is case-insensitive");
    assert_eq!((inbox.messages, inbox.unseen, inbox.uid_next), (20, 20, 21));
    assert_eq!(inbox.bytes, (0..20).map(|n| msg(n).len() as u64).sum::<u64>());
    let names: Vec<String> = rx.list_folders("alice").unwrap().into_iter().map(|f| f.name).collect();
    assert_eq!(
        names,
        ["INBOX", "Work", "Work/Projects"],
        "CREATE makes the missing parent"
    );
    assert_eq!(rx.read_body("alice", "INBOX", 7).unwrap(), msg(6));
    let meta = rx.fetch("alice", "INBOX", &UidSet::range(5, 7)).unwrap();
    assert_eq!(meta.iter().map(|m| m.uid).collect::<Vec<_>>(), [5, 6, 7]);
    assert_eq!(meta[0].internal_date, 1004);
    drop(rx);

    let moved = s
        .transaction(|tx| {
            tx.move_messages(
                "alice",
                "INBOX",
                &UidSet::parse("2:4,9").unwrap(),
                "alice",
                "Work/Projects",
            )
        })
        .unwrap();
    assert_eq!(moved, [(2, 1), (3, 2), (4, 3), (9, 4)]);
    let gone = s
        .transaction(|tx| tx.expunge("alice", "INBOX", &UidSet::of(&[1, 2, 5])))
        .unwrap();
    assert_eq!(gone, [1, 5], "UID 2 had moved away already");
    let rx = s.read();
    assert_eq!(rx.folder_info("alice", "INBOX").unwrap().messages, 14);
    assert_eq!(rx.folder_info("alice", "Work/Projects").unwrap().messages, 4);
    assert_eq!(rx.read_body("alice", "Work/Projects", 4).unwrap(), msg(8));
    assert!(matches!(
        rx.read_body("alice", "INBOX", 5),
        Err(MailError::NoSuchMessage { uid: 5, .. })
    ));
    let info = rx.mailbox_info("alice").unwrap();
    assert_eq!(info.used_messages, 18);
    let report = s.verify().unwrap();
    assert!(report.is_clean(), "{:?}", report.problems);
    assert_eq!(report.bodies, 18);
}

#[test]
fn flags_modseq_unchangedsince_and_changes_since() {
    let s = store();
    s.create_mailbox("bob", Quota::default()).unwrap();
    for n in 0..6 {
        s.append("bob", "INBOX", &at(0, Flags::EMPTY), &msg(n)).unwrap();
    }
    let base = s.read().folder_info("bob", "INBOX").unwrap().highest_modseq;
    let r = s
        .transaction(|tx| {
            tx.store_flags(
                "bob",
                "INBOX",
                &UidSet::range(1, 3),
                FlagOp::Add,
                Flags::SEEN,
                &["work".into()],
                None,
            )
        })
        .unwrap();
    assert_eq!(r.changed.iter().map(|c| c.0).collect::<Vec<_>>(), [1, 2, 3]);
    assert!(
        r.changed.windows(2).all(|w| w[0].1 < w[1].1),
        "each change has its own MODSEQ"
    );
    let rx = s.read();
    assert_eq!(rx.folder_info("bob", "INBOX").unwrap().unseen, 3);
    assert_eq!(
        rx.search("bob", "INBOX", &[Criterion::NotFlag(Flags::SEEN)]).unwrap(),
        [4, 5, 6]
    );
    assert_eq!(
        rx.search("bob", "INBOX", &[Criterion::Keyword("work".into())]).unwrap(),
        [1, 2, 3]
    );
    let m2 = rx.fetch("bob", "INBOX", &UidSet::single(2)).unwrap()[0].modseq;
    drop(rx);
    // UNCHANGEDSINCE below message 2's MODSEQ: 2 is reported, 4 changes.
    let r = s
        .transaction(move |tx| {
            tx.store_flags(
                "bob",
                "INBOX",
                &UidSet::of(&[2, 4]),
                FlagOp::Add,
                Flags::FLAGGED,
                &[],
                Some(m2 - 1),
            )
        })
        .unwrap();
    assert_eq!(r.modified, [2]);
    assert_eq!(r.changed.len(), 1);
    s.transaction(|tx| tx.expunge("bob", "INBOX", &UidSet::single(6)))
        .unwrap();
    s.append("bob", "INBOX", &at(0, Flags::SEEN), &msg(9)).unwrap();
    let changes = s.read().changes_since("bob", "INBOX", base).unwrap();
    assert_eq!(changes.changed, [1, 2, 3, 4]);
    assert_eq!(changes.expunged, [6]);
    assert_eq!(changes.new, [7]);
    assert_eq!(
        changes.highest_modseq,
        s.read().folder_info("bob", "INBOX").unwrap().highest_modseq
    );
    // A STORE that changes nothing does not bump MODSEQ.
    let before = s.read().folder_info("bob", "INBOX").unwrap().highest_modseq;
    let r = s
        .transaction(|tx| tx.store_flags("bob", "INBOX", &UidSet::single(1), FlagOp::Add, Flags::SEEN, &[], None))
        .unwrap();
    assert!(r.changed.is_empty());
    assert_eq!(s.read().folder_info("bob", "INBOX").unwrap().highest_modseq, before);
    assert!(s.verify().unwrap().is_clean());
}

#[test]
fn search_by_date_size_and_combinations() {
    let s = store();
    s.create_mailbox("carol", Quota::default()).unwrap();
    for n in 0..30usize {
        let flags = if n % 3 == 0 { Flags::FLAGGED } else { Flags::EMPTY };
        s.append("carol", "INBOX", &at(n as i64 * 100, flags), &vec![b'x'; 100 + n * 10])
            .unwrap();
    }
    let rx = s.read();
    let uids = |c: &[Criterion]| rx.search("carol", "INBOX", c).unwrap();
    assert_eq!(uids(&[Criterion::Since(500), Criterion::Before(800)]), [6, 7, 8]);
    assert_eq!(uids(&[Criterion::Larger(370)]), [29, 30]);
    assert_eq!(uids(&[Criterion::Smaller(120)]), [1, 2]);
    assert_eq!(
        uids(&[Criterion::Flag(Flags::FLAGGED), Criterion::Since(1000)]),
        [13, 16, 19, 22, 25, 28]
    );
    assert_eq!(
        uids(&[Criterion::NotFlag(Flags::FLAGGED), Criterion::Uid(UidSet::range(1, 5))]),
        [2, 3, 5]
    );
    assert_eq!(uids(&[Criterion::Before(-5)]), Vec::<u32>::new());
    assert_eq!(uids(&[]).len(), 30);
}

#[test]
fn copies_share_one_body_and_the_last_expunge_frees_it() {
    let s = store();
    s.create_mailbox("dave", Quota::default()).unwrap();
    s.create_mailbox("erin", Quota::default()).unwrap();
    let body = vec![b'a'; 100_000];
    s.append("dave", "INBOX", &AppendOptions::default(), &body).unwrap();
    let pairs = s
        .transaction(|tx| {
            let a = tx.copy("dave", "INBOX", &UidSet::all(), "erin", "INBOX")?;
            let b = tx.copy("dave", "INBOX", &UidSet::all(), "dave", "Trash").or_else(|_| {
                tx.create_folder("dave", "Trash")?;
                tx.copy("dave", "INBOX", &UidSet::all(), "dave", "Trash")
            })?;
            Ok((a, b))
        })
        .unwrap();
    assert_eq!(pairs.0, [(1, 1)]);
    let rx = s.read();
    let ids: Vec<u64> = [("dave", "INBOX"), ("erin", "INBOX"), ("dave", "Trash")]
        .iter()
        .map(|(m, f)| rx.fetch(m, f, &UidSet::all()).unwrap()[0].body_id)
        .collect();
    assert!(ids.iter().all(|&i| i == ids[0]), "one body shared: {ids:?}");
    assert_eq!(s.verify().unwrap().bodies, 1);
    drop(rx);
    for (m, f) in [("dave", "INBOX"), ("erin", "INBOX")] {
        s.transaction(move |tx| tx.expunge(m, f, &UidSet::all())).unwrap();
    }
    assert_eq!(s.read().read_body("dave", "Trash", 1).unwrap(), body);
    s.transaction(|tx| tx.expunge("dave", "Trash", &UidSet::all())).unwrap();
    let report = s.verify().unwrap();
    assert!(report.is_clean(), "{:?}", report.problems);
    assert_eq!(report.bodies, 0);
}

#[test]
fn partial_fetch_reads_only_the_chunks_it_needs() {
    let s = store();
    s.create_mailbox("frank", Quota::default()).unwrap();
    let mut g = mailvault::mailbox::workload::MailGenerator::new(3);
    let m = g.message_of(mailvault::mailbox::workload::MessageKind::Large, 2 << 20);
    let uid = s.append("frank", "INBOX", &AppendOptions::default(), &m.bytes).unwrap();
    let rx = s.read();
    let mut out = Vec::new();
    let n = rx
        .read_body_range("frank", "INBOX", uid, 1_000_000, 5000, &mut out)
        .unwrap();
    assert_eq!(n, 5000);
    assert_eq!(out, &m.bytes[1_000_000..1_005_000]);
    let mut head = Vec::new();
    let before = rx.pages_read();
    rx.read_body_range("frank", "INBOX", uid, 0, 4096, &mut head).unwrap();
    let pages = rx.pages_read() - before;
    assert_eq!(head, &m.bytes[..4096]);
    assert!(pages <= 16, "a 4 KiB partial fetch of a 2 MiB body read {pages} pages");
    let mut tail = Vec::new();
    let n = rx
        .read_body_range("frank", "INBOX", uid, (2 << 20) - 10, 100, &mut tail)
        .unwrap();
    assert_eq!((n, &tail[..]), (10, &m.bytes[(2 << 20) - 10..]));
    assert_eq!(
        rx.read_body_range("frank", "INBOX", uid, 3 << 20, 10, &mut Vec::new())
            .unwrap(),
        0
    );
    assert_eq!(rx.read_body("frank", "INBOX", uid).unwrap(), m.bytes);
}

/// Every stored layout reads back whole and by range, at both page sizes:
/// an LZ4 body inline and in long-value pages, one that did not shrink,
/// raw bodies short and long, and zstd chunks.
#[test]
fn every_body_layout_reads_back_whole_and_by_range() {
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let mut noise = |n: usize| -> Vec<u8> {
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    };
    let text =
        |n: usize| -> Vec<u8> { b"Subject: layouts\r\n\r\nwords and more words ".repeat(n / 40 + 1)[..n].to_vec() };
    // Half text, half noise: shrinks, but stays past an inline value.
    let mixed = |noise: &mut dyn FnMut(usize) -> Vec<u8>, n: usize| -> Vec<u8> {
        let mut v = text(n / 2);
        v.extend(noise(n - n / 2));
        v
    };
    let bodies: Vec<Vec<u8>> = vec![
        b"x".to_vec(),
        text(900),
        text(6000),
        text(16 << 10),
        mixed(&mut noise, 12_000),
        noise(300),
        noise(10_000),
        noise(50_000),
        text(100_000),
        mixed(&mut noise, 70_000),
    ];
    for page_size in [4096, 16384] {
        let s = Store::create(SimVfs::new(1), "/mail", StoreOptions { page_size, ..opts() }).unwrap();
        s.create_mailbox("olga", Quota::default()).unwrap();
        let uids: Vec<u32> = bodies
            .iter()
            .map(|b| s.append("olga", "INBOX", &AppendOptions::default(), b).unwrap())
            .collect();
        let rx = s.read();
        for (uid, body) in uids.iter().zip(&bodies) {
            let len = body.len();
            assert_eq!(
                &rx.read_body("olga", "INBOX", *uid).unwrap(),
                body,
                "{len} bytes, pages of {page_size}"
            );
            let (from, to) = (len / 3, (len / 3 + 5000).min(len));
            let mut part = Vec::new();
            let n = rx
                .read_body_range("olga", "INBOX", *uid, from as u64, 5000, &mut part)
                .unwrap();
            assert_eq!(
                (n as usize, &part[..]),
                (to - from, &body[from..to]),
                "{len} bytes, pages of {page_size}"
            );
            let (size, crc) = rx.body_checksum("olga", "INBOX", *uid).unwrap();
            assert_eq!((size, crc), (len as u64, crc32c::crc32c(body)));
        }
        let report = s.verify().unwrap();
        assert!(report.is_clean(), "{:?}", report.problems);
    }
}

#[test]
fn folder_rename_takes_children_and_keeps_uids() {
    let s = store();
    s.create_mailbox("grace", Quota::default()).unwrap();
    s.create_folder("grace", "A/B/C").unwrap();
    s.create_folder("grace", "AB").unwrap();
    s.append("grace", "A/B", &AppendOptions::default(), b"x").unwrap();
    let validity = s.read().folder_info("grace", "A/B").unwrap().uid_validity;
    s.transaction(|tx| tx.rename_folder("grace", "A", "Z/Y")).unwrap();
    let rx = s.read();
    let names: Vec<String> = rx.list_folders("grace").unwrap().into_iter().map(|f| f.name).collect();
    assert_eq!(names, ["AB", "INBOX", "Z", "Z/Y", "Z/Y/B", "Z/Y/B/C"]);
    let moved = rx.folder_info("grace", "Z/Y/B").unwrap();
    assert_eq!((moved.uid_validity, moved.messages), (validity, 1));
    assert_eq!(rx.read_body("grace", "Z/Y/B", 1).unwrap(), b"x");
    drop(rx);
    // A folder deleted and created again gets a new UIDVALIDITY.
    s.transaction(|tx| tx.delete_folder("grace", "AB")).unwrap();
    s.create_folder("grace", "AB").unwrap();
    assert!(s.read().folder_info("grace", "AB").unwrap().uid_validity > validity);
    assert!(s.verify().unwrap().is_clean());
}

#[test]
fn properties_are_typed_and_follow_copies() {
    let s = store();
    s.create_mailbox("heidi", Quota::default()).unwrap();
    s.append("heidi", "INBOX", &AppendOptions::default(), b"hello").unwrap();
    s.transaction(|tx| {
        tx.set_prop(
            "heidi",
            "INBOX",
            PropOwner::Folder,
            "color",
            &PropValue::Text("blue".into()),
        )?;
        tx.set_prop(
            "heidi",
            "INBOX",
            PropOwner::Message(1),
            "spam-score",
            &PropValue::F64(0.25),
        )?;
        tx.set_prop("heidi", "INBOX", PropOwner::Message(1), "seen-by", &PropValue::U64(3))?;
        tx.create_folder("heidi", "Old")?;
        tx.copy("heidi", "INBOX", &UidSet::all(), "heidi", "Old")
    })
    .unwrap();
    let rx = s.read();
    assert_eq!(
        rx.prop("heidi", "INBOX", PropOwner::Folder, "color").unwrap(),
        Some(PropValue::Text("blue".into()))
    );
    let copied = rx.props("heidi", "Old", PropOwner::Message(1)).unwrap();
    assert_eq!(
        copied,
        [
            ("seen-by".to_string(), PropValue::U64(3)),
            ("spam-score".to_string(), PropValue::F64(0.25))
        ]
    );
    assert!(rx.props("heidi", "Old", PropOwner::Folder).unwrap().is_empty());
    assert!(matches!(
        rx.prop("heidi", "INBOX", PropOwner::Message(9), "x"),
        Err(MailError::NoSuchMessage { uid: 9, .. })
    ));
}

#[test]
fn mailboxes_rename_delete_and_quota_changes() {
    let s = store();
    s.create_mailbox("lee", Quota::default()).unwrap();
    s.create_mailbox("max", Quota::default()).unwrap();
    s.append("lee", "INBOX", &AppendOptions::default(), b"one").unwrap();
    s.append("max", "INBOX", &AppendOptions::default(), b"two").unwrap();
    s.transaction(|tx| tx.copy("max", "INBOX", &UidSet::all(), "lee", "INBOX"))
        .unwrap();
    assert!(matches!(
        s.transaction(|tx| tx.rename_mailbox("lee", "max")),
        Err(MailError::MailboxExists(_))
    ));
    s.transaction(|tx| tx.rename_mailbox("lee", "leo")).unwrap();
    let rx = s.read();
    let names: Vec<String> = rx.list_mailboxes().unwrap().into_iter().map(|m| m.name).collect();
    assert_eq!(names, ["leo", "max"]);
    assert_eq!(rx.read_body("leo", "INBOX", 2).unwrap(), b"two");
    assert_eq!(rx.mailbox_info("leo").unwrap().used_messages, 2);
    drop(rx);
    s.transaction(|tx| {
        tx.set_quota(
            "max",
            Quota {
                bytes: Some(3),
                messages: None,
            },
        )
    })
    .unwrap();
    assert_eq!(s.read().mailbox_info("max").unwrap().quota_bytes, Some(3));
    s.transaction(|tx| tx.delete_mailbox("leo")).unwrap();
    let report = s.verify().unwrap();
    assert!(report.is_clean(), "{:?}", report.problems);
    assert_eq!((report.mailboxes, report.messages, report.bodies), (1, 1, 1));
    assert_eq!(
        s.read().read_body("max", "INBOX", 1).unwrap(),
        b"two",
        "the shared body outlives the copy"
    );
}
