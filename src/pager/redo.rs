//! The database's log records and how redo applies them.
//!
//! A transaction is one log record, so a commit is atomic by the log's record
//! checksum and redo never sees half a transaction. Records are page
//! addressed: each page change is either a full image of the page (from byte
//! 16 on) or byte ranges to overwrite, with the page LSN they expect before.
//! The LSN of the record becomes the page LSN. Redo applies a change only to
//! a page older than the record, so replaying twice is harmless; a range
//! change that finds its page at another LSN is a lost flush. Because the
//! changes are bytes, replay yields pages identical to the writer's, which is
//! what passive copies rely on. DESIGN.md documents the layout byte by byte.

pub use super::diff::diff;
use super::diff::encode_image;
use super::page::{self, PageNo};
use crate::log::Lsn;

/// Record kind byte: a committed transaction.
pub const RECORD_COMMIT: u8 = 1;
/// Record kind byte: a checkpoint starts here (recovery starts at one).
pub const RECORD_CHECKPOINT: u8 = 2;
/// Record kind: the digest of the pages a checkpoint wrote.
pub const RECORD_DIGEST: u8 = 3;
/// Record kind: (part of) the digest of the whole database as of a
/// checkpoint marker that announced it.
pub const RECORD_WHOLE_DIGEST: u8 = 4;
/// Record kind: one part of a transaction too large for one record; its
/// changes apply only once the commit that names it is read.
pub const RECORD_PART: u8 = 5;
/// Record kind: a committed transaction whose earlier changes are in parts.
pub const RECORD_COMMIT_PARTS: u8 = 6;
/// Checkpoint flag: a whole-database digest of the state at this marker follows.
pub const CHECKPOINT_WHOLE_DIGEST: u8 = 1;
/// Bytes of a whole-digest record before its group hashes.
pub const WHOLE_DIGEST_HEADER: usize = 1 + 8 + 4 + 4 + 32 + 4 + 4;
/// Bytes kept of each group's SHA-256.
pub const GROUP_HASH_LEN: usize = 16;
/// Page bytes before this offset are not logged: checksum, page number, LSN.
pub const LOGGED_FROM: usize = 16;

/// One page's change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PageChange {
    /// The whole page from byte 16: the first change after a checkpoint
    /// began, or a new page. Repairs a torn write of the page.
    Image(Vec<u8>),
    /// Byte ranges (offset in the page, bytes) over the page at `before`.
    Ranges { before: Lsn, ranges: Vec<(u32, Vec<u8>)> },
    /// A page new to the file, written in place and synced before this
    /// record was logged (large values written once): the file must hold
    /// it with this checksum (its header's crc32c of bytes 4..page size).
    Written { crc: u32 },
}

/// Kind byte of a [`PageChange::Written`] change.
pub const CHANGE_WRITTEN: u8 = 3;

/// A decoded record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DbRecord {
    Commit {
        /// Commit sequence number.
        seq: u64,
        /// Pages in the database after this transaction.
        page_count: u32,
        changes: Vec<(PageNo, PageChange)>,
    },
    Checkpoint {
        /// Checkpoint number.
        number: u64,
        /// A whole-database digest of the state at this marker follows.
        whole_digest: bool,
    },
    /// The pages a checkpoint wrote, each with its page LSN and checksum
    /// (crc32c of bytes 4.. of the page): whoever replays the log checks
    /// every listed page still at that LSN against it.
    Digest { pages: Vec<(PageNo, Lsn, u32)> },
    /// Part of the digest of the whole database as of a flagged marker.
    WholeDigest(WholeDigest),
    /// Part `index` (from 0) of transaction `seq`, written before its
    /// commit; nothing of it applies unless a commit names it.
    Part {
        seq: u64,
        /// Pages in the database after the transaction.
        page_count: u32,
        index: u32,
        changes: Vec<(PageNo, PageChange)>,
    },
    /// A committed transaction whose first changes are in `parts`: redo
    /// applies those parts, in order, then these changes.
    CommitParts {
        seq: u64,
        page_count: u32,
        parts: Parts,
        changes: Vec<(PageNo, PageChange)>,
    },
}

/// Where a transaction's parts lie: `count` part records (indexes 0 to
/// count − 1), the first at `first`, all before the commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parts {
    pub count: u32,
    pub first: Lsn,
}

/// Part of a whole-database digest (`pager::digest`): pages 2..page count
/// in groups of `group_pages`, one truncated SHA-256 per group, and the
/// root over all groups. Parts carry consecutive groups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WholeDigest {
    /// The checkpoint marker whose state this digests.
    pub marker: Lsn,
    /// Pages in the database at the marker.
    pub page_count: u32,
    /// Pages per group (at least 1).
    pub group_pages: u32,
    /// SHA-256 over the page count, the group size and every group hash.
    pub root: [u8; 32],
    /// Index of the first group in this part.
    pub first_group: u32,
    pub groups: Vec<[u8; GROUP_HASH_LEN]>,
}

