//! Log shipping at the frame level: the active reads its durable frames
//! ([`FrameSource`]); a copy writes them into a log directory of its own
//! ([`LogReplica`]) at the same positions, so the copy's log has the
//! active's LSNs, frames and generation chain, and the log's own reader and
//! recovery read it. Only durable bytes ship: a frame goes out once every
//! byte it holds is durable on the active.

use super::files::{GenFile, generation_name, read_header};
use super::format::{
    DATA_START, FLAG_SHADOW, FRAME_HEADER_LEN, FrameHeader, GenerationHeader, GenerationState, HEADER_LEN,
    LogSignature, SHADOW_SLOTS, chain_add,
};
use super::scan::FrameWalk;
use super::{LogError, Lsn, Result};
use crate::vfs::{OpenMode, SharedVfs};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// What the active sends next: a generation's header, home frames, and the
/// open frame's current image.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShipChunk {
    /// A generation that starts in this chunk: its number and header slot.
    pub header: Option<(u32, Vec<u8>)>,
    /// Home frames, the first at `first`.
    pub first: Lsn,
    pub frame_size: u32,
    pub frames: Vec<u8>,
    /// The open frame (a shadow copy, or a partly filled frame already
    /// home), when all it holds is durable.
    pub tail: Option<Vec<u8>>,
    /// Where the copy's next chunk starts.
    pub next: Lsn,
}

impl ShipChunk {
    /// Whether it carries nothing.
    pub fn is_empty(&self) -> bool {
        self.header.is_none() && self.frames.is_empty() && self.tail.is_none()
    }
}

/// Reads the active's durable frames for a copy.
pub struct FrameSource {
    vfs: SharedVfs,
    dir: PathBuf,
    /// The generation read last, kept open: in block mode every call reads
    /// the same one, and opening it each time cost more than the reading.
    open: parking_lot::Mutex<Option<GenFile>>,
    /// The walk's read buffer, kept between calls.
    scratch: parking_lot::Mutex<Vec<u8>>,
}

/// The data end of a frame: its LSN plus header and used payload.
fn data_end(h: &FrameHeader) -> u64 {
    h.lsn.0 + FRAME_HEADER_LEN as u64 + u64::from(h.used)
}

impl FrameSource {
    /// Frames of the log in `dir`.
    pub fn new(vfs: SharedVfs, dir: impl Into<PathBuf>) -> FrameSource {
        FrameSource {
            vfs,
            dir: dir.into(),
            open: parking_lot::Mutex::new(None),
            scratch: parking_lot::Mutex::new(Vec::new()),
        }
    }

    fn generation(&self, generation: u32) -> Result<GenFile> {
        let mut open = self.open.lock();
        if let Some(g) = &*open
            && g.header.generation == generation
        {
            return Ok(g.clone());
        }
        let g = GenFile::open(self.vfs.as_ref(), &self.dir, generation)?;
        *open = Some(g.clone());
        Ok(g)
    }

    /// Whether the durable end `end` is where its generation was sealed:
    /// the frame holding its last byte is home, checked, sealed and ends
    /// there. A copy that received that frame asks for the next generation
    /// before this log has it.
    pub fn sealed_at(&self, end: Lsn) -> Result<bool> {
        let gfile = self.generation(end.generation())?;
        let fs = gfile.frame_size();
        let Some(index) = end.offset().checked_sub(1).map(|last| last / fs) else {
            return Ok(false);
        };
        if index < DATA_START {
            return Ok(false);
        }
        let mut frame = Vec::new();
        gfile.read_frames(index, 1, &mut frame)?;
        Ok(gfile
            .check_home(index, &frame)
            .is_ok_and(|h| h.is_sealed() && data_end(&h) == end.0))
    }

    /// The chunk starting at `from` (a frame boundary, or the start of a
    /// generation), holding at most about `max_bytes` of frames and nothing
    /// beyond `durable`.
    pub fn read(&self, from: Lsn, durable: Lsn, max_bytes: usize) -> Result<ShipChunk> {
        let mut chunk = ShipChunk::default();
        self.read_into(from, durable, max_bytes, &mut chunk)?;
        Ok(chunk)
    }

