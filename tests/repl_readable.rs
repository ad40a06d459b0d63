//! Readable passive copies: a snapshot taken on a copy at replay position P
//! reads exactly what the active had committed at P, while replay goes on
//! past checkpoints that overwrite the pages it reads; a reader thread never
//! sees a mixed state; expiry and corruption give typed errors. Copies over
//! TCP: `repl_readable_live.rs`.

#[path = "common/readable.rs"]
mod readable;

use mailvault::log::{FrameSource, LogReplica, Lsn};
use mailvault::mailbox::{AppendOptions, MailView, PassiveMailRead, Quota, Store, StoreOptions};
use mailvault::pager::{DbError, PageRead, Replayer, SnapshotLimits, data_path, log_dir};
use mailvault::txn::{Database, LogPin, PassiveRead};
use mailvault::vfs::sim::SimRng;
use mailvault::vfs::{OpenMode, SimVfs, Vfs};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use readable::{COPY_CACHE, PS, Rows, active_rows, copy_rows, opts, work};

fn file_bytes(disk: &SimVfs, path: &Path) -> Vec<u8> {
    let f = disk.open(path, OpenMode::Existing).unwrap();
    let mut buf = vec![0u8; f.len().unwrap() as usize];
    f.read_exact_at(&mut buf, 0).unwrap();
    buf
}

/// Seeds `/copy` from the active's file at rest after a checkpoint and
/// starts its replica at the redo generation, pinned on the active.
fn seed_copy(disk: &Arc<SimVfs>, db: &Database) -> (Replayer, FrameSource, LogReplica, LogPin) {
    db.checkpoint().unwrap();
    let image = file_bytes(disk, &data_path(Path::new("/active")));
    disk.create_dir_all(Path::new("/copy")).unwrap();
    let copy = disk.open(&data_path(Path::new("/copy")), OpenMode::CreateNew).unwrap();
    copy.write_at(&image, 0).unwrap();
    copy.sync_data().unwrap();
    let replayer = Replayer::open(disk.clone(), "/copy", COPY_CACHE).unwrap();
    let start = Lsn::new(replayer.position().generation(), 0);
    let source = FrameSource::new(disk.clone(), log_dir(Path::new("/active")));
    let mut replica = LogReplica::open(disk.clone(), log_dir(Path::new("/copy"))).unwrap();
    replica.start_at(start);
    (replayer, source, replica, db.pin_log(start))
}

/// Ships everything durable on the active into the copy's replica; returns
/// the durable end shipped to (at or past the last commit's end).
fn ship(db: &Database, source: &FrameSource, replica: &mut LogReplica) -> Lsn {
    let durable = db.pager().log().durable_lsn();
    while replica.end() < durable {
        let chunk = source.read(replica.next(), durable, 64 << 10).unwrap();
        assert!(!chunk.is_empty(), "the active serves up to its durable end {durable}");
        replica.apply(&chunk).unwrap();
    }
    replica.sync().unwrap();
    durable
}

fn create_active(disk: &Arc<SimVfs>) -> Database {
    let db = Database::create(disk.clone(), "/active", opts()).unwrap();
    let mut tx = db.begin_write();
    tx.create_table("t").unwrap();
    tx.commit().unwrap();
    db
}

