//! Timed worker threads for the benches: every worker starts at the same
//! instant and runs until a shared deadline; one that fails stops the others.

use crate::error::{CliError, Result};
use parking_lot::{Condvar, Mutex};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Starts every thread at once: threads arrive and wait; the main thread
/// waits for all of them, then opens the gate with the deadline.
#[derive(Default)]
struct Gate {
    state: Mutex<(usize, Option<Instant>)>,
    cv: Condvar,
}

impl Gate {
    /// Called by a worker; returns the deadline.
    fn arrive(&self) -> Instant {
        let mut st = self.state.lock();
        st.0 += 1;
        self.cv.notify_all();
        loop {
            if let Some(deadline) = st.1 {
                return deadline;
            }
            self.cv.wait(&mut st);
        }
    }

    fn wait_ready(&self, threads: usize) {
        let mut st = self.state.lock();
        while st.0 < threads {
            self.cv.wait(&mut st);
        }
    }

    fn open(&self, deadline: Instant) {
        self.state.lock().1 = Some(deadline);
        self.cv.notify_all();
    }
}

/// What a worker gets: its index and whether to go on.
pub struct Worker<'a> {
    pub index: usize,
    deadline: Instant,
    stop: &'a AtomicBool,
}

impl Worker<'_> {
    /// False once the deadline has passed or another worker failed.
    pub fn running(&self) -> bool {
        !self.stop.load(Ordering::Relaxed) && Instant::now() < self.deadline
    }
}

/// Runs `threads` workers named `name-<index>`, released together for
/// `slice`. Meanwhile `beside` runs on the calling thread; it gets a function
/// that tells whether any worker is still running. Returns every worker's
/// result in order, `beside`'s result, and the instant the workers started.
pub fn run_timed<T: Send, B>(
    name: &str,
    threads: usize,
    slice: Duration,
    body: impl Fn(&Worker<'_>) -> Result<T> + Sync,
    beside: impl FnOnce(&dyn Fn() -> bool) -> Result<B>,
) -> Result<(Vec<T>, B, Instant)> {
    let gate = Gate::default();
    let stop = AtomicBool::new(false);
    let finished = AtomicUsize::new(0);
    let (joined, beside_result, start) = std::thread::scope(|s| {
        let mut spawned = Vec::with_capacity(threads);
        for index in 0..threads {
            let (gate, stop, finished, body) = (&gate, &stop, &finished, &body);
            let handle = std::thread::Builder::new()
                .name(format!("{name}-{index}"))
                .spawn_scoped(s, move || {
                    let worker = Worker {
                        index,
                        deadline: gate.arrive(),
                        stop,
                    };
                    let result = body(&worker).inspect_err(|_| stop.store(true, Ordering::Relaxed));
                    finished.fetch_add(1, Ordering::Release);
                    result
                });
            match handle {
                Ok(h) => spawned.push(h),
                Err(e) => {
                    // Release the threads already started, then report.
                    stop.store(true, Ordering::Relaxed);
                    gate.open(Instant::now());
                    return Err(CliError::msg(format!("spawning {name} thread {index}: {e}")));
                }
            }
        }
        gate.wait_ready(spawned.len());
        let start = Instant::now();
        gate.open(start + slice);
        let running = || finished.load(Ordering::Acquire) < threads;
        let beside_result = beside(&running);
        if beside_result.is_err() {
            stop.store(true, Ordering::Relaxed);
        }
        let joined: Vec<_> = spawned.into_iter().map(|h| h.join()).collect();
        Ok((joined, beside_result, start))
    })?;
    let mut results = Vec::with_capacity(threads);
    for r in joined {
        results.push(r.map_err(|_| CliError::msg(format!("a {name} thread panicked")))??);
    }
    Ok((results, beside_result?, start))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workers_start_together_and_a_failure_stops_all() {
        let (results, seen, _) = run_timed(
            "t",
            3,
            Duration::from_millis(20),
            |w| {
                let mut n = 0u64;
                while w.running() {
                    n += 1;
                    std::thread::yield_now();
                }
                Ok((w.index, n))
            },
            |running| {
                while running() {
                    std::thread::sleep(Duration::from_millis(1));
                }
                Ok(7)
            },
        )
        .expect("run");
        assert_eq!(seen, 7);
        assert_eq!(results.iter().map(|r| r.0).collect::<Vec<_>>(), vec![0, 1, 2]);
        assert!(results.iter().all(|r| r.1 > 0));
        let failed = run_timed(
            "t",
            2,
            Duration::from_secs(60),
            |w| {
                if w.index == 1 {
                    return Err(CliError::msg("boom"));
                }
                while w.running() {
                    std::thread::yield_now();
                }
                Ok(())
            },
            |_| Ok(()),
        );
        assert_eq!(failed.err().map(|e| e.to_string()), Some("boom".into()));
    }
}
