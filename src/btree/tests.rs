//! Unit tests of tree operations on a [`MemStore`].

use super::*;
use crate::pager::page;
use crate::pager::{PageRead, PageWrite};
use std::collections::BTreeMap;
use std::ops::Bound;

/// Verifies the tree and checks it owns exactly the store's live pages.
fn check(store: &MemStore, root: PageNo) -> VerifyReport {
    assert_sound(store, verify(store, root).unwrap())
}

/// Checks that a report found no problem and names exactly the live pages.
pub(super) fn assert_sound(store: &MemStore, report: VerifyReport) -> VerifyReport {
    assert!(
        report.is_ok(),
        "{:?}",
        &report.problems[..report.problems.len().min(10)]
    );
    assert_eq!(report.pages, store.live_page_numbers(), "pages leaked or shared");
    report
}

fn key(i: u32) -> Vec<u8> {
    format!("user{:04}/INBOX/{:08}", i % 97, i).into_bytes()
}

fn value(i: u32, len: usize) -> Vec<u8> {
    (0..len).map(|j| (i as usize * 7 + j) as u8).collect()
}

fn all(store: &MemStore, root: PageNo) -> Vec<(Vec<u8>, Vec<u8>)> {
    iter(store, root)
        .unwrap()
        .map(|item| {
            let (k, v) = item.unwrap();
            (k, read_value(store, &v).unwrap())
        })
        .collect()
}

#[test]
fn empty_tree_and_single_entries() {
    let mut store = MemStore::new(4096);
    let root = create(&mut store).unwrap();
    assert_eq!(get(&store, root, b"a").unwrap(), None);
    assert_eq!(iter(&store, root).unwrap().count(), 0);
    assert!(!delete(&mut store, root, b"a").unwrap());
    assert!(!put(&mut store, root, b"", b"").unwrap(), "empty key and value");
    assert!(!put(&mut store, root, b"a", b"1").unwrap());
    assert!(put(&mut store, root, b"a", b"22").unwrap(), "replaced");
    assert_eq!(get(&store, root, b"").unwrap(), Some(Value::Inline(vec![])));
    assert_eq!(get_bytes(&store, root, b"a").unwrap(), Some(b"22".to_vec()));
    assert_eq!(check(&store, root).entries, 2);
    assert!(delete(&mut store, root, b"").unwrap());
    assert!(delete(&mut store, root, b"a").unwrap());
    assert_eq!(store.live_pages(), 1);
    drop_tree(&mut store, root).unwrap();
    assert_eq!(store.live_pages(), 0);
}

#[test]
fn limits_give_typed_errors() {
    let mut store = MemStore::new(4096);
    let root = create(&mut store).unwrap();
    let max = max_key_len(4096);
    assert_eq!(max, 505);
    assert_eq!(max_key_len(16384), 2041);
    assert_eq!(max_key_len(65536), MAX_KEY_LEN_CAP);
    let long_key = vec![7u8; max + 1];
    let err = put(&mut store, root, &long_key, b"v").unwrap_err();
    assert!(matches!(err, DbError::KeyTooLarge { len: 506, max: 505 }), "{err}");
    assert_eq!(get(&store, root, &long_key).unwrap(), None);
    let err = put_stream(&mut store, root, b"k", &mut &b""[..], MAX_VALUE_LEN + 1).unwrap_err();
    assert!(matches!(err, DbError::ValueTooLarge { .. }), "{err}");
    let err = put_stream(&mut store, root, b"k", &mut &b"abc"[..], 10).unwrap_err();
    assert!(matches!(err, DbError::Io { .. }), "{err}");
    assert_eq!(store.live_pages(), 1, "failed puts leave nothing behind");
    let mut odd = MemStore::new(5000);
    assert!(matches!(create(&mut odd), Err(DbError::InvalidArgument(_))));
}

/// Inserts, overwrites and deletes enough keys to build a tree of several
/// levels and shrink it back, checking every invariant along the way.
/// `i`-th element of a permutation of `0..count` (`mult` coprime with `count`).
fn permute(i: u32, count: u32, mult: u64) -> u32 {
    (u64::from(i) * mult % u64::from(count)) as u32
}

