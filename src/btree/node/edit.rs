//! Changing nodes: detached cells, whole-node rewrites, and in-place
//! inserts and removals of single cells (layout in the parent module).

use super::{
    BRANCH_CELL_HEADER, CONTENT_AT, COUNT_AT, CellValue, FLAG_LONG, FLAG_SEPARATED, GARBAGE_AT, LEAF_CELL_HEADER,
    LEFTMOST_AT, LEVEL_AT, LONG_DESCRIPTOR_LEN, MAX_LEVEL, NODE_HEADER_END, Node, NodeResult, PREFIX_AT,
    SEPARATED_DESCRIPTOR_LEN, SLOT_LEN, common_prefix, head, malformed, read_u16, read_u32,
};
use crate::pager::page::{self, MAX_PAGE_SIZE, PageKind, PageNo};

/// One encoded cell detached from its page. Well-formed by construction (from
/// a checked page or from the constructors), so its fields read back safely.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Cell {
    bytes: Vec<u8>,
    leaf: bool,
}

impl Cell {
    /// A cell copied from a checked page.
    pub(super) fn from_page(bytes: Vec<u8>, leaf: bool) -> Cell {
        Cell { bytes, leaf }
    }

    /// A leaf cell. The key is at most `MAX_KEY_LEN_CAP` bytes and an inline
    /// value at most a quarter page (callers check), so both fit in u16.
    pub fn leaf(key: &[u8], value: CellValue<'_>) -> Cell {
        let mut bytes = Vec::with_capacity(LEAF_CELL_HEADER + key.len() + SEPARATED_DESCRIPTOR_LEN);
        bytes.extend_from_slice(&(key.len() as u16).to_le_bytes());
        match value {
            CellValue::Inline(v) => {
                bytes.push(0);
                bytes.extend_from_slice(&(v.len() as u16).to_le_bytes());
                bytes.extend_from_slice(key);
                bytes.extend_from_slice(v);
            }
            CellValue::Long { len, root } => {
                bytes.push(FLAG_LONG);
                bytes.extend_from_slice(&(LONG_DESCRIPTOR_LEN as u16).to_le_bytes());
                bytes.extend_from_slice(key);
                bytes.extend_from_slice(&len.to_le_bytes());
                bytes.extend_from_slice(&root.to_le_bytes());
            }
            CellValue::Separated { len, tree, id } => {
                bytes.push(FLAG_SEPARATED);
                bytes.extend_from_slice(&(SEPARATED_DESCRIPTOR_LEN as u16).to_le_bytes());
                bytes.extend_from_slice(key);
                bytes.extend_from_slice(&len.to_le_bytes());
                bytes.extend_from_slice(&tree.to_le_bytes());
                bytes.extend_from_slice(&id.to_le_bytes());
            }
        }
        Cell { bytes, leaf: true }
    }

    /// A branch cell: separator `key` and the child holding keys from it on.
    pub fn branch(key: &[u8], child: PageNo) -> Cell {
        let mut bytes = Vec::with_capacity(BRANCH_CELL_HEADER + key.len());
        bytes.extend_from_slice(&(key.len() as u16).to_le_bytes());
        bytes.extend_from_slice(&child.to_le_bytes());
        bytes.extend_from_slice(key);
        Cell { bytes, leaf: false }
    }

    /// Bytes the cell takes in a node, slot included.
    pub fn footprint(&self) -> usize {
        self.bytes.len() + SLOT_LEN
    }

    pub fn key(&self) -> &[u8] {
        let key_len = usize::from(read_u16(&self.bytes, 0).unwrap_or(0));
        let start = if self.leaf {
            LEAF_CELL_HEADER
        } else {
            BRANCH_CELL_HEADER
        };
        self.bytes.get(start..start + key_len).unwrap_or_default()
    }

    /// The child of a branch cell (0 for a leaf cell).
    pub fn child(&self) -> PageNo {
        if self.leaf {
            0
        } else {
            read_u32(&self.bytes, 2).unwrap_or(0)
        }
    }
}

/// Total footprint of `cells`.
pub(crate) fn footprint(cells: &[Cell]) -> usize {
    cells.iter().map(Cell::footprint).sum()
}

