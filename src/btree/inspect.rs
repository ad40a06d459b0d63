//! A lenient, read-only description of one node page, for operators' tools
//! (`mailvault dump page`): what it holds and where it is damaged.

use super::node::{CellValue, Node};
use crate::pager::page::PageNo;

/// What a node page holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeSummary {
    /// 0 for a leaf.
    pub level: u8,
    pub count: usize,
    pub used_bytes: usize,
    pub free_bytes: usize,
    /// A branch's leftmost child.
    pub leftmost: Option<PageNo>,
    /// The first cells, in key order.
    pub cells: Vec<CellSummary>,
    /// The first problem met, if the layout or a cell is damaged.
    pub damage: Option<String>,
}

/// One cell: a key and what it leads to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CellSummary {
    Inline {
        key: Vec<u8>,
        value: Vec<u8>,
    },
    Long {
        key: Vec<u8>,
        len: u64,
        root: PageNo,
    },
    /// A value kept in the values tree at `tree`, under `id`.
    Separated {
        key: Vec<u8>,
        len: u32,
        tree: PageNo,
        id: u64,
    },
    Child {
        key: Vec<u8>,
        child: PageNo,
    },
}

/// Describes the node in `page`, listing at most `max_cells` cells. Never
/// fails: damage is reported in the summary.
pub fn inspect_node(page: &[u8], max_cells: usize) -> NodeSummary {
    let node = match Node::open(page) {
        Ok(n) => n,
        Err(e) => {
            return NodeSummary {
                level: 0,
                count: 0,
                used_bytes: 0,
                free_bytes: 0,
                leftmost: None,
                cells: Vec::new(),
                damage: Some(format!("node header: {e:?}")),
            };
        }
    };
    let mut damage = node.check_layout().err().map(|e| format!("layout: {e:?}"));
    let mut cells = Vec::new();
    for i in 0..node.count().min(max_cells) {
        let cell = if node.is_leaf() {
            node.entry(i).map(|(key, value)| match value {
                CellValue::Inline(v) => CellSummary::Inline {
                    key: key.to_vec(),
                    value: v.to_vec(),
                },
                CellValue::Long { len, root } => CellSummary::Long {
                    key: key.to_vec(),
                    len,
                    root,
                },
                CellValue::Separated { len, tree, id } => CellSummary::Separated {
                    key: key.to_vec(),
                    len,
                    tree,
                    id,
                },
            })
        } else {
            node.key(i).and_then(|key| {
                node.child(i + 1).map(|child| CellSummary::Child {
                    key: key.to_vec(),
                    child,
                })
            })
        };
        match cell {
            Ok(c) => cells.push(c),
            Err(e) => {
                damage.get_or_insert_with(|| format!("cell {i}: {e:?}"));
                break;
            }
        }
    }
    NodeSummary {
        level: node.level(),
        count: node.count(),
        used_bytes: node.used(),
        free_bytes: node.free_space(),
        leftmost: (!node.is_leaf()).then(|| node.leftmost()),
        cells,
        damage,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::btree::{self, MemStore};
    use crate::pager::PageRead;

    #[test]
    fn a_leaf_and_a_damaged_page_are_described() {
        let mut store = MemStore::new(4096);
        let root = btree::create(&mut store).expect("create");
        btree::put(&mut store, root, b"alpha", b"one").expect("put");
        btree::put(&mut store, root, b"beta", &vec![7u8; 3000]).expect("put");
        let page = store.page(root).expect("page");
        let s = inspect_node(&page, 10);
        assert_eq!((s.level, s.count, s.damage.clone()), (0, 2, None));
        assert_eq!(
            s.cells[0],
            CellSummary::Inline {
                key: b"alpha".to_vec(),
                value: b"one".to_vec()
            }
        );
        assert!(matches!(&s.cells[1], CellSummary::Long { key, len: 3000, .. } if key == b"beta"));
        let mut bad = page.to_vec();
        bad[34] = 0xff; // the cell count
        bad[35] = 0xff;
        assert!(inspect_node(&bad, 10).damage.is_some());
    }
}
