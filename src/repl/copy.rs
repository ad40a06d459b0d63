//! A copy's side of replication ([`Follower`]): it authenticates the
//! active, seeds its database if it has none, writes the shipped log into
//! its own log directory (every frame checked first), replays it with the
//! recovery redo pass, checkpoints itself, truncates its log, and reports
//! its queues.

use super::auth::{self, ClusterKey, codes};
use super::error::{ReplError, Result};
use super::source::PassiveSource;
use super::wire::{self, Identity, Message};
use crate::log::{LogReplica, Lsn};
use crate::pager::{Replayer, data_path, log_dir};
use crate::vfs::{OpenMode, SharedVfs};
use std::net::TcpStream;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

mod retain;
pub(super) mod seed;
mod stage;
mod stream;

/// Where a copy stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopyState {
    /// Receiving a seed; nothing to replay yet.
    Seeding,
    /// Behind the active.
    CatchingUp,
    /// Has inspected and replayed everything the active had made durable
    /// at its last word.
    Healthy,
    /// A lagged copy that has inspected everything and replays behind by
    /// its lag, as configured.
    Lagged,
    /// Replication stopped on an error it did not recover from (the reason
    /// says which).
    Failed,
    /// The active released the log this copy needed (it fell past the
    /// retention cap, or was away too long): it must be seeded again.
    NeedsReseed,
}

/// A copy's queues and positions.
#[derive(Debug, Clone, PartialEq)]
pub struct CopyStatus {
    pub state: CopyState,
    /// The active's durable end, at its last word.
    pub active_durable: Lsn,
    /// The end of the log the copy has written, checked and synced.
    pub inspected: Lsn,
    /// The end of the last record replayed.
    pub replayed: Lsn,
    /// Log bytes the active has and the copy has not inspected (counted
    /// across generations with the generation size).
    pub copy_queue_bytes: u64,
    /// Log bytes inspected and not yet replayed.
    pub replay_queue_bytes: u64,
    /// Generations the copy queue and the replay queue span.
    pub copy_queue_generations: u32,
    pub replay_queue_generations: u32,
    /// How long the oldest received, not yet replayed log has waited here.
    pub replay_lag_secs: f64,
    /// Seconds since the active was last heard from (none yet: `None`).
    pub last_heard_secs: Option<f64>,
    /// Why the copy needs a reseed, or why it failed, if it did.
    pub reason: Option<String>,
    /// Whole-database digests of the active checked here since the copy
    /// opened: equal, and not comparable (pages newer than the digest).
    /// A digest that differs stops replay with the pages named.
    pub digests_verified: u64,
    pub digests_skipped: u64,
}

/// Replay checkpoints the copy after this much log.
pub(super) const CHECKPOINT_EVERY: u64 = 32 << 20;

/// A copy: its log replica, its database once seeded, and what it knows of
/// the active.
pub struct Follower {
    vfs: SharedVfs,
    dir: PathBuf,
    id: [u8; 16],
    replica: LogReplica,
    replayer: Option<Replayer>,
    key: ClusterKey,
    cache_bytes: usize,
    seeding: bool,
    /// Replay's position, and its snapshots, while a session's replay
    /// thread runs.
    live_replayed: Option<Lsn>,
    live_snapshots: Option<crate::pager::SnapshotSource>,
    /// Whole-database digests verified and skipped since the copy opened.
    digests: (u64, u64),
    generation_size: u64,
    needs_reseed: Option<String>,
    failed: Option<String>,
    last_heard: Option<std::time::Instant>,
    /// Replay waits this long after log arrives (a lagged copy).
    replay_lag: Duration,
    /// When each received stretch of log arrived: (time, end).
    arrivals: std::collections::VecDeque<(std::time::Instant, Lsn)>,
    /// The active's durable end at its last word.
    pub active_durable: Lsn,
    /// The database the copy belongs to, once known.
    pub database: [u8; 16],
    /// A seed received in part, to resume.
    partial_seed: Option<seed::PartialSeed>,
    /// How long replayed generations stay in the copy's log.
    truncation_lag: retain::TruncationLag,
    /// This copy as a source for others.
    source: Arc<PassiveSource>,
}

