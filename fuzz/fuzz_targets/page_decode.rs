//! Arbitrary bytes as one page: `page::verify`, `DbHeader::decode` (slots 0
//! and 1), `header::read_best` over a two-page file, `btree::inspect_node`
//! (what `mailvault dump page` shows), and the page written over
//! a page of a small valid B+tree in a `btree::MemStore` (a table with long,
//! inline and separated values, and its values tree), after which `get`,
//! `range` (both directions, with bounds), `visit_range`, `verify`,
//! `verify_with_values`, `read_value` and `read_long`, and optionally a few
//! writes and the drop of both trees, run over it. Nothing may
//! panic, loop or allocate without bound; errors are fine.
//!
//! Input: four control bytes, then the data.
//! - byte 0, bits 0-1: page size, 4096 (0 and 3), 8192 (1) or 16384 (2);
//! - byte 0, bit 2: overlay: the data overwrites the chosen tree page from the
//!   offset in bytes 2-3 (so small inputs damage real nodes); otherwise the
//!   data is the whole page, zero-padded or cut;
//! - byte 0, bit 3: seal: set the page number, salt and checksum before the
//!   pager-level checks, so they reach the fields behind the checksum;
//! - byte 0, bit 4: also run writes (put, delete) on a copy of the damaged tree;
//! - byte 0, bit 5: for the header checks, start from a real header page (the
//!   data overlays it like a tree page);
//! - byte 1: which live page of the tree is replaced;
//! - bytes 2-3: overlay offset (little-endian, modulo the page size).

#![no_main]

use libfuzzer_sys::fuzz_target;
use mailvault::btree::{self, MemStore, Value};
use mailvault::log::{LogSignature, Lsn};
use mailvault::pager::header::{self, DbHeader, DbState, salt_of};
use mailvault::pager::page::{self, PAGE_HEADER_LEN};
use mailvault::pager::{PageNo, PageRead, PageWrite};
use mailvault::vfs::{OpenMode, SimVfs, Vfs};
use std::ops::Bound;
use std::path::Path;
use std::sync::OnceLock;

const PAGE_SIZES: [usize; 4] = [4096, 8192, 16384, 4096];
/// Keys share this prefix, so separators are long and branches narrow.
const PREFIX: &str = "mbox/0123456789abcdef0123456789abcdef/INBOX/";

/// A tree and the keys stored in it (a few of them with long values, some
/// separated into the values tree).
struct Sample {
    store: MemStore,
    root: PageNo,
    values: PageNo,
    keys: Vec<Vec<u8>>,
    pages: Vec<PageNo>,
}

fn key(i: u32) -> Vec<u8> {
    format!("{PREFIX}{i:05}").into_bytes()
}

fn build(page_size: usize) -> Sample {
    let mut store = MemStore::new(page_size);
    let root = btree::create(&mut store).expect("create");
    let values = btree::create(&mut store).expect("create values tree");
    // Enough keys for three levels at 4 KiB and two at the larger sizes.
    let n: u32 = match page_size {
        4096 => 700,
        8192 => 240,
        _ => 260,
    };
    let mut keys = Vec::new();
    for i in 0..n {
        let k = key(i * 7 % n);
        let len = match i % 40 {
            // One data page, and several with an index page above them.
            0 => page_size / 2,
            1 => page_size * 3 + 100,
            // Separated: a sixteenth of the node or more.
            2 | 3 => page_size / 16 + i as usize % 50,
            _ => 20 + (i as usize % 9) * 25,
        };
        let v: Vec<u8> = (0..len).map(|j| (i as usize * 13 + j) as u8).collect();
        btree::put_separating(&mut store, root, values, &k, &v).expect("put");
        keys.push(k);
    }
    keys.sort();
    store.seal_all();
    let report = btree::verify_with_values(&store, root, values).expect("verify");
    assert!(report.is_ok(), "sample tree: {:?}", report.problems);
    assert!(report.separated_values > 0, "no separated value in the sample");
    assert!(report.height >= 2, "sample tree of height {}", report.height);
    let pages = store.live_page_numbers().into_iter().collect();
    Sample {
        store,
        root,
        values,
        keys,
        pages,
    }
}

fn sample(page_size: usize) -> &'static Sample {
    static SAMPLES: [OnceLock<Sample>; 3] = [OnceLock::new(), OnceLock::new(), OnceLock::new()];
    let i = match page_size {
        4096 => 0,
        8192 => 1,
        _ => 2,
    };
    SAMPLES[i].get_or_init(|| build(page_size))
}

fn db_header(page_size: usize) -> DbHeader {
    DbHeader {
        state: DbState::Dirty,
        page_size: page_size as u32,
        signature: LogSignature(*b"mailvault-fuzz!!"),
        log_signature: LogSignature(*b"mailvault-log!!!"),
        sequence: 7,
        redo_lsn: Lsn::new(2, 4096),
        required_lsn: Lsn::new(2, 8192),
        page_count: 40,
        catalog_root: 3,
        created_us: 1_700_000_000_000_000,
        epoch: 1,
    }
}

