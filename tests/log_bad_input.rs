//! Bad input on disk and through the API: each case is a typed error naming
//! the file and the offset, never a panic; a torn tail is repaired and reported.

mod common;

use common::{DIR, small_opts};
use mailvault::log::{Log, LogError, LogOptions, LogSignature, Lsn, generation_name};
use mailvault::vfs::{OpenMode, SimVfs, Vfs};
use std::path::{Path, PathBuf};
use std::sync::Arc;

fn gen_path(g: u32) -> PathBuf {
    Path::new(DIR).join(generation_name(g))
}

/// A log with several closed generations.
fn filled_log(seed: u64) -> Arc<SimVfs> {
    let sim = SimVfs::new(seed);
    let log = Log::create(sim.clone(), DIR, small_opts()).expect("create");
    for i in 0..400u32 {
        log.commit(&vec![(i % 251) as u8; (i as usize * 13) % 700])
            .expect("commit");
    }
    assert!(log.stats().generation_switches >= 3);
    log.close().expect("close");
    sim
}

fn open_err(sim: &Arc<SimVfs>) -> LogError {
    Log::open(sim.clone(), DIR, small_opts()).expect_err("open must fail")
}

fn assert_names(err: &LogError, file: &Path) {
    let msg = err.to_string();
    assert!(
        msg.contains(&file.display().to_string()),
        "error does not name {}: {msg}",
        file.display()
    );
    assert!(msg.contains("offset"), "error does not give an offset: {msg}");
}

#[test]
fn corrupt_frame_in_a_closed_generation() {
    let sim = filled_log(1);
    let path = gen_path(2);
    let offset = 5 * 512 + 100;
    sim.poke(&path, offset, &[0xff, 0x00, 0xaa]).expect("poke");
    let err = open_err(&sim);
    assert!(matches!(err, LogError::Corrupt { offset: 2560, .. }), "{err:?}");
    assert_names(&err, &path);
    // Read-only verification reports the same.
    let err = Log::verify(sim.as_ref(), DIR, None, &mut |_| Ok(())).expect_err("verify must fail");
    assert_names(&err, &path);
}

#[test]
fn corrupt_header_in_a_middle_generation() {
    let sim = filled_log(2);
    let path = gen_path(2);
    sim.poke(&path, 40, b"x").expect("poke");
    let err = open_err(&sim);
    assert!(matches!(err, LogError::Corrupt { offset: 0, .. }), "{err:?}");
    assert_names(&err, &path);
}

#[test]
fn truncated_generation() {
    let sim = filled_log(3);
    let path = gen_path(1);
    let file = sim.open(&path, OpenMode::Existing).expect("open");
    file.set_len(10 * 512).expect("truncate");
    file.sync_data().expect("sync");
    drop(file);
    let err = open_err(&sim);
    assert!(matches!(err, LogError::Corrupt { .. }), "{err:?}");
    assert_names(&err, &path);
}

#[test]
fn wrong_signature() {
    let sim = filled_log(4);
    let opts = LogOptions {
        signature: Some(LogSignature([7; 16])),
        ..small_opts()
    };
    let err = Log::open(sim.clone(), DIR, opts).expect_err("must fail");
    assert!(matches!(err, LogError::WrongSignature { offset: 32, .. }), "{err:?}");
    assert_names(&err, &gen_path(1));
}

#[test]
fn foreign_file_in_the_directory() {
    let sim = filled_log(5);
    let path = Path::new(DIR).join("notes.txt");
    sim.open(&path, OpenMode::CreateNew)
        .expect("create")
        .write_at(b"hello", 0)
        .expect("write");
    let err = open_err(&sim);
    assert!(matches!(err, LogError::ForeignFile { .. }), "{err:?}");
    assert_names(&err, &path);
}

#[test]
fn foreign_file_with_a_generation_name() {
    let sim = filled_log(6);
    let path = gen_path(2);
    let file = sim.open(&path, OpenMode::Existing).expect("open");
    file.write_at(&[0x42; 512], 0).expect("write");
    drop(file);
    let err = open_err(&sim);
    assert_names(&err, &path);
}

