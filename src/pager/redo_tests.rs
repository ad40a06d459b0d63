//! Tests of the record format and of redo's apply.
use super::*;

#[test]
fn diff_apply_roundtrip_and_idempotence() {
    let mut old = vec![0u8; 4096];
    old[100..200].fill(5);
    let mut new = old.clone();
    new[20] = 1;
    new[30] = 2;
    new[1000..1100].fill(9);
    new[4095] = 3;
    let ranges = diff(&old, &new);
    assert_eq!(ranges.len(), 3, "nearby bytes merge, distant ones do not");
    page::set_lsn(&mut old, Lsn::new(1, 100));
    let change = PageChange::Ranges {
        before: Lsn::new(1, 100),
        ranges,
    };
    let rec = DbRecord::Commit {
        seq: 4,
        page_count: 10,
        changes: vec![(7, change.clone())],
    };
    assert_eq!(DbRecord::decode(&rec.encode(), 4096), Ok(rec));
    let mut page = old.clone();
    let lsn = Lsn::new(1, 500);
    assert_eq!(
        apply(&mut page, Some(Lsn::new(1, 100)), &change, lsn),
        Ok(Applied::Applied)
    );
    assert_eq!(
        page[LOGGED_FROM..],
        {
            let mut want = new.clone();
            page::set_lsn(&mut want, lsn);
            want
        }[LOGGED_FROM..]
    );
    assert_eq!(apply(&mut page, Some(lsn), &change, lsn), Ok(Applied::Skipped));
    let mut stale = old.clone();
    assert_eq!(
        apply(&mut stale, Some(Lsn::new(1, 50)), &change, lsn),
        Err(Some(Lsn::new(1, 50))),
        "lost flush"
    );
}

#[test]
fn hostile_records_are_rejected() {
    let rec = DbRecord::Commit {
        seq: 1,
        page_count: 5,
        changes: vec![(3, PageChange::Image(vec![1; 4096 - LOGGED_FROM]))],
    }
    .encode();
    for cut in 0..rec.len() {
        assert!(DbRecord::decode(&rec[..cut], 4096).is_err(), "truncated at {cut}");
    }
    assert!(DbRecord::decode(&rec, 8192).is_err(), "wrong page size");
    let mut huge = vec![RECORD_COMMIT];
    huge.extend_from_slice(&1u64.to_le_bytes());
    huge.extend_from_slice(&5u32.to_le_bytes());
    huge.extend_from_slice(&u32::MAX.to_le_bytes());
    assert!(DbRecord::decode(&huge, 4096).is_err());
}

#[test]
fn checkpoint_markers_carry_the_whole_digest_flag_in_one_optional_byte() {
    for whole_digest in [false, true] {
        let rec = DbRecord::Checkpoint {
            number: 16,
            whole_digest,
        };
        let bytes = rec.encode();
        assert_eq!(bytes.len(), if whole_digest { 10 } else { 9 });
        assert_eq!(DbRecord::decode(&bytes, 4096), Ok(rec));
    }
    let mut bytes = DbRecord::Checkpoint {
        number: 16,
        whole_digest: false,
    }
    .encode();
    for bad in [0u8, 2, 3, 0x81] {
        bytes.push(bad);
        assert!(DbRecord::decode(&bytes, 4096).is_err(), "flag byte {bad}");
        bytes.pop();
    }
    bytes.extend_from_slice(&[1, 0]);
    assert!(DbRecord::decode(&bytes, 4096).is_err(), "bytes after the flag");
}

fn whole(page_count: u32, first_group: u32, n: usize) -> WholeDigest {
    WholeDigest {
        marker: Lsn::new(7, 4096),
        page_count,
        group_pages: 64,
        root: [0xab; 32],
        first_group,
        groups: (0..n).map(|i| [i as u8; GROUP_HASH_LEN]).collect(),
    }
}

