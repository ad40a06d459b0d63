//! Lenient decoding of a generation image for `dump` and fuzzing: reports
//! every frame and record with its status instead of stopping at the first
//! defect. Never trusts a length it has not bounded.

use super::Lsn;
use super::format::{
    DATA_START, FRAME_HEADER_LEN, FrameHeader, GenerationHeader, MIN_FRAME_SIZE, NO_RECORD, RECORD_HEADER_LEN,
    decode_record_header,
};

/// One frame of an image and what was found in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameReport {
    /// Slot index in the file.
    pub slot: u32,
    /// The decoded header, or why it is invalid.
    pub header: Result<FrameHeader, String>,
}

/// One record found in the valid home frames.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordReport {
    pub lsn: Lsn,
    pub len: u32,
    /// Whether the body matched its checksum (false if it was cut short).
    pub checksum_ok: bool,
}

/// Everything found in one generation image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageReport {
    pub header: Result<(GenerationHeader, u32), String>,
    pub frames: Vec<FrameReport>,
    pub records: Vec<RecordReport>,
}

/// Decodes a whole generation image. `frame_size` is used when the header is
/// unreadable. Frames past `max_frames` are not examined.
pub fn decode_frame_stream(image: &[u8], frame_size: u32, max_frames: usize) -> ImageReport {
    let header = GenerationHeader::decode(image).map_err(|d| d.to_string());
    let fs = match &header {
        Ok((h, _)) => h.frame_size as usize,
        Err(_) => frame_size.max(MIN_FRAME_SIZE) as usize,
    };
    let mut frames = Vec::new();
    let mut records = Vec::new();
    let mut partial: Option<(Lsn, u32, u32, u32, u32)> = None; // lsn, len, crc, acc, got
    let count = (image.len() / fs).min(max_frames);
    for slot in 0..count as u32 {
        if slot == 0 {
            continue;
        }
        let frame = &image[slot as usize * fs..(slot as usize + 1) * fs];
        let decoded = FrameHeader::decode(frame).map_err(|d| d.to_string());
        let home_ok = slot >= DATA_START && decoded.as_ref().is_ok_and(|h| !h.is_shadow());
        if let (true, Ok(h)) = (home_ok, &decoded) {
            let payload = &frame[FRAME_HEADER_LEN..FRAME_HEADER_LEN + h.used as usize];
            let mut pos;
            if let Some((lsn, len, crc, acc, got)) = partial.take() {
                let take = ((len - got) as usize).min(payload.len());
                let acc = crc32c::crc32c_append(acc, &payload[..take]);
                pos = take;
                if got + take as u32 == len {
                    records.push(RecordReport {
                        lsn,
                        len,
                        checksum_ok: acc == crc,
                    });
                } else {
                    partial = Some((lsn, len, crc, acc, got + take as u32));
                }
            } else if h.first_record != NO_RECORD {
                pos = h.first_record as usize;
            } else {
                pos = payload.len();
            }
            while partial.is_none() && payload.len() - pos >= RECORD_HEADER_LEN {
                let (len, crc) = decode_record_header(&payload[pos..pos + RECORD_HEADER_LEN]);
                let lsn = Lsn(h.lsn.0 + (FRAME_HEADER_LEN + pos) as u64);
                pos += RECORD_HEADER_LEN;
                let take = (len as usize).min(payload.len() - pos);
                let acc = crc32c::crc32c(&payload[pos..pos + take]);
                pos += take;
                if take as u32 == len {
                    records.push(RecordReport {
                        lsn,
                        len,
                        checksum_ok: acc == crc,
                    });
                } else {
                    partial = Some((lsn, len, crc, acc, take as u32));
                }
            }
        } else if let Some((lsn, len, ..)) = partial.take() {
            records.push(RecordReport {
                lsn,
                len,
                checksum_ok: false,
            });
        }
        frames.push(FrameReport { slot, header: decoded });
    }
    if let Some((lsn, len, ..)) = partial {
        records.push(RecordReport {
            lsn,
            len,
            checksum_ok: false,
        });
    }
    ImageReport {
        header,
        frames,
        records,
    }
}
