//! What the mailbox store refuses, with a typed error and nothing changed:
//! bad arguments, a second open, a foreign database, a failing body reader,
//! a body prepared for other pages; and two renames of one folder racing.

use mailvault::mailbox::{AppendOptions, MailError, MailView, Quota, QuotaKind, Store, StoreOptions, UidSet};
use mailvault::pager::DbError;
use mailvault::vfs::SimVfs;
use std::sync::Arc;

#[path = "common/mail_store.rs"]
mod mail_store;

use mail_store::{opts, store};

#[test]
fn bad_input_is_refused_and_changes_nothing() {
    let s = store();
    s.create_mailbox(
        "ivan",
        Quota {
            bytes: Some(10_000),
            messages: Some(3),
        },
    )
    .unwrap();
    s.append("ivan", "INBOX", &AppendOptions::default(), &[b'a'; 4000])
        .unwrap();
    let before = s.read().fetch("ivan", "INBOX", &UidSet::all()).unwrap();
    let info_before = s.read().folder_info("ivan", "INBOX").unwrap();
    let cases: Vec<(&str, MailError)> = vec![
        (
            "empty mailbox name",
            s.create_mailbox("", Quota::default()).unwrap_err(),
        ),
        (
            "oversize mailbox name",
            s.create_mailbox(&"m".repeat(300), Quota::default()).unwrap_err(),
        ),
        ("control character", s.create_folder("ivan", "a\u{7}b").unwrap_err()),
        ("empty level", s.create_folder("ivan", "a//b").unwrap_err()),
        (
            "oversize folder",
            s.create_folder("ivan", &"f".repeat(600)).unwrap_err(),
        ),
        (
            "no such mailbox",
            s.append("nobody", "INBOX", &AppendOptions::default(), b"x")
                .unwrap_err(),
        ),
        (
            "no such folder",
            s.append("ivan", "Nope", &AppendOptions::default(), b"x").unwrap_err(),
        ),
        (
            "byte quota",
            s.append("ivan", "INBOX", &AppendOptions::default(), &[b'b'; 7000])
                .unwrap_err(),
        ),
        (
            "bad keyword",
            s.append(
                "ivan",
                "INBOX",
                &AppendOptions {
                    keywords: vec!["has space".into()],
                    ..AppendOptions::default()
                },
                b"x",
            )
            .unwrap_err(),
        ),
        (
            "body too large",
            s.append(
                "ivan",
                "INBOX",
                &AppendOptions::default(),
                &vec![0u8; (s.max_body_bytes() + 1) as usize],
            )
            .unwrap_err(),
        ),
        ("uid out of range", s.read().read_body("ivan", "INBOX", 99).unwrap_err()),
        (
            "delete INBOX",
            s.transaction(|tx| tx.delete_folder("ivan", "INBOX")).unwrap_err(),
        ),
        ("exists", s.create_mailbox("ivan", Quota::default()).unwrap_err()),
    ];
    for (what, err) in &cases {
        let ok = match *what {
            "empty mailbox name"
            | "oversize mailbox name"
            | "control character"
            | "empty level"
            | "oversize folder"
            | "bad keyword" => {
                matches!(err, MailError::InvalidName { .. })
            }
            "no such mailbox" => matches!(err, MailError::NoSuchMailbox(_)),
            "no such folder" => matches!(err, MailError::NoSuchFolder { .. }),
            "byte quota" => matches!(
                err,
                MailError::QuotaExceeded {
                    kind: QuotaKind::Bytes,
                    ..
                }
            ),
            "body too large" => matches!(err, MailError::BodyTooLarge { .. }),
            "uid out of range" => matches!(err, MailError::NoSuchMessage { uid: 99, .. }),
            "delete INBOX" => matches!(err, MailError::ProtectedFolder(_)),
            "exists" => matches!(err, MailError::MailboxExists(_)),
            _ => false,
        };
        assert!(ok, "{what}: unexpected {err:?}");
    }
    s.append("ivan", "INBOX", &AppendOptions::default(), b"2").unwrap();
    s.append("ivan", "INBOX", &AppendOptions::default(), b"3").unwrap();
    assert!(matches!(
        s.append("ivan", "INBOX", &AppendOptions::default(), b"4"),
        Err(MailError::QuotaExceeded {
            kind: QuotaKind::Messages,
            ..
        })
    ));
    // A multi-step transaction that fails half way leaves nothing behind.
    let err = s
        .transaction(|tx| {
            tx.create_folder("ivan", "Half")?;
            tx.expunge("ivan", "INBOX", &UidSet::single(1))?;
            tx.append("ivan", "NoSuchFolder", &AppendOptions::default(), b"x")
        })
        .unwrap_err();
    assert!(matches!(err, MailError::NoSuchFolder { .. }));
    let rx = s.read();
    assert_eq!(rx.fetch("ivan", "INBOX", &UidSet::range(1, 1)).unwrap(), before);
    assert!(matches!(
        rx.folder_info("ivan", "Half"),
        Err(MailError::NoSuchFolder { .. })
    ));
    let info = rx.folder_info("ivan", "INBOX").unwrap();
    assert_eq!(info.uid_validity, info_before.uid_validity);
    assert_eq!(info.messages, 3);
    assert!(s.verify().unwrap().is_clean());
}