#[test]
fn whole_digests_round_trip_and_hostile_ones_are_typed_errors() {
    // 2 + 64 * 3 + 1 pages: 4 groups, the last of one page.
    let rec = DbRecord::WholeDigest(whole(195, 1, 3));
    let bytes = rec.encode();
    assert_eq!(bytes.len(), WHOLE_DIGEST_HEADER + 3 * GROUP_HASH_LEN);
    assert_eq!(bytes[0], RECORD_WHOLE_DIGEST);
    assert_eq!(DbRecord::decode(&bytes, 4096), Ok(rec.clone()));
    for cut in 0..bytes.len() {
        assert!(DbRecord::decode(&bytes[..cut], 4096).is_err(), "truncated at {cut}");
    }
    let mut longer = bytes.clone();
    longer.push(0);
    assert!(DbRecord::decode(&longer, 4096).is_err(), "a trailing byte");
    // Field offsets after the kind: marker 1, page count 9, group pages
    // 13, root 17, first group 49, count 53, hashes 57.
    let set = |at: usize, v: u32| {
        let mut b = bytes.clone();
        b[at..at + 4].copy_from_slice(&v.to_le_bytes());
        DbRecord::decode(&b, 4096)
    };
    assert!(set(53, u32::MAX).is_err(), "a count no bytes back");
    assert!(set(53, 4).is_err(), "a count one more than the bytes");
    assert!(set(13, 0).is_err(), "groups of 0 pages");
    assert!(set(49, 2).is_err(), "groups 2..5 of 4");
    assert!(set(49, u32::MAX).is_err(), "first group at the end of the range");
    assert!(set(9, 194).is_err(), "groups 1..4, but 194 pages make 3");
    assert!(set(9, 260).is_ok(), "260 pages make 5 groups");
    // Degenerate but well formed: no pages, no groups.
    let empty = DbRecord::WholeDigest(whole(2, 0, 0));
    assert_eq!(DbRecord::decode(&empty.encode(), 4096), Ok(empty));
    assert!(DbRecord::decode(&DbRecord::WholeDigest(whole(2, 0, 1)).encode(), 4096).is_err());
    assert_eq!(group_count(0, 64), 0);
    assert_eq!(group_count(66, 64), 1);
    assert_eq!(group_count(67, 64), 2);
    assert_eq!(group_count(u32::MAX, 1), u32::MAX - 2);
}

#[test]
fn a_half_empty_image_is_logged_as_its_nonzero_runs() {
    let mut image = vec![0u8; 16384 - LOGGED_FROM];
    image[..200].fill(7); // header and slots
    image[8000..16000].fill(9); // cells at the end
    image[12000] = 0; // a short zero run inside the cells stays in the run
    let rec = DbRecord::Commit {
        seq: 2,
        page_count: 9,
        changes: vec![(5, PageChange::Image(image.clone()))],
    };
    let bytes = rec.encode();
    let change_at = 1 + 8 + 4 + 4 + 4;
    assert_eq!(bytes[change_at], 4, "sparse kind");
    assert!(
        bytes.len() < 8200 + 200 + 64,
        "{} bytes logged for 8,200 nonzero",
        bytes.len()
    );
    assert_eq!(DbRecord::decode(&bytes, 16384), Ok(rec));
}

#[test]
fn a_dense_image_is_logged_whole() {
    // Nonzero runs separated by short zero gaps: the sparse form would not be shorter.
    let image: Vec<u8> = (0..4096 - LOGGED_FROM)
        .map(|i| if i % 20 == 0 { 0 } else { 1 })
        .collect();
    let rec = DbRecord::Commit {
        seq: 2,
        page_count: 9,
        changes: vec![(5, PageChange::Image(image))],
    };
    let bytes = rec.encode();
    assert_eq!(bytes[1 + 8 + 4 + 4 + 4], 1, "whole kind");
    assert_eq!(bytes.len(), 1 + 8 + 4 + 4 + 4 + 1 + 4 + 4096 - LOGGED_FROM);
    assert_eq!(DbRecord::decode(&bytes, 4096), Ok(rec));
    // An all-zero image is no run at all.
    let zero = DbRecord::Commit {
        seq: 2,
        page_count: 9,
        changes: vec![(5, PageChange::Image(vec![0; 4096 - LOGGED_FROM]))],
    };
    let bytes = zero.encode();
    assert_eq!(bytes.len(), 1 + 8 + 4 + 4 + 4 + 1 + 4);
    assert_eq!(DbRecord::decode(&bytes, 4096), Ok(zero));
}

