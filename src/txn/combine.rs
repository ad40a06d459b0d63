//! Writer combining: transactions submitted as closures (`Database::write`).
//!
//! Uncontended, a submitter runs its own transaction and waits for its sync,
//! as `begin_write` and `commit` would. Contended, it hands the job to the
//! database's writer thread and parks once. The writer thread runs queued
//! jobs back to back under the writer lock and passes each batch to the
//! commit thread, which waits for the batch's durability and wakes its
//! submitters while the writer runs the next batch. So the writer lock is
//! never handed from submitter to submitter, no thread waits for a sync it
//! does not need, and a submitter is woken once: to return.
//!
//! Each closure still runs in its own transaction with its own log record; a
//! closure that fails or panics rolls back only itself.

use super::{Database, Durability, WriteTxn};
use crate::log::Lsn;
use crate::pager::{DbError, Pager, Result};
use parking_lot::{Condvar, Mutex, MutexGuard};
use std::any::Any;
use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::{JoinHandle, Thread};
use std::time::Duration;

/// A safety net only: every completion unparks its submitter and every
/// submission the writer thread, so a missed wake-up costs this much.
const PARK_TIMEOUT: Duration = Duration::from_millis(20);

/// Most jobs the writer thread runs before it releases the writer lock:
/// `begin_write` callers get their turn between batches.
const MAX_COMBINED: usize = 256;

/// The body of a job: runs the caller's closure, hands its result to the
/// caller, and says whether to commit.
type Body = Box<dyn FnOnce(&mut WriteTxn<'_>) -> bool + Send>;

/// How a job ended, as far as its submitter is concerned.
enum Outcome {
    /// The closure ran; the commit (if it asked for one) gave this.
    Finished(Result<()>),
    /// The closure panicked; the payload is resumed on the caller's thread.
    Panicked(Box<dyn Any + Send>),
}

/// One submitted transaction, shared by its submitter and the threads.
struct Job {
    body: Mutex<Option<Body>>,
    durability: Durability,
    outcome: Mutex<Option<Outcome>>,
    waiter: Thread,
    done: AtomicBool,
}

impl Job {
    fn complete(&self, outcome: Outcome) {
        *self.outcome.lock() = Some(outcome);
        self.done.store(true, Ordering::Release);
        self.waiter.unpark();
    }
}

/// A job that ran and appended its commit record, waiting for durability.
struct Appended {
    job: Arc<Job>,
    end: Lsn,
}

/// The writer lock: held by a `begin_write` transaction, an uncontended
/// `write`, or the writer thread while it runs a batch.
#[derive(Default)]
pub(crate) struct WriterLock {
    mutex: Mutex<()>,
}

/// Holds the writer lock.
pub(crate) struct WriterGuard<'a> {
    _guard: MutexGuard<'a, ()>,
}

impl WriterLock {
    pub(crate) fn lock(&self) -> WriterGuard<'_> {
        WriterGuard {
            _guard: self.mutex.lock(),
        }
    }

    fn try_lock(&self) -> Option<WriterGuard<'_>> {
        self.mutex.try_lock().map(|g| WriterGuard { _guard: g })
    }
}

/// What the submitters and the threads share.
#[derive(Default)]
struct Shared {
    queue: Mutex<VecDeque<Arc<Job>>>,
    /// Durable commits the writer appended, for the commit thread to sync.
    appended: Mutex<Appending>,
    appended_cv: Condvar,
    /// Jobs handed to the threads and not yet completed.
    in_flight: AtomicUsize,
    stop: AtomicBool,
    /// Set when either thread ends: submitters stop waiting for it.
    dead: AtomicBool,
}

#[derive(Default)]
struct Appending {
    commits: Vec<Appended>,
    /// A thread has ended (the writer at a stop, or either one by a
    /// panic): the commit thread syncs what is here, then ends too.
    writer_ended: bool,
}

struct Threads {
    writer: JoinHandle<()>,
    /// One: two (one leading the next sync while the other wakes the
    /// submitters of the last) measured no better (DESIGN.md).
    commit: JoinHandle<()>,
}

/// The writer and commit threads of a database, started by the first
/// contended `write`.
#[derive(Default)]
pub(crate) struct Combiner {
    shared: Arc<Shared>,
    /// The writer thread, for submitters to unpark (set once it runs).
    writer: OnceLock<Thread>,
    threads: Mutex<Option<Threads>>,
}

/// Marks the threads dead when one ends, however it ends; ends the commit
/// thread once it has synced what is handed over; wakes the submitters
/// still queued.
struct EndGuard(Arc<Shared>);

impl Drop for EndGuard {
    fn drop(&mut self) {
        self.0.dead.store(true, Ordering::Release);
        self.0.appended.lock().writer_ended = true;
        self.0.appended_cv.notify_all();
        for job in self.0.queue.lock().drain(..) {
            job.waiter.unpark();
        }
    }
}