fn grow_and_shrink(page_size: usize, count: u32, value_len: usize, min_height: u32) {
    let mut store = MemStore::new(page_size);
    let root = create(&mut store).unwrap();
    let mut model = BTreeMap::new();
    for i in 0..count {
        let j = permute(i, count, 2_654_435_761);
        put(&mut store, root, &key(j), &value(j, value_len)).unwrap();
        model.insert(key(j), value(j, value_len));
        if i % 500 == 0 {
            check(&store, root);
        }
    }
    let report = check(&store, root);
    assert!(report.height >= min_height, "height {}", report.height);
    assert_eq!(all(&store, root), model.clone().into_iter().collect::<Vec<_>>());
    // Shrink values: leaves underflow and merge.
    for i in (0..count).step_by(3) {
        put(&mut store, root, &key(i), b"s").unwrap();
        model.insert(key(i), b"s".to_vec());
    }
    check(&store, root);
    for i in 0..count {
        let j = permute(i, count, 40_507);
        assert_eq!(
            delete(&mut store, root, &key(j)).unwrap(),
            model.remove(&key(j)).is_some()
        );
        if i % 500 == 0 {
            check(&store, root);
            assert_eq!(get_bytes(&store, root, &key(j)).unwrap(), None);
        }
    }
    check(&store, root);
    assert_eq!(store.live_pages(), 1);
    let page = store.page(root).unwrap();
    assert_eq!(
        page::page_kind(&page),
        Some(page::PageKind::Leaf),
        "root is a leaf again"
    );
}

#[test]
fn splits_and_merges_4k() {
    grow_and_shrink(4096, 6000, 120, 3);
}

#[test]
fn splits_and_merges_16k() {
    grow_and_shrink(16384, 12000, 300, 2);
}

#[test]
fn splits_and_merges_64k() {
    grow_and_shrink(65536, 4000, 400, 2);
}

#[test]
fn max_length_keys_split_and_merge() {
    for page_size in [4096, 16384] {
        let mut store = MemStore::new(page_size);
        let root = create(&mut store).unwrap();
        let max = max_key_len(page_size);
        let big = |i: u32| {
            let mut k = vec![b'x'; max];
            k[max - 4..].copy_from_slice(&i.to_be_bytes());
            k
        };
        for i in 0..300 {
            // Values of the largest inline size and long values alternate.
            let len = if i % 2 == 0 {
                max_inline_value_len(page_size, max)
            } else {
                5000
            };
            put(&mut store, root, &big(i), &value(i, len)).unwrap();
        }
        let report = check(&store, root);
        assert_eq!(report.entries, 300);
        assert_eq!(report.long_values, 150);
        for i in 0..300 {
            assert!(delete(&mut store, root, &big(i)).unwrap());
            if i % 37 == 0 {
                check(&store, root);
            }
        }
        check(&store, root);
        assert_eq!(store.live_pages(), 1);
    }
}

#[test]
fn sequential_inserts_fill_pages() {
    let mut store = MemStore::new(16384);
    let root = create(&mut store).unwrap();
    for i in 0..20_000u32 {
        put(&mut store, root, format!("msg{i:010}").as_bytes(), &[1; 200]).unwrap();
    }
    let report = check(&store, root);
    // 20000 cells of 220 bytes is 268 pages' worth of 16 KiB.
    assert!(
        report.node_pages < 268 * 100 / 70,
        "{} pages: fill under 70%",
        report.node_pages
    );
}

#[test]
fn ranges_from_both_ends() {
    let mut store = MemStore::new(4096);
    let root = create(&mut store).unwrap();
    let mut model = BTreeMap::new();
    for i in 0..3000u32 {
        let k = format!("{:05}", i * 3).into_bytes();
        put(&mut store, root, &k, &value(i, 40)).unwrap();
        model.insert(k, value(i, 40));
    }
    fn keys(r: impl Iterator<Item = Result<(Vec<u8>, Value)>>) -> Vec<Vec<u8>> {
        r.map(|item| item.unwrap().0).collect()
    }
    type Bounds<'k> = (Bound<&'k [u8]>, Bound<&'k [u8]>);
    let bounds: [Bounds<'_>; 6] = [
        (Bound::Unbounded, Bound::Unbounded),
        (Bound::Included(b"00300"), Bound::Excluded(b"00600")),
        (Bound::Excluded(b"00300"), Bound::Included(b"00600")),
        (Bound::Included(b"00301"), Bound::Included(b"00599")),
        (Bound::Included(b"5"), Bound::Unbounded),
        (Bound::Included(b"00500"), Bound::Excluded(b"00400")),
    ];
    for (start, end) in bounds {
        let want: Vec<Vec<u8>> = if matches!((start, end), (Bound::Included(s), Bound::Excluded(e)) if s > e) {
            Vec::new()
        } else {
            model.range::<[u8], _>((start, end)).map(|(k, _)| k.clone()).collect()
        };
        assert_eq!(keys(range(&store, root, start, end).unwrap()), want);
        // A visit sees the same entries, values included, borrowed.
        let mut visited = Vec::new();
        visit_range(&store, root, start, end, |k, v| {
            let ValueRef::Inline(bytes) = v else {
                panic!("values of 40 bytes are inline")
            };
            assert_eq!(model.get(k).map(Vec::as_slice), Some(bytes));
            visited.push(k.to_vec());
            Ok::<_, crate::pager::DbError>(true)
        })
        .unwrap();
        assert_eq!(visited, want);
        // It stops when told: after the third entry.
        let mut seen = 0;
        visit_range(&store, root, start, end, |_, _| {
            seen += 1;
            Ok::<_, crate::pager::DbError>(seen < 3)
        })
        .unwrap();
        assert_eq!(seen, want.len().min(3));
        let mut back = keys(range(&store, root, start, end).unwrap().rev());
        back.reverse();
        assert_eq!(back, want);
        // Alternating ends meet in the middle without overlap.
        let mut r = range(&store, root, start, end).unwrap();
        let (mut front, mut rear) = (Vec::new(), Vec::new());
        while let Some(item) = r.next() {
            front.push(item.unwrap().0);
            match r.next_back() {
                Some(item) => rear.push(item.unwrap().0),
                None => break,
            }
        }
        rear.reverse();
        front.extend(rear);
        assert_eq!(front, want);
    }
}

