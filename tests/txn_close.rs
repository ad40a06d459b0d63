//! A clean close gives back the log's spare space (its prepared and recycled
//! generation files, and the unused tail of the current one) and loses
//! nothing: on a real file system the space is measured, and on the
//! simulated disk a crash at every operation of the close, or an I/O error
//! at each in turn, leaves a store that opens with every acknowledged commit.

use mailvault::log::{GENERATION_SUFFIX, LogOptions};
use mailvault::txn::{Database, DbOptions, Table};
use mailvault::vfs::{FaultKind, OsVfs, SimVfs};
use std::path::Path;
use std::sync::Arc;

const GENERATION: u64 = 256 << 10;

fn opts() -> DbOptions {
    DbOptions {
        page_size: 4096,
        cache_bytes: 256 * 4096,
        checkpoint_depth: 256 << 10,
        max_transaction_bytes: 128 << 10,
        log: LogOptions {
            frame_size: 4096,
            generation_size: GENERATION,
            max_record_size: 128 << 10,
            ..LogOptions::default()
        },
        ..DbOptions::default()
    }
}

fn key(i: u32) -> Vec<u8> {
    format!("msg-{i:06}").into_bytes()
}

fn value(i: u32) -> Vec<u8> {
    (0..300 + i % 200).map(|j| (i ^ j) as u8).collect()
}

/// Commits `from..to`, one put per transaction, each acknowledged.
fn deliver(db: &Database, table: &Table, from: u32, to: u32) {
    for i in from..to {
        let mut tx = db.begin_write();
        tx.put(table, &key(i), &value(i)).expect("put");
        tx.commit().expect("commit");
    }
}

fn assert_holds(db: &Database, count: u32, context: &str) {
    let rx = db.begin_read();
    let table = rx
        .open_table("mail")
        .unwrap_or_else(|e| panic!("{context}: table: {e}"));
    for i in 0..count {
        assert_eq!(
            rx.get(&table, &key(i))
                .unwrap_or_else(|e| panic!("{context}: get {i}: {e}")),
            Some(value(i)),
            "{context}: message {i}"
        );
    }
    assert_eq!(
        rx.range(&table, std::ops::Bound::Unbounded, std::ops::Bound::Unbounded)
            .expect("range")
            .count(),
        count as usize,
        "{context}: nothing more"
    );
}

/// Bytes allocated to the file `name` in `dir`.
fn allocated_bytes(dir: &Path, name: &str) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(dir.join(name)).expect("metadata").blocks() * 512
}

fn log_files(dir: &Path) -> Vec<(String, u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let mut files: Vec<_> = std::fs::read_dir(dir.join("log"))
        .expect("log directory")
        .map(|e| e.expect("entry"))
        .map(|e| {
            let meta = e.metadata().expect("metadata");
            (
                e.file_name().to_string_lossy().into_owned(),
                meta.len(),
                meta.blocks() * 512,
            )
        })
        .collect();
    files.sort();
    files
}

#[test]
fn a_clean_close_keeps_only_the_live_log_on_disk() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = Database::create(Arc::new(OsVfs), dir.path(), opts()).expect("create");
    let mut tx = db.begin_write();
    let table = tx.create_table("mail").expect("table");
    tx.commit().expect("commit");
    // Several generations' worth, so that some are recycled.
    deliver(&db, &table, 0, 3000);
    db.pager().log().wait_prepared();
    let before = log_files(dir.path());
    assert!(before.len() >= 2, "spare generations were kept ready: {before:?}");
    db.close().expect("close");

    let after = log_files(dir.path());
    eprintln!("log files before the close: {before:?}; after: {after:?}");
    let generations: Vec<_> = after
        .iter()
        .filter(|(n, _, _)| n.ends_with(GENERATION_SUFFIX))
        .collect();
    assert_eq!(generations.len(), 1, "only the current generation is left: {after:?}");
    assert_eq!(after.len(), 1, "no recycled or prepared file is left: {after:?}");
    let (_, len, allocated) = generations[0];
    assert_eq!(*len, GENERATION, "the length is kept");
    // Where the file system has holes (ext4, xfs, tmpfs), the unused tail is
    // given back: nothing stays allocated past the frame that holds the last
    // record (the released tail reads as zeros).
    if *allocated < GENERATION {
        let frame = 4096;
        let bytes = std::fs::read(dir.path().join("log").join(&generations[0].0)).expect("read generation");
        let used = bytes.iter().rposition(|&b| b != 0).map_or(0, |i| i as u64 + 1);
        let kept = used.div_ceil(frame) * frame;
        assert!(
            *allocated <= kept + frame,
            "a clean close keeps the log up to its end only: {allocated} bytes allocated, {used} used"
        );
    }

    // Everything is there, and the store goes on from where it was.
    let db = Database::open(Arc::new(OsVfs), dir.path(), opts()).expect("reopen");
    assert_holds(&db, 3000, "after the first close");
    let table = db.begin_read().open_table("mail").expect("table");
    deliver(&db, &table, 3000, 5000);
    db.close().expect("close again");
    let db = Database::open(Arc::new(OsVfs), dir.path(), opts()).expect("reopen again");
    assert_holds(&db, 5000, "after the second close");
    db.close().expect("close a third time");
}

