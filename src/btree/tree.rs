//! Tree operations: create, search, insert, delete, drop.
//!
//! Reads descend with [`PageRead::page`]; a write takes the transaction's
//! copy ([`PageWrite::page_mut`]) only of pages it changes. A descent checks
//! that each child is one level below its parent, so it ends within
//! `MAX_LEVEL + 1` steps whatever the pages hold.

use super::long::{self, VALUE_READER};
use super::node::{self, Cell, CellValue, Malformed, Node, NodeResult};
use super::rebalance::{self, Pending};
use super::separate;
use super::{Geometry, LongValue, MAX_VALUE_LEN, Value};
use crate::pager::page::{PageKind, PageNo};
use crate::pager::{DbError, PageRead, PageWrite, Result};
use std::collections::HashSet;
use std::io::Read;

/// The error for a malformed node on page `no`.
pub(crate) fn corrupt<S: PageRead + ?Sized>(store: &S, no: PageNo, m: Malformed) -> DbError {
    let offset = u64::from(no) * store.page_size() as u64 + m.pos as u64;
    DbError::corrupt_page(store.file_path(), no, offset, m.reason)
}

/// Opens `page` (page `no`) as a node; `level`: the level it must be at
/// (`None` for a root, which may be at any level).
pub(crate) fn open_node<'p, S: PageRead + ?Sized>(
    store: &S,
    no: PageNo,
    page: &'p [u8],
    level: Option<u8>,
) -> Result<Node<'p>> {
    if page.len() != store.page_size() {
        let reason = format!(
            "page of {} bytes in a store of {}-byte pages",
            page.len(),
            store.page_size()
        );
        return Err(corrupt(store, no, Malformed { pos: 0, reason }));
    }
    let node = Node::open(page).map_err(|m| corrupt(store, no, m))?;
    match level {
        Some(level) if node.level() != level => {
            let reason = format!("node at level {} where level {level} belongs", node.level());
            Err(corrupt(store, no, Malformed { pos: 32, reason }))
        }
        _ => Ok(node),
    }
}

/// A leaf cell's value, owned: a long value's descriptor checked, a
/// separated value read.
pub(crate) fn owned_value<S: PageRead + ?Sized>(store: &S, no: PageNo, value: CellValue<'_>) -> Result<Value> {
    match value {
        CellValue::Inline(bytes) => Ok(Value::Inline(bytes.to_vec())),
        CellValue::Long { len, root } => Ok(Value::Long(check_long(store, no, len, root)?)),
        CellValue::Separated { len, tree, id } => Ok(Value::Inline(separate::read(store, no, len, tree, id)?)),
    }
}

/// Which kind of tree an operation works on. A table's separated values
/// must lie in its own values tree (`Table(Some(root))`; a table without
/// one holds none). A values tree holds inline values only, and its
/// operations never follow a descriptor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    Table(Option<PageNo>),
    Values,
}

/// What a cell of leaf `no` holds beyond itself, checked.
fn stored<S: PageRead + ?Sized>(store: &S, no: PageNo, value: CellValue<'_>, role: Role) -> Result<Old> {
    match (value, role) {
        (CellValue::Inline(_), _) => Ok(Old::Inline),
        (CellValue::Long { len, root }, Role::Table(_)) => check_long(store, no, len, root).map(Old::Long),
        (CellValue::Separated { len, tree, id }, Role::Table(values)) => {
            separate::check_descriptor(len, tree, id)
                .map_err(|reason| corrupt(store, no, Malformed { pos: 0, reason }))?;
            if values != Some(tree) {
                // Following it would change another tree than this table's.
                let reason = format!("separated value in page {tree}, not this table's values tree {values:?}");
                return Err(corrupt(store, no, Malformed { pos: 0, reason }));
            }
            Ok(Old::Separated { tree, id })
        }
        (_, Role::Values) => {
            let reason = "a values tree holds a value that is not inline".to_string();
            Err(corrupt(store, no, Malformed { pos: 0, reason }))
        }
    }
}

