//! A transaction's log records, encoded straight from its pages: one commit
//! record when its changes fit the log's record limit, else parts of at most
//! that size and a commit that names them (DESIGN.md, "Log records").
//!
//! Every record is built in one buffer whose first bytes are kept free for
//! the longest header, so that the header, known only at the end, is
//! written in front of the changes without copying them.

use super::diff::encode_page_change;
use super::page::PageNo;
use super::redo::{
    CHANGE_WRITTEN, COMMIT_PARTS_HEADER_LEN, PART_HEADER_LEN, Parts, RECORD_COMMIT, RECORD_COMMIT_PARTS, RECORD_PART,
};
use crate::log::Lsn;

/// Bytes of a plain commit's header: kind, sequence, page count, change count.
const COMMIT_HEADER_LEN: usize = 1 + 8 + 4 + 4;
/// The room kept in front of every record's changes.
const RESERVED: usize = COMMIT_PARTS_HEADER_LEN;

/// The longest change of a page of `page_size` bytes (`diff::encode_page_change`):
/// page number, kind, length and the image. A log whose records cannot hold
/// one change and the longest header cannot hold a transaction.
pub fn largest_change(page_size: usize) -> usize {
    4 + 1 + 4 + page_size
}

/// One encoded record: its bytes are `buf[start..]`.
pub struct EncodedRecord {
    buf: Vec<u8>,
    start: usize,
}

impl EncodedRecord {
    pub fn bytes(&self) -> &[u8] {
        &self.buf[self.start..]
    }
}

/// Builds the records of transaction `seq`.
pub struct TxnRecords {
    seq: u64,
    page_count: u32,
    max_record: usize,
    buf: Vec<u8>,
    changes: u32,
    parts: u32,
}

impl TxnRecords {
    /// Records of at most `max_record` bytes, which must hold the longest
    /// header and [`largest_change`] (checked when the database opens).
    pub fn new(seq: u64, page_count: u32, max_record: usize) -> TxnRecords {
        TxnRecords {
            seq,
            page_count,
            max_record,
            buf: fresh_buffer(),
            changes: 0,
            parts: 0,
        }
    }

    /// Adds page `no`'s change (see `diff::encode_page_change`). Returns
    /// whether the page changed, and a part to append before anything else
    /// when this change did not fit the record being built: that part holds
    /// every change added before this one, and this one starts the next.
    pub fn add(
        &mut self,
        no: PageNo,
        base: Option<&[u8]>,
        new: &[u8],
        redo_point: Lsn,
    ) -> (bool, Option<EncodedRecord>) {
        let begin = self.buf.len();
        if !encode_page_change(&mut self.buf, no, base, new, redo_point) {
            return (false, None);
        }
        (true, self.close_if_full(begin))
    }

    /// Adds page `no` as written in place before the record (kind `3`,
    /// with its checksum); returns a part to append first, as `add` does.
    pub fn add_written(&mut self, no: PageNo, crc: u32) -> Option<EncodedRecord> {
        let begin = self.buf.len();
        self.buf.extend_from_slice(&no.to_le_bytes());
        self.buf.push(CHANGE_WRITTEN);
        self.buf.extend_from_slice(&crc.to_le_bytes());
        self.close_if_full(begin)
    }

    /// Counts the change just encoded at `begin..`; if it made the record
    /// too long, closes the record before it as a part, and it starts the next.
    fn close_if_full(&mut self, begin: usize) -> Option<EncodedRecord> {
        if self.buf.len() <= self.max_record || self.changes == 0 {
            self.changes += 1;
            return None;
        }
        // Parts are this large: room for one at once.
        let mut next = Vec::with_capacity(self.max_record);
        next.resize(RESERVED, 0);
        next.extend_from_slice(&self.buf[begin..]);
        self.buf.truncate(begin);
        let full = std::mem::replace(&mut self.buf, next);
        let part = self.seal(full, RECORD_PART, None);
        self.parts += 1;
        self.changes = 1;
        Some(part)
    }

    /// The commit record: plain, or naming the parts (`first` is where
    /// the first part was appended; `None` when there is none).
    pub fn finish(mut self, first: Option<Lsn>) -> EncodedRecord {
        let buf = std::mem::take(&mut self.buf);
        match first {
            Some(first) if self.parts > 0 => {
                let parts = Parts {
                    count: self.parts,
                    first,
                };
                self.seal(buf, RECORD_COMMIT_PARTS, Some(parts))
            }
            _ => self.seal(buf, RECORD_COMMIT, None),
        }
    }

    /// Writes the header of a `kind` record in front of its changes.
    fn seal(&self, mut buf: Vec<u8>, kind: u8, parts: Option<Parts>) -> EncodedRecord {
        let mut header = Vec::with_capacity(RESERVED);
        header.push(kind);
        header.extend_from_slice(&self.seq.to_le_bytes());
        header.extend_from_slice(&self.page_count.to_le_bytes());
        match kind {
            RECORD_PART => header.extend_from_slice(&self.parts.to_le_bytes()),
            RECORD_COMMIT_PARTS => {
                // Set with this kind only (see `finish`).
                let parts = parts.unwrap_or(Parts {
                    count: 0,
                    first: Lsn::ZERO,
                });
                header.extend_from_slice(&parts.count.to_le_bytes());
                header.extend_from_slice(&parts.first.0.to_le_bytes());
            }
            _ => {}
        }
        header.extend_from_slice(&self.changes.to_le_bytes());
        debug_assert_eq!(
            header.len(),
            match kind {
                RECORD_PART => PART_HEADER_LEN,
                RECORD_COMMIT_PARTS => COMMIT_PARTS_HEADER_LEN,
                _ => COMMIT_HEADER_LEN,
            }
        );
        let start = RESERVED - header.len();
        buf[start..RESERVED].copy_from_slice(&header);
        EncodedRecord { buf, start }
    }
}