    /// Like `read`, into `chunk`, whose buffers are reused: a ship loop
    /// calls this for every batch the active commits.
    pub fn read_into(&self, from: Lsn, durable: Lsn, max_bytes: usize, chunk: &mut ShipChunk) -> Result<()> {
        chunk.header = None;
        chunk.frames.clear();
        chunk.tail = None;
        chunk.first = from;
        chunk.next = from;
        if from >= durable {
            return Ok(());
        }
        let generation = from.generation();
        let gfile = self.generation(generation)?;
        let fs = gfile.frame_size();
        chunk.frame_size = fs;
        let mut index = from.offset() / fs;
        if !from.offset().is_multiple_of(fs) {
            return Err(LogError::corrupt(
                &gfile.path,
                u64::from(from.offset()),
                "a copy asked for a position inside a frame",
            ));
        }
        if index < DATA_START {
            let mut head = Vec::new();
            gfile.read_frames(0, 1, &mut head)?;
            chunk.header = Some((generation, head));
            index = DATA_START;
        }
        chunk.first = gfile.frame_lsn(index);
        chunk.next = chunk.first;
        let mut walk = FrameWalk::with_buffer(gfile, index, std::mem::take(&mut *self.scratch.lock()));
        // Read no further than the chunk can hold, nor past the durable end:
        // reading a whole read-ahead chunk of unwritten frames for every
        // small batch cost the active a fifth of its CPU with two copies.
        let wanted = index.saturating_add((max_bytes / fs as usize) as u32 + 1);
        walk.read_ahead_end = if durable.generation() == generation {
            wanted.min(durable.offset().div_ceil(fs) + 1)
        } else {
            wanted
        };
        let result = Self::walk_into(&mut walk, durable, max_bytes, chunk);
        *self.scratch.lock() = walk.into_buffer();
        result
    }

    fn walk_into(walk: &mut FrameWalk, durable: Lsn, max_bytes: usize, chunk: &mut ShipChunk) -> Result<()> {
        let (generation, fs) = (chunk.first.generation(), chunk.frame_size);
        while chunk.frames.len() < max_bytes {
            let at = chunk.frames.len();
            let Some(frame) = walk.next_frame_into(&mut chunk.frames)? else {
                break;
            };
            if data_end(&frame.header) > durable.0 && frame.header.lsn.generation() == durable.generation() {
                // Written but not yet durable: it ships next time.
                chunk.frames.truncate(at);
                break;
            }
            if frame.from_shadow {
                chunk.tail = Some(chunk.frames.split_off(at));
                break;
            }
            chunk.next = Lsn(frame.header.lsn.0 + u64::from(fs));
            if frame.header.is_sealed() {
                chunk.next = Lsn::new(generation + 1, 0);
                break;
            }
            if frame.header.lsn.0 + u64::from(fs) > durable.0 {
                // A partly filled frame already home (closed early): final,
                // but nothing after it is durable yet.
                break;
            }
        }
        Ok(())
    }
}

/// A copy's log directory, written from shipped chunks. Every frame is
/// checked against its generation before it is written: checksum, salt,
/// position; every generation header against the log's signature and the
/// chain from the previous generation.
pub struct LogReplica {
    vfs: SharedVfs,
    dir: PathBuf,
    signature: Option<LogSignature>,
    current: Option<GenFile>,
    /// The shadow slot the newest tail copy went to.
    last_shadow: Option<u32>,
    /// Where the next chunk must start.
    next: Lsn,
    /// End of the durable log bytes held (the data end of the last frame).
    end: Lsn,
    /// The current generation's chain (its salt plus every home frame's
    /// `chain_add`), which the next generation's header must name.
    chain: u32,
    synced: bool,
    /// A write or sync that failed: the replica is stopped (fail-stop). A
    /// failed sync may have dropped the writes it covered, so a retry that
    /// succeeds proves nothing; a failed write leaves its frames unknown.
    failed: Option<Arc<LogError>>,
}

