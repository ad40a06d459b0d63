//! The whole-database digest: every Nth checkpoint the active logs the
//! group hashes and Merkle root of its file as of the marker; a passive copy
//! replaying that marker hashes its own state and compares. A copy that
//! replays faithfully verifies them; a copy holding a page that is
//! self-consistent but different is reported with that page's range; a
//! copy whose file is ahead of the marker (seeded from a live file) skips
//! them instead of reporting a false divergence.

mod common;

#[path = "common/workload.rs"]
mod workload;

use mailvault::log::{FrameSource, LogReplica, Lsn};
use mailvault::pager::digest::{GROUP_PAGES, root};
use mailvault::pager::redo::{DbRecord, GROUP_HASH_LEN, group_count};
use mailvault::pager::{DbError, Replayer, data_path, log_dir};
use mailvault::txn::{Database, DbOptions, LogPin};
use mailvault::vfs::sim::SimRng;
use mailvault::vfs::{OpenMode, SimVfs, Vfs};
use sha2::{Digest, Sha256};
use std::path::Path;
use std::sync::Arc;
use workload::{Mix, work_mix};

const PS: usize = 4096;

fn opts(every: u64) -> DbOptions {
    let mut o = DbOptions {
        page_size: PS,
        cache_bytes: 64 * 4096,
        checkpoint_depth: 64 << 10,
        whole_digest_every: every,
        // These tests count checkpoints; the size rule has its own test.
        whole_digest_log_factor: 0,
        ..DbOptions::default()
    };
    o.log.frame_size = 512;
    o.log.generation_size = 128 << 10;
    o.max_transaction_bytes = 256 << 10;
    o.log.max_record_size = 256 << 10;
    o
}

fn file_bytes(disk: &SimVfs, path: &Path) -> Vec<u8> {
    let f = disk.open(path, OpenMode::Existing).unwrap();
    let mut buf = vec![0u8; f.len().unwrap() as usize];
    f.read_exact_at(&mut buf, 0).unwrap();
    buf
}

fn create(disk: &Arc<SimVfs>, every: u64) -> Database {
    let db = Database::create(disk.clone(), "/active", opts(every)).unwrap();
    let mut tx = db.begin_write();
    tx.create_table("t").unwrap();
    tx.commit().unwrap();
    db
}

/// A few puts and deletes; one value in three is long (several pages).
fn work(db: &Database, rng: &mut SimRng, round: u64) {
    work_mix(
        db,
        rng,
        round,
        &Mix {
            ops_below: 5,
            keys: 200,
            delete_one_in: 4,
            long_one_in: 3,
            long_min: 5000,
            long_span: 20_000,
            short_below: 300,
        },
    );
}

/// Seeds `/copy` with `image` and starts its replica at the header's redo
/// generation, pinned on the active.
fn seed_copy(disk: &Arc<SimVfs>, db: &Database, image: &[u8]) -> (Replayer, FrameSource, LogReplica, LogPin) {
    disk.create_dir_all(Path::new("/copy")).unwrap();
    let copy = disk.open(&data_path(Path::new("/copy")), OpenMode::CreateNew).unwrap();
    copy.write_at(image, 0).unwrap();
    copy.sync_data().unwrap();
    let replayer = Replayer::open(disk.clone(), "/copy", 32 * 4096).unwrap();
    let start = Lsn::new(replayer.position().generation(), 0);
    let source = FrameSource::new(disk.clone(), log_dir(Path::new("/active")));
    let mut replica = LogReplica::open(disk.clone(), log_dir(Path::new("/copy"))).unwrap();
    replica.start_at(start);
    (replayer, source, replica, db.pin_log(start))
}

/// Ships everything the active logged: digest records become durable with
/// the next commit batch (nothing waits for them), so the log is flushed.
fn ship(db: &Database, source: &FrameSource, replica: &mut LogReplica) {
    db.pager().log().flush().unwrap();
    let durable = db.pager().log().durable_lsn();
    loop {
        let chunk = source.read(replica.next(), durable, 64 << 10).unwrap();
        if chunk.is_empty() {
            break;
        }
        replica.apply(&chunk).unwrap();
        if chunk.tail.is_some() {
            break;
        }
    }
    replica.sync().unwrap();
}

