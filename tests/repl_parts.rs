//! A passive copy replays transactions that the active logged in parts.
//! The active commits large and small transactions on one thread while
//! the test ships its durable log to a copy and replays it at random
//! moments, checkpointing, reopening and truncating the copy, often while
//! a transaction's parts have arrived and its commit has not. The copy
//! ends page-identical to the active.

#[path = "common/copying.rs"]
mod copying;

use copying::{file_bytes, ship};
use mailvault::log::{FrameSource, LogReplica, Lsn};
use mailvault::pager::{Replayer, data_path, log_dir};
use mailvault::txn::{Database, DbOptions};
use mailvault::vfs::sim::SimRng;
use mailvault::vfs::{OpenMode, SimVfs, Vfs};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

fn opts() -> DbOptions {
    let mut o = DbOptions {
        page_size: 4096,
        cache_bytes: 64 * 4096,
        checkpoint_depth: 64 << 10,
        ..DbOptions::default()
    };
    o.log.frame_size = 512;
    o.log.generation_size = 128 << 10;
    // Records of 8 KiB, and a buffer that makes parts durable before
    // their commit is appended.
    o.log.max_record_size = 8 << 10;
    o.log.buffer_size = 32 << 10;
    o
}

/// One transaction: a few small puts, or (one in two) 30 to 80 puts of
/// up to 2 KB, or a long value of 20 to 60 KB.
fn work(db: &Database, rng: &mut SimRng, round: u64) {
    let mut tx = db.begin_write();
    let t = tx.open_table("t").unwrap();
    let puts = match rng.below(4) {
        0 | 1 => 30 + rng.below(50),
        2 => 1,
        _ => 1 + rng.below(3),
    };
    for i in 0..puts {
        let len = match puts {
            1 => 20_000 + rng.below(40_000),
            _ => rng.below(2000),
        };
        let mut v = vec![0u8; len as usize];
        SimRng::new(round * 100 + i).fill(&mut v);
        tx.put(&t, format!("k{:04}", rng.below(600)).as_bytes(), &v).unwrap();
    }
    tx.commit().unwrap();
}

#[test]
fn a_copy_replaying_transactions_in_parts_is_page_identical_to_the_active() {
    let mut waiting_seen = 0;
    for seed in 0..3u64 {
        let disk = SimVfs::new(seed);
        let db = Arc::new(Database::create(disk.clone(), "/active", opts()).unwrap());
        {
            let mut tx = db.begin_write();
            tx.create_table("t").unwrap();
            tx.commit().unwrap();
        }
        db.checkpoint().unwrap();
        let image = file_bytes(&disk, &data_path(Path::new("/active")));
        disk.create_dir_all(Path::new("/copy")).unwrap();
        let copy = disk.open(&data_path(Path::new("/copy")), OpenMode::CreateNew).unwrap();
        copy.write_at(&image, 0).unwrap();
        copy.sync_data().unwrap();
        let mut replayer = Replayer::open(disk.clone(), "/copy", 32 * 4096).unwrap();
        let start = Lsn::new(replayer.position().generation(), 0);
        let source = FrameSource::new(disk.clone(), log_dir(Path::new("/active")));
        let mut replica = LogReplica::open(disk.clone(), log_dir(Path::new("/copy"))).unwrap();
        replica.start_at(start);
        let pin = db.pin_log(start);
        let done = Arc::new(AtomicBool::new(false));
        let writer = {
            let (db, done) = (db.clone(), done.clone());
            std::thread::spawn(move || {
                let mut rng = SimRng::new(seed ^ 91);
                for round in 0..120 {
                    work(&db, &mut rng, round);
                }
                done.store(true, Ordering::Release);
            })
        };
        let mut rng = SimRng::new(seed ^ 5);
        while !done.load(Ordering::Acquire) {
            ship(&source, &mut replica, db.pager().log().durable_lsn());
            pin.advance(Lsn::new(replica.next().generation(), 0));
            replayer.replay().unwrap();
            if replayer.parts_waiting() > 0 {
                waiting_seen += 1;
            }
            match rng.below(5) {
                0 => replayer.checkpoint().unwrap(),
                1 => replayer.checkpoint_in_background().unwrap(),
                2 => {
                    replayer.checkpoint().unwrap();
                    drop(replayer);
                    replayer = Replayer::open(disk.clone(), "/copy", 32 * 4096).unwrap();
                }
                _ => {}
            }
            replayer.truncate_log(replica.next()).unwrap();
        }
        writer.join().unwrap();
        db.pager().stop_background();
        ship(&source, &mut replica, db.pager().log().durable_lsn());
        let p = replayer.replay().unwrap();
        assert_eq!(
            p.position,
            db.pager().log().durable_lsn(),
            "seed {seed}: replay reached the end"
        );
        assert_eq!(replayer.parts_waiting(), 0);
        replayer.checkpoint().unwrap();
        db.checkpoint().unwrap();
        let (a, c) = (
            file_bytes(&disk, &data_path(Path::new("/active"))),
            file_bytes(&disk, &data_path(Path::new("/copy"))),
        );
        let ps = 4096;
        let pages = db.pager().page_count() as usize;
        assert!(pages > 50, "the workload spans pages");
        assert_eq!(replayer.header().page_count as usize, pages);
        let differing: Vec<usize> = (2..pages)
            .filter(|&n| a[n * ps..(n + 1) * ps] != c[n * ps..(n + 1) * ps])
            .collect();
        assert!(differing.is_empty(), "seed {seed}: pages differ: {differing:?}");
        drop(pin);
        drop(replayer);
        Arc::try_unwrap(db)
            .unwrap_or_else(|_| panic!("one owner"))
            .close()
            .unwrap();
    }
    assert!(
        waiting_seen > 0,
        "replay never stopped between a transaction's parts and its commit"
    );
}
