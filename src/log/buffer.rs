//! The append buffer: records laid out into frames in memory, waiting for the
//! group-commit leader to write them.
//!
//! The buffer is a list of runs of consecutive frames. The last frame of the
//! last run is the open frame that appends fill; every other frame is closed
//! and will be written to its home slot exactly once. The open frame, if it
//! holds data, goes to a shadow slot instead.

use super::Lsn;
use super::format::{DATA_START, FLAG_SEALED, FRAME_HEADER_LEN, NO_RECORD, RECORD_HEADER_LEN, record_header};

/// The header fields of a frame that appends decide.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FrameMeta {
    pub used: u16,
    pub first_record: u16,
    pub flags: u8,
    /// crc32c of the whole payload area, computed when the frame closed.
    pub payload_crc: u32,
}

/// Consecutive frames of one generation.
pub(crate) struct Run {
    pub generation: u32,
    pub first_index: u32,
    /// Whole frames; header bytes are filled in by the leader.
    pub bytes: Vec<u8>,
    /// One entry per closed frame.
    pub meta: Vec<FrameMeta>,
}

/// A partial copy of the open frame, bound for a shadow slot.
pub(crate) struct TailFrame {
    pub generation: u32,
    pub index: u32,
    pub bytes: Vec<u8>,
    pub meta: FrameMeta,
}

/// Whole frames of one record that its committer writes itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Interior {
    pub generation: u32,
    pub first_index: u32,
    pub frames: u32,
    /// Offset in the record body of the first interior byte.
    pub data_from: usize,
}

/// Where a record went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Placed {
    pub lsn: Lsn,
    pub end: Lsn,
    pub interior: Option<Interior>,
}

/// What one leader writes and syncs.
pub(crate) struct Batch {
    pub runs: Vec<Run>,
    pub tail: Option<TailFrame>,
    /// Every record ending at or before this is in the batch or already durable.
    pub end: Lsn,
    /// Records in the batch.
    pub records: usize,
    /// Chain contributions of interior frames written by committers.
    pub eager_chain: u32,
}

/// Frames laid out but not yet taken by a leader.
pub(crate) struct AppendBuffer {
    frame_size: usize,
    frames_per_generation: u32,
    runs: Vec<Run>,
    open_pos: usize,
    open_first_record: u16,
    /// Where the open frame's payload was already handed to a leader.
    open_taken: usize,
    /// End of the last record appended.
    pub end: Lsn,
    /// Bytes held in closed frames.
    pub pending_bytes: usize,
    /// Records appended since the last batch was taken.
    pub pending_records: usize,
    /// Frame buffers of written batches, reused so that appends do not fault
    /// in fresh memory for every batch.
    spare: Vec<Vec<u8>>,
}

/// Spare buffers kept for reuse.
const SPARE_BUFFERS: usize = 3;

impl AppendBuffer {
    /// A buffer whose open frame is `index` of `generation`, already holding
    /// `content`; `end` is the end of the last record already in the log.
    pub fn new(
        frame_size: u32,
        frames_per_generation: u32,
        generation: u32,
        index: u32,
        content: &[u8],
        first_record: u16,
        end: Lsn,
    ) -> Self {
        let fs = frame_size as usize;
        let mut bytes = vec![0u8; fs];
        bytes[FRAME_HEADER_LEN..FRAME_HEADER_LEN + content.len()].copy_from_slice(content);
        AppendBuffer {
            frame_size: fs,
            frames_per_generation,
            runs: vec![Run {
                generation,
                first_index: index,
                bytes,
                meta: Vec::new(),
            }],
            open_pos: content.len(),
            open_first_record: first_record,
            open_taken: content.len(),
            end,
            pending_bytes: 0,
            pending_records: 0,
            spare: Vec::new(),
        }
    }

    fn payload_capacity(&self) -> usize {
        self.frame_size - FRAME_HEADER_LEN
    }

    fn open_run(&mut self) -> &mut Run {
        self.runs.last_mut().expect("the buffer always has an open frame")
    }

    fn open_index(&self) -> u32 {
        let run = self.runs.last().expect("the buffer always has an open frame");
        run.first_index + (run.bytes.len() / self.frame_size) as u32 - 1
    }

    pub fn open_generation(&self) -> u32 {
        self.runs
            .last()
            .expect("the buffer always has an open frame")
            .generation
    }

    /// Payload bytes a record can still use in this generation from the open position.
    fn room_in_generation(&self) -> usize {
        let later_frames = (self.frames_per_generation - 1 - self.open_index()) as usize;
        self.payload_capacity() - self.open_pos + later_frames * self.payload_capacity()
    }