/// Groups of `group_pages` (at least 1) that pages 2..`page_count` make.
pub fn group_count(page_count: u32, group_pages: u32) -> u32 {
    page_count.saturating_sub(2).div_ceil(group_pages.max(1))
}

impl DbRecord {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        match self {
            DbRecord::Commit {
                seq,
                page_count,
                changes,
            } => {
                out.reserve_exact(17 + encoded_len(changes));
                out.push(RECORD_COMMIT);
                out.extend_from_slice(&seq.to_le_bytes());
                out.extend_from_slice(&page_count.to_le_bytes());
                encode_changes(&mut out, changes);
            }
            DbRecord::Part {
                seq,
                page_count,
                index,
                changes,
            } => {
                out.reserve_exact(PART_HEADER_LEN + encoded_len(changes));
                out.push(RECORD_PART);
                out.extend_from_slice(&seq.to_le_bytes());
                out.extend_from_slice(&page_count.to_le_bytes());
                out.extend_from_slice(&index.to_le_bytes());
                encode_changes(&mut out, changes);
            }
            DbRecord::CommitParts {
                seq,
                page_count,
                parts,
                changes,
            } => {
                out.reserve_exact(COMMIT_PARTS_HEADER_LEN + encoded_len(changes));
                out.push(RECORD_COMMIT_PARTS);
                out.extend_from_slice(&seq.to_le_bytes());
                out.extend_from_slice(&page_count.to_le_bytes());
                out.extend_from_slice(&parts.count.to_le_bytes());
                out.extend_from_slice(&parts.first.0.to_le_bytes());
                encode_changes(&mut out, changes);
            }
            DbRecord::Checkpoint { number, whole_digest } => {
                out.push(RECORD_CHECKPOINT);
                out.extend_from_slice(&number.to_le_bytes());
                // Unflagged markers keep their original 9 bytes.
                if *whole_digest {
                    out.push(CHECKPOINT_WHOLE_DIGEST);
                }
            }
            DbRecord::WholeDigest(d) => {
                out.reserve(WHOLE_DIGEST_HEADER + d.groups.len() * GROUP_HASH_LEN);
                out.push(RECORD_WHOLE_DIGEST);
                out.extend_from_slice(&d.marker.0.to_le_bytes());
                out.extend_from_slice(&d.page_count.to_le_bytes());
                out.extend_from_slice(&d.group_pages.to_le_bytes());
                out.extend_from_slice(&d.root);
                out.extend_from_slice(&d.first_group.to_le_bytes());
                out.extend_from_slice(&(d.groups.len() as u32).to_le_bytes());
                for g in &d.groups {
                    out.extend_from_slice(g);
                }
            }
            DbRecord::Digest { pages } => {
                out.push(RECORD_DIGEST);
                out.extend_from_slice(&(pages.len() as u32).to_le_bytes());
                for (no, lsn, crc) in pages {
                    out.extend_from_slice(&no.to_le_bytes());
                    out.extend_from_slice(&lsn.0.to_le_bytes());
                    out.extend_from_slice(&crc.to_le_bytes());
                }
            }
        }
        out
    }

    /// Decodes a record of a database with `page_size` pages. Every length is
    /// checked against what is left, so hostile bytes cannot over-allocate.
    pub fn decode(bytes: &[u8], page_size: usize) -> Result<DbRecord, String> {
        let mut r = Reader { bytes, at: 0 };
        match r.u8()? {
            RECORD_COMMIT => {
                let seq = r.u64()?;
                let page_count = r.u32()?;
                let changes = decode_changes(&mut r, page_count, page_size)?;
                Ok(DbRecord::Commit {
                    seq,
                    page_count,
                    changes,
                })
            }
            RECORD_PART => {
                let seq = r.u64()?;
                let page_count = r.u32()?;
                let index = r.u32()?;
                let changes = decode_changes(&mut r, page_count, page_size)?;
                Ok(DbRecord::Part {
                    seq,
                    page_count,
                    index,
                    changes,
                })
            }
            RECORD_COMMIT_PARTS => {
                let seq = r.u64()?;
                let page_count = r.u32()?;
                let count = r.u32()?;
                let first = Lsn(r.u64()?);
                if count == 0 {
                    return Err("a commit of parts that names no part".into());
                }
                let changes = decode_changes(&mut r, page_count, page_size)?;
                Ok(DbRecord::CommitParts {
                    seq,
                    page_count,
                    parts: Parts { count, first },
                    changes,
                })
            }
            RECORD_CHECKPOINT => {
                let number = r.u64()?;
                // Only the one flag is defined, and a zero flag byte is never written.
                let whole_digest = match r.take(r.left())? {
                    [] => false,
                    [CHECKPOINT_WHOLE_DIGEST] => true,
                    _ => return Err("unknown flags or trailing bytes after a checkpoint record".into()),
                };
                Ok(DbRecord::Checkpoint { number, whole_digest })
            }
            RECORD_DIGEST => {
                let n = r.u32()? as usize;
                if n.checked_mul(16) != Some(r.left()) {
                    return Err(format!("a digest of {n} pages in {} bytes", r.left()));
                }
                let mut pages = Vec::with_capacity(n);
                for _ in 0..n {
                    pages.push((r.u32()?, Lsn(r.u64()?), r.u32()?));
                }
                Ok(DbRecord::Digest { pages })
            }
            RECORD_WHOLE_DIGEST => {
                let marker = Lsn(r.u64()?);
                let page_count = r.u32()?;
                let group_pages = r.u32()?;
                if group_pages == 0 {
                    return Err("a whole digest with groups of 0 pages".into());
                }
                let mut root = [0u8; 32];
                root.copy_from_slice(r.take(32)?);
                let first_group = r.u32()?;
                let n = r.u32()? as usize;
                // The count is checked against the bytes left before anything is allocated.
                if n.checked_mul(GROUP_HASH_LEN) != Some(r.left()) {
                    return Err(format!("a whole digest of {n} groups in {} bytes", r.left()));
                }
                let total = group_count(page_count, group_pages);
                if u64::from(first_group) + n as u64 > u64::from(total) {
                    return Err(format!(
                        "groups {first_group}+{n} beyond the {total} groups of {page_count} pages"
                    ));
                }
                let mut groups = Vec::with_capacity(n);
                for _ in 0..n {
                    let mut g = [0u8; GROUP_HASH_LEN];
                    g.copy_from_slice(r.take(GROUP_HASH_LEN)?);
                    groups.push(g);
                }
                Ok(DbRecord::WholeDigest(WholeDigest {
                    marker,
                    page_count,
                    group_pages,
                    root,
                    first_group,
                    groups,
                }))
            }
            k => Err(format!("unknown record kind {k}")),
        }
    }
}

