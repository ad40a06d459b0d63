//! Replay on its own thread while a session receives: the receiving thread
//! writes, checks and syncs the log (the copy queue) and hands the synced
//! end over; this thread replays it, checkpoints every `CHECKPOINT_EVERY`
//! bytes of log and truncates (the replay queue). Receiving never waits
//! for replay, so a copy takes in log while it replays what came before.

use super::{CHECKPOINT_EVERY, first_generation};
use crate::log::Lsn;
use crate::pager::{Replayer, log_dir};
use crate::repl::active::log_distance;
use crate::repl::error::{ReplError, Result};
use crate::repl::source::PassiveSource;
use crate::vfs::SharedVfs;
use parking_lot::{Condvar, Mutex};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// The shortest time between two replay calls.
const MIN_INTERVAL: std::time::Duration = std::time::Duration::from_millis(5);

/// What replay may do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct ReplayRequest {
    /// The end of the synced log.
    pub end: Lsn,
    /// Replay no record ending past this (a lagged copy's limit).
    pub limit: Lsn,
    /// Truncation keeps the log from here on (what the receiver and the
    /// truncation lag still need).
    pub keep: Lsn,
    pub generation_size: u64,
}

#[derive(Default)]
struct StageState {
    request: Option<ReplayRequest>,
    stop: bool,
    error: Option<ReplError>,
}

struct Shared {
    state: Mutex<StageState>,
    wake: Condvar,
    replayed: AtomicU64,
    /// Whole-database digests verified and skipped.
    digests: [AtomicU64; 2],
}

/// The replay thread of one session.
pub(super) struct ReplayStage {
    shared: Arc<Shared>,
    thread: std::thread::JoinHandle<Replayer>,
}

impl ReplayStage {
    /// Moves `replayer` onto a new thread.
    pub(super) fn start(
        replayer: Replayer,
        vfs: SharedVfs,
        dir: PathBuf,
        source: Arc<PassiveSource>,
    ) -> Result<ReplayStage> {
        let shared = Arc::new(Shared {
            state: Mutex::default(),
            wake: Condvar::new(),
            replayed: AtomicU64::new(replayer.position().0),
            digests: [
                AtomicU64::new(replayer.digests().0),
                AtomicU64::new(replayer.digests().1),
            ],
        });
        let inner = shared.clone();
        let thread = std::thread::Builder::new()
            .name("mailvault-replay".into())
            .spawn(move || run(replayer, &inner, &vfs, &dir, &source))?;
        Ok(ReplayStage { shared, thread })
    }

    /// Asks for replay up to `request` (replacing an older request).
    pub(super) fn request(&self, request: ReplayRequest) {
        self.shared.state.lock().request = Some(request);
        self.shared.wake.notify_one();
    }

    /// The end of the last record replayed.
    pub(super) fn replayed(&self) -> Lsn {
        Lsn(self.shared.replayed.load(Ordering::Acquire))
    }

    /// Whole-database digests verified and skipped so far.
    pub(super) fn digests(&self) -> (u64, u64) {
        let [v, s] = &self.shared.digests;
        (v.load(Ordering::Relaxed), s.load(Ordering::Relaxed))
    }

    /// Replay's error, if it stopped on one.
    pub(super) fn failed(&self) -> bool {
        self.shared.state.lock().error.is_some()
    }

    /// Finishes the last request, stops, and hands the replayer back with
    /// replay's error, if any.
    pub(super) fn finish(self) -> Result<(Replayer, Option<ReplError>)> {
        self.shared.state.lock().stop = true;
        self.shared.wake.notify_one();
        let replayer = self
            .thread
            .join()
            .map_err(|_| ReplError::Protocol("the replay thread panicked".into()))?;
        let error = self.shared.state.lock().error.take();
        Ok((replayer, error))
    }
}

fn run(
    mut replayer: Replayer,
    shared: &Shared,
    vfs: &SharedVfs,
    dir: &std::path::Path,
    source: &PassiveSource,
) -> Replayer {
    let mut done: Option<ReplayRequest> = None;
    let mut since_checkpoint = 0u64;
    let mut last_call = std::time::Instant::now() - MIN_INTERVAL;
    loop {
        let request = {
            let mut st = shared.state.lock();
            loop {
                if st.request.is_some() && st.request != done {
                    // Requests that come close together are served by one
                    // call: each call reads the last record applied again.
                    let wait = MIN_INTERVAL.saturating_sub(last_call.elapsed());
                    if wait.is_zero() || st.stop {
                        break st.request;
                    }
                    shared.wake.wait_for(&mut st, wait);
                    continue;
                }
                if st.stop {
                    return replayer;
                }
                shared.wake.wait(&mut st);
            }
        };
        last_call = std::time::Instant::now();
        let Some(request) = request else {
            continue;
        };
        let before = replayer.position();
        let mut step = || -> Result<()> {
            replayer.replay_until(request.limit, Some(request.end))?;
            shared.replayed.store(replayer.position().0, Ordering::Release);
            let (verified, skipped) = replayer.digests();
            shared.digests[0].store(verified, Ordering::Relaxed);
            shared.digests[1].store(skipped, Ordering::Relaxed);
            since_checkpoint += log_distance(before, replayer.position(), request.generation_size);
            if since_checkpoint >= CHECKPOINT_EVERY {
                // Truncation below goes by the last checkpoint done; this
                // one is written while replay goes on.
                replayer.checkpoint_in_background()?;
                since_checkpoint = 0;
                let mut keep = request.keep;
                if let Some(held) = source.oldest_hold() {
                    keep = keep.min(held);
                }
                // The newest checkpoint goes out before the log it no longer needs.
                let ldir = log_dir(dir);
                source.update_header(Some(*replayer.header()), first_generation(vfs, &ldir)?);
                replayer.truncate_log(keep)?;
                source.update_header(Some(*replayer.header()), first_generation(vfs, &ldir)?);
            }
            Ok(())
        };
        if let Err(e) = step() {
            let mut st = shared.state.lock();
            st.error = Some(e);
            return replayer;
        }
        done = Some(request);
    }
}
