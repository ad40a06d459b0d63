//! A session's stream: messages are received, checked, written and synced
//! here (the copy queue) while the replay thread replays what was synced
//! (the replay queue); acknowledgements tell the active both positions.

use super::Follower;
use super::stage::{ReplayRequest, ReplayStage};
use crate::log::{Lsn, ShipChunk};
use crate::pager::Replayer;
use crate::repl::auth::codes;
use crate::repl::error::{ReplError, Result};
use crate::repl::wire::{self, Message};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// How a stream ended without an error.
enum Ended {
    /// The copy or the active ended it.
    Clean,
    /// The active refused to go on.
    Refused { code: u16, reason: String },
    /// Replay failed (its error is the stage's).
    ReplayFailed,
}

type Until<'a> = Option<&'a dyn Fn(&Follower) -> bool>;

/// How long a quiet socket is watched after replay last moved (longer
/// than a copy's checkpoint, during which replay stands still).
const WATCH_STILL: Duration = Duration::from_secs(2);

impl Follower {
    /// Receives the log after `Accept` until the session ends, with replay
    /// on its own thread; then replays what is left, checkpoints and
    /// truncates.
    pub(super) fn stream(&mut self, stream: &mut TcpStream, until: Until<'_>) -> Result<()> {
        self.live_snapshots = self.replayer.as_ref().map(Replayer::snapshot_source);
        let stage = match self.replayer.take() {
            Some(r) => match ReplayStage::start(r, self.vfs.clone(), self.dir.clone(), self.source.clone()) {
                Ok(stage) => Some(stage),
                Err(e) => {
                    // The replayer went with the thread that never started.
                    self.replayer = Some(Replayer::open(self.vfs.clone(), &self.dir, self.cache_bytes)?);
                    return Err(e);
                }
            },
            None => None,
        };
        let ended = self.receive(stream, stage.as_ref(), until);
        self.live_replayed = None;
        self.live_snapshots = None;
        if let Some(stage) = stage {
            let (replayer, error) = stage.finish()?;
            self.digests = replayer.digests();
            self.replayer = Some(replayer);
            if let Some(e) = error {
                return Err(e);
            }
        }
        match ended? {
            Ended::Clean => self.pause(),
            Ended::Refused { code, reason } => {
                self.pause()?;
                Err(ReplError::Refused { code, reason })
            }
            // finish() returned the error above; nothing else stops here.
            Ended::ReplayFailed => Err(ReplError::Protocol("replay stopped".into())),
        }
    }

    fn receive(&mut self, stream: &mut TcpStream, stage: Option<&ReplayStage>, until: Until<'_>) -> Result<Ended> {
        let mut reader = std::io::BufReader::with_capacity(8 << 20, stream.try_clone()?);
        // Log held from an earlier session and not replayed yet (it ended
        // before replay caught up) is handed over at once: the active may
        // have nothing more to send.
        let mut pending = stage.is_some_and(|s| s.replayed() < self.replica.end());
        let mut acked = self.replayed();
        // When replay last moved, or was handed more.
        let mut moved = Instant::now();
        loop {
            if let Some(stage) = stage {
                if stage.failed() {
                    return Ok(Ended::ReplayFailed);
                }
                self.live_replayed = Some(stage.replayed());
                self.digests = stage.digests();
            }
            if until.is_some_and(|f| f(self)) {
                let bye = Message::Refuse {
                    code: codes::LEAVING,
                    reason: "the copy ends the session".into(),
                };
                let _ = wire::write_message(stream, &bye, None);
                return Ok(Ended::Clean);
            }
            // Everything the socket already holds is applied before one
            // sync, one hand-over to replay and one acknowledgement.
            if pending && reader.buffer().len() < wire::HEADER_LEN {
                self.flush(stream, stage)?;
                acked = self.replayed();
                pending = false;
                moved = Instant::now();
            }
            // While replay runs behind what arrived, a quiet socket is
            // watched rather than waited on, so that `until` and the active
            // hear of replay's progress as it happens. Replay that stands
            // still (the last record not whole yet) is not watched.
            if reader.buffer().is_empty()
                && self.replay_lag.is_zero()
                && let Some(stage) = stage
                && stage.replayed() < self.replica.end()
                && moved.elapsed() < WATCH_STILL
                && !socket_has_data(stream)?
            {
                let replayed = stage.replayed();
                if replayed > acked {
                    self.acknowledge(stream, replayed)?;
                    acked = replayed;
                    moved = Instant::now();
                }
                std::thread::sleep(Duration::from_micros(500));
                continue;
            }
            let msg = wire::read_message(&mut reader)?;
            self.last_heard = Some(Instant::now());
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
                    if !pending {
                        // A lagged copy replays what has aged, even while
                        // idle; every copy tells the active where it is.
                        self.hand_over(stage);
                        let replayed = self.replayed();
                        self.acknowledge(stream, replayed)?;
                        acked = replayed;
                    }
                    continue;
                }
                Message::Refuse { code, .. } if code == codes::SHUTDOWN => return Ok(Ended::Clean),
                Message::Refuse { code, reason } => {
                    if code == codes::NEEDS_RESEED {
                        self.needs_reseed = Some(reason.clone());
                    }
                    return Ok(Ended::Refused { code, reason });
                }
                other => {
                    return Err(ReplError::Protocol(format!(
                        "unexpected {} from the active",
                        other.name()
                    )));
                }
            }
            pending = true;
            self.replica.apply(&chunk)?;
            if let Some(g) = self.replica.generation_size() {
                self.generation_size = g;
            }
            self.active_durable = self.active_durable.max(self.replica.end());
        }
    }

    /// Makes a batch of applied chunks durable, hands it to replay and
    /// acknowledges.
    fn flush(&mut self, stream: &mut TcpStream, stage: Option<&ReplayStage>) -> Result<()> {
        self.replica.sync()?;
        self.source.update_durable(self.replica.end());
        self.arrivals.push_back((Instant::now(), self.replica.end()));
        self.hand_over(stage);
        let replayed = self.replayed();
        self.acknowledge(stream, replayed)
    }

    /// Asks replay for everything synced that the lag allows.
    fn hand_over(&mut self, stage: Option<&ReplayStage>) {
        let Some(stage) = stage else {
            return;
        };
        let now = Instant::now();
        let replayed = stage.replayed();
        // Stretches replayed are forgotten: the list stays as long as the
        // replay queue.
        while self.arrivals.front().is_some_and(|(_, e)| *e <= replayed) {
            self.arrivals.pop_front();
        }
        self.truncation_lag.replayed(replayed, now);
        let keep = Lsn::new(self.replica.next().generation(), 0).min(self.truncation_lag.keep(now));
        let limit = self.replay_limit();
        stage.request(ReplayRequest {
            end: self.replica.end(),
            limit,
            keep,
            generation_size: self.generation_size,
        });
    }

    fn acknowledge(&self, stream: &mut TcpStream, replayed: Lsn) -> Result<()> {
        let ack = Message::Ack {
            inspected: self.replica.end(),
            replayed,
            lagged: !self.replay_lag.is_zero(),
        };
        wire::write_message(stream, &ack, None)?;
        Ok(())
    }
}

/// Whether bytes wait on the socket, without taking them or blocking.
fn socket_has_data(stream: &TcpStream) -> Result<bool> {
    stream.set_nonblocking(true)?;
    let peeked = stream.peek(&mut [0u8; 1]);
    stream.set_nonblocking(false)?;
    match peeked {
        // Zero: the peer closed; the read that follows says so.
        Ok(_) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(false),
        Err(e) => Err(e.into()),
    }
}