impl Follower {
    /// The copy in `dir`: its database in `dir/data.mvdb` (once seeded),
    /// its log in `dir/log`, its id in `dir/copy.id` (made on first use).
    /// Replay holds up to `cache_bytes` of changed pages between checkpoints.
    pub fn open(vfs: SharedVfs, dir: impl Into<PathBuf>, key: ClusterKey, cache_bytes: usize) -> Result<Follower> {
        let dir: PathBuf = dir.into();
        vfs.create_dir_all(&dir)
            .map_err(seed::disk(&dir, 0, "create directory"))?;
        let id = copy_id(&vfs, &dir)?;
        let mut database = [0; 16];
        let mut replayer = None;
        let mut generation_size = 0;
        if vfs.exists(&data_path(&dir)).map_err(seed::disk(&dir, 0, "stat"))? {
            let r = Replayer::open(vfs.clone(), &dir, cache_bytes)?;
            database = r.header().signature.0;
            replayer = Some(r);
        }
        let replica = LogReplica::open(vfs.clone(), log_dir(&dir))?;
        let partial_seed = if replayer.is_none() {
            seed::load_partial(&vfs, &dir)?
        } else {
            None
        };
        if let Some(g) = replica.generation_size() {
            generation_size = g;
        }
        let replayed = replayer.as_ref().map_or(Lsn::ZERO, Replayer::position);
        let source = PassiveSource::new(vfs.clone(), dir.clone());
        source.update(
            replayer.as_ref().map(|r| *r.header()),
            replica.end(),
            first_generation(&vfs, &log_dir(&dir))?,
            generation_size,
        );
        Ok(Follower {
            vfs,
            dir,
            id,
            replica,
            replayer,
            key,
            cache_bytes,
            seeding: false,
            live_replayed: None,
            live_snapshots: None,
            digests: (0, 0),
            generation_size,
            needs_reseed: None,
            failed: None,
            last_heard: None,
            replay_lag: Duration::ZERO,
            arrivals: std::collections::VecDeque::new(),
            active_durable: Lsn::ZERO,
            database,
            partial_seed,
            truncation_lag: retain::TruncationLag::new(Duration::ZERO, replayed, std::time::Instant::now()),
            source,
        })
    }

    /// This copy as a source other copies can be seeded from and follow
    /// (serve it with `serve_copy`); what they still need is kept in this
    /// copy's log.
    pub fn source(&self) -> Arc<PassiveSource> {
        self.source.clone()
    }

    /// Tells the source what is synced and checkpointed now.
    fn publish(&self) -> Result<()> {
        self.source.update(
            self.replayer.as_ref().map(|r| *r.header()),
            self.replica.end(),
            first_generation(&self.vfs, &log_dir(&self.dir))?,
            self.generation_size,
        );
        Ok(())
    }

    /// The replica's log.
    pub fn replica(&self) -> &LogReplica {
        &self.replica
    }

    /// A snapshot of the copy at its replay point (None before a seed).
    pub fn snapshot(&mut self) -> Option<crate::pager::Result<crate::pager::PassiveSnapshot>> {
        self.replayer.as_mut().map(Replayer::snapshot)
    }

    /// Snapshots for other threads while a session replays (None before a
    /// seed; a reseed ends the source: ask again).
    pub fn snapshot_source(&self) -> Option<crate::pager::SnapshotSource> {
        match &self.replayer {
            Some(r) => Some(r.snapshot_source()),
            None => self.live_snapshots.clone(),
        }
    }

    /// Where replay stands (zero before a seed).
    pub fn replayed(&self) -> Lsn {
        match (self.live_replayed, &self.replayer) {
            (Some(lsn), _) => lsn,
            (None, r) => r.as_ref().map_or(Lsn::ZERO, Replayer::position),
        }
    }