    /// Payload bytes of an empty generation.
    pub fn generation_capacity(frame_size: u32, frames_per_generation: u32) -> usize {
        (frames_per_generation - DATA_START) as usize * (frame_size as usize - FRAME_HEADER_LEN)
    }

    fn close_open_frame(&mut self, flags: u8) {
        let fs = self.frame_size;
        let run = self.runs.last().expect("the buffer always has an open frame");
        let payload = &run.bytes[run.bytes.len() - fs + FRAME_HEADER_LEN..];
        let meta = FrameMeta {
            used: self.open_pos as u16,
            first_record: self.open_first_record,
            flags,
            payload_crc: crc32c::crc32c(payload),
        };
        self.open_run().meta.push(meta);
        self.pending_bytes += fs;
        self.open_pos = 0;
        self.open_taken = 0;
        self.open_first_record = NO_RECORD;
        if flags & FLAG_SEALED != 0 {
            let generation = self.open_generation() + 1;
            let bytes = self.fresh_frame();
            self.runs.push(Run {
                generation,
                first_index: DATA_START,
                bytes,
                meta: Vec::new(),
            });
        } else {
            let run = self.open_run();
            run.bytes.resize(run.bytes.len() + fs, 0);
        }
    }

    /// Closes the full open frame and leaves out the next `frames` frames,
    /// which the committer writes itself; the frame after them opens.
    fn skip_frames(&mut self, frames: u32) {
        let generation = self.open_generation();
        let next = self.open_index() + 1 + frames;
        self.close_open_frame(0);
        let fs = self.frame_size;
        let run = self.open_run();
        let len = run.bytes.len() - fs;
        run.bytes.truncate(len);
        let bytes = self.fresh_frame();
        self.runs.push(Run {
            generation,
            first_index: next,
            bytes,
            meta: Vec::new(),
        });
        // They count against the buffer until a batch covers them.
        self.pending_bytes += frames as usize * self.frame_size;
    }

    /// Lays out one record. With `eager`, whole frames in the middle of a
    /// large record are left out of the buffer and described in the result,
    /// for the committer to write itself. The caller has checked that
    /// `8 + data.len()` fits an empty generation.
    pub fn append(&mut self, data: &[u8], data_crc: u32, eager_generation: Option<u32>) -> Placed {
        let cap = self.payload_capacity();
        if cap - self.open_pos < RECORD_HEADER_LEN {
            if self.open_index() + 1 < self.frames_per_generation {
                self.close_open_frame(0);
            } else {
                self.close_open_frame(FLAG_SEALED);
            }
        }
        if RECORD_HEADER_LEN + data.len() > self.room_in_generation() {
            self.close_open_frame(FLAG_SEALED);
        }
        let header = record_header(data.len(), data_crc);
        let start = self.position();
        if self.open_first_record == NO_RECORD {
            self.open_first_record = self.open_pos as u16;
        }
        self.put(&header);
        let mut interior = None;
        let mut rest = data;
        // Interior frames: whole frames of this record between the frame it
        // starts in and the frame it ends in (at least one byte is left for that).
        let head = (cap - self.open_pos).min(rest.len());
        if eager_generation == Some(self.open_generation()) && rest.len() > head + cap {
            self.put(&rest[..head]);
            rest = &rest[head..];
            let frames = ((rest.len() - 1) / cap) as u32;
            interior = Some(Interior {
                generation: self.open_generation(),
                first_index: self.open_index() + 1,
                frames,
                data_from: head,
            });
            self.skip_frames(frames);
            rest = &rest[frames as usize * cap..];
        }
        self.put(rest);
        self.pending_records += 1;
        self.end = self.position();
        Placed {
            lsn: start,
            end: self.end,
            interior,
        }
    }

    fn position(&self) -> Lsn {
        let fs = self.frame_size as u32;
        Lsn::new(
            self.open_generation(),
            self.open_index() * fs + (FRAME_HEADER_LEN + self.open_pos) as u32,
        )
    }

    fn put(&mut self, mut bytes: &[u8]) {
        let cap = self.payload_capacity();
        let fs = self.frame_size;
        while !bytes.is_empty() {
            if self.open_pos == cap {
                self.close_open_frame(0);
            }
            let n = bytes.len().min(cap - self.open_pos);
            let pos = self.open_pos;
            let run = self.open_run();
            let frame_start = run.bytes.len() - fs;
            let at = frame_start + FRAME_HEADER_LEN + pos;
            run.bytes[at..at + n].copy_from_slice(&bytes[..n]);
            self.open_pos += n;
            bytes = &bytes[n..];
        }
    }

    /// Whether anything appended has not been handed to a leader.
    #[cfg(test)]
    pub fn has_new_data(&self) -> bool {
        self.pending_bytes > 0 || self.open_pos > self.open_taken
    }

