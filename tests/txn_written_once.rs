//! Large values written once: the pages of a long value that are new to the
//! file go to it in place, synced before the commit, which names them by
//! checksum (change kind 3) instead of carrying their bytes. The log stays
//! small, recovery finds the pages where they were written, a page that is
//! not there is a typed error naming it, and while a log pin is held the
//! pages go through the log as before. (Crashes, torn writes and I/O errors
//! at every call of a workload with such values: `txn_parts.rs`; crashes
//! around long records whose interior frames go out before the data file's
//! sync, at the default page and frame sizes: below.)

#[path = "common/readable.rs"]
mod readable;

use mailvault::log::{LogReader, Lsn};
use mailvault::pager::redo::{DbRecord, PageChange};
use mailvault::pager::{DbError, log_dir};
use mailvault::txn::{Database, DbOptions};
use mailvault::vfs::{SimVfs, sim::SimRng};
use std::path::Path;

const DIR: &str = "/db";

fn filled(len: usize, id: u64) -> Vec<u8> {
    let mut v = vec![0u8; len];
    SimRng::new(id).fill(&mut v);
    v
}

fn create(sim: &std::sync::Arc<SimVfs>, o: DbOptions) -> Database {
    let db = Database::create(sim.clone(), DIR, o).expect("create");
    let mut tx = db.begin_write();
    tx.create_table("t").expect("table");
    tx.commit().expect("commit");
    db
}

fn put(db: &Database, key: &[u8], value: &[u8]) {
    let mut tx = db.begin_write();
    let t = tx.open_table("t").expect("table");
    tx.put(&t, key, value).expect("put");
    tx.commit().expect("commit");
}

fn get(db: &Database, key: &[u8]) -> Option<Vec<u8>> {
    let rx = db.begin_read();
    let t = rx.open_table("t").expect("table");
    rx.get(&t, key).expect("get")
}

/// Every page the log names as written once: (page, checksum, record LSN).
fn written_changes(sim: &std::sync::Arc<SimVfs>, page_size: usize) -> Vec<(u32, u32, Lsn)> {
    let reader = LogReader::new(sim.clone(), log_dir(Path::new(DIR)), Lsn::ZERO, Lsn::MAX).expect("reader");
    let mut out = Vec::new();
    for record in reader {
        let record = record.expect("record");
        if let Ok(DbRecord::Commit { changes, .. } | DbRecord::CommitParts { changes, .. }) =
            DbRecord::decode(&record.data, page_size)
        {
            for (no, change) in changes {
                if let PageChange::Written { crc } = change {
                    out.push((no, crc, record.lsn));
                }
            }
        }
    }
    out
}

/// A large checkpoint depth: nothing is checkpointed behind the test's back.
fn opts() -> DbOptions {
    DbOptions {
        checkpoint_depth: 256 << 20,
        ..DbOptions::default()
    }
}

#[test]
fn a_large_value_is_written_once_and_recovered_from_the_file() {
    let sim = SimVfs::new(1);
    let db = create(&sim, opts());
    let ps = db.pager().page_size();
    let value = filled(1 << 20, 7);
    let before = db.pager().log().stats().record_bytes;
    let hints = sim.writeback_hint_count();
    put(&db, b"body", &value);
    let logged = db.pager().log().stats().record_bytes - before;
    // The pages' writeback starts as they are written, before the sync.
    assert_eq!(
        sim.writeback_hint_count(),
        hints + 1,
        "one writeback hint for the commit's pages"
    );
    let once = db.pager().pages_written_once();
    // 1 MiB in 16 KiB pages: 65 data pages and an index page.
    assert!(once as usize >= value.len() / ps, "{once} pages written once");
    assert!(logged < 4096, "{logged} bytes logged for a 1 MiB value");
    assert_eq!(get(&db, b"body").as_deref(), Some(&value[..]));
    let named = written_changes(&sim, ps);
    assert_eq!(named.len() as u64, once, "the commit names every page written once");
    // A crash before any checkpoint: redo meets the commit and finds the
    // pages in the file.
    db.pager().stop_background();
    drop(db);
    sim.crash();
    sim.restart();
    let db = Database::open(sim.clone(), DIR, opts()).expect("reopen");
    assert_eq!(db.recovery_stats().written_once, once, "{:?}", db.recovery_stats());
    assert_eq!(get(&db, b"body").as_deref(), Some(&value[..]));
    let report = db.begin_read().verify().expect("verify");
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    // Replaced and the old value freed: its pages are reused through the
    // log (no longer new to the file), and everything still reads back.
    let second = filled(300_000, 8);
    put(&db, b"body", &second);
    put(&db, b"other", &filled(200_000, 9));
    assert_eq!(get(&db, b"body").as_deref(), Some(&second[..]));
    db.close().expect("close");
    let db = Database::open(sim.clone(), DIR, opts()).expect("reopen after close");
    assert_eq!(get(&db, b"body").as_deref(), Some(&second[..]));
    assert_eq!(get(&db, b"other").as_deref(), Some(&filled(200_000, 9)[..]));
}

