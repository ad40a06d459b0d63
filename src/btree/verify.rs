//! The invariant checker behind `mailvault check`: walks a whole tree and
//! reports every problem found, each naming its page.

use super::long::{self, Shape};
use super::node::{CellValue, LEAF_CELL_HEADER, LONG_DESCRIPTOR_LEN, Node, SEPARATED_DESCRIPTOR_LEN, SLOT_LEN};
use super::separate::{self, VALUE_ID_LEN};
use super::{Geometry, LongValue};
use crate::pager::page::{PageNo, PageRef};
use crate::pager::{DbError, PageRead, Result};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// Problems past this many are counted, not listed.
const MAX_PROBLEMS: usize = 1000;

/// What [`verify`] found.
#[derive(Debug, Clone, Default)]
pub struct VerifyReport {
    /// Every page the tree uses: nodes and long value pages, the root included.
    pub pages: BTreeSet<PageNo>,
    /// Broken invariants, at most 1000 (see `problems_omitted`).
    pub problems: Vec<Problem>,
    /// Problems found beyond those listed.
    pub problems_omitted: u64,
    /// Entries (keys) in the tree.
    pub entries: u64,
    /// Entries whose value is a long value.
    pub long_values: u64,
    /// Entries whose value is in a values tree.
    pub separated_values: u64,
    /// Node pages (leaves and branches).
    pub node_pages: u64,
    /// Levels of the tree: 1 for a root leaf.
    pub height: u32,
}

impl VerifyReport {
    /// Whether the tree keeps every invariant.
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// One broken invariant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The page where it was found.
    pub page: PageNo,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "page {}: {}", self.page, self.message)
    }
}

/// Checks every invariant of the tree at `root`: node layout, key order
/// within and across nodes (separators bound their subtrees), equal leaf
/// depth, fill (no non-root node under a quarter full, no empty branch),
/// cell sizes, and each long value's pages and length; and lists the pages
/// used. Damage is reported in the report; `Err` only when the store fails
/// otherwise (I/O).
pub fn verify<S: PageRead + ?Sized>(store: &S, root: PageNo) -> Result<VerifyReport> {
    let mut verifier = Verifier::new(store, false)?;
    verifier.node(root, None, None, None)?;
    // Without a values tree, a separated value is damage (and its tree unknown).
    for (tree, id, _, leaf) in std::mem::take(&mut verifier.refs) {
        verifier.problem(
            leaf,
            format!("separated value {id} in page {tree}, in a tree without a values tree"),
        );
    }
    Ok(verifier.report)
}

/// [`verify`] of a table's tree and of its values tree at `values`, as one
/// report (the pages of both; the entries of the table): also that every
/// separated value of the table is in `values` with the length its cell
/// gives, and that every value there belongs to exactly one cell.
pub fn verify_with_values<S: PageRead + ?Sized>(store: &S, root: PageNo, values: PageNo) -> Result<VerifyReport> {
    let mut verifier = Verifier::new(store, false)?;
    verifier.node(root, None, None, None)?;
    // The same verifier walks the values tree, so pages and problems add up;
    // the entries and height reported stay the table's.
    let (entries, height) = (verifier.report.entries, verifier.report.height);
    verifier.values_tree = true;
    verifier.node(values, None, None, None)?;
    verifier.report.entries = entries;
    verifier.report.height = height;
    // id -> (length, leaf, claimed by a cell)
    let mut held: BTreeMap<u64, (u32, PageNo, bool)> = std::mem::take(&mut verifier.ids)
        .into_iter()
        .map(|(id, len, leaf)| (id, (len, leaf, false)))
        .collect();
    for (tree, id, ref_len, leaf) in std::mem::take(&mut verifier.refs) {
        if tree != values {
            verifier.problem(
                leaf,
                format!("separated value {id} in page {tree}, not the table's values tree {values}"),
            );
            continue;
        }
        match held.get_mut(&id) {
            None => verifier.problem(leaf, format!("separated value {id} is missing from the values tree")),
            Some((_, _, true)) => verifier.problem(leaf, format!("separated value {id} belongs to two cells")),
            Some((len, _, claimed)) => {
                *claimed = true;
                let len = *len;
                if len != ref_len {
                    verifier.problem(
                        leaf,
                        format!("separated value {id} holds {len} bytes, the cell says {ref_len}"),
                    );
                }
            }
        }
    }
    for (id, (_, holder, claimed)) in held {
        if !claimed {
            verifier.problem(holder, format!("values tree entry {id} belongs to no cell"));
        }
    }
    Ok(verifier.report)
}

