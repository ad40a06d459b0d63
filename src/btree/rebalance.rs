//! Keeping the tree balanced: splits on overflow, merges and redistribution
//! on underflow, and the root that keeps its page number.
//!
//! After a change to a node, the node is either fine, split in two (its
//! parent must take the new separator), or underfull (its parent merges it
//! with a sibling or moves cells over). Each step changes one parent, which
//! may in turn split or underflow, up to the root.
//!
//! Fill: every cell takes at most a quarter of the node area (`usable`), and a
//! non-root node uses at least a quarter (`min_fill`). A split or a
//! redistribution of more than `usable` bytes leaves each side with at least
//! `(usable - 2 * max cell) / 2`, so this holds after every operation.

use super::Geometry;
use super::node::{self, Cell, MAX_LEVEL, Malformed, NodeResult, malformed};
use super::tree::{corrupt, open_node};
use crate::pager::page::{self, PAGE_HEADER_LEN, PageKind, PageNo};
use crate::pager::{PageRead, PageWrite, Result};

/// What a node's change asks of its parent.
pub(crate) enum Pending {
    Done,
    /// The node split: `right` (holding keys from `sep` on) follows it.
    Split {
        sep: Vec<u8>,
        right: PageNo,
    },
    /// The node is under `min_fill`.
    Underflow,
}

/// Carries a leaf's pending change up `path` (root first, with the child
/// index taken at each branch).
pub(crate) fn propagate<S: PageWrite + ?Sized>(
    store: &mut S,
    geo: &Geometry,
    path: &[(PageNo, usize)],
    mut pending: Pending,
) -> Result<()> {
    for (depth, &(parent, idx)) in path.iter().enumerate().rev() {
        let parent_is_root = depth == 0;
        pending = match pending {
            Pending::Done => return Ok(()),
            Pending::Split { sep, right } => {
                let cell = Cell::branch(&sep, right);
                insert_separator(store, geo, parent, idx, cell, parent_is_root)?
            }
            Pending::Underflow => rebalance(store, geo, parent, idx, parent_is_root)?,
        };
    }
    // write_cells never leaves anything pending at the root.
    Ok(())
}

/// Inserts the separator of child `idx`'s new right sibling after it.
fn insert_separator<S: PageWrite + ?Sized>(
    store: &mut S,
    geo: &Geometry,
    parent: PageNo,
    idx: usize,
    cell: Cell,
    is_root: bool,
) -> Result<Pending> {
    let page = store.page_mut(parent)?;
    let overflow = node::insert_cell(page, idx, &cell).and_then(|fits| {
        if fits {
            return Ok(None);
        }
        let node = node::Node::open(page)?;
        let mut cells = node.cells()?;
        cells.insert(idx.min(cells.len()), cell);
        Ok(Some((node.level(), node.leftmost(), cells)))
    });
    match overflow.map_err(|m| corrupt(store, parent, m))? {
        None => Ok(Pending::Done),
        Some((level, leftmost, cells)) => {
            let appended = idx + 1 == cells.len();
            write_cells(store, geo, parent, level, leftmost, cells, is_root, appended)
        }
    }
}

fn write_at<S: PageWrite + ?Sized>(
    store: &mut S,
    no: PageNo,
    level: u8,
    leftmost: PageNo,
    cells: &[Cell],
) -> Result<()> {
    let written = node::write_node(store.page_mut(no)?, level, leftmost, cells);
    written.map_err(|m| corrupt(store, no, m))
}

/// Rewrites node `no` with `cells`, splitting it if they do not fit (a root
/// moves both halves to new pages and becomes their parent). `appended`: the
/// last cell is the new one, so the split favours sequential inserts.
#[allow(clippy::too_many_arguments)]
pub(crate) fn write_cells<S: PageWrite + ?Sized>(
    store: &mut S,
    geo: &Geometry,
    no: PageNo,
    level: u8,
    leftmost: PageNo,
    cells: Vec<Cell>,
    is_root: bool,
    appended: bool,
) -> Result<Pending> {
    let used = node::footprint(&cells);
    if used <= geo.usable {
        if is_root && level > 0 && cells.is_empty() {
            return collapse_root(store, no, level, leftmost);
        }
        write_at(store, no, level, leftmost, &cells)?;
        let underfull = !is_root && used < geo.min_fill;
        return Ok(if underfull { Pending::Underflow } else { Pending::Done });
    }
    let kind = if level == 0 { PageKind::Leaf } else { PageKind::Branch };
    let halves = split(geo, level, cells, appended).map_err(|m| corrupt(store, no, m))?;
    if is_root {
        if level >= MAX_LEVEL {
            let reason = format!("root at level {level} cannot grow");
            return Err(corrupt(store, no, Malformed { pos: 32, reason }));
        }
        let left = store.allocate(kind)?;
        let right = store.allocate(kind)?;
        write_at(store, left, level, leftmost, &halves.left)?;
        write_at(store, right, level, halves.right_leftmost, &halves.right)?;
        write_at(store, no, level + 1, left, &[Cell::branch(&halves.sep, right)])?;
        return Ok(Pending::Done);
    }
    let right = store.allocate(kind)?;
    write_at(store, right, level, halves.right_leftmost, &halves.right)?;
    write_at(store, no, level, leftmost, &halves.left)?;
    Ok(Pending::Split { sep: halves.sep, right })
}

