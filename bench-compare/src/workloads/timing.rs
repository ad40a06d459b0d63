//! Running threads for a fixed time, and the figures drawn from it.

use crate::error::BenchResult;
use std::sync::Barrier;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Runs `work(thread, stop)` on `threads` threads, all started together;
/// `stop` turns true after `seconds`. Returns each thread's result and the
/// wall time from the start until the last thread returned.
pub fn for_seconds<T: Send>(
    threads: usize,
    seconds: f64,
    work: impl Fn(usize, &AtomicBool) -> BenchResult<T> + Sync,
) -> BenchResult<(Vec<T>, f64)> {
    together(threads, work, |stop, start| {
        let deadline = start + Duration::from_secs_f64(seconds);
        while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5).min(deadline.saturating_duration_since(Instant::now())));
        }
        stop.store(true, Ordering::Relaxed);
    })
}

/// Runs `work(thread)` once on each of `threads` threads, started together,
/// and returns the results and the wall time until the last one finished.
pub fn all_done<T: Send>(threads: usize, work: impl Fn(usize) -> BenchResult<T> + Sync) -> BenchResult<(Vec<T>, f64)> {
    together(threads, |thread, _| work(thread), |_, _| {})
}

/// Starts `work(thread, stop)` on `threads` threads at once, runs `meanwhile`
/// (given `stop` and the start) on this one, then joins them. A thread that
/// fails sets `stop`, which ends the phase for every thread.
fn together<T: Send>(
    threads: usize,
    work: impl Fn(usize, &AtomicBool) -> BenchResult<T> + Sync,
    meanwhile: impl FnOnce(&AtomicBool, Instant),
) -> BenchResult<(Vec<T>, f64)> {
    let stop = AtomicBool::new(false);
    let start_line = Barrier::new(threads + 1);
    let (results, elapsed) = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|thread| {
                let (stop, start_line, work) = (&stop, &start_line, &work);
                scope.spawn(move || {
                    start_line.wait();
                    let result = work(thread, stop);
                    if result.is_err() {
                        stop.store(true, Ordering::Relaxed);
                    }
                    result
                })
            })
            .collect();
        start_line.wait();
        let start = Instant::now();
        meanwhile(&stop, start);
        let results: Vec<_> = handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)))
            .collect();
        (results, start.elapsed().as_secs_f64())
    });
    Ok((results.into_iter().collect::<BenchResult<Vec<T>>>()?, elapsed))
}

/// The `p`th percentile (0–100) of `samples`, sorting them; 0 if empty.
pub fn percentile(samples: &mut [f64], p: f64) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    samples.sort_by(f64::total_cmp);
    let rank = (p / 100.0 * (samples.len() - 1) as f64).round() as usize;
    samples[rank.min(samples.len() - 1)]
}

/// Microseconds since `start`, for latency samples.
pub fn micros_since(start: Instant) -> f64 {
    start.elapsed().as_secs_f64() * 1e6
}
