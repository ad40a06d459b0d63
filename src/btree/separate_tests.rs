//! Tests of separated values: a table's tree with its values tree.

use super::*;
use crate::pager::{PageRead, PageWrite};
use std::collections::BTreeMap;
use std::ops::Bound;

/// A table and its values tree in a store of 4 KiB pages, where values of
/// 255 to 1,000 bytes or so are separated.
fn table() -> (MemStore, PageNo, PageNo) {
    let mut store = MemStore::new(4096);
    let root = create(&mut store).unwrap();
    let values = create(&mut store).unwrap();
    (store, root, values)
}

/// Verifies both trees together, and that they own exactly the live pages.
fn check(store: &MemStore, root: PageNo, values: PageNo) -> VerifyReport {
    super::tests::assert_sound(store, verify_with_values(store, root, values).unwrap())
}

fn key(i: u32) -> Vec<u8> {
    // Scrambled, so that inserts land all over the tree.
    format!("k{:08x}", i.wrapping_mul(0x9e37_79b9)).into_bytes()
}

fn value(i: u32, len: usize) -> Vec<u8> {
    (0..len).map(|j| (i as usize * 13 + j * 7) as u8).collect()
}

fn entries_in(store: &MemStore, tree: PageNo) -> usize {
    iter(store, tree).unwrap().count()
}

#[test]
fn the_threshold_is_a_sixteenth_of_the_node_up_to_inline() {
    let geo = Geometry::checked(4096).unwrap();
    let first = (geo.usable / 16) as u64;
    let key_len = 9;
    assert!(!geo.separates(key_len, first - 1));
    assert!(geo.separates(key_len, first));
    // A long key does not make a short value separate (an empty one least).
    assert!(!geo.separates(400, 0));
    assert!(!geo.separates(400, first - 1));
    let inline_max = max_inline_value_len(4096, key_len) as u64;
    assert!(geo.separates(key_len, inline_max));
    assert!(!geo.separates(key_len, inline_max + 1), "long values stay long");
    // A key shorter than an id: the longest inline values stay in the leaf.
    let short_max = max_inline_value_len(4096, 2) as u64;
    assert!(!geo.separates(2, short_max));
}

#[test]
fn separated_values_read_back_through_every_read() {
    let (mut store, root, values) = table();
    let mut model = BTreeMap::new();
    for i in 0..400 {
        let len = [40, 300, 700, 950, 3000][i as usize % 5];
        let v = value(i, len);
        assert!(!put_separating(&mut store, root, values, &key(i), &v).unwrap());
        model.insert(key(i), v);
    }
    let report = check(&store, root, values);
    assert_eq!(report.entries, 400);
    assert_eq!(report.separated_values, 240, "the 300, 700 and 950-byte values");
    assert_eq!(report.long_values, 80);
    assert_eq!(entries_in(&store, values), 240);
    for (k, v) in &model {
        assert_eq!(get_bytes(&store, root, k).unwrap().as_ref(), Some(v));
        match get(&store, root, k).unwrap().unwrap() {
            Value::Inline(bytes) => assert_eq!(&bytes, v),
            Value::Long(long) => assert_eq!(long.len(), v.len() as u64),
        }
    }
    let ranged: Vec<_> = range(&store, root, Bound::Unbounded, Bound::Unbounded)
        .unwrap()
        .map(|e| {
            let (k, v) = e.unwrap();
            (k, read_value(&store, &v).unwrap())
        })
        .collect();
    assert_eq!(ranged, model.clone().into_iter().collect::<Vec<_>>());
    let backwards: Vec<_> = iter(&store, root).unwrap().rev().map(|e| e.unwrap().0).collect();
    assert_eq!(backwards, model.keys().rev().cloned().collect::<Vec<_>>());
    let mut visited = Vec::new();
    visit_range(&store, root, Bound::Unbounded, Bound::Unbounded, |k, v| {
        let bytes = match v {
            ValueRef::Inline(bytes) => bytes.to_vec(),
            ValueRef::Long(long) => read_value(&store, &Value::Long(long))?,
        };
        visited.push((k.to_vec(), bytes));
        Ok::<_, crate::pager::DbError>(true)
    })
    .unwrap();
    assert_eq!(visited, model.into_iter().collect::<Vec<_>>());
}