/// The digest of pages 2..page_count of `file` as DESIGN.md specifies it,
/// computed here independently of the library: (group hashes, root).
fn expected_digest(file: &[u8], page_count: u32) -> (Vec<[u8; GROUP_HASH_LEN]>, [u8; 32]) {
    let zero = vec![0u8; PS];
    let mut groups = Vec::new();
    for g in 0..group_count(page_count, GROUP_PAGES) {
        let mut h = Sha256::new();
        let start = 2 + g * GROUP_PAGES;
        for no in start..(start + GROUP_PAGES).min(page_count) {
            let at = no as usize * PS;
            let page = file.get(at..at + PS).unwrap_or(&zero);
            h.update(crc32c::crc32c(&page[4..]).to_le_bytes());
        }
        let full = h.finalize();
        let mut out = [0u8; GROUP_HASH_LEN];
        out.copy_from_slice(&full[..GROUP_HASH_LEN]);
        groups.push(out);
    }
    let mut h = Sha256::new();
    h.update(b"mailvault whole digest 1");
    h.update(page_count.to_le_bytes());
    h.update(GROUP_PAGES.to_le_bytes());
    for g in &groups {
        h.update(g);
    }
    let r: [u8; 32] = h.finalize().into();
    assert_eq!(
        r,
        root(page_count, GROUP_PAGES, &groups),
        "the library's root is the documented one"
    );
    (groups, r)
}

/// The active's log as (LSN, record).
fn records(disk: &Arc<SimVfs>) -> Vec<(Lsn, DbRecord)> {
    common::read_records(disk.clone(), log_dir(Path::new("/active")), Lsn::MAX)
        .into_iter()
        .map(|(lsn, data)| (lsn, DbRecord::decode(&data, PS).unwrap()))
        .collect()
}

#[test]
fn the_active_logs_a_whole_digest_every_nth_checkpoint_of_the_file_it_checkpointed() {
    let disk = SimVfs::new(1);
    let db = create(&disk, 3);
    let mut rng = SimRng::new(9);
    // Keeps every generation for reading back.
    let pin = db.pin_log(Lsn::ZERO);
    let first = db.pager().log().end_lsn();
    for round in 0..12 {
        for r in 0..10 {
            work(&db, &mut rng, round * 10 + r);
        }
        db.checkpoint().unwrap();
    }
    // Three checkpoints without writes: one of them is flagged (numbers are
    // consecutive, background checkpoints included), and its digest is of
    // the file as it stays.
    let last_write = db.pager().log().end_lsn();
    for _ in 0..3 {
        db.checkpoint().unwrap();
    }
    // Closed, so that the log reader sees the records of the open frame
    // too. The pin keeps every generation; the closing checkpoint writes no page.
    db.close().unwrap();
    let recs: Vec<_> = records(&disk).into_iter().filter(|(lsn, _)| *lsn >= first).collect();
    let mut flagged = Vec::new();
    let mut unflagged = 0;
    let markers: Vec<_> = recs
        .iter()
        .filter(|(_, r)| matches!(r, DbRecord::Checkpoint { .. }))
        .collect();
    for (i, (lsn, r)) in markers.iter().enumerate() {
        if let DbRecord::Checkpoint { number, whole_digest } = r {
            // The last is the closing checkpoint's, which never scans.
            let closing = i + 1 == markers.len();
            assert_eq!(
                *whole_digest,
                number % 3 == 0 && !closing,
                "checkpoint {number} at {lsn}"
            );
            if *whole_digest {
                flagged.push(*lsn);
            } else {
                unflagged += 1;
            }
        }
    }
    assert!(
        flagged.len() >= 4 && unflagged >= 8,
        "{} flagged, {unflagged} not",
        flagged.len()
    );
    // Each flagged marker is followed by one whole digest of it (one part:
    // the database is small), whose groups match the page count.
    for marker in &flagged {
        let parts: Vec<_> = recs
            .iter()
            .filter_map(|(_, r)| match r {
                DbRecord::WholeDigest(d) if d.marker == *marker => Some(d),
                _ => None,
            })
            .collect();
        assert_eq!(parts.len(), 1, "digest of the marker at {marker}");
        let d = parts[0];
        assert_eq!((d.group_pages, d.first_group), (GROUP_PAGES, 0));
        assert_eq!(d.groups.len() as u32, group_count(d.page_count, GROUP_PAGES));
        assert_eq!(d.root, root(d.page_count, d.group_pages, &d.groups));
    }
    // The last digest is of the file as it is now, computed by the
    // documented rule.
    let last = match records(&disk).into_iter().rev().find_map(|(_, r)| match r {
        DbRecord::WholeDigest(d) => Some(d),
        _ => None,
    }) {
        Some(d) => d,
        None => panic!("no whole digest logged"),
    };
    assert_eq!(Some(&last.marker), flagged.last());
    // A marker appended right after the last write starts where it ended.
    assert!(
        last.marker >= last_write,
        "the digest at {} follows the last write",
        last.marker
    );
    assert!(
        last.page_count > 2 + GROUP_PAGES,
        "the workload spans more than one group"
    );
    let (groups, r) = expected_digest(&file_bytes(&disk, &data_path(Path::new("/active"))), last.page_count);
    assert_eq!(last.groups, groups);
    assert_eq!(last.root, r);
    drop(pin);

    // 0 turns it off.
    let disk = SimVfs::new(2);
    let db = create(&disk, 0);
    let pin = db.pin_log(Lsn::ZERO);
    for round in 0..8 {
        work(&db, &mut rng, round);
        db.checkpoint().unwrap();
    }
    db.close().unwrap();
    for (lsn, r) in records(&disk) {
        assert!(
            !matches!(
                r,
                DbRecord::WholeDigest(_) | DbRecord::Checkpoint { whole_digest: true, .. }
            ),
            "whole digest at {lsn} with the option off"
        );
    }
    drop(pin);
}