#[test]
fn a_snapshot_reads_the_state_the_active_committed_at_its_position_past_checkpoints() {
    for seed in 0..3u64 {
        let disk = SimVfs::new(seed);
        let db = create_active(&disk);
        let mut rng = SimRng::new(seed ^ 91);
        for round in 0..30 {
            work(&db, &mut rng, round);
        }
        let (mut replayer, source, mut replica, pin) = seed_copy(&disk, &db);
        // (snapshot, the active's rows when its position was the active's end)
        let mut held: Vec<(PassiveRead, Rows)> = Vec::new();
        let sequence = replayer.header().sequence;
        for round in 30..330 {
            work(&db, &mut rng, round);
            if rng.below(4) == 0 {
                let shipped = ship(&db, &source, &mut replica);
                pin.advance(Lsn::new(replica.next().generation(), 0).min(replayer.position()));
                replayer.replay().unwrap();
                assert_eq!(
                    replayer.position(),
                    shipped,
                    "seed {seed}: replay applied all it was shipped"
                );
                if round >= 60 * (held.len() as u64 + 1) {
                    held.push((PassiveRead::new(replayer.snapshot().unwrap()), active_rows(&db)));
                }
                if rng.below(3) == 0 {
                    replayer.checkpoint().unwrap();
                }
            }
            if round % 50 == 0 {
                for (rx, rows) in &held {
                    assert_eq!(
                        &copy_rows(rx).unwrap(),
                        rows,
                        "seed {seed}: snapshot at {}",
                        rx.position()
                    );
                }
            }
        }
        assert!(
            replayer.header().sequence >= sequence + 10,
            "seed {seed}: the copy checkpointed many times while the snapshots were open"
        );
        assert!(held.len() >= 4, "seed {seed}: snapshots were taken");
        let now = active_rows(&db);
        for (rx, rows) in &held {
            assert_eq!(
                &copy_rows(rx).unwrap(),
                rows,
                "seed {seed}: snapshot at {}",
                rx.position()
            );
            assert_ne!(rows, &now, "seed {seed}: the workload moved on since the snapshot");
            assert!(!rx.pages().is_expired());
        }
        assert!(
            held[0].0.pages().kept_bytes() > 0,
            "seed {seed}: checkpoints overwrote pages the oldest snapshot reads, and it kept them"
        );
        drop(pin);
        db.close().unwrap();
    }
}

/// A key's value in a round: the round's number, 38 times (40 of them
/// fill several leaves).
fn stamped(round: u64) -> Vec<u8> {
    round.to_le_bytes().repeat(38)
}

/// A round writes every key with its number; a whole state has one number.
fn stamp(db: &Database, round: u64) {
    let mut tx = db.begin_write();
    let t = tx.open_table("t").unwrap();
    for k in 0..40 {
        tx.put(&t, format!("a{k:02}").as_bytes(), &stamped(round)).unwrap();
    }
    // A long value over two pages, every byte the round's.
    tx.put(&t, b"big", &vec![round as u8; 6000 + (round % 7) as usize * 1000])
        .unwrap();
    tx.put(&t, b"round", &round.to_le_bytes()).unwrap();
    tx.commit().unwrap();
}

struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

/// The round of a whole state; panics on a mixed one.
fn read_round(rx: &PassiveRead) -> mailvault::pager::Result<u64> {
    let t = rx.open_table("t")?;
    let round = rx.get(&t, b"round")?.expect("the round key exists");
    let round = u64::from_le_bytes(round.try_into().expect("8 bytes"));
    for k in 0..40 {
        let v = rx.get(&t, format!("a{k:02}").as_bytes())?;
        assert_eq!(v, Some(stamped(round)), "key a{k:02} at {}", rx.position());
    }
    let big = rx.get(&t, b"big")?.expect("the long value exists");
    assert_eq!(big.len(), 6000 + (round % 7) as usize * 1000);
    assert!(big.iter().all(|&b| b == round as u8), "long value of round {round}");
    Ok(round)
}

