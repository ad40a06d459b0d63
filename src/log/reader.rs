//! Reading records from any LSN, across generations. Replay, shipping to
//! copies and recovery tools all read through this.

use super::files::{GenFile, generation_name};
use super::format::{DATA_START, FRAME_HEADER_LEN, LogSignature, chain_add};
use super::records::{Record, RecordAssembler};
use super::scan::{FrameWalk, WalkEnd};
use super::{LogError, Lsn, Result};
use crate::vfs::SharedVfs;
use std::collections::VecDeque;
use std::path::PathBuf;

struct Cursor {
    walk: FrameWalk,
    asm: RecordAssembler,
    /// Chain over home frames, when the walk started at the first data frame.
    chain: Option<u32>,
}

/// Iterates records in log order from a starting LSN up to a limit.
pub struct LogReader {
    vfs: SharedVfs,
    dir: PathBuf,
    signature: Option<LogSignature>,
    next_generation: u32,
    from: Lsn,
    limit: Lsn,
    cursor: Option<Cursor>,
    /// Header facts of the generation just finished: (created, salt, chain).
    finished: Option<(u32, u64, u32, Option<u32>)>,
    out: VecDeque<Record>,
    done: bool,
    /// Where the written log is known to end: frames beyond are not read
    /// ahead (a copy's replay reads up to what it has received).
    written_end: Option<Lsn>,
}

impl LogReader {
    /// Tells the reader where the written frames end, so that it does not
    /// read ahead past them; records are still read to the log's end.
    pub fn written_up_to(mut self, end: Lsn) -> Self {
        self.written_end = Some(end);
        self
    }

    /// Reads the log in `dir` from `from` (a record boundary, the start of a
    /// generation, or `Lsn::ZERO` for the oldest generation present) until the
    /// first record that ends after `limit`, or the end of the log.
    pub fn new(vfs: SharedVfs, dir: impl Into<PathBuf>, from: Lsn, limit: Lsn) -> Result<LogReader> {
        let dir = dir.into();
        let mut first = from.generation();
        if first == 0 {
            let names = vfs.list(&dir).map_err(|e| LogError::io(&dir, 0, "list", e))?;
            first = names
                .iter()
                .filter_map(|n| match super::files::parse_name(n) {
                    Some(super::files::LogFileName::Generation(g)) => Some(g),
                    _ => None,
                })
                .min()
                .ok_or_else(|| LogError::NoLog {
                    dir: dir.clone(),
                    reason: "no generation files".into(),
                })?;
        }
        Ok(LogReader {
            vfs,
            dir,
            signature: None,
            next_generation: first,
            from,
            limit,
            cursor: None,
            finished: None,
            out: VecDeque::new(),
            done: false,
            written_end: None,
        })
    }

    /// Requires every generation to carry this signature.
    pub fn expect_signature(mut self, signature: LogSignature) -> Self {
        self.signature = Some(signature);
        self
    }

