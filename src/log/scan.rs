//! Walking the frames of one generation, and the recovery scan that finds
//! where the log ends.

use super::files::GenFile;
use super::format::{DATA_START, Defect, FRAME_HEADER_LEN, FrameHeader, NO_RECORD, SHADOW_SLOTS, chain_add};
use super::records::{Record, RecordAssembler};
use super::{LogError, Lsn, Result};

/// Frames read per I/O while walking a generation.
const CHUNK_BYTES: usize = 1 << 20;

/// One valid frame, in log order.
pub(crate) struct WalkedFrame {
    pub index: u32,
    pub header: FrameHeader,
    pub bytes: Vec<u8>,
    pub from_shadow: bool,
    /// Where it was read: its home index or a shadow slot.
    pub slot: u32,
}

/// Where a walked frame came from, without its bytes.
pub(crate) struct FrameMeta {
    pub index: u32,
    pub header: FrameHeader,
    pub from_shadow: bool,
    pub slot: u32,
}

/// Why a walk ended.
pub(crate) enum WalkEnd {
    /// The generation's sealed frame was the last one returned.
    Sealed,
    /// Home frame `index` is invalid and no shadow copy of it exists.
    Invalid { index: u32, defect: Defect },
    /// A shadow copy of frame `index` was the last frame returned.
    AfterShadow { index: u32 },
}

/// Iterates the valid frames of a generation from `index`: home frames until
/// the seal or the first invalid one, then the newest shadow copy of that frame.
pub(crate) struct FrameWalk {
    gfile: GenFile,
    index: u32,
    chunk: Vec<u8>,
    chunk_first: u32,
    chunk_frames: u32,
    pub end: Option<WalkEnd>,
    pub max_shadow_seq: u32,
    /// Frames past this index are not read ahead in bulk (they are known
    /// not to be written yet, as at the end of a copy's shipped log).
    pub read_ahead_end: u32,
}

impl FrameWalk {
    pub fn new(gfile: GenFile, index: u32) -> Self {
        FrameWalk {
            gfile,
            index,
            chunk: Vec::new(),
            chunk_first: 0,
            chunk_frames: 0,
            end: None,
            max_shadow_seq: 0,
            read_ahead_end: u32::MAX,
        }
    }

    /// A walk that reads into `buffer` (its capacity is reused).
    pub fn with_buffer(gfile: GenFile, index: u32, buffer: Vec<u8>) -> Self {
        FrameWalk {
            chunk: buffer,
            ..FrameWalk::new(gfile, index)
        }
    }

    /// The read buffer, for the next walk.
    pub fn into_buffer(self) -> Vec<u8> {
        self.chunk
    }

    pub fn gfile(&self) -> &GenFile {
        &self.gfile
    }

    pub fn next_frame(&mut self) -> Result<Option<WalkedFrame>> {
        let mut bytes = Vec::new();
        Ok(self.next_frame_into(&mut bytes)?.map(|meta| WalkedFrame {
            index: meta.index,
            header: meta.header,
            bytes,
            from_shadow: meta.from_shadow,
            slot: meta.slot,
        }))
    }

    /// Like `next_frame`, but appends the frame's bytes to `out` instead of
    /// allocating them: shipping walks every frame of the log.
    pub fn next_frame_into(&mut self, out: &mut Vec<u8>) -> Result<Option<FrameMeta>> {
        if self.end.is_some() {
            return Ok(None);
        }
        let fs = self.gfile.frame_size() as usize;
        let frames = self.gfile.frames();
        if self.index >= frames {
            self.end = Some(WalkEnd::Invalid {
                index: frames,
                defect: Defect::BadField("no seal before the end of the file"),
            });
            return Ok(None);
        }
        if self.index < self.chunk_first || self.index >= self.chunk_first + self.chunk_frames {
            let ahead = self.read_ahead_end.saturating_sub(self.index).max(1);
            let count = ((CHUNK_BYTES / fs).max(1) as u32).min(frames - self.index).min(ahead);
            self.gfile.read_frames(self.index, count, &mut self.chunk)?;
            self.chunk_first = self.index;
            self.chunk_frames = count;
        }
        let at = (self.index - self.chunk_first) as usize * fs;
        let frame = &self.chunk[at..at + fs];
        let index = self.index;
        match self.gfile.check_home(index, frame) {
            Ok(header) => {
                self.index += 1;
                if header.is_sealed() {
                    self.end = Some(WalkEnd::Sealed);
                }
                out.extend_from_slice(frame);
                Ok(Some(FrameMeta {
                    index,
                    header,
                    from_shadow: false,
                    slot: index,
                }))
            }
            Err(defect) => {
                let (shadow, max_seq) = self.gfile.read_shadow(index)?;
                self.max_shadow_seq = max_seq;
                match shadow {
                    Some((slot, header, bytes)) => {
                        self.end = Some(WalkEnd::AfterShadow { index });
                        out.extend_from_slice(&bytes);
                        Ok(Some(FrameMeta {
                            index,
                            header,
                            from_shadow: true,
                            slot,
                        }))
                    }
                    None => {
                        self.end = Some(WalkEnd::Invalid { index, defect });
                        Ok(None)
                    }
                }
            }
        }
    }
}

