//! Model test of the B+tree against `std::collections::BTreeMap`: random
//! puts (small, medium and long values, from slices and from readers),
//! deletes, gets, byte-range reads of long values, range scans from both ends,
//! and drops, on 4 KiB and 16 KiB pages. After every sequence the tree
//! verifies, owns exactly the store's live pages, and shrinks back to one
//! page when everything is deleted.

use mailvault::btree::{self, MemStore, Value};
use mailvault::pager::PageNo;
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::ops::Bound;

#[derive(Debug, Clone)]
enum Op {
    Put(Vec<u8>, Len),
    PutStream(Vec<u8>, Len),
    Delete(Vec<u8>),
    Get(Vec<u8>),
    ReadAt(Vec<u8>, u64, usize),
    Scan {
        start: Bound<Vec<u8>>,
        end: Bound<Vec<u8>>,
        reverse: bool,
        limit: usize,
    },
    Drop,
}

/// A value's length and a seed for its bytes (big values are not generated
/// byte by byte).
#[derive(Debug, Clone, Copy)]
struct Len(usize, u8);

fn bytes(len: Len) -> Vec<u8> {
    (0..len.0)
        .map(|i| (i as u8).wrapping_mul(13) ^ len.1 ^ (i >> 9) as u8)
        .collect()
}

fn key() -> impl Strategy<Value = Vec<u8>> {
    keys(400, 30, 6, 1)
}

/// Numbered keys, a few random ones, and long keys (the 4 KiB maximum is
/// 505) with shared prefixes, which make long separators and narrow branches.
fn keys(numbered: u32, long: u32, numbered_weight: u32, long_weight: u32) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        numbered_weight => (0..numbered).prop_map(|i| format!("{i:05}").into_bytes()),
        1 => prop::collection::vec(any::<u8>(), 0..6),
        long_weight => (0..long, 100usize..=505).prop_map(|(i, len)| {
            let mut key = vec![b'z'; len];
            key[len - 4..].copy_from_slice(&i.to_be_bytes());
            key
        }),
    ]
}

fn len() -> impl Strategy<Value = Len> {
    let size = prop_oneof![8 => 0usize..80, 4 => 80usize..1100, 1 => 1100usize..40_000];
    (size, any::<u8>()).prop_map(|(n, seed)| Len(n, seed))
}

fn bound() -> impl Strategy<Value = Bound<Vec<u8>>> {
    prop_oneof![
        1 => Just(Bound::Unbounded),
        2 => key().prop_map(Bound::Included),
        2 => key().prop_map(Bound::Excluded),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        30 => (key(), len()).prop_map(|(k, l)| Op::Put(k, l)),
        4 => (key(), len()).prop_map(|(k, l)| Op::PutStream(k, l)),
        14 => key().prop_map(Op::Delete),
        6 => key().prop_map(Op::Get),
        3 => (key(), any::<u64>(), 0usize..20_000).prop_map(|(k, at, n)| Op::ReadAt(k, at, n)),
        4 => (bound(), bound(), any::<bool>(), 0usize..150)
            .prop_map(|(start, end, reverse, limit)| Op::Scan { start, end, reverse, limit }),
        1 => Just(Op::Drop),
    ]
}

/// What `BTreeMap::range` would panic on is an empty range for the tree.
fn empty_range(start: &Bound<Vec<u8>>, end: &Bound<Vec<u8>>) -> bool {
    match (start, end) {
        (Bound::Included(s) | Bound::Excluded(s), Bound::Included(e) | Bound::Excluded(e)) if s > e => true,
        (Bound::Excluded(s), Bound::Excluded(e)) => s == e,
        _ => false,
    }
}

fn check_tree(store: &MemStore, root: PageNo, model: &BTreeMap<Vec<u8>, Vec<u8>>) -> Result<(), TestCaseError> {
    let report = btree::verify(store, root).unwrap();
    prop_assert!(report.is_ok(), "{:?}", &report.problems[..report.problems.len().min(5)]);
    prop_assert_eq!(&report.pages, &store.live_page_numbers(), "tree pages vs live pages");
    prop_assert_eq!(report.entries, model.len() as u64);
    Ok(())
}