#[test]
fn long_values_overwrite_and_delete_free_pages() {
    let mut store = MemStore::new(4096);
    let root = create(&mut store).unwrap();
    let big = value(1, 100_000);
    put(&mut store, root, b"big", &big).unwrap();
    let Some(Value::Long(long)) = get(&store, root, b"big").unwrap() else {
        panic!("stored inline");
    };
    assert_eq!(long.len(), 100_000);
    let mut buf = [0u8; 5000];
    assert_eq!(read_long(&store, &long, 99_000, &mut buf).unwrap(), 1000);
    assert_eq!(&buf[..1000], &big[99_000..]);
    assert_eq!(read_long(&store, &long, 100_000, &mut buf).unwrap(), 0);
    let pages = store.live_pages();
    assert_eq!(pages, 1 + 1 + 25, "root, index, 25 data pages");
    put(&mut store, root, b"big", &value(2, 50_000)).unwrap();
    assert_eq!(store.live_pages(), 1 + 1 + 13);
    check(&store, root);
    put(&mut store, root, b"big", b"small now").unwrap();
    assert_eq!(store.live_pages(), 1);
    let threshold = max_inline_value_len(4096, 3);
    put(&mut store, root, b"big", &value(3, threshold)).unwrap();
    assert!(matches!(get(&store, root, b"big").unwrap(), Some(Value::Inline(_))));
    put(&mut store, root, b"big", &value(3, threshold + 1)).unwrap();
    assert!(matches!(get(&store, root, b"big").unwrap(), Some(Value::Long(_))));
    let streamed = value(4, 3 * 4048 + 17);
    put_stream(&mut store, root, b"s", &mut &streamed[..], streamed.len() as u64).unwrap();
    assert_eq!(get_bytes(&store, root, b"s").unwrap(), Some(streamed));
    check(&store, root);
    assert!(delete(&mut store, root, b"big").unwrap());
    assert!(delete(&mut store, root, b"s").unwrap());
    assert_eq!(store.live_pages(), 1);
}

#[test]
fn drop_tree_frees_everything() {
    let mut store = MemStore::new(4096);
    let root = create(&mut store).unwrap();
    for i in 0..2000 {
        let len = if i % 100 == 0 { 9000 } else { 64 };
        put(&mut store, root, &key(i), &value(i, len)).unwrap();
    }
    assert!(check(&store, root).long_values == 20);
    let other = create(&mut store).unwrap();
    put(&mut store, other, b"x", b"y").unwrap();
    drop_tree(&mut store, root).unwrap();
    assert_eq!(store.live_page_numbers(), [other].into_iter().collect());
}

#[test]
fn verify_reports_damage_by_page() {
    let mut store = MemStore::new(4096);
    let root = create(&mut store).unwrap();
    for i in 0..500 {
        put(&mut store, root, &key(i), &value(i, 100)).unwrap();
    }
    let report = check(&store, root);
    let leaf = *report.pages.iter().find(|&&no| no != root).unwrap();
    // Swap the first two slots of a leaf: keys out of order.
    let page = store.page_mut(leaf).unwrap();
    let slots: Vec<u8> = page[52..64].to_vec();
    page[52..58].copy_from_slice(&slots[6..12]);
    page[58..64].copy_from_slice(&slots[0..6]);
    let report = verify(&store, root).unwrap();
    assert!(report.problems.iter().any(|p| p.page == leaf), "{:?}", report.problems);
    // A child pointer to the root: the level check catches the cycle.
    let page = store.page_mut(root).unwrap();
    page[44..48].copy_from_slice(&root.to_le_bytes());
    let report = verify(&store, root).unwrap();
    assert!(!report.is_ok());
    assert!(get(&store, root, b"").is_err());
}

