//! Lenient decoding of a generation image for `dump` and fuzzing: reports
//! every frame and record with its status instead of stopping at the first
//! defect. Never trusts a length it has not bounded.

use super::Lsn;
use super::format::{
    DATA_START, FRAME_HEADER_LEN, FrameHeader, GenerationHeader, MIN_FRAME_SIZE, NO_RECORD, RECORD_HEADER_LEN,
    SHADOW_SLOTS, decode_record_header,
};

/// One frame of an image and what was found in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameReport {
    /// Slot index in the file.
    pub slot: u32,
    /// The decoded header, or why it is invalid.
    pub header: Result<FrameHeader, String>,
}

/// One record found in the log's frames.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordReport {
    pub lsn: Lsn,
    pub len: u32,
    /// Whether the whole body was found (false: the log ends inside it).
    pub complete: bool,
    /// Whether the body matched its checksum (false if incomplete).
    pub checksum_ok: bool,
}

/// Everything found in one generation image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageReport {
    pub header: Result<(GenerationHeader, u32), String>,
    pub frames: Vec<FrameReport>,
    pub records: Vec<RecordReport>,
    /// The shadow slot whose copy of the partly filled end frame was used.
    pub tail_slot: Option<u32>,
}

struct Partial {
    lsn: Lsn,
    len: u32,
    crc: u32,
    acc: u32,
    got: u32,
}

/// Decodes a whole generation image. Home frames count as log when their salt
/// and LSN belong to the header; the log ends at the first one that does not,
/// continued by the newest shadow copy of that frame. `frame_size` is used
/// when the header is unreadable (then frames are taken as they come).
/// Frames past `max_frames` are not examined.
pub fn decode_frame_stream(image: &[u8], frame_size: u32, max_frames: usize) -> ImageReport {
    let header = GenerationHeader::decode(image).map_err(|d| d.to_string());
    let owner = header
        .as_ref()
        .ok()
        .map(|(h, salt)| (h.generation, h.frame_size, *salt));
    let fs = match owner {
        Some((_, fs, _)) => fs as usize,
        None => frame_size.clamp(MIN_FRAME_SIZE, super::format::MAX_FRAME_SIZE) as usize,
    };
    let count = (image.len() / fs).min(max_frames);
    let frame_at = |slot: usize| &image[slot * fs..(slot + 1) * fs];
    let frames: Vec<FrameReport> = (1..count)
        .map(|slot| FrameReport {
            slot: slot as u32,
            header: FrameHeader::decode(frame_at(slot)).map_err(|d| d.to_string()),
        })
        .collect();
    let belongs = |h: &FrameHeader, index: usize| match owner {
        Some((g, fs, salt)) => h.salt == salt && h.lsn == Lsn::new(g, (index as u32).wrapping_mul(fs)),
        None => true,
    };
    let mut records = Vec::new();
    let mut partial: Option<Partial> = None;
    let mut tail_slot = None;
    let mut index = DATA_START as usize;
    while index < count {
        let home = frames[index - 1]
            .header
            .as_ref()
            .ok()
            .filter(|h| !h.is_shadow() && belongs(h, index));
        let (h, bytes) = match home {
            Some(h) => (*h, frame_at(index)),
            None => {
                // The newest shadow copy of this frame, if any, ends the log.
                let copy = SHADOW_SLOTS
                    .iter()
                    .filter(|&&s| (s as usize) < count)
                    .filter_map(|&s| frames[s as usize - 1].header.as_ref().ok().map(|h| (s, *h)))
                    .filter(|(_, h)| h.is_shadow() && belongs(h, index))
                    .max_by_key(|(_, h)| h.shadow_seq);
                if let Some((slot, h)) = copy {
                    tail_slot = Some(slot);
                    feed(&h, frame_at(slot as usize), &mut partial, &mut records);
                }
                break;
            }
        };
        feed(&h, bytes, &mut partial, &mut records);
        index += 1;
        if h.is_sealed() {
            break;
        }
    }
    if let Some(p) = partial {
        records.push(RecordReport {
            lsn: p.lsn,
            len: p.len,
            complete: false,
            checksum_ok: false,
        });
    }
    ImageReport {
        header,
        frames,
        records,
        tail_slot,
    }
}

