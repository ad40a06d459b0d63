//! The database's log records: `DbRecord::decode` over arbitrary bytes for
//! 4, 8 and 16 KiB pages, the round trip of what decodes, and `redo::apply` of
//! every decoded change to a page.
//!
//! - Whatever decodes must re-encode to bytes that decode to the same record.
//!   (Not always the same bytes: a page image has two forms, whole and sparse,
//!   and the encoder picks the shorter; logs hold either.)
//! - Every decoded change must fit its page (a full image of exactly the page
//!   from byte 16, ranges inside `[16, page size)`), so `apply` cannot panic:
//!   the target checks that before applying, and a change that does not fit
//!   is a decoder bug.
//! - `apply` follows its contract: a page at or past the record's LSN is
//!   skipped, a range change finding another LSN than its `before` is refused
//!   (lost flush), and an applied change writes exactly its bytes and the LSN.
//! - `diff` of two pages applied to the first gives the second.
//! - A decoded whole-database digest (kind 4) has groups of at least one
//!   page and no group past the count its page count makes.
//! - A part (kind 5) and a commit of parts (kind 6) hold changes under the
//!   same rules as a commit; `part_header` of any bytes never panics and,
//!   for a record that decodes as a part, gives its sequence and index; a
//!   commit of parts names at least one part.
//!
//! Input: one control byte, then the body.
//! - bit 0 clear: the body is the record's bytes;
//! - bit 0 set: the body is read as a structured record (`Spec`), encoded,
//!   then damaged by the listed edits, so that valid records (full page images
//!   need thousands of exact bytes) and records just off valid are common;
//! - bit 1: also `diff` two pages made from the body, and check its ranges
//!   through encode, decode and apply.

#![no_main]