struct Verifier<'s, S: ?Sized> {
    store: &'s S,
    geo: Geometry,
    report: VerifyReport,
    /// Checking a values tree: inline values under 8-byte ids only.
    values_tree: bool,
    /// Separated values named by the table's cells: tree, id, length, leaf.
    refs: Vec<(PageNo, u64, u32, PageNo)>,
    /// A values tree's entries in key order: id, length, leaf.
    ids: Vec<(u64, u32, PageNo)>,
}

/// Damage reported by the store (bad checksum, misplaced page) is a problem
/// of the tree; any other error stops the check.
fn damage(e: DbError) -> Result<String> {
    match e {
        DbError::CorruptPage { reason, .. } | DbError::Corrupt { reason, .. } => Ok(reason),
        e => Err(e),
    }
}

impl<'s, S: PageRead + ?Sized> Verifier<'s, S> {
    fn new(store: &'s S, values_tree: bool) -> Result<Self> {
        Ok(Verifier {
            store,
            geo: Geometry::checked(store.page_size())?,
            report: VerifyReport::default(),
            values_tree,
            refs: Vec::new(),
            ids: Vec::new(),
        })
    }

    fn problem(&mut self, page: PageNo, message: impl Into<String>) {
        if self.report.problems.len() < MAX_PROBLEMS {
            let message = message.into();
            self.report.problems.push(Problem { page, message });
        } else {
            self.report.problems_omitted += 1;
        }
    }

    /// Claims page `no` for the tree; false if it was already claimed.
    fn claim(&mut self, no: PageNo, what: &str) -> bool {
        if self.report.pages.insert(no) {
            return true;
        }
        self.problem(no, format!("{what} is reached a second time"));
        false
    }

    fn read(&mut self, no: PageNo) -> Result<Option<PageRef>> {
        if !self.claim(no, "node") {
            return Ok(None);
        }
        match self.store.page(no) {
            Ok(page) => Ok(Some(page)),
            Err(e) => {
                let reason = damage(e)?;
                self.problem(no, format!("unreadable: {reason}"));
                Ok(None)
            }
        }
    }

    /// Checks node `no` (at `level`, `None` for the root) whose keys must lie
    /// in `[lower, upper)`, and its subtree. Depth is bounded by the levels.
    fn node(&mut self, no: PageNo, level: Option<u8>, lower: Option<&[u8]>, upper: Option<&[u8]>) -> Result<()> {
        let Some(page) = self.read(no)? else {
            return Ok(());
        };
        if page.len() != self.geo.page_size {
            self.problem(no, format!("page of {} bytes", page.len()));
            return Ok(());
        }
        let node = match Node::open(&page) {
            Ok(node) => node,
            Err(m) => {
                self.problem(no, format!("byte {}: {}", m.pos, m.reason));
                return Ok(());
            }
        };
        match level {
            Some(level) if node.level() != level => {
                self.problem(
                    no,
                    format!("node at level {} where level {level} belongs", node.level()),
                );
                return Ok(());
            }
            Some(_) => {}
            None => self.report.height = u32::from(node.level()) + 1,
        }
        self.report.node_pages += 1;
        if let Err(m) = node.check_layout() {
            self.problem(no, format!("byte {}: {}", m.pos, m.reason));
            return Ok(());
        }
        let mut keys = Vec::with_capacity(node.count());
        for i in 0..node.count() {
            match node.key(i) {
                Ok(key) => keys.push(key),
                Err(m) => {
                    self.problem(no, format!("byte {}: {}", m.pos, m.reason));
                    return Ok(());
                }
            }
        }
        self.check_keys(no, &keys, lower, upper);
        let is_root = level.is_none();
        if !is_root && node.used() < self.geo.min_fill {
            let message = format!(
                "node uses {} bytes, under the minimum of {}",
                node.used(),
                self.geo.min_fill
            );
            self.problem(no, message);
        }
        if node.is_leaf() {
            return self.leaf_values(no, &node, &keys);
        }
        if node.count() == 0 {
            self.problem(no, "branch without keys");
        }
        for j in 0..=node.count() {
            let child = match node.child(j) {
                Ok(child) => child,
                Err(m) => {
                    self.problem(no, format!("byte {}: {}", m.pos, m.reason));
                    continue;
                }
            };
            let low = if j == 0 { lower } else { Some(keys[j - 1]) };
            let high = if j == node.count() { upper } else { Some(keys[j]) };
            self.node(child, Some(node.level() - 1), low, high)?;
        }
        Ok(())
    }

