//! Separated values: values of at least a sixteenth of the node area (that
//! would still fit inline) can live in a *values tree*
//! beside their table, keyed by an id in append order, while the table's
//! leaf holds a 16-byte descriptor.
//!
//! Why: at random keys a leaf of such values takes only a few inserts before
//! it splits or is written again, so every commit wrote a page of its own.
//! Descriptors keep the table's leaves dense (and in the cache), and the
//! values go where the ids rise: to the right edge of the values tree, one
//! page after another. Readers never see the difference: every read
//! resolves a descriptor to the value's bytes.
//!
//! A values tree holds inline values only, under 8-byte big-endian ids; an
//! id is the highest in the tree plus one. Operations on a values tree never
//! follow a descriptor, so damage cannot make them recurse.

use super::Geometry;
use super::node::{CellValue, Malformed};
use super::tree::{self, Role, corrupt, open_node};
use crate::pager::page::PageNo;
use crate::pager::{DbError, PageRead, PageWrite, Result};

/// Bytes of a values tree's key: the id, big-endian.
pub(crate) const VALUE_ID_LEN: usize = 8;

impl Geometry {
    /// Whether a value of `len` bytes under a key of `key_len` bytes is
    /// separated when its table has a values tree.
    pub fn separates(&self, key_len: usize, len: u64) -> bool {
        // The value's own length: a long key with a short value gains nothing.
        len >= (self.usable / 16) as u64 && self.is_inline(key_len, len) && self.is_inline(VALUE_ID_LEN, len)
    }
}

/// Checks a separated descriptor read from a leaf.
pub(crate) fn check_descriptor(len: u32, tree: PageNo, id: u64) -> std::result::Result<(), String> {
    if tree < crate::pager::FIRST_DATA_PAGE {
        return Err(format!("separated value in page {tree}, which holds no tree"));
    }
    if id == 0 || len == 0 {
        return Err(format!("separated value with id {id} and length {len}"));
    }
    Ok(())
}

fn bad<S: PageRead + ?Sized>(store: &S, no: PageNo, reason: String) -> DbError {
    corrupt(store, no, Malformed { pos: 0, reason })
}

/// The bytes of the separated value `(tree, id)` of `len` bytes, named by a
/// cell of leaf `leaf`.
pub(crate) fn read<S: PageRead + ?Sized>(store: &S, leaf: PageNo, len: u32, tree: PageNo, id: u64) -> Result<Vec<u8>> {
    check_descriptor(len, tree, id).map_err(|reason| bad(store, leaf, reason))?;
    let found = tree::lookup(store, tree, &id.to_be_bytes(), |no, value| match value {
        CellValue::Inline(bytes) if bytes.len() == len as usize => Ok(bytes.to_vec()),
        CellValue::Inline(bytes) => Err(bad(
            store,
            no,
            format!(
                "separated value {id} holds {} bytes where leaf {leaf} says {len}",
                bytes.len()
            ),
        )),
        _ => Err(bad(store, no, format!("values tree entry {id} is not an inline value"))),
    })?;
    found.ok_or_else(|| {
        bad(
            store,
            leaf,
            format!("separated value {id} is missing from the values tree at page {tree}"),
        )
    })
}

/// The highest id in the values tree at `tree`, 0 if it is empty.
fn last_id<S: PageRead + ?Sized>(store: &S, tree: PageNo) -> Result<u64> {
    let (mut no, mut level) = (tree, None);
    loop {
        let page = store.page(no)?;
        let node = open_node(store, no, &page, level)?;
        let count = node.count();
        if node.is_leaf() {
            if count == 0 {
                return Ok(0);
            }
            let key = node.key(count - 1).map_err(|m| corrupt(store, no, m))?;
            let id: [u8; VALUE_ID_LEN] = key
                .try_into()
                .map_err(|_| bad(store, no, format!("values tree key of {} bytes, not an id", key.len())))?;
            return Ok(u64::from_be_bytes(id));
        }
        no = node.child(count).map_err(|m| corrupt(store, no, m))?;
        level = Some(node.level() - 1);
    }
}

/// Adds `value` to the values tree at `tree`; returns its id.
pub(crate) fn store<S: PageWrite + ?Sized>(store: &mut S, geo: &Geometry, tree: PageNo, value: &[u8]) -> Result<u64> {
    let id = last_id(store, tree)?
        .checked_add(1)
        .ok_or_else(|| bad(store, tree, "the values tree has used every id".to_string()))?;
    let cell = super::node::Cell::leaf(&id.to_be_bytes(), CellValue::Inline(value));
    if tree::put_cell(store, geo, tree, &id.to_be_bytes(), cell, Role::Values)? {
        return Err(bad(store, tree, format!("values tree id {id} was above its highest")));
    }
    Ok(id)
}

/// Removes the separated value `(tree, id)` named by a cell of leaf `leaf`.
pub(crate) fn remove<S: PageWrite + ?Sized>(store: &mut S, leaf: PageNo, tree: PageNo, id: u64) -> Result<()> {
    if !tree::delete_in(store, tree, &id.to_be_bytes(), Role::Values)? {
        return Err(bad(
            store,
            leaf,
            format!("separated value {id} is missing from the values tree at page {tree}"),
        ));
    }
    Ok(())
}