#[test]
fn replacing_and_deleting_remove_the_separated_value() {
    let (mut store, root, values) = table();
    put_separating(&mut store, root, values, b"a", &value(1, 600)).unwrap();
    assert_eq!(entries_in(&store, values), 1);
    // Separated to separated: the old one goes, the new one has a new id.
    assert!(put_separating(&mut store, root, values, b"a", &value(2, 800)).unwrap());
    assert_eq!(entries_in(&store, values), 1);
    check(&store, root, values);
    // To inline, to long, and back.
    assert!(put_separating(&mut store, root, values, b"a", b"small").unwrap());
    assert_eq!(entries_in(&store, values), 0);
    assert!(put_separating(&mut store, root, values, b"a", &value(3, 5000)).unwrap());
    assert!(put_separating(&mut store, root, values, b"a", &value(4, 500)).unwrap());
    assert_eq!(get_bytes(&store, root, b"a").unwrap(), Some(value(4, 500)));
    // Writes that do not name the values tree refuse to touch its value
    // (the refusal comes from the descent, before any change).
    let err = put(&mut store, root, b"a", &value(5, 500)).unwrap_err();
    assert!(err.to_string().contains("not this table's values tree"), "{err}");
    assert!(delete(&mut store, root, b"a").is_err());
    let other = create(&mut store).unwrap();
    assert!(delete_with_values(&mut store, root, other, b"a").is_err());
    assert!(drop_tree(&mut store, other).is_ok());
    check(&store, root, values);
    assert!(delete_with_values(&mut store, root, values, b"a").unwrap());
    assert_eq!(entries_in(&store, values), 0);
    assert_eq!(store.live_pages(), 2, "two empty roots");
    check(&store, root, values);
}

#[test]
fn random_puts_and_deletes_match_a_model_and_verify() {
    let (mut store, root, values) = table();
    let mut model: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
    let mut state = 7u64;
    let mut deletes_found = 0;
    for step in 0..6000u32 {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        let r = (state >> 33) as u32;
        // Not r % 700: 700 is a multiple of 5, so deletes would never meet a put.
        let k = key(r / 5 % 700);
        if r.is_multiple_of(5) {
            let deleted = delete_with_values(&mut store, root, values, &k).unwrap();
            assert_eq!(deleted, model.remove(&k).is_some());
            deletes_found += u32::from(deleted);
        } else {
            let len = [10, 260, 500, 900, 990, 1500][(r / 7 % 6) as usize];
            let v = value(step, len);
            let replaced = put_separating(&mut store, root, values, &k, &v).unwrap();
            assert_eq!(replaced, model.insert(k, v).is_some());
        }
        if step % 1500 == 0 {
            check(&store, root, values);
        }
    }
    check(&store, root, values);
    assert!(deletes_found > 500, "only {deletes_found} deletes found their key");
    for (k, v) in &model {
        assert_eq!(get_bytes(&store, root, k).unwrap().as_ref(), Some(v));
    }
    assert_eq!(iter(&store, root).unwrap().count(), model.len());
    drop_with_values(&mut store, root, values).unwrap();
    assert_eq!(store.live_pages(), 0, "both trees freed");
}

#[test]
fn ids_rise_so_the_values_tree_fills_from_the_right() {
    let (mut store, root, values) = table();
    for i in 0..2000 {
        put_separating(&mut store, root, values, &key(i), &value(i, 400)).unwrap();
    }
    let ids: Vec<u64> = iter(&store, values)
        .unwrap()
        .map(|e| u64::from_be_bytes(e.unwrap().0.try_into().unwrap()))
        .collect();
    assert_eq!(ids, (1..=2000).collect::<Vec<_>>());
    let report = verify(&store, values).unwrap();
    // 2,000 cells of 421 bytes with slots in 4 KiB pages: 9 to a page.
    // Appends fill each left page to about three quarters.
    let leaves = report.node_pages - u64::from(report.height > 1);
    // 288 measured: 6.9 values a page, 77 %.
    assert!(
        (2000 / 9..=2000 * 10 / 65).contains(&leaves),
        "{leaves} leaves for 2,000 values"
    );
}

#[test]
fn only_the_drop_that_names_the_values_tree_drops_a_table_with_one() {
    let (mut store, root, values) = table();
    for i in 0..300 {
        put_separating(&mut store, root, values, &key(i), &value(i, 600)).unwrap();
    }
    assert!(
        drop_with_values(&mut store, values, values).is_err(),
        "one page, two trees"
    );
    // Refused at the first leaf with a descriptor (the abandoned transaction
    // rolls back); on a copy, the values tree is untouched.
    let mut copy = store.clone();
    assert!(drop_tree(&mut copy, root).is_err());
    assert_eq!(entries_in(&copy, values), 300);
    drop_with_values(&mut store, root, values).unwrap();
    assert_eq!(store.live_pages(), 0);
}

/// Rewrites the descriptor of `key`'s cell in the root leaf with `edit`.
fn edit_descriptor(store: &mut MemStore, root: PageNo, key: &[u8], edit: impl Fn(&mut [u8])) {
    let page = store.page(root).unwrap();
    let node = node::Node::open(&page).unwrap();
    let i = node.search(key).unwrap().unwrap();
    let node::CellValue::Separated { len, tree, id } = node.value(i).unwrap() else {
        panic!("not separated");
    };
    let mut descriptor = len.to_le_bytes().to_vec();
    descriptor.extend_from_slice(&tree.to_le_bytes());
    descriptor.extend_from_slice(&id.to_le_bytes());
    let n = descriptor.len();
    let at = page.windows(n).position(|w| w == descriptor).unwrap();
    drop(page);
    let bytes = store.page_mut(root).unwrap();
    edit(&mut bytes[at..at + n]);
}