/// Frees what a removed cell of leaf `leaf` held beyond itself.
fn release<S: PageWrite + ?Sized>(store: &mut S, geo: &Geometry, leaf: PageNo, old: Old) -> Result<()> {
    match old {
        Old::Long(long) => long::free_long(store, geo, &long),
        Old::Separated { tree, id } => separate::remove(store, leaf, tree, id),
        Old::Absent | Old::Inline => Ok(()),
    }
}

pub(crate) fn check_long<S: PageRead + ?Sized>(store: &S, no: PageNo, len: u64, root: PageNo) -> Result<LongValue> {
    long::check_descriptor(len, root).map_err(|reason| corrupt(store, no, Malformed { pos: 0, reason }))
}

/// Creates an empty tree (one empty leaf) and returns its root page.
pub fn create<S: PageWrite + ?Sized>(store: &mut S) -> Result<PageNo> {
    Geometry::checked(store.page_size())?;
    let no = store.allocate(PageKind::Leaf)?;
    let written = node::write_node(store.page_mut(no)?, 0, 0, &[]);
    written.map_err(|m| corrupt(store, no, m))?;
    Ok(no)
}

/// The value stored under `key` (a long value as its descriptor, a
/// separated one read). A key longer than the limit is never stored.
pub fn get<S: PageRead + ?Sized>(store: &S, root: PageNo, key: &[u8]) -> Result<Option<Value>> {
    lookup(store, root, key, |no, value| owned_value(store, no, value))
}