/// A torn tail found and cut off by recovery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TornTail {
    /// File offset where the valid log ends.
    pub offset: u64,
    /// What was found there.
    pub reason: String,
}

/// Where the writer continues in an unsealed last generation.
#[derive(Debug, Clone)]
pub(crate) struct Resume {
    /// The frame that holds the end of the log (partly filled, or empty).
    pub index: u32,
    /// Its payload up to the end of the log.
    pub content: Vec<u8>,
    pub first_record: u16,
    /// Chain checksum over home frames before `index`.
    pub chain: u32,
}

/// What a full scan of one generation found.
pub(crate) struct GenerationScan {
    pub sealed: bool,
    /// Chain checksum over all home frames (meaningful when sealed).
    pub chain: u32,
    pub records: u64,
    pub record_bytes: u64,
    /// Just after the last complete record.
    pub end: Lsn,
    pub resume: Option<Resume>,
    pub torn: Option<TornTail>,
    pub max_shadow_seq: u32,
    /// One past the last valid home frame.
    pub home_end: u32,
}

/// Scans a whole generation, verifying every frame and record and passing
/// records to `sink`. In a generation that is not the last, anything but a
/// complete, sealed sequence of frames is corruption. In the last one, an
/// invalid frame is the torn tail, unless a later write batch left valid frames
/// behind it: then that frame was once durable, and it is corruption too.
pub(crate) fn scan_generation(
    gfile: &GenFile,
    last: bool,
    keep_bodies: bool,
    sink: &mut dyn FnMut(Record) -> Result<()>,
) -> Result<GenerationScan> {
    let mut asm = RecordAssembler::new(keep_bodies, Lsn::ZERO, gfile.header.generation_size);
    let mut walk = FrameWalk::new(gfile.clone(), DATA_START);
    let mut chain = gfile.salt;
    let mut chain_before: Vec<u32> = Vec::new();
    let mut out = Vec::new();
    let mut scan = GenerationScan {
        sealed: false,
        chain,
        records: 0,
        record_bytes: 0,
        end: Lsn(gfile.frame_lsn(DATA_START).0 + FRAME_HEADER_LEN as u64),
        resume: None,
        torn: None,
        max_shadow_seq: 0,
        home_end: DATA_START,
    };
    let mut last_frame: Option<WalkedFrame> = None;
    while let Some(frame) = walk.next_frame()? {
        let offset = gfile.frame_offset(frame.slot);
        chain_before.push(chain);
        if !frame.from_shadow {
            chain = chain_add(chain, frame.index, frame.header.crc);
            scan.home_end = frame.index + 1;
        }
        asm.feed(
            &gfile.path,
            offset,
            &frame.header,
            &frame.bytes[FRAME_HEADER_LEN..],
            &mut out,
        )?;
        for record in out.drain(..) {
            scan.records += 1;
            scan.record_bytes += record.end.0 - record.lsn.0;
            sink(record)?;
        }
        last_frame = Some(frame);
    }
    scan.chain = chain;
    scan.max_shadow_seq = walk.max_shadow_seq;
    if let Some(end) = asm.end {
        scan.end = end;
    }
    match walk.end {
        Some(WalkEnd::Sealed) => {
            scan.sealed = true;
            return Ok(scan);
        }
        Some(WalkEnd::Invalid { index, ref defect }) if !last => {
            let offset = gfile.frame_offset(index);
            return Err(LogError::corrupt(
                &gfile.path,
                offset,
                format!("frame {index} of a closed generation is invalid ({defect})"),
            ));
        }
        Some(WalkEnd::AfterShadow { .. }) if !last => {
            let index = last_frame.as_ref().map_or(DATA_START, |f| f.index);
            return Err(LogError::corrupt(
                &gfile.path,
                gfile.frame_offset(index),
                format!("closed generation ends in a partial frame {index} without a seal"),
            ));
        }
        _ => {}
    }
    // The last generation, not sealed: find the first frame that is not part of the log.
    let first_bad = match walk.end {
        Some(WalkEnd::Invalid { index, ref defect }) => {
            if *defect != Defect::Zeroed {
                scan.torn = Some(TornTail {
                    offset: gfile.frame_offset(index),
                    reason: format!("frame {index}: {defect}"),
                });
            }
            index
        }
        Some(WalkEnd::AfterShadow { index }) => index,
        _ => gfile.frames(),
    };
    check_nothing_durable_after(gfile, first_bad, &mut scan)?;
    if let Some(start) = asm.pending_start() {
        scan.torn.get_or_insert(TornTail {
            offset: start.offset() as u64,
            reason: format!("incomplete record at {start}"),
        });
    }
    scan.resume = Some(resume_point(gfile, scan.end, last_frame, &chain_before)?);
    Ok(scan)
}