#[test]
fn hostile_sparse_images_are_rejected() {
    let head = |count: u32| {
        let mut b = vec![RECORD_COMMIT];
        b.extend_from_slice(&1u64.to_le_bytes());
        b.extend_from_slice(&5u32.to_le_bytes());
        b.extend_from_slice(&1u32.to_le_bytes());
        b.extend_from_slice(&3u32.to_le_bytes());
        b.push(4);
        b.extend_from_slice(&count.to_le_bytes());
        b
    };
    let range = |b: &mut Vec<u8>, at: u32, len: u32| {
        b.extend_from_slice(&at.to_le_bytes());
        b.extend_from_slice(&len.to_le_bytes());
        b.extend(std::iter::repeat_n(1u8, len.min(64) as usize));
    };
    assert!(
        DbRecord::decode(&head(u32::MAX), 4096).is_err(),
        "a count beyond the bytes left"
    );
    for (at, len) in [(0, 4), (15, 4), (4094, 4), (u32::MAX, 2), (16, u32::MAX)] {
        let mut b = head(1);
        range(&mut b, at, len);
        assert!(DbRecord::decode(&b, 4096).is_err(), "range {at}+{len}");
    }
    // Overlapping ranges decode (the later one wins), as the image they describe.
    let mut b = head(2);
    range(&mut b, 16, 8);
    range(&mut b, 20, 8);
    let Ok(DbRecord::Commit { changes, .. }) = DbRecord::decode(&b, 4096) else {
        panic!("overlapping ranges decode")
    };
    let PageChange::Image(image) = &changes[0].1 else {
        panic!("an image")
    };
    assert_eq!(&image[..12], &[1; 12]);
    assert!(image[12..].iter().all(|&x| x == 0));
    let truncated = &b[..b.len() - 1];
    assert!(DbRecord::decode(truncated, 4096).is_err());
}

#[test]
fn diff_covers_every_change_and_only_runs_that_start_and_end_changed() {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for round in 0..300 {
        let len = [4096usize, 4100, 16384][round % 3];
        let old: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        let mut new = old.clone();
        // Scattered bytes, short and long runs, the page's first and last bytes.
        for _ in 0..(next() % 40) {
            let at = (next() as usize) % len;
            let run = [1usize, 3, 9, 17, 200][(next() % 5) as usize].min(len - at);
            for b in &mut new[at..at + run] {
                *b = b.wrapping_add(1 + (next() % 255) as u8);
            }
        }
        if round % 7 == 0 {
            new[len - 1] ^= 0x80;
            new[LOGGED_FROM] ^= 1;
        }
        let ranges = diff(&old, &new);
        let mut rebuilt = old.clone();
        let mut last_end = 0usize;
        for (at, bytes) in &ranges {
            let (at, end) = (*at as usize, *at as usize + bytes.len());
            assert!(
                at >= LOGGED_FROM && at >= last_end && end <= len,
                "round {round}: ordered, in the page"
            );
            assert!(
                old[at] != new[at] && old[end - 1] != new[end - 1],
                "round {round}: a run starts and ends changed"
            );
            rebuilt[at..end].copy_from_slice(bytes);
            last_end = end;
        }
        assert_eq!(rebuilt[LOGGED_FROM..], new[LOGGED_FROM..], "round {round}");
    }
}
