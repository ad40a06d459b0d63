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
//!
//! The cache is split into shards by page number, each with its own lock,
//! CLOCK ring and share of the capacity: readers of different pages take
//! different locks (DESIGN.md, "Snapshot registry and cache shards").

use super::page::{PageNo, PageRef};
use parking_lot::Mutex;
use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicUsize, Ordering};

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

/// Most shards; a cache gets one per 256 pages of capacity, up to this.
const MAX_SHARDS: usize = 16;
const PAGES_PER_SHARD: usize = 256;

/// The committed page versions, in shards by page number.
pub(crate) struct PageCache {
    page_size: usize,
    capacity: usize,
    shards: Box<[ShardSlot]>,
    /// Versions held and dirty pages, over every shard.
    versions: AtomicUsize,
    dirty: AtomicUsize,
}

/// A shard on a cache line of its own.
#[repr(align(128))]
struct ShardSlot(Mutex<CacheShard>);

impl PageCache {
    pub fn new(page_size: usize, capacity: usize) -> Self {
        let mut count = 1;
        while count < MAX_SHARDS && capacity / page_size.max(1) / (count * 2) >= PAGES_PER_SHARD {
            count *= 2;
        }
        PageCache {
            page_size,
            capacity,
            shards: (0..count)
                .map(|_| ShardSlot(Mutex::new(CacheShard::new(page_size, capacity / count))))
                .collect(),
            versions: AtomicUsize::new(0),
            dirty: AtomicUsize::new(0),
        }
    }

    /// Runs `f` on the shard of page `no` and keeps the totals.
    fn with<R>(&self, no: PageNo, f: impl FnOnce(&mut CacheShard) -> R) -> R {
        // Middle bits of the product: the shard's own map indexes by the
        // low bits and tags by the high ones.
        let i = ((u64::from(no).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 32) as usize) & (self.shards.len() - 1);
        self.counted(&self.shards[i], f)
    }

    fn counted<R>(&self, slot: &ShardSlot, f: impl FnOnce(&mut CacheShard) -> R) -> R {
        let mut shard = slot.0.lock();
        let (versions, dirty) = (shard.versions, shard.dirty);
        let r = f(&mut shard);
        adjust(&self.versions, versions, shard.versions);
        adjust(&self.dirty, dirty, shard.dirty);
        r
    }

    /// Bytes held by cached versions.
    pub fn bytes(&self) -> usize {
        self.versions.load(Ordering::Relaxed) * self.page_size
    }

    /// Bytes of pages whose newest version is not in the file.
    pub fn dirty_bytes(&self) -> usize {
        self.dirty.load(Ordering::Relaxed) * self.page_size
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The newest version visible at `snapshot` (`u64::MAX`: the newest).
    pub fn get(&self, no: PageNo, snapshot: u64) -> Option<PageRef> {
        self.with(no, |s| s.get(no, snapshot))
    }

    /// Adds the version read from the file, unless the page is cached already
    /// (then that version wins: it may be newer than the file).
    pub fn insert_from_file(&self, no: PageNo, page: PageRef) -> PageRef {
        self.with(no, |s| s.insert_from_file(no, page))
    }

    /// [`PageCache::insert_from_file`], then evicts from the page's shard
    /// what `oldest` allows, until the shard fits its share.
    pub fn insert_and_evict(&self, no: PageNo, page: PageRef, oldest: u64) -> PageRef {
        self.with(no, |s| {
            let page = s.insert_from_file(no, page);
            s.evict(oldest);
            page
        })
    }

    /// Adds a committed version, newer than every cached one; the page is
    /// dirty. `base`, the version it was made from, goes in first as the
    /// file's version (as [`PageCache::insert_from_file`]), in the same
    /// hold of the shard's lock, so no eviction comes between the two.
    pub fn publish(&self, no: PageNo, base: Option<PageRef>, seq: u64, page: PageRef) {
        self.with(no, |s| {
            if let Some(base) = base {
                s.insert_from_file(no, base);
            }
            s.publish(no, seq, page);
        });
    }

    /// Whether the page has a cached version.
    #[cfg(test)]
    pub fn contains(&self, no: PageNo) -> bool {
        self.with(no, |s| s.map.contains_key(&no))
    }

    /// Every dirty page's newest version.
    pub fn dirty_pages(&self) -> Vec<(PageNo, PageRef)> {
        let mut pages = Vec::with_capacity(self.dirty.load(Ordering::Relaxed));
        for slot in self.shards.iter() {
            pages.extend(slot.0.lock().dirty_pages());
        }
        pages
    }

    /// The file now holds `page` for `no`: if it is still the newest version,
    /// the page is clean.
    pub fn mark_written(&self, no: PageNo, page: &PageRef) {
        self.with(no, |s| s.mark_written(no, page));
    }

    /// Drops versions no snapshot can read, in every shard.
    pub fn prune(&self, oldest: u64) {
        for slot in self.shards.iter() {
            self.counted(slot, |s| s.prune(oldest));
        }
    }

    /// Evicts what `oldest` allows from every shard over its share.
    pub fn evict(&self, oldest: u64) {
        for slot in self.shards.iter() {
            self.counted(slot, |s| s.evict(oldest));
        }
    }

    /// Pages cached.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.0.lock().map.len()).sum()
    }