fn run(page_size: usize, ops: &[Op]) -> Result<(), TestCaseError> {
    let mut store = MemStore::new(page_size);
    let mut root = btree::create(&mut store).unwrap();
    let mut model: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
    let max_key = btree::max_key_len(page_size);
    for (n, op) in ops.iter().enumerate() {
        match op {
            Op::Put(k, l) | Op::PutStream(k, l) => {
                let value = bytes(*l);
                let put = match op {
                    Op::Put(..) => btree::put(&mut store, root, k, &value),
                    _ => btree::put_stream(&mut store, root, k, &mut &value[..], value.len() as u64),
                };
                if k.len() > max_key {
                    prop_assert!(put.is_err());
                } else {
                    prop_assert_eq!(put.unwrap(), model.insert(k.clone(), value).is_some());
                }
            }
            Op::Delete(k) => {
                prop_assert_eq!(btree::delete(&mut store, root, k).unwrap(), model.remove(k).is_some());
            }
            Op::Get(k) => {
                let got = btree::get_bytes(&store, root, k).unwrap();
                prop_assert_eq!(got.as_ref(), model.get(k));
            }
            Op::ReadAt(k, at, n) => {
                if let (Some(Value::Long(long)), Some(want)) = (btree::get(&store, root, k).unwrap(), model.get(k)) {
                    let at = at % (want.len() as u64 + 10);
                    let mut buf = vec![0u8; *n];
                    let got = btree::read_long(&store, &long, at, &mut buf).unwrap();
                    let from = (at as usize).min(want.len());
                    let to = (from + n).min(want.len());
                    prop_assert_eq!(&buf[..got], &want[from..to]);
                }
            }
            Op::Scan {
                start,
                end,
                reverse,
                limit,
            } => {
                let range = btree::range(
                    &store,
                    root,
                    start.as_ref().map(Vec::as_slice),
                    end.as_ref().map(Vec::as_slice),
                );
                let range = range.unwrap();
                let got: Vec<(Vec<u8>, Vec<u8>)> = if *reverse {
                    range
                        .rev()
                        .take(*limit)
                        .map(|item| item.unwrap())
                        .map(|(k, v)| (k, btree::read_value(&store, &v).unwrap()))
                        .collect()
                } else {
                    range
                        .take(*limit)
                        .map(|item| item.unwrap())
                        .map(|(k, v)| (k, btree::read_value(&store, &v).unwrap()))
                        .collect()
                };
                let want: Vec<(Vec<u8>, Vec<u8>)> = if empty_range(start, end) {
                    Vec::new()
                } else {
                    let all = model
                        .range::<Vec<u8>, _>((start.clone(), end.clone()))
                        .map(|(k, v)| (k.clone(), v.clone()));
                    if *reverse {
                        all.rev().take(*limit).collect()
                    } else {
                        all.take(*limit).collect()
                    }
                };
                prop_assert_eq!(got, want);
            }
            Op::Drop => {
                btree::drop_tree(&mut store, root).unwrap();
                prop_assert_eq!(store.live_pages(), 0);
                model.clear();
                root = btree::create(&mut store).unwrap();
            }
        }
        if n % 64 == 63 {
            check_tree(&store, root, &model)?;
        }
    }
    check_tree(&store, root, &model)?;
    let all: Vec<Vec<u8>> = btree::iter(&store, root).unwrap().map(|item| item.unwrap().0).collect();
    prop_assert_eq!(&all, &model.keys().cloned().collect::<Vec<_>>());
    for k in model.keys() {
        prop_assert!(btree::delete(&mut store, root, k).unwrap());
    }
    check_tree(&store, root, &BTreeMap::new())?;
    prop_assert_eq!(store.live_pages(), 1, "an emptied tree is one page");
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn matches_btreemap_4k(ops in prop::collection::vec(op(), 1..400)) {
        run(4096, &ops)?;
    }

    #[test]
    fn matches_btreemap_16k(ops in prop::collection::vec(op(), 1..400)) {
        run(16384, &ops)?;
    }
}

/// Mostly puts, so that trees of three and more levels are common.
fn put_heavy() -> impl Strategy<Value = Vec<Op>> {
    let key = || keys(3000, 1000, 3, 2);
    let op = prop_oneof![
        10 => (key(), len()).prop_map(|(k, l)| Op::Put(k, l)),
        3 => key().prop_map(Op::Delete),
        1 => (bound(), bound(), any::<bool>(), 0usize..400)
            .prop_map(|(start, end, reverse, limit)| Op::Scan { start, end, reverse, limit }),
    ];
    prop::collection::vec(op, 400..1200)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn deep_trees_match_btreemap(ops in put_heavy()) {
        run(4096, &ops)?;
    }
}