#[test]
fn a_page_written_once_missing_from_the_file_is_refused_naming_it() {
    let sim = SimVfs::new(2);
    let db = create(&sim, opts());
    let ps = db.pager().page_size();
    put(&db, b"body", &filled(200_000, 3));
    db.pager().stop_background();
    drop(db);
    sim.crash();
    sim.restart();
    let (page, crc, lsn) = written_changes(&sim, ps)[3];
    // The write "lost": the page reads as never written.
    let path = mailvault::pager::data_path(Path::new(DIR));
    sim.poke(&path, u64::from(page) * ps as u64, &vec![0u8; ps])
        .expect("poke");
    match Database::open(sim.clone(), DIR, opts()) {
        Err(DbError::NotWritten {
            file,
            page: p,
            offset,
            crc: c,
            found,
            record,
        }) => {
            assert_eq!((p, c, record, found), (page, crc, lsn, None));
            assert_eq!(offset, u64::from(page) * ps as u64);
            assert_eq!(file, path);
        }
        Ok(db) => panic!("expected NotWritten, opened: {:?}", db.recovery_stats()),
        Err(other) => panic!("expected NotWritten, got {other:?}"),
    }
    // Another page's bytes there (valid, but not the one written): refused too.
    let (first, _, _) = written_changes(&sim, ps)[0];
    let other = sim.durable_image(&path).expect("file")[first as usize * ps..(first as usize + 1) * ps].to_vec();
    let mut moved = other.clone();
    moved[4..8].copy_from_slice(&page.to_le_bytes());
    let crc_moved = crc32c::crc32c(&moved[4..]);
    moved[0..4].copy_from_slice(&crc_moved.to_le_bytes());
    sim.poke(&path, u64::from(page) * ps as u64, &moved).expect("poke");
    match Database::open(sim.clone(), DIR, opts()) {
        Err(DbError::NotWritten { page: p, found, .. }) => {
            assert_eq!(p, page);
            assert!(found.is_some(), "a readable page at the wrong content");
        }
        other => panic!("expected NotWritten, got {other:?}"),
    }
}

#[test]
fn while_the_log_is_pinned_large_values_go_through_the_log() {
    let sim = SimVfs::new(3);
    let db = create(&sim, opts());
    let value = filled(500_000, 4);
    let pin = db.pin_log(db.pager().log().durable_lsn());
    let before = db.pager().log().stats().record_bytes;
    put(&db, b"pinned", &value);
    assert_eq!(
        db.pager().pages_written_once(),
        0,
        "a pin holder reads every page from the log"
    );
    assert!(db.pager().log().stats().record_bytes - before > value.len() as u64);
    drop(pin);
    put(&db, b"free", &value);
    assert!(
        db.pager().pages_written_once() > 0,
        "written once again without the pin"
    );
    assert_eq!(get(&db, b"pinned").as_deref(), Some(&value[..]));
    assert_eq!(get(&db, b"free").as_deref(), Some(&value[..]));
}

#[test]
fn the_option_off_logs_every_page() {
    let sim = SimVfs::new(4);
    let o = DbOptions {
        write_large_values_once: false,
        ..opts()
    };
    let db = create(&sim, o);
    put(&db, b"body", &filled(500_000, 5));
    assert_eq!(db.pager().pages_written_once(), 0);
    assert!(written_changes(&sim, db.pager().page_size()).is_empty());
}

/// Snapshots taken before a commit that writes pages once keep reading
/// their state while it commits, and readers after it see the new value.
#[test]
fn snapshots_across_a_commit_that_writes_once_see_their_own_state() {
    let sim = SimVfs::new(5);
    let db = create(&sim, opts());
    put(&db, b"a", &filled(100_000, 1));
    let old = db.begin_read();
    put(&db, b"a", &filled(150_000, 2));
    put(&db, b"b", &filled(150_000, 3));
    let t = old.open_table("t").expect("table");
    assert_eq!(old.get(&t, b"a").expect("get"), Some(filled(100_000, 1)));
    assert!(old.get(&t, b"b").expect("get").is_none());
    drop(old);
    assert_eq!(get(&db, b"a"), Some(filled(150_000, 2)));
    assert_eq!(get(&db, b"b"), Some(filled(150_000, 3)));
}