    fn check_keys(&mut self, no: PageNo, keys: &[&[u8]], lower: Option<&[u8]>, upper: Option<&[u8]>) {
        for (i, key) in keys.iter().enumerate() {
            if key.len() > self.geo.max_key {
                self.problem(
                    no,
                    format!("key {i} of {} bytes, over the maximum {}", key.len(), self.geo.max_key),
                );
            }
            if i > 0 && keys[i - 1] >= *key {
                self.problem(no, format!("key {i} is not above key {}", i - 1));
            }
            if lower.is_some_and(|low| *key < low) || upper.is_some_and(|high| *key >= high) {
                self.problem(no, format!("key {i} lies outside the range its parent gives"));
            }
        }
    }

    fn leaf_values(&mut self, no: PageNo, node: &Node<'_>, keys: &[&[u8]]) -> Result<()> {
        for (i, key) in keys.iter().enumerate() {
            self.report.entries += 1;
            let value = match node.value(i) {
                Ok(value) => value,
                Err(m) => {
                    self.problem(no, format!("byte {}: {}", m.pos, m.reason));
                    continue;
                }
            };
            if self.values_tree {
                match (value, <[u8; VALUE_ID_LEN]>::try_from(*key)) {
                    (CellValue::Inline(bytes), Ok(id)) => {
                        // A cell under a quarter page: its length fits.
                        self.ids.push((u64::from_be_bytes(id), bytes.len() as u32, no));
                    }
                    _ => self.problem(no, format!("cell {i}: not an inline value under an 8-byte id")),
                }
            }
            let (value_len, long) = match value {
                CellValue::Inline(bytes) => (bytes.len(), None),
                CellValue::Long { len, root } => (LONG_DESCRIPTOR_LEN, Some((len, root))),
                CellValue::Separated { len, tree, id } => {
                    self.report.separated_values += 1;
                    if let Err(reason) = separate::check_descriptor(len, tree, id) {
                        self.problem(no, format!("cell {i}: {reason}"));
                    } else if !self.geo.separates(key.len(), u64::from(len)) {
                        self.problem(no, format!("cell {i}: a separated value of {len} bytes belongs inline"));
                    } else {
                        self.refs.push((tree, id, len, no));
                    }
                    (SEPARATED_DESCRIPTOR_LEN, None)
                }
            };
            let footprint = SLOT_LEN + LEAF_CELL_HEADER + key.len() + value_len;
            if footprint > self.geo.max_cell + SLOT_LEN {
                self.problem(
                    no,
                    format!("cell {i} takes {footprint} bytes, over a quarter of the node"),
                );
            }
            let Some((len, root)) = long else {
                continue;
            };
            self.report.long_values += 1;
            match long::check_descriptor(len, root) {
                Err(reason) => self.problem(no, format!("cell {i}: {reason}")),
                Ok(value) => {
                    if self.geo.is_inline(key.len(), len) {
                        self.problem(no, format!("cell {i}: a long value of {len} bytes would fit inline"));
                    }
                    self.long_value(no, &value)?;
                }
            }
        }
        Ok(())
    }

    /// Checks the pages of a long value held by leaf `leaf`.
    fn long_value(&mut self, leaf: PageNo, value: &LongValue) -> Result<()> {
        let shape = Shape::new(&self.geo, value.len);
        let mut stack = vec![(value.root, shape.height, 0u64)];
        while let Some((no, level, start)) = stack.pop() {
            if !self.claim(no, &format!("page of a long value in leaf {leaf}")) {
                continue;
            }
            let page = match long::read_page(self.store, &shape, no, level, start) {
                Ok(page) => page,
                Err(e) => {
                    let reason = damage(e)?;
                    self.problem(no, format!("long value in leaf {leaf}: {reason}"));
                    continue;
                }
            };
            if level > 0 {
                match long::children(self.store, &shape, &page, no, level, start) {
                    Ok(children) => stack.extend(children.into_iter().map(|(child, at)| (child, level - 1, at))),
                    Err(e) => {
                        let reason = damage(e)?;
                        self.problem(no, format!("long value in leaf {leaf}: {reason}"));
                    }
                }
            }
        }
        Ok(())
    }
}