impl LogReplica {
    /// Opens (or starts) a replica in `dir`: finds the last generation and
    /// where its valid frames end.
    pub fn open(vfs: SharedVfs, dir: impl Into<PathBuf>) -> Result<LogReplica> {
        let dir = dir.into();
        vfs.create_dir_all(&dir)
            .map_err(|e| LogError::io(&dir, 0, "create directory", e))?;
        let names = vfs.list(&dir).map_err(|e| LogError::io(&dir, 0, "list", e))?;
        let last = names
            .iter()
            .filter_map(|n| match super::files::parse_name(n) {
                Some(super::files::LogFileName::Generation(g)) => Some(g),
                _ => None,
            })
            .max();
        let mut replica = LogReplica {
            vfs,
            dir,
            signature: None,
            current: None,
            last_shadow: None,
            next: Lsn::ZERO,
            end: Lsn::ZERO,
            chain: 0,
            synced: true,
            failed: None,
        };
        let Some(generation) = last else {
            return Ok(replica);
        };
        let gfile = match GenFile::open(replica.vfs.as_ref(), &replica.dir, generation) {
            Ok(g) => g,
            // A header that never became durable: ask for the generation
            // again. The one before it was synced, sealed, before this file
            // was made: the replica ends where it ends.
            Err(LogError::Corrupt { .. }) => {
                let previous = match generation.checked_sub(1) {
                    Some(p) => {
                        let path = replica.dir.join(generation_name(p));
                        let exists = replica
                            .vfs
                            .exists(&path)
                            .map_err(|e| LogError::io(&path, 0, "stat", e))?;
                        exists.then_some(p)
                    }
                    None => None,
                };
                match previous {
                    // Its walk ends sealed, so the replica asks for this
                    // generation next.
                    Some(p) => replica.walk(GenFile::open(replica.vfs.as_ref(), &replica.dir, p)?)?,
                    None => replica.next = Lsn::new(generation, 0),
                }
                return Ok(replica);
            }
            Err(e) => return Err(e),
        };
        replica.walk(gfile)?;
        Ok(replica)
    }

    /// Finds where the valid frames of `gfile`, the replica's last
    /// generation, end, and makes it the current one.
    fn walk(&mut self, gfile: GenFile) -> Result<()> {
        let replica = self;
        let generation = gfile.header.generation;
        replica.signature = Some(gfile.header.signature);
        let fs = gfile.frame_size();
        replica.next = gfile.frame_lsn(DATA_START);
        replica.end = replica.next;
        replica.chain = gfile.salt;
        let mut walk = FrameWalk::new(gfile.clone(), DATA_START);
        while let Some(frame) = walk.next_frame()? {
            replica.end = Lsn(data_end(&frame.header));
            if frame.from_shadow {
                replica.last_shadow = Some(frame.slot);
                break;
            }
            replica.chain = chain_add(replica.chain, frame.index, frame.header.crc);
            replica.next = Lsn(frame.header.lsn.0 + u64::from(fs));
            if frame.header.is_sealed() {
                replica.next = Lsn::new(generation + 1, 0);
            }
        }
        replica.current = Some(gfile);
        Ok(())
    }

    /// Where the next chunk must start (what the copy asks the active for).
    pub fn next(&self) -> Lsn {
        self.next
    }

    /// The end of the log bytes held: records up to here can be read.
    pub fn end(&self) -> Lsn {
        self.end
    }

    /// The generation size, once a generation arrived.
    pub fn generation_size(&self) -> Option<u64> {
        self.current.as_ref().map(|g| g.header.generation_size)
    }

    /// The log's signature, once a generation arrived.
    pub fn signature(&self) -> Option<LogSignature> {
        self.signature
    }

