//! A copy's side of replication ([`Follower`]): it authenticates the
//! active, seeds its database if it has none, writes the shipped log into
//! its own log directory (every frame checked first), replays it with the
//! recovery redo pass, checkpoints itself, truncates its log, and reports
//! its queues.

use super::auth::{self, ClusterKey, codes};
use super::error::{ReplError, Result};
use super::wire::{self, Identity, Message};
use crate::log::{LogReplica, Lsn, ShipChunk};
use crate::pager::header::{DbHeader, read_best};
use crate::pager::{Replayer, data_path, log_dir};
use crate::vfs::{OpenMode, SharedVfs};
use std::net::TcpStream;
use std::path::PathBuf;
use std::time::Duration;

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
}

/// Replay checkpoints the copy after this much log.
const CHECKPOINT_EVERY: u64 = 32 << 20;

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
    since_checkpoint: u64,
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
}

impl Follower {
    /// The copy in `dir`: its database in `dir/data.mvdb` (once seeded),
    /// its log in `dir/log`, its id in `dir/copy.id` (made on first use).
    /// Replay holds up to `cache_bytes` of changed pages between checkpoints.
    pub fn open(vfs: SharedVfs, dir: impl Into<PathBuf>, key: ClusterKey, cache_bytes: usize) -> Result<Follower> {
        let dir: PathBuf = dir.into();
        vfs.create_dir_all(&dir)?;
        let id = copy_id(&vfs, &dir)?;
        let mut database = [0; 16];
        let mut replayer = None;
        let mut generation_size = 0;
        if vfs.exists(&data_path(&dir))? {
            let r = Replayer::open(vfs.clone(), &dir, cache_bytes)?;
            database = r.header().signature.0;
            replayer = Some(r);
        }
        let replica = LogReplica::open(vfs.clone(), log_dir(&dir))?;
        if let Some(g) = replica.generation_size() {
            generation_size = g;
        }
        Ok(Follower {
            vfs,
            dir,
            id,
            replica,
            replayer,
            key,
            cache_bytes,
            seeding: false,
            since_checkpoint: 0,
            generation_size,
            needs_reseed: None,
            failed: None,
            last_heard: None,
            replay_lag: Duration::ZERO,
            arrivals: std::collections::VecDeque::new(),
            active_durable: Lsn::ZERO,
            database,
        })
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
        self.replayer.as_ref().map(Replayer::snapshot_source)
    }

    /// Where replay stands (zero before a seed).
    pub fn replayed(&self) -> Lsn {
        self.replayer.as_ref().map_or(Lsn::ZERO, Replayer::position)
    }