    /// Positions and queues.
    pub fn status(&self) -> CopyStatus {
        let (inspected, replayed) = (self.replica.end(), self.replayed());
        let distance = |from: Lsn, to: Lsn| super::active::log_distance(from, to, self.generation_size);
        let copy_queue_bytes = distance(inspected, self.active_durable);
        let replay_queue_bytes = distance(replayed, inspected);
        let state = if self.failed.is_some() {
            CopyState::Failed
        } else if self.needs_reseed.is_some() {
            CopyState::NeedsReseed
        } else if self.seeding || (self.replayer.is_none() && self.live_replayed.is_none()) {
            CopyState::Seeding
        } else if copy_queue_bytes == 0 && replay_queue_bytes == 0 {
            CopyState::Healthy
        } else if copy_queue_bytes == 0 && !self.replay_lag.is_zero() {
            CopyState::Lagged
        } else {
            CopyState::CatchingUp
        };
        CopyStatus {
            state,
            active_durable: self.active_durable,
            inspected,
            replayed,
            copy_queue_bytes,
            replay_queue_bytes,
            copy_queue_generations: self.active_durable.generation().saturating_sub(inspected.generation()),
            replay_queue_generations: inspected.generation().saturating_sub(replayed.generation()),
            replay_lag_secs: self
                .arrivals
                .iter()
                .find(|(_, end)| *end > replayed)
                .map_or(0.0, |(at, _)| at.elapsed().as_secs_f64()),
            last_heard_secs: self.last_heard.map(|t| t.elapsed().as_secs_f64()),
            reason: self.failed.clone().or_else(|| self.needs_reseed.clone()),
            digests_verified: self.digests.0,
            digests_skipped: self.digests.1,
        }
    }

    /// Records that replication stopped on an error (the status says so).
    pub fn mark_failed(&mut self, reason: String) {
        self.failed = Some(reason);
    }

    /// Makes this a lagged copy: log is replayed only once it is `lag` old
    /// here (a defence against a logical corruption: there is time to stop
    /// the copy before it replays the damage). Its log is still received,
    /// checked and synced at once, and it holds the active's log only until
    /// it has inspected it.
    pub fn set_replay_lag(&mut self, lag: Duration) {
        self.replay_lag = lag;
    }

    /// Keeps replayed generations in the copy's log for `lag` after replay
    /// passed them (a truncation lag); zero removes them at the next
    /// checkpoint. It never holds the active's log.
    pub fn set_truncation_lag(&mut self, lag: Duration) {
        self.truncation_lag.set_lag(lag);
    }

    /// Replays everything received now, whatever the lag (play-down), and
    /// checkpoints.
    pub fn play_down(&mut self) -> Result<crate::pager::ReplayProgress> {
        let Some(r) = &mut self.replayer else {
            return Ok(crate::pager::ReplayProgress::default());
        };
        let played = r.replay().and_then(|progress| r.checkpoint().map(|()| progress));
        let progress = self.note_needs_reseed(played.map_err(ReplError::from))?;
        self.arrivals.clear();
        Ok(progress)
    }

    /// The end of the log old enough to replay under the lag.
    fn replay_limit(&mut self) -> Lsn {
        if self.replay_lag.is_zero() {
            return Lsn::MAX;
        }
        let Some(cutoff) = std::time::Instant::now().checked_sub(self.replay_lag) else {
            return Lsn::ZERO;
        };
        let mut limit = Lsn::ZERO;
        while let Some(&(at, end)) = self.arrivals.front() {
            if at > cutoff {
                break;
            }
            limit = end;
            self.arrivals.pop_front();
        }
        // Everything up to the newest stretch old enough stays replayable.
        if limit > Lsn::ZERO {
            self.arrivals.push_front((cutoff, limit));
        }
        limit
    }