    /// Sets where a new replica starts (the active's `Accept`).
    pub fn start_at(&mut self, lsn: Lsn) {
        if self.current.is_none() && self.next == Lsn::ZERO {
            self.next = lsn;
        }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn protocol(&self, reason: String) -> LogError {
        LogError::corrupt(&self.dir, 0, format!("shipped log: {reason}"))
    }

    /// Checks and writes one chunk (not yet synced: see [`LogReplica::sync`]).
    /// Positions move only past bytes written; after a failed write or sync
    /// every call fails with [`LogError::Stopped`] (reopen to recover).
    pub fn apply(&mut self, chunk: &ShipChunk) -> Result<()> {
        self.check_running()?;
        self.apply_chunk(chunk)
    }

    /// Whether a failed write or sync stopped the replica.
    pub fn is_stopped(&self) -> bool {
        self.failed.is_some()
    }

    fn check_running(&self) -> Result<()> {
        match &self.failed {
            Some(cause) => Err(LogError::Stopped { cause: cause.clone() }),
            None => Ok(()),
        }
    }

    /// A log write or sync failed: what reached the file is unknown (a
    /// failed sync may have dropped the writes it covered), so the replica
    /// stops. Checks that refuse a chunk do not stop it: nothing of the
    /// chunk was written, and the sender may send it again.
    fn stop(&mut self, e: LogError) -> LogError {
        let cause = Arc::new(e);
        self.failed = Some(cause.clone());
        LogError::Stopped { cause }
    }

    fn apply_chunk(&mut self, chunk: &ShipChunk) -> Result<()> {
        if let Some((generation, bytes)) = &chunk.header {
            self.start_generation(*generation, bytes)?;
        }
        if !chunk.frames.is_empty() || chunk.tail.is_some() {
            let Some(g) = self.current.clone() else {
                return Err(self.protocol("frames before any generation header".into()));
            };
            let fs = g.frame_size();
            if chunk.frame_size != fs || chunk.first != self.next || chunk.first.generation() != g.header.generation {
                return Err(self.protocol(format!(
                    "frames from {} (size {}), expected {} (size {fs})",
                    chunk.first, chunk.frame_size, self.next
                )));
            }
            let first = chunk.first.offset() / fs;
            // Every frame is checked before any is written, and the
            // positions move only once the write succeeded.
            let (mut end, mut next, mut chain) = (self.end, self.next, self.chain);
            for (i, frame) in chunk.frames.chunks(fs as usize).enumerate() {
                let index = first + i as u32;
                if next.generation() != g.header.generation {
                    return Err(self.protocol(format!("frame {index} after the sealed frame of its generation")));
                }
                let h = g.check_home(index, frame).map_err(|d| {
                    LogError::corrupt(&g.path, g.frame_offset(index), format!("shipped frame {index}: {d}"))
                })?;
                chain = chain_add(chain, index, h.crc);
                end = Lsn(data_end(&h));
                next = if h.is_sealed() {
                    Lsn::new(g.header.generation + 1, 0)
                } else {
                    Lsn(h.lsn.0 + u64::from(fs))
                };
            }
            if !chunk.frames.is_empty() {
                let at = g.frame_offset(first);
                self.synced = false;
                g.file
                    .write_at(&chunk.frames, at)
                    .map_err(|e| self.stop(LogError::io(&g.path, at, "write", e)))?;
                (self.end, self.next, self.chain) = (end, next, chain);
            }
            if let Some(tail) = &chunk.tail {
                self.write_tail(&g, tail)?;
            }
        }
        Ok(())
    }

    fn write_tail(&mut self, g: &GenFile, frame: &[u8]) -> Result<()> {
        let fs = g.frame_size() as usize;
        if frame.len() != fs {
            return Err(self.protocol(format!("a tail frame of {} bytes", frame.len())));
        }
        let h = FrameHeader::decode(frame)
            .map_err(|d| LogError::corrupt(&g.path, 0, format!("shipped tail frame: {d}")))?;
        let index = h.lsn.offset() / fs as u32;
        let (mut next, mut chain) = (self.next, self.chain);
        if h.lsn != self.next {
            return Err(self.protocol(format!("a tail frame at {}, expected {}", h.lsn, self.next)));
        }
        let slot = if h.flags & FLAG_SHADOW != 0 {
            g.check_shadow(frame)
                .map_err(|d| LogError::corrupt(&g.path, 0, format!("shipped shadow frame: {d}")))?;
            // Never over the newest copy: a torn write must leave it whole.
            match self.last_shadow {
                Some(s) if s == SHADOW_SLOTS[0] => SHADOW_SLOTS[1],
                _ => SHADOW_SLOTS[0],
            }
        } else {
            // A partly filled frame closed early: final, and home.
            g.check_home(index, frame).map_err(|d| {
                LogError::corrupt(&g.path, g.frame_offset(index), format!("shipped frame {index}: {d}"))
            })?;
            next = Lsn(h.lsn.0 + fs as u64);
            chain = chain_add(chain, index, h.crc);
            index
        };
        let at = g.frame_offset(slot);
        self.synced = false;
        g.file
            .write_at(frame, at)
            .map_err(|e| self.stop(LogError::io(&g.path, at, "write", e)))?;
        if h.flags & FLAG_SHADOW != 0 {
            self.last_shadow = Some(slot);
        }
        (self.end, self.next, self.chain) = (Lsn(data_end(&h)), next, chain);
        Ok(())
    }

    fn start_generation(&mut self, generation: u32, bytes: &[u8]) -> Result<()> {
        if bytes.len() < HEADER_LEN {
            return Err(self.protocol(format!("a generation header of {} bytes", bytes.len())));
        }
        let (header, salt) = GenerationHeader::decode(bytes)
            .map_err(|d| self.protocol(format!("generation {generation} header: {d}")))?;
        if header.state != GenerationState::Active || header.generation != generation {
            return Err(self.protocol(format!(
                "generation {generation}: header is not an active header of that generation"
            )));
        }
        if bytes.len() != header.frame_size as usize {
            return Err(self.protocol(format!("generation {generation}: header slot of {} bytes", bytes.len())));
        }
        if let Some(sig) = self.signature
            && sig != header.signature
        {
            return Err(LogError::ForeignFile {
                file: self.dir.join(generation_name(generation)),
                offset: 32,
                reason: "the shipped generation belongs to another log".into(),
            });
        }
        if self.next != Lsn::new(generation, 0) && self.next != Lsn::ZERO {
            return Err(self.protocol(format!(
                "generation {generation} header, expected position {}",
                self.next
            )));
        }
        if let Some(prev) = &self.current {
            // The chain: the new header must name the previous generation.
            if header.prev_salt != prev.salt
                || header.prev_created_us != prev.header.created_us
                || header.epoch < prev.header.epoch
            {
                return Err(LogError::Divergent {
                    file: self.dir.join(generation_name(generation)),
                    offset: 72,
                    reason: "the shipped generation does not follow the previous one".into(),
                });
            }
            // The frames of the previous generation this copy holds are the
            // ones the new header's generation followed.
            if header.prev_chain != self.chain {
                return Err(LogError::Divergent {
                    file: self.dir.join(generation_name(generation)),
                    offset: 84,
                    reason: format!(
                        "its header names a generation {} of chain {:#010x}; this copy holds one of chain {:#010x}",
                        generation.saturating_sub(1),
                        header.prev_chain,
                        self.chain
                    ),
                });
            }
            self.sync_current()?;
        }
        let path = self.dir.join(generation_name(generation));
        let spare = if self.vfs.exists(&path).map_err(|e| LogError::io(&path, 0, "stat", e))? {
            None
        } else {
            super::replica_pool::take_spare(
                self.vfs.as_ref(),
                &self.dir,
                generation,
                bytes.len(),
                header.generation_size,
            )?
        };
        let file = match spare {
            Some(file) => file,
            None => {
                let file = self
                    .vfs
                    .open(&path, OpenMode::CreateOrOpen)
                    .map_err(|e| LogError::io(&path, 0, "create", e))?;
                file.set_len(0).map_err(|e| LogError::io(&path, 0, "truncate", e))?;
                // Reserved, not zero-filled: writing 64 MiB of zeros here
                // stalled the copy at every generation switch.
                file.reserve(header.generation_size)
                    .map_err(|e| LogError::io(&path, 0, "allocate", e))?;
                file
            }
        };
        file.write_at(bytes, 0)
            .map_err(|e| LogError::io(&path, 0, "write", e))?;
        file.sync_data().map_err(|e| LogError::io(&path, 0, "sync", e))?;
        self.vfs
            .sync_dir(&self.dir)
            .map_err(|e| LogError::io(&self.dir, 0, "sync directory", e))?;
        let (check, _) = read_header(file.as_ref(), &path)?
            .map_err(|d| LogError::corrupt(&path, 0, format!("generation header: {d}")))?;
        self.signature = Some(check.signature);
        self.current = Some(GenFile {
            path,
            file,
            header,
            salt,
        });
        self.last_shadow = None;
        self.next = Lsn::new(generation, DATA_START * header.frame_size);
        self.end = self.next;
        self.chain = salt;
        Ok(())
    }

    /// Makes everything applied durable. A failure stops the replica.
    pub fn sync(&mut self) -> Result<()> {
        self.check_running()?;
        self.sync_current()
    }

    fn sync_current(&mut self) -> Result<()> {
        if let Some(g) = self.current.clone()
            && !self.synced
        {
            g.file
                .sync_data()
                .map_err(|e| self.stop(LogError::io(&g.path, 0, "sync", e)))?;
        }
        self.synced = true;
        Ok(())
    }
}
