//! Crash tests on the simulated file system: power cuts at every sync and at
//! random operations, with dropped, kept and torn writes, across several
//! rounds of crash and recovery. After each recovery every acknowledged
//! record is present, byte-exact and in order, and nothing else appears.
//!
//! `MAILVAULT_CRASH_POINTS=N` sets the number of random crash points (default
//! 2000 in CI); the every-sync sweep adds its own.

mod common;

use common::{Model, open_log, read_back, run_committers};
use mailvault::vfs::sim::SimRng;
use mailvault::vfs::{FaultKind, SimVfs};
use std::sync::Arc;

fn crash_points(default: u64) -> u64 {
    std::env::var("MAILVAULT_CRASH_POINTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// What a campaign saw, so a test cannot pass by crashing where nothing happens.
#[derive(Default, Debug)]
struct Tally {
    points: u64,
    mid_run: u64,
    torn_tails: u64,
    acked: u64,
    in_doubt_survived: u64,
}

/// Recovers after a crash and checks the model.
fn recover_and_check(
    sim: &Arc<SimVfs>,
    model: &mut Model,
    outcome: &common::Outcome,
    context: &str,
    tally: &mut Tally,
) {
    sim.clear_faults();
    tally.points += 1;
    if sim.is_crashed() {
        tally.mid_run += 1;
    } else {
        sim.crash();
    }
    sim.restart();
    let log = open_log(sim, false).unwrap_or_else(|e| panic!("{context}: recovery failed: {e}"));
    if log.recovery_report().torn_tail.is_some() {
        tally.torn_tails += 1;
    }
    let before = model.committed.len();
    model.check_and_adopt(read_back(&log), outcome, context);
    tally.acked += outcome.acked.len() as u64;
    tally.in_doubt_survived += (model.committed.len() - before).saturating_sub(outcome.acked.len()) as u64;
    assert!(
        !outcome.wrote_after_failure,
        "{context}: the log accepted writes after a failure"
    );
    log.close()
        .unwrap_or_else(|e| panic!("{context}: close after recovery failed: {e}"));
}

fn assert_meaningful(name: &str, tally: &Tally) {
    eprintln!("{name}: {tally:?}");
    assert!(
        tally.mid_run * 2 > tally.points,
        "{name}: most crashes must hit a running workload"
    );
    assert!(tally.torn_tails > 0, "{name}: some crashes must leave a torn tail");
    assert!(
        tally.acked > tally.points,
        "{name}: crashes must put acknowledged records at risk"
    );
}

/// One seed: a few rounds, each cut short by a crash at a random operation.
fn random_crash_run(seed: u64, rounds: u32, threads: u32, tally: &mut Tally) {
    let sim = SimVfs::new(seed);
    let mut rng = SimRng::new(seed);
    let log = open_log(&sim, true).expect("create");
    log.close().expect("close");
    let mut model = Model::default();
    for round in 0..rounds {
        let context = format!("seed {seed} round {round}");
        // A crash somewhere in the next few hundred operations, including
        // during recovery itself.
        let at = sim.op_count() + 1 + rng.below(if threads == 1 { 150 } else { 250 });
        sim.inject_at_op(at, FaultKind::Crash);
        let outcome = match open_log(&sim, false) {
            Ok(log) => {
                let log = Arc::new(log);
                let outcome = run_committers(&log, round, threads, 20 + rng.below(60) as u32, rng.next_u64());
                drop(log);
                outcome
            }
            Err(_) => common::Outcome::default(),
        };
        recover_and_check(&sim, &mut model, &outcome, &context, tally);
    }
}

/// Random crash points until half the campaign's budget is spent.
fn random_campaign(name: &str, first_seed: u64, threads: u32) {
    let total = crash_points(2000) / 2;
    let mut tally = Tally::default();
    let mut seed = first_seed;
    while tally.points < total {
        random_crash_run(seed, 4, threads, &mut tally);
        seed += 1;
    }
    assert_meaningful(name, &tally);
}

#[test]
fn random_crash_points_single_committer() {
    random_campaign("single committer", 1, 1);
}

#[test]
fn random_crash_points_concurrent_committers() {
    random_campaign("four committers", 10_000, 4);
}

/// Counts the syncs of a deterministic single-committer workload, then cuts
/// power at each of them in turn.
#[test]
fn crash_at_every_sync() {
    let seeds = crash_points(2000) / 150 + 1;
    let mut tally = Tally::default();
    for seed in 0..seeds {
        let run = |crash_at: Option<u64>| {
            let sim = SimVfs::new(seed);
            let log = open_log(&sim, true).expect("create");
            log.close().expect("close");
            let base = sim.sync_count();
            if let Some(k) = crash_at {
                sim.crash_at_sync(base + k);
            }
            let outcome = match open_log(&sim, false) {
                Ok(log) => {
                    let log = Arc::new(log);
                    let outcome = run_committers(&log, 0, 1, 60, seed);
                    drop(log);
                    outcome
                }
                Err(_) => common::Outcome::default(),
            };
            (sim, outcome, base)
        };
        let (sim, _, base) = run(None);
        let syncs = sim.sync_count() - base;
        assert!(syncs > 20, "workload too small: {syncs} syncs");
        for k in 0..syncs {
            let (sim, outcome, _) = run(Some(k));
            let mut model = Model::default();
            recover_and_check(&sim, &mut model, &outcome, &format!("seed {seed} sync {k}"), &mut tally);
        }
    }
    assert_meaningful("every sync", &tally);
}

/// Power cuts at every operation of recovery itself (listing, scanning, the
/// rebuild of the last generation and its rename), after a crash that left a
/// torn tail. Recovery must be restartable at any point.
#[test]
fn crash_at_every_operation_of_recovery() {
    let mut tally = Tally::default();
    for seed in 0..20u64 {
        // A log cut short by a crash in the middle of a workload.
        let setup = || {
            let sim = SimVfs::new(seed);
            open_log(&sim, true).expect("create").close().expect("close");
            let log = Arc::new(open_log(&sim, false).expect("open"));
            sim.inject_at_op(sim.op_count() + 60 + seed * 7, FaultKind::Crash);
            let outcome = run_committers(&log, 0, 2, 40, seed);
            drop(log);
            sim.clear_faults();
            if !sim.is_crashed() {
                sim.crash();
            }
            sim.restart();
            (sim, outcome)
        };
        let (sim, _) = setup();
        let before = sim.op_count();
        drop(open_log(&sim, false).expect("recovery"));
        let recovery_ops = sim.op_count() - before;
        assert!(recovery_ops > 10, "recovery did only {recovery_ops} operations");
        // The preparer thread makes runs differ slightly, so each run is checked
        // against its own outcome.
        for k in 0..recovery_ops {
            let (sim, outcome) = setup();
            sim.inject_at_op(sim.op_count() + k, FaultKind::Crash);
            let interrupted = open_log(&sim, false);
            drop(interrupted);
            let mut model = Model::default();
            recover_and_check(
                &sim,
                &mut model,
                &outcome,
                &format!("seed {seed} recovery op {k}"),
                &mut tally,
            );
        }
    }
    eprintln!("recovery: {tally:?}");
    assert!(
        tally.mid_run * 10 > tally.points * 8,
        "most injected crashes must hit recovery"
    );
}
