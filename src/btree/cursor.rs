//! Ordered iteration over a key range, from either end.
//!
//! Each end is a cursor holding its path from the root (the pages, shared
//! with the store, and the child index taken at each branch), so leaves need
//! no sibling links. Termination on damaged pages: each descent is bounded by
//! the levels, every non-root node must hold a key, and every key yielded must
//! be beyond the previous one from that end. A leaf reached twice would yield
//! a key already passed, so it is reported as corrupt instead.

use super::node::{CellValue, Malformed, Node};
use super::separate;
use super::tree::{check_long, corrupt, open_node, owned_value};
use super::{LongValue, Value};
use crate::pager::page::{PageNo, PageRef};
use crate::pager::{DbError, PageRead, Result};
use std::iter::FusedIterator;
use std::ops::Bound;

/// The entries of `root` with keys in `(start, end)`, in key order, as an
/// iterator from both ends. Each item is a key and its value (a long value
/// as its descriptor). After an error the iterator ends.
pub fn range<'a, S: PageRead + ?Sized>(
    store: &'a S,
    root: PageNo,
    start: Bound<&[u8]>,
    end: Bound<&[u8]>,
) -> Result<Range<'a, S>> {
    let page = store.page(root)?;
    open_node(store, root, &page, None)?;
    Ok(Range {
        store,
        root,
        start: start.map(<[u8]>::to_vec),
        end: end.map(<[u8]>::to_vec),
        front: None,
        back: None,
        last_front: None,
        last_back: None,
        done: false,
    })
}

/// All entries of `root`, in key order.
pub fn iter<S: PageRead + ?Sized>(store: &S, root: PageNo) -> Result<Range<'_, S>> {
    range(store, root, Bound::Unbounded, Bound::Unbounded)
}

/// An iterator over a key range of a tree; see [`range`].
pub struct Range<'a, S: PageRead + ?Sized> {
    store: &'a S,
    root: PageNo,
    start: Bound<Vec<u8>>,
    end: Bound<Vec<u8>>,
    front: Option<Cursor>,
    back: Option<Cursor>,
    /// The last key yielded from each end: the ends stop when they meet.
    last_front: Option<Vec<u8>>,
    last_back: Option<Vec<u8>>,
    done: bool,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum End {
    Front,
    Back,
}

/// A branch on a cursor's path and the child taken.
struct Frame {
    no: PageNo,
    page: PageRef,
    idx: usize,
}

/// A position between two entries of a leaf: the front end yields the entry
/// at `pos`, the back end the one before it.
struct Cursor {
    stack: Vec<Frame>,
    leaf_no: PageNo,
    leaf: PageRef,
    pos: usize,
}

fn bad(store: &(impl PageRead + ?Sized), no: PageNo, reason: impl Into<String>) -> DbError {
    corrupt(
        store,
        no,
        Malformed {
            pos: 0,
            reason: reason.into(),
        },
    )
}

/// The child (in a branch) or position (in a leaf) where `bound` begins the
/// range (front) or ends it (back).
fn position(
    store: &(impl PageRead + ?Sized),
    no: PageNo,
    node: &Node<'_>,
    bound: Bound<&[u8]>,
    end: End,
) -> Result<usize> {
    let rank = |key, inclusive| node.rank(key, inclusive).map_err(|m| corrupt(store, no, m));
    match (end, bound) {
        (End::Front, Bound::Unbounded) => Ok(0),
        (End::Back, Bound::Unbounded) => Ok(node.count()),
        // A branch's child `rank(key, true)` holds `key`.
        (End::Front, Bound::Included(key)) => rank(key, !node.is_leaf()),
        (End::Front, Bound::Excluded(key)) | (End::Back, Bound::Included(key)) => rank(key, true),
        (End::Back, Bound::Excluded(key)) => rank(key, false),
    }
}

/// Checks a node reached in iteration can hold a key, as all but a root
/// leaf must.
fn check_not_empty(store: &(impl PageRead + ?Sized), no: PageNo, node: &Node<'_>, is_root: bool) -> Result<()> {
    if node.count() == 0 && !(is_root && node.is_leaf()) {
        return Err(bad(store, no, "empty node inside a tree"));
    }
    Ok(())
}

impl Cursor {
    /// Descends from page `no` (at `level`; `None`: the root) to a leaf,
    /// choosing children by `bound` (`Unbounded`: the `end`'s edge).
    fn descend<S: PageRead + ?Sized>(
        store: &S,
        mut stack: Vec<Frame>,
        mut no: PageNo,
        mut level: Option<u8>,
        bound: Bound<&[u8]>,
        end: End,
    ) -> Result<Cursor> {
        loop {
            let page = store.page(no)?;
            let node = open_node(store, no, &page, level)?;
            check_not_empty(store, no, &node, level.is_none())?;
            let idx = position(store, no, &node, bound, end)?;
            if node.is_leaf() {
                return Ok(Cursor {
                    stack,
                    leaf_no: no,
                    leaf: page,
                    pos: idx,
                });
            }
            let child = node.child(idx).map_err(|m| corrupt(store, no, m))?;
            level = Some(node.level() - 1);
            stack.push(Frame { no, page, idx });
            no = child;
        }
    }