/// Sets the number, salt and checksum of `page`, as a write of page `no` would.
fn seal_as(page: &mut [u8], no: PageNo, salt: u32) {
    page[4..8].copy_from_slice(&no.to_le_bytes());
    page[20..24].copy_from_slice(&salt.to_le_bytes());
    page::seal(page);
}

fn overlay(base: &mut [u8], at: usize, data: &[u8]) {
    let at = at % base.len();
    let n = data.len().min(base.len() - at);
    base[at..at + n].copy_from_slice(&data[..n]);
}

/// The header checks on `page` (one page of `page_size` bytes) and on `raw`.
fn check_headers(page: &[u8], raw: &[u8], page_size: usize, seal: bool) {
    let path = Path::new("/fuzz/data.mvdb");
    // Arbitrary lengths: a short buffer is an error, not a panic.
    let _ = DbHeader::decode(raw, 0, path);
    let _ = DbHeader::decode(raw, 1, path);
    for no in header::HEADER_PAGES {
        let mut copy = page.to_vec();
        if seal && copy.len() >= PAGE_HEADER_LEN + 32 {
            let mut sig = LogSignature::default();
            sig.0.copy_from_slice(&copy[PAGE_HEADER_LEN + 16..PAGE_HEADER_LEN + 32]);
            seal_as(&mut copy, no, salt_of(&sig));
        }
        let _ = page::verify(&copy, no, salt_of(&db_header(page_size).signature), path, page_size);
        let Ok(h) = DbHeader::decode(&copy, no, path) else {
            continue;
        };
        // What decodes re-encodes to a page that decodes to the same header.
        let ps = h.page_size as usize;
        assert!(ps <= copy.len() && ps.is_power_of_two(), "decoded page size {ps}");
        let again = h.encode(no, ps);
        assert_eq!(
            DbHeader::decode(&again, no, path).ok(),
            Some(h),
            "re-encoded header differs"
        );
        // Byte-exact when every byte the encoder leaves zero is zero and the
        // page LSN is the redo LSN, as the encoder writes it.
        let body_end = PAGE_HEADER_LEN + 96;
        let free_zero = copy[17..20].iter().all(|&b| b == 0)
            && copy[24..32].iter().all(|&b| b == 0)
            && copy[PAGE_HEADER_LEN + 11] == 0
            && copy[body_end..ps].iter().all(|&b| b == 0);
        if free_zero && page::page_lsn(&copy) == h.redo_lsn {
            assert!(again[..] == copy[..ps], "re-encoding a decoded header changed it");
        }
        // A header that decodes in its slot must not decode in the other one.
        assert!(
            DbHeader::decode(&copy, 1 - no, path).is_err(),
            "header valid in both slots"
        );
    }
    // Both slots through a file, as open reads them.
    let sim = SimVfs::new(0);
    let file_path = Path::new("/fuzz/data.mvdb");
    sim.create_dir_all(Path::new("/fuzz")).expect("mkdir");
    let file = sim.open(file_path, OpenMode::CreateNew).expect("create");
    let mut image = page.to_vec();
    if seal && image.len() >= PAGE_HEADER_LEN + 32 {
        let mut sig = LogSignature::default();
        sig.0
            .copy_from_slice(&image[PAGE_HEADER_LEN + 16..PAGE_HEADER_LEN + 32]);
        seal_as(&mut image, 0, salt_of(&sig));
    }
    image.extend_from_slice(&db_header(page_size).encode(1, page_size));
    // The raw data again as the second copy, for a mix of valid and damaged slots.
    let mut second = raw.to_vec();
    second.truncate(page_size);
    overlay(&mut image, page_size, &second);
    file.write_at(&image, 0).expect("write");
    if let Ok((h, slot)) = header::read_best(file.as_ref(), file_path) {
        assert!(slot <= 1);
        assert!(h.page_count >= 3 && h.catalog_root <= h.page_count);
    }
}

