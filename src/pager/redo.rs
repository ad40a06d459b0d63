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
/// Checkpoint flag: a whole-database digest of the state at this marker follows.
pub const CHECKPOINT_WHOLE_DIGEST: u8 = 1;
/// Bytes of a whole-digest record before its group hashes.
pub const WHOLE_DIGEST_HEADER: usize = 1 + 8 + 4 + 4 + 32 + 4 + 4;
/// Bytes kept of each group's SHA-256.
pub const GROUP_HASH_LEN: usize = 16;
/// Page bytes before this offset are not logged: checksum, page number, LSN.
pub const LOGGED_FROM: usize = 16;
/// Equal bytes shorter than this between two changed ranges are sent along
/// rather than starting a new range (a range costs 8 bytes of header).
const MERGE_GAP: usize = 16;

/// One page's change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PageChange {
    /// The whole page from byte 16: the first change after a checkpoint
    /// began, or a new page. Repairs a torn write of the page.
    Image(Vec<u8>),
    /// Byte ranges (offset in the page, bytes) over the page at `before`.
    Ranges { before: Lsn, ranges: Vec<(u32, Vec<u8>)> },
}

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

/// Computes the ranges that turn `old` into `new` (equal-length pages).
pub fn diff(old: &[u8], new: &[u8]) -> Vec<(u32, Vec<u8>)> {
    changed_runs(old, new, LOGGED_FROM)
        .map(|(at, bytes)| (at as u32, bytes.to_vec()))
        .collect()
}

/// The runs of bytes where `new` differs from `old`, from offset `from` on,
/// as (offset, bytes of `new`). Equal stretches shorter than `MERGE_GAP`
/// inside a run are kept in it. Pages are compared eight bytes at a time
/// (a leaf's diff scans the whole page once per commit).
fn changed_runs<'a>(old: &'a [u8], new: &'a [u8], from: usize) -> impl Iterator<Item = (usize, &'a [u8])> + 'a {
    let n = new.len().min(old.len());
    let mut i = from;
    std::iter::from_fn(move || {
        let start = first_difference(old, new, i, n)?;
        let end = run_end(old, new, start, n);
        i = end;
        Some((start, &new[start..end]))
    })
}

