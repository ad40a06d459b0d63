//! Writer combining: transactions submitted as closures are run back to back
//! by whichever submitter holds the writer lock, so the lock is not handed
//! from thread to thread once per transaction.
//!
//! Each closure still runs in its own transaction with its own log record; a
//! closure that fails or panics rolls back only itself. The combiner appends
//! its batch, releases the lock (waking one queued submitter to combine the
//! next batch while this one syncs), waits once for the batch's durability,
//! then completes every job. A submitter parks once per transaction, instead
//! of once for the lock and once for the fsync.

use super::{Database, Durability, WriteTxn};
use crate::log::Lsn;
use crate::pager::{DbError, Result};
use parking_lot::{Mutex, MutexGuard};
use std::any::Any;
use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::Thread;
use std::time::Duration;

/// A safety net only: every release of the writer lock wakes the next queued
/// submitter, so a missed wake-up costs this much instead of a hang.
const PARK_TIMEOUT: Duration = Duration::from_millis(20);

/// Most jobs one combiner runs before it releases the lock: bounds its own
/// caller's latency.
const MAX_COMBINED: usize = 256;

/// The body of a job: runs the caller's closure, hands its result to the
/// caller, and says whether to commit.
type Body = Box<dyn FnOnce(&mut WriteTxn<'_>) -> bool + Send>;

/// How a job ended, as far as the combiner is concerned.
enum Outcome {
    /// The closure ran; the commit (if it asked for one) gave this.
    Finished(Result<()>),
    /// The closure panicked; the payload is resumed on the caller's thread.
    Panicked(Box<dyn Any + Send>),
}

/// One submitted transaction, shared by its submitter and the queue.
struct Job {
    body: Mutex<Option<Body>>,
    durability: Durability,
    outcome: Mutex<Option<Outcome>>,
    waiter: Thread,
    done: AtomicBool,
}

/// The writer lock and the queue of submitted jobs.
#[derive(Default)]
pub(crate) struct WriterLock {
    mutex: Mutex<()>,
    queue: Mutex<VecDeque<Arc<Job>>>,
}

/// Holds the writer lock; releasing it wakes the first queued submitter,
/// which then takes the lock to combine the queue.
pub(crate) struct WriterGuard<'a> {
    lock: &'a WriterLock,
    guard: Option<MutexGuard<'a, ()>>,
}

impl Drop for WriterGuard<'_> {
    fn drop(&mut self) {
        self.guard.take();
        self.lock.wake_first();
    }
}

impl WriterLock {
    pub(crate) fn lock(&self) -> WriterGuard<'_> {
        WriterGuard {
            lock: self,
            guard: Some(self.mutex.lock()),
        }
    }

    fn try_lock(&self) -> Option<WriterGuard<'_>> {
        self.mutex.try_lock().map(|g| WriterGuard {
            lock: self,
            guard: Some(g),
        })
    }

    fn wake_first(&self) {
        let queue = self.queue.lock();
        if let Some(first) = queue.front() {
            first.waiter.unpark();
        }
    }
}