/// One transaction of the sweep below: a long value (its pages written once)
/// and enough small puts that the commit record runs past two 4 KiB frames,
/// so its committer writes interior frames before any leader syncs the data
/// file. Returns the state after it.
fn long_record_transaction(
    db: &Database,
    rng: &mut SimRng,
    model: &std::collections::BTreeMap<Vec<u8>, Vec<u8>>,
    id: u64,
) -> Result<std::collections::BTreeMap<Vec<u8>, Vec<u8>>, DbError> {
    let mut next = model.clone();
    let mut tx = db.begin_write();
    let t = tx.open_table("t")?;
    for (k, v) in long_record_puts(rng, id) {
        tx.put(&t, &k, &v)?;
        next.insert(k, v);
    }
    tx.commit()?;
    Ok(next)
}

fn long_record_puts(rng: &mut SimRng, id: u64) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut puts = vec![(
        format!("long{id:03}").into_bytes(),
        filled(40_000 + rng.below(80_000) as usize, id),
    )];
    for i in 0..40 {
        let key = format!("k{:05}", rng.below(20_000)).into_bytes();
        puts.push((key, filled(200 + rng.below(200) as usize, id * 100 + i)));
    }
    puts
}

/// The default page and frame sizes, with small log generations so that
/// each case's simulated disk stays small.
fn sweep_opts() -> DbOptions {
    DbOptions {
        log: mailvault::log::LogOptions {
            generation_size: 2 << 20,
            buffer_size: 1 << 20,
            max_record_size: 256 << 10,
            ..Default::default()
        },
        ..opts()
    }
}

/// The default geometry (16 KiB pages, 4 KiB frames): commits whose pages
/// were written once and whose records have interior frames, which their
/// committer writes before the batch's leader syncs the data file. A crash
/// at each sync of the workload, and at random calls, must reopen to the
/// acknowledged state or that plus the commit in flight: never a page the
/// log names missing from the file (`DbError::NotWritten`).
#[test]
fn crashes_around_long_records_with_interior_frames_lose_nothing() {
    let mut saw_interior = false;
    let mut written_once = 0;
    let mut stopped = 0;
    let cases: Vec<(u64, bool)> = (0..24)
        .map(|n| (n, true))
        .chain((0..24).map(|n| (100 + n, false)))
        .collect();
    for (seed, at_sync) in cases {
        let sim = SimVfs::new(seed);
        let db = create(&sim, sweep_opts());
        let frame_payload = 4096 - 32;
        let mut rng = SimRng::new(seed ^ 0xabcd);
        let mut acked = long_record_transaction(&db, &mut rng, &Default::default(), 0).expect("warm-up");
        if at_sync {
            sim.crash_at_sync(sim.sync_count() + seed % 20 + 1);
        } else {
            let op = rng.below(120);
            sim.inject_at_op(sim.op_count() + op, mailvault::vfs::FaultKind::Crash);
        }
        let mut in_flight = None;
        for id in 1..12 {
            let mut replay = rng.clone();
            match long_record_transaction(&db, &mut rng, &acked, id) {
                Ok(next) => acked = next,
                Err(_) => {
                    let mut next = acked.clone();
                    next.extend(long_record_puts(&mut replay, id));
                    in_flight = Some(next);
                    stopped += 1;
                    break;
                }
            }
        }
        db.pager().stop_background();
        drop(db);
        sim.crash();
        sim.clear_faults();
        sim.restart();
        let reader = LogReader::new(sim.clone(), log_dir(Path::new(DIR)), Lsn::ZERO, Lsn::MAX).expect("reader");
        saw_interior |= reader.filter_map(|r| r.ok()).any(|r| r.data.len() > 2 * frame_payload);
        let db = Database::open(sim.clone(), DIR, sweep_opts()).unwrap_or_else(|e| panic!("seed {seed}: reopen: {e}"));
        let got = readable::active_rows(&db);
        assert!(
            got == acked || in_flight.as_ref() == Some(&got),
            "seed {seed}: recovered state is neither the acknowledged one nor the one in flight"
        );
        written_once += db.recovery_stats().written_once;
        db.close().expect("close");
    }
    assert!(saw_interior, "no commit record was long enough to have interior frames");
    assert!(written_once > 0, "no recovery met a page written once");
    assert!(stopped >= 36, "only {stopped} of 48 crashes struck during the workload");
}