/// Puts `cells` in leaf `no`, which holds all of them but `cells[new]`,
/// splitting it if they do not fit. A split keeps the left half where it
/// lies on the page (`node::truncate_cells`: the cells moving right leave
/// holes that later inserts fill), so that its log record holds the new
/// right page and little else; a rewrite of the left half would log about
/// half a page more.
pub(crate) fn split_leaf<S: PageWrite + ?Sized>(
    store: &mut S,
    geo: &Geometry,
    no: PageNo,
    cells: Vec<Cell>,
    new: usize,
    is_root: bool,
    appended: bool,
) -> Result<Pending> {
    // A node of many small cells would compact at its next insert anyway.
    let many = cells.len() > 2 * node::HOLE_SEARCH_CELLS;
    if is_root || many || new >= cells.len() || node::footprint(&cells) <= geo.usable {
        return write_cells(store, geo, no, 0, 0, cells, is_root, appended);
    }
    let new_cell = cells[new].clone();
    let halves = split(geo, 0, cells, appended).map_err(|m| corrupt(store, no, m))?;
    let right = store.allocate(PageKind::Leaf)?;
    write_at(store, right, 0, 0, &halves.right)?;
    let on_left = new < halves.left.len();
    let kept = halves.left.len() - usize::from(on_left);
    let page = store.page_mut(no)?;
    let in_place = node::truncate_cells(page, kept).and_then(|()| {
        if on_left {
            node::insert_cell(page, new, &new_cell)
        } else {
            Ok(true)
        }
    });
    // The left half fits a node (split saw to it); should the cell find no
    // room in place, the half is written whole instead.
    if !in_place.map_err(|m| corrupt(store, no, m))? {
        write_at(store, no, 0, 0, &halves.left)?;
    }
    Ok(Pending::Split { sep: halves.sep, right })
}

/// A root branch left with one child takes the child's content.
fn collapse_root<S: PageWrite + ?Sized>(store: &mut S, root: PageNo, level: u8, child: PageNo) -> Result<Pending> {
    let (body, kind) = {
        let page = store.page(child)?;
        let node = open_node(store, child, &page, Some(level - 1))?;
        let kind = if node.is_leaf() {
            PageKind::Leaf
        } else {
            PageKind::Branch
        };
        (page[PAGE_HEADER_LEN..].to_vec(), kind)
    };
    let page = store.page_mut(root)?;
    if page.len() != body.len() + PAGE_HEADER_LEN {
        let reason = format!("root page of {} bytes", page.len());
        return Err(corrupt(store, root, Malformed { pos: 0, reason }));
    }
    page[PAGE_HEADER_LEN..].copy_from_slice(&body);
    page::set_kind(page, kind);
    store.free(child)?;
    Ok(Pending::Done)
}

/// Two nodes' worth of cells and the separator between them.
struct Halves {
    left: Vec<Cell>,
    sep: Vec<u8>,
    /// The right node's leftmost child (branches only).
    right_leftmost: PageNo,
    right: Vec<Cell>,
}

/// The shortest prefix of `right_first` above `left_last` (which is below it).
fn separator(left_last: &[u8], right_first: &[u8]) -> Vec<u8> {
    let common = left_last.iter().zip(right_first).take_while(|(a, b)| a == b).count();
    right_first[..(common + 1).min(right_first.len())].to_vec()
}

