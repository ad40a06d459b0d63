//! B+trees of variable-length keys and values over pages, with long values.
//!
//! A tree is named by its root page, which never changes for the life of the
//! tree: a root split moves the root's cells into two new children, and a root
//! left with one child takes that child's cells back. Keys are compared as
//! bytes. Values whose leaf cell would take more than a quarter of the node
//! area are stored as long values, in pages of their own (`long.rs`); values
//! of a sixteenth to a quarter may be kept in a values tree beside the table
//! (`separate.rs`, [`put_separating`]).
//!
//! Files: `node.rs` (slotted page layout), `tree.rs` (search, insert, delete),
//! `rebalance.rs` (split, merge, redistribution), `long.rs` (long values),
//! `cursor.rs` (ordered iteration), `verify.rs` (invariant checker), `mem.rs`
//! (in-memory page store for tests and benchmarks).
//!
//! Write operations leave the tree in an unspecified (but never unsafe) state
//! when they fail with an error; the write transaction must then be abandoned.
//! The exception is an error from the reader of [`put_stream`]: the tree is
//! unchanged and every page written for the value is freed again.

mod built;
mod cursor;
mod inspect;
mod long;
mod mem;
mod node;
mod rebalance;
mod separate;
mod tree;
mod verify;

#[cfg(test)]
mod corruption_tests;
#[cfg(test)]
mod separate_tests;
#[cfg(test)]
mod tests;

pub(crate) use built::put_built_in;
pub use built::{ValueBuilder, put_built};
pub use cursor::{Range, ValueRef, iter, range, visit_range};
pub use inspect::{CellSummary, NodeSummary, inspect_node};
pub use long::{read_long, read_value};
pub use mem::MemStore;
pub(crate) use tree::{Role, put_stream_in};
pub use tree::{
    create, delete, delete_with_values, drop_tree, drop_with_values, get, get_bytes, put, put_separating, put_stream,
};
pub use verify::{Problem, VerifyReport, verify, verify_with_values};

use crate::pager::page::{MAX_PAGE_SIZE, MIN_PAGE_SIZE, PageNo};
use crate::pager::{DbError, Result};

/// Keys are never longer than this, whatever the page size.
pub const MAX_KEY_LEN_CAP: usize = 2048;

/// The longest value a tree stores: 4 GiB - 1.
pub const MAX_VALUE_LEN: u64 = u32::MAX as u64;

/// The longest key a tree with pages of `page_size` bytes accepts: an eighth
/// of the node area, at most [`MAX_KEY_LEN_CAP`], so that at least four cells
/// of any kind always fit in a node.
pub fn max_key_len(page_size: usize) -> usize {
    (page_size.saturating_sub(node::NODE_HEADER_END) / 8).min(MAX_KEY_LEN_CAP)
}

/// The longest value stored inline (in the leaf) with a key of `key_len`
/// bytes; longer values are stored as long values.
pub fn max_inline_value_len(page_size: usize, key_len: usize) -> usize {
    Geometry::of(page_size)
        .max_cell
        .saturating_sub(node::LEAF_CELL_HEADER + key_len)
}

/// A value as stored: inline bytes, or the descriptor of a long value (read it
/// with [`read_long`] or [`read_value`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// The value's bytes.
    Inline(Vec<u8>),
    /// A value stored in pages of its own.
    Long(LongValue),
}

impl Value {
    /// The value's length in bytes.
    pub fn len(&self) -> u64 {
        match self {
            Value::Inline(bytes) => bytes.len() as u64,
            Value::Long(long) => long.len,
        }
    }

    /// Whether the value is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The descriptor of a long value: its length and the root of its pages.
/// Valid while the entry holding it is unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LongValue {
    pub(crate) len: u64,
    pub(crate) root: PageNo,
}

impl LongValue {
    /// The value's length in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the value is empty (never, for a stored long value).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The root page of the value's page structure.
    pub fn root(&self) -> PageNo {
        self.root
    }
}

/// Sizes derived from the page size, shared by every part of the tree.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Geometry {
    pub page_size: usize,
    /// Bytes for slots and cells: the page minus both headers.
    pub usable: usize,
    /// A non-root node using fewer bytes (slots and cells) is underfull.
    pub min_fill: usize,
    /// The largest cell, slot excluded: a quarter of `usable`, less the slot.
    pub max_cell: usize,
    pub max_key: usize,
}

impl Geometry {
    /// The geometry of a page size (not checked; see [`Geometry::checked`]).
    fn of(page_size: usize) -> Geometry {
        let usable = page_size.saturating_sub(node::NODE_HEADER_END);
        Geometry {
            page_size,
            usable,
            min_fill: usable / 4,
            max_cell: (usable / 4).saturating_sub(node::SLOT_LEN),
            max_key: max_key_len(page_size),
        }
    }

    /// The geometry of the store's page size, which must be a power of two
    /// between the pager's limits.
    pub fn checked(page_size: usize) -> Result<Geometry> {
        if !(MIN_PAGE_SIZE..=MAX_PAGE_SIZE).contains(&page_size) || !page_size.is_power_of_two() {
            return Err(DbError::InvalidArgument(format!(
                "page size {page_size} is not a power of two between {MIN_PAGE_SIZE} and {MAX_PAGE_SIZE}"
            )));
        }
        Ok(Geometry::of(page_size))
    }

    /// Whether a value of `len` bytes with a key of `key_len` bytes is inline.
    pub fn is_inline(&self, key_len: usize, len: u64) -> bool {
        len <= self.max_cell.saturating_sub(node::LEAF_CELL_HEADER + key_len) as u64
    }
}