/// Every read the tree offers; each must end with an answer or an error.
fn read_everything<S: PageRead>(store: &S, root: PageNo, values: PageNo, keys: &[Vec<u8>], page_size: usize) {
    // Entries a damaged tree may show: those stored, plus what one page holds.
    let bound = keys.len() + page_size / 6 + 2;
    let mut longs = Vec::new();
    for (i, k) in keys.iter().enumerate() {
        match btree::get(store, root, k) {
            Ok(Some(Value::Long(long))) if i % 3 == 0 => longs.push(long),
            _ => {}
        }
    }
    let _ = btree::get(store, root, b"");
    let _ = btree::get(store, root, b"\xff\xff\xff");
    let _ = btree::get(store, root, PREFIX.as_bytes());
    let mid = &keys[keys.len() / 3][..];
    let high = &keys[keys.len() * 2 / 3][..];
    type KeyRange<'k> = (Bound<&'k [u8]>, Bound<&'k [u8]>);
    let ranges: [KeyRange<'_>; 4] = [
        (Bound::Unbounded, Bound::Unbounded),
        (Bound::Included(mid), Bound::Excluded(high)),
        (Bound::Excluded(mid), Bound::Included(high)),
        (Bound::Included(high), Bound::Included(mid)),
    ];
    for (r, (start, end)) in ranges.into_iter().enumerate() {
        for mode in 0..3 {
            let Ok(mut range) = btree::range(store, root, start, end) else {
                break;
            };
            let mut items = 0usize;
            loop {
                // Forward, backward, and both ends alternating until they meet.
                let back = mode == 1 || (mode == 2 && items % 2 == 1);
                let item = if back { range.next_back() } else { range.next() };
                match item {
                    None | Some(Err(_)) => break,
                    Some(Ok((_, value))) => {
                        if r == 0
                            && mode == 0
                            && let Value::Long(long) = value
                        {
                            longs.push(long);
                        }
                    }
                }
                items += 1;
                assert!(items <= bound, "iteration does not end ({items} items)");
            }
        }
    }
    for long in longs.iter().take(8) {
        let _ = btree::read_value(store, &Value::Long(*long));
        let mut buf = [0u8; 64];
        let _ = btree::read_long(store, long, long.len() / 2, &mut buf);
        let _ = btree::read_long(store, long, long.len().saturating_sub(10), &mut buf);
    }
    let mut visited = 0usize;
    let _ = btree::visit_range(store, root, Bound::Unbounded, Bound::Unbounded, |_, _| {
        visited += 1;
        assert!(visited <= bound, "visit does not end ({visited} entries)");
        Ok::<_, mailvault::pager::DbError>(true)
    });
    for report in [
        btree::verify(store, root),
        btree::verify_with_values(store, root, values),
    ]
    .into_iter()
    .flatten()
    {
        assert!(report.problems.len() <= 1000);
        for p in &report.problems {
            assert!(
                report.pages.contains(&p.page) || p.page == root || p.page == values,
                "problem on an unclaimed page {p}"
            );
        }
    }
}

/// Writes on a copy; they may fail but must not panic or loop.
fn write_some(store: &MemStore, sample: &Sample, page_size: usize, seed: u8) {
    let (root, values, keys) = (sample.root, sample.values, &sample.keys);
    let mut store = store.clone();
    let step = keys.len() / 5 + 1;
    for (i, k) in keys.iter().enumerate().skip(seed as usize % step).step_by(step) {
        let len = [60, page_size + 10, page_size / 16 + 5][i % 3];
        let _ = btree::put_separating(&mut store, root, values, k, &vec![seed; len]);
                let _ = btree::delete_with_values(&mut store, root, values, &keys[(i * 31 + seed as usize) % keys.len()]);
    }
    read_everything(&store, root, values, keys, page_size);
    if seed % 2 == 0 {
        let _ = btree::drop_with_values(&mut store, root, values);
    } else {
        let _ = btree::drop_tree(&mut store, root);
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((ctl, body)) = data.split_first_chunk::<4>() else {
        return;
    };
    let page_size = PAGE_SIZES[usize::from(ctl[0] & 3)];
    let overlay_mode = ctl[0] & 4 != 0;
    let seal = ctl[0] & 8 != 0;
    let writes = ctl[0] & 16 != 0;
    let header_base = ctl[0] & 32 != 0;
    let offset = usize::from(u16::from_le_bytes([ctl[2], ctl[3]]));

    let s = sample(page_size);
    let no = s.pages[usize::from(ctl[1]) % s.pages.len()];
    let original = s.store.page(no).expect("sample page");

    // The page: the data alone, or the data over a real page.
    let mut page = if overlay_mode {
        original.to_vec()
    } else {
        vec![0u8; page_size]
    };
    overlay(&mut page, if overlay_mode { offset } else { 0 }, body);

    // Pager-level checks.
    let mut header_page = if header_base {
        let mut p = db_header(page_size).encode(0, page_size);
        overlay(&mut p, offset, body);
        p
    } else {
        page.clone()
    };
    check_headers(&header_page, body, page_size, seal);
    let salt = u32::from_le_bytes(original[20..24].try_into().expect("4 bytes"));
    if seal {
        seal_as(&mut header_page, no, salt);
    }
    let path = Path::new("<memory>");
    let _ = page::verify(&header_page, no, salt, path, page_size);
    let _ = page::verify(body, no, salt, path, page_size);
    // What `mailvault dump page` shows of a damaged node.
    let summary = btree::inspect_node(&page, 64);
    assert!(summary.cells.len() <= 64 && summary.cells.len() <= summary.count.max(64));

    // The page in the tree.
    let mut store = s.store.clone();
    if seal {
        seal_as(&mut page, no, salt);
    }
    store.page_mut(no).expect("live page").copy_from_slice(&page);
    read_everything(&store, s.root, s.values, &s.keys, page_size);
    if writes {
        write_some(&store, s, page_size, ctl[1]);
    }
});
