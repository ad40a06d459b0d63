//! Reassembles records from the payloads of consecutive valid frames.
//!
//! Records are a byte stream laid over frame payloads: an 8-byte header
//! (length, crc32c of the body) never straddles a frame; a body may span any
//! number of frames of one generation, but never a seal.

use super::format::{FRAME_HEADER_LEN, FrameHeader, NO_RECORD, RECORD_HEADER_LEN, decode_record_header};
use super::{LogError, Lsn, Result};
use std::path::Path;

/// A record read back from the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Where the record starts (its header).
    pub lsn: Lsn,
    /// The position just after its last byte.
    pub end: Lsn,
    /// The body as appended (empty when bodies are not kept).
    pub data: Vec<u8>,
}

struct Partial {
    lsn: Lsn,
    len: u32,
    crc: u32,
    acc: u32,
    got: u32,
    body: Vec<u8>,
    /// File offset of the record header, for error messages.
    offset: u64,
}

/// Turns frame payloads into records, verifying each record checksum.
pub(crate) struct RecordAssembler {
    keep_bodies: bool,
    /// Records starting before this LSN are checked but not emitted.
    emit_from: Lsn,
    /// Most bytes a record body may claim (what is left of the generation).
    max_len: u64,
    partial: Option<Partial>,
    /// Payload offset where parsing starts in the next frame (start mid-generation).
    sync_at: Option<u16>,
    /// End of the last complete record seen.
    pub end: Option<Lsn>,
}

impl RecordAssembler {
    pub fn new(keep_bodies: bool, emit_from: Lsn, max_len: u64) -> Self {
        RecordAssembler {
            keep_bodies,
            emit_from,
            max_len,
            partial: None,
            sync_at: None,
            end: None,
        }
    }

    /// Starts parsing at the first record header of the next frame, skipping a
    /// body continued from an earlier frame (a reader starting mid-generation).
    pub fn sync_to_first_record(&mut self) {
        self.sync_at = Some(NO_RECORD);
    }

    /// Start of a record whose body is not complete yet.
    pub fn pending_start(&self) -> Option<Lsn> {
        self.partial.as_ref().map(|p| p.lsn)
    }

    /// Feeds the used payload of one valid frame; completed records go to `out`.
    pub fn feed(
        &mut self,
        file: &Path,
        frame_offset: u64,
        header: &FrameHeader,
        payload: &[u8],
        out: &mut Vec<Record>,
    ) -> Result<()> {
        let payload = &payload[..header.used as usize];
        let frame_lsn = header.lsn;
        let lsn_at = |pos: usize| Lsn(frame_lsn.0 + (FRAME_HEADER_LEN + pos) as u64);
        let corrupt =
            |pos: usize, why: String| LogError::corrupt(file, frame_offset + (FRAME_HEADER_LEN + pos) as u64, why);
        let mut pos = 0usize;
        if self.sync_at.take().is_some() {
            if header.first_record == NO_RECORD {
                self.sync_at = Some(NO_RECORD);
                return Ok(());
            }
            pos = header.first_record as usize;
        } else if let Some(p) = self.partial.as_mut() {
            let take = ((p.len - p.got) as usize).min(payload.len());
            let piece = &payload[..take];
            p.acc = crc32c::crc32c_append(p.acc, piece);
            if self.keep_bodies {
                p.body.extend_from_slice(piece);
            }
            p.got += take as u32;
            pos = take;
            if p.got == p.len {
                let p = self.partial.take().expect("partial checked above");
                self.finish(file, p, lsn_at(pos), out)?;
            }
            let expect_first = if pos < payload.len() { pos as u16 } else { NO_RECORD };
            if self.partial.is_none() && header.first_record != expect_first {
                return Err(corrupt(
                    pos,
                    format!("first-record field {} should be {expect_first}", header.first_record),
                ));
            }
            if self.partial.is_some() && header.first_record != NO_RECORD {
                return Err(corrupt(pos, "a record starts inside the body of another".into()));
            }
        } else if !payload.is_empty() && header.first_record != 0 {
            return Err(corrupt(
                0,
                format!("first-record field {} should be 0", header.first_record),
            ));
        }
        while pos < payload.len() {
            if payload.len() - pos < RECORD_HEADER_LEN {
                return Err(corrupt(pos, "record header straddles a frame".into()));
            }
            let (len, crc) = decode_record_header(&payload[pos..pos + RECORD_HEADER_LEN]);
            let lsn = lsn_at(pos);
            if u64::from(len) > self.max_len {
                return Err(corrupt(
                    pos,
                    format!("record length {len} exceeds what the generation can hold"),
                ));
            }
            pos += RECORD_HEADER_LEN;
            let take = (len as usize).min(payload.len() - pos);
            let piece = &payload[pos..pos + take];
            let mut p = Partial {
                lsn,
                len,
                crc,
                acc: crc32c::crc32c(piece),
                got: take as u32,
                body: Vec::new(),
                offset: frame_offset + (FRAME_HEADER_LEN + pos - RECORD_HEADER_LEN) as u64,
            };
            if self.keep_bodies && lsn >= self.emit_from {
                p.body.extend_from_slice(piece);
            }
            pos += take;
            if p.got == p.len {
                self.finish(file, p, lsn_at(pos), out)?;
            } else {
                self.partial = Some(p);
            }
        }
        if header.is_sealed() && self.partial.is_some() {
            return Err(corrupt(pos, "a record crosses the end of its generation".into()));
        }
        Ok(())
    }

    fn finish(&mut self, file: &Path, p: Partial, end: Lsn, out: &mut Vec<Record>) -> Result<()> {
        if p.acc != p.crc {
            return Err(LogError::corrupt(
                file,
                p.offset,
                format!("record at {} fails its checksum", p.lsn),
            ));
        }
        self.end = Some(end);
        if p.lsn >= self.emit_from {
            if self.emit_from > Lsn::ZERO && p.lsn > self.emit_from {
                // The first record at or after the start must be the start itself.
                return Err(LogError::NotARecordBoundary {
                    lsn: self.emit_from,
                    file: file.to_path_buf(),
                    offset: self.emit_from.offset() as u64,
                });
            }
            self.emit_from = Lsn::ZERO;
            out.push(Record {
                lsn: p.lsn,
                end,
                data: p.body,
            });
        }
        Ok(())
    }
}