    /// Throws the copy's database and log away, so that the next session
    /// seeds it again (a reseed).
    pub fn reset(&mut self) -> Result<()> {
        self.replayer = None;
        self.partial_seed = None;
        // The log goes first, durably: a crash that left the old log beside
        // a removed database would seed a copy whose replica resumes from
        // the old position instead of the seed's.
        let ldir = log_dir(&self.dir);
        if self.vfs.exists(&ldir).map_err(seed::disk(&ldir, 0, "stat"))? {
            for name in self.vfs.list(&ldir).map_err(seed::disk(&ldir, 0, "list"))? {
                let path = ldir.join(name);
                self.vfs.remove(&path).map_err(seed::disk(&path, 0, "remove"))?;
            }
            self.vfs
                .sync_dir(&ldir)
                .map_err(seed::disk(&ldir, 0, "sync directory"))?;
        }
        for p in [
            data_path(&self.dir),
            crate::pager::dw_path(&self.dir),
            seed::seeding_path(&self.dir),
            seed::state_path(&self.dir),
        ] {
            if self.vfs.exists(&p).map_err(seed::disk(&p, 0, "stat"))? {
                self.vfs.remove(&p).map_err(seed::disk(&p, 0, "remove"))?;
            }
        }
        self.vfs
            .sync_dir(&self.dir)
            .map_err(seed::disk(&self.dir, 0, "sync directory"))?;
        self.replica = LogReplica::open(self.vfs.clone(), &ldir)?;
        self.database = [0; 16];
        self.needs_reseed = None;
        self.failed = None;
        self.active_durable = Lsn::ZERO;
        let lag = self.truncation_lag.lag();
        self.truncation_lag = retain::TruncationLag::new(lag, Lsn::ZERO, std::time::Instant::now());
        self.publish()
    }

    /// One session with the active at `addr`: seeds if the copy has no
    /// database, then receives, checks, writes, syncs and replays the log,
    /// acknowledging as it goes, until the active ends the session (`Ok`),
    /// `until` says so, or the connection fails.
    pub fn session(&mut self, addr: &str, timeout: Duration, until: Option<&dyn Fn(&Follower) -> bool>) -> Result<()> {
        let result = self.run_session(addr, timeout, until);
        let result = self.note_needs_reseed(result);
        if let Err(e) = &result
            && self.replica.is_stopped()
            && self.failed.is_none()
        {
            // Fail-stop: what a failed write or sync left on disk is
            // unknown, and a retried sync that succeeds proves nothing.
            self.failed = Some(format!("the copy's log stopped: {e}; restart the copy to recover"));
        }
        result
    }

    /// A replay that met a page written outside the log that this copy was
    /// never sent (DESIGN.md, "Large values written once"), or a log that
    /// does not continue this copy's, needs a seed.
    fn note_needs_reseed<T>(&mut self, result: Result<T>) -> Result<T> {
        match &result {
            Err(e @ ReplError::Db(crate::pager::DbError::NotWritten { .. })) => {
                self.needs_reseed = Some(format!("the log refers to a page this copy does not hold: {e}"));
            }
            // The source's history is not this copy's: only a seed joins them.
            Err(e @ ReplError::Log(crate::log::LogError::Divergent { .. })) => {
                self.needs_reseed = Some(format!("this copy's log diverged from its source's: {e}"));
            }
            _ => {}
        }
        result
    }