    /// Positions and queues.
    pub fn status(&self) -> CopyStatus {
        let (inspected, replayed) = (self.replica.end(), self.replayed());
        let distance = |from: Lsn, to: Lsn| -> u64 {
            if to <= from {
                return 0;
            }
            let generations = u64::from(to.generation() - from.generation());
            (generations * self.generation_size + u64::from(to.offset())).saturating_sub(u64::from(from.offset()))
        };
        let copy_queue_bytes = distance(inspected, self.active_durable);
        let replay_queue_bytes = distance(replayed, inspected);
        let state = if self.failed.is_some() {
            CopyState::Failed
        } else if self.needs_reseed.is_some() {
            CopyState::NeedsReseed
        } else if self.seeding || self.replayer.is_none() {
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

    /// Replays everything received now, whatever the lag (play-down), and
    /// checkpoints.
    pub fn play_down(&mut self) -> Result<crate::pager::ReplayProgress> {
        let Some(r) = &mut self.replayer else {
            return Ok(crate::pager::ReplayProgress::default());
        };
        let progress = r.replay()?;
        r.checkpoint()?;
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
        let path = data_path(&self.dir);
        for p in [path.clone(), crate::pager::dw_path(&self.dir)] {
            if self.vfs.exists(&p)? {
                self.vfs.remove(&p)?;
            }
        }
        let ldir = log_dir(&self.dir);
        if self.vfs.exists(&ldir)? {
            for name in self.vfs.list(&ldir)? {
                self.vfs.remove(&ldir.join(name))?;
            }
        }
        self.vfs.sync_dir(&self.dir)?;
        self.replica = LogReplica::open(self.vfs.clone(), &ldir)?;
        self.database = [0; 16];
        self.needs_reseed = None;
        self.failed = None;
        self.active_durable = Lsn::ZERO;
        Ok(())
    }

    /// One session with the active at `addr`: seeds if the copy has no
    /// database, then receives, checks, writes, syncs and replays the log,
    /// acknowledging as it goes, until the active ends the session (`Ok`),
    /// `until` says so, or the connection fails.
    pub fn session(&mut self, addr: &str, timeout: Duration, until: Option<&dyn Fn(&Follower) -> bool>) -> Result<()> {
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
        wire::write_message(&mut stream, &Message::Identify(me), None)?;
        loop {
            match wire::read_message(&mut stream)? {
                Message::Accept { identity, start } => {
                    self.database = identity.database;
                    self.active_durable = identity.position;
                    self.replica.start_at(start);
                    break;
                }
                Message::SeedBegin { header } => self.seed(&mut stream, &header)?,
                Message::Refuse { code, reason } => {
                    if code == codes::NEEDS_RESEED {
                        self.needs_reseed = Some(reason.clone());
                    }
                    return Err(ReplError::Refused { code, reason });
                }
                other => return Err(ReplError::Protocol(format!("expected Accept, got {}", other.name()))),
            }
        }
        let mut reader = std::io::BufReader::with_capacity(8 << 20, stream.try_clone()?);
        let mut pending: Option<Lsn> = None;
        loop {
            if until.is_some_and(|f| f(self)) {
                let bye = Message::Refuse {
                    code: codes::LEAVING,
                    reason: "the copy ends the session".into(),
                };
                let _ = wire::write_message(&mut stream, &bye, None);
                return self.pause();
            }
            // Everything the socket already holds is applied before one
            // sync, one replay and one acknowledgement.
            if let Some(before) = pending
                && reader.buffer().len() < wire::HEADER_LEN
            {
                self.flush(&mut stream, before)?;
                pending = None;
            }
            let msg = wire::read_message(&mut reader)?;
            self.last_heard = Some(std::time::Instant::now());
            let mut chunk = ShipChunk {
                first: self.replica.next(),
                next: self.replica.next(),
                ..ShipChunk::default()
            };
            match msg {
                Message::GenerationHeader { generation, bytes } => chunk.header = Some((generation, bytes)),
                Message::Frames {
                    first,
                    frame_size,
                    bytes,
                } => {
                    chunk.first = first;
                    chunk.frame_size = frame_size;
                    chunk.frames = bytes;
                }
                Message::Tail { frame } => {
                    chunk.frame_size = frame.len() as u32;
                    chunk.tail = Some(frame);
                }
                Message::Heartbeat { durable, .. } => {
                    self.active_durable = durable;
                    // A lagged copy replays what has aged, even while idle.
                    if !self.replay_lag.is_zero() && pending.is_none() {
                        let before = self.replica.end();
                        self.replay(before)?;
                    }
                    continue;
                }
                Message::Refuse { code, .. } if code == codes::SHUTDOWN => return self.pause(),
                Message::Refuse { code, reason } => {
                    if code == codes::NEEDS_RESEED {
                        self.needs_reseed = Some(reason.clone());
                    }
                    self.pause()?;
                    return Err(ReplError::Refused { code, reason });
                }
                other => {
                    return Err(ReplError::Protocol(format!(
                        "unexpected {} from the active",
                        other.name()
                    )));
                }
            }
            pending.get_or_insert(self.replica.end());
            self.replica.apply(&chunk)?;
            if let Some(g) = self.replica.generation_size() {
                self.generation_size = g;
            }
            self.active_durable = self.active_durable.max(self.replica.end());
        }
    }

    /// Makes a batch of applied chunks durable, replays it and acknowledges.
    fn flush(&mut self, stream: &mut TcpStream, before: Lsn) -> Result<()> {
        self.replica.sync()?;
        self.arrivals.push_back((std::time::Instant::now(), self.replica.end()));
        self.replay(before)?;
        let (inspected, replayed) = (self.replica.end(), self.replayed());
        let lagged = !self.replay_lag.is_zero();
        wire::write_message(
            stream,
            &Message::Ack {
                inspected,
                replayed,
                lagged,
            },
            None,
        )?;
        Ok(())
    }

    /// Replays what the replica holds; checkpoints and truncates the log
    /// every `CHECKPOINT_EVERY` bytes of it.
    fn replay(&mut self, before: Lsn) -> Result<()> {
        let end = self.replica.end();
        let limit = self.replay_limit();
        let Some(r) = &mut self.replayer else {
            return Ok(());
        };
        r.replay_until(limit, Some(end))?;
        let replayed = r.position();
        // Stretches replayed are forgotten: the list stays as long as the
        // replay queue.
        while self.arrivals.front().is_some_and(|(_, e)| *e <= replayed) {
            self.arrivals.pop_front();
        }
        if end.generation() != before.generation() {
            self.since_checkpoint += self.generation_size;
        } else {
            self.since_checkpoint += u64::from(end.offset().saturating_sub(before.offset()));
        }
        if self.since_checkpoint >= CHECKPOINT_EVERY {
            r.checkpoint()?;
            r.truncate_log(Lsn::new(self.replica.next().generation(), 0))?;
            self.since_checkpoint = 0;
        }
        Ok(())
    }

    /// Ends a session cleanly: everything received is synced and replayed,
    /// and the copy checkpointed.
    fn pause(&mut self) -> Result<()> {
        self.replica.sync()?;
        let limit = self.replay_limit();
        let end = self.replica.end();
        if let Some(r) = &mut self.replayer {
            r.replay_until(limit, Some(end))?;
            r.checkpoint()?;
        }
        Ok(())
    }

    /// Receives a seed: the pages of a consistent image of the active's
    /// file, then its header, written last so that an interrupted seed
    /// leaves no header (and the next session seeds again).
    fn seed(&mut self, stream: &mut TcpStream, header_page: &[u8]) -> Result<()> {
        // The old database and log go first; the new file is written under
        // a temporary name and renamed into place once whole and synced, so
        // an interrupted seed never leaves a data file behind.
        self.reset()?;
        self.seeding = true;
        let path = data_path(&self.dir);
        let header = DbHeader::decode(header_page, 0, &path)?;
        let ps = header.page_size as usize;
        let salt = crate::pager::header::salt_of(&header.signature);
        let partial = seeding_path(&self.dir);
        if self.vfs.exists(&partial)? {
            self.vfs.remove(&partial)?;
        }
        let file = self.vfs.open(&partial, OpenMode::CreateNew)?;
        // Pages are read live, newer than the header: the file holds changes
        // up to the newest page's LSN (no snapshot or promotion before it).
        let mut required = header.required_lsn;
        let pages = loop {
            match wire::read_message(stream)? {
                Message::SeedPages {
                    first,
                    page_size,
                    bytes,
                } => {
                    if page_size as usize != ps || first < 2 {
                        return Err(ReplError::Protocol(format!(
                            "seed pages from {first} of size {page_size}"
                        )));
                    }
                    // Every page is checked before it is written; a page of
                    // zeros was never written on the active.
                    for (i, page) in bytes.chunks(ps).enumerate() {
                        let no = u32::try_from(i)
                            .ok()
                            .and_then(|i| first.checked_add(i))
                            .ok_or_else(|| {
                                ReplError::Protocol(format!("seed pages from {first} run past the last page number"))
                            })?;
                        if page.iter().any(|&b| b != 0) {
                            crate::pager::page::verify(page, no, salt, &path, ps)?;
                            required = required.max(crate::pager::page::page_lsn(page));
                        }
                    }
                    file.write_at(&bytes, u64::from(first) * ps as u64)?;
                }
                Message::SeedEnd { pages } => break pages,
                Message::Refuse { code, reason } => return Err(ReplError::Refused { code, reason }),
                other => {
                    return Err(ReplError::Protocol(format!(
                        "unexpected {} during a seed",
                        other.name()
                    )));
                }
            }
        };
        if (file.len()?) < u64::from(pages) * ps as u64 {
            file.set_len(u64::from(pages) * ps as u64)?;
        }
        file.sync_data()?;
        let header = DbHeader {
            required_lsn: required,
            ..header
        };
        for slot in 0..2 {
            file.write_at(&header.encode(slot, ps), u64::from(slot) * ps as u64)?;
        }
        file.sync_data()?;
        drop(file);
        // Checks what was written, as any open would.
        let read = self.vfs.open(&partial, OpenMode::Existing)?;
        read_best(read.as_ref(), &partial)?;
        self.vfs.rename(&partial, &path)?;
        self.vfs.sync_dir(&self.dir)?;
        self.replayer = Some(Replayer::open(self.vfs.clone(), &self.dir, self.cache_bytes)?);
        self.database = header.signature.0;
        self.seeding = false;
        self.since_checkpoint = 0;
        tracing::info!(pages, redo = %header.redo_lsn, "replication: seed received");
        Ok(())
    }
}

/// Where a seed is written until it is whole.
fn seeding_path(dir: &std::path::Path) -> PathBuf {
    dir.join("data.mvdb.seeding")
}

/// Reads the copy's id from `dir/copy.id`, or makes one and syncs it.
fn copy_id(vfs: &SharedVfs, dir: &std::path::Path) -> Result<[u8; 16]> {
    let path = dir.join("copy.id");
    if vfs.exists(&path)? {
        let file = vfs.open(&path, OpenMode::Existing)?;
        let mut id = [0u8; 16];
        file.read_exact_at(&mut id, 0)?;
        if id != [0; 16] {
            return Ok(id);
        }
    }
    let mut id = [0u8; 16];
    getrandom::fill(&mut id).map_err(|e| ReplError::Io(std::io::Error::other(format!("getrandom: {e}"))))?;
    let file = vfs.open(&path, OpenMode::CreateOrOpen)?;
    file.write_at(&id, 0)?;
    file.sync_data()?;
    vfs.sync_dir(dir)?;
    Ok(id)
}
