//! Damage tests: random bytes of a tree's pages (nodes and long values) are
//! changed, then every operation must return an error or an answer, and
//! never panic, loop or allocate without bound.

use super::*;
use crate::pager::page::{self, PageKind};
use crate::pager::{PageRead, PageWrite};
use proptest::prelude::*;
use std::ops::Bound;
use std::sync::OnceLock;

const PAGE: usize = 4096;
const PREFIX: &str = "mailbox/0123456789abcdef0123456789abcdef/0123456789abcdef0123456789abcdef/INBOX/";

/// A tree of three levels with inline and long values (of one and of several
/// data pages), and its keys.
fn sample() -> &'static (MemStore, PageNo, Vec<Vec<u8>>) {
    static SAMPLE: OnceLock<(MemStore, PageNo, Vec<Vec<u8>>)> = OnceLock::new();
    SAMPLE.get_or_init(|| {
        let mut store = MemStore::new(PAGE);
        let root = create(&mut store).unwrap();
        let mut keys = Vec::new();
        for i in 0..1500u32 {
            // A long shared prefix makes separators long and branches narrow.
            let key = format!("{PREFIX}{:05}", i * 7 % 1500).into_bytes();
            let len = match i % 50 {
                0 => 3000,
                1 => 9000,
                _ => 40 + (i as usize % 7) * 30,
            };
            put(&mut store, root, &key, &vec![i as u8; len]).unwrap();
            keys.push(key);
        }
        let report = verify(&store, root).unwrap();
        assert!(report.is_ok() && report.height == 3, "{report:?}");
        (store, root, keys)
    })
}

#[derive(Debug, Clone)]
enum Damage {
    /// XOR a byte (never zero: a real change).
    Flip { at: usize, mask: u8 },
    /// Overwrite a little-endian field of 1, 2 or 4 bytes.
    Set { at: usize, width: usize, value: u32 },
}

fn damage() -> impl Strategy<Value = Damage> {
    // Mostly the node and long value headers and the slots, where damage
    // changes structure rather than data.
    let at = prop_oneof![3 => 16usize..128, 1 => 0usize..PAGE];
    let value = prop_oneof![Just(0u32), Just(u32::MAX), 0u32..8, 0u32..70_000, any::<u32>()];
    prop_oneof![
        (at.clone(), 1u8..=255).prop_map(|(at, mask)| Damage::Flip { at, mask }),
        (at, prop_oneof![Just(1usize), Just(2), Just(4)], value).prop_map(|(at, width, value)| Damage::Set {
            at,
            width,
            value
        }),
    ]
}

fn apply(page: &mut [u8], damage: &Damage) {
    match *damage {
        Damage::Flip { at, mask } => page[at % PAGE] ^= mask,
        Damage::Set { at, width, value } => {
            let at = (at % PAGE).min(PAGE - width);
            page[at..at + width].copy_from_slice(&value.to_le_bytes()[..width]);
        }
    }
}

/// Runs every read operation; each must finish with an error or an answer.
fn read_everything(store: &MemStore, root: PageNo, keys: &[Vec<u8>]) {
    for key in keys.iter().step_by(5) {
        if let Ok(Some(value)) = get(store, root, key) {
            let _ = read_value(store, &value);
            if let Value::Long(long) = value {
                let mut buf = [0u8; 100];
                let _ = read_long(store, &long, long.len() / 2, &mut buf);
            }
        }
    }
    // Each iteration ends by itself: at most one item per key stored.
    for reverse in [false, true] {
        let start = format!("{PREFIX}00100");
        let Ok(mut range) = range(store, root, Bound::Included(start.as_bytes()), Bound::Unbounded) else {
            continue;
        };
        let mut items = 0;
        loop {
            let item = if reverse { range.next_back() } else { range.next() };
            match item {
                None | Some(Err(_)) => break,
                Some(Ok(_)) => items += 1,
            }
            assert!(items <= keys.len() * 2, "iteration does not end");
        }
    }
    // A visit ends by itself too, and reads every long value it is given.
    let mut visited = 0;
    let _ = visit_range(store, root, Bound::Unbounded, Bound::Unbounded, |_, v| {
        visited += 1;
        assert!(visited <= keys.len() * 2, "a visit does not end");
        if let ValueRef::Long(long) = v {
            let mut buf = [0u8; 100];
            let _ = read_long(store, &long, 0, &mut buf);
        }
        Ok::<_, crate::pager::DbError>(true)
    });
    if let Ok(report) = verify(store, root) {
        assert!(report.pages.len() <= store.allocated_pages());
    }
}

/// Runs writes on a copy; they may fail but must not panic or loop.
fn write_everything(store: &MemStore, root: PageNo, keys: &[Vec<u8>]) {
    let mut store = store.clone();
    for (i, key) in keys.iter().enumerate().step_by(97) {
        let value = vec![9u8; if i % 2 == 0 { 700 } else { 5000 }];
        let _ = put(&mut store, root, key, &value);
        let _ = delete(&mut store, root, &keys[(i * 31) % keys.len()]);
    }
    read_everything(&store, root, keys);
    let _ = drop_tree(&mut store, root);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 500, ..ProptestConfig::default() })]

    #[test]
    fn damaged_trees_never_panic(
        damages in prop::collection::vec((any::<prop::sample::Index>(), damage()), 1..4)
    ) {
        let (clean, root, keys) = sample();
        let mut store = clean.clone();
        let pages: Vec<PageNo> = store.live_page_numbers().into_iter().collect();
        for (pick, damage) in &damages {
            let no = pages[pick.index(pages.len())];
            apply(store.page_mut(no).unwrap(), damage);
        }
        read_everything(&store, *root, keys);
        write_everything(&store, *root, keys);
    }

    #[test]
    fn damage_to_a_used_node_byte_is_reported_or_harmless(pick in any::<prop::sample::Index>(), at in 32usize..64) {
        // Header damage of a node: verify reports it, or reads still agree.
        let (clean, root, keys) = sample();
        let mut store = clean.clone();
        let report = verify(&store, *root).unwrap();
        let nodes: Vec<PageNo> = report
            .pages
            .iter()
            .copied()
            .filter(|&no| matches!(page::page_kind(&store.page(no).unwrap()), Some(PageKind::Leaf | PageKind::Branch)))
            .collect();
        let no = nodes[pick.index(nodes.len())];
        store.page_mut(no).unwrap()[at] ^= 0x41;
        let report = verify(&store, *root).unwrap();
        if report.is_ok() {
            for key in keys {
                prop_assert_eq!(get_bytes(&store, *root, key).ok(), get_bytes(clean, *root, key).ok());
            }
        } else {
            prop_assert!(report.problems.iter().all(|p| report.pages.contains(&p.page)));
        }
    }
}