#[test]
fn a_reader_thread_sees_only_whole_states_while_replay_and_checkpoints_run() {
    let disk = SimVfs::new(11);
    let db = create_active(&disk);
    stamp(&db, 0);
    let (mut replayer, source, mut replica, pin) = seed_copy(&disk, &db);
    let snapshots = replayer.snapshot_source();
    // The round the active had committed at each position replay stops at.
    let expected = std::sync::Mutex::new(BTreeMap::from([(replayer.position(), 0u64)]));
    let stop = AtomicBool::new(false);
    let rounds = 400u64;
    let (reads, positions, rereads) = std::thread::scope(|s| {
        let reader = s.spawn(|| {
            let (mut reads, mut rereads, mut last) = (0u64, 0u64, (Lsn::ZERO, 0u64));
            let mut positions = std::collections::BTreeSet::new();
            // An older snapshot, read again later: its pages are kept or
            // still in the file.
            let mut old: Option<(PassiveRead, u64)> = None;
            while !stop.load(Ordering::Acquire) {
                let rx = PassiveRead::new(snapshots.latest().expect("no error unless expired"));
                let round = read_round(&rx).expect("no error unless expired");
                // Replay publishes before the main thread notes its position.
                let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
                let want = loop {
                    let want = expected.lock().unwrap().get(&rx.position()).copied();
                    if want.is_some() || std::time::Instant::now() > deadline {
                        break want;
                    }
                    std::thread::yield_now();
                };
                assert_eq!(Some(round), want, "the round committed at {}", rx.position());
                assert!(
                    (rx.position(), round) >= last,
                    "snapshots go forward: {round} at {} after {last:?}",
                    rx.position()
                );
                last = (rx.position(), round);
                positions.insert(rx.position());
                reads += 1;
                match &old {
                    Some((o, r)) if reads % 25 != 0 => {
                        assert_eq!(read_round(o).expect("not expired"), *r, "an old snapshot is stable");
                        rereads += 1;
                    }
                    _ => old = Some((rx, round)),
                }
            }
            (reads, positions.len(), rereads)
        });
        // Stops the reader however this thread leaves (a failed assertion
        // here would otherwise leave the scope waiting for it).
        let _stop = StopOnDrop(&stop);
        for round in 1..=rounds {
            stamp(&db, round);
            if round % 3 == 0 {
                let shipped = ship(&db, &source, &mut replica);
                pin.advance(Lsn::new(replica.next().generation(), 0).min(replayer.position()));
                replayer.replay().unwrap();
                assert_eq!(replayer.position(), shipped, "replay applied all it was shipped");
                // This thread alone commits: the state there is this round's.
                expected.lock().unwrap().insert(replayer.position(), round);
            }
            if round % 20 == 0 {
                replayer.checkpoint().unwrap();
            }
            if round % 25 == 0 {
                // Gives the reader time on a busy machine.
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
        }
        drop(_stop);
        reader.join().unwrap()
    });
    assert!(reads >= 20, "the reader read while replay ran ({reads} snapshots)");
    assert!(positions >= 3, "the reader saw replay move ({positions} positions)");
    assert!(rereads > 0, "old snapshots were read again");
    let rx = PassiveRead::new(replayer.snapshot().unwrap());
    assert_eq!(
        read_round(&rx).unwrap(),
        rounds - rounds % 3,
        "the copy reached the last shipped round"
    );
    drop(pin);
    db.close().unwrap();
}

fn replay_rounds(
    db: &Database,
    replayer: &mut Replayer,
    source: &FrameSource,
    replica: &mut LogReplica,
    rng: &mut SimRng,
    rounds: std::ops::Range<u64>,
) {
    for round in rounds {
        work(db, rng, round);
        ship(db, source, replica);
        replayer.replay().unwrap();
        replayer.checkpoint().unwrap();
    }
}

#[test]
fn a_snapshot_past_its_limits_or_its_replayer_is_too_old() {
    let disk = SimVfs::new(3);
    let db = create_active(&disk);
    let mut rng = SimRng::new(5);
    for round in 0..40 {
        work(&db, &mut rng, round);
    }
    let (mut replayer, source, mut replica, pin) = seed_copy(&disk, &db);
    replayer.set_snapshot_limits(SnapshotLimits {
        keep_bytes: 4 * PS as u64,
        max_open: 8,
    });
    let old = PassiveRead::new(replayer.snapshot().unwrap());
    let before = copy_rows(&old).unwrap();
    replay_rounds(&db, &mut replayer, &source, &mut replica, &mut rng, 40..80);
    assert!(old.pages().is_expired());
    match copy_rows(&old) {
        Err(DbError::SnapshotTooOld { file, position, reason }) => {
            assert_eq!(file, data_path(Path::new("/copy")));
            assert_eq!(position, old.position());
            assert!(reason.contains("past the limit of 16384"), "{reason}");
        }
        other => panic!("expected SnapshotTooOld, got {other:?}"),
    }
    // A newer snapshot reads, and what it reads is the active's.
    let new = PassiveRead::new(replayer.snapshot().unwrap());
    assert_eq!(copy_rows(&new).unwrap(), active_rows(&db));
    assert_ne!(copy_rows(&new).unwrap(), before);

    // More snapshots at distinct positions than allowed: the oldest expire.
    replayer.set_snapshot_limits(SnapshotLimits {
        keep_bytes: 64 << 20,
        max_open: 2,
    });
    let mut taken = vec![new];
    for round in 80..82 {
        work(&db, &mut rng, round);
        ship(&db, &source, &mut replica);
        replayer.replay().unwrap();
        taken.push(PassiveRead::new(replayer.snapshot().unwrap()));
    }
    assert!(taken[0].pages().is_expired(), "the oldest of three expired");
    assert!(!taken[1].pages().is_expired() && !taken[2].pages().is_expired());
    match taken[0].open_table("t") {
        Err(DbError::SnapshotTooOld { reason, .. }) => assert!(reason.contains("more than 2"), "{reason}"),
        other => panic!("expected SnapshotTooOld, got {other:?}"),
    }
    // Taking one again at the same position gives the same snapshot.
    let again = replayer.snapshot().unwrap();
    assert!(!taken[1].pages().is_expired(), "no new snapshot was made");
    assert_eq!(again.position(), taken[2].position());

    // Closing the replayer expires what is open: another may write next.
    let source_handle = replayer.snapshot_source();
    drop(replayer);
    assert!(matches!(taken[2].open_table("t"), Err(DbError::SnapshotTooOld { .. })));
    assert!(matches!(source_handle.latest(), Err(DbError::SnapshotTooOld { .. })));
    drop(pin);
    db.close().unwrap();
}

#[test]
fn a_copy_reopened_after_its_checkpoint_is_readable_once_replay_passes_its_file() {
    let disk = SimVfs::new(8);
    let db = create_active(&disk);
    let mut rng = SimRng::new(2);
    for round in 0..10 {
        work(&db, &mut rng, round);
    }
    let (mut replayer, source, mut replica, pin) = seed_copy(&disk, &db);
    // One small commit after the seed's checkpoint: the last record is a
    // commit (too little log for the active to checkpoint again).
    let mut tx = db.begin_write();
    let t = tx.open_table("t").unwrap();
    tx.put(&t, b"k001", b"last").unwrap();
    tx.commit().unwrap();
    ship(&db, &source, &mut replica);
    replayer.replay().unwrap();
    replayer.checkpoint().unwrap();
    drop(replayer);
    let mut replayer = Replayer::open(disk.clone(), "/copy", COPY_CACHE).unwrap();
    // The file holds the last commit; the position is its start.
    match replayer.snapshot() {
        Err(DbError::NotYetConsistent {
            file,
            position,
            required,
        }) => {
            assert_eq!(file, data_path(Path::new("/copy")));
            assert!(position <= required, "{position} {required}");
        }
        other => panic!("expected NotYetConsistent, got {other:?}"),
    }
    assert!(matches!(
        replayer.snapshot_source().latest(),
        Err(DbError::NotYetConsistent { .. })
    ));
    replayer.replay().unwrap();
    let rx = PassiveRead::new(replayer.snapshot().unwrap());
    assert_eq!(copy_rows(&rx).unwrap(), active_rows(&db));
    assert_eq!(
        PassiveRead::new(replayer.snapshot_source().latest().unwrap()).position(),
        rx.position()
    );
    drop(pin);
    db.close().unwrap();
}

#[test]
fn a_corrupt_page_read_through_a_snapshot_names_the_file_and_page() {
    let disk = SimVfs::new(4);
    let db = create_active(&disk);
    let mut rng = SimRng::new(9);
    for round in 0..40 {
        work(&db, &mut rng, round);
    }
    let (mut replayer, source, mut replica, pin) = seed_copy(&disk, &db);
    work(&db, &mut rng, 40);
    ship(&db, &source, &mut replica);
    replayer.replay().unwrap();
    // After a checkpoint every page is read from the file.
    replayer.checkpoint().unwrap();
    let rx = PassiveRead::new(replayer.snapshot().unwrap());
    let root = rx.open_table("t").unwrap().root();
    let path = data_path(Path::new("/copy"));
    let f = disk.open(&path, OpenMode::Existing).unwrap();
    f.write_at(&[0xa5; 8], root as u64 * PS as u64 + 600).unwrap();
    let t = rx.open_table("t").unwrap();
    let err = rx.get(&t, b"k001").unwrap_err();
    match &err {
        DbError::CorruptPage { file, page, offset, .. } => {
            assert_eq!((file, *page), (&path, root));
            assert_eq!(*offset, root as u64 * PS as u64);
        }
        other => panic!("expected CorruptPage, got {other:?}"),
    }
    assert!(err.to_string().contains("/copy/data.mvdb"), "{err}");
    assert!(rx.pages().page(root).is_err(), "the raw page read fails too");
    drop(pin);
    db.close().unwrap();
}

#[test]
fn mailbox_reads_work_on_a_copy_snapshot() {
    let disk = SimVfs::new(21);
    let sopts = StoreOptions {
        page_size: PS,
        cache_bytes: 256 * PS,
        ..StoreOptions::default()
    };
    let store = Store::create(disk.clone(), "/active", sopts.clone()).unwrap();
    store.create_mailbox("alice", Quota::default()).unwrap();
    let body = |i: u32| format!("Subject: m{i}\r\n\r\n{}", "x".repeat(200 + i as usize * 300)).into_bytes();
    for i in 0..10 {
        store
            .append("alice", "INBOX", &AppendOptions::default(), &body(i))
            .unwrap();
    }
    let db = store.database();
    let (mut replayer, source, mut replica, pin) = seed_copy(&disk, db);
    ship(db, &source, &mut replica);
    replayer.replay().unwrap();
    let view = PassiveMailRead::open(replayer.snapshot().unwrap(), &sopts).unwrap();
    for i in 10..40 {
        store
            .append("alice", "INBOX", &AppendOptions::default(), &body(i))
            .unwrap();
        ship(db, &source, &mut replica);
        replayer.replay().unwrap();
        if i % 5 == 0 {
            replayer.checkpoint().unwrap();
        }
    }
    let names: Vec<String> = view.list_mailboxes().unwrap().into_iter().map(|m| m.name).collect();
    assert_eq!(names, vec!["alice".to_string()]);
    assert_eq!(
        view.folder_info("alice", "INBOX").unwrap().messages,
        10,
        "as of the snapshot"
    );
    let uids = view.uids("alice", "INBOX").unwrap();
    assert_eq!(uids.len(), 10);
    for (i, uid) in uids.iter().enumerate() {
        assert_eq!(view.read_body("alice", "INBOX", *uid).unwrap(), body(i as u32));
    }
    let now = PassiveMailRead::open(replayer.snapshot().unwrap(), &sopts).unwrap();
    assert_eq!(now.folder_info("alice", "INBOX").unwrap().messages, 40);
    let last = *now.uids("alice", "INBOX").unwrap().last().unwrap();
    assert_eq!(now.read_body("alice", "INBOX", last).unwrap(), body(39));
    assert_eq!(
        now.fetch("alice", "INBOX", &mailvault::mailbox::UidSet::single(last))
            .unwrap(),
        store
            .read()
            .fetch("alice", "INBOX", &mailvault::mailbox::UidSet::single(last))
            .unwrap()
    );
    drop(pin);
    drop(replayer);
    store.close().unwrap();
}
