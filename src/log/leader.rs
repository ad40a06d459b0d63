//! The group-commit leader's I/O: it writes a batch of frames, switches
//! generations, and issues the one fdatasync that covers the batch.
//!
//! Only one leader runs at a time (the `leader_active` flag in the shared
//! state), so this state sits behind an uncontended mutex.

use super::buffer::{Batch, FrameMeta, TailFrame};
use super::files::GenFile;
use super::format::{DATA_START, FLAG_SHADOW, FrameHeader, GenerationHeader, GenerationState, SHADOW_SLOTS, chain_add};
use super::prepare::Preparer;
use super::{LogError, Lsn, Result};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Counters the log exposes through [`super::LogStats`].
#[derive(Default)]
pub(crate) struct Counters {
    pub batches: AtomicU64,
    pub syncs: AtomicU64,
    pub bytes_written: AtomicU64,
    pub records: AtomicU64,
    pub record_bytes: AtomicU64,
    pub generation_switches: AtomicU64,
    pub preparation_stalls: AtomicU64,
    pub interior_frames: AtomicU64,
}

pub(crate) struct LeaderState {
    /// The generation being written.
    pub current: GenFile,
    /// Whether `current` is sealed and the next write must start a new generation.
    pub current_sealed: bool,
    /// Chain checksum over `current`'s home frames written so far.
    pub chain: u32,
    /// Sequence of the last shadow write in `current`.
    pub shadow_seq: u32,
    /// The shadow slot holding the newest copy of the open frame, if any.
    pub shadow_slot: Option<u32>,
    pub epoch: u64,
    pub max_write_span: u64,
    pub preparer: Arc<Preparer>,
    /// The next generation whose zero fill the preparer may run.
    pub fill_allowed: u32,
    pub counters: Arc<Counters>,
    /// Run before a batch is written (`Log::set_before_write`).
    pub before_write: Option<super::BeforeWrite>,
}

/// The generation committers may write interior frames into: active, not sealed.
#[derive(Clone)]
pub(crate) struct ActiveGen {
    pub generation: u32,
    pub salt: u32,
    pub file: Arc<dyn crate::vfs::VfsFile>,
    pub path: std::path::PathBuf,
}

impl LeaderState {
    pub fn active(&self) -> Option<ActiveGen> {
        (!self.current_sealed).then(|| ActiveGen {
            generation: self.current.header.generation,
            salt: self.current.salt,
            file: self.current.file.clone(),
            path: self.current.path.clone(),
        })
    }

    /// Writes the batch and makes it durable. Any error leaves the log stopped:
    /// the caller never retries.
    pub fn write_batch(&mut self, batch: &mut Batch) -> Result<Lsn> {
        let Batch {
            runs,
            tail,
            end,
            eager_chain,
            ..
        } = batch;
        let end = *end;
        if let Some(hook) = &self.before_write {
            hook()?;
        }
        // Interior frames that committers wrote into the current generation.
        self.chain = self.chain.wrapping_add(std::mem::take(eager_chain));
        let start_generation = self.current.header.generation;
        let mut batch_start = runs
            .first()
            .map(|r| r.first_index)
            .or(tail.as_ref().map(|t| t.index))
            .unwrap_or(DATA_START);
        for run in runs.iter_mut() {
            if run.generation != self.current.header.generation || self.current_sealed {
                self.switch_generation(run.generation)?;
                batch_start = DATA_START;
            }
            let bytes = &mut run.bytes;
            let fs = self.current.frame_size() as usize;
            for (i, meta) in run.meta.iter().enumerate() {
                let index = run.first_index + i as u32;
                let frame = &mut bytes[i * fs..(i + 1) * fs];
                let crc = self.seal_frame(frame, index, *meta, 0, batch_start);
                self.chain = chain_add(self.chain, index, crc);
            }
            let offset = self.current.frame_offset(run.first_index);
            self.write(bytes, offset)?;
            if run
                .meta
                .last()
                .is_some_and(|m| m.flags & super::format::FLAG_SEALED != 0)
            {
                self.current_sealed = true;
            }
        }
        if let Some(tail) = tail.as_mut() {
            if tail.generation != self.current.header.generation || self.current_sealed {
                self.switch_generation(tail.generation)?;
                batch_start = DATA_START;
            }
            self.write_shadow(tail, batch_start)?;
        }
        self.sync()?;
        let switched = self.current.header.generation != start_generation;
        if switched {
            // Only now is the new header durable: a spare after it is safe.
            self.preparer.request(self.current.header.generation + 1);
        }
        self.allow_fill_past_half(end);
        self.counters.batches.fetch_add(1, Ordering::Relaxed);
        Ok(end)
    }