/// A young log writes no zeros it may never use: the next generation's file
/// is made ready at once, but zero-filled only once the log is half way
/// through the current one; a spare left by an earlier open is filled again.
/// (Where the file system has no holes, sizes cannot tell a fill that came
/// early, and only the fill past half is checked.)
#[test]
fn the_next_generation_is_zero_filled_only_past_half_of_the_current() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = Database::create(Arc::new(OsVfs), dir.path(), opts()).expect("create");
    let mut tx = db.begin_write();
    let table = tx.create_table("mail").expect("table");
    tx.commit().expect("commit");
    let log = db.pager().log();
    let mut delivered = 0;
    let next_allocated = |what: &str| -> u64 {
        log.wait_prepared();
        let files = log_files(dir.path());
        let generation = log.durable_lsn().generation();
        let next = mailvault::log::generation_name(generation + 1);
        match files.iter().find(|(name, _, _)| *name == next) {
            Some((_, len, allocated)) => {
                assert_eq!(*len, GENERATION, "{what}: the next file is sized: {files:?}");
                *allocated
            }
            None => panic!("{what}: no file for generation {} in {files:?}", generation + 1),
        }
    };
    let probe = dir.path().join("sparse-probe");
    std::fs::File::create(&probe)
        .and_then(|f| f.set_len(GENERATION))
        .expect("probe");
    let holes = allocated_bytes(dir.path(), "sparse-probe") < GENERATION / 2;
    std::fs::remove_file(&probe).expect("remove probe");
    if holes {
        let allocated = next_allocated("fresh");
        assert!(
            allocated < GENERATION / 2,
            "zeros written at once: {allocated} bytes allocated"
        );
    }
    while u64::from(log.durable_lsn().offset()) * 2 < GENERATION * 2 / 5 {
        deliver(&db, &table, delivered, delivered + 10);
        delivered += 10;
    }
    if holes {
        let allocated = next_allocated("at a fifth");
        assert!(
            allocated < GENERATION / 2,
            "zeros written early: {allocated} bytes allocated"
        );
    }
    while u64::from(log.durable_lsn().offset()) * 2 < GENERATION {
        deliver(&db, &table, delivered, delivered + 10);
        delivered += 10;
    }
    assert_eq!(log.durable_lsn().generation(), 1, "still in the first generation");
    let allocated = next_allocated("past half");
    assert!(
        allocated >= GENERATION,
        "past half, the next file is filled: {allocated} bytes allocated"
    );
    db.close().expect("close");
    let db = Database::open(Arc::new(OsVfs), dir.path(), opts()).expect("reopen");
    assert_holds(&db, delivered, "after the close");
    db.close().expect("close again");
}

/// A store with acknowledged commits, left open for the close under test.
fn open_store(sim: &Arc<SimVfs>) -> Database {
    let db = Database::create(sim.clone(), "/db", opts()).expect("create");
    let mut tx = db.begin_write();
    let table = tx.create_table("mail").expect("table");
    tx.commit().expect("commit");
    deliver(&db, &table, 0, 600);
    db.pager().log().wait_prepared();
    db
}

#[test]
fn a_crash_or_an_error_at_any_point_of_a_close_loses_nothing() {
    // How many file-system calls a close makes, on an undisturbed run.
    let sim = SimVfs::new(11);
    let db = open_store(&sim);
    let start = sim.op_count();
    db.close().expect("close");
    let close_ops = sim.op_count() - start;
    assert!(close_ops > 5, "a close writes, syncs and removes: {close_ops} calls");

    for n in 0..close_ops + 2 {
        for fault in [FaultKind::Crash, FaultKind::Eio] {
            let sim = SimVfs::new(100 + n);
            let db = open_store(&sim);
            sim.inject_at_op(sim.op_count() + n, fault);
            let closed = db.close();
            // A fault past the end of this close must not fire in the reopen.
            sim.clear_faults();
            if fault == FaultKind::Crash || closed.is_err() {
                sim.crash();
            }
            sim.restart();
            let context = format!("{fault:?} at call {n} of the close (closed: {})", closed.is_ok());
            let db = Database::open(sim.clone(), "/db", opts()).unwrap_or_else(|e| panic!("{context}: open: {e}"));
            assert_holds(&db, 600, &context);
            db.close().unwrap_or_else(|e| panic!("{context}: close after: {e}"));
        }
    }
}