/// Feeds one frame's used payload into the record stream.
fn feed(h: &FrameHeader, frame: &[u8], partial: &mut Option<Partial>, records: &mut Vec<RecordReport>) {
    let payload = &frame[FRAME_HEADER_LEN..FRAME_HEADER_LEN + h.used as usize];
    let mut pos = 0;
    if let Some(mut p) = partial.take() {
        let take = ((p.len - p.got) as usize).min(payload.len());
        p.acc = crc32c::crc32c_append(p.acc, &payload[..take]);
        p.got += take as u32;
        pos = take;
        if p.got == p.len {
            records.push(RecordReport {
                lsn: p.lsn,
                len: p.len,
                complete: true,
                checksum_ok: p.acc == p.crc,
            });
        } else {
            *partial = Some(p);
            return;
        }
    } else if h.first_record == NO_RECORD {
        return;
    } else {
        pos = pos.max(h.first_record as usize);
    }
    while payload.len() - pos >= RECORD_HEADER_LEN {
        let (len, crc) = decode_record_header(&payload[pos..pos + RECORD_HEADER_LEN]);
        // Offsets stay within the frame's generation even for a hostile LSN.
        let lsn = Lsn::new(
            h.lsn.generation(),
            h.lsn.offset().wrapping_add((FRAME_HEADER_LEN + pos) as u32),
        );
        pos += RECORD_HEADER_LEN;
        let take = (len as usize).min(payload.len() - pos);
        let acc = crc32c::crc32c(&payload[pos..pos + take]);
        pos += take;
        if take as u32 == len {
            records.push(RecordReport {
                lsn,
                len,
                complete: true,
                checksum_ok: acc == crc,
            });
        } else {
            *partial = Some(Partial {
                lsn,
                len,
                crc,
                acc,
                got: take as u32,
            });
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::{Log, LogOptions, generation_name};
    use crate::vfs::SimVfs;
    use std::path::Path;

    #[test]
    fn lists_every_record_including_the_shadow_tail() {
        let sim = SimVfs::new(1);
        let opts = LogOptions {
            frame_size: 512,
            generation_size: 256 * 512,
            ..LogOptions::default()
        };
        let log = Log::create(sim.clone(), "/l", opts).expect("create");
        let mut lsns = Vec::new();
        // 138-byte records in 480-byte payloads: every fourth crosses a frame
        // and closes the next one early; the 39th sits in a shadow slot.
        for i in 0..39u32 {
            lsns.push(log.commit(&[i as u8; 130]).expect("commit").lsn);
        }
        drop(log);
        let image = sim
            .written_image(&Path::new("/l").join(generation_name(1)))
            .expect("image");
        let report = decode_frame_stream(&image, 512, usize::MAX);
        assert!(report.tail_slot.is_some(), "the last records sit in a shadow slot");
        let got: Vec<Lsn> = report.records.iter().map(|r| r.lsn).collect();
        assert_eq!(got, lsns);
        assert!(
            report
                .records
                .iter()
                .all(|r| r.complete && r.checksum_ok && r.len == 130)
        );
        assert!(
            lsns.windows(2)
                .any(|w| w[1].offset() % 512 == 32 && w[1].offset() - w[0].offset() > 512),
            "some frames were closed early, leaving their payload partly unused"
        );
        // A flipped body byte shows as a bad checksum, not as a missing record.
        let mut bad = image.clone();
        bad[3 * 512 + 32 + 8 + 5] ^= 1;
        let report = decode_frame_stream(&bad, 512, usize::MAX);
        assert!(report.records.len() < 39, "the damaged frame ends the log");
    }
}
