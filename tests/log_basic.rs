//! Basic log behaviour on the OS file system and on the simulation.

use mailvault::log::{Log, LogOptions, Lsn};
use mailvault::vfs::{OsVfs, SharedVfs, SimVfs};
use std::path::Path;
use std::sync::Arc;

fn small_opts() -> LogOptions {
    LogOptions {
        frame_size: 512,
        generation_size: 64 * 512,
        buffer_size: 8 * 512,
        max_record_size: 2048,
        ..LogOptions::default()
    }
}

fn read_all(log: &Log) -> Vec<(Lsn, Vec<u8>)> {
    log.reader(Lsn::ZERO)
        .expect("reader")
        .map(|r| r.map(|r| (r.lsn, r.data)).expect("record"))
        .collect()
}

fn payload(i: u32) -> Vec<u8> {
    let len = (i as usize * 37) % 1500;
    (0..len).map(|j| (i as usize * 31 + j) as u8).collect()
}

fn roundtrip(vfs: SharedVfs, dir: &Path) {
    let log = Log::create(vfs.clone(), dir, small_opts()).expect("create");
    let mut written = Vec::new();
    for i in 0..300 {
        let a = log.commit(&payload(i)).expect("commit");
        written.push((a.lsn, payload(i)));
    }
    assert_eq!(read_all(&log), written);
    assert!(log.stats().generation_switches > 3, "test should cross generations");
    assert!(
        log.stats().interior_frames > 0,
        "large records write their interior frames themselves"
    );
    drop(log);
    let log = Log::open(vfs.clone(), dir, small_opts()).expect("reopen");
    assert_eq!(read_all(&log), written);
    assert!(log.recovery_report().torn_tail.is_none());
    // Appending after reopen continues the log.
    let a = log.commit(b"after reopen").expect("commit");
    assert!(a.lsn > written.last().expect("records").0);
    written.push((a.lsn, b"after reopen".to_vec()));
    log.close().expect("close");
    let log = Log::open(vfs, dir, small_opts()).expect("reopen");
    assert_eq!(read_all(&log), written);
}

#[test]
fn roundtrip_on_os() {
    let tmp = tempfile::tempdir().expect("tempdir");
    roundtrip(Arc::new(OsVfs), &tmp.path().join("log"));
}

#[test]
fn roundtrip_on_sim() {
    let sim = SimVfs::new(1);
    roundtrip(sim, Path::new("/store/log"));
}

#[test]
fn reader_starts_at_any_record() {
    let sim = SimVfs::new(2);
    let log = Log::create(sim, "/log", small_opts()).expect("create");
    let mut written = Vec::new();
    for i in 0..120 {
        let a = log.append(&payload(i)).expect("append");
        written.push((a.lsn, payload(i)));
    }
    log.flush().expect("flush");
    for start in [0, 1, 17, 60, 119] {
        let got: Vec<_> = log
            .reader(written[start].0)
            .expect("reader")
            .map(|r| r.map(|r| (r.lsn, r.data)).expect("record"))
            .collect();
        assert_eq!(got, written[start..], "from record {start}");
    }
    let inside = Lsn(written[5].0.0 + 3);
    let err = log.reader(inside).expect("reader").find_map(|r| r.err());
    assert!(err.is_some(), "a position inside a record is refused");
}

#[test]
fn concurrent_committers_group_commit() {
    // Parking at once, the default, and yielding through many batches: each
    // way of waiting must see its own record durable and lose none.
    for yield_rounds in [0, LogOptions::default().yield_rounds, 50] {
        concurrent_committers(LogOptions {
            yield_rounds,
            ..small_opts()
        });
    }
}

fn concurrent_committers(opts: LogOptions) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let log = Arc::new(Log::create(Arc::new(OsVfs), tmp.path(), opts).expect("create"));
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let log = log.clone();
            std::thread::spawn(move || {
                let mut mine = Vec::new();
                for i in 0..100u32 {
                    let data = format!("thread {t} record {i}").into_bytes();
                    let a = log.commit(&data).expect("commit");
                    assert!(log.durable_lsn() >= a.end);
                    mine.push((a.lsn, data));
                }
                mine
            })
        })
        .collect();
    let mut all: Vec<_> = threads.into_iter().flat_map(|t| t.join().expect("thread")).collect();
    all.sort();
    assert_eq!(read_all(&log), all);
    let stats = log.stats();
    assert_eq!(stats.records, 800);
    assert!(stats.syncs <= 800 + stats.generation_switches * 2);
}

/// A log that runs through recycled files (stale frames of their previous
/// life after its end) and is closed cleanly reopens without a torn tail.
#[test]
fn clean_close_in_a_recycled_generation_reports_no_torn_tail() {
    let sim = SimVfs::new(21);
    let dir = Path::new("/recycled");
    let log = Log::create(sim.clone(), dir, small_opts()).expect("create");
    let mut recycled = 0;
    for i in 0..2000u32 {
        let a = log.commit(&payload(i)).expect("commit");
        recycled += log.recycle_before(Lsn::new(a.lsn.generation(), 0)).expect("recycle");
    }
    assert!(recycled > 4, "the files were recycled ({recycled})");
    // Stop half-way through a recycled file, whose tail holds stale frames.
    log.commit(&[7u8; 100]).expect("commit");
    log.close().expect("close");
    let log = Log::open(sim, dir, small_opts()).expect("reopen");
    assert_eq!(
        log.recovery_report().torn_tail,
        None,
        "a clean close leaves no torn tail"
    );
}