#[test]
fn verify_reports_underfull_nodes() {
    let mut store = MemStore::new(4096);
    let root = create(&mut store).unwrap();
    for i in 0..200 {
        put(&mut store, root, &key(i), &value(i, 100)).unwrap();
    }
    let report = check(&store, root);
    let leaf = *report.pages.iter().find(|&&no| no != root).unwrap();
    // Empty a leaf behind the tree's back: no rebalancing happens.
    let page = store.page_mut(leaf).unwrap();
    while node::Node::open(page).unwrap().count() > 1 {
        node::remove_cell(page, 0).unwrap();
    }
    let report = verify(&store, root).unwrap();
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.page == leaf && p.message.contains("under the minimum"))
    );
}

#[test]
fn sealed_pages_pass_the_pager_check() {
    let mut store = MemStore::new(4096);
    let root = create(&mut store).unwrap();
    for i in 0..300 {
        put(&mut store, root, &key(i), &value(i, 300)).unwrap();
    }
    store.seal_all();
    store.verify_pages().unwrap();
}

#[test]
fn a_visit_reports_slot_heads_that_disagree_with_their_keys() {
    let mut store = MemStore::new(4096);
    let root = create(&mut store).unwrap();
    let keys: Vec<Vec<u8>> = (0..10u8).map(|i| vec![b'k', b'a' + i, b'x', b'y', b'z']).collect();
    for k in &keys {
        put(&mut store, root, k, b"v").unwrap();
    }
    let visit_to = |store: &MemStore, end: &[u8]| {
        let mut seen = Vec::new();
        visit_range(store, root, Bound::Unbounded, Bound::Included(end), |k, _| {
            seen.push(k.to_vec());
            Ok::<_, crate::pager::DbError>(true)
        })
        .map(|()| seen)
    };
    assert_eq!(visit_to(&store, &keys[5]).unwrap(), keys[..6].to_vec());
    // The root is the only leaf; slot 5's head (bytes 2..6 of its slot) now
    // ranks its key above every other, so a search would stop before it.
    let slot_head = node::NODE_HEADER_END + node::SLOT_LEN * 5 + 2;
    store.page_mut(root).unwrap()[slot_head..slot_head + 4].copy_from_slice(&[0xff; 4]);
    let err = visit_to(&store, &keys[5]).unwrap_err();
    assert!(err.to_string().contains("slot heads disagree"), "{err}");
}

/// Bytes that differ between the pages `before` holds and the same pages in
/// `store` now (pages allocated since are not counted).
fn bytes_changed(store: &MemStore, before: &BTreeMap<PageNo, Vec<u8>>) -> usize {
    before
        .iter()
        .filter(|(no, _)| store.live_page_numbers().contains(no))
        .map(|(&no, old)| {
            let new = store.page(no).unwrap();
            old.iter().zip(new.iter()).filter(|(a, b)| a != b).count()
        })
        .sum()
}

#[test]
fn random_inserts_change_little_of_the_pages_they_find() {
    // 1 KiB values at random keys into 16 KiB leaves: about one insert in
    // seven splits. A split keeps its left half in place and later inserts
    // fill the holes, so an insert changes about its own cell in the pages
    // that were there (a rewritten left half would add about half a page
    // per split, some 2.3 KB per insert on average).
    let mut store = MemStore::new(16384);
    let root = create(&mut store).unwrap();
    let scrambled = |i: u32| {
        let mut k = (u64::from(i).wrapping_mul(0x9e37_79b9_7f4a_7c15))
            .to_be_bytes()
            .to_vec();
        k.extend_from_slice(&i.to_be_bytes());
        k
    };
    let (warm, measured) = (1000, 700);
    for i in 0..warm {
        put(&mut store, root, &scrambled(i), &value(i, 1024)).unwrap();
    }
    let mut changed = 0;
    for i in warm..warm + measured {
        let before: BTreeMap<PageNo, Vec<u8>> = store
            .live_page_numbers()
            .into_iter()
            .map(|no| (no, store.page(no).unwrap().to_vec()))
            .collect();
        put(&mut store, root, &scrambled(i), &value(i, 1024)).unwrap();
        changed += bytes_changed(&store, &before);
    }
    let per_insert = changed / measured as usize;
    assert!(per_insert < 1600, "{per_insert} bytes changed per insert");
    assert_eq!(check(&store, root).entries, u64::from(warm + measured));
    for i in 0..warm + measured {
        assert_eq!(get_bytes(&store, root, &scrambled(i)).unwrap(), Some(value(i, 1024)));
    }
}
