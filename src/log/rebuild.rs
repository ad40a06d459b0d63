//! At open, the last generation is rewritten into a fresh file that is
//! synced and then renamed over the old one.
//!
//! Why: after a failed fsync, Linux may keep serving the written pages while
//! never writing them to disk (fsyncgate), so the log that recovery read may
//! not be the log on disk. Writing it again in place is no cure: a power cut
//! during that rewrite could tear frames that were durable. A fresh file plus
//! an atomic rename leaves either the old durable file (whose tail held
//! nothing acknowledged) or the complete new one. The copy also drops every
//! leftover of the unfinished batch after the end, and puts the partly filled
//! end frame into shadow slot 1.

use super::buffer::FrameMeta;
use super::files::{GenFile, generation_name};
use super::format::{DATA_START, FLAG_SHADOW, FRAME_HEADER_LEN, FrameHeader, SHADOW_SLOTS};
use super::scan::GenerationScan;
use super::{LogError, Result};
use crate::vfs::{OpenMode, Vfs};
use std::path::{Path, PathBuf};

/// Suffix of a rebuild in progress; a leftover one is removed at open.
pub const REBUILD_SUFFIX: &str = ".rebuild";

/// The rebuilt generation and where its shadow copy of the end frame went.
pub(crate) struct Rebuilt {
    pub file: GenFile,
    pub shadow_slot: Option<u32>,
    pub shadow_seq: u32,
}

pub(crate) fn rebuild_path(dir: &Path, generation: u32) -> PathBuf {
    dir.join(format!("{}{REBUILD_SUFFIX}", generation_name(generation)))
}

/// Rewrites `last` into a fresh file holding exactly the recovered log.
pub(crate) fn rebuild_last_generation(
    vfs: &dyn Vfs,
    dir: &Path,
    last: &GenFile,
    scan: &GenerationScan,
) -> Result<Rebuilt> {
    let fs = last.frame_size() as usize;
    let frames = last.frames();
    // Home frames to keep: up to the frame that holds the end (which moves to a shadow).
    let keep_end = scan.resume.as_ref().map_or(scan.home_end, |r| r.index);
    let tmp = rebuild_path(dir, last.header.generation);
    let io = |op, offset, e| LogError::io(&tmp, offset, op, e);
    let file = vfs.open(&tmp, OpenMode::CreateOrOpen).map_err(|e| io("create", 0, e))?;
    file.set_len(0).map_err(|e| io("truncate", 0, e))?;
    let chunk_frames = ((1usize << 20) / fs).max(1) as u32;
    let mut buf = Vec::new();
    let mut index = 0;
    while index < frames {
        let count = chunk_frames.min(frames - index);
        let copy = keep_end.saturating_sub(index).min(count);
        if copy > 0 {
            last.read_frames(index, copy, &mut buf)?;
        } else {
            buf.clear();
        }
        buf.resize(count as usize * fs, 0);
        for slot in SHADOW_SLOTS {
            if (index..index + count).contains(&slot) {
                let at = (slot - index) as usize * fs;
                buf[at..at + fs].fill(0);
            }
        }
        let offset = last.frame_offset(index);
        file.write_at(&buf, offset).map_err(|e| io("write", offset, e))?;
        index += count;
    }
    let mut shadow_slot = None;
    let mut shadow_seq = scan.max_shadow_seq;
    if let Some(resume) = scan.resume.as_ref().filter(|r| !r.content.is_empty()) {
        let slot = SHADOW_SLOTS[0];
        shadow_seq += 1;
        let mut frame = vec![0u8; fs];
        frame[FRAME_HEADER_LEN..FRAME_HEADER_LEN + resume.content.len()].copy_from_slice(&resume.content);
        let meta = FrameMeta {
            used: resume.content.len() as u16,
            first_record: resume.first_record,
            flags: FLAG_SHADOW,
            payload_crc: 0,
        };
        let mut header = FrameHeader {
            crc: 0,
            salt: last.salt,
            lsn: last.frame_lsn(resume.index),
            shadow_seq,
            used: meta.used,
            first_record: meta.first_record,
            flags: meta.flags,
            batch_start: resume.index.max(DATA_START),
        };
        header.seal_into(&mut frame);
        let offset = last.frame_offset(slot);
        file.write_at(&frame, offset).map_err(|e| io("write", offset, e))?;
        shadow_slot = Some(slot);
    }
    file.sync_data().map_err(|e| io("sync", 0, e))?;
    vfs.rename(&tmp, &last.path)
        .map_err(|e| LogError::io(&tmp, 0, "rename", e))?;
    vfs.sync_dir(dir)
        .map_err(|e| LogError::io(dir, 0, "sync directory", e))?;
    Ok(Rebuilt {
        file: GenFile {
            path: last.path.clone(),
            file,
            header: last.header,
            salt: last.salt,
        },
        shadow_slot,
        shadow_seq,
    })
}