/// Bytes of a part record before its changes: kind, sequence, page count,
/// index, change count.
pub const PART_HEADER_LEN: usize = 1 + 8 + 4 + 4 + 4;
/// Bytes of a commit-of-parts record before its changes: kind, sequence,
/// page count, part count, first part's LSN, change count.
pub const COMMIT_PARTS_HEADER_LEN: usize = 1 + 8 + 4 + 4 + 8 + 4;

/// At most this many bytes encode `changes` (an image takes its whole form
/// at most): one allocation instead of a growth per change.
fn encoded_len(changes: &[(PageNo, PageChange)]) -> usize {
    changes
        .iter()
        .map(|(_, c)| match c {
            PageChange::Image(bytes) => 9 + bytes.len(),
            PageChange::Ranges { ranges, .. } => 17 + ranges.iter().map(|(_, b)| 8 + b.len()).sum::<usize>(),
            PageChange::Written { .. } => 9,
        })
        .sum()
}

/// Change count u32, then each change.
fn encode_changes(out: &mut Vec<u8>, changes: &[(PageNo, PageChange)]) {
    out.extend_from_slice(&(changes.len() as u32).to_le_bytes());
    for (no, change) in changes {
        out.extend_from_slice(&no.to_le_bytes());
        match change {
            PageChange::Image(bytes) => encode_image(out, bytes),
            PageChange::Ranges { before, ranges } => {
                out.push(2);
                out.extend_from_slice(&before.0.to_le_bytes());
                out.extend_from_slice(&(ranges.len() as u32).to_le_bytes());
                for (at, bytes) in ranges {
                    out.extend_from_slice(&at.to_le_bytes());
                    out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
                    out.extend_from_slice(bytes);
                }
            }
            PageChange::Written { crc } => {
                out.push(CHANGE_WRITTEN);
                out.extend_from_slice(&crc.to_le_bytes());
            }
        }
    }
}