    /// Moves to the next leaf towards `end`; false at the end of the tree.
    fn next_leaf<S: PageRead + ?Sized>(&mut self, store: &S, end: End) -> Result<bool> {
        loop {
            let Some(frame) = self.stack.last_mut() else {
                return Ok(false);
            };
            let node = open_node(store, frame.no, &frame.page, None)?;
            let more = match end {
                End::Front => frame.idx < node.count(),
                End::Back => frame.idx > 0,
            };
            if !more {
                self.stack.pop();
                continue;
            }
            frame.idx = if end == End::Front {
                frame.idx + 1
            } else {
                frame.idx - 1
            };
            let child = node.child(frame.idx).map_err(|m| corrupt(store, frame.no, m))?;
            let level = node.level() - 1;
            let stack = std::mem::take(&mut self.stack);
            *self = Cursor::descend(store, stack, child, Some(level), Bound::Unbounded, end)?;
            return Ok(true);
        }
    }

    /// The next entry towards `end`, moving across leaves as needed.
    fn step<S: PageRead + ?Sized>(&mut self, store: &S, end: End) -> Result<Option<(Vec<u8>, Value)>> {
        loop {
            let no = self.leaf_no;
            let node = open_node(store, no, &self.leaf, None)?;
            let at = match end {
                End::Front if self.pos < node.count() => Some(self.pos),
                End::Back if self.pos > 0 && self.pos <= node.count() => Some(self.pos - 1),
                _ => None,
            };
            if let Some(i) = at {
                let (key, value) = node.entry(i).map_err(|m| corrupt(store, no, m))?;
                let entry = (key.to_vec(), owned_value(store, no, value)?);
                self.pos = if end == End::Front { i + 1 } else { i };
                return Ok(Some(entry));
            }
            if !self.next_leaf(store, end)? {
                return Ok(None);
            }
        }
    }
}

fn below_end(end: Bound<&[u8]>, key: &[u8]) -> bool {
    match end {
        Bound::Unbounded => true,
        Bound::Included(e) => key <= e,
        Bound::Excluded(e) => key < e,
    }
}

fn above_start(start: Bound<&[u8]>, key: &[u8]) -> bool {
    match start {
        Bound::Unbounded => true,
        Bound::Included(s) => key >= s,
        Bound::Excluded(s) => key > s,
    }
}

/// A value as a visit sees it: inline bytes borrowed from the page, or a long
/// value's descriptor (checked, as [`range`] checks it).
#[derive(Debug, Clone, Copy)]
pub enum ValueRef<'a> {
    Inline(&'a [u8]),
    Long(LongValue),
}

impl ValueRef<'_> {
    /// The value's length in bytes.
    pub fn len(&self) -> u64 {
        match self {
            ValueRef::Inline(bytes) => bytes.len() as u64,
            ValueRef::Long(long) => long.len(),
        }
    }

    /// Whether the value is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The value, owned (inline bytes copied).
    pub fn to_value(&self) -> Value {
        match self {
            ValueRef::Inline(bytes) => Value::Inline(bytes.to_vec()),
            ValueRef::Long(long) => Value::Long(*long),
        }
    }
}