impl Combiner {
    fn idle(&self) -> bool {
        self.shared.in_flight.load(Ordering::Acquire) == 0
    }

    /// Queues `job` for the writer thread, starting the threads if needed.
    fn submit(&self, job: Arc<Job>, pager: &Arc<Pager>, lock: &Arc<WriterLock>) -> Result<()> {
        let writer = match self.writer.get() {
            Some(w) => w,
            None => {
                let mut threads = self.threads.lock();
                if threads.is_none() {
                    let started = self.start(pager, lock)?;
                    let _ = self.writer.set(started.writer.thread().clone());
                    *threads = Some(started);
                }
                // Set just above, under the same lock, or by an earlier start.
                self.writer.get().ok_or_else(lost)?
            }
        };
        if self.shared.dead.load(Ordering::Acquire) {
            return Err(lost());
        }
        self.shared.in_flight.fetch_add(1, Ordering::AcqRel);
        self.shared.queue.lock().push_back(job);
        // A running writer only takes a token here; a parked one wakes.
        writer.unpark();
        Ok(())
    }

    fn start(&self, pager: &Arc<Pager>, lock: &Arc<WriterLock>) -> Result<Threads> {
        let spawn_error = |e| DbError::io(pager.file_path(), 0, "spawn a thread", e);
        let (shared, committing) = (self.shared.clone(), pager.clone());
        let commit = std::thread::Builder::new()
            .name("mailvault-commit".into())
            .spawn(move || commit_loop(&shared, &committing))
            .map_err(spawn_error)?;
        let (shared, writing, lock) = (self.shared.clone(), pager.clone(), lock.clone());
        let spawned = std::thread::Builder::new()
            .name("mailvault-writer".into())
            .spawn(move || writer_loop(&shared, &writing, &lock));
        match spawned {
            Ok(writer) => Ok(Threads { writer, commit }),
            Err(e) => {
                // Leave the state as before, so that a later call may start again.
                self.shared.appended.lock().writer_ended = true;
                self.shared.appended_cv.notify_all();
                let _ = commit.join();
                self.shared.appended.lock().writer_ended = false;
                self.shared.dead.store(false, Ordering::Release);
                Err(spawn_error(e))
            }
        }
    }

    /// Stops and joins the threads. Nothing is queued: no `write` is running.
    pub(crate) fn stop(&self) {
        let Some(threads) = self.threads.lock().take() else {
            return;
        };
        self.shared.stop.store(true, Ordering::Release);
        threads.writer.thread().unpark();
        // The writer's end (its EndGuard) ends the commit thread.
        let _ = threads.writer.join();
        let _ = threads.commit.join();
    }
}

/// Runs queued jobs under the writer lock; hands each batch's durable
/// commits to the commit thread and completes the rest itself.
fn writer_loop(shared: &Arc<Shared>, pager: &Arc<Pager>, lock: &WriterLock) {
    let _end = EndGuard(shared.clone());
    loop {
        let mut batch = std::mem::take(&mut *shared.queue.lock());
        if batch.is_empty() {
            if shared.stop.load(Ordering::Acquire) {
                return;
            }
            std::thread::park_timeout(PARK_TIMEOUT);
            continue;
        }
        let guard = lock.lock();
        let mut durable = Vec::with_capacity(batch.len());
        let mut lazy = Vec::new();
        let mut ran = 0;
        while ran < MAX_COMBINED {
            // While a sync is in flight, running more costs nothing in
            // latency: the next sync takes it all. Once the log is idle, the
            // batch goes to be synced.
            if batch.is_empty() && pager.log().sync_in_flight() {
                batch = std::mem::take(&mut *shared.queue.lock());
            }
            let Some(job) = batch.pop_front() else {
                break;
            };
            ran += 1;
            match run_job(pager, &job) {
                Ok(Some(end)) if job.durability == Durability::Durable => durable.push(Appended { job, end }),
                Ok(Some(end)) => lazy.push(Appended { job, end }),
                // Rolled back: the body's own result is all there is.
                Ok(None) => finish(shared, &job, Outcome::Finished(Ok(()))),
                Err(outcome) => finish(shared, &job, outcome),
            }
        }
        drop(guard);
        // What the cap left goes first next time.
        if !batch.is_empty() {
            let mut queue = shared.queue.lock();
            for job in batch.into_iter().rev() {
                queue.push_front(job);
            }
        }
        if !lazy.is_empty() {
            complete(shared, pager, lazy, Durability::Lazy);
        }
        if !durable.is_empty() {
            shared.appended.lock().commits.append(&mut durable);
            shared.appended_cv.notify_one();
        }
    }
}

