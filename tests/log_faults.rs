//! I/O errors injected at every operation of a workload, in turn: EIO and
//! ENOSPC. Each gives a clean error, the log stops accepting writes
//! (fail-stop), and reopening recovers every acknowledged record, also after
//! a later power cut. A failed sync forgets its writes (fsyncgate).

mod common;

use common::{Model, Outcome, open_log, read_back, run_committers};
use mailvault::log::LogError;
use mailvault::vfs::{FaultKind, SimVfs};
use std::sync::Arc;

/// Runs the workload with one fault at `offset` operations after the log was created.
fn run_with_fault(seed: u64, kind: FaultKind, offset: Option<u64>) -> (Arc<SimVfs>, Outcome, u64, bool) {
    let sim = SimVfs::new(seed);
    open_log(&sim, true).expect("create").close().expect("close");
    let base = sim.op_count();
    if let Some(offset) = offset {
        sim.inject_at_op(base + offset, kind);
    }
    let mut open_failed = false;
    let outcome = match open_log(&sim, false) {
        Ok(log) => {
            let log = Arc::new(log);
            let outcome = run_committers(&log, 0, 1, 40, seed);
            if outcome.failed {
                let err = log.commit(b"x").expect_err("a stopped log refuses commits");
                assert!(
                    matches!(err, LogError::Stopped { .. }),
                    "fail-stop error expected, got {err}"
                );
            }
            drop(log);
            outcome
        }
        Err(e) => {
            assert!(
                matches!(e, LogError::Io { .. } | LogError::Stopped { .. }),
                "open failed with an unexpected error: {e}"
            );
            open_failed = true;
            Outcome::default()
        }
    };
    sim.clear_faults();
    let ops = sim.op_count() - base;
    (sim, outcome, ops, open_failed)
}

fn sweep(kind: FaultKind, seeds: std::ops::Range<u64>) {
    let mut hits = 0;
    let mut points = 0;
    for seed in seeds {
        let (_, clean, ops, _) = run_with_fault(seed, kind, None);
        assert!(!clean.failed, "the workload fails without faults");
        for offset in 0..ops {
            let context = format!("{kind:?} seed {seed} op {offset}");
            let (sim, outcome, _, open_failed) = run_with_fault(seed, kind, Some(offset));
            assert!(
                !outcome.wrote_after_failure,
                "{context}: a write succeeded after a failure"
            );
            if outcome.failed || open_failed {
                hits += 1;
            }
            points += 1;
            // Reopen without a crash: everything acknowledged is there.
            let mut model = Model::default();
            let log = open_log(&sim, false).unwrap_or_else(|e| panic!("{context}: reopen failed: {e}"));
            model.check_and_adopt(read_back(&log), &outcome, &context);
            log.close().unwrap_or_else(|e| panic!("{context}: close failed: {e}"));
            // And it stays there through a power cut.
            sim.crash();
            sim.restart();
            let log = open_log(&sim, false).unwrap_or_else(|e| panic!("{context}: recovery failed: {e}"));
            model.check_and_adopt(read_back(&log), &Outcome::default(), &format!("{context} after crash"));
            drop(log);
        }
    }
    eprintln!("{kind:?}: {points} injection points, {hits} hit the workload");
    assert!(hits * 2 > points, "most injected faults must reach the workload");
}

#[test]
fn eio_at_every_operation() {
    sweep(FaultKind::Eio, 0..3);
}

#[test]
fn enospc_at_every_operation() {
    sweep(FaultKind::Enospc, 100..102);
}