/// Splits cells that overflow one node. A leaf's cells divide into two runs;
/// a branch's middle cell moves up (its child becomes the right leftmost).
/// When the last cell is new (appending), the left side is kept as full as
/// the right side's minimum fill allows, else the halves are balanced.
fn split(geo: &Geometry, level: u8, mut cells: Vec<Cell>, appending: bool) -> NodeResult<Halves> {
    let sizes: Vec<usize> = cells.iter().map(Cell::footprint).collect();
    let total: usize = sizes.iter().sum();
    let n = cells.len();
    let up = usize::from(level > 0);
    // Candidate k: cells[..k] go left; cells[k] moves up in a branch.
    let mut best: Option<(usize, usize)> = None;
    let mut fullest: Option<usize> = None;
    let mut left = 0;
    for k in 1..n.saturating_sub(up) {
        left += sizes[k - 1];
        let right = total - left - up * sizes[k];
        if left > geo.usable || right > geo.usable {
            continue;
        }
        let diff = left.abs_diff(right);
        if best.is_none_or(|(d, _)| diff < d) {
            best = Some((diff, k));
        }
        if right >= geo.min_fill && left >= geo.min_fill {
            fullest = Some(k);
        }
    }
    let Some((_, balanced)) = best else {
        return malformed(0, format!("{n} cells of {total} bytes cannot be split in two nodes"));
    };
    let k = match fullest {
        Some(k) if appending => k,
        _ => balanced,
    };
    let mut right = cells.split_off(k);
    if level == 0 {
        let sep = match (cells.last(), right.first()) {
            (Some(l), Some(r)) => separator(l.key(), r.key()),
            _ => return malformed(0, "split left an empty side"),
        };
        return Ok(Halves {
            left: cells,
            sep,
            right_leftmost: 0,
            right,
        });
    }
    let middle = right.remove(0);
    Ok(Halves {
        left: cells,
        sep: middle.key().to_vec(),
        right_leftmost: middle.child(),
        right,
    })
}

/// Rebalances the underfull child `idx` of `parent` with a sibling: merges
/// them if they fit in one node, else moves cells to even them out.
fn rebalance<S: PageWrite + ?Sized>(
    store: &mut S,
    geo: &Geometry,
    parent: PageNo,
    idx: usize,
    parent_is_root: bool,
) -> Result<Pending> {
    let (level, parent_leftmost, mut parent_cells) = read_cells(store, parent, None)?;
    let bad = |reason: String| Malformed { pos: 32, reason };
    if level == 0 || parent_cells.is_empty() || idx > parent_cells.len() {
        return Err(corrupt(store, parent, bad(format!("cannot rebalance child {idx}"))));
    }
    // The separator between the two children is parent_cells[sep].
    let sep = idx.saturating_sub(1);
    let left_no = if sep == 0 {
        parent_leftmost
    } else {
        parent_cells[sep - 1].child()
    };
    let right_no = parent_cells[sep].child();
    if left_no == right_no {
        return Err(corrupt(
            store,
            parent,
            bad(format!("children {sep} and {} are one page", sep + 1)),
        ));
    }
    let (_, left_leftmost, mut cells) = read_cells(store, left_no, Some(level - 1))?;
    let (_, right_leftmost, right_cells) = read_cells(store, right_no, Some(level - 1))?;
    if level > 1 {
        cells.push(Cell::branch(parent_cells[sep].key(), right_leftmost));
    }
    cells.extend(right_cells);
    if node::footprint(&cells) <= geo.usable {
        write_at(store, left_no, level - 1, left_leftmost, &cells)?;
        store.free(right_no)?;
        parent_cells.remove(sep);
    } else {
        let halves = split(geo, level - 1, cells, false).map_err(|m| corrupt(store, left_no, m))?;
        write_at(store, left_no, level - 1, left_leftmost, &halves.left)?;
        write_at(store, right_no, level - 1, halves.right_leftmost, &halves.right)?;
        parent_cells[sep] = Cell::branch(&halves.sep, right_no);
    }
    write_cells(
        store,
        geo,
        parent,
        level,
        parent_leftmost,
        parent_cells,
        parent_is_root,
        false,
    )
}

/// Level, leftmost child and cells of node `no`.
fn read_cells<S: PageRead + ?Sized>(store: &S, no: PageNo, level: Option<u8>) -> Result<(u8, PageNo, Vec<Cell>)> {
    let page = store.page(no)?;
    let node = open_node(store, no, &page, level)?;
    let cells = node.cells().map_err(|m| corrupt(store, no, m))?;
    Ok((node.level(), node.leftmost(), cells))
}