    /// Shards (for tests).
    #[cfg(test)]
    pub fn shard_count(&self) -> usize {
        self.shards.len()
    }
}

/// Moves a total by one shard's change from `before` to `after`.
fn adjust(total: &AtomicUsize, before: usize, after: usize) {
    if after > before {
        total.fetch_add(after - before, Ordering::Relaxed);
    } else if before > after {
        total.fetch_sub(before - after, Ordering::Relaxed);
    }
}

/// One shard: its pages' versions, its CLOCK ring, its share of the capacity.
struct CacheShard {
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

impl CacheShard {
    fn new(page_size: usize, capacity: usize) -> Self {
        CacheShard {
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

    fn bytes(&self) -> usize {
        self.versions * self.page_size
    }

    fn get(&mut self, no: PageNo, snapshot: u64) -> Option<PageRef> {
        let entry = self.map.get_mut(&no)?;
        let version = entry.versions.iter().rev().find(|(seq, _)| *seq <= snapshot)?;
        entry.uses = (entry.uses + 1).min(MAX_USES);
        Some(version.1.clone())
    }

    fn insert_from_file(&mut self, no: PageNo, page: PageRef) -> PageRef {
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

    fn publish(&mut self, no: PageNo, seq: u64, page: PageRef) {
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

    fn dirty_pages(&self) -> Vec<(PageNo, PageRef)> {
        self.map
            .iter()
            .filter(|(_, e)| e.dirty)
            .filter_map(|(no, e)| e.versions.last().map(|(_, p)| (*no, p.clone())))
            .collect()
    }

    fn mark_written(&mut self, no: PageNo, page: &PageRef) {
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
    fn prune(&mut self, oldest: u64) {
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

    /// Evicts clean, single-version pages visible at `oldest` until the shard
    /// fits its capacity or one full sweep (two for use counts) finds nothing.
    fn evict(&mut self, oldest: u64) {
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
        let c = PageCache::new(4096, 1 << 20);
        let v0 = c.insert_from_file(5, page());
        let v1 = page();
        c.publish(5, None, 3, v1.clone());
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
        let c = PageCache::new(4096, 10 * 4096);
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
    fn a_large_cache_is_sharded_and_every_shard_keeps_to_its_share() {
        assert_eq!(PageCache::new(4096, 24 * 4096).shard_count(), 1);
        assert_eq!(PageCache::new(16384, 64 << 20).shard_count(), MAX_SHARDS);
        let c = PageCache::new(4096, 1024 * 4096);
        assert_eq!(c.shard_count(), 4);
        for no in 0..5000 {
            c.insert_and_evict(no, page(), u64::MAX);
        }
        assert!(c.bytes() <= 1024 * 4096, "{} bytes held", c.bytes());
        assert!(c.len() > 900, "shards evicted more than their share: {} pages", c.len());
        c.publish(7, Some(page()), 1, page());
        assert_eq!(c.dirty_bytes(), 4096);
        assert_eq!(c.dirty_pages().len(), 1);
        c.prune(1);
        c.evict(1);
        assert!(c.contains(7), "a dirty page stays");
    }

    #[test]
    fn dirty_and_pinned_pages_stay() {
        let c = PageCache::new(4096, 4096);
        c.publish(1, None, 1, page());
        c.insert_from_file(2, page());
        c.publish(2, None, 2, page());
        c.evict(1);
        assert!(c.contains(1) && c.contains(2));
        assert_eq!(c.len(), 2);
    }
}
