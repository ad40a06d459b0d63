//! The mailbox store against an in-memory model of a mailbox: random
//! appends, flag changes, moves, expunges and reopens. UIDs strictly
//! increase and are never reused within a UIDVALIDITY, MODSEQ never
//! decreases, counters match the messages, and "changes since MODSEQ" is
//! exact for every MODSEQ.

use mailvault::mailbox::{AppendOptions, FlagOp, Flags, MailView, Quota, Store, StoreOptions, UidSet};
use mailvault::vfs::SimVfs;
use proptest::prelude::*;
use std::collections::BTreeMap;

const FOLDERS: [&str; 3] = ["INBOX", "Sent", "Archive/2026"];

#[derive(Debug, Clone)]
enum Op {
    Append {
        folder: usize,
        flags: u32,
        size: usize,
    },
    Store {
        folder: usize,
        first: u32,
        last: u32,
        op: u8,
        flags: u32,
        since: Option<u64>,
    },
    Move {
        from: usize,
        to: usize,
        first: u32,
        last: u32,
    },
    Expunge {
        folder: usize,
        first: u32,
        last: u32,
    },
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..3usize, 0..32u32, 1..3000usize).prop_map(|(folder, flags, size)| Op::Append { folder, flags, size }),
        3 => (0..3usize, 1..30u32, 1..30u32, 0..3u8, 0..32u32, proptest::option::of(0..60u64))
            .prop_map(|(folder, first, last, op, flags, since)| Op::Store { folder, first, last, op, flags, since }),
        2 => (0..3usize, 0..3usize, 1..30u32, 1..30u32).prop_map(|(from, to, first, last)| Op::Move { from, to, first, last }),
        2 => (0..3usize, 1..30u32, 1..30u32).prop_map(|(folder, first, last)| Op::Expunge { folder, first, last }),
        1 => Just(Op::Reopen),
    ]
}

#[derive(Debug, Clone, PartialEq)]
struct Message {
    flags: Flags,
    modseq: u64,
    append_modseq: u64,
    body: Vec<u8>,
}

#[derive(Debug, Clone, Default)]
struct Folder {
    uid_next: u32,
    highest: u64,
    messages: BTreeMap<u32, Message>,
    tombstones: Vec<(u64, u32)>,
}

impl Folder {
    fn bump(&mut self) -> u64 {
        self.highest += 1;
        self.highest
    }

    fn insert(&mut self, flags: Flags, body: Vec<u8>) -> u32 {
        let uid = self.uid_next;
        self.uid_next += 1;
        let m = self.bump();
        self.messages.insert(
            uid,
            Message {
                flags,
                modseq: m,
                append_modseq: m,
                body,
            },
        );
        uid
    }

    fn expunge(&mut self, uids: &[u32]) {
        for &uid in uids {
            self.messages.remove(&uid);
            let m = self.bump();
            self.tombstones.push((m, uid));
        }
    }

    fn in_range(&self, a: u32, b: u32) -> Vec<u32> {
        self.messages.range(a.min(b)..=a.max(b)).map(|(u, _)| *u).collect()
    }
}

fn opts() -> StoreOptions {
    StoreOptions {
        page_size: 4096,
        cache_bytes: 1 << 20,
        generation_size: 1 << 20,
        max_body_bytes: 64 << 10,
        ..StoreOptions::default()
    }
}

fn body(n: u64, size: usize) -> Vec<u8> {
    let mut b = format!("Message {n}\r\n\r\n").into_bytes();
    while b.len() < size {
        b.extend_from_slice(format!("{n} line of text {}\r\n", b.len()).as_bytes());
    }
    b
}

fn check(store: &Store, model: &[Folder], last_seen: &mut [(u32, u64)]) -> Result<(), TestCaseError> {
    let rx = store.read();
    for (i, name) in FOLDERS.iter().enumerate() {
        let f = &model[i];
        let info = rx.folder_info("u", name).unwrap();
        prop_assert_eq!(info.uid_next, f.uid_next);
        prop_assert_eq!(info.highest_modseq, f.highest);
        prop_assert_eq!(info.messages, f.messages.len() as u64);
        prop_assert_eq!(
            info.unseen,
            f.messages.values().filter(|m| !m.flags.contains(Flags::SEEN)).count() as u64
        );
        prop_assert_eq!(
            info.bytes,
            f.messages.values().map(|m| m.body.len() as u64).sum::<u64>()
        );
        prop_assert!(info.uid_next >= last_seen[i].0, "UIDNEXT went back");
        prop_assert!(info.highest_modseq >= last_seen[i].1, "HIGHESTMODSEQ went back");
        last_seen[i] = (info.uid_next, info.highest_modseq);
        let metas = rx.fetch("u", name, &UidSet::all()).unwrap();
        prop_assert_eq!(metas.len(), f.messages.len());
        for (meta, (uid, m)) in metas.iter().zip(&f.messages) {
            prop_assert_eq!(meta.uid, *uid);
            prop_assert_eq!(meta.flags, m.flags);
            prop_assert_eq!(meta.modseq, m.modseq);
            prop_assert_eq!(meta.size, m.body.len() as u64);
        }
        if let Some((uid, m)) = f.messages.iter().next_back() {
            prop_assert_eq!(&rx.read_body("u", name, *uid).unwrap(), &m.body);
        }
        for since in 0..=f.highest {
            let c = rx.changes_since("u", name, since).unwrap();
            let mut new = Vec::new();
            let mut changed = Vec::new();
            for (uid, m) in &f.messages {
                if m.modseq > since {
                    if m.append_modseq > since {
                        new.push(*uid)
                    } else {
                        changed.push(*uid)
                    }
                }
            }
            let mut gone: Vec<u32> = f
                .tombstones
                .iter()
                .filter(|(ms, _)| *ms > since)
                .map(|(_, u)| *u)
                .collect();
            gone.sort_unstable();
            prop_assert_eq!(&c.new, &new, "new since {}", since);
            prop_assert_eq!(&c.changed, &changed, "changed since {}", since);
            prop_assert_eq!(&c.expunged, &gone, "expunged since {}", since);
        }
    }
    let report = store.verify().unwrap();
    prop_assert!(report.is_clean(), "{:?}", report.problems);
    Ok(())
}

fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let disk = SimVfs::new(11);
    let mut store = Some(Store::create(disk.clone(), "/m", opts()).unwrap());
    let s = store.as_ref().unwrap();
    s.create_mailbox("u", Quota::default()).unwrap();
    s.create_folder("u", "Sent").unwrap();
    s.create_folder("u", "Archive/2026").unwrap();
    let mut model = vec![
        Folder {
            uid_next: 1,
            highest: 1,
            ..Folder::default()
        };
        3
    ];
    let mut last_seen = vec![(0u32, 0u64); 3];
    for (n, op) in ops.into_iter().enumerate() {
        let s = store.as_ref().unwrap();
        match op {
            Op::Append { folder, flags, size } => {
                let flags = Flags::from_bits(flags).unwrap();
                let b = body(n as u64, size);
                let opts = AppendOptions {
                    flags,
                    ..AppendOptions::default()
                };
                let uid = s.append("u", FOLDERS[folder], &opts, &b).unwrap();
                prop_assert_eq!(uid, model[folder].insert(flags, b));
            }
            Op::Store {
                folder,
                first,
                last,
                op,
                flags,
                since,
            } => {
                let flags = Flags::from_bits(flags).unwrap();
                let kind = [FlagOp::Set, FlagOp::Add, FlagOp::Remove][op as usize];
                let r = s
                    .transaction(move |tx| {
                        tx.store_flags(
                            "u",
                            FOLDERS[folder],
                            &UidSet::range(first, last),
                            kind,
                            flags,
                            &[],
                            since,
                        )
                    })
                    .unwrap();
                let f = &mut model[folder];
                let mut want_changed = Vec::new();
                let mut want_modified = Vec::new();
                for uid in f.in_range(first, last) {
                    let old = f.messages[&uid].clone();
                    if since.is_some_and(|s| old.modseq > s) {
                        want_modified.push(uid);
                        continue;
                    }
                    let new_flags = match kind {
                        FlagOp::Set => flags,
                        FlagOp::Add => old.flags | flags,
                        FlagOp::Remove => old.flags.without(flags),
                    };
                    if new_flags != old.flags {
                        let m = f.bump();
                        let msg = f.messages.get_mut(&uid).unwrap();
                        msg.flags = new_flags;
                        msg.modseq = m;
                        want_changed.push((uid, m));
                    }
                }
                prop_assert_eq!(r.changed, want_changed);
                prop_assert_eq!(r.modified, want_modified);
            }
            Op::Move { from, to, first, last } => {
                if from == to {
                    continue;
                }
                let pairs = s
                    .transaction(move |tx| {
                        tx.move_messages("u", FOLDERS[from], &UidSet::range(first, last), "u", FOLDERS[to])
                    })
                    .unwrap();
                let uids = model[from].in_range(first, last);
                let mut want = Vec::new();
                for &uid in &uids {
                    let m = model[from].messages[&uid].clone();
                    want.push((uid, model[to].insert(m.flags, m.body)));
                }
                model[from].expunge(&uids);
                prop_assert_eq!(pairs, want);
            }
            Op::Expunge { folder, first, last } => {
                let gone = s
                    .transaction(move |tx| tx.expunge("u", FOLDERS[folder], &UidSet::range(first, last)))
                    .unwrap();
                let uids = model[folder].in_range(first, last);
                model[folder].expunge(&uids);
                prop_assert_eq!(gone, uids);
            }
            Op::Reopen => {
                store.take().unwrap().close().unwrap();
                store = Some(Store::open(disk.clone(), "/m", opts()).unwrap());
            }
        }
        check(store.as_ref().unwrap(), &model, &mut last_seen)?;
    }
    Ok(())
}

fn cases() -> u32 {
    std::env::var("MAILVAULT_PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn the_store_matches_the_model(ops in proptest::collection::vec(op(), 1..40)) {
        run(ops)?;
    }
}
