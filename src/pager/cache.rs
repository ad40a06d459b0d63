//! The buffer cache: committed page versions, bounded in bytes.
//!
//! Each cached page keeps the versions that some snapshot may still read,
//! oldest first, each tagged with the commit sequence that produced it
//! (0: the version in the file, visible to every snapshot). No-steal: only
//! committed versions enter the cache; a writer's changes live in its
//! private copies until commit.
//!
//! Eviction is CLOCK with a use counter that starts at zero: a page read once
//! by a large scan is the first to go, while pages used again (tree tops,
//! hot mailboxes) survive several sweeps. Only a page whose single version is
//! in the file and visible to every possible snapshot can be evicted; dirty
//! pages wait for the checkpoint, old versions for their snapshots to end.

use super::page::{PageNo, PageRef};
use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

/// Hashes a page number by one multiplication (Fibonacci hashing): page
/// numbers come from our own allocator, not from an adversary, and SipHash
/// was a measurable part of every page lookup (DESIGN.md, buffer cache).
#[derive(Default)]
pub(crate) struct PageNoHasher(u64);

impl Hasher for PageNoHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }

    fn write_u32(&mut self, n: u32) {
        self.0 = (self.0 ^ u64::from(n)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

/// Maps and sets keyed by page number.
pub(crate) type PageMap<V> = HashMap<PageNo, V, BuildHasherDefault<PageNoHasher>>;
pub(crate) type PageSet = HashSet<PageNo, BuildHasherDefault<PageNoHasher>>;

/// Highest use count; a page survives this many sweeps unused.
const MAX_USES: u8 = 3;

struct Entry {
    /// (commit sequence, version), ascending.
    versions: Vec<(u64, PageRef)>,
    /// The newest version is not in the file yet.
    dirty: bool,
    uses: u8,
}

pub(crate) struct PageCache {
    page_size: usize,
    capacity: usize,
    map: PageMap<Entry>,
    /// Pages holding more than one version: the only ones pruning looks at.
    multi: PageSet,
    /// The oldest snapshot the last prune used; pruning again with the same
    /// one finds nothing new to drop.
    pruned_at: u64,
    ring: Vec<PageNo>,
    hand: usize,
    versions: usize,
    dirty: usize,
}

impl PageCache {
    pub fn new(page_size: usize, capacity: usize) -> Self {
        PageCache {
            page_size,
            capacity,
            map: PageMap::default(),
            multi: PageSet::default(),
            pruned_at: 0,
            ring: Vec::new(),
            hand: 0,
            versions: 0,
            dirty: 0,
        }
    }

    /// Bytes held by cached versions.
    pub fn bytes(&self) -> usize {
        self.versions * self.page_size
    }

    /// Bytes of pages whose newest version is not in the file.
    pub fn dirty_bytes(&self) -> usize {
        self.dirty * self.page_size
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The newest version visible at `snapshot` (`u64::MAX`: the newest).
    pub fn get(&mut self, no: PageNo, snapshot: u64) -> Option<PageRef> {
        let entry = self.map.get_mut(&no)?;
        let version = entry.versions.iter().rev().find(|(seq, _)| *seq <= snapshot)?;
        entry.uses = (entry.uses + 1).min(MAX_USES);
        Some(version.1.clone())
    }

    /// Adds the version read from the file, unless the page is cached already
    /// (then that version wins: it may be newer than the file).
    pub fn insert_from_file(&mut self, no: PageNo, page: PageRef) -> PageRef {
        if let Some(entry) = self.map.get(&no)
            && let Some((seq, existing)) = entry.versions.first()
            && *seq == 0
        {
            return existing.clone();
        }
        if self.map.contains_key(&no) {
            // Only newer versions are cached; the file's version is older than
            // every one of them and is visible only to older snapshots.
            let entry = self.map.get_mut(&no).expect("checked above");
            entry.versions.insert(0, (0, page.clone()));
            self.versions += 1;
            self.multi.insert(no);
            self.pruned_at = 0;
            return page;
        }
        self.map.insert(
            no,
            Entry {
                versions: vec![(0, page.clone())],
                dirty: false,
                uses: 0,
            },
        );
        self.ring.push(no);
        self.versions += 1;
        page
    }

    /// Adds a committed version, newer than every cached one; the page is dirty.
    pub fn publish(&mut self, no: PageNo, seq: u64, page: PageRef) {
        let entry = self.map.entry(no).or_insert_with(|| {
            self.ring.push(no);
            Entry {
                versions: Vec::new(),
                dirty: false,
                uses: 0,
            }
        });
        entry.versions.push((seq, page));
        self.versions += 1;
        if entry.versions.len() > 1 {
            self.multi.insert(no);
            self.pruned_at = 0;
        }
        if !entry.dirty {
            entry.dirty = true;
            self.dirty += 1;
        }
    }

    /// Whether the page has a cached version.
    #[cfg(test)]
    pub fn contains(&self, no: PageNo) -> bool {
        self.map.contains_key(&no)
    }

    /// Every dirty page's newest version.
    pub fn dirty_pages(&self) -> Vec<(PageNo, PageRef)> {
        self.map
            .iter()
            .filter(|(_, e)| e.dirty)
            .filter_map(|(no, e)| e.versions.last().map(|(_, p)| (*no, p.clone())))
            .collect()
    }

    /// The file now holds `page` for `no`: if it is still the newest version,
    /// the page is clean.
    pub fn mark_written(&mut self, no: PageNo, page: &PageRef) {
        if let Some(entry) = self.map.get_mut(&no)
            && entry.dirty
            && entry
                .versions
                .last()
                .is_some_and(|(_, p)| std::sync::Arc::ptr_eq(p, page))
        {
            entry.dirty = false;
            self.dirty -= 1;
        }
    }

    /// Drops versions no snapshot can read: every version but the newest
    /// whose successor is visible at `oldest` (the oldest snapshot that
    /// exists or can still be taken).
    pub fn prune(&mut self, oldest: u64) {
        if oldest == self.pruned_at {
            return;
        }
        self.pruned_at = oldest;
        let map = &mut self.map;
        let mut dropped = 0;
        self.multi.retain(|no| {
            let Some(entry) = map.get_mut(no) else {
                return false;
            };
            let keep_from = entry.versions.iter().rposition(|(seq, _)| *seq <= oldest).unwrap_or(0);
            if keep_from > 0 {
                entry.versions.drain(..keep_from);
                dropped += keep_from;
            }
            entry.versions.len() > 1
        });
        self.versions -= dropped;
    }

    /// Evicts clean, single-version pages visible at `oldest` until the cache
    /// fits its capacity or one full sweep (two for use counts) finds nothing.
    pub fn evict(&mut self, oldest: u64) {
        let mut budget = self.ring.len() * (MAX_USES as usize + 1);
        while self.bytes() > self.capacity && budget > 0 && !self.ring.is_empty() {
            budget -= 1;
            if self.hand >= self.ring.len() {
                self.hand = 0;
            }
            let no = self.ring[self.hand];
            let Some(entry) = self.map.get_mut(&no) else {
                self.ring.swap_remove(self.hand);
                continue;
            };
            let evictable = !entry.dirty && entry.versions.len() == 1 && entry.versions[0].0 <= oldest;
            if !evictable {
                self.hand += 1;
                continue;
            }
            if entry.uses > 0 {
                entry.uses -= 1;
                self.hand += 1;
                continue;
            }
            self.map.remove(&no);
            self.ring.swap_remove(self.hand);
            self.versions -= 1;
        }
    }

    /// Pages cached.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.map.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pager::PageBuf;
    use std::sync::Arc;

    fn page() -> PageRef {
        Arc::new(PageBuf::zeroed(4096))
    }

    #[test]
    fn snapshots_see_their_versions_and_pruning_keeps_them() {
        let mut c = PageCache::new(4096, 1 << 20);
        let v0 = c.insert_from_file(5, page());
        let v1 = page();
        c.publish(5, 3, v1.clone());
        assert!(Arc::ptr_eq(&c.get(5, 2).expect("old"), &v0));
        assert!(Arc::ptr_eq(&c.get(5, 3).expect("new"), &v1));
        c.prune(2);
        assert!(c.get(5, 2).is_some(), "snapshot 2 still reads the old version");
        c.prune(3);
        assert!(c.get(5, 2).is_none());
        assert_eq!(c.bytes(), 4096);
        assert_eq!(c.dirty_bytes(), 4096);
        c.mark_written(5, &v0);
        assert_eq!(
            c.dirty_bytes(),
            4096,
            "an older version written does not clean the page"
        );
        c.mark_written(5, &v1);
        assert_eq!(c.dirty_bytes(), 0);
    }

    #[test]
    fn a_scan_does_not_flush_hot_pages() {
        let mut c = PageCache::new(4096, 10 * 4096);
        for no in 0..5 {
            c.insert_from_file(no, page());
            for _ in 0..3 {
                c.get(no, u64::MAX);
            }
        }
        for no in 100..200 {
            c.insert_from_file(no, page());
            c.evict(u64::MAX);
        }
        for no in 0..5 {
            assert!(c.contains(no), "hot page {no} evicted by a scan");
        }
        assert!(c.bytes() <= 10 * 4096);
    }

    #[test]
    fn dirty_and_pinned_pages_stay() {
        let mut c = PageCache::new(4096, 4096);
        c.publish(1, 1, page());
        c.insert_from_file(2, page());
        c.publish(2, 2, page());
        c.evict(1);
        assert!(c.contains(1) && c.contains(2));
        assert_eq!(c.len(), 2);
    }
}