/// The first offset in `from..to` where the pages differ.
fn first_difference(old: &[u8], new: &[u8], from: usize, to: usize) -> Option<usize> {
    let (a, b) = (&old[from..to], &new[from..to]);
    // Equal stretches 128 bytes at a time, folded with XOR and OR: the
    // compiler makes vector code of it, with no call and no bounds checks.
    let (a_blocks, _) = a.as_chunks::<128>();
    let (b_blocks, _) = b.as_chunks::<128>();
    let equal = |(x, y): &(&[u8; 128], &[u8; 128])| x.iter().zip(y.iter()).fold(0u8, |acc, (p, q)| acc | (p ^ q)) == 0;
    let equal_blocks = a_blocks.iter().zip(b_blocks).take_while(equal).count();
    let mut i = equal_blocks * 128;
    let (a_words, _) = a[i..].as_chunks::<8>();
    let (b_words, _) = b[i..].as_chunks::<8>();
    for (x, y) in a_words.iter().zip(b_words) {
        let x = u64::from_le_bytes(*x) ^ u64::from_le_bytes(*y);
        if x != 0 {
            return Some(from + i + (x.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    (i..a.len()).find(|&j| a[j] != b[j]).map(|j| from + j)
}

/// The end of the run that starts with a difference at `start`: the run
/// grows, a word at a time, while the next difference lies less than
/// `MERGE_GAP` bytes past its end.
fn run_end(old: &[u8], new: &[u8], start: usize, n: usize) -> usize {
    let mut end = start + 1;
    let mut j = end;
    while j + 8 <= n && j < end + MERGE_GAP {
        let (Some(x), Some(y)) = (old[j..].first_chunk::<8>(), new[j..].first_chunk::<8>()) else {
            break;
        };
        let x = u64::from_le_bytes(*x) ^ u64::from_le_bytes(*y);
        if x != 0 {
            let first = j + (x.trailing_zeros() / 8) as usize;
            if first >= end + MERGE_GAP {
                return end;
            }
            end = j + 8 - (x.leading_zeros() / 8) as usize;
        }
        j += 8;
    }
    // The last few bytes of the page, one at a time.
    while j < n && j < end + MERGE_GAP {
        if old[j] != new[j] {
            end = j + 1;
        }
        j += 1;
    }
    end
}

/// Blocks an image is scanned in for its nonzero runs.
const IMAGE_BLOCK: usize = 64;

/// The nonzero runs of `image` as (start, end): runs of blocks that are not
/// all zeros, trimmed of zero bytes at both ends. A block compare against
/// zeros is a vector compare, so this reads an image at memory speed.
fn nonzero_runs(image: &[u8]) -> impl Iterator<Item = (usize, usize)> + '_ {
    const ZEROS: [u8; IMAGE_BLOCK] = [0; IMAGE_BLOCK];
    let is_zero = |block: &[u8]| block == &ZEROS[..block.len()];
    let mut at = 0;
    std::iter::from_fn(move || {
        while at < image.len() && is_zero(&image[at..(at + IMAGE_BLOCK).min(image.len())]) {
            at += IMAGE_BLOCK;
        }
        if at >= image.len() {
            return None;
        }
        let mut end = at;
        while end < image.len() && !is_zero(&image[end..(end + IMAGE_BLOCK).min(image.len())]) {
            end = (end + IMAGE_BLOCK).min(image.len());
        }
        let run = &image[at..end];
        // Both ends hold a nonzero byte: the first and last blocks are not all zeros.
        let first = run.iter().position(|&b| b != 0).unwrap_or(0);
        let last = run.iter().rposition(|&b| b != 0).map_or(run.len(), |i| i + 1);
        let found = (at + first, at + last);
        at = end;
        Some(found)
    })
}

/// Appends `image` (a page from byte 16) as a change: kind `4`, its nonzero
/// runs, when that is shorter, else kind `1`, the bytes whole. A new node
/// page after a split is about half free space, all zeros.
fn encode_image(out: &mut Vec<u8>, image: &[u8]) {
    let whole_len = 4 + image.len();
    let begin = out.len();
    out.push(4);
    out.extend_from_slice(&0u32.to_le_bytes());
    let mut count = 0u32;
    for (start, end) in nonzero_runs(image) {
        if out.len() - begin - 1 + 8 + (end - start) >= whole_len {
            // Not shorter: the whole form instead.
            out.truncate(begin);
            out.push(1);
            out.extend_from_slice(&(image.len() as u32).to_le_bytes());
            out.extend_from_slice(image);
            return;
        }
        out.extend_from_slice(&((start + LOGGED_FROM) as u32).to_le_bytes());
        out.extend_from_slice(&((end - start) as u32).to_le_bytes());
        out.extend_from_slice(&image[start..end]);
        count += 1;
    }
    out[begin + 1..begin + 5].copy_from_slice(&count.to_le_bytes());
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
                // At most this long (an image takes its whole form at most):
                // one allocation instead of a growth per change.
                let most: usize = changes
                    .iter()
                    .map(|(_, c)| match c {
                        PageChange::Image(bytes) => 9 + bytes.len(),
                        PageChange::Ranges { ranges, .. } => {
                            17 + ranges.iter().map(|(_, b)| 8 + b.len()).sum::<usize>()
                        }
                    })
                    .sum();
                out.reserve_exact(17 + most);
                out.push(RECORD_COMMIT);
                out.extend_from_slice(&seq.to_le_bytes());
                out.extend_from_slice(&page_count.to_le_bytes());
                out.extend_from_slice(&(changes.len() as u32).to_le_bytes());
                for (no, change) in changes {
                    out.extend_from_slice(&no.to_le_bytes());
                    match change {
                        PageChange::Image(bytes) => encode_image(&mut out, bytes),
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
                    }
                }
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
                        4 => PageChange::Image(decode_sparse_image(&mut r, page_size)?),
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
                        k => return Err(format!("unknown page change kind {k}")),
                    };
                    changes.push((no, change));
                }
                if r.left() != 0 {
                    return Err(format!("{} bytes after the last change", r.left()));
                }
                Ok(DbRecord::Commit {
                    seq,
                    page_count,
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

/// Builds a commit record from the pages a transaction changed: (number,
/// committed version it started from or None for a new page, new version).
/// A page last changed before `redo_point` (where the latest checkpoint
/// began), or new, is logged whole, so that a torn write of it during the
/// next checkpoint can be repaired from the log; other pages as byte ranges.
/// Unchanged pages are left out. Returns the record and the new versions.
pub fn build_commit(
    changed: impl IntoIterator<Item = (PageNo, Option<super::PageRef>, super::PageRef)>,
    redo_point: Lsn,
    seq: u64,
    page_count: u32,
) -> (DbRecord, Vec<(PageNo, super::PageBuf)>) {
    let mut changes = Vec::new();
    let mut pages = Vec::new();
    for (no, base, new) in changed {
        let change = match &base {
            Some(base) if base[..] == new[..] => continue,
            Some(base) if page::page_lsn(base) >= redo_point => PageChange::Ranges {
                before: page::page_lsn(base),
                ranges: diff(base, &new),
            },
            _ => PageChange::Image(new[LOGGED_FROM..].to_vec()),
        };
        changes.push((no, change));
        pages.push((
            no,
            std::sync::Arc::try_unwrap(new).unwrap_or_else(|shared| (*shared).clone()),
        ));
    }
    let record = DbRecord::Commit {
        seq,
        page_count,
        changes,
    };
    (record, pages)
}

/// What redo did with one change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// The page was older; it now carries the record's change and LSN.
    Applied,
    /// The page already holds this change (or a later one).
    Skipped,
}

/// Applies `change` from the record at `lsn` to `page`, whose current LSN is
/// `current` (None: the page in the file is unreadable: torn, zero or absent).
/// Returns `Err(found)` for a lost flush.
pub fn apply(page: &mut [u8], current: Option<Lsn>, change: &PageChange, lsn: Lsn) -> Result<Applied, Option<Lsn>> {
    if current.is_some_and(|c| c >= lsn) {
        return Ok(Applied::Skipped);
    }
    match change {
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
