//! Replication sessions over TCP: the active ships its log to a copy
//! ([`serve_copy`]); a copy receives it into its own log directory
//! ([`Follower`]). Shipping reads the log's files, never the commit path, so
//! a slow or dead copy never slows a commit: it only holds the log from
//! truncation through its pin, up to the retention cap.

use super::auth::{self, ClusterKey, codes};
use super::error::{ReplError, Result};
use super::wire::{self, Identity, Message};
use crate::log::{FrameSource, LogReplica, Lsn, ShipChunk};
use crate::txn::Database;
use crate::vfs::SharedVfs;
use parking_lot::Mutex;
use std::net::TcpStream;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// How the active ships.
#[derive(Debug, Clone)]
pub struct ShipOptions {
    /// Most frame bytes per message.
    pub max_chunk: usize,
    /// A heartbeat goes out after this long without data.
    pub heartbeat: Duration,
    /// How often an idle shipper looks for newly durable log.
    pub poll: Duration,
    /// zstd level for frames, if any.
    pub compress: Option<i32>,
    /// Longest a handshake or a read may take.
    pub timeout: Duration,
}

impl Default for ShipOptions {
    fn default() -> Self {
        ShipOptions {
            max_chunk: 1 << 20,
            heartbeat: Duration::from_secs(1),
            poll: Duration::from_millis(1),
            compress: None,
            timeout: Duration::from_secs(10),
        }
    }
}

/// What the active knows of one copy, updated by its acknowledgements.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CopyProgress {
    /// Where shipping to it has reached.
    pub shipped: Lsn,
    /// Where it says it has inspected (written, checked and synced) to.
    pub inspected: Lsn,
    /// Where it says it has replayed to.
    pub replayed: Lsn,
}

/// The copies an active knows, by id. A registered copy keeps its log pin
/// between sessions, so a copy that reconnects finds its log still there.
#[derive(Default)]
pub struct CopyRegistry {
    copies: Mutex<std::collections::HashMap<[u8; 16], Arc<CopyEntry>>>,
}

/// One registered copy.
pub struct CopyEntry {
    pin: crate::txn::LogPin,
    progress: Mutex<CopyProgress>,
}

impl CopyEntry {
    /// What the active knows of the copy.
    pub fn progress(&self) -> CopyProgress {
        self.progress.lock().clone()
    }
}

impl CopyRegistry {
    /// No copies yet.
    pub fn new() -> CopyRegistry {
        CopyRegistry::default()
    }

    /// The copy with this id, if registered.
    pub fn get(&self, copy: &[u8; 16]) -> Option<Arc<CopyEntry>> {
        self.copies.lock().get(copy).cloned()
    }

    /// Every registered copy's progress.
    pub fn all(&self) -> Vec<([u8; 16], CopyProgress)> {
        self.copies.lock().iter().map(|(id, e)| (*id, e.progress())).collect()
    }

    /// Forgets a copy and releases the log it held.
    pub fn forget(&self, copy: &[u8; 16]) -> bool {
        self.copies.lock().remove(copy).is_some()
    }

    fn register(&self, db: &Database, copy: [u8; 16], start: Lsn) -> Arc<CopyEntry> {
        self.copies
            .lock()
            .entry(copy)
            .or_insert_with(|| {
                Arc::new(CopyEntry {
                    pin: db.pin_log(start),
                    progress: Mutex::new(CopyProgress {
                        shipped: start,
                        inspected: start,
                        replayed: start,
                    }),
                })
            })
            .clone()
    }
}

fn refuse(stream: &mut TcpStream, code: u16, reason: String) -> ReplError {
    tracing::warn!(code, %reason, "replication: refusing a copy");
    let _ = wire::write_message(
        stream,
        &Message::Refuse {
            code,
            reason: reason.clone(),
        },
        None,
    );
    ReplError::Refused { code, reason }
}