impl Database {
    /// Runs `body` in a write transaction and commits it with `durability`,
    /// combined with other threads' `write` calls: one thread runs a whole
    /// queue of them back to back under the writer lock. Returns what `body`
    /// returned once the commit is durable (or at once for lazy commits). If
    /// `body` returns an error, its transaction rolls back and the error is
    /// returned; a panic in `body` rolls back and resumes on this thread.
    ///
    /// `body` may run on another submitter's thread, hence `Send + 'static`:
    /// it owns what it writes (the caller waits, but lending a borrow across
    /// threads would take unsafe code). Like `begin_write`, it waits for the
    /// writer lock: calling it from inside a body, or while this thread holds
    /// a `WriteTxn`, never returns.
    pub fn write<R, F>(&self, durability: Durability, body: F) -> Result<R>
    where
        R: Send + 'static,
        F: FnOnce(&mut WriteTxn<'_>) -> Result<R> + Send + 'static,
    {
        self.write_fallible(durability, body)
    }

    /// [`Database::write`] for a body with its own error type (a layer
    /// above, such as the mailbox store); database errors convert into it.
    pub fn write_fallible<R, E, F>(&self, durability: Durability, body: F) -> std::result::Result<R, E>
    where
        R: Send + 'static,
        E: From<DbError> + Send + 'static,
        F: FnOnce(&mut WriteTxn<'_>) -> std::result::Result<R, E> + Send + 'static,
    {
        let result: Arc<Mutex<Option<std::result::Result<R, E>>>> = Arc::default();
        let slot = result.clone();
        let run: Body = Box::new(move |tx| {
            let r = body(tx);
            let commit = r.is_ok();
            *slot.lock() = Some(r);
            commit
        });
        let job = Arc::new(Job {
            body: Mutex::new(Some(run)),
            durability,
            outcome: Mutex::new(None),
            waiter: std::thread::current(),
            done: AtomicBool::new(false),
        });
        self.writer.queue.lock().push_back(job.clone());
        while !job.done.load(Ordering::Acquire) {
            match self.writer.try_lock() {
                Some(guard) => self.combine(guard),
                None => std::thread::park_timeout(PARK_TIMEOUT),
            }
        }
        let outcome = job.outcome.lock().take();
        match outcome {
            Some(Outcome::Finished(Ok(()))) => result.lock().take().unwrap_or_else(|| Err(lost().into())),
            Some(Outcome::Finished(Err(e))) => Err(e.into()),
            Some(Outcome::Panicked(payload)) => resume_unwind(payload),
            None => Err(lost().into()),
        }
    }

    /// Runs every queued job, each in its own transaction, releases the lock,
    /// then waits for the batch's durability and completes the jobs.
    fn combine(&self, guard: WriterGuard<'_>) {
        let mut ran = Vec::new();
        loop {
            let batch: Vec<Arc<Job>> = self.writer.queue.lock().drain(..).collect();
            if batch.is_empty() {
                break;
            }
            for job in batch {
                let outcome = self.run_job(&job);
                ran.push((job, outcome));
            }
            // While a sync is in flight, appending more costs nothing in
            // latency: the next sync takes it all. Once the log is idle,
            // this combiner goes to lead the sync of what it appended.
            if ran.len() >= MAX_COMBINED || !self.pager.log().sync_in_flight() {
                break;
            }
        }
        if ran.is_empty() {
            return;
        }
        // The next batch's combiner appends while this one syncs.
        drop(guard);
        let last = |d: Durability| {
            ran.iter()
                .filter_map(|(_, o)| match o {
                    Ok((Some(end), durability)) if *durability == d => Some(*end),
                    _ => None,
                })
                .max()
        };
        let (lazy_end, durable_end) = (last(Durability::Lazy), last(Durability::Durable));
        let finished = self.finish_batch(lazy_end, durable_end);
        for (job, outcome) in ran {
            let outcome = match outcome {
                Ok((Some(_), _)) => Outcome::Finished(
                    finished
                        .as_ref()
                        .map(|_| ())
                        .map_err(|cause| DbError::Stopped { cause: cause.clone() }),
                ),
                // Rolled back: the body's own result is all there is.
                Ok((None, _)) => Outcome::Finished(Ok(())),
                Err(outcome) => outcome,
            };
            *job.outcome.lock() = Some(outcome);
            job.done.store(true, Ordering::Release);
            job.waiter.unpark();
        }
    }

    /// Runs one job's body in its own transaction and appends its commit.
    fn run_job(&self, job: &Job) -> std::result::Result<(Option<Lsn>, Durability), Outcome> {
        let body = job.body.lock().take();
        let mut tx = WriteTxn::unguarded(self);
        match body.map(|b| catch_unwind(AssertUnwindSafe(|| b(&mut tx)))) {
            Some(Ok(true)) => match tx.append() {
                Ok(end) => Ok((end, job.durability)),
                Err(e) => Err(Outcome::Finished(Err(e))),
            },
            Some(Ok(false)) | None => Ok((None, job.durability)),
            Some(Err(payload)) => Err(Outcome::Panicked(payload)),
        }
    }

    /// Makes the batch's commits durable (or pending, for lazy ones) and
    /// visible. Every failure here stops the database, so the error is shared.
    fn finish_batch(&self, lazy_end: Option<Lsn>, durable_end: Option<Lsn>) -> std::result::Result<(), Arc<DbError>> {
        let share = |e: DbError| match e {
            DbError::Stopped { cause } => cause,
            other => Arc::new(other),
        };
        if let Some(end) = lazy_end {
            self.pager.finish_commit(end, false).map_err(share)?;
        }
        if let Some(end) = durable_end {
            self.pager.finish_commit(end, true).map_err(share)?;
        }
        Ok(())
    }
}

/// A job completed without a result: cannot happen (the combiner runs every
/// body it takes), reported rather than panicking.
fn lost() -> DbError {
    DbError::InvalidArgument("a combined transaction ended without a result".into())
}
