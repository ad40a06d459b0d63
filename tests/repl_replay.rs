//! A passive copy replays the active's shipped log with the same redo code
//! as recovery and ends up page-identical: after a random workload (small
//! and long values, deletes, checkpoints on the active), shipping at random
//! moments, replay in steps with checkpoints and reopens of the copy, every
//! page of the copy's file equals the active's at the same LSN.

#[path = "common/workload.rs"]
mod workload;

#[path = "common/copying.rs"]
mod copying;

use copying::{file_bytes, ship};
use mailvault::log::{FrameSource, LogReplica, Lsn};
use mailvault::pager::{Replayer, data_path, log_dir};
use mailvault::txn::{Database, DbOptions, LogPin};
use mailvault::vfs::sim::SimRng;
use mailvault::vfs::{OpenMode, SimVfs, Vfs};
use std::path::Path;
use std::sync::Arc;
use workload::{Mix, work_mix};

fn opts() -> DbOptions {
    let mut o = DbOptions {
        page_size: 4096,
        cache_bytes: 64 * 4096,
        checkpoint_depth: 64 << 10,
        ..DbOptions::default()
    };
    o.log.frame_size = 512;
    o.log.generation_size = 128 << 10;
    o.max_transaction_bytes = 256 << 10;
    o.log.max_record_size = 256 << 10;
    o
}

fn work(db: &Database, rng: &mut SimRng, round: u64) {
    work_mix(
        db,
        rng,
        round,
        &Mix {
            ops_below: 5,
            keys: 80,
            delete_one_in: 4,
            long_one_in: 8,
            long_min: 5000,
            long_span: 20_000,
            short_below: 300,
        },
    );
}

/// Seeds `/copy` with `image` (the active's file at rest after a
/// checkpoint) and starts its replica at the header's redo generation,
/// pinned on the active.
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

#[test]
fn a_replayed_copy_is_page_identical_to_the_active() {
    for seed in 0..4u64 {
        let disk = SimVfs::new(seed);
        let db = Database::create(disk.clone(), "/active", opts()).unwrap();
        {
            let mut tx = db.begin_write();
            tx.create_table("t").unwrap();
            tx.commit().unwrap();
        }
        let mut rng = SimRng::new(seed ^ 77);
        for round in 0..30 {
            work(&db, &mut rng, round);
        }
        // Seed the copy from the file at rest after a checkpoint: the header
        // names the redo point the shipped log must start from.
        db.checkpoint().unwrap();
        let image = file_bytes(&disk, &data_path(Path::new("/active")));
        let (mut replayer, source, mut replica, pin) = seed_copy(&disk, &db, &image);
        let mut verified = 0;
        for round in 30..300 {
            work(&db, &mut rng, round);
            if rng.below(10) == 0 {
                ship(&source, &mut replica, db.pager().log().durable_lsn());
                pin.advance(Lsn::new(replica.next().generation(), 0).min(replayer.position()));
                verified += replayer.replay().unwrap().verified;
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
        // The active's background checkpoint must not move its end between
        // this last ship and the comparison below.
        db.pager().stop_background();
        ship(&source, &mut replica, db.pager().log().durable_lsn());
        let p = replayer.replay().unwrap();
        verified += p.verified;
        assert!(
            verified > 0,
            "seed {seed}: the active's checkpoint digests were checked"
        );
        assert_eq!(
            p.position,
            db.pager().log().durable_lsn(),
            "seed {seed}: replay reached the active's end"
        );
        replayer.checkpoint().unwrap();
        db.checkpoint().unwrap();
        let (a, c) = (
            file_bytes(&disk, &data_path(Path::new("/active"))),
            file_bytes(&disk, &data_path(Path::new("/copy"))),
        );
        let ps = 4096;
        let pages = db.pager().page_count() as usize;
        assert!(pages > 20, "the workload spans pages");
        assert_eq!(replayer.header().page_count as usize, pages);
        let differing: Vec<usize> = (2..pages)
            .filter(|&n| a[n * ps..(n + 1) * ps] != c[n * ps..(n + 1) * ps])
            .collect();
        assert!(differing.is_empty(), "seed {seed}: pages differ: {differing:?}");
        assert!(
            replayer.truncate_log(replica.next()).unwrap() > 0,
            "old shipped generations are removed"
        );
        drop(pin);
        db.close().unwrap();
    }
}

#[test]
fn a_copy_whose_pages_were_tampered_with_is_caught_by_the_digests() {
    let disk = SimVfs::new(5);
    let db = Database::create(disk.clone(), "/active", opts()).unwrap();
    {
        let mut tx = db.begin_write();
        tx.create_table("t").unwrap();
        tx.commit().unwrap();
    }
    let mut rng = SimRng::new(3);
    for round in 0..40 {
        work(&db, &mut rng, round);
    }
    db.checkpoint().unwrap();
    let mut image = file_bytes(&disk, &data_path(Path::new("/active")));
    // Damage every page of the copy in its middle, resealing each so that
    // it still passes its own checksum: only a comparison with the
    // active's pages can tell.
    let ps = 4096;
    for no in 3..image.len() / ps {
        let page = &mut image[no * ps..(no + 1) * ps];
        if page.iter().all(|&b| b == 0) {
            continue;
        }
        page[ps / 2] ^= 0x5a;
        let crc = crc32c::crc32c(&page[4..]);
        page[..4].copy_from_slice(&crc.to_le_bytes());
    }
    let (mut replayer, source, mut replica, pin) = seed_copy(&disk, &db, &image);
    // Every key rewritten, then a checkpoint: its digest lists the pages.
    for round in 100..140 {
        work(&db, &mut rng, round);
    }
    db.checkpoint().unwrap();
    ship(&source, &mut replica, db.pager().log().durable_lsn());
    let err = replayer.replay().unwrap_err();
    assert!(err.to_string().contains("diverged"), "{err}");
    drop(pin);
    db.close().unwrap();
}