    fn open_next(&mut self) -> Result<bool> {
        let generation = self.next_generation;
        let path = self.dir.join(generation_name(generation));
        let exists = self.vfs.exists(&path).map_err(|e| LogError::io(&path, 0, "stat", e))?;
        if !exists {
            return Ok(false);
        }
        let gfile = match GenFile::open(self.vfs.as_ref(), &self.dir, generation) {
            Ok(g) => g,
            // After a sealed generation, a file that is not yet an active
            // generation is a spare being prepared: the log ends there. (A
            // bounded reader still fails if that is short of its limit.)
            Err(LogError::Corrupt { .. } | LogError::ForeignFile { .. }) if self.finished.is_some() => {
                return Ok(false);
            }
            Err(e) => return Err(e),
        };
        let signature = *self.signature.get_or_insert(gfile.header.signature);
        if gfile.header.signature != signature {
            return Err(LogError::WrongSignature {
                file: gfile.path.clone(),
                offset: 32,
                expected: signature.to_string(),
                found: gfile.header.signature.to_string(),
            });
        }
        if let Some((prev, created, salt, chain)) = self.finished {
            let h = &gfile.header;
            let chain_ok = chain.is_none_or(|c| c == h.prev_chain);
            if h.prev_created_us != created || h.prev_salt != salt || !chain_ok {
                return Err(LogError::Divergent {
                    file: gfile.path.clone(),
                    offset: 72,
                    reason: format!("it does not continue generation {prev}"),
                });
            }
        }
        let fs = gfile.frame_size();
        let mut asm = RecordAssembler::new(true, Lsn::ZERO, gfile.header.generation_size);
        let mut start = DATA_START;
        if self.from.generation() == generation && self.from.offset() > 0 {
            let off = self.from.offset();
            let index = off / fs;
            if index < DATA_START || off % fs < FRAME_HEADER_LEN as u32 || index >= gfile.frames() {
                return Err(LogError::NotARecordBoundary {
                    lsn: self.from,
                    file: gfile.path.clone(),
                    offset: off as u64,
                });
            }
            start = index;
            asm = RecordAssembler::new(true, self.from, gfile.header.generation_size);
            if (off % fs) as usize > FRAME_HEADER_LEN || index > DATA_START {
                asm.sync_to_first_record();
            }
        }
        let chain = (start == DATA_START).then_some(gfile.salt);
        let mut walk = FrameWalk::new(gfile, start);
        if let Some(end) = self.written_end.filter(|e| e.generation() == generation) {
            walk.read_ahead_end = end.offset().div_ceil(fs) + 1;
        }
        self.cursor = Some(Cursor { walk, asm, chain });
        Ok(true)
    }

    fn fill(&mut self) -> Result<()> {
        while self.out.is_empty() && !self.done {
            if self.cursor.is_none() && !self.open_next()? {
                self.done = true;
                if self.limit != Lsn::MAX && self.limit.generation() >= self.next_generation {
                    let path = self.dir.join(generation_name(self.next_generation));
                    return Err(LogError::corrupt(
                        path,
                        0,
                        format!(
                            "generation {} is not readable, but the log is durable up to {}",
                            self.next_generation, self.limit
                        ),
                    ));
                }
                break;
            }
            let cursor = self.cursor.as_mut().expect("opened above");
            let mut records = Vec::new();
            match cursor.walk.next_frame()? {
                Some(frame) => {
                    let gfile = cursor.walk.gfile();
                    let offset = gfile.frame_offset(frame.slot);
                    if let (Some(c), false) = (cursor.chain.as_mut(), frame.from_shadow) {
                        *c = chain_add(*c, frame.index, frame.header.crc);
                    }
                    cursor.asm.feed(
                        &gfile.path,
                        offset,
                        &frame.header,
                        &frame.bytes[FRAME_HEADER_LEN..],
                        &mut records,
                    )?;
                    self.out.extend(records);
                }
                None => {
                    let gfile = cursor.walk.gfile().clone();
                    match cursor.walk.end {
                        Some(WalkEnd::Sealed) => {
                            self.finished = Some((
                                gfile.header.generation,
                                gfile.header.created_us,
                                gfile.salt,
                                cursor.chain,
                            ));
                            self.next_generation += 1;
                            self.cursor = None;
                        }
                        _ => {
                            self.done = true;
                            let data_start = Lsn(gfile.frame_lsn(DATA_START).0 + FRAME_HEADER_LEN as u64);
                            let reached = cursor.asm.end.unwrap_or(self.from.max(data_start));
                            if self.limit != Lsn::MAX
                                && reached < self.limit
                                && self.limit.generation() == gfile.header.generation
                            {
                                return Err(LogError::corrupt(
                                    &gfile.path,
                                    reached.offset() as u64,
                                    format!("log ends at {reached}, before the durable position {}", self.limit),
                                ));
                            }
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

impl Iterator for LogReader {
    type Item = Result<Record>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Err(e) = self.fill() {
            self.done = true;
            self.out.clear();
            return Some(Err(e));
        }
        let record = self.out.pop_front()?;
        if record.end > self.limit {
            self.done = true;
            self.out.clear();
            return None;
        }
        Some(Ok(record))
    }
}
