//! The copy's checkpoint writer: one long-lived thread per replayer that
//! writes spilled pages while replay goes on. One thread for the replayer's
//! life, not one per checkpoint: it keeps its name (and its CPU time) for
//! whoever watches the process's threads, and costs no spawn per spill.

use super::header::DbHeader;
use super::{DbError, Result};
use std::path::PathBuf;
use std::sync::mpsc::{Receiver, Sender, TryRecvError, channel};
use std::thread::JoinHandle;

/// A checkpoint to write: returns the header it wrote and its slot.
pub(super) type SpillJob = Box<dyn FnOnce() -> Result<(DbHeader, u32)> + Send>;

/// At most one job in flight; its outcome is taken by `wait`.
pub(super) struct SpillWorker {
    path: PathBuf,
    running: Option<Running>,
    in_flight: bool,
    /// An outcome seen by `is_finished` before `wait` took it.
    ready: Option<Result<(DbHeader, u32)>>,
}

struct Running {
    jobs: Sender<SpillJob>,
    outcomes: Receiver<Result<(DbHeader, u32)>>,
    thread: JoinHandle<()>,
}

impl SpillWorker {
    /// `path` names the data file in errors. The thread starts with the
    /// first job.
    pub(super) fn new(path: PathBuf) -> SpillWorker {
        SpillWorker {
            path,
            running: None,
            in_flight: false,
            ready: None,
        }
    }

    /// Hands `job` to the thread. The previous job's outcome must have been
    /// taken (`wait`).
    pub(super) fn submit(&mut self, job: SpillJob) -> Result<()> {
        debug_assert!(!self.in_flight, "one checkpoint at a time");
        if self.running.is_none() {
            self.running = Some(self.start()?);
        }
        // Just set above when it was None.
        let Some(running) = &self.running else {
            return Err(self.thread_gone());
        };
        running.jobs.send(job).map_err(|_| self.thread_gone())?;
        self.in_flight = true;
        Ok(())
    }

    fn start(&self) -> Result<Running> {
        let (jobs, job_rx) = channel::<SpillJob>();
        let (outcome_tx, outcomes) = channel();
        let thread = std::thread::Builder::new()
            .name("mailvault-spill".into())
            .spawn(move || {
                for job in job_rx {
                    if outcome_tx.send(job()).is_err() {
                        break;
                    }
                }
            })
            .map_err(|e| DbError::io(&self.path, 0, "start a checkpoint thread", e))?;
        Ok(Running { jobs, outcomes, thread })
    }

    /// Whether a job is in flight.
    pub(super) fn in_flight(&self) -> bool {
        self.in_flight
    }

    /// Whether the job in flight has ended (its outcome is ready).
    pub(super) fn is_finished(&mut self) -> bool {
        if !self.in_flight || self.ready.is_some() {
            return self.ready.is_some();
        }
        let Some(running) = &self.running else {
            return false;
        };
        match running.outcomes.try_recv() {
            Ok(outcome) => self.ready = Some(outcome),
            Err(TryRecvError::Empty) => return false,
            Err(TryRecvError::Disconnected) => self.ready = Some(Err(self.thread_gone())),
        }
        true
    }

    /// Waits for the job in flight and takes its outcome; `None` if there
    /// is none. A thread that panicked gives an error, never a hang.
    pub(super) fn wait(&mut self) -> Option<Result<(DbHeader, u32)>> {
        if !self.in_flight {
            return None;
        }
        self.in_flight = false;
        if let Some(outcome) = self.ready.take() {
            return Some(outcome);
        }
        let outcome = match &self.running {
            Some(running) => running.outcomes.recv().unwrap_or_else(|_| Err(self.thread_gone())),
            None => Err(self.thread_gone()),
        };
        Some(outcome)
    }

    fn thread_gone(&self) -> DbError {
        DbError::corrupt(&self.path, 0, "the copy's checkpoint thread panicked")
    }
}

impl Drop for SpillWorker {
    /// The job in flight finishes before the thread is let go (and, in the
    /// replayer, before the copy's lock is).
    fn drop(&mut self) {
        if let Some(Running { jobs, outcomes, thread }) = self.running.take() {
            drop(jobs);
            drop(outcomes);
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pager::header::DbState;

    fn header(sequence: u64) -> DbHeader {
        DbHeader {
            state: DbState::Dirty,
            page_size: 4096,
            signature: Default::default(),
            log_signature: Default::default(),
            sequence,
            redo_lsn: crate::log::Lsn::ZERO,
            required_lsn: crate::log::Lsn::ZERO,
            page_count: 2,
            catalog_root: 0,
            created_us: 0,
            epoch: 0,
        }
    }

    #[test]
    fn jobs_run_in_turn_on_one_thread_and_their_outcomes_come_back() {
        let mut worker = SpillWorker::new("data.mvdb".into());
        assert!(worker.wait().is_none());
        let mut threads = Vec::new();
        for n in 0..3u64 {
            let (tx, rx) = channel();
            worker
                .submit(Box::new(move || {
                    tx.send(std::thread::current().id()).unwrap();
                    Ok((header(n), (n % 2) as u32))
                }))
                .unwrap();
            assert!(worker.in_flight());
            threads.push(rx.recv().unwrap());
            let (h, slot) = worker.wait().unwrap().unwrap();
            assert_eq!((h.sequence, slot), (n, (n % 2) as u32));
            assert!(!worker.in_flight());
        }
        assert!(threads.windows(2).all(|w| w[0] == w[1]), "one thread for every job");
        assert_ne!(threads[0], std::thread::current().id());
    }

    #[test]
    fn is_finished_keeps_the_outcome_for_wait() {
        let mut worker = SpillWorker::new("data.mvdb".into());
        let (go, gate) = channel::<()>();
        worker
            .submit(Box::new(move || {
                gate.recv().unwrap();
                Ok((header(7), 1))
            }))
            .unwrap();
        assert!(!worker.is_finished());
        go.send(()).unwrap();
        while !worker.is_finished() {
            std::thread::yield_now();
        }
        assert!(worker.is_finished());
        assert_eq!(worker.wait().unwrap().unwrap().0.sequence, 7);
        assert!(!worker.is_finished());
    }

    #[test]
    fn a_job_that_panics_gives_an_error_and_later_jobs_do_too() {
        let mut worker = SpillWorker::new("data.mvdb".into());
        worker.submit(Box::new(|| panic!("a failing checkpoint"))).unwrap();
        let err = worker.wait().unwrap().unwrap_err();
        assert!(err.to_string().contains("panicked"), "{err}");
        assert!(err.to_string().contains("data.mvdb"), "{err}");
        // The thread is gone: the next job fails at once or when waited on.
        let next = worker.submit(Box::new(|| Ok((header(1), 0))));
        match next {
            Err(e) => assert!(e.to_string().contains("panicked")),
            Ok(()) => assert!(worker.wait().unwrap().is_err()),
        }
    }
}