/// Serves one copy on `stream` until `stop` is set or the connection ends:
/// authenticates it, checks its identity, then ships from its position:
/// closed generations first (file mode), then the live log as it becomes
/// durable (block mode), with heartbeats when idle. The copy's
/// acknowledgements move a log pin, so truncation waits for it.
pub fn serve_copy(
    db: &Database,
    mut stream: TcpStream,
    key: &ClusterKey,
    opts: &ShipOptions,
    stop: &AtomicBool,
    registry: &CopyRegistry,
) -> Result<()> {
    stream.set_read_timeout(Some(opts.timeout))?;
    stream.set_nodelay(true)?;
    if let Err(e) = auth::active_handshake(&mut stream, key) {
        tracing::warn!(peer = ?stream.peer_addr().ok(), error = %e, "replication: a copy failed authentication");
        return Err(e);
    }
    let copy = match wire::read_message(&mut stream)? {
        Message::Identify(id) => id,
        other => {
            return Err(refuse(
                &mut stream,
                codes::PROTOCOL,
                format!("expected Identify, got {}", other.name()),
            ));
        }
    };
    let pager = db.pager();
    let log = pager.log();
    let mine = Identity {
        copy: [0; 16],
        database: pager.signature().0,
        log: log.signature().0,
        epoch: pager.epoch(),
        position: log.durable_lsn(),
    };
    if copy.database != [0; 16] && copy.database != mine.database {
        return Err(refuse(
            &mut stream,
            codes::IDENTITY,
            "the copy holds another database".into(),
        ));
    }
    if copy.log != [0; 16] && copy.log != mine.log {
        return Err(refuse(
            &mut stream,
            codes::IDENTITY,
            "the copy's log belongs to another database".into(),
        ));
    }
    let oldest = Lsn::new(log.first_generation(), 0);
    let start = if copy.position == Lsn::ZERO {
        oldest
    } else {
        copy.position
    };
    if start < oldest || start > mine.position {
        return Err(refuse(
            &mut stream,
            codes::NEEDS_RESEED,
            format!("the copy is at {start}; this log holds {oldest} to {}", mine.position),
        ));
    }
    if copy.copy == [0; 16] {
        return Err(refuse(&mut stream, codes::PROTOCOL, "a copy must state its id".into()));
    }
    let entry = registry.register(db, copy.copy, start);
    entry.pin.advance(start.min(entry.progress().inspected));
    wire::write_message(&mut stream, &Message::Accept { identity: mine, start }, None)?;
    tracing::info!(peer = ?stream.peer_addr().ok(), %start, "replication: shipping to a copy");
    entry.progress.lock().shipped = start;
    let progress = &entry.progress;
    let pin = &entry.pin;
    // Acknowledgements arrive on their own thread; they move the pin.
    let mut acks = stream.try_clone()?;
    acks.set_read_timeout(None)?;
    let ended = Arc::new(AtomicBool::new(false));
    let source = FrameSource::new(pager_vfs(db), log.dir());
    std::thread::scope(|s| {
        let ended_reader = ended.clone();
        s.spawn(move || {
            while let Ok(msg) = wire::read_message(&mut acks) {
                if let Message::Ack { inspected, replayed } = msg {
                    let mut p = progress.lock();
                    p.inspected = p.inspected.max(inspected);
                    p.replayed = p.replayed.max(replayed);
                    // Copies replay nothing yet: they hold the log until
                    // they have inspected it (a lagged copy's rule).
                    pin.advance(p.inspected);
                }
            }
            ended_reader.store(true, Ordering::Relaxed);
        });
        let r = ship_loop(&mut stream, &source, db, opts, stop, &ended, progress, start);
        let _ = stream.shutdown(std::net::Shutdown::Both);
        r
    })
}