#[test]
fn concurrent_renames_of_one_folder_one_wins() {
    let s = Arc::new(store());
    s.create_mailbox("judy", Quota::default()).unwrap();
    s.create_folder("judy", "Old").unwrap();
    let handles: Vec<_> = (0..4)
        .map(|i| {
            let s = s.clone();
            std::thread::spawn(move || s.transaction(move |tx| tx.rename_folder("judy", "Old", &format!("New{i}"))))
        })
        .collect();
    let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 1, "{results:?}");
    assert!(
        results
            .iter()
            .filter(|r| r.is_err())
            .all(|r| matches!(r, Err(MailError::NoSuchFolder { .. })))
    );
    let names: Vec<String> = s
        .read()
        .list_folders("judy")
        .unwrap()
        .into_iter()
        .map(|f| f.name)
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
}

#[test]
fn a_second_open_is_refused_and_reopen_keeps_everything() {
    let disk = SimVfs::new(5);
    let s = Store::create(disk.clone(), "/mail", opts()).unwrap();
    s.create_mailbox("kim", Quota::default()).unwrap();
    s.append("kim", "INBOX", &AppendOptions::default(), b"kept").unwrap();
    assert!(matches!(
        Store::open(disk.clone(), "/mail", opts()),
        Err(MailError::Db(DbError::InUse { .. }))
    ));
    s.close().unwrap();
    let s = Store::open(disk, "/mail", opts()).unwrap();
    assert_eq!(s.read().read_body("kim", "INBOX", 1).unwrap(), b"kept");
}

#[test]
fn a_plain_database_is_not_taken_for_a_store() {
    let disk = SimVfs::new(6);
    let db = mailvault::txn::Database::create(disk.clone(), "/db", mailvault::txn::DbOptions::default()).unwrap();
    db.close().unwrap();
    let err = Store::open(disk, "/db", StoreOptions::default()).unwrap_err();
    assert!(matches!(err, MailError::Corrupt { .. }), "{err:?}");
}

#[test]
fn streaming_append_reads_the_body_and_a_failing_reader_writes_nothing() {
    struct Failing(usize);
    impl std::io::Read for Failing {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            if self.0 == 0 {
                return Err(std::io::Error::other("connection reset by the client"));
            }
            let n = buf.len().min(self.0).min(1000);
            buf[..n].fill(b'z');
            self.0 -= n;
            Ok(n)
        }
    }
    let s = store();
    s.create_mailbox("nia", Quota::default()).unwrap();
    let big: Vec<u8> = (0..100_000u32)
        .flat_map(|i| format!("line {i}\r\n").into_bytes())
        .take(150_000)
        .collect();
    let uid = s
        .append_from("nia", "INBOX", &AppendOptions::default(), &mut &big[..])
        .unwrap();
    assert_eq!(s.read().read_body("nia", "INBOX", uid).unwrap(), big);
    let err = s
        .append_from("nia", "INBOX", &AppendOptions::default(), &mut Failing(50_000))
        .unwrap_err();
    assert!(matches!(err, MailError::Read(_)), "{err:?}");
    let info = s.read().folder_info("nia", "INBOX").unwrap();
    assert_eq!((info.messages, info.uid_next), (1, 2), "the failed append took no UID");
    let mut huge = std::io::Read::take(std::io::repeat(b'z'), s.max_body_bytes() + 1);
    let err = s
        .append_from("nia", "INBOX", &AppendOptions::default(), &mut huge)
        .unwrap_err();
    assert!(matches!(err, MailError::BodyTooLarge { .. }), "{err:?}");
    assert!(s.verify().unwrap().is_clean());
}

#[test]
fn a_body_prepared_for_other_pages_is_refused_and_writes_nothing() {
    let small = store();
    let large = Store::create(
        SimVfs::new(2),
        "/mail",
        StoreOptions {
            page_size: 16384,
            ..opts()
        },
    )
    .unwrap();
    large.create_mailbox("ola", Quota::default()).unwrap();
    // Long enough to be laid out in pages: 4 KiB ones.
    let text: Vec<u8> = (0..20_000u32).flat_map(|i| i.to_le_bytes()).collect();
    let body = small.prepare_body(&mut &text[..]).unwrap();
    // The error is swallowed and the transaction commits: nothing of the body may be in it.
    large
        .transaction(move |tx| {
            let err = tx
                .append_prepared("ola", "INBOX", &AppendOptions::default(), body)
                .unwrap_err();
            assert!(matches!(err, MailError::InvalidArgument(_)), "{err:?}");
            Ok(())
        })
        .unwrap();
    let info = large.read().folder_info("ola", "INBOX").unwrap();
    assert_eq!((info.messages, info.uid_next), (0, 1));
    let report = large.verify().unwrap();
    assert!(report.is_clean(), "{report:?}");
    let uid = large
        .append_prepared(
            "ola",
            "INBOX",
            &AppendOptions::default(),
            large.prepare_body(&mut &text[..]).unwrap(),
        )
        .unwrap();
    assert_eq!(large.read().read_body("ola", "INBOX", uid).unwrap(), text);
}