#[test]
fn missing_generation_in_the_middle() {
    let sim = filled_log(7);
    sim.remove(&gen_path(2)).expect("remove");
    let err = open_err(&sim);
    assert!(
        matches!(err, LogError::MissingGeneration { generation: 2, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains(&gen_path(1).display().to_string()));
}

#[test]
fn generation_from_another_log() {
    let sim = filled_log(8);
    let other = filled_log(9);
    let foreign = other.written_image(&gen_path(2)).expect("image");
    let file = sim.open(&gen_path(2), OpenMode::Existing).expect("open");
    file.set_len(0).expect("truncate");
    file.write_at(&foreign, 0).expect("write");
    drop(file);
    let err = open_err(&sim);
    assert!(matches!(err, LogError::WrongSignature { .. }), "{err:?}");
    assert_names(&err, &gen_path(2));
}

#[test]
fn divergent_history_with_the_same_signature() {
    // Two copies of one log that went separate ways after generation 1.
    let make = |seed: u64, salt: u8| {
        let sim = SimVfs::new(seed);
        let opts = LogOptions {
            signature: Some(LogSignature([3; 16])),
            ..small_opts()
        };
        let log = Log::create(sim.clone(), DIR, opts).expect("create");
        for i in 0..300u32 {
            log.commit(&vec![salt ^ (i as u8); 300]).expect("commit");
        }
        log.close().expect("close");
        sim
    };
    let a = make(10, 1);
    let b = make(11, 2);
    let theirs = b.written_image(&gen_path(3)).expect("image");
    let file = a.open(&gen_path(3), OpenMode::Existing).expect("open");
    file.write_at(&theirs, 0).expect("write");
    drop(file);
    let err = open_err(&a);
    assert!(matches!(err, LogError::Divergent { .. }), "{err:?}");
    assert_names(&err, &gen_path(3));
}

#[test]
fn torn_tail_is_repaired_and_reported() {
    let sim = SimVfs::new(12);
    let log = Log::create(sim.clone(), DIR, small_opts()).expect("create");
    let mut acked = Vec::new();
    let mut end = Lsn::ZERO;
    for i in 0..30u32 {
        let appended = log.commit(&[i as u8; 100]).expect("commit");
        acked.push(appended.lsn);
        end = appended.end;
    }
    let last = *acked.last().expect("records");
    let path = gen_path(last.generation());
    drop(log);
    // Garbage where the next batch would have gone (the frame after the one
    // holding the end of the log), as a torn write leaves it.
    let end_frame = ((end.offset() as u64 - 1) / 512 + 1) * 512;
    sim.poke(&path, end_frame, &[0x5a; 700]).expect("poke");
    let log = Log::open(sim.clone(), DIR, small_opts()).expect("a torn tail is not an error");
    let (file, torn) = log.recovery_report().torn_tail.clone().expect("torn tail reported");
    assert_eq!(file, path);
    let last_frame = last.offset() as u64 / 512 * 512;
    assert!(
        (last_frame..=end_frame).contains(&torn.offset),
        "torn tail at {}",
        torn.offset
    );
    let got: Vec<Lsn> = log
        .reader(Lsn::ZERO)
        .expect("reader")
        .map(|r| r.expect("record").lsn)
        .collect();
    assert_eq!(got, acked);
    // The repair is durable: the next open finds a clean log.
    drop(log);
    let log = Log::open(sim, DIR, small_opts()).expect("reopen");
    assert!(log.recovery_report().torn_tail.is_none());
}

#[test]
fn damage_before_durable_frames_is_not_a_torn_tail() {
    let sim = SimVfs::new(13);
    let log = Log::create(sim.clone(), DIR, small_opts()).expect("create");
    let first = log.commit(&[1u8; 1000]).expect("commit");
    for _ in 0..8 {
        log.commit(&[2u8; 1000]).expect("commit");
    }
    drop(log);
    // Damage the frame holding the first record; later batches wrote after it.
    let path = gen_path(first.lsn.generation());
    sim.poke(&path, first.lsn.offset() as u64 + 40, &[0xee]).expect("poke");
    let err = open_err(&sim);
    assert!(
        matches!(err, LogError::Corrupt { .. }),
        "silently cut acknowledged records: {err:?}"
    );
    assert_names(&err, &path);
}

#[test]
fn api_arguments() {
    let sim = SimVfs::new(14);
    let err = Log::open(sim.clone(), DIR, small_opts()).expect_err("no log yet");
    assert!(matches!(err, LogError::NoLog { .. }), "{err:?}");
    let bad = LogOptions {
        frame_size: 1000,
        ..small_opts()
    };
    assert!(matches!(
        Log::create(sim.clone(), DIR, bad),
        Err(LogError::InvalidOptions(_))
    ));
    // Limits larger than the geometry allows are lowered to fit it.
    let big = LogOptions {
        max_record_size: 1 << 20,
        ..small_opts()
    };
    let log = Log::create(sim.clone(), "/other", big).expect("create");
    let max = log.max_record_size();
    assert!((2048..1 << 20).contains(&max), "max record {max}");
    log.commit(&vec![1u8; max]).expect("the largest record fits");
    assert!(matches!(
        log.commit(&vec![1u8; max + 1]),
        Err(LogError::RecordTooLarge { .. })
    ));
    drop(log);
    let log = Log::create(sim.clone(), DIR, small_opts()).expect("create");
    let err = log.commit(&vec![0u8; 4096]).expect_err("too large");
    assert!(
        matches!(err, LogError::RecordTooLarge { len: 4096, max: 2048 }),
        "{err:?}"
    );
    let err = log.wait_durable(Lsn::MAX).expect_err("beyond the end");
    assert!(matches!(err, LogError::InvalidOptions(_)), "{err:?}");
    log.commit(b"still works").expect("commit after refused input");
    drop(log);
    let err = Log::create(sim, DIR, small_opts()).expect_err("exists");
    assert!(matches!(err, LogError::AlreadyExists { .. }), "{err:?}");
}

#[test]
fn damaged_header_of_the_last_generation_is_not_a_spare() {
    let sim = SimVfs::new(15);
    let log = Log::create(sim.clone(), DIR, small_opts()).expect("create");
    for i in 0..120u32 {
        log.commit(&[i as u8; 300]).expect("commit");
    }
    let last = log.durable_lsn().generation();
    assert!(last >= 2, "the damaged generation must not be the first");
    drop(log);
    // No spare may stand after it, or the damaged file would not be the last.
    let spare = gen_path(last + 1);
    if sim.exists(&spare).expect("exists") {
        sim.remove(&spare).expect("remove spare");
    }
    let path = gen_path(last);
    sim.poke(&path, 50, &[0x01]).expect("poke");
    let err = open_err(&sim);
    assert!(
        matches!(err, LogError::Corrupt { .. }),
        "acknowledged records silently dropped: {err:?}"
    );
    assert_names(&err, &path);
}
