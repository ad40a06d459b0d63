//! A copy under crashes: its replica's writes (generation headers, frames,
//! shadow tails), its replay checkpoints (through the double-write area)
//! and its log truncation crash at every sync and at random calls of its
//! own disk, with unsynced writes lost or torn. After each crash the copy
//! reopens, holds at least everything it had synced (what it would have
//! acknowledged as inspected), follows the active to the end, and is
//! page-identical to it.

#[path = "common/workload.rs"]
mod workload;

use mailvault::log::{FrameSource, LogReplica, Lsn};
use mailvault::pager::{Replayer, data_path, log_dir};
use mailvault::txn::{Database, DbOptions, LogPin};
use mailvault::vfs::sim::SimRng;
use mailvault::vfs::{FaultKind, OpenMode, SimVfs, Vfs};
use std::path::Path;
use std::sync::Arc;
use workload::{Mix, work_mix};

const PS: usize = 4096;
const CACHE: usize = 24 * PS;

fn opts() -> DbOptions {
    let mut o = DbOptions {
        page_size: PS,
        cache_bytes: 64 * PS,
        checkpoint_depth: 64 << 10,
        ..DbOptions::default()
    };
    o.log.frame_size = 512;
    o.log.generation_size = 64 << 10;
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

fn work(db: &Database, rng: &mut SimRng, round: u64) {
    work_mix(
        db,
        rng,
        round,
        &Mix {
            ops_below: 4,
            keys: 60,
            delete_one_in: 4,
            long_one_in: 6,
            long_min: 4000,
            long_span: 9000,
            short_below: 300,
        },
    );
}

/// The active after its whole workload, at rest: its disk, the image a copy
/// is seeded from (after an early checkpoint), and a pin on all its log.
struct Active {
    disk: Arc<SimVfs>,
    db: Database,
    image: Vec<u8>,
    end: Lsn,
    _pin: LogPin,
}

fn active(seed: u64) -> Active {
    let disk = SimVfs::new(seed);
    let db = Database::create(disk.clone(), "/active", opts()).unwrap();
    {
        let mut tx = db.begin_write();
        tx.create_table("t").unwrap();
        tx.commit().unwrap();
    }
    let mut rng = SimRng::new(seed ^ 0xac7);
    for round in 0..20 {
        work(&db, &mut rng, round);
    }
    db.checkpoint().unwrap();
    let image = file_bytes(&disk, &data_path(Path::new("/active")));
    let pin = db.pin_log(Lsn::ZERO);
    for round in 20..120 {
        work(&db, &mut rng, round);
    }
    // At rest: the file holds every commit, and the checkpoint's own
    // records are made durable, so that they ship too.
    db.checkpoint().unwrap();
    let end = db.pager().log().flush().unwrap();
    Active {
        disk,
        db,
        image,
        end,
        _pin: pin,
    }
}

type Failure = Box<dyn std::error::Error>;

/// Follows `active` into `/copy` on `disk`: ships chunks of random size,
/// syncs, replays, checkpoints (in the foreground or the background),
/// truncates and reopens at random. Returns
/// the end of the log it had synced when it stopped (at the end, or on the
/// first error: the disk crashed).
fn follow(disk: &Arc<SimVfs>, active: &Active, rng: &mut SimRng, synced: &mut Lsn) -> Result<(), Failure> {
    let source = FrameSource::new(active.disk.clone(), log_dir(Path::new("/active")));
    let mut replayer = Replayer::open(disk.clone(), "/copy", CACHE)?;
    let mut replica = LogReplica::open(disk.clone(), log_dir(Path::new("/copy")))?;
    replica.start_at(Lsn::new(replayer.position().generation(), 0));
    loop {
        let chunk = source.read(replica.next(), active.end, 1 + rng.below(24 << 10) as usize)?;
        let done = chunk.is_empty() || replica.end() >= active.end;
        if !done {
            replica.apply(&chunk)?;
        }
        if done || rng.below(3) == 0 {
            replica.sync()?;
            *synced = replica.end();
            replayer.replay_until(Lsn::MAX, Some(replica.end()))?;
            match rng.below(6) {
                0 => {
                    replayer.checkpoint()?;
                    replayer.truncate_log(Lsn::new(replica.next().generation(), 0))?;
                }
                1 => {
                    drop(replayer);
                    replayer = Replayer::open(disk.clone(), "/copy", CACHE)?;
                }
                // Written on its own thread while replay goes on.
                2 => replayer.checkpoint_in_background()?,
                _ => {}
            }
        }
        if done {
            // A reopen above starts again from the last checkpoint.
            replayer.replay_until(Lsn::MAX, Some(replica.end()))?;
            replayer.checkpoint()?;
            return Ok(());
        }
    }
}

/// One case: seed the copy, inject the fault, follow until it fires, crash,
/// reopen, follow to the end, compare. Returns the syncs the copy made
/// and whether the fault fired before the copy was done.
fn crash_case(active: &Active, seed: u64, at_sync: Option<u64>, at_op: Option<u64>) -> (u64, u64, bool) {
    let disk = SimVfs::new(seed);
    disk.create_dir_all(Path::new("/copy")).unwrap();
    let f = disk.open(&data_path(Path::new("/copy")), OpenMode::CreateNew).unwrap();
    f.write_at(&active.image, 0).unwrap();
    f.sync_data().unwrap();
    drop(f);
    disk.sync_dir(Path::new("/copy")).unwrap();
    let first_sync = disk.sync_count();
    let first_op = disk.op_count();
    if let Some(n) = at_sync {
        disk.crash_at_sync(first_sync + n);
    }
    if let Some(n) = at_op {
        disk.inject_at_op(first_op + n, FaultKind::Crash);
    }
    let mut rng = SimRng::new(seed ^ 0xf011);
    let mut synced = Lsn::ZERO;
    let first = follow(&disk, active, &mut rng, &mut synced);
    let syncs = disk.sync_count() - first_sync;
    let ops = disk.op_count() - first_op;
    let fired = first.is_err();
    let context = format!("seed {seed} sync {at_sync:?} op {at_op:?}");
    if at_sync.is_none() && at_op.is_none() {
        first.unwrap_or_else(|e| panic!("{context}: no fault, yet {e}"));
    }
    disk.crash();
    disk.clear_faults();
    disk.restart();
    // What was synced survived the crash.
    let replica = LogReplica::open(disk.clone(), log_dir(Path::new("/copy")))
        .unwrap_or_else(|e| panic!("{context}: the replica does not reopen: {e}"));
    assert!(
        replica.end() >= synced,
        "{context}: the replica ends at {}, but {synced} was synced",
        replica.end()
    );
    drop(replica);
    let mut rng = SimRng::new(seed ^ 0xbac);
    let mut again = Lsn::ZERO;
    follow(&disk, active, &mut rng, &mut again).unwrap_or_else(|e| panic!("{context}: after the crash: {e}"));
    let (a, c) = (
        file_bytes(&active.disk, &data_path(Path::new("/active"))),
        file_bytes(&disk, &data_path(Path::new("/copy"))),
    );
    let pages = a.len().min(c.len()) / PS;
    let differing: Vec<usize> = (2..pages)
        .filter(|&n| a[n * PS..(n + 1) * PS] != c[n * PS..(n + 1) * PS])
        .collect();
    let lsn = |b: &[u8], n: usize| Lsn(u64::from_le_bytes(b[n * PS + 8..n * PS + 16].try_into().unwrap()));
    let detail: Vec<String> = differing
        .iter()
        .map(|&n| format!("{n}: {} vs {}", lsn(&a, n), lsn(&c, n)))
        .collect();
    assert!(
        differing.is_empty(),
        "{context}: pages differ (active vs copy page LSN): {detail:?}, end {}",
        active.end
    );
    assert!(
        c[pages * PS..].iter().all(|&b| b == 0) && a[pages * PS..].iter().all(|&b| b == 0),
        "{context}: one file holds pages the other lacks"
    );
    (syncs, ops, fired)
}

#[test]
fn a_copy_crashed_at_every_sync_recovers_and_ends_identical() {
    let active = active(5);
    let (syncs, _, _) = crash_case(&active, 1, None, None);
    assert!(syncs > 20, "{syncs} syncs in a copy's run");
    let fired = (0..syncs)
        .filter(|&n| crash_case(&active, 100 + n, Some(n), None).2)
        .count();
    // Runs differ (chunk sizes are random), but most crashes land mid-run.
    assert!(
        fired as u64 > syncs / 2,
        "{fired} of {syncs} crashes fired before the copy was done"
    );
    eprintln!("{syncs} sync points, {fired} crashed mid-run");
    drop(active.db);
}

#[test]
fn a_copy_crashed_at_random_calls_recovers_and_ends_identical() {
    let points: u64 = std::env::var("MAILVAULT_CRASH_POINTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .map_or(300, |p: u64| p / 2);
    let active = active(6);
    let (_, ops, _) = crash_case(&active, 2, None, None);
    let mut rng = SimRng::new(606);
    let fired = (0..points)
        .filter(|&i| crash_case(&active, 5000 + i, None, Some(rng.below(ops))).2)
        .count();
    assert!(
        fired as u64 > points / 2,
        "{fired} of {points} crashes fired before the copy was done"
    );
    eprintln!("{points} random points, {fired} crashed mid-run");
    drop(active.db);
}
