//! Generation files: names, headers, and positional frame I/O.

use super::format::{Defect, FLAG_SHADOW, FrameHeader, GenerationHeader, GenerationState, HEADER_LEN, SHADOW_SLOTS};
use super::{LogError, Lsn, Result};
use crate::vfs::{OpenMode, Vfs, VfsFile};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Suffix of generation files.
pub const GENERATION_SUFFIX: &str = ".mvlog";
/// Prefix of recycled generation files waiting for reuse.
pub const RECYCLE_PREFIX: &str = "recycle-";

/// The file name of a generation: ten decimal digits, so `ls` sorts them.
pub fn generation_name(generation: u32) -> String {
    format!("{generation:010}{GENERATION_SUFFIX}")
}

/// The file name of a recycled file that once held `generation`.
pub fn recycle_name(generation: u32) -> String {
    format!("{RECYCLE_PREFIX}{generation:010}{GENERATION_SUFFIX}")
}

/// What a name in the log directory is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFileName {
    Generation(u32),
    Recycled(u32),
    /// A rebuild of the last generation that a crash interrupted; reused at the next open.
    Rebuild(u32),
}

/// Parses a file name of the log directory; `None` for names the log does not own.
pub fn parse_name(name: &str) -> Option<LogFileName> {
    if let Some(stem) = name.strip_suffix(super::rebuild::REBUILD_SUFFIX) {
        return match parse_name(stem)? {
            LogFileName::Generation(g) => Some(LogFileName::Rebuild(g)),
            _ => None,
        };
    }
    let stem = name.strip_suffix(GENERATION_SUFFIX)?;
    let (recycled, digits) = match stem.strip_prefix(RECYCLE_PREFIX) {
        Some(d) => (true, d),
        None => (false, stem),
    };
    if digits.len() != 10 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u32 = digits.parse().ok()?;
    if n == 0 {
        return None;
    }
    Some(if recycled {
        LogFileName::Recycled(n)
    } else {
        LogFileName::Generation(n)
    })
}

/// A shadow copy found in a slot: (slot, header, frame bytes).
pub type ShadowCopy = (u32, FrameHeader, Vec<u8>);

/// An open generation file with its validated, active header.
#[derive(Clone)]
pub struct GenFile {
    pub path: PathBuf,
    pub file: Arc<dyn VfsFile>,
    pub header: GenerationHeader,
    pub salt: u32,
}

/// Reads the header of a generation file. Returns the header (with salt) or the defect.
pub fn read_header(file: &dyn VfsFile, path: &Path) -> Result<std::result::Result<(GenerationHeader, u32), Defect>> {
    let mut buf = [0u8; HEADER_LEN];
    let n = read_up_to(file, path, &mut buf, 0)?;
    if n < HEADER_LEN {
        buf[n..].fill(0);
    }
    Ok(GenerationHeader::decode(&buf))
}

/// Reads as much of `buf` as the file holds at `offset`; the rest is left as is.
pub fn read_up_to(file: &dyn VfsFile, path: &Path, buf: &mut [u8], offset: u64) -> Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        let at = offset + done as u64;
        let n = file
            .read_at(&mut buf[done..], at)
            .map_err(|e| LogError::io(path, at, "read", e))?;
        if n == 0 {
            break;
        }
        done += n;
    }
    Ok(done)
}

impl GenFile {
    /// Opens `dir/<generation name>` and checks that its header is active and
    /// belongs to this generation.
    pub fn open(vfs: &dyn Vfs, dir: &Path, generation: u32) -> Result<GenFile> {
        let path = dir.join(generation_name(generation));
        let file = vfs
            .open(&path, OpenMode::Existing)
            .map_err(|e| LogError::io(&path, 0, "open", e))?;
        match read_header(file.as_ref(), &path)? {
            Ok((header, salt)) if header.state == GenerationState::Active && header.generation == generation => {
                // Generations are sized before activation; a short one lost its end.
                let len = file.len().map_err(|e| LogError::io(&path, 0, "stat", e))?;
                if len < header.generation_size {
                    return Err(LogError::corrupt(
                        &path,
                        len,
                        format!(
                            "file is {len} bytes, shorter than its generation size {}",
                            header.generation_size
                        ),
                    ));
                }
                Ok(GenFile {
                    path,
                    file,
                    header,
                    salt,
                })
            }
            Ok((header, _)) if header.generation != generation => Err(LogError::ForeignFile {
                file: path,
                offset: 20,
                reason: format!(
                    "header says generation {}, the name says {generation}",
                    header.generation
                ),
            }),
            Ok(_) => Err(LogError::corrupt(&path, 14, "generation header is not active")),
            Err(defect) => Err(LogError::corrupt(&path, 0, format!("generation header: {defect}"))),
        }
    }

