//! Large values written once: the pages of a long value that are new to the
//! file go to it in place, synced before the commit, which names them by
//! checksum (change kind 3) instead of carrying their bytes. The log stays
//! small, recovery finds the pages where they were written, a page that is
//! not there is a typed error naming it, and while a log pin is held the
//! pages go through the log as before. (Crashes, torn writes and I/O errors
//! at every call of a workload with such values: `txn_parts.rs`.)

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
    put(&db, b"body", &value);
    let logged = db.pager().log().stats().record_bytes - before;
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