/// Frames after the end that a later write batch made valid prove that the
/// frame at the end was once durable: that is corruption, not a torn tail.
/// Frames of the same (last, unsynced) batch are a torn tail.
fn check_nothing_durable_after(gfile: &GenFile, first_bad: u32, scan: &mut GenerationScan) -> Result<()> {
    let fs = gfile.frame_size();
    let span = (gfile.header.max_write_span / fs as u64 + 2).min(gfile.frames() as u64) as u32;
    let stop = first_bad.saturating_add(span).min(gfile.frames());
    let mut buf = Vec::new();
    let mut index = first_bad;
    let mut leftovers = 0u32;
    while index < stop {
        let count = ((CHUNK_BYTES / fs as usize) as u32).min(stop - index);
        gfile.read_frames(index, count, &mut buf)?;
        for i in 0..count {
            let frame = &buf[i as usize * fs as usize..(i as usize + 1) * fs as usize];
            match gfile.check_home(index + i, frame) {
                Ok(h) if h.batch_start > first_bad => {
                    return Err(LogError::corrupt(
                        &gfile.path,
                        gfile.frame_offset(first_bad),
                        format!(
                            "frame {first_bad} is invalid but frame {} was written after it was durable",
                            index + i
                        ),
                    ));
                }
                // A leftover of the unfinished batch is a frame of this file
                // that is damaged (torn). A whole frame of another salt is a
                // stale frame of the file's previous life (recycled), and
                // zeros were never written: neither is a torn tail.
                _ if is_leftover(frame, gfile.salt) => leftovers += 1,
                _ => {}
            }
        }
        index += count;
    }
    for slot in SHADOW_SLOTS {
        gfile.read_frames(slot, 1, &mut buf)?;
        if let Ok((i, h)) = gfile.check_shadow(&buf)
            && i > first_bad
            && h.batch_start > first_bad
        {
            return Err(LogError::corrupt(
                &gfile.path,
                gfile.frame_offset(first_bad),
                format!("frame {first_bad} is invalid but a later shadow copy of frame {i} exists"),
            ));
        }
    }
    if leftovers > 0 && scan.torn.is_none() {
        scan.torn = Some(TornTail {
            offset: gfile.frame_offset(first_bad),
            reason: format!("{leftovers} frames written by an unfinished batch from frame {first_bad} on"),
        });
    }
    Ok(())
}

/// Whether a frame after the end of the log is what an unfinished write
/// left: not all zeros, and not a valid frame of another generation file.
fn is_leftover(frame: &[u8], salt: u32) -> bool {
    match FrameHeader::decode(frame) {
        Err(Defect::Zeroed) => frame.iter().any(|&b| b != 0),
        Err(_) => true,
        Ok(h) => h.salt == salt,
    }
}

/// Finds the frame holding the end of the log and its content up to there.
fn resume_point(gfile: &GenFile, end: Lsn, last_frame: Option<WalkedFrame>, chain_before: &[u32]) -> Result<Resume> {
    let fs = gfile.frame_size();
    let off = end.offset();
    // The frame whose payload holds the end: `end` lies in (start + 32, start + fs].
    let index = if off % fs == FRAME_HEADER_LEN as u32 {
        off / fs
    } else {
        (off - 1) / fs
    };
    let pos = (off - index * fs) as usize - FRAME_HEADER_LEN;
    let chain_at = |i: u32| {
        chain_before
            .get((i - DATA_START) as usize)
            .copied()
            .unwrap_or(gfile.salt)
    };
    let frame = match last_frame {
        Some(f) if f.index == index => f,
        Some(_) => {
            let mut bytes = Vec::new();
            gfile.read_frames(index, 1, &mut bytes)?;
            let header = gfile.check_home(index, &bytes).map_err(|d| {
                LogError::corrupt(
                    &gfile.path,
                    gfile.frame_offset(index),
                    format!("frame changed under recovery: {d}"),
                )
            })?;
            WalkedFrame {
                index,
                header,
                bytes,
                from_shadow: false,
                slot: index,
            }
        }
        None => {
            return Ok(Resume {
                index: DATA_START,
                content: Vec::new(),
                first_record: NO_RECORD,
                chain: gfile.salt,
            });
        }
    };
    let used = frame.header.used as usize;
    if !frame.from_shadow && pos == used {
        // A closed home frame ends exactly at the end: continue in the next frame.
        return Ok(Resume {
            index: index + 1,
            content: Vec::new(),
            first_record: NO_RECORD,
            chain: chain_add(chain_at(index), index, frame.header.crc),
        });
    }
    let first_record = if frame.header.first_record != NO_RECORD && (frame.header.first_record as usize) < pos {
        frame.header.first_record
    } else {
        NO_RECORD
    };
    Ok(Resume {
        index,
        content: frame.bytes[FRAME_HEADER_LEN..FRAME_HEADER_LEN + pos].to_vec(),
        first_record,
        chain: chain_at(index),
    })
}
