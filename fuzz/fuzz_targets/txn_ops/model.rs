//! The model `txn_ops` checks the database against: committed states, and
//! what a range or a scan of them holds.

use super::*;

/// Committed states from the oldest one a reader or recovery may still see.
pub(super) struct History {
    pub(super) states: Vec<Model>,
    /// Recovery after a power cut gives `states[durable..]`.
    pub(super) durable: usize,
    /// Snapshots see `states[visible..]`.
    pub(super) visible: usize,
}

impl History {
    pub(super) fn new(model: Model) -> History {
        History {
            states: vec![model],
            durable: 0,
            visible: 0,
        }
    }

    pub(super) fn latest(&self) -> &Model {
        self.states.last().expect("never empty")
    }

    pub(super) fn push(&mut self, model: Model) {
        self.states.push(model);
    }

    /// Everything committed so far is durable and visible.
    pub(super) fn all_durable(&mut self) {
        let last = self.states.len() - 1;
        self.durable = last;
        self.visible = last;
        self.compact();
    }

    pub(super) fn compact(&mut self) {
        let lo = self.durable.min(self.visible);
        self.states.drain(..lo);
        self.durable -= lo;
        self.visible -= lo;
    }

    /// A snapshot saw a state matching `seen`: the first match at or after the
    /// visible floor becomes the floor.
    pub(super) fn saw(&mut self, what: &str, seen: impl Fn(&Model) -> bool) {
        match (self.visible..self.states.len()).find(|&i| seen(&self.states[i])) {
            Some(i) => {
                self.visible = i;
                self.compact();
            }
            None => panic!(
                "{what}: a snapshot sees none of the {} committed states it may see",
                self.states.len() - self.visible
            ),
        }
    }
}

/// Entries of `rows` within the bounds (no `BTreeMap::range`: it panics on
/// crossed bounds, which the database must simply find empty).
pub(super) fn model_range(rows: &Rows, start: &Bound<Vec<u8>>, end: &Bound<Vec<u8>>) -> Vec<(Vec<u8>, Vec<u8>)> {
    let above = |k: &[u8]| match start {
        Bound::Unbounded => true,
        Bound::Included(s) => k >= s.as_slice(),
        Bound::Excluded(s) => k > s.as_slice(),
    };
    let below = |k: &[u8]| match end {
        Bound::Unbounded => true,
        Bound::Included(e) => k <= e.as_slice(),
        Bound::Excluded(e) => k < e.as_slice(),
    };
    rows.iter()
        .filter(|(k, _)| above(k) && below(k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// A scan's result: the items from the front, and those from the back.
#[derive(Debug, Default)]
pub(super) struct Scan {
    pub(super) front: Vec<(Vec<u8>, Vec<u8>)>,
    pub(super) back: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Scan {
    pub(super) fn matches(&self, want: &[(Vec<u8>, Vec<u8>)]) -> bool {
        if self.front.len() + self.back.len() != want.len() {
            return false;
        }
        let (head, tail) = want.split_at(self.front.len());
        self.front == head && self.back.iter().eq(tail.iter().rev())
    }
}