/// Rewrites the node from `cells` (packed at the page end, no garbage) and
/// sets the page kind from the level.
pub(crate) fn write_node(page: &mut [u8], level: u8, leftmost: PageNo, cells: &[Cell]) -> NodeResult<()> {
    let len = page.len();
    let need = NODE_HEADER_END + footprint(cells);
    if need > len || len > MAX_PAGE_SIZE || level > MAX_LEVEL {
        return malformed(
            0,
            format!("{} cells of {need} bytes at level {level} do not fit", cells.len()),
        );
    }
    if cells.iter().any(|c| c.leaf != (level == 0)) {
        return malformed(0, format!("cell of the wrong kind for level {level}"));
    }
    page::set_kind(page, if level == 0 { PageKind::Leaf } else { PageKind::Branch });
    page[LEVEL_AT] = level;
    page[LEVEL_AT + 1] = 0;
    // Sorted keys all share the prefix the first and last share.
    let prefix_len = match (cells.first(), cells.last()) {
        (Some(first), Some(last)) => common_prefix(first.key(), last.key()),
        _ => 0,
    };
    let mut at = len;
    for (i, cell) in cells.iter().enumerate() {
        at -= cell.bytes.len();
        page[at..at + cell.bytes.len()].copy_from_slice(&cell.bytes);
        // Cells start below the page end, which is at most 65536: fits u16.
        write_slot(page, i, at, head(cell.key(), prefix_len));
    }
    // Keys are at most MAX_KEY_LEN_CAP bytes: the length fits u16.
    page[PREFIX_AT..PREFIX_AT + 2].copy_from_slice(&(prefix_len as u16).to_le_bytes());
    page[PREFIX_AT + 2..NODE_HEADER_END].fill(0);
    page[NODE_HEADER_END + SLOT_LEN * cells.len()..at].fill(0);
    page[COUNT_AT..COUNT_AT + 2].copy_from_slice(&(cells.len() as u16).to_le_bytes());
    page[CONTENT_AT..CONTENT_AT + 4].copy_from_slice(&(at as u32).to_le_bytes());
    page[GARBAGE_AT..GARBAGE_AT + 4].copy_from_slice(&0u32.to_le_bytes());
    page[LEFTMOST_AT..LEFTMOST_AT + 4].copy_from_slice(&leftmost.to_le_bytes());
    Ok(())
}

fn write_slot(page: &mut [u8], i: usize, offset: usize, head: u32) {
    let at = NODE_HEADER_END + SLOT_LEN * i;
    page[at..at + 2].copy_from_slice(&(offset as u16).to_le_bytes());
    page[at + 2..at + SLOT_LEN].copy_from_slice(&head.to_be_bytes());
}

fn set_header(page: &mut [u8], count: usize, content_start: usize, garbage: usize) {
    // Callers checked the header with Node::open, so the page holds it, and
    // the values come from a valid node of at most MAX_PAGE_SIZE bytes.
    page[COUNT_AT..COUNT_AT + 2].copy_from_slice(&(count as u16).to_le_bytes());
    page[CONTENT_AT..CONTENT_AT + 4].copy_from_slice(&(content_start as u32).to_le_bytes());
    page[GARBAGE_AT..GARBAGE_AT + 4].copy_from_slice(&(garbage as u32).to_le_bytes());
}

