//! SEARCH through the indexes: each indexed criterion is one key-range scan
//! of the index table, the sets are intersected, and only the criteria no
//! index covers (negations other than UNSEEN) read message records.

use super::codec::keys::{self, INDEX_DATE, INDEX_FLAG, INDEX_KEYWORD, INDEX_SIZE};
use super::codec::{FolderRecord, MessageRecord};
use super::error::Result;
use super::query;
use super::schema::{self, Schema};
use super::types::{Criterion, Flags};
use crate::btree;
use crate::pager::PageRead;
use std::ops::Bound;

/// Index bit for "not \Seen": UNSEEN is common enough to index.
pub(crate) const UNSEEN_BIT: u8 = 31;

/// The index keys of a message: one per set flag (and UNSEEN), keyword,
/// its date and its size.
pub(crate) fn index_keys(folder_id: u64, uid: u32, m: &MessageRecord) -> Vec<Vec<u8>> {
    let mut out = Vec::with_capacity(4 + m.keywords.len());
    for bit in 0..5u8 {
        if m.flags.bits() & (1 << bit) != 0 {
            out.push(keys::index(folder_id, INDEX_FLAG, &[bit], uid));
        }
    }
    if !m.flags.contains(Flags::SEEN) {
        out.push(keys::index(folder_id, INDEX_FLAG, &[UNSEEN_BIT], uid));
    }
    for k in &m.keywords {
        out.push(keys::index(folder_id, INDEX_KEYWORD, &keys::keyword_part(k), uid));
    }
    out.push(keys::index(
        folder_id,
        INDEX_DATE,
        &keys::date_part(m.internal_date),
        uid,
    ));
    out.push(keys::index(folder_id, INDEX_SIZE, &m.size.to_be_bytes(), uid));
    out
}

/// UIDs of index entries from `start` (inclusive) to `end` (exclusive).
fn index_range<S: PageRead + ?Sized>(s: &S, sc: &Schema, start: Vec<u8>, end: Option<Vec<u8>>) -> Result<Vec<u32>> {
    let end_bound = match &end {
        Some(e) => Bound::Excluded(e.as_slice()),
        None => Bound::Unbounded,
    };
    let mut uids = Vec::new();
    for entry in btree::range(s, sc.index.root(), Bound::Included(start.as_slice()), end_bound)? {
        let (key, _) = entry?;
        uids.push(query::uid_of(sc, schema::INDEX, &key)?);
    }
    uids.sort_unstable();
    uids.dedup();
    Ok(uids)
}

fn prefix_range<S: PageRead + ?Sized>(s: &S, sc: &Schema, prefix: Vec<u8>) -> Result<Vec<u32>> {
    let end = keys::prefix_end(&prefix);
    index_range(s, sc, prefix, end)
}

fn intersect(acc: Option<Vec<u32>>, next: Vec<u32>) -> Option<Vec<u32>> {
    Some(match acc {
        None => next,
        Some(mut a) => {
            a.retain(|u| next.binary_search(u).is_ok());
            a
        }
    })
}

pub(crate) fn run<S: PageRead + ?Sized>(
    s: &S,
    sc: &Schema,
    folder: &FolderRecord,
    criteria: &[Criterion],
) -> Result<Vec<u32>> {
    let fid = folder.id;
    let mut found: Option<Vec<u32>> = None;
    let mut since = i64::MIN;
    let mut before: Option<i64> = None;
    let mut larger: Option<u64> = None;
    let mut smaller: Option<u64> = None;
    let mut need_record = false;
    for c in criteria {
        match c {
            Criterion::Flag(f) => {
                for bit in 0..5u8 {
                    if f.bits() & (1 << bit) != 0 {
                        found = intersect(found, prefix_range(s, sc, keys::index_prefix(fid, INDEX_FLAG, &[bit]))?);
                    }
                }
            }
            Criterion::NotFlag(f) if *f == Flags::SEEN => {
                found = intersect(
                    found,
                    prefix_range(s, sc, keys::index_prefix(fid, INDEX_FLAG, &[UNSEEN_BIT]))?,
                );
            }
            Criterion::Keyword(k) => {
                found = intersect(
                    found,
                    prefix_range(s, sc, keys::index_prefix(fid, INDEX_KEYWORD, &keys::keyword_part(k)))?,
                );
            }
            Criterion::Since(d) => since = since.max(*d),
            Criterion::Before(d) => before = Some(before.map_or(*d, |b| b.min(*d))),
            Criterion::Larger(n) => larger = Some(larger.map_or(*n, |l| l.max(*n))),
            Criterion::Smaller(n) => smaller = Some(smaller.map_or(*n, |m| m.min(*n))),
            Criterion::NotFlag(_) | Criterion::NotKeyword(_) => need_record = true,
            Criterion::Uid(_) => {}
        }
    }
    if since != i64::MIN || before.is_some() {
        if before.is_some_and(|b| b <= since) {
            return Ok(Vec::new());
        }
        let start = keys::index_prefix(fid, INDEX_DATE, &keys::date_part(since));
        let end = match before {
            Some(b) => Some(keys::index_prefix(fid, INDEX_DATE, &keys::date_part(b))),
            None => keys::prefix_end(&keys::index_prefix(fid, INDEX_DATE, &[])),
        };
        found = intersect(found, index_range(s, sc, start, end)?);
    }
    if larger.is_some() || smaller.is_some() {
        let Some(low) = larger.map_or(Some(0), |l| l.checked_add(1)) else {
            return Ok(Vec::new());
        };
        if smaller.is_some_and(|m| m <= low) {
            return Ok(Vec::new());
        }
        let start = keys::index_prefix(fid, INDEX_SIZE, &low.to_be_bytes());
        let end = match smaller {
            Some(m) => Some(keys::index_prefix(fid, INDEX_SIZE, &m.to_be_bytes())),
            None => keys::prefix_end(&keys::index_prefix(fid, INDEX_SIZE, &[])),
        };
        found = intersect(found, index_range(s, sc, start, end)?);
    }
    // No indexed criterion: the primary key (UID order) is the index.
    let mut uids = match found {
        Some(u) => u,
        None => {
            let mut all = Vec::new();
            for entry in query::scan(s, sc.messages.root(), &fid.to_be_bytes())? {
                all.push(query::uid_of(sc, schema::MESSAGES, &entry?.0)?);
            }
            all
        }
    };
    for c in criteria {
        if let Criterion::Uid(set) = c {
            uids.retain(|&u| set.contains(u));
        }
    }
    if need_record {
        let mut kept = Vec::with_capacity(uids.len());
        for uid in uids {
            let Some(m) = query::message(s, sc, fid, uid)? else {
                continue;
            };
            let keep = criteria.iter().all(|c| match c {
                Criterion::NotFlag(f) => m.flags.bits() & f.bits() == 0,
                Criterion::NotKeyword(k) => !m.keywords.iter().any(|x| x == k),
                _ => true,
            });
            if keep {
                kept.push(uid);
            }
        }
        uids = kept;
    }
    Ok(uids)
}