/// Reads the copy's id from `dir/copy.id`, or makes one and syncs it.
fn copy_id(vfs: &SharedVfs, dir: &std::path::Path) -> Result<[u8; 16]> {
    use crate::vfs::OpenMode;
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

fn pager_vfs(db: &Database) -> SharedVfs {
    db.pager().vfs().clone()
}

#[allow(clippy::too_many_arguments)]
fn ship_loop(
    stream: &mut TcpStream,
    source: &FrameSource,
    db: &Database,
    opts: &ShipOptions,
    stop: &AtomicBool,
    ended: &AtomicBool,
    progress: &Mutex<CopyProgress>,
    start: Lsn,
) -> Result<()> {
    let log = db.pager().log();
    let mut next = start;
    let mut last_sent = Instant::now();
    loop {
        if stop.load(Ordering::Relaxed) {
            let _ = wire::write_message(
                stream,
                &Message::Refuse {
                    code: codes::SHUTDOWN,
                    reason: "the active is shutting down".into(),
                },
                None,
            );
            return Ok(());
        }
        if ended.load(Ordering::Relaxed) {
            return Err(ReplError::Io(std::io::Error::new(
                std::io::ErrorKind::ConnectionAborted,
                "the copy disconnected",
            )));
        }
        let durable = log.durable_lsn();
        let chunk = source.read(next, durable, opts.max_chunk)?;
        if chunk.is_empty() {
            if last_sent.elapsed() >= opts.heartbeat {
                let time_us = crate::log::now_us();
                wire::write_message(stream, &Message::Heartbeat { durable, time_us }, None)?;
                last_sent = Instant::now();
            }
            std::thread::sleep(opts.poll);
            continue;
        }
        send_chunk(stream, &chunk, opts.compress)?;
        last_sent = Instant::now();
        next = chunk.next;
        progress.lock().shipped = next;
    }
}

fn send_chunk(stream: &mut TcpStream, chunk: &ShipChunk, compress: Option<i32>) -> Result<()> {
    if let Some((generation, bytes)) = &chunk.header {
        wire::write_message(
            stream,
            &Message::GenerationHeader {
                generation: *generation,
                bytes: bytes.clone(),
            },
            compress,
        )?;
    }
    if !chunk.frames.is_empty() {
        wire::write_message(
            stream,
            &Message::Frames {
                first: chunk.first,
                frame_size: chunk.frame_size,
                bytes: chunk.frames.clone(),
            },
            compress,
        )?;
    }
    if let Some(tail) = &chunk.tail {
        wire::write_message(stream, &Message::Tail { frame: tail.clone() }, compress)?;
    }
    Ok(())
}

/// A copy's receiving side: its log replica, and what it knows of the active.
pub struct Follower {
    id: [u8; 16],
    replica: LogReplica,
    key: ClusterKey,
    /// The active's durable end at its last heartbeat.
    pub active_durable: Lsn,
    /// The database the copy belongs to, once known.
    pub database: [u8; 16],
    /// How far the copy has replayed (nothing replays yet: stays zero).
    pub replayed: Lsn,
}

impl Follower {
    /// The copy in `dir`: its log in `dir/log`, its id in `dir/copy.id`
    /// (made on first use).
    pub fn open(vfs: SharedVfs, dir: impl Into<PathBuf>, key: ClusterKey) -> Result<Follower> {
        let dir: PathBuf = dir.into();
        vfs.create_dir_all(&dir)?;
        let id = copy_id(&vfs, &dir)?;
        Ok(Follower {
            id,
            replica: LogReplica::open(vfs, crate::pager::log_dir(&dir))?,
            key,
            active_durable: Lsn::ZERO,
            database: [0; 16],
            replayed: Lsn::ZERO,
        })
    }

    /// The replica's log.
    pub fn replica(&self) -> &LogReplica {
        &self.replica
    }

    /// One session with the active at `addr`: receives, checks, writes and
    /// syncs frames, acknowledging as it goes, until the active ends the
    /// session (`Ok`) or the connection fails. `until`, if given, ends the
    /// session once the replica reaches it.
    pub fn session(&mut self, addr: &str, timeout: Duration, until: Option<&dyn Fn(&Follower) -> bool>) -> Result<()> {
        let mut stream = TcpStream::connect(addr)?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(timeout))?;
        auth::copy_handshake(&mut stream, &self.key)?;
        let me = Identity {
            copy: self.id,
            database: self.database,
            log: self.replica.signature().map_or([0; 16], |s| s.0),
            epoch: 0,
            position: self.replica.next(),
        };
        wire::write_message(&mut stream, &Message::Identify(me), None)?;
        match wire::read_message(&mut stream)? {
            Message::Accept { identity, start } => {
                self.database = identity.database;
                self.active_durable = identity.position;
                self.replica.start_at(start);
            }
            Message::Refuse { code, reason } => return Err(ReplError::Refused { code, reason }),
            other => return Err(ReplError::Protocol(format!("expected Accept, got {}", other.name()))),
        }
        loop {
            if until.is_some_and(|f| f(self)) {
                return Ok(());
            }
            let msg = wire::read_message(&mut stream)?;
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
                    continue;
                }
                Message::Refuse { code, .. } if code == codes::SHUTDOWN => {
                    self.replica.sync()?;
                    return Ok(());
                }
                Message::Refuse { code, reason } => return Err(ReplError::Refused { code, reason }),
                other => {
                    return Err(ReplError::Protocol(format!(
                        "unexpected {} from the active",
                        other.name()
                    )));
                }
            }
            self.replica.apply(&chunk)?;
            self.replica.sync()?;
            self.active_durable = self.active_durable.max(self.replica.end());
            let end = self.replica.end();
            let replayed = self.replayed;
            wire::write_message(
                &mut stream,
                &Message::Ack {
                    inspected: end,
                    replayed,
                },
                None,
            )?;
        }
    }
}