/// Inserts `cell` as cell `idx`, compacting the node if needed. `Ok(false)`:
/// it does not fit, nothing changed.
pub(crate) fn insert_cell(page: &mut [u8], idx: usize, cell: &Cell) -> NodeResult<bool> {
    let node = Node::open(page)?;
    if idx > node.count || node.is_leaf() != cell.leaf {
        return malformed(
            COUNT_AT,
            format!("cannot insert cell {idx} in a node of {} cells", node.count),
        );
    }
    if node.free_space() < cell.footprint() {
        return Ok(false);
    }
    let (count, p) = (node.count, node.prefix_len);
    let slots_end = NODE_HEADER_END + SLOT_LEN * count;
    let gap_too_small = node.content_start - slots_end < cell.footprint();
    // A key between the first and last shares their prefix; one at either
    // end may share less of it.
    let prefix_shrinks = count == 0 || ((idx == 0 || idx == count) && !cell.key().starts_with(node.prefix()?));
    let len = cell.bytes.len();
    // Into the space of removed cells when the gap is too small, if the slot
    // still fits the gap: only the cell, the slots from `idx` on and the
    // header change (a small log record).
    let hole = if gap_too_small && !prefix_shrinks && node.content_start - slots_end >= SLOT_LEN {
        find_hole(&node, len)?
    } else {
        None
    };
    let (at, content_start, garbage) = match hole {
        Some(at) => (at, node.content_start, node.garbage - len),
        None if gap_too_small || prefix_shrinks => {
            // Rewriting from copies of the cells drops the garbage and sets the prefix.
            let (level, leftmost) = (node.level, node.leftmost);
            let mut cells = node.cells()?;
            cells.insert(idx, cell.clone());
            write_node(page, level, leftmost, &cells)?;
            return Ok(true);
        }
        None => (node.content_start - len, node.content_start - len, node.garbage),
    };
    page[at..at + len].copy_from_slice(&cell.bytes);
    let slot_at = NODE_HEADER_END + SLOT_LEN * idx;
    page.copy_within(slot_at..slots_end, slot_at + SLOT_LEN);
    write_slot(page, idx, at, head(cell.key(), p));
    set_header(page, count + 1, content_start, garbage);
    Ok(true)
}

/// Most cells a node may hold for an insert to look for a hole: the search
/// sorts the cells by offset, so a node of many small cells compacts instead
/// (as it did before holes were used), once, and then takes inserts in its
/// gap. Such cells save little log by the holes anyway.
pub(crate) const HOLE_SEARCH_CELLS: usize = 48;

/// The lowest start of a hole of at least `len` bytes in the content area:
/// bytes no cell covers, left by removed cells. None if there is none. The
/// place found overlaps no cell even in a damaged node.
fn find_hole(node: &Node<'_>, len: usize) -> NodeResult<Option<usize>> {
    if node.garbage < len || node.count > HOLE_SEARCH_CELLS {
        return Ok(None);
    }
    let mut spans = Vec::with_capacity(node.count);
    for i in 0..node.count {
        let span = node.span(i)?;
        spans.push((span.start, span.end));
    }
    spans.sort_unstable();
    let mut at = node.content_start;
    for (start, end) in spans {
        if start >= at + len {
            return Ok(Some(at));
        }
        at = at.max(end);
    }
    Ok((at + len <= node.page.len()).then_some(at))
}

/// Keeps the first `kept` cells where they lie: the others' bytes become
/// garbage, their slots zeros. A split leaves its left half so, and logs
/// little more than the new right page.
pub(crate) fn truncate_cells(page: &mut [u8], kept: usize) -> NodeResult<()> {
    let node = Node::open(page)?;
    if kept > node.count {
        return malformed(COUNT_AT, format!("cannot keep {kept} of {} cells", node.count));
    }
    let mut freed = 0;
    for i in kept..node.count {
        let span = node.span(i)?;
        freed += span.end - span.start;
    }
    let (count, content_start) = (node.count, node.content_start);
    let garbage = (node.garbage + freed).min(page.len() - content_start);
    page[NODE_HEADER_END + SLOT_LEN * kept..NODE_HEADER_END + SLOT_LEN * count].fill(0);
    set_header(page, kept, content_start, garbage);
    Ok(())
}