#[test]
fn damaged_descriptors_are_typed_errors_and_verify_names_them() {
    let (mut store, root, values) = table();
    for i in 0..3 {
        put_separating(&mut store, root, values, &key(i), &value(i, 600)).unwrap();
    }
    check(&store, root, values);
    // A length that disagrees with the value.
    edit_descriptor(&mut store, root, &key(0), |d| {
        d[0..4].copy_from_slice(&601u32.to_le_bytes())
    });
    let err = get_bytes(&store, root, &key(0)).unwrap_err();
    assert!(err.to_string().contains("601"), "{err}");
    // An id the values tree does not hold.
    edit_descriptor(&mut store, root, &key(1), |d| {
        d[8..16].copy_from_slice(&99u64.to_le_bytes())
    });
    let err = get_bytes(&store, root, &key(1)).unwrap_err();
    assert!(err.to_string().contains("missing"), "{err}");
    // A tree page below the data pages.
    edit_descriptor(&mut store, root, &key(2), |d| {
        d[4..8].copy_from_slice(&1u32.to_le_bytes())
    });
    assert!(get_bytes(&store, root, &key(2)).is_err());
    let report = verify_with_values(&store, root, values).unwrap();
    let text: Vec<String> = report.problems.iter().map(|p| p.to_string()).collect();
    assert!(
        text.iter().any(|p| p.contains("holds 600 bytes, the cell says 601")),
        "{text:?}"
    );
    assert!(text.iter().any(|p| p.contains("99 is missing")), "{text:?}");
    assert!(text.iter().any(|p| p.contains("belongs to no cell")), "{text:?}");
    assert!(text.iter().any(|p| p.contains("page 1")), "{text:?}");
    // A failed write leaves the transaction to roll back, so this comes last.
    assert!(
        delete(&mut store, root, &key(1)).is_err(),
        "the value to remove is missing"
    );
}

#[test]
fn verify_finds_a_value_named_by_two_cells() {
    let (mut store, root, values) = table();
    for i in 0..2 {
        put_separating(&mut store, root, values, &key(i), &value(i, 600)).unwrap();
    }
    // Key 1's cell now names key 0's value, id 1: id 2 is left unclaimed.
    edit_descriptor(&mut store, root, &key(1), |d| {
        d[8..16].copy_from_slice(&1u64.to_le_bytes())
    });
    let report = verify_with_values(&store, root, values).unwrap();
    let text: Vec<String> = report.problems.iter().map(|p| p.to_string()).collect();
    assert!(
        text.iter().any(|p| p.contains("value 1 belongs to two cells")),
        "{text:?}"
    );
    assert!(
        text.iter().any(|p| p.contains("entry 2 belongs to no cell")),
        "{text:?}"
    );
    assert_eq!(text.len(), 2, "{text:?}");
    assert_eq!(report.entries, 2, "the table's entries, not the values tree's");
}

#[test]
fn a_values_tree_that_names_itself_is_an_error_not_a_recursion() {
    let (mut store, root, values) = table();
    put_separating(&mut store, root, values, b"a", &value(1, 600)).unwrap();
    // Replace the value with a descriptor naming the values tree itself.
    let looping = node::Cell::leaf(
        &1u64.to_be_bytes(),
        node::CellValue::Separated {
            len: 600,
            tree: values,
            id: 1,
        },
    );
    let page = store.page_mut(values).unwrap();
    node::write_node(page, 0, 0, &[looping]).unwrap();
    let err = get_bytes(&store, root, b"a").unwrap_err();
    assert!(err.to_string().contains("not an inline value"), "{err}");
    assert!(delete(&mut store, root, b"a").is_err());
    let report = verify_with_values(&store, root, values).unwrap();
    assert!(!report.is_ok());
    // Dropping a values tree follows nothing either: a descriptor there is damage.
    let err = drop_with_values(&mut store.clone(), root, values).unwrap_err();
    assert!(err.to_string().contains("not inline"), "{err}");
}

#[test]
fn a_tree_checked_without_its_values_tree_reports_its_descriptors() {
    let (mut store, root, values) = table();
    put_separating(&mut store, root, values, b"a", &value(1, 600)).unwrap();
    let report = verify(&store, root).unwrap();
    let text: Vec<String> = report.problems.iter().map(|p| p.to_string()).collect();
    assert_eq!(text.len(), 1, "{text:?}");
    assert!(text[0].contains("in a tree without a values tree"), "{text:?}");
    assert!(get_bytes(&store, root, b"b").unwrap().is_none());
}