use libfuzzer_sys::arbitrary::{self, Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;
use mailvault::log::Lsn;
use mailvault::pager::page;
use mailvault::pager::redo::{
    self, Applied, DbRecord, GROUP_HASH_LEN, LOGGED_FROM, PageChange, WholeDigest, group_count,
};

const PAGE_SIZES: [usize; 3] = [4096, 8192, 16384];
const MAX_CHANGES: usize = 6;
const MAX_RANGES: usize = 8;

#[derive(Arbitrary, Debug)]
struct Spec {
    /// A checkpoint marker (number, whole-digest flag) instead of a commit.
    checkpoint: Option<(u64, bool)>,
    /// A page digest (kind 3) instead.
    digest: Option<Vec<(u32, u64, u32)>>,
    /// A whole-database digest part (kind 4) instead.
    whole: Option<WholeSpec>,
    /// A part (true: index) or a commit of parts (false: count, first
    /// part's LSN) with the changes, instead of a plain commit.
    parts: Option<(bool, u32, u64)>,
    seq: u64,
    page_count: u32,
    /// Page size the record is built for (index into `PAGE_SIZES`).
    size: u8,
    changes: Vec<ChangeSpec>,
    edits: Vec<Edit>,
}

#[derive(Arbitrary, Debug)]
struct WholeSpec {
    marker: u64,
    page_count: u32,
    /// 0 stands for the real group size (64).
    group_pages: u8,
    root: u8,
    first_group: u32,
    groups: u8,
}

#[derive(Arbitrary, Debug)]
enum ChangeSpec {
    /// A page image of the right length (or off by `skew`), zero over
    /// `hole` (start, length in 64-byte units), so that sparse images
    /// (kind 4) are built too.
    Image {
        no: u32,
        fill: u8,
        skew: i8,
        hole: (u16, u8),
    },
    Ranges {
        no: u32,
        before: u64,
        ranges: Vec<RangeSpec>,
    },
    /// A page written once, named by its checksum (kind 3).
    Written { no: u32, crc: u32 },
}

#[derive(Arbitrary, Debug)]
struct RangeSpec {
    /// Offset in the page; taken modulo the page size plus a little, so that
    /// it is mostly inside the page and sometimes just past it.
    at: u16,
    len: u16,
    fill: u8,
}

#[derive(Arbitrary, Debug)]
enum Edit {
    /// Overwrites 4 bytes (a length, count or page number) at a position.
    SetU32 {
        at: u16,
        value: u32,
    },
    Flip {
        at: u16,
        mask: u8,
    },
    Truncate {
        len: u16,
    },
    Append {
        bytes: Vec<u8>,
    },
}

fn build(spec: &Spec) -> Vec<u8> {
    let ps = PAGE_SIZES[usize::from(spec.size) % PAGE_SIZES.len()];
    let record = match (&spec.checkpoint, &spec.digest, &spec.whole) {
        (Some((number, whole_digest)), _, _) => DbRecord::Checkpoint {
            number: *number,
            whole_digest: *whole_digest,
        },
        (None, Some(pages), _) => DbRecord::Digest {
            pages: pages
                .iter()
                .take(64)
                .map(|(no, lsn, crc)| (*no, Lsn(*lsn), *crc))
                .collect(),
        },
        (None, None, Some(w)) => {
            // Mostly consistent (groups inside the count) so that the
            // edits below probe the checks one at a time.
            let group_pages = if w.group_pages == 0 {
                64
            } else {
                u32::from(w.group_pages)
            };
            let total = group_count(w.page_count, group_pages);
            let first_group = w.first_group % total.saturating_add(1).max(1);
            let n = u32::from(w.groups).min(total - first_group);
            DbRecord::WholeDigest(WholeDigest {
                marker: Lsn(w.marker),
                page_count: w.page_count,
                group_pages,
                root: [w.root; 32],
                first_group,
                groups: (0..n).map(|i| [i as u8 ^ w.root; GROUP_HASH_LEN]).collect(),
            })
        }
        (None, None, None) => {
            let changes = spec
                .changes
                .iter()
                .take(MAX_CHANGES)
                .map(|c| match c {
                    ChangeSpec::Image { no, fill, skew, hole } => {
                        let len = (ps - LOGGED_FROM).saturating_add_signed(isize::from(*skew % 3));
                        let mut image = pattern(len, *fill);
                        let start = usize::from(hole.0) % len.max(1);
                        let end = (start + 64 * usize::from(hole.1)).min(len);
                        image[start..end].fill(0);
                        (*no, PageChange::Image(image))
                    }
                    ChangeSpec::Ranges { no, before, ranges } => {
                        let ranges = ranges
                            .iter()
                            .take(MAX_RANGES)
                            .map(|r| {
                                let at = usize::from(r.at) % (ps + 64);
                                let len = usize::from(r.len) % (ps / 2);
                                (at as u32, pattern(len, r.fill))
                            })
                            .collect();
                        (
                            *no,
                            PageChange::Ranges {
                                before: Lsn(*before),
                                ranges,
                            },
                        )
                    }
                    ChangeSpec::Written { no, crc } => (*no, PageChange::Written { crc: *crc }),
                })
                .collect();
            match spec.parts {
                Some((true, index, _)) => DbRecord::Part {
                    seq: spec.seq,
                    page_count: spec.page_count,
                    index,
                    changes,
                },
                Some((false, count, first)) => DbRecord::CommitParts {
                    seq: spec.seq,
                    page_count: spec.page_count,
                    parts: redo::Parts {
                        count,
                        first: Lsn(first),
                    },
                    changes,
                },
                None => DbRecord::Commit {
                    seq: spec.seq,
                    page_count: spec.page_count,
                    changes,
                },
            }
        }
    };
    let mut bytes = record.encode();
    for edit in spec.edits.iter().take(8) {
        match edit {
            Edit::SetU32 { at, value } => {
                if bytes.len() >= 4 {
                    let at = usize::from(*at) % (bytes.len() - 3);
                    bytes[at..at + 4].copy_from_slice(&value.to_le_bytes());
                }
            }
            Edit::Flip { at, mask } => {
                if !bytes.is_empty() {
                    let at = usize::from(*at) % bytes.len();
                    bytes[at] ^= mask;
                }
            }
            Edit::Truncate { len } => bytes.truncate(usize::from(*len)),
            Edit::Append { bytes: more } => bytes.extend(more.iter().take(64)),
        }
    }
    bytes
}

fn pattern(len: usize, fill: u8) -> Vec<u8> {
    (0..len).map(|i| fill.wrapping_add((i / 7) as u8)).collect()
}

/// Checks a decoded change fits a page of `ps` bytes, as decode promises.
fn check_fits(change: &PageChange, ps: usize) {
    match change {
        PageChange::Image(bytes) => assert_eq!(
            bytes.len(),
            ps - LOGGED_FROM,
            "decode accepted a page image of {} bytes for {ps}-byte pages",
            bytes.len()
        ),
        PageChange::Ranges { ranges, .. } => {
            for (at, bytes) in ranges {
                let at = *at as usize;
                assert!(
                    at >= LOGGED_FROM && at.checked_add(bytes.len()).is_some_and(|end| end <= ps),
                    "decode accepted a range {at}+{} outside a {ps}-byte page",
                    bytes.len()
                );
            }
        }
        PageChange::Written { .. } => {}
    }
}

/// A page written once applies only as itself: present when the file's
/// page has the checksum named, refused otherwise, and never modified.
fn check_written(crc: u32, ps: usize, lsn: Lsn) {
    let mut page = pattern(ps, crc as u8);
    let stamp = Lsn(lsn.0.saturating_sub(1 + u64::from(crc % 7)));
    page::set_lsn(&mut page, stamp);
    let real = crc32c::crc32c(&page[4..]);
    let orig = page.clone();
    let stamp = page::page_lsn(&page);
    let res = apply_checked(&mut page, Some(stamp), &PageChange::Written { crc: real }, lsn);
    if stamp >= lsn {
        assert_eq!(res, Ok(Applied::Skipped));
    } else {
        assert_eq!(
            res,
            Ok(Applied::Present),
            "a written page with its checksum was not accepted"
        );
        let named = apply_checked(&mut page, Some(stamp), &PageChange::Written { crc }, lsn);
        assert_eq!(
            named.is_ok(),
            crc == real,
            "a written page accepted under another checksum"
        );
        assert_eq!(
            apply_checked(&mut page, None, &PageChange::Written { crc }, lsn),
            Err(None),
            "an unreadable page accepted as written"
        );
    }
    assert!(page == orig, "a written page was modified by redo");
}

/// Applies `change` to a zeroed page in every situation `apply` knows.
fn check_apply(change: &PageChange, ps: usize, lsn: Lsn) {
    check_fits(change, ps);
    if let PageChange::Written { crc } = change {
        check_written(*crc, ps, lsn);
        return;
    }
    // The page as it should be after the change.
    let mut want = vec![0u8; ps];
    match change {
        PageChange::Image(bytes) => want[LOGGED_FROM..].copy_from_slice(bytes),
        PageChange::Ranges { ranges, .. } => {
            for (at, bytes) in ranges {
                want[*at as usize..*at as usize + bytes.len()].copy_from_slice(bytes);
            }
        }
        PageChange::Written { .. } => {}
    }
    let before = match change {
        PageChange::Image(_) | PageChange::Written { .. } => None,
        PageChange::Ranges { before, .. } => Some(*before),
    };
    // Set the page's LSN to `before` first, as a real page would carry it.
    let mut base = vec![0u8; ps];
    if let Some(b) = before {
        page::set_lsn(&mut base, b);
        page::set_lsn(&mut want, b);
    }
    // Ranges start at byte 16, so the LSN field is the record's after applying.
    page::set_lsn(&mut want, lsn);

    // Applied: unreadable page (None) for an image; the expected LSN for ranges.
    let mut p = base.clone();
    match apply_checked(&mut p, before, change, lsn) {
        Ok(Applied::Applied) => {
            assert_eq!(page::page_lsn(&p), lsn);
            assert!(
                p[LOGGED_FROM..] == want[LOGGED_FROM..],
                "applied change left other bytes"
            );
            assert!(p[..8] == base[..8], "apply changed bytes before the LSN");
        }
        Ok(Applied::Skipped) => assert!(before.is_some_and(|b| b >= lsn), "skipped a change to an older page"),
        Ok(Applied::Present) => panic!("an image or ranges applied as a page written once"),
        Err(found) => panic!("apply refused a change at its expected LSN: found {found:?}"),
    }
    // A page at or past the record is left alone.
    for current in [lsn, Lsn(lsn.0.saturating_add(1))] {
        let mut q = base.clone();
        assert_eq!(apply_checked(&mut q, Some(current), change, lsn), Ok(Applied::Skipped));
        assert!(q == base, "a skipped change modified the page");
    }
    // A range change over a page at another (older) LSN is a lost flush.
    if let Some(b) = before
        && b < lsn
    {
        let other = if b.0 == 0 { None } else { Some(Lsn(b.0 - 1)) };
        let mut q = base.clone();
        assert_eq!(apply_checked(&mut q, other, change, lsn), Err(other));
        assert!(q == base, "a refused change modified the page");
        let mut q = base.clone();
        assert_eq!(apply_checked(&mut q, None, change, lsn), Err(None));
    }
}

fn apply_checked(page: &mut [u8], current: Option<Lsn>, change: &PageChange, lsn: Lsn) -> Result<Applied, Option<Lsn>> {
    redo::apply(page, current, change, lsn)
}

fn check_record(bytes: &[u8], lsn: Lsn) {
    for ps in PAGE_SIZES {
        let Ok(record) = DbRecord::decode(bytes, ps) else {
            continue;
        };
        let again = record.encode();
        assert!(
            DbRecord::decode(&again, ps).as_ref() == Ok(&record),
            "a decoded record, encoded again, decodes to another record"
        );
        // Only an image may change form; any other record re-encodes byte for byte.
        let has_image =
            changes_of(&record).is_some_and(|(_, c)| c.iter().any(|(_, c)| matches!(c, PageChange::Image(_))));
        assert!(has_image || again == bytes, "re-encoding a decoded record changed it");
        if let DbRecord::WholeDigest(d) = &record {
            assert!(d.group_pages >= 1, "decode accepted groups of 0 pages");
            assert!(
                u64::from(d.first_group) + d.groups.len() as u64 <= u64::from(group_count(d.page_count, d.group_pages)),
                "decode accepted groups {}+{} past the {} groups of {} pages",
                d.first_group,
                d.groups.len(),
                group_count(d.page_count, d.group_pages),
                d.page_count
            );
        }
        if let DbRecord::Part { seq, index, .. } = &record {
            assert_eq!(
                redo::part_header(bytes),
                Ok((*seq, *index)),
                "a part's header reads otherwise"
            );
        }
        if let DbRecord::CommitParts { parts, .. } = &record {
            assert!(parts.count >= 1, "decode accepted a commit of no parts");
        }
        if let Some((page_count, changes)) = changes_of(&record) {
            for (no, change) in changes {
                assert!(no < page_count, "page {no} accepted past the page count {page_count}");
                check_apply(change, ps, lsn);
            }
        }
    }
}

/// The page count and changes of a record that carries changes.
fn changes_of(record: &DbRecord) -> Option<(&u32, &Vec<(u32, PageChange)>)> {
    match record {
        DbRecord::Commit {
            page_count, changes, ..
        }
        | DbRecord::Part {
            page_count, changes, ..
        }
        | DbRecord::CommitParts {
            page_count, changes, ..
        } => Some((page_count, changes)),
        _ => None,
    }
}

/// `diff(old, new)` carried through a record turns `old` into `new`.
fn check_diff(body: &[u8]) {
    let ps = PAGE_SIZES[body.first().map_or(0, |&b| usize::from(b) % 3)];
    let mut old = vec![0u8; ps];
    let mut new = vec![0u8; ps];
    // Bytes of the body alternate between setting both pages and changing `new`.
    let mut at = LOGGED_FROM;
    for pair in body.chunks(2).skip(1) {
        let step = usize::from(pair[0] >> 4);
        at += step;
        if at >= ps {
            break;
        }
        match pair[0] & 3 {
            0 => old[at] = pair.get(1).copied().unwrap_or(0),
            1 => new[at] = pair.get(1).copied().unwrap_or(1),
            _ => {
                let b = pair.get(1).copied().unwrap_or(2);
                old[at] = b;
                new[at] = b;
            }
        }
        at += 1;
    }
    let before = Lsn::new(1, 512);
    let lsn = Lsn::new(1, 4096);
    page::set_lsn(&mut old, before);
    page::set_lsn(&mut new, lsn);
    let ranges = redo::diff(&old, &new);
    for (at, bytes) in &ranges {
        assert!(*at as usize >= LOGGED_FROM && *at as usize + bytes.len() <= ps && !bytes.is_empty());
    }
    let record = DbRecord::Commit {
        seq: 1,
        page_count: 10,
        changes: vec![(3, PageChange::Ranges { before, ranges })],
    };
    let bytes = record.encode();
    let decoded = DbRecord::decode(&bytes, ps).expect("a diff record decodes");
    assert_eq!(decoded, record);
    let DbRecord::Commit { changes, .. } = decoded else {
        unreachable!("decoded a commit")
    };
    let mut page = old.clone();
    assert_eq!(
        redo::apply(&mut page, Some(before), &changes[0].1, lsn),
        Ok(Applied::Applied)
    );
    assert!(page[8..] == new[8..], "diff applied does not give the new page");
}

fuzz_target!(|data: &[u8]| {
    let Some((&ctl, body)) = data.split_first() else {
        return;
    };
    let lsn = Lsn::new(3, 4096 + u32::from(ctl));
    if ctl & 1 == 0 {
        check_record(body, lsn);
        // Any bytes: an error or a header, never a panic.
        let _ = redo::part_header(body);
    } else if let Ok(spec) = Spec::arbitrary(&mut Unstructured::new(body)) {
        let bytes = build(&spec);
        check_record(&bytes, lsn);
    }
    if ctl & 2 != 0 {
        check_diff(body);
    }
});