/// Removes cell `idx`; its bytes become garbage (or free space if lowest).
pub(crate) fn remove_cell(page: &mut [u8], idx: usize) -> NodeResult<()> {
    let node = Node::open(page)?;
    let span = node.span(idx)?;
    let (count, mut content_start, mut garbage) = (node.count, node.content_start, node.garbage);
    let slot_at = NODE_HEADER_END + SLOT_LEN * idx;
    page.copy_within(slot_at + SLOT_LEN..NODE_HEADER_END + SLOT_LEN * count, slot_at);
    if span.start == content_start {
        content_start = span.end;
    } else {
        garbage += span.end - span.start;
    }
    set_header(page, count - 1, content_start, garbage.min(page.len() - content_start));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn empty_leaf(size: usize) -> Vec<u8> {
        let mut page = vec![0u8; size];
        write_node(&mut page, 0, 0, &[]).unwrap();
        page
    }

    fn inline(key: &[u8], value: &[u8]) -> Cell {
        Cell::leaf(key, CellValue::Inline(value))
    }

    #[test]
    fn insert_search_remove_and_compact() {
        let mut page = empty_leaf(4096);
        let keys: Vec<Vec<u8>> = (0..40u32)
            .map(|i| format!("key{:03}", i * 7 % 40).into_bytes())
            .collect();
        for key in &keys {
            let node = Node::open(&page).unwrap();
            let at = node.search(key).unwrap().unwrap_err();
            assert!(insert_cell(&mut page, at, &inline(key, &[1; 50])).unwrap());
        }
        let node = Node::open(&page).unwrap();
        node.check_layout().unwrap();
        assert_eq!(node.count(), 40);
        for i in 0..40 {
            assert_eq!(node.key(i).unwrap(), format!("key{i:03}").as_bytes());
        }
        // Remove every other cell, then fill the garbage: needs compaction.
        for i in (0..20).rev() {
            remove_cell(&mut page, i * 2).unwrap();
        }
        Node::open(&page).unwrap().check_layout().unwrap();
        let mut n = 0;
        while insert_cell(&mut page, 0, &inline(&[], &[2; 50])).unwrap() {
            remove_cell(&mut page, 0).unwrap();
            n += 1;
            if n > 100 {
                break;
            }
        }
        let node = Node::open(&page).unwrap();
        node.check_layout().unwrap();
        assert_eq!(node.count(), 20);
        assert_eq!(node.search(b"key005").unwrap(), Ok(2));
        assert_eq!(node.rank(b"key005", false).unwrap(), 2);
        assert_eq!(node.rank(b"key005", true).unwrap(), 3);
        assert_eq!(node.value(2).unwrap(), CellValue::Inline(&[1; 50]));
    }

    #[test]
    fn inserts_fill_the_holes_of_removed_cells_in_place() {
        // 36 cells of 105 bytes (111 with the slot) leave a gap of 48 bytes.
        let mut page = empty_leaf(4096);
        for i in 0..36u8 {
            assert!(insert_cell(&mut page, usize::from(i), &inline(&[b'k', i], &[i; 98])).unwrap());
        }
        // Cells 10..20 go: holes, and a gap of 108 bytes, too small for a
        // cell but room for ten slots.
        for _ in 10..20 {
            remove_cell(&mut page, 10).unwrap();
        }
        let holed = page.clone();
        for i in 10..20u8 {
            assert!(insert_cell(&mut page, usize::from(i), &inline(&[b'k', i], &[i ^ 0xff; 98])).unwrap());
        }
        let node = Node::open(&page).unwrap();
        node.check_layout().unwrap();
        assert_eq!(node.count(), 36);
        assert_eq!(node.garbage, 0, "every hole filled");
        for i in 0..36u8 {
            let want = if (10..20).contains(&i) { i ^ 0xff } else { i };
            assert_eq!(
                node.entry(usize::from(i)).unwrap(),
                (&[b'k', i][..], CellValue::Inline(&[want; 98][..]))
            );
        }
        // Only the ten cells, the slots and the header changed: the other
        // cells were not moved (a compaction would have moved them).
        let changed = holed.iter().zip(&page).filter(|(a, b)| a != b).count();
        assert!(changed <= 10 * 105 + 36 * SLOT_LEN + 16, "{changed} bytes changed");
    }

    #[test]
    fn a_node_of_many_cells_compacts_instead_of_searching_holes() {
        let mut page = empty_leaf(4096);
        let mut n = 0u8;
        while insert_cell(&mut page, usize::from(n), &inline(&[b'k', n], &[n; 40])).unwrap() {
            n += 1;
        }
        assert!(usize::from(n) > HOLE_SEARCH_CELLS + 10);
        // A smaller cell where one went: a hole would keep 10 bytes of garbage.
        remove_cell(&mut page, 20).unwrap();
        assert!(insert_cell(&mut page, 20, &inline(&[b'k', 20], &[7; 30])).unwrap());
        let node = Node::open(&page).unwrap();
        node.check_layout().unwrap();
        assert_eq!(node.count(), usize::from(n));
        assert_eq!(node.garbage, 0, "compacted: the removed cell's space is gone");
        assert_eq!(
            node.entry(20).unwrap(),
            (&[b'k', 20][..], CellValue::Inline(&[7; 30][..]))
        );
    }

    #[test]
    fn truncating_keeps_the_first_cells_where_they_lie() {
        let mut page = empty_leaf(4096);
        for i in 0..20u8 {
            assert!(insert_cell(&mut page, usize::from(i), &inline(&[b'k', i], &[i; 50])).unwrap());
        }
        let before = page.clone();
        truncate_cells(&mut page, 12).unwrap();
        let node = Node::open(&page).unwrap();
        node.check_layout().unwrap();
        assert_eq!(node.count(), 12);
        for i in 0..12u8 {
            assert_eq!(
                node.entry(usize::from(i)).unwrap(),
                (&[b'k', i][..], CellValue::Inline(&[i; 50][..]))
            );
        }
        let cells_end = before.len();
        assert_eq!(
            page[node.content_start..cells_end],
            before[node.content_start..cells_end],
            "cells unmoved"
        );
        assert!(truncate_cells(&mut page, 13).is_err(), "more cells than the node has");
    }

    #[test]
    fn separated_descriptor_round_trips() {
        let mut page = empty_leaf(4096);
        let value = CellValue::Separated {
            len: 1500,
            tree: 9,
            id: 1 << 40 | 7,
        };
        let cell = Cell::leaf(b"s", value);
        assert!(insert_cell(&mut page, 0, &cell).unwrap());
        assert!(insert_cell(&mut page, 1, &inline(b"t", b"plain")).unwrap());
        let node = Node::open(&page).unwrap();
        assert_eq!(node.entry(0).unwrap(), (&b"s"[..], value));
        assert_eq!(node.entry(1).unwrap(), (&b"t"[..], CellValue::Inline(b"plain")));
        assert_eq!(node.cells().unwrap()[0], cell);
        // A separated flag with a descriptor of the wrong length is refused.
        let at = node.span(0).unwrap().start;
        page[at + 3..at + 5].copy_from_slice(&12u16.to_le_bytes());
        assert!(Node::open(&page).unwrap().entry(0).is_err());
    }

    #[test]
    fn long_descriptor_round_trips() {
        let mut page = empty_leaf(4096);
        let cell = Cell::leaf(b"k", CellValue::Long { len: 1 << 20, root: 77 });
        assert!(insert_cell(&mut page, 0, &cell).unwrap());
        let node = Node::open(&page).unwrap();
        assert_eq!(node.value(0).unwrap(), CellValue::Long { len: 1 << 20, root: 77 });
        assert_eq!(node.cells().unwrap(), vec![cell]);
    }

    #[test]
    fn damaged_headers_and_cells_are_malformed() {
        let mut page = empty_leaf(4096);
        assert!(insert_cell(&mut page, 0, &inline(b"abc", b"xyz")).unwrap());
        let mut bad = page.clone();
        bad[CONTENT_AT..CONTENT_AT + 4].copy_from_slice(&5000u32.to_le_bytes());
        assert!(Node::open(&bad).is_err());
        let mut bad = page.clone();
        bad[LEVEL_AT] = 3;
        assert!(Node::open(&bad).is_err());
        let mut bad = page.clone();
        bad[NODE_HEADER_END..NODE_HEADER_END + 2].copy_from_slice(&4095u16.to_le_bytes());
        assert!(Node::open(&bad).unwrap().key(0).is_err());
        let mut bad = page.clone();
        let at = 4096 - 11;
        bad[at..at + 2].copy_from_slice(&900u16.to_le_bytes());
        assert!(Node::open(&bad).unwrap().key(0).is_err());
        let mut bad = page;
        bad[at + 2] = 4;
        assert!(Node::open(&bad).unwrap().value(0).is_err());
    }
}