    pub fn frame_size(&self) -> u32 {
        self.header.frame_size
    }

    pub fn frames(&self) -> u32 {
        self.header.frames()
    }

    pub fn frame_offset(&self, index: u32) -> u64 {
        index as u64 * self.header.frame_size as u64
    }

    pub fn frame_lsn(&self, index: u32) -> Lsn {
        Lsn::new(self.header.generation, index * self.header.frame_size)
    }

    /// Reads frames `[first, first + count)` into `buf`; bytes past the end of
    /// the file read as zeros (and so as invalid frames).
    pub fn read_frames(&self, first: u32, count: u32, buf: &mut Vec<u8>) -> Result<()> {
        let len = count as usize * self.frame_size() as usize;
        // No clear first: zeroing a whole reused buffer before every read
        // cost replay a twentieth of its time. What the read leaves is zeroed.
        buf.resize(len, 0);
        let done = read_up_to(self.file.as_ref(), &self.path, buf, self.frame_offset(first))?;
        buf[done..].fill(0);
        Ok(())
    }

    /// Validates a frame read from its home slot.
    pub fn check_home(&self, index: u32, frame: &[u8]) -> std::result::Result<FrameHeader, Defect> {
        let h = FrameHeader::decode(frame)?;
        if h.salt != self.salt {
            return Err(Defect::WrongSalt);
        }
        if h.lsn != self.frame_lsn(index) || h.flags & FLAG_SHADOW != 0 {
            return Err(Defect::WrongLsn { found: h.lsn });
        }
        Ok(h)
    }

    /// Validates a shadow copy; returns the index of the frame it copies.
    pub fn check_shadow(&self, frame: &[u8]) -> std::result::Result<(u32, FrameHeader), Defect> {
        let h = FrameHeader::decode(frame)?;
        if h.salt != self.salt {
            return Err(Defect::WrongSalt);
        }
        let fs = self.frame_size();
        let off = h.lsn.offset();
        if !h.is_shadow() || h.lsn.generation() != self.header.generation || off % fs != 0 {
            return Err(Defect::WrongLsn { found: h.lsn });
        }
        let index = off / fs;
        if index < super::format::DATA_START || index >= self.frames() {
            return Err(Defect::WrongLsn { found: h.lsn });
        }
        Ok((index, h))
    }

    /// Reads both shadow slots; returns the newest valid copy of frame `index`
    /// as (slot, header, frame bytes), and the highest shadow sequence seen.
    pub fn read_shadow(&self, index: u32) -> Result<(Option<ShadowCopy>, u32)> {
        let mut best: Option<ShadowCopy> = None;
        let mut max_seq = 0;
        let mut buf = Vec::new();
        for slot in SHADOW_SLOTS {
            self.read_frames(slot, 1, &mut buf)?;
            if let Ok((i, h)) = self.check_shadow(&buf) {
                max_seq = max_seq.max(h.shadow_seq);
                if i == index && best.as_ref().is_none_or(|(_, b, _)| b.shadow_seq < h.shadow_seq) {
                    best = Some((slot, h, buf.clone()));
                }
            }
        }
        Ok((best, max_seq))
    }
}

/// The generation a file name holds, if it is a live generation file.
pub fn parse_generation_name(name: &str) -> Option<u32> {
    match parse_name(name)? {
        LogFileName::Generation(g) => Some(g),
        _ => None,
    }
}