/// Takes every durable commit the writer appended so far, waits for their
/// sync and completes their jobs.
fn commit_loop(shared: &Arc<Shared>, pager: &Arc<Pager>) {
    let _end = EndGuard(shared.clone());
    loop {
        let commits = {
            let mut appended = shared.appended.lock();
            while appended.commits.is_empty() && !appended.writer_ended {
                shared.appended_cv.wait(&mut appended);
            }
            if appended.commits.is_empty() {
                return;
            }
            std::mem::take(&mut appended.commits)
        };
        complete(shared, pager, commits, Durability::Durable);
    }
}

/// Makes the appended commits durable (or pending, for lazy ones) and
/// visible, then completes their jobs. Every failure here stops the
/// database, so the error is shared.
fn complete(shared: &Shared, pager: &Pager, appended: Vec<Appended>, durability: Durability) {
    let Some(end) = appended.iter().map(|a| a.end).max() else {
        return;
    };
    let finished = match durability {
        Durability::Durable => pager.finish_batched_commit(end),
        Durability::Lazy => pager.finish_commit(end, false),
    }
    .map_err(|e| match e {
        DbError::Stopped { cause } => cause,
        other => Arc::new(other),
    });
    for a in appended {
        let result = match &finished {
            Ok(()) => Ok(()),
            Err(cause) => Err(DbError::Stopped { cause: cause.clone() }),
        };
        finish(shared, &a.job, Outcome::Finished(result));
    }
}

fn finish(shared: &Shared, job: &Job, outcome: Outcome) {
    shared.in_flight.fetch_sub(1, Ordering::AcqRel);
    job.complete(outcome);
}

/// Runs one job's body in its own transaction and appends its commit; the
/// caller holds the writer lock.
fn run_job(pager: &Arc<Pager>, job: &Job) -> std::result::Result<Option<Lsn>, Outcome> {
    let body = job.body.lock().take();
    let mut tx = WriteTxn::unguarded(pager);
    match body.map(|b| catch_unwind(AssertUnwindSafe(|| b(&mut tx)))) {
        Some(Ok(true)) => tx.append().map_err(|e| Outcome::Finished(Err(e))),
        Some(Ok(false)) | None => Ok(None),
        Some(Err(payload)) => Err(Outcome::Panicked(payload)),
    }
}

impl Database {
    /// Runs `body` in a write transaction and commits it with `durability`,
    /// combined with other threads' `write` calls: under contention the
    /// database's writer thread runs them back to back and one sync covers
    /// many. Returns what `body` returned once the commit is durable (or at
    /// once for lazy commits). If `body` returns an error, its transaction
    /// rolls back and the error is returned; a panic in `body` rolls back
    /// and resumes on this thread.
    ///
    /// `body` may run on another thread, hence `Send + 'static`: it owns
    /// what it writes (the caller waits, but lending a borrow across threads
    /// would take unsafe code). Like `begin_write`, it waits for the writer
    /// lock: calling it from inside a body, or while this thread holds a
    /// `WriteTxn`, never returns.
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
        let outcome = match self.combiner.idle().then(|| self.writer.try_lock()).flatten() {
            Some(guard) => self.run_here(guard, &job),
            None => self.hand_over(job)?,
        };
        match outcome {
            Outcome::Finished(Ok(())) => result.lock().take().unwrap_or_else(|| Err(lost().into())),
            Outcome::Finished(Err(e)) => Err(e.into()),
            Outcome::Panicked(payload) => resume_unwind(payload),
        }
    }

    /// The uncontended path: this thread runs its job and waits for its sync.
    fn run_here(&self, guard: WriterGuard<'_>, job: &Job) -> Outcome {
        let appended = run_job(&self.pager, job);
        drop(guard);
        match appended {
            Ok(Some(end)) => Outcome::Finished(self.pager.finish_commit(end, job.durability == Durability::Durable)),
            Ok(None) => Outcome::Finished(Ok(())),
            Err(outcome) => outcome,
        }
    }

    /// The contended path: the writer thread runs the job; this thread parks
    /// until the job is complete.
    fn hand_over(&self, job: Arc<Job>) -> Result<Outcome> {
        self.combiner.submit(job.clone(), &self.pager, &self.writer)?;
        while !job.done.load(Ordering::Acquire) {
            if self.combiner.shared.dead.load(Ordering::Acquire) && !job.done.load(Ordering::Acquire) {
                return Err(lost());
            }
            std::thread::park_timeout(PARK_TIMEOUT);
        }
        Ok(job.outcome.lock().take().unwrap_or(Outcome::Finished(Err(lost()))))
    }
}

/// A job completed without a result: cannot happen while the threads run
/// (they complete every job they take), reported rather than panicking.
fn lost() -> DbError {
    DbError::InvalidArgument("a combined transaction ended without a result".into())
}