/// Calls `visit` with each entry of `root` with a key in `(start, end)`, in
/// key order, borrowed from its page: unlike [`range`], nothing is copied or
/// allocated per entry (a folder listing reads thousands). `visit` returns
/// whether to go on. The same damage is caught as by [`range`]: keys out of
/// order, a key outside its subtree, a bad long-value descriptor.
pub fn visit_range<S, E, F>(
    store: &S,
    root: PageNo,
    start: Bound<&[u8]>,
    end: Bound<&[u8]>,
    mut visit: F,
) -> std::result::Result<(), E>
where
    S: PageRead + ?Sized,
    E: From<DbError>,
    F: FnMut(&[u8], ValueRef<'_>) -> std::result::Result<bool, E>,
{
    let mut cursor = Cursor::descend(store, Vec::new(), root, None, start, End::Front)?;
    // The last key of the leaves visited before this one.
    let mut crossed: Option<Vec<u8>> = None;
    loop {
        let no = cursor.leaf_no;
        let leaf = cursor.leaf.clone();
        let node = open_node(store, no, &leaf, None)?;
        let stop = end_in_leaf(store, no, &node, end)?;
        let mut previous: Option<&[u8]> = None;
        while cursor.pos < stop {
            let (key, value) = node.entry(cursor.pos).map_err(|m| corrupt(store, no, m))?;
            cursor.pos += 1;
            // Keys rise strictly from the first, which is at or past the
            // start: so every key is, and one check of the start suffices.
            match previous.or(crossed.as_deref()) {
                Some(before) if before >= key => {
                    return Err(bad(store, no, "keys out of order across the tree").into());
                }
                None if !above_start(start, key) => {
                    return Err(bad(store, no, "key outside the subtree that holds it").into());
                }
                _ => {}
            }
            // A separated value's bytes, read for this entry.
            let separated;
            let value = match value {
                CellValue::Inline(bytes) => ValueRef::Inline(bytes),
                CellValue::Long { len, root } => ValueRef::Long(check_long(store, no, len, root)?),
                CellValue::Separated { len, tree, id } => {
                    separated = separate::read(store, no, len, tree, id)?;
                    ValueRef::Inline(&separated)
                }
            };
            if !visit(key, value)? {
                return Ok(());
            }
            previous = Some(key);
        }
        if stop < node.count() {
            return Ok(());
        }
        if let Some(key) = previous {
            let last = crossed.get_or_insert_with(Vec::new);
            last.clear();
            last.extend_from_slice(key);
        }
        if !cursor.next_leaf(store, End::Front)? {
            return Ok(());
        }
    }
}

/// The first cell of `node` past `end`, found by one binary search instead
/// of a comparison per key; the keys on either side of it are compared, so
/// slot heads that disagree with their keys are reported, not followed.
fn end_in_leaf<S: PageRead + ?Sized>(store: &S, no: PageNo, node: &Node<'_>, end: Bound<&[u8]>) -> Result<usize> {
    let stop = match end {
        Bound::Unbounded => return Ok(node.count()),
        Bound::Included(e) => node.rank(e, true),
        Bound::Excluded(e) => node.rank(e, false),
    }
    .map_err(|m| corrupt(store, no, m))?;
    let key = |i| node.key(i).map_err(|m| corrupt(store, no, m));
    let inside = stop == 0 || below_end(end, key(stop - 1)?);
    let outside = stop == node.count() || !below_end(end, key(stop)?);
    if inside && outside {
        Ok(stop)
    } else {
        Err(bad(store, no, "slot heads disagree with their keys"))
    }
}

impl<S: PageRead + ?Sized> Range<'_, S> {
    fn step(&mut self, end: End) -> Result<Option<(Vec<u8>, Value)>> {
        let (cursor, bound) = match end {
            End::Front => (&mut self.front, self.start.as_ref().map(Vec::as_slice)),
            End::Back => (&mut self.back, self.end.as_ref().map(Vec::as_slice)),
        };
        if cursor.is_none() {
            *cursor = Some(Cursor::descend(self.store, Vec::new(), self.root, None, bound, end)?);
        }
        let Some(cursor) = cursor.as_mut() else {
            return Ok(None);
        };
        let Some((key, value)) = cursor.step(self.store, end)? else {
            return Ok(None);
        };
        let leaf = cursor.leaf_no;
        let (mine, theirs) = match end {
            End::Front => (&mut self.last_front, &self.last_back),
            End::Back => (&mut self.last_back, &self.last_front),
        };
        let forward = |a: &[u8], b: &[u8]| if end == End::Front { a < b } else { a > b };
        if let Some(previous) = mine.as_deref()
            && !forward(previous, &key)
        {
            return Err(bad(self.store, leaf, "keys out of order across the tree"));
        }
        let (start_bound, end_bound) = (
            self.start.as_ref().map(Vec::as_slice),
            self.end.as_ref().map(Vec::as_slice),
        );
        if !above_start(start_bound, &key) && end == End::Front || !below_end(end_bound, &key) && end == End::Back {
            return Err(bad(self.store, leaf, "key outside the subtree that holds it"));
        }
        // Past the far bound, or where the other end already is: finished.
        let beyond = match end {
            End::Front => !below_end(end_bound, &key),
            End::Back => !above_start(start_bound, &key),
        };
        if beyond || theirs.as_deref().is_some_and(|other| !forward(&key, other)) {
            return Ok(None);
        }
        match mine {
            Some(previous) => {
                previous.clear();
                previous.extend_from_slice(&key);
            }
            None => *mine = Some(key.clone()),
        }
        Ok(Some((key, value)))
    }

    fn item(&mut self, end: End) -> Option<Result<(Vec<u8>, Value)>> {
        if self.done {
            return None;
        }
        let item = self.step(end).transpose();
        if !matches!(item, Some(Ok(_))) {
            self.done = true;
        }
        item
    }
}

impl<S: PageRead + ?Sized> Iterator for Range<'_, S> {
    type Item = Result<(Vec<u8>, Value)>;

    fn next(&mut self) -> Option<Self::Item> {
        self.item(End::Front)
    }
}

impl<S: PageRead + ?Sized> DoubleEndedIterator for Range<'_, S> {
    fn next_back(&mut self) -> Option<Self::Item> {
        self.item(End::Back)
    }
}

impl<S: PageRead + ?Sized> FusedIterator for Range<'_, S> {}