    fn run_session(&mut self, addr: &str, timeout: Duration, until: Option<&dyn Fn(&Follower) -> bool>) -> Result<()> {
        let mut stream = TcpStream::connect(addr)?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(timeout))?;
        auth::copy_handshake(&mut stream, &self.key)?;
        let position = if self.replayer.is_some() {
            self.replica.next()
        } else {
            Lsn::ZERO
        };
        let me = Identity {
            copy: self.id,
            database: self.database,
            log: self.replica.signature().map_or([0; 16], |s| s.0),
            epoch: 0,
            position,
        };
        let hello = match &self.partial_seed {
            Some(p) if self.replayer.is_none() => Message::ResumeSeed {
                identity: Identity {
                    database: p.header.signature.0,
                    log: p.header.log_signature.0,
                    position: p.header.redo_lsn,
                    ..me
                },
                next_page: p.next,
            },
            _ => Message::Identify(me),
        };
        wire::write_message(&mut stream, &hello, None)?;
        loop {
            match wire::read_message(&mut stream)? {
                Message::Accept { identity, start } => {
                    self.database = identity.database;
                    self.active_durable = identity.position;
                    self.replica.start_at(start);
                    break;
                }
                Message::SeedBegin { header } => self.seed(&mut stream, &header)?,
                Message::SeedResumed { first } => self.resume_seed(&mut stream, first)?,
                Message::Refuse { code, reason } => {
                    if code == codes::NEEDS_RESEED {
                        self.needs_reseed = Some(reason.clone());
                    }
                    return Err(ReplError::Refused { code, reason });
                }
                other => return Err(ReplError::Protocol(format!("expected Accept, got {}", other.name()))),
            }
        }
        self.stream(&mut stream, until)
    }

    /// Removes the generations the last checkpoint no longer needs and the
    /// truncation lag no longer holds.
    fn truncate(&mut self, now: std::time::Instant) -> Result<()> {
        let mut keep = Lsn::new(self.replica.next().generation(), 0).min(self.truncation_lag.keep(now));
        if let Some(held) = self.source.oldest_hold() {
            // Copies served from this one.
            keep = keep.min(held);
        }
        // The newest checkpoint goes out before the log it no longer needs.
        self.publish()?;
        if let Some(r) = &self.replayer {
            r.truncate_log(keep)?;
        }
        self.publish()
    }

    /// Ends a session cleanly: everything received is synced and replayed,
    /// the copy checkpointed and its log truncated.
    fn pause(&mut self) -> Result<()> {
        self.replica.sync()?;
        let limit = self.replay_limit();
        let end = self.replica.end();
        if let Some(r) = &mut self.replayer {
            r.replay_until(limit, Some(end))?;
            r.checkpoint()?;
            let now = std::time::Instant::now();
            self.truncation_lag.replayed(r.position(), now);
            self.truncate(now)?;
        }
        self.publish()
    }
}

/// The oldest generation in a log directory (zero if it holds none).
pub(super) fn first_generation(vfs: &SharedVfs, ldir: &std::path::Path) -> Result<u32> {
    if !vfs.exists(ldir).map_err(seed::disk(ldir, 0, "stat"))? {
        return Ok(0);
    }
    Ok(vfs
        .list(ldir)
        .map_err(seed::disk(ldir, 0, "list"))?
        .iter()
        .filter_map(|n| crate::log::parse_generation_name(n))
        .min()
        .unwrap_or(0))
}

/// Reads the copy's id from `dir/copy.id`, or makes one and syncs it.
fn copy_id(vfs: &SharedVfs, dir: &std::path::Path) -> Result<[u8; 16]> {
    let path = dir.join("copy.id");
    if vfs.exists(&path).map_err(seed::disk(&path, 0, "stat"))? {
        let file = vfs
            .open(&path, OpenMode::Existing)
            .map_err(seed::disk(&path, 0, "open"))?;
        let mut id = [0u8; 16];
        file.read_exact_at(&mut id, 0).map_err(seed::disk(&path, 0, "read"))?;
        if id != [0; 16] {
            return Ok(id);
        }
    }
    let mut id = [0u8; 16];
    getrandom::fill(&mut id).map_err(|e| ReplError::Io(std::io::Error::other(format!("getrandom: {e}"))))?;
    let file = vfs
        .open(&path, OpenMode::CreateOrOpen)
        .map_err(seed::disk(&path, 0, "create"))?;
    file.write_at(&id, 0).map_err(seed::disk(&path, 0, "write"))?;
    file.sync_data().map_err(seed::disk(&path, 0, "sync"))?;
    vfs.sync_dir(dir).map_err(seed::disk(dir, 0, "sync directory"))?;
    Ok(id)
}
