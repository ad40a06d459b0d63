//! Shared harness for log crash and fault tests: a random committer workload
//! and the checks every recovery must pass.

#![allow(dead_code)]

use mailvault::log::{Log, LogOptions, Lsn};
use mailvault::vfs::SimVfs;
use mailvault::vfs::sim::SimRng;
use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

pub const DIR: &str = "/store/log";

/// Small geometry so a short workload crosses many frames and generations.
pub fn small_opts() -> LogOptions {
    LogOptions {
        frame_size: 512,
        generation_size: 48 * 512,
        buffer_size: 8 * 512,
        max_record_size: 2048,
        recycle_pool: 1,
        ..LogOptions::default()
    }
}

/// A record body that names itself, so garbage can never pass for it.
pub fn make_record(round: u32, thread: u32, seq: u32, rng: &mut SimRng) -> Vec<u8> {
    let len = match rng.below(10) {
        0 => 0,
        1..=6 => 12 + rng.below(300) as usize,
        7 | 8 => 12 + rng.below(1200) as usize,
        _ => 12 + rng.below(2036) as usize,
    };
    let mut data = vec![0u8; len.max(12)];
    data[0..4].copy_from_slice(&round.to_le_bytes());
    data[4..8].copy_from_slice(&thread.to_le_bytes());
    data[8..12].copy_from_slice(&seq.to_le_bytes());
    let mut filler = SimRng::new(((round as u64) << 40) ^ ((thread as u64) << 20) ^ seq as u64);
    filler.fill(&mut data[12..]);
    if len == 0 {
        data.clear();
    }
    data
}

/// What one round of work did, as seen by the committers.
#[derive(Default)]
pub struct Outcome {
    /// Every record that entered the log buffer, by LSN.
    pub appended: BTreeMap<Lsn, Vec<u8>>,
    /// Records whose durability wait returned Ok.
    pub acked: BTreeMap<Lsn, Vec<u8>>,
    /// Whether some call failed.
    pub failed: bool,
    /// After a failure, whether a later append or commit succeeded (must not).
    pub wrote_after_failure: bool,
}

/// Runs `threads` committers, each appending `per_thread` records and
/// waiting for durability at random moments, until done or a call fails.
pub fn run_committers(log: &Arc<Log>, round: u32, threads: u32, per_thread: u32, seed: u64) -> Outcome {
    let out = Arc::new(Mutex::new(Outcome::default()));
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let log = log.clone();
            let out = out.clone();
            std::thread::spawn(move || {
                let mut rng = SimRng::new(seed ^ ((t as u64 + 1) << 32));
                let mut unacked = Vec::new();
                let mut failed = false;
                for seq in 0..per_thread {
                    let data = make_record(round, t, seq, &mut rng);
                    match log.append(&data) {
                        Ok(a) => {
                            if failed {
                                out.lock().wrote_after_failure = true;
                            }
                            out.lock().appended.insert(a.lsn, data.clone());
                            unacked.push((a, data));
                        }
                        Err(_) => {
                            failed = true;
                            break;
                        }
                    }
                    if rng.chance(2, 3) || seq + 1 == per_thread {
                        let last_end = unacked.last().map(|(a, _)| a.end).unwrap_or(Lsn::ZERO);
                        match log.wait_durable(last_end) {
                            Ok(()) => {
                                let mut o = out.lock();
                                for (a, d) in unacked.drain(..) {
                                    o.acked.insert(a.lsn, d);
                                }
                            }
                            Err(_) => {
                                failed = true;
                                break;
                            }
                        }
                    }
                }
                if failed {
                    out.lock().failed = true;
                    // Fail-stop: nothing may be accepted any more.
                    if log.append(b"after failure").is_ok() {
                        out.lock().wrote_after_failure = true;
                    }
                }
            })
        })
        .collect();
    for h in handles {
        h.join().expect("committer thread panicked");
    }
    Arc::try_unwrap(out).ok().expect("threads joined").into_inner()
}

/// Reads back everything the log holds.
pub fn read_back(log: &Log) -> Vec<(Lsn, Vec<u8>)> {
    log.reader(Lsn::ZERO)
        .expect("reader")
        .map(|r| {
            let r = r.expect("recovered log must read back cleanly");
            (r.lsn, r.data)
        })
        .collect()
}

/// Reads the records of the log in `dir` (an active's, or a copy's
/// replica) up to `limit`.
pub fn read_records(vfs: mailvault::vfs::SharedVfs, dir: impl AsRef<Path>, limit: Lsn) -> Vec<(Lsn, Vec<u8>)> {
    mailvault::log::LogReader::new(vfs, dir.as_ref(), Lsn::ZERO, limit)
        .expect("reader")
        .map(|r| {
            let r = r.expect("the log must read back cleanly");
            (r.lsn, r.data)
        })
        .collect()
}

/// The model of what the log must hold: the records of earlier rounds that
/// survived, plus this round's records by LSN.
#[derive(Default, Clone)]
pub struct Model {
    pub committed: Vec<(Lsn, Vec<u8>)>,
}

impl Model {
    /// Checks a recovered log against the round's outcome and adopts it.
    /// Invariants: the log is the old contents followed by a prefix (in LSN
    /// order) of what was appended this round; every acknowledged record is
    /// in it, byte for byte; nothing else is.
    pub fn check_and_adopt(&mut self, recovered: Vec<(Lsn, Vec<u8>)>, outcome: &Outcome, context: &str) {
        let n = self.committed.len();
        assert!(
            recovered.len() >= n,
            "{context}: lost earlier records: had {n}, recovered {}",
            recovered.len()
        );
        assert_eq!(recovered[..n], self.committed[..], "{context}: earlier records changed");
        let fresh = &recovered[n..];
        let appended: Vec<_> = outcome.appended.iter().map(|(l, d)| (*l, d.clone())).collect();
        assert!(
            fresh.len() <= appended.len(),
            "{context}: recovered {} new records but only {} were appended",
            fresh.len(),
            appended.len()
        );
        for (i, (got, want)) in fresh.iter().zip(&appended).enumerate() {
            assert!(
                got == want,
                "{context}: new record {i} at {} is not the record appended there ({})",
                got.0,
                want.0
            );
        }
        for (lsn, data) in &outcome.acked {
            let found = fresh.binary_search_by_key(lsn, |(l, _)| *l);
            assert!(
                found.is_ok(),
                "{context}: acknowledged record at {lsn} ({} bytes) lost",
                data.len()
            );
        }
        self.committed = recovered;
    }
}

/// Opens the log for a round, creating it the first time.
pub fn open_log(sim: &Arc<SimVfs>, create: bool) -> mailvault::log::Result<Log> {
    if create {
        Log::create(sim.clone(), Path::new(DIR), small_opts())
    } else {
        Log::open(sim.clone(), Path::new(DIR), small_opts())
    }
}