#[test]
fn a_replayed_copy_verifies_the_whole_digests_and_stays_identical() {
    for seed in 0..3u64 {
        let disk = SimVfs::new(seed);
        let db = create(&disk, 2);
        let mut rng = SimRng::new(seed ^ 41);
        for round in 0..30 {
            work(&db, &mut rng, round);
        }
        db.checkpoint().unwrap();
        let image = file_bytes(&disk, &data_path(Path::new("/active")));
        let (mut replayer, source, mut replica, pin) = seed_copy(&disk, &db, &image);
        let (mut verified, mut skipped) = (0, 0);
        for round in 30..300 {
            work(&db, &mut rng, round);
            if rng.below(40) == 0 {
                db.checkpoint().unwrap();
            }
            if rng.below(10) == 0 {
                ship(&db, &source, &mut replica);
                pin.advance(Lsn::new(replica.next().generation(), 0).min(replayer.position()));
                let p = replayer.replay().unwrap();
                verified += p.digests_verified;
                skipped += p.digests_skipped;
                match rng.below(6) {
                    0 => replayer.checkpoint().unwrap(),
                    1 => {
                        replayer.checkpoint().unwrap();
                        drop(replayer);
                        replayer = Replayer::open(disk.clone(), "/copy", 32 * 4096).unwrap();
                    }
                    _ => {}
                }
            }
        }
        db.checkpoint().unwrap();
        db.checkpoint().unwrap();
        ship(&db, &source, &mut replica);
        let p = replayer.replay().unwrap();
        verified += p.digests_verified;
        skipped += p.digests_skipped;
        assert!(
            p.digests_verified >= 1,
            "seed {seed}: the last flagged checkpoint was verified: {p:?}"
        );
        assert!(
            verified >= 3,
            "seed {seed}: {verified} whole digests verified, {skipped} skipped"
        );
        // Everything shipped was replayed (the active's background
        // checkpoints may have made more log durable since).
        assert_eq!(p.position, replica.end(), "seed {seed}");
        replayer.checkpoint().unwrap();
        db.checkpoint().unwrap();
        let (a, c) = (
            file_bytes(&disk, &data_path(Path::new("/active"))),
            file_bytes(&disk, &data_path(Path::new("/copy"))),
        );
        let pages = db.pager().page_count() as usize;
        assert!(
            pages > 2 + GROUP_PAGES as usize,
            "seed {seed}: the workload spans groups"
        );
        let differing: Vec<usize> = (2..pages)
            .filter(|&n| a[n * PS..(n + 1) * PS] != c[n * PS..(n + 1) * PS])
            .collect();
        assert!(differing.is_empty(), "seed {seed}: pages differ: {differing:?}");
        drop(pin);
        db.close().unwrap();
    }
}