    /// One zeroed frame, in a reused buffer when there is one.
    fn fresh_frame(&mut self) -> Vec<u8> {
        let mut bytes = self.spare.pop().unwrap_or_default();
        bytes.clear();
        bytes.resize(self.frame_size, 0);
        bytes
    }

    /// Takes back the buffers of a written batch for reuse.
    pub fn recycle(&mut self, batch: Batch) {
        let buffers = batch
            .runs
            .into_iter()
            .map(|r| r.bytes)
            .chain(batch.tail.map(|t| t.bytes));
        for bytes in buffers {
            if self.spare.len() < SPARE_BUFFERS {
                self.spare.push(bytes);
            }
        }
    }

    /// Hands everything appended so far to a leader; the open frame stays.
    ///
    /// When the batch closes frames and the open frame directly follows them,
    /// the open frame is closed early, partly filled, and goes home with them:
    /// one contiguous write instead of a home write plus a distant shadow
    /// write. It held nothing acknowledged (a frame closed in this batch came
    /// before it), so writing it home risks nothing. Its unused payload is
    /// left empty; the next record starts in the next frame.
    pub fn take_batch(&mut self) -> Batch {
        let fs = self.frame_size;
        let open_follows_closed = self.runs.last().is_some_and(|r| r.bytes.len() > fs);
        if open_follows_closed && self.open_pos > 0 {
            debug_assert_eq!(
                self.open_taken, 0,
                "a frame opened after the last batch holds nothing taken"
            );
            let last_frame = self.open_index() + 1 == self.frames_per_generation;
            self.close_open_frame(if last_frame { FLAG_SEALED } else { 0 });
        }
        let generation = self.open_generation();
        let index = self.open_index();
        let mut open_bytes = self.fresh_frame();
        let mut runs = std::mem::take(&mut self.runs);
        let last = runs.last_mut().expect("the buffer always has an open frame");
        let open_at = last.bytes.len() - fs;
        open_bytes.copy_from_slice(&last.bytes[open_at..]);
        last.bytes.truncate(open_at);
        if last.bytes.is_empty() {
            runs.pop();
        }
        let tail_bytes = (self.open_pos > self.open_taken).then(|| {
            let mut bytes = self.fresh_frame();
            bytes.copy_from_slice(&open_bytes);
            bytes
        });
        let tail = tail_bytes.map(|bytes| TailFrame {
            generation,
            index,
            bytes,
            meta: FrameMeta {
                used: self.open_pos as u16,
                first_record: self.open_first_record,
                flags: 0,
                payload_crc: 0,
            },
        });
        self.runs.push(Run {
            generation,
            first_index: index,
            bytes: open_bytes,
            meta: Vec::new(),
        });
        self.open_taken = self.open_pos;
        self.pending_bytes = 0;
        let records = std::mem::take(&mut self.pending_records);
        Batch {
            runs,
            tail,
            end: self.end,
            records,
            eager_chain: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames_of(batch: &Batch) -> usize {
        batch.runs.iter().map(|r| r.meta.len()).sum()
    }

    #[test]
    fn records_fill_frames_and_the_open_frame_stays() {
        let mut buf = AppendBuffer::new(512, 16, 1, DATA_START, &[], NO_RECORD, Lsn::ZERO);
        let Placed { lsn: a, end: a_end, .. } = buf.append(&[1u8; 100], 0, None);
        assert_eq!(a, Lsn::new(1, 3 * 512 + 32));
        assert_eq!(a_end, Lsn::new(1, 3 * 512 + 32 + 108));
        let batch = buf.take_batch();
        assert_eq!(frames_of(&batch), 0);
        let tail = batch.tail.expect("partial frame goes to a shadow");
        assert_eq!(tail.meta.used, 108);
        assert_eq!(tail.meta.first_record, 0);
        // 1000 more bytes spill over two more frames; the partly filled last
        // one follows closed frames, so it closes early and goes home with them.
        let b = buf.append(&[2u8; 1000], 0, None).lsn;
        assert_eq!(b, a_end);
        let batch = buf.take_batch();
        assert_eq!(frames_of(&batch), 3);
        assert_eq!(batch.runs.len(), 1, "one contiguous run, one write");
        assert_eq!(batch.runs[0].first_index, DATA_START);
        assert_eq!(batch.runs[0].meta[1].first_record, NO_RECORD);
        let short = batch.runs[0].meta[2];
        assert_eq!(short.used as usize, 108 + 1008 - 2 * 480);
        assert_eq!(short.payload_crc, crc32c::crc32c(&batch.runs[0].bytes[2 * 512 + 32..]));
        assert!(batch.tail.is_none());
        assert!(!buf.has_new_data());
        // The next record starts in the next frame.
        assert_eq!(buf.append(b"next", 0, None).lsn, Lsn::new(1, 6 * 512 + 32));
        assert!(
            buf.take_batch().tail.is_some(),
            "a batch inside one frame still uses the shadow"
        );
    }

    #[test]
    fn a_record_that_does_not_fit_seals_the_generation() {
        let frames = 8;
        let mut buf = AppendBuffer::new(512, frames, 4, DATA_START, &[], NO_RECORD, Lsn::ZERO);
        let cap = AppendBuffer::generation_capacity(512, frames);
        let end = buf.append(&vec![0u8; cap - 8 - 100], 0, None).end;
        assert_eq!(end.generation(), 4);
        let start = buf.append(&[7u8; 200], 0, None).lsn;
        assert_eq!(start, Lsn::new(5, 3 * 512 + 32));
        let batch = buf.take_batch();
        let sealed = batch.runs[0].meta.last().expect("closed frames");
        assert_eq!(sealed.flags, FLAG_SEALED);
        assert_eq!(batch.tail.expect("new generation's frame").generation, 5);
    }

    #[test]
    fn header_never_straddles_frames() {
        let mut buf = AppendBuffer::new(512, 64, 1, DATA_START, &[], NO_RECORD, Lsn::ZERO);
        let cap = 512 - FRAME_HEADER_LEN;
        let end = buf.append(&vec![0u8; cap - 8 - 4], 0, None).end;
        assert_eq!(end.offset() as usize % 512, FRAME_HEADER_LEN + cap - 4);
        let next = buf.append(b"x", 0, None).lsn;
        assert_eq!(next.offset(), 4 * 512 + 32);
        let batch = buf.take_batch();
        assert_eq!(batch.runs[0].meta[0].used as usize, cap - 4);
    }

    #[test]
    fn interior_frames_of_a_large_record_are_left_to_the_committer() {
        let mut buf = AppendBuffer::new(512, 64, 1, DATA_START, &[], NO_RECORD, Lsn::ZERO);
        let cap = 512 - FRAME_HEADER_LEN;
        buf.append(&[1u8; 100], 0, Some(1));
        let placed = buf.append(&vec![2u8; 5 * cap], 0, Some(1));
        let interior = placed.interior.expect("a five-frame record has interior frames");
        assert_eq!(interior.first_index, DATA_START + 1);
        // Head: the rest of frame 3 after 108 + 8 bytes; tail: at least one byte in the last frame.
        assert_eq!(interior.data_from, cap - 116);
        assert_eq!(interior.frames, 4);
        assert_eq!(placed.end.offset() as usize % 512, FRAME_HEADER_LEN + 116);
        let batch = buf.take_batch();
        let written: Vec<u32> = batch
            .runs
            .iter()
            .flat_map(|r| (0..r.meta.len() as u32).map(move |i| r.first_index + i))
            .collect();
        assert_eq!(written, vec![DATA_START], "only the shared head frame is the leader's");
        assert_eq!(batch.tail.expect("tail").index, DATA_START + 5);
        // A small record never has interior frames.
        assert!(buf.append(&[3u8; 10], 0, Some(1)).interior.is_none());
    }

    /// The pager relies on this: a record is whole in the log file only once
    /// a batch's leader has written its last frame (DESIGN.md, "Large values
    /// written once"), never from its committer's interior writes alone.
    #[test]
    fn the_last_frame_of_every_record_goes_through_a_batch() {
        let cap = 512 - FRAME_HEADER_LEN;
        let lens = (1..=5 * cap)
            .step_by(37)
            .chain((1..=5).flat_map(|k| [k * cap - 9, k * cap - 8, k * cap, k * cap + 1]));
        for before in [0, 1, 100, cap - 9, cap - 8] {
            for len in lens.clone() {
                let mut buf = AppendBuffer::new(512, 64, 1, DATA_START, &[], NO_RECORD, Lsn::ZERO);
                if before > 0 {
                    buf.append(&vec![1u8; before], 0, Some(1));
                }
                let placed = buf.append(&vec![2u8; len], 0, Some(1));
                let last = placed.end.offset() as u32 / 512 - u32::from(placed.end.offset().is_multiple_of(512));
                if let Some(interior) = placed.interior {
                    assert!(
                        last >= interior.first_index + interior.frames,
                        "{len} bytes after {before}: the last frame {last} is interior"
                    );
                }
                let batch = buf.take_batch();
                let in_batch = batch
                    .runs
                    .iter()
                    .any(|r| (r.first_index..r.first_index + r.meta.len() as u32).contains(&last))
                    || batch.tail.is_some_and(|t| t.index == last);
                assert!(
                    in_batch,
                    "{len} bytes after {before}: the last frame {last} is in no batch"
                );
            }
        }
    }
}
