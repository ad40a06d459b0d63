//! Slotted node pages: the byte layout of B+tree leaves and branches.
//!
//! After the 32-byte page header (owned by the pager), offsets from the page
//! start, integers little-endian unless said otherwise:
//!
//! | offset | size | field |
//! |---|---|---|
//! | 32 | 1 | level: 0 in a leaf (kind Leaf), 1..=31 in a branch (kind Branch) |
//! | 33 | 1 | zero |
//! | 34 | 2 | cell count `n` |
//! | 36 | 4 | content start: lowest byte used by cells; cells lie in [content start, page size) |
//! | 40 | 4 | garbage: bytes in the content area not used by any cell (freed cells) |
//! | 44 | 4 | leftmost child (branch): the subtree of keys below the first key; 0 in a leaf |
//! | 48 | 2 | prefix length `p`: every key in the node starts with the first key's first `p` bytes |
//! | 50 | 2 | zero |
//! | 52 | 6 × n | slots, in ascending key order: cell offset (u16), then the key's head (u32) |
//!
//! A key's head is its bytes `p..p + 4`, zero-padded, read big-endian: when
//! two keys' heads differ they order as their heads do, so a binary search
//! compares within the slot array and reads a cell only on a tie.
//! `p` need not be the longest common prefix (a delete leaves it as it was);
//! an insert at either end that shortens it rewrites the node.
//!
//! Free space lies between the slots and the content start; cells are written
//! downwards from the page end. Free space = gap + garbage; when the gap is too
//! small for a new cell the node is compacted (rewritten without garbage).
//!
//! Leaf cell: `key_len: u16 | flags: u8 | value_len: u16 | key | value`.
//! Flags bit 0 set: the value is a 12-byte long value descriptor, `total
//! length: u64 | root page: u32` (see long.rs); other flag bits are zero.
//!
//! Branch cell: `key_len: u16 | child: u32 | key`. The child holds the keys
//! `k` with `key <= k < next key` (the next cell's key, or the branch's upper
//! bound). Separators are the shortest prefix of the right node's first key
//! that is above the left node's last key, so they need not be stored keys.
//!
//! A child of a node at level `l` is at level `l - 1`, so all leaves are at
//! the same depth and a descent takes at most 32 steps, even in a damaged file.
//! Every cell (slot included) takes at most a quarter of the area after the
//! node header, so four cells always fit and a split always succeeds.

use crate::pager::page::{self, MAX_PAGE_SIZE, PAGE_HEADER_LEN, PageKind, PageNo};
use std::cmp::Ordering;

mod edit;

pub(crate) use edit::{Cell, HOLE_SEARCH_CELLS, footprint, insert_cell, remove_cell, truncate_cells, write_node};

const LEVEL_AT: usize = PAGE_HEADER_LEN;
const COUNT_AT: usize = 34;
const CONTENT_AT: usize = 36;
const GARBAGE_AT: usize = 40;
const LEFTMOST_AT: usize = 44;
const PREFIX_AT: usize = 48;
/// End of the node header: the first slot.
pub(crate) const NODE_HEADER_END: usize = 52;
/// A slot: cell offset (2 bytes) and key head (4 bytes).
pub(crate) const SLOT_LEN: usize = 6;
pub(crate) const LEAF_CELL_HEADER: usize = 5;
const BRANCH_CELL_HEADER: usize = 6;
pub(crate) const LONG_DESCRIPTOR_LEN: usize = 12;
const FLAG_LONG: u8 = 1;
/// The value lies in a values tree: length u32, tree root u32, id u64.
pub(crate) const SEPARATED_DESCRIPTOR_LEN: usize = 16;
const FLAG_SEPARATED: u8 = 2;
/// Highest level of a node. A branch has at least two children, so a tree
/// of u32 page numbers never needs more.
pub(crate) const MAX_LEVEL: u8 = 31;

/// A layout fault found in a node: where in the page, and what.
#[derive(Debug, Clone)]
pub(crate) struct Malformed {
    pub pos: usize,
    pub reason: String,
}

pub(crate) type NodeResult<T> = std::result::Result<T, Malformed>;

pub(crate) fn malformed<T>(pos: usize, reason: impl Into<String>) -> NodeResult<T> {
    Err(Malformed {
        pos,
        reason: reason.into(),
    })
}