#[test]
fn a_page_that_differs_at_a_valid_checksum_is_reported_with_its_range() {
    let disk = SimVfs::new(7);
    let db = create(&disk, 1);
    let mut rng = SimRng::new(3);
    for round in 0..60 {
        work(&db, &mut rng, round);
    }
    db.checkpoint().unwrap();
    let image = file_bytes(&disk, &data_path(Path::new("/active")));
    let (mut replayer, source, mut replica, pin) = seed_copy(&disk, &db, &image);
    for round in 60..120 {
        work(&db, &mut rng, round);
    }
    db.checkpoint().unwrap();
    ship(&db, &source, &mut replica);
    let p = replayer.replay().unwrap();
    assert!(p.digests_verified >= 1, "the copy agrees before it is damaged");
    replayer.checkpoint().unwrap();
    let replayed_before = replayer.position();
    // Change the last page in use in the copy's file and reseal it: it
    // passes its own checksum, and only the comparison can tell.
    let path = data_path(Path::new("/copy"));
    let mut bytes = file_bytes(&disk, &path);
    let page_count = replayer.header().page_count;
    let victim = (2..page_count)
        .rev()
        .find(|&no| bytes[no as usize * PS..(no as usize + 1) * PS].iter().any(|&b| b != 0))
        .unwrap();
    assert!(victim >= 2 + GROUP_PAGES, "page {victim} is past the first group");
    let page = &mut bytes[victim as usize * PS..(victim as usize + 1) * PS];
    page[PS / 2] ^= 0x5a;
    let crc = crc32c::crc32c(&page[4..]);
    page[..4].copy_from_slice(&crc.to_le_bytes());
    let file = disk.open(&path, OpenMode::Existing).unwrap();
    file.write_at(page, u64::from(victim) * PS as u64).unwrap();
    file.sync_data().unwrap();
    // A checkpoint with no writes before it: the page stays as damaged.
    db.checkpoint().unwrap();
    ship(&db, &source, &mut replica);
    let err = replayer.replay().unwrap_err();
    let group = (victim - 2) / GROUP_PAGES;
    let start = 2 + group * GROUP_PAGES;
    let want = (start, (start + GROUP_PAGES).min(page_count));
    match &err {
        DbError::Diverged {
            file,
            marker: at,
            pages,
            ..
        } => {
            assert_eq!(pages, &[want], "page {victim}'s group");
            assert_eq!(file, &path);
            // A marker replayed after the damage: this checkpoint's, or a
            // background one's whose marker had not shipped yet.
            assert!(
                *at >= replayed_before,
                "a marker replayed after the damage, {at}, not one before {replayed_before}"
            );
        }
        other => panic!("not a divergence: {other}"),
    }
    let text = err.to_string();
    assert!(
        text.contains("diverged") && text.contains(&format!("pages {}..{}", want.0, want.1)),
        "{text}"
    );
    drop(pin);
    db.close().unwrap();
}