fn fresh_buffer() -> Vec<u8> {
    let mut buf = Vec::with_capacity(RESERVED + 1024);
    buf.resize(RESERVED, 0);
    buf
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pager::page::{self, PageBuf, PageKind};
    use crate::pager::redo::{DbRecord, LOGGED_FROM, PageChange};

    fn page(no: PageNo, fill: u8, lsn: Lsn) -> PageBuf {
        let mut p = PageBuf::zeroed(4096);
        page::init_header(&mut p, no, PageKind::Leaf, 7);
        p[100..3000].fill(fill);
        page::set_lsn(&mut p, lsn);
        p
    }

    /// Changes of 20 pages cut into records of at most 10 KiB: each record
    /// decodes, the parts are numbered in order and hold every change once,
    /// in page order, and the commit names them.
    #[test]
    fn changes_past_one_record_are_cut_into_numbered_parts_and_a_commit() {
        let max = 10 << 10;
        let mut records = TxnRecords::new(9, 40, max);
        let mut parts = Vec::new();
        let mut pages_in = Vec::new();
        let base_lsn = Lsn::new(1, 64);
        for no in 3..23u32 {
            let base = page(no, 1, base_lsn);
            // Odd pages change a little (ranges), even ones are new (images).
            let (base, new) = if no % 2 == 1 {
                let mut new = base.clone();
                new[200..260].fill(9);
                (Some(base), new)
            } else {
                (None, page(no, 5, Lsn::ZERO))
            };
            let (kept, part) = records.add(no, base.as_deref(), &new, Lsn::ZERO);
            assert!(kept);
            if let Some(part) = part {
                assert!(part.bytes().len() <= max);
                parts.push(part.bytes().to_vec());
            }
            pages_in.push(no);
        }
        // An unchanged page is left out and starts nothing.
        let same = page(30, 3, base_lsn);
        assert!(!records.add(30, Some(&same), &same, Lsn::ZERO).0);
        let first = Lsn::new(2, 4096);
        let commit = records.finish(Some(first));
        assert!(parts.len() >= 2, "{} parts", parts.len());
        let mut seen = Vec::new();
        for (i, bytes) in parts.iter().enumerate() {
            match DbRecord::decode(bytes, 4096) {
                Ok(DbRecord::Part {
                    seq: 9,
                    page_count: 40,
                    index,
                    changes,
                }) => {
                    assert_eq!(index as usize, i);
                    assert_eq!(crate::pager::redo::part_header(bytes), Ok((9, index)));
                    seen.extend(changes.into_iter().map(|(no, _)| no));
                }
                other => panic!("part {i}: {other:?}"),
            }
        }
        match DbRecord::decode(commit.bytes(), 4096) {
            Ok(DbRecord::CommitParts {
                seq: 9,
                page_count: 40,
                parts: p,
                changes,
            }) => {
                assert_eq!((p.count as usize, p.first), (parts.len(), first));
                for (no, change) in &changes {
                    match change {
                        PageChange::Ranges { before, ranges } if no % 2 == 1 => {
                            assert_eq!(*before, base_lsn);
                            assert_eq!(ranges.len(), 1);
                        }
                        PageChange::Image(bytes) if no % 2 == 0 => assert_eq!(bytes[100 - LOGGED_FROM], 5),
                        other => panic!("page {no}: {other:?}"),
                    }
                }
                seen.extend(changes.into_iter().map(|(no, _)| no));
            }
            other => panic!("commit: {other:?}"),
        }
        assert_eq!(seen, pages_in);
    }

    /// Changes that fit one record make one plain commit, and a page
    /// changed so much that its ranges outgrow its image is logged whole (ranges skip gaps of 16
    /// bytes or more for 8 bytes each, so only a change of nearly the whole page does).
    #[test]
    fn a_small_transaction_is_one_commit_and_long_ranges_give_way_to_the_image() {
        let mut records = TxnRecords::new(3, 10, 4 << 20);
        let base = page(5, 1, Lsn::new(1, 64));
        let mut new = base.clone();
        // Every logged byte changed: one range of the whole page costs its
        // header (17 bytes) more than the image (9).
        new[LOGGED_FROM..].fill(0xee);
        let (kept, part) = records.add(5, Some(&base), &new, Lsn::ZERO);
        assert!(kept && part.is_none());
        match DbRecord::decode(records.finish(None).bytes(), 4096) {
            Ok(DbRecord::Commit {
                seq: 3,
                page_count: 10,
                changes,
            }) => {
                assert_eq!(changes.len(), 1);
                assert_eq!(changes[0].1, PageChange::Image(new[LOGGED_FROM..].to_vec()));
            }
            other => panic!("{other:?}"),
        }
    }
}