fn read_u16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn read_u32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn read_u64(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// Bytes `prefix_len..prefix_len + 4` of `key`, zero-padded, big-endian.
fn head(key: &[u8], prefix_len: usize) -> u32 {
    let mut bytes = [0u8; 4];
    let rest = key.get(prefix_len..).unwrap_or_default();
    let n = rest.len().min(4);
    bytes[..n].copy_from_slice(&rest[..n]);
    u32::from_be_bytes(bytes)
}

/// Length of the longest common prefix of `a` and `b`.
fn common_prefix(a: &[u8], b: &[u8]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// A leaf cell's value, borrowed from the page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CellValue<'a> {
    Inline(&'a [u8]),
    Long {
        len: u64,
        root: PageNo,
    },
    /// Entry `id` (its 8 bytes big-endian as the key) of the values tree
    /// rooted at `tree`, `len` bytes.
    Separated {
        len: u32,
        tree: PageNo,
        id: u64,
    },
}

/// Where one cell lies in its page.
#[derive(Debug, Clone, Copy)]
struct Span {
    start: usize,
    key_start: usize,
    key_end: usize,
    end: usize,
}

/// A read-only view of a node page whose header has been checked. Cells are
/// checked as they are read, so a damaged cell yields [`Malformed`].
#[derive(Clone, Copy)]
pub(crate) struct Node<'a> {
    page: &'a [u8],
    level: u8,
    count: usize,
    content_start: usize,
    garbage: usize,
    leftmost: PageNo,
    prefix_len: usize,
}

impl<'a> Node<'a> {
    /// Checks the header of a leaf or branch page.
    pub fn open(page: &'a [u8]) -> NodeResult<Node<'a>> {
        let len = page.len();
        if !(NODE_HEADER_END..=MAX_PAGE_SIZE).contains(&len) {
            return malformed(0, format!("a page of {len} bytes cannot hold a node"));
        }
        let level = page[LEVEL_AT];
        match page::page_kind(page) {
            Some(PageKind::Leaf) if level == 0 => {}
            Some(PageKind::Branch) if (1..=MAX_LEVEL).contains(&level) => {}
            Some(kind @ (PageKind::Leaf | PageKind::Branch)) => {
                return malformed(LEVEL_AT, format!("level {level} in a {kind:?} page"));
            }
            _ => return malformed(16, format!("page kind {} is not a B+tree node", page[16])),
        }
        // The page is at least NODE_HEADER_END bytes long: header reads succeed.
        let field = |at| read_u32(page, at).unwrap_or(u32::MAX) as usize;
        let count = usize::from(read_u16(page, COUNT_AT).unwrap_or(u16::MAX));
        let content_start = field(CONTENT_AT);
        let garbage = field(GARBAGE_AT);
        let leftmost = read_u32(page, LEFTMOST_AT).unwrap_or(0);
        let prefix_len = usize::from(read_u16(page, PREFIX_AT).unwrap_or(0));
        let slots_end = NODE_HEADER_END + SLOT_LEN * count;
        if slots_end > content_start || content_start > len {
            return malformed(
                CONTENT_AT,
                format!("{count} slots end at {slots_end}, content starts at {content_start}, page ends at {len}"),
            );
        }
        if garbage > len - content_start {
            return malformed(
                GARBAGE_AT,
                format!("{garbage} bytes of garbage in a smaller content area"),
            );
        }
        if (level == 0) != (leftmost == 0) {
            return malformed(LEFTMOST_AT, format!("leftmost child {leftmost} at level {level}"));
        }
        Ok(Node {
            page,
            level,
            count,
            content_start,
            garbage,
            leftmost,
            prefix_len,
        })
    }

    pub fn level(&self) -> u8 {
        self.level
    }

    pub fn is_leaf(&self) -> bool {
        self.level == 0
    }

    /// Number of cells (keys).
    pub fn count(&self) -> usize {
        self.count
    }

    pub fn leftmost(&self) -> PageNo {
        self.leftmost
    }

    /// Bytes used by slots and cells.
    pub fn used(&self) -> usize {
        SLOT_LEN * self.count + (self.page.len() - self.content_start - self.garbage)
    }

    /// Bytes a new cell (with its slot) may take, after compaction if needed.
    pub fn free_space(&self) -> usize {
        self.content_start - (NODE_HEADER_END + SLOT_LEN * self.count) + self.garbage
    }

    fn span(&self, i: usize) -> NodeResult<Span> {
        if i >= self.count {
            return malformed(COUNT_AT, format!("cell {i} asked of a node of {} cells", self.count));
        }
        let slot_at = NODE_HEADER_END + SLOT_LEN * i;
        let start = usize::from(read_u16(self.page, slot_at).unwrap_or(0));
        if start < self.content_start || start >= self.page.len() {
            return malformed(slot_at, format!("cell {i} at {start}, outside the content area"));
        }
        let key_len = read_u16(self.page, start).map(usize::from);
        let (key_start, tail) = if self.is_leaf() {
            let flags = self.page.get(start + 2).copied();
            let value_len = read_u16(self.page, start + 3).map(usize::from);
            match (flags, value_len) {
                (Some(0), Some(len)) => (start + LEAF_CELL_HEADER, len),
                (Some(FLAG_LONG), Some(LONG_DESCRIPTOR_LEN)) => (start + LEAF_CELL_HEADER, LONG_DESCRIPTOR_LEN),
                (Some(FLAG_SEPARATED), Some(SEPARATED_DESCRIPTOR_LEN)) => {
                    (start + LEAF_CELL_HEADER, SEPARATED_DESCRIPTOR_LEN)
                }
                (Some(flags), Some(len)) => {
                    return malformed(
                        start + 2,
                        format!("cell {i}: flags {flags:#x} with a value of {len} bytes"),
                    );
                }
                _ => return malformed(start, format!("cell {i} header runs past the page end")),
            }
        } else {
            (start + BRANCH_CELL_HEADER, 0)
        };
        let Some(key_len) = key_len else {
            return malformed(start, format!("cell {i} header runs past the page end"));
        };
        let key_end = key_start + key_len;
        let end = key_end + tail;
        if end > self.page.len() {
            return malformed(
                start,
                format!("cell {i} of {} bytes runs past the page end", end - start),
            );
        }
        Ok(Span {
            start,
            key_start,
            key_end,
            end,
        })
    }

    pub fn key(&self, i: usize) -> NodeResult<&'a [u8]> {
        let span = self.span(i)?;
        Ok(&self.page[span.key_start..span.key_end])
    }

    /// The value of leaf cell `i`.
    pub fn value(&self, i: usize) -> NodeResult<CellValue<'a>> {
        Ok(self.entry(i)?.1)
    }

    /// The key and value of leaf cell `i`.
    pub fn entry(&self, i: usize) -> NodeResult<(&'a [u8], CellValue<'a>)> {
        let span = self.span(i)?;
        if !self.is_leaf() {
            return malformed(LEVEL_AT, "a branch holds no values");
        }
        let key = &self.page[span.key_start..span.key_end];
        let bytes = &self.page[span.key_end..span.end];
        // span() checked the flags and each descriptor's exact length.
        match self.page[span.start + 2] {
            FLAG_LONG => {
                let len = read_u64(bytes, 0).unwrap_or(0);
                let root = read_u32(bytes, 8).unwrap_or(0);
                Ok((key, CellValue::Long { len, root }))
            }
            FLAG_SEPARATED => {
                let len = read_u32(bytes, 0).unwrap_or(0);
                let tree = read_u32(bytes, 4).unwrap_or(0);
                let id = read_u64(bytes, 8).unwrap_or(0);
                Ok((key, CellValue::Separated { len, tree, id }))
            }
            _ => Ok((key, CellValue::Inline(bytes))),
        }
    }

    /// Child `j` of a branch, `0..=count`: 0 is the leftmost child, `j` the
    /// child of cell `j - 1`.
    pub fn child(&self, j: usize) -> NodeResult<PageNo> {
        if self.is_leaf() {
            return malformed(LEVEL_AT, "a leaf has no children");
        }
        if j == 0 {
            return Ok(self.leftmost);
        }
        let span = self.span(j - 1)?;
        match read_u32(self.page, span.start + 2) {
            Some(0) | None => malformed(span.start + 2, format!("cell {} has no child", j - 1)),
            Some(child) => Ok(child),
        }
    }

    /// The first `prefix_len` bytes of every key.
    fn prefix(&self) -> NodeResult<&'a [u8]> {
        match self.key(0)?.get(..self.prefix_len) {
            Some(prefix) => Ok(prefix),
            None => malformed(
                PREFIX_AT,
                format!("prefix of {} bytes is longer than key 0", self.prefix_len),
            ),
        }
    }

    /// Key `i` without the node prefix.
    fn suffix(&self, i: usize) -> NodeResult<&'a [u8]> {
        match self.key(i)?.get(self.prefix_len..) {
            Some(suffix) => Ok(suffix),
            None => malformed(PREFIX_AT, format!("key {i} is shorter than the node prefix")),
        }
    }

    fn slot_head(&self, i: usize) -> u32 {
        // i < count: the slot lies before the content start, inside the page.
        let at = NODE_HEADER_END + SLOT_LEN * i + 2;
        let bytes = self.page.get(at..at + 4).and_then(|b| b.try_into().ok());
        bytes.map_or(0, u32::from_be_bytes)
    }

    /// `Ok(i)` if cell `i` has `key`, else `Err(i)` where `key` would go.
    pub fn search(&self, key: &[u8]) -> NodeResult<Result<usize, usize>> {
        if self.count == 0 {
            return Ok(Err(0));
        }
        let p = self.prefix_len;
        if p > 0 {
            // Every key starts with the prefix: a key that does not is below
            // or above them all.
            match key[..p.min(key.len())].cmp(self.prefix()?) {
                Ordering::Less => return Ok(Err(0)),
                Ordering::Greater => return Ok(Err(self.count)),
                Ordering::Equal if key.len() < p => return Ok(Err(0)),
                Ordering::Equal => {}
            }
        }
        let (target, rest) = (head(key, p), &key[p..]);
        let (mut lo, mut hi) = (0, self.count);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let order = match self.slot_head(mid).cmp(&target) {
                Ordering::Equal => self.suffix(mid)?.cmp(rest),
                order => order,
            };
            match order {
                Ordering::Less => lo = mid + 1,
                Ordering::Greater => hi = mid,
                Ordering::Equal => return Ok(Ok(mid)),
            }
        }
        Ok(Err(lo))
    }

    /// Number of keys below `key` (`inclusive`: at or below).
    pub fn rank(&self, key: &[u8], inclusive: bool) -> NodeResult<usize> {
        Ok(match self.search(key)? {
            Ok(i) if inclusive => i + 1,
            Ok(i) | Err(i) => i,
        })
    }

    /// The index of the child whose subtree may hold `key`.
    pub fn child_index(&self, key: &[u8]) -> NodeResult<usize> {
        self.rank(key, true)
    }

    /// Copies of all cells, in key order.
    pub fn cells(&self) -> NodeResult<Vec<Cell>> {
        (0..self.count)
            .map(|i| {
                let span = self.span(i)?;
                Ok(Cell::from_page(
                    self.page[span.start..span.end].to_vec(),
                    self.is_leaf(),
                ))
            })
            .collect()
    }

    /// Checks what reads do not: cells lie in the content area without
    /// overlapping, the garbage count is exact, keys share the prefix and
    /// slots hold their heads.
    pub fn check_layout(&self) -> NodeResult<()> {
        let mut spans = Vec::with_capacity(self.count);
        let prefix = if self.count > 0 { self.prefix()? } else { &[] };
        for i in 0..self.count {
            let span = self.span(i)?;
            spans.push((span.start, span.end));
            let key = self.key(i)?;
            if !key.starts_with(prefix) {
                return malformed(span.start, format!("key {i} does not start with the node prefix"));
            }
            if self.slot_head(i) != head(key, self.prefix_len) {
                return malformed(
                    NODE_HEADER_END + SLOT_LEN * i + 2,
                    format!("slot {i} holds a wrong key head"),
                );
            }
        }
        spans.sort_unstable();
        let mut used = 0;
        for pair in spans.windows(2) {
            if pair[0].1 > pair[1].0 {
                return malformed(pair[1].0, format!("cells at {} and {} overlap", pair[0].0, pair[1].0));
            }
        }
        for (start, end) in &spans {
            used += end - start;
        }
        let area = self.page.len() - self.content_start;
        if used + self.garbage != area {
            return malformed(
                GARBAGE_AT,
                format!(
                    "cells use {used} bytes and garbage is {}, content area is {area}",
                    self.garbage
                ),
            );
        }
        Ok(())
    }
}