/// `found` applied to the cell of `key` and its leaf's page number.
pub(crate) fn lookup<S, T, F>(store: &S, root: PageNo, key: &[u8], found: F) -> Result<Option<T>>
where
    S: PageRead + ?Sized,
    F: FnOnce(PageNo, CellValue<'_>) -> Result<T>,
{
    let geo = Geometry::checked(store.page_size())?;
    if key.len() > geo.max_key {
        return Ok(None);
    }
    let (mut no, mut level) = (root, None);
    loop {
        let page = store.page(no)?;
        let node = open_node(store, no, &page, level)?;
        if node.is_leaf() {
            return match node.search(key).map_err(|m| corrupt(store, no, m))? {
                Ok(i) => {
                    let value = node.value(i).map_err(|m| corrupt(store, no, m))?;
                    Ok(Some(found(no, value)?))
                }
                Err(_) => Ok(None),
            };
        }
        let child = node.child_index(key).and_then(|j| node.child(j));
        no = child.map_err(|m| corrupt(store, no, m))?;
        level = Some(node.level() - 1);
    }
}

/// The bytes stored under `key`, a long value read whole.
pub fn get_bytes<S: PageRead + ?Sized>(store: &S, root: PageNo, key: &[u8]) -> Result<Option<Vec<u8>>> {
    match get(store, root, key)? {
        Some(value) => Ok(Some(long::read_value(store, &value)?)),
        None => Ok(None),
    }
}

/// What a key's leaf held before a change.
#[derive(Debug, Clone, Copy)]
enum Old {
    Absent,
    Inline,
    Long(LongValue),
    Separated { tree: PageNo, id: u64 },
}

/// The way from the root to the leaf where a key is or belongs.
struct Descent {
    /// Each branch passed and the index of the child taken.
    path: Vec<(PageNo, usize)>,
    leaf: PageNo,
    /// As [`Node::search`] in the leaf.
    found: std::result::Result<usize, usize>,
    old: Old,
}

fn descend<S: PageRead + ?Sized>(store: &S, root: PageNo, key: &[u8], role: Role) -> Result<Descent> {
    let (mut path, mut no, mut level) = (Vec::new(), root, None);
    loop {
        let page = store.page(no)?;
        let node = open_node(store, no, &page, level)?;
        if node.is_leaf() {
            let found = node.search(key).map_err(|m| corrupt(store, no, m))?;
            let old = match found {
                Err(_) => Old::Absent,
                Ok(i) => stored(store, no, node.value(i).map_err(|m| corrupt(store, no, m))?, role)?,
            };
            return Ok(Descent {
                path,
                leaf: no,
                found,
                old,
            });
        }
        let j = node.child_index(key).map_err(|m| corrupt(store, no, m))?;
        path.push((no, j));
        no = node.child(j).map_err(|m| corrupt(store, no, m))?;
        level = Some(node.level() - 1);
    }
}

pub(super) fn check_key(geo: &Geometry, key: &[u8]) -> Result<()> {
    if key.len() > geo.max_key {
        return Err(DbError::KeyTooLarge {
            len: key.len(),
            max: geo.max_key,
        });
    }
    Ok(())
}

pub(super) fn check_len(len: u64) -> Result<()> {
    if len > MAX_VALUE_LEN {
        return Err(DbError::ValueTooLarge {
            len,
            max: MAX_VALUE_LEN,
        });
    }
    Ok(())
}

/// Stores `value` under `key`, replacing any value there (and freeing its
/// pages if it was long). Returns whether a value was replaced.
pub fn put<S: PageWrite + ?Sized>(store: &mut S, root: PageNo, key: &[u8], value: &[u8]) -> Result<bool> {
    put_in(store, root, key, value, Role::Table(None))
}

/// [`put`] in a tree of the given role, never separating.
pub(crate) fn put_in<S: PageWrite + ?Sized>(
    store: &mut S,
    root: PageNo,
    key: &[u8],
    value: &[u8],
    role: Role,
) -> Result<bool> {
    let geo = Geometry::checked(store.page_size())?;
    check_key(&geo, key)?;
    check_len(value.len() as u64)?;
    if geo.is_inline(key.len(), value.len() as u64) {
        put_cell(store, &geo, root, key, Cell::leaf(key, CellValue::Inline(value)), role)
    } else {
        let len = value.len() as u64;
        put_long(store, &geo, root, key, len, role, |store, geo| {
            long::write_long(store, geo, &mut &value[..], len)
        })
    }
}

/// Stores the next `len` bytes of `reader` under `key`, as [`put`], reading
/// one page at a time. A reader error (or end before `len` bytes) is a
/// [`DbError::Io`] with the file `<value reader>` and the offset in the value
/// of the page being read; the tree is then unchanged.
pub fn put_stream<S: PageWrite + ?Sized>(
    store: &mut S,
    root: PageNo,
    key: &[u8],
    reader: &mut dyn Read,
    len: u64,
) -> Result<bool> {
    put_stream_in(store, root, key, reader, len, Role::Table(None))
}

/// [`put_stream`] in a tree of the given role, never separating.
pub(crate) fn put_stream_in<S: PageWrite + ?Sized>(
    store: &mut S,
    root: PageNo,
    key: &[u8],
    reader: &mut dyn Read,
    len: u64,
    role: Role,
) -> Result<bool> {
    let geo = Geometry::checked(store.page_size())?;
    check_key(&geo, key)?;
    check_len(len)?;
    if geo.is_inline(key.len(), len) {
        // Inline values are under a quarter page.
        let mut value = vec![0u8; len as usize];
        reader
            .read_exact(&mut value)
            .map_err(|e| DbError::io(VALUE_READER, 0, "read value", e))?;
        put_cell(store, &geo, root, key, Cell::leaf(key, CellValue::Inline(&value)), role)
    } else {
        put_long(store, &geo, root, key, len, role, |store, geo| {
            long::write_long(store, geo, reader, len)
        })
    }
}

/// Stores under `key` the long value of `len` bytes that `write` writes
/// (returning its root); frees its pages again if the leaf cannot take it.
pub(super) fn put_long<S, W>(
    store: &mut S,
    geo: &Geometry,
    root: PageNo,
    key: &[u8],
    len: u64,
    role: Role,
    write: W,
) -> Result<bool>
where
    S: PageWrite + ?Sized,
    W: FnOnce(&mut S, &Geometry) -> Result<PageNo>,
{
    let value = LongValue {
        len,
        root: write(store, geo)?,
    };
    let cell = Cell::leaf(key, CellValue::Long { len, root: value.root });
    let put = put_cell(store, geo, root, key, cell, role);
    if put.is_err() {
        // Best effort: the transaction is abandoned after an error anyway.
        let _ = long::free_long(store, geo, &value);
    }
    put
}

/// Stores `value` under `key` as [`put`] does, except that a value of a
/// sixteenth to a quarter of the node goes to the values tree at `values`
/// (`Geometry::separates`), the table's leaf holding its descriptor.
pub fn put_separating<S: PageWrite + ?Sized>(
    store: &mut S,
    root: PageNo,
    values: PageNo,
    key: &[u8],
    value: &[u8],
) -> Result<bool> {
    let geo = Geometry::checked(store.page_size())?;
    check_key(&geo, key)?;
    check_len(value.len() as u64)?;
    if values == root {
        return Err(DbError::InvalidArgument(format!(
            "page {root} is both the table and its values tree"
        )));
    }
    let role = Role::Table(Some(values));
    if !geo.separates(key.len(), value.len() as u64) {
        return put_in(store, root, key, value, role);
    }
    let id = separate::store(store, &geo, values, value)?;
    // separates() holds the value under a quarter page, so its length fits.
    let len = value.len() as u32;
    let cell = Cell::leaf(key, CellValue::Separated { len, tree: values, id });
    let put = put_cell(store, &geo, root, key, cell, role);
    if put.is_err() {
        // Best effort: the transaction is abandoned after an error anyway.
        let _ = separate::remove(store, root, values, id);
    }
    put
}

enum LeafUpdate {
    Done(Pending),
    /// The leaf's cells with the new one, too many for a page.
    Overflow {
        cells: Vec<Cell>,
        /// Where the new cell is in `cells`; the others are the leaf's own.
        new: usize,
        appended: bool,
    },
}

pub(crate) fn put_cell<S: PageWrite + ?Sized>(
    store: &mut S,
    geo: &Geometry,
    root: PageNo,
    key: &[u8],
    cell: Cell,
    role: Role,
) -> Result<bool> {
    let descent = descend(store, root, key, role)?;
    let is_root = descent.path.is_empty();
    let update = update_leaf(store.page_mut(descent.leaf)?, geo, descent.found, cell, is_root);
    let pending = match update.map_err(|m| corrupt(store, descent.leaf, m))? {
        LeafUpdate::Done(pending) => pending,
        LeafUpdate::Overflow { cells, new, appended } => {
            rebalance::split_leaf(store, geo, descent.leaf, cells, new, is_root, appended)?
        }
    };
    rebalance::propagate(store, geo, &descent.path, pending)?;
    release(store, geo, descent.leaf, descent.old)?;
    Ok(!matches!(descent.old, Old::Absent))
}

/// Puts `cell` in the leaf in place, or returns all its cells if they no
/// longer fit.
fn update_leaf(
    page: &mut [u8],
    geo: &Geometry,
    found: std::result::Result<usize, usize>,
    cell: Cell,
    is_root: bool,
) -> NodeResult<LeafUpdate> {
    let idx = match found {
        Ok(i) => {
            node::remove_cell(page, i)?;
            i
        }
        Err(i) => i,
    };
    if node::insert_cell(page, idx, &cell)? {
        return Ok(LeafUpdate::Done(settle(&Node::open(page)?, geo, is_root)));
    }
    let mut cells = Node::open(page)?.cells()?;
    // insert_cell checked idx <= count before finding no room.
    let idx = idx.min(cells.len());
    cells.insert(idx, cell);
    let appended = idx + 1 == cells.len();
    Ok(LeafUpdate::Overflow {
        cells,
        new: idx,
        appended,
    })
}

fn settle(node: &Node<'_>, geo: &Geometry, is_root: bool) -> Pending {
    if !is_root && node.used() < geo.min_fill {
        Pending::Underflow
    } else {
        Pending::Done
    }
}

/// Removes `key` (freeing its long value's pages, or its separated value).
/// Returns whether it was there.
pub fn delete<S: PageWrite + ?Sized>(store: &mut S, root: PageNo, key: &[u8]) -> Result<bool> {
    delete_in(store, root, key, Role::Table(None))
}

/// [`delete`] in a table whose values tree is at `values`.
pub fn delete_with_values<S: PageWrite + ?Sized>(
    store: &mut S,
    root: PageNo,
    values: PageNo,
    key: &[u8],
) -> Result<bool> {
    delete_in(store, root, key, Role::Table(Some(values)))
}

pub(crate) fn delete_in<S: PageWrite + ?Sized>(store: &mut S, root: PageNo, key: &[u8], role: Role) -> Result<bool> {
    let geo = Geometry::checked(store.page_size())?;
    if key.len() > geo.max_key {
        return Ok(false);
    }
    let descent = descend(store, root, key, role)?;
    let Ok(idx) = descent.found else {
        return Ok(false);
    };
    let is_root = descent.path.is_empty();
    let page = store.page_mut(descent.leaf)?;
    let removed = node::remove_cell(page, idx).and_then(|()| Ok(settle(&Node::open(page)?, &geo, is_root)));
    let pending = removed.map_err(|m| corrupt(store, descent.leaf, m))?;
    rebalance::propagate(store, &geo, &descent.path, pending)?;
    release(store, &geo, descent.leaf, descent.old)?;
    Ok(true)
}

/// Frees every page of a tree without a values tree: nodes, long values
/// and the root.
pub fn drop_tree<S: PageWrite + ?Sized>(store: &mut S, root: PageNo) -> Result<()> {
    drop_nodes(store, root, Role::Table(None))
}

/// Frees a table's tree and its values tree `values` whole.
pub fn drop_with_values<S: PageWrite + ?Sized>(store: &mut S, root: PageNo, values: PageNo) -> Result<()> {
    if values == root {
        return Err(DbError::InvalidArgument(format!(
            "page {root} is both the table and its values tree"
        )));
    }
    drop_nodes(store, root, Role::Table(Some(values)))?;
    drop_nodes(store, values, Role::Values)
}

/// Frees the tree at `root`; the separated values of a table are left for
/// its values tree's own drop.
fn drop_nodes<S: PageWrite + ?Sized>(store: &mut S, root: PageNo, role: Role) -> Result<()> {
    let geo = Geometry::checked(store.page_size())?;
    let mut seen = HashSet::new();
    let mut stack = vec![(root, None)];
    while let Some((no, level)) = stack.pop() {
        if !seen.insert(no) {
            let reason = "page reached twice in the tree".to_string();
            return Err(corrupt(store, no, Malformed { pos: 0, reason }));
        }
        let mut held = Vec::new();
        {
            let page = store.page(no)?;
            let node = open_node(store, no, &page, level)?;
            if node.is_leaf() {
                for i in 0..node.count() {
                    let value = node.value(i).map_err(|m| corrupt(store, no, m))?;
                    match stored(store, no, value, role)? {
                        Old::Separated { .. } => {}
                        old => held.push(old),
                    }
                }
            } else {
                for j in 0..=node.count() {
                    let child = node.child(j).map_err(|m| corrupt(store, no, m))?;
                    stack.push((child, Some(node.level() - 1)));
                }
            }
        }
        for old in held {
            release(store, &geo, no, old)?;
        }
        store.free(no)?;
    }
    Ok(())
}