    /// Lets the next file's zeros be written once the log's end is half way
    /// through the current generation: a log that never gets that far (a
    /// young store) writes none, and a recycled file needs none (DESIGN.md,
    /// "Zeros when they are needed").
    pub fn allow_fill_past_half(&mut self, end: Lsn) {
        let next = self.current.header.generation + 1;
        let past_half = end.generation() == self.current.header.generation
            && u64::from(end.offset()) * 2 >= self.current.header.generation_size;
        if self.fill_allowed < next && past_half {
            self.fill_allowed = next;
            self.preparer.allow_fill(next);
        }
    }

    /// Fills in a frame header and checksum; returns the checksum.
    fn seal_frame(&self, frame: &mut [u8], index: u32, meta: FrameMeta, shadow_seq: u32, batch_start: u32) -> u32 {
        let mut header = FrameHeader {
            crc: 0,
            salt: self.current.salt,
            lsn: self.current.frame_lsn(index),
            shadow_seq,
            used: meta.used,
            first_record: meta.first_record,
            flags: meta.flags | if shadow_seq != 0 { FLAG_SHADOW } else { 0 },
            batch_start,
        };
        if shadow_seq == 0 {
            // Home frames are closed: their payload checksum was computed at close.
            header.seal_with_payload_crc(frame, meta.payload_crc);
        } else {
            header.seal_into(frame);
        }
        header.crc
    }

    /// Writes a partial copy of the open frame to the shadow slot that does not
    /// hold the newest durable copy, so a torn write destroys nothing acknowledged.
    pub fn write_shadow(&mut self, tail: &mut TailFrame, batch_start: u32) -> Result<()> {
        let slot = match self.shadow_slot {
            Some(s) if s == SHADOW_SLOTS[0] => SHADOW_SLOTS[1],
            _ => SHADOW_SLOTS[0],
        };
        self.shadow_seq += 1;
        self.seal_frame(&mut tail.bytes, tail.index, tail.meta, self.shadow_seq, batch_start);
        let offset = self.current.frame_offset(slot);
        self.write(&tail.bytes, offset)?;
        self.shadow_slot = Some(slot);
        Ok(())
    }

    pub fn write(&self, bytes: &[u8], offset: u64) -> Result<()> {
        self.current
            .file
            .write_at(bytes, offset)
            .map_err(|e| LogError::io(&self.current.path, offset, "write", e))?;
        self.counters
            .bytes_written
            .fetch_add(bytes.len() as u64, Ordering::Relaxed);
        Ok(())
    }

    pub fn sync(&self) -> Result<()> {
        self.counters.syncs.fetch_add(1, Ordering::Relaxed);
        self.current
            .file
            .sync_data()
            .map_err(|e| LogError::io(&self.current.path, 0, "sync", e))
    }

    /// Makes the sealed current generation durable, then activates the next
    /// one. Its active header is written with the batch's first frames and made
    /// durable by the batch's sync; a torn header leaves a spare file, never a
    /// hole, because the previous generation is sealed and durable first.
    fn switch_generation(&mut self, generation: u32) -> Result<()> {
        let expected = self.current.header.generation + 1;
        if generation != expected || !self.current_sealed {
            return Err(LogError::corrupt(
                &self.current.path,
                0,
                format!(
                    "internal: switch to generation {generation} from an unsealed {}",
                    expected - 1
                ),
            ));
        }
        self.sync()?;
        let prepared = self.preparer.take(generation, &self.counters)?;
        let prev = &self.current.header;
        let header = GenerationHeader {
            state: GenerationState::Active,
            frame_size: prev.frame_size,
            generation,
            generation_size: prev.generation_size,
            signature: prev.signature,
            epoch: self.epoch,
            created_us: now_us().max(prev.created_us + 1),
            nonce: random_u64()?,
            prev_created_us: prev.created_us,
            prev_salt: self.current.salt,
            prev_chain: self.chain,
            max_write_span: self.max_write_span,
        };
        let mut frame = vec![0u8; prev.frame_size as usize];
        let salt = header.encode(&mut frame);
        prepared
            .file
            .write_at(&frame, 0)
            .map_err(|e| LogError::io(&prepared.path, 0, "write", e))?;
        self.current = GenFile {
            path: prepared.path,
            file: prepared.file,
            header,
            salt,
        };
        self.current_sealed = false;
        self.chain = salt;
        self.shadow_seq = 0;
        self.shadow_slot = None;
        self.counters.generation_switches.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

/// Microseconds since the Unix epoch (0 if the clock is before it).
pub(crate) fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

pub(crate) fn random_u64() -> Result<u64> {
    let s = super::format::LogSignature::random().map_err(|e| LogError::io("<entropy>", 0, "getrandom", e))?;
    let mut b = [0u8; 8];
    b.copy_from_slice(&s.0[..8]);
    Ok(u64::from_le_bytes(b))
}
