//! The active's side of replication: [`serve_copy`] authenticates a copy,
//! checks its identity, seeds it if it is empty, then ships its log.
//! Shipping reads the log's files, never the commit path, so a slow or dead
//! copy never slows a commit: it only holds the log from truncation through
//! its pin.

use super::auth::{self, ClusterKey, codes};
use super::error::{ReplError, Result};
use super::seed;
use super::source::{LogHold, ShipSource};
use super::wire::{self, Identity, Message};
use crate::log::{FrameSource, Lsn, ShipChunk};
use parking_lot::Mutex;
use std::io::Write;
use std::net::TcpStream;
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
    /// Most seed bytes per second to one copy (`None`: as fast as it goes).
    pub seed_rate: Option<u64>,
}

impl Default for ShipOptions {
    fn default() -> Self {
        ShipOptions {
            max_chunk: 1 << 20,
            heartbeat: Duration::from_secs(1),
            poll: Duration::from_millis(1),
            compress: None,
            timeout: Duration::from_secs(10),
            seed_rate: None,
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
    /// It fell past the retention cap: its log was released, and it must
    /// be seeded again.
    pub needs_reseed: bool,
    /// Bytes of log messages (frames, tails, generation headers) sent to it
    /// since this active started, as framed on the wire.
    pub sent_bytes: u64,
}

/// The copies an active knows, by id. A registered copy keeps its log pin
/// between sessions, so a copy that reconnects finds its log still there.
#[derive(Default)]
pub struct CopyRegistry {
    copies: Mutex<std::collections::HashMap<[u8; 16], Arc<CopyEntry>>>,
    /// Most log bytes a copy may hold back; past it the copy is marked
    /// needs-reseed and its pin released, so the disk cannot fill.
    cap: Option<u64>,
    /// Where the registry is kept across restarts of the active, if it is.
    file: Option<super::registry_file::RegistryFile>,
}

/// One registered copy.
pub struct CopyEntry {
    /// `None` once released by the retention cap.
    pin: Mutex<Option<Box<dyn LogHold>>>,
    /// Where the pin holds from.
    held: Mutex<Lsn>,
    progress: Mutex<CopyProgress>,
}

impl CopyEntry {
    /// Moves the pin; whether it moved to another generation.
    fn hold(&self, lsn: Lsn) -> bool {
        if let Some(pin) = &*self.pin.lock() {
            pin.advance(lsn);
        }
        let mut held = self.held.lock();
        let moved = held.generation() != lsn.generation();
        *held = lsn;
        moved
    }
}

impl CopyEntry {
    /// What the active knows of the copy.
    pub fn progress(&self) -> CopyProgress {
        self.progress.lock().clone()
    }
}

impl CopyRegistry {
    /// No copies yet, and no cap on the log they hold.
    pub fn new() -> CopyRegistry {
        CopyRegistry::default()
    }

    /// No copies yet; each may hold back at most `cap` bytes of log.
    pub fn with_retention_cap(cap: u64) -> CopyRegistry {
        CopyRegistry {
            cap: Some(cap),
            ..CopyRegistry::default()
        }
    }

    /// A registry kept in `path` (a store's `copies.state`): call
    /// [`CopyRegistry::restore`] when serving starts, and drop it only after
    /// the database has closed (its closing checkpoint recycles whatever no
    /// hold keeps). Opening recycles nothing, so a restore just after open
    /// finds every generation the last run kept.
    pub fn persistent(vfs: crate::vfs::SharedVfs, path: std::path::PathBuf, cap: Option<u64>) -> CopyRegistry {
        CopyRegistry {
            cap,
            file: Some(super::registry_file::RegistryFile { vfs, path }),
            ..CopyRegistry::default()
        }
    }

    /// Registers the copies the saved registry names, each holding the log
    /// from where it held before, if this log still has it; returns how
    /// many. A copy whose log is gone is told to reseed when it comes.
    pub fn restore(&self, source: &dyn ShipSource) -> usize {
        let Some(file) = &self.file else {
            return 0;
        };
        let first = Lsn::new(source.first_generation(), 0);
        let mut restored = 0;
        let durable = source.durable();
        // A copy that received a seal holds from the next generation's
        // start, past the durable end until that generation exists.
        let next = durable.generation().checked_add(1).map(|g| Lsn::new(g, 0));
        for (id, held) in file.load() {
            if held >= first && (held <= durable || Some(held) == next) {
                self.register(source, id, held);
                restored += 1;
            }
        }
        self.save();
        restored
    }

    /// Writes the registry, if it is kept; a failure is logged (the copies
    /// then resume only if their log is still here after a restart).
    fn save(&self) {
        let Some(file) = &self.file else {
            return;
        };
        let copies: Vec<([u8; 16], Lsn)> = self
            .copies
            .lock()
            .iter()
            .filter(|(_, e)| e.pin.lock().is_some())
            .map(|(id, e)| (*id, *e.held.lock()))
            .collect();
        if let Err(e) = file.save(&copies) {
            tracing::warn!(file = %file.path.display(), error = %e, "replication: the copy registry could not be saved");
        }
    }

    /// Releases the log of every copy that holds more than the cap and
    /// marks it needs-reseed; returns those copies.
    pub fn enforce(&self, source: &dyn ShipSource) -> Vec<[u8; 16]> {
        let Some(cap) = self.cap else {
            return Vec::new();
        };
        let durable = source.durable();
        let generation_size = source.generation_size();
        let mut released = Vec::new();
        for (id, entry) in self.copies.lock().iter() {
            let mut p = entry.progress.lock();
            let held_from = Lsn::new(p.replayed.min(p.inspected).generation(), 0);
            let held = log_distance(held_from, durable, generation_size);
            if !p.needs_reseed && held > cap {
                p.needs_reseed = true;
                *entry.pin.lock() = None;
                tracing::warn!(copy = ?&id[..4], held, cap, "replication: a copy fell past the retention cap; it needs a reseed");
                released.push(*id);
            }
        }
        if !released.is_empty() {
            self.save();
        }
        released
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
        let forgotten = self.copies.lock().remove(copy).is_some();
        if forgotten {
            self.save();
        }
        forgotten
    }

    pub(crate) fn register(&self, source: &dyn ShipSource, copy: [u8; 16], start: Lsn) -> Arc<CopyEntry> {
        let mut added = false;
        let entry = self
            .copies
            .lock()
            .entry(copy)
            .or_insert_with(|| {
                added = true;
                Arc::new(CopyEntry {
                    pin: Mutex::new(Some(source.hold(start))),
                    held: Mutex::new(start),
                    progress: Mutex::new(CopyProgress {
                        shipped: start,
                        inspected: start,
                        replayed: start,
                        needs_reseed: false,
                        sent_bytes: 0,
                    }),
                })
            })
            .clone();
        if added {
            self.save();
        }
        entry
    }

    /// Moves a copy's hold; the registry is saved when it moved to another
    /// generation (holds are by generation).
    fn hold(&self, entry: &CopyEntry, lsn: Lsn) {
        if entry.hold(lsn) {
            self.save();
        }
    }
}

/// Bytes of log from `from` to `to`, counting whole generations between.
pub(crate) fn log_distance(from: Lsn, to: Lsn, generation_size: u64) -> u64 {
    if to <= from {
        return 0;
    }
    let generations = u64::from(to.generation() - from.generation());
    (generations * generation_size + u64::from(to.offset())).saturating_sub(u64::from(from.offset()))
}

pub(crate) fn refuse(stream: &mut TcpStream, code: u16, reason: String) -> ReplError {
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
    source: &dyn ShipSource,
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
    let (copy, resume) = match wire::read_message(&mut stream)? {
        Message::Identify(id) => (id, None),
        Message::ResumeSeed { identity, next_page } => (identity, Some(next_page)),
        other => {
            return Err(refuse(
                &mut stream,
                codes::PROTOCOL,
                format!("expected Identify, got {}", other.name()),
            ));
        }
    };
    let mine = source.identity();
    if mine.database == [0; 16] {
        return Err(refuse(
            &mut stream,
            codes::NOT_READY,
            "this source is a copy that holds no database yet".into(),
        ));
    }
    if copy.copy == [0; 16] {
        return Err(refuse(&mut stream, codes::PROTOCOL, "a copy must state its id".into()));
    }
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
    if let Some(next_page) = resume {
        // A seed cut off part way goes on if the log it needs is still here.
        let start = match seed::resume_seed(source, &mut stream, registry, &copy, next_page, opts)? {
            Some(start) => start,
            None => seed::send_seed(source, &mut stream, registry, copy.copy, opts)?,
        };
        return ship_from(source, stream, opts, stop, registry, copy.copy, mine, start);
    }
    if copy.database == [0; 16] || copy.position == Lsn::ZERO {
        // An empty copy: seed it, then ship from the seed's redo point.
        let start = seed::send_seed(source, &mut stream, registry, copy.copy, opts)?;
        return ship_from(source, stream, opts, stop, registry, copy.copy, mine, start);
    }
    if registry.get(&copy.copy).is_some_and(|e| e.progress().needs_reseed) {
        return Err(refuse(
            &mut stream,
            codes::NEEDS_RESEED,
            "this copy fell past the retention cap; its log was released: reseed it".into(),
        ));
    }
    let oldest = Lsn::new(source.first_generation(), 0);
    let start = copy.position;
    let past_end = start > mine.position
        && !after_closed_frame(source, start, mine.position)
        && !after_sealed_generation(source, start, mine.position);
    if start < oldest || past_end {
        return Err(refuse(
            &mut stream,
            codes::NEEDS_RESEED,
            format!("the copy is at {start}; this log holds {oldest} to {}", mine.position),
        ));
    }
    ship_from(source, stream, opts, stop, registry, copy.copy, mine, start)
}

/// Whether `start`, past the durable end, is where the next record goes
/// because the frame holding the end was closed early (a batch wrote it
/// home partly filled): a copy that received that frame asks for the next.
fn after_closed_frame(source: &dyn ShipSource, start: Lsn, durable: Lsn) -> bool {
    if start.generation() != durable.generation() {
        return false;
    }
    let vfs = source.vfs();
    match crate::log::frame_size_of(vfs.as_ref(), &source.log_dir(), durable.generation()) {
        Ok(fs) => start.offset() == durable.offset().div_ceil(fs) * fs,
        Err(_) => false,
    }
}

/// Whether `start` is the first position of the generation after the one
/// that holds the durable end, and that one is sealed there: a copy that
/// received the seal from this source (a copy itself, which has not been
/// sent the next generation yet) asks for the next. Shipping from there
/// waits for that generation, whose header the copy checks against its own
/// sealed one (salt, creation time, epoch), as when the source already had
/// it.
fn after_sealed_generation(source: &dyn ShipSource, start: Lsn, durable: Lsn) -> bool {
    let Some(next) = durable.generation().checked_add(1) else {
        return false;
    };
    start == Lsn::new(next, 0)
        && FrameSource::new(source.vfs(), source.log_dir())
            .sealed_at(durable)
            .unwrap_or(false)
}

/// Ships the log from `start` until `stop`, the copy leaving, or an error.
#[allow(clippy::too_many_arguments)]
fn ship_from(
    source: &dyn ShipSource,
    mut stream: TcpStream,
    opts: &ShipOptions,
    stop: &AtomicBool,
    registry: &CopyRegistry,
    copy: [u8; 16],
    mine: Identity,
    start: Lsn,
) -> Result<()> {
    let entry = registry.register(source, copy, start);
    entry.hold(start.min(entry.progress().inspected));
    wire::write_message(&mut stream, &Message::Accept { identity: mine, start }, None)?;
    tracing::info!(peer = ?stream.peer_addr().ok(), %start, "replication: shipping to a copy");
    entry.progress.lock().shipped = start;
    let progress = &entry.progress;
    let holder = &*entry;
    // Acknowledgements arrive on their own thread; they move the pin.
    let mut acks = stream.try_clone()?;
    acks.set_read_timeout(None)?;
    let ended = Arc::new(AtomicBool::new(false));
    let left = Arc::new(AtomicBool::new(false));
    let frames = FrameSource::new(source.vfs(), source.log_dir());
    std::thread::scope(|s| {
        let ended_reader = ended.clone();
        let left_reader = left.clone();
        s.spawn(move || {
            while let Ok(msg) = wire::read_message(&mut acks) {
                match msg {
                    Message::Ack {
                        inspected,
                        replayed,
                        lagged,
                    } => {
                        let mut p = progress.lock();
                        p.inspected = p.inspected.max(inspected);
                        p.replayed = p.replayed.max(replayed);
                        // Held until replayed; a lagged copy, until inspected.
                        let held = if lagged {
                            p.inspected
                        } else {
                            p.replayed.min(p.inspected)
                        };
                        drop(p);
                        registry.hold(holder, Lsn::new(held.generation(), 0));
                    }
                    Message::Refuse { code, .. } if code == codes::LEAVING => {
                        left_reader.store(true, Ordering::Relaxed);
                        break;
                    }
                    _ => break,
                }
            }
            ended_reader.store(true, Ordering::Relaxed);
        });
        let r = ship_loop(
            &mut stream,
            &frames,
            source,
            opts,
            stop,
            &ended,
            progress,
            registry,
            start,
        );
        let _ = stream.shutdown(std::net::Shutdown::Both);
        match r {
            // The copy said goodbye: a clean end, whatever the last write hit.
            Err(_) if left.load(Ordering::Relaxed) => Ok(()),
            r => r,
        }
    })
}

#[allow(clippy::too_many_arguments)]
fn ship_loop(
    stream: &mut TcpStream,
    frames: &FrameSource,
    source: &dyn ShipSource,
    opts: &ShipOptions,
    stop: &AtomicBool,
    ended: &AtomicBool,
    progress: &Mutex<CopyProgress>,
    registry: &CopyRegistry,
    start: Lsn,
) -> Result<()> {
    let mut next = start;
    let mut last_sent = Instant::now();
    // Reused for every batch: allocating them per batch cost the ship
    // threads a fifth of their CPU.
    let (mut chunk, mut out) = (ShipChunk::default(), Vec::new());
    // The durable end the last chunk shipped reached with a tail (the open
    // frame, partly filled): until the durable end moves, reading again
    // would find the same tail and send it again, and again.
    let mut tail_shipped_at: Option<Lsn> = None;
    loop {
        registry.enforce(source);
        if progress.lock().needs_reseed {
            let reason = "this copy fell past the retention cap; its log was released: reseed it".to_string();
            return Err(refuse(stream, codes::NEEDS_RESEED, reason));
        }
        if stop.load(Ordering::Relaxed) {
            let bye = Message::Refuse {
                code: codes::SHUTDOWN,
                reason: "the active is shutting down".into(),
            };
            let _ = wire::write_message(stream, &bye, None);
            // Let the copy read it and close first: closing with its acks
            // unread would reset the connection and could drop the goodbye.
            let _ = stream.shutdown(std::net::Shutdown::Write);
            let deadline = Instant::now() + opts.timeout;
            while !ended.load(Ordering::Relaxed) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            return Ok(());
        }
        if ended.load(Ordering::Relaxed) {
            return Err(ReplError::Io(std::io::Error::new(
                std::io::ErrorKind::ConnectionAborted,
                "the copy disconnected",
            )));
        }
        let durable = source.durable();
        if tail_shipped_at == Some(durable) {
            chunk.header = None;
            chunk.frames.clear();
            chunk.tail = None;
        } else {
            frames.read_into(next, durable, opts.max_chunk, &mut chunk)?;
        }
        if chunk.is_empty() {
            if last_sent.elapsed() >= opts.heartbeat {
                let time_us = crate::log::now_us();
                wire::write_message(stream, &Message::Heartbeat { durable, time_us }, None)?;
                last_sent = Instant::now();
            }
            std::thread::sleep(opts.poll);
            continue;
        }
        next = chunk.next;
        tail_shipped_at = chunk.tail.is_some().then_some(durable);
        send_chunk(stream, &mut chunk, opts.compress, &mut out)?;
        last_sent = Instant::now();
        let mut progress = progress.lock();
        progress.shipped = next;
        progress.sent_bytes += out.len() as u64;
    }
}

/// Sends a chunk's messages in one write (one packet for a small batch),
/// encoded into `out`. The chunk's buffers are handed back to it.
fn send_chunk(stream: &mut TcpStream, chunk: &mut ShipChunk, compress: Option<i32>, out: &mut Vec<u8>) -> Result<()> {
    out.clear();
    if let Some((generation, bytes)) = chunk.header.take() {
        wire::encode_into(&Message::GenerationHeader { generation, bytes }, compress, out);
    }
    if !chunk.frames.is_empty() {
        let frames = Message::Frames {
            first: chunk.first,
            frame_size: chunk.frame_size,
            bytes: std::mem::take(&mut chunk.frames),
        };
        wire::encode_into(&frames, compress, out);
        if let Message::Frames { bytes, .. } = frames {
            chunk.frames = bytes;
        }
    }
    if let Some(frame) = chunk.tail.take() {
        wire::encode_into(&Message::Tail { frame }, compress, out);
    }
    stream.write_all(out)?;
    Ok(())
}