#[test]
fn a_copy_whose_file_is_ahead_of_the_marker_skips_instead_of_diverging() {
    let disk = SimVfs::new(11);
    let db = create(&disk, 1);
    let pin0 = db.pin_log(Lsn::ZERO);
    let mut rng = SimRng::new(5);
    for round in 0..40 {
        work(&db, &mut rng, round);
    }
    db.checkpoint().unwrap();
    let early = file_bytes(&disk, &data_path(Path::new("/active")));
    for round in 40..80 {
        work(&db, &mut rng, round);
        if round == 60 {
            db.checkpoint().unwrap();
        }
    }
    db.checkpoint().unwrap();
    // As a seed from the live file would be: the header of the first
    // checkpoint (replay starts there), pages as of the last one.
    let mut image = file_bytes(&disk, &data_path(Path::new("/active")));
    image[..2 * PS].copy_from_slice(&early[..2 * PS]);
    let (mut replayer, source, mut replica, pin) = seed_copy(&disk, &db, &image);
    for round in 80..100 {
        work(&db, &mut rng, round);
    }
    db.checkpoint().unwrap();
    ship(&db, &source, &mut replica);
    let p = replayer.replay().unwrap();
    assert!(
        p.digests_skipped >= 1,
        "the checkpoint at round 60 found pages ahead of it: {p:?}"
    );
    assert!(
        p.digests_verified >= 1,
        "the last checkpoint, past the image, verified: {p:?}"
    );
    assert_eq!(replayer.digests(), (p.digests_verified, p.digests_skipped));
    drop((pin, pin0));
    db.close().unwrap();
}

#[test]
fn crash_recovery_replays_whole_digests_without_checking_them() {
    let disk = SimVfs::new(13);
    let db = create(&disk, 1);
    let pin = db.pin_log(Lsn::ZERO);
    let mut rng = SimRng::new(8);
    for round in 0..55 {
        work(&db, &mut rng, round);
        if round % 9 == 8 {
            db.checkpoint().unwrap();
        }
    }
    db.pager().log().flush().unwrap();
    // Six checkpoints, all flagged; the reader may not see the open frame.
    let logged = records(&disk)
        .iter()
        .filter(|(_, r)| matches!(r, DbRecord::WholeDigest(_)))
        .count();
    assert!(logged >= 5, "{logged} whole digests logged");
    let before = rows(&db);
    assert!(before.len() > 20, "{} rows", before.len());
    drop(pin);
    db.pager().stop_background();
    drop(db);
    disk.crash();
    disk.restart();
    // Recovery replays from the last (flagged) marker, through its digest.
    let db = Database::open(disk.clone(), "/active", opts(1)).unwrap();
    assert!(rows(&db) == before, "recovery restored every commit");
    db.close().unwrap();
}

fn rows(db: &Database) -> Vec<(Vec<u8>, Vec<u8>)> {
    let rx = db.begin_read();
    let t = rx.open_table("t").unwrap();
    rx.range(&t, std::ops::Bound::Unbounded, std::ops::Bound::Unbounded)
        .unwrap()
        .map(|e| {
            let (k, v) = e.unwrap();
            let v = match v {
                mailvault::btree::Value::Inline(b) => b,
                long => mailvault::btree::read_value(rx.pages(), &long).unwrap(),
            };
            (k, v)
        })
        .collect()
}

#[test]
fn a_whole_digest_waits_for_log_worth_its_scan() {
    // Every 2nd checkpoint, but only once 4 × the file's size of log has
    // been written since the last whole digest.
    let disk = SimVfs::new(91);
    let mut o = opts(2);
    o.whole_digest_log_factor = 4;
    let db = Database::create(disk.clone(), "/active", o).unwrap();
    {
        let mut tx = db.begin_write();
        tx.create_table("t").unwrap();
        tx.commit().unwrap();
    }
    let pin = db.pin_log(Lsn::ZERO);
    let mut rng = SimRng::new(92);
    let mut checkpoints = 0;
    for round in 0..40 {
        work(&db, &mut rng, round);
        db.checkpoint().unwrap();
        checkpoints += 1;
    }
    db.close().unwrap();
    drop(pin);
    let recs = records(&disk);
    let mut whole = Vec::new();
    let mut last_whole = Lsn::ZERO;
    for (lsn, r) in &recs {
        if let DbRecord::Checkpoint {
            number,
            whole_digest: true,
        } = r
        {
            assert_eq!(number % 2, 0, "checkpoint {number}");
            whole.push(*lsn);
            last_whole = *lsn;
        }
    }
    let _ = last_whole;
    assert!(!whole.is_empty(), "some checkpoint logged a whole digest");
    assert!(
        whole.len() < checkpoints / 2 - 1,
        "{} whole digests in {checkpoints} checkpoints: the size rule held some back",
        whole.len()
    );
}