/// A change count, then the changes, to the record's end. Every length is
/// checked against the bytes left before anything is allocated.
fn decode_changes(r: &mut Reader<'_>, page_count: u32, page_size: usize) -> Result<Vec<(PageNo, PageChange)>, String> {
    let n = r.u32()? as usize;
    // Each change takes at least 9 bytes: a count cannot exceed that.
    if n > r.left() / 9 {
        return Err(format!("{n} page changes cannot fit {} bytes", r.left()));
    }
    let mut changes = Vec::with_capacity(n);
    for _ in 0..n {
        let no = r.u32()?;
        if no >= page_count {
            return Err(format!("page {no} beyond the page count {page_count}"));
        }
        let change = match r.u8()? {
            1 => {
                let len = r.u32()? as usize;
                if len != page_size - LOGGED_FROM {
                    return Err(format!("page image of {len} bytes for {page_size}-byte pages"));
                }
                PageChange::Image(r.take(len)?.to_vec())
            }
            4 => PageChange::Image(decode_sparse_image(r, page_size)?),
            2 => {
                let before = Lsn(r.u64()?);
                let count = r.u32()? as usize;
                if count > r.left() / 8 {
                    return Err(format!("{count} ranges cannot fit {} bytes", r.left()));
                }
                let mut ranges = Vec::with_capacity(count);
                for _ in 0..count {
                    let at = r.u32()?;
                    let len = r.u32()? as usize;
                    if (at as usize) < LOGGED_FROM || at as usize + len > page_size {
                        return Err(format!("range {at}+{len} outside a {page_size}-byte page"));
                    }
                    ranges.push((at, r.take(len)?.to_vec()));
                }
                PageChange::Ranges { before, ranges }
            }
            CHANGE_WRITTEN => PageChange::Written { crc: r.u32()? },
            k => return Err(format!("unknown page change kind {k}")),
        };
        changes.push((no, change));
    }
    if r.left() != 0 {
        return Err(format!("{} bytes after the last change", r.left()));
    }
    Ok(changes)
}

/// The sequence and index of a part record, from its header alone (its
/// changes are decoded when its commit is read).
pub fn part_header(bytes: &[u8]) -> Result<(u64, u32), String> {
    let mut r = Reader { bytes, at: 0 };
    if r.u8()? != RECORD_PART {
        return Err("not a part record".into());
    }
    let seq = r.u64()?;
    let _page_count = r.u32()?;
    let index = r.u32()?;
    Ok((seq, index))
}

/// What redo did with one change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// The page was older; it now carries the record's change and LSN.
    Applied,
    /// The page already holds this change (or a later one).
    Skipped,
    /// A page written before its record (`PageChange::Written`) is in the
    /// file as the record says; nothing changes, not even its LSN.
    Present,
}

/// Applies `change` from the record at `lsn` to `page`, whose current LSN is
/// `current` (None: the page in the file is unreadable: torn, zero or absent).
/// Returns `Err(found)` for a lost flush, or for a written page that is not
/// in the file as its record says.
pub fn apply(page: &mut [u8], current: Option<Lsn>, change: &PageChange, lsn: Lsn) -> Result<Applied, Option<Lsn>> {
    if current.is_some_and(|c| c >= lsn) {
        return Ok(Applied::Skipped);
    }
    match change {
        // The page was stamped below its record's LSN when written; redo
        // keeps that stamp, so that later changes find the LSN they expect.
        PageChange::Written { crc } if current.is_some() && crc32c::crc32c(&page[4..]) == *crc => {
            return Ok(Applied::Present);
        }
        PageChange::Written { .. } => return Err(current),
        PageChange::Image(bytes) => {
            page[LOGGED_FROM..].copy_from_slice(bytes);
        }
        PageChange::Ranges { before, ranges } => {
            if current != Some(*before) {
                return Err(current);
            }
            for (at, bytes) in ranges {
                page[*at as usize..*at as usize + bytes.len()].copy_from_slice(bytes);
            }
        }
    }
    page::set_lsn(page, lsn);
    Ok(Applied::Applied)
}

/// Decodes a kind-`4` change: a page image, zero but for the ranges listed.
/// The image is one page; the count is checked against the bytes left.
fn decode_sparse_image(r: &mut Reader<'_>, page_size: usize) -> Result<Vec<u8>, String> {
    let count = r.u32()? as usize;
    if count > r.left() / 8 {
        return Err(format!("{count} image ranges cannot fit {} bytes", r.left()));
    }
    let mut image = vec![0u8; page_size - LOGGED_FROM];
    for _ in 0..count {
        let at = r.u32()? as usize;
        let len = r.u32()? as usize;
        if at < LOGGED_FROM || at.checked_add(len).is_none_or(|end| end > page_size) {
            return Err(format!("image range {at}+{len} outside a {page_size}-byte page"));
        }
        image[at - LOGGED_FROM..at - LOGGED_FROM + len].copy_from_slice(r.take(len)?);
    }
    Ok(image)
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn left(&self) -> usize {
        self.bytes.len() - self.at
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if n > self.left() {
            return Err(format!("record ends {} bytes early", n - self.left()));
        }
        let s = &self.bytes[self.at..self.at + n];
        self.at += n;
        Ok(s)
    }

    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32, String> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self) -> Result<u64, String> {
        let mut x = [0u8; 8];
        x.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(x))
    }
}

#[cfg(test)]
#[path = "redo_tests.rs"]
mod tests;
