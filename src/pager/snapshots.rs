//! The registry of live snapshots, and the visible sequence they start from.
//!
//! Readers register on a shard of their own thread's choosing, so that
//! readers on different threads take different locks: one global lock taken
//! at the start and the end of every read convoyed eight threads on two CPUs
//! (DESIGN.md, "Snapshot registry and cache shards").
//!
//! Invariant: a snapshot reads `visible` while it holds its shard's lock, and
//! [`SnapshotRegistry::oldest`] reads `visible` while it holds every shard's
//! lock. So a snapshot that `oldest` did not see began after it and has a
//! sequence at least as new as the one `oldest` returned: pruning with that
//! value never drops a version the snapshot reads.

use parking_lot::{Mutex, MutexGuard};
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

const SHARDS: usize = 16;

/// One shard: (sequence, count) of its live snapshots. A thread's readers
/// mostly share one sequence, so the list stays a few entries long.
#[repr(align(128))]
#[derive(Default)]
struct Shard(Mutex<Vec<(u64, usize)>>);

pub(crate) struct SnapshotRegistry {
    shards: Box<[Shard]>,
    /// Snapshots see commits up to this sequence (the durable ones).
    visible: AtomicU64,
    /// A lower bound of [`SnapshotRegistry::oldest`]: the last value it
    /// returned. The oldest snapshot never moves back (a new one starts at
    /// `visible`), so a value once true stays a safe bound for eviction.
    oldest_seen: AtomicU64,
}

thread_local! {
    static HOME: Cell<Option<usize>> = const { Cell::new(None) };
}

/// The shard this thread registers on: handed out in turn on first use.
fn home() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    HOME.with(|h| {
        *h.get().get_or_insert_with(|| {
            let i = NEXT.fetch_add(1, Ordering::Relaxed) % SHARDS;
            h.set(Some(i));
            i
        })
    })
}

impl SnapshotRegistry {
    pub fn new(visible: u64) -> Self {
        SnapshotRegistry {
            shards: (0..SHARDS).map(|_| Shard::default()).collect(),
            visible: AtomicU64::new(visible),
            oldest_seen: AtomicU64::new(visible),
        }
    }

    pub fn visible(&self) -> u64 {
        self.visible.load(Ordering::Acquire)
    }

    /// Makes commits up to `seq` visible. Only moves forward.
    pub fn set_visible(&self, seq: u64) {
        self.visible.fetch_max(seq, Ordering::AcqRel);
    }

    /// Registers a snapshot of the visible state; returns its sequence.
    pub fn begin(&self) -> u64 {
        let mut shard = self.shards[home()].0.lock();
        let seq = self.visible();
        match shard.iter_mut().find(|(s, _)| *s == seq) {
            Some((_, n)) => *n += 1,
            None => shard.push((seq, 1)),
        }
        seq
    }

    /// Ends a snapshot of `seq`. Returns whether the oldest snapshot may
    /// have moved: only a snapshot older than the visible state can have
    /// been the one holding it back.
    pub fn end(&self, seq: u64) -> bool {
        let own = home();
        let order = std::iter::once(own).chain((0..SHARDS).filter(|&i| i != own));
        for i in order {
            let mut shard = self.shards[i].0.lock();
            if let Some(at) = shard.iter().position(|(s, _)| *s == seq) {
                shard[at].1 -= 1;
                if shard[at].1 == 0 {
                    shard.swap_remove(at);
                }
                return seq < self.visible();
            }
        }
        false
    }

    /// The oldest snapshot that exists or can still be taken.
    pub fn oldest(&self) -> u64 {
        let held: Vec<MutexGuard<'_, Vec<(u64, usize)>>> = self.shards.iter().map(|s| s.0.lock()).collect();
        let visible = self.visible();
        let oldest = held
            .iter()
            .flat_map(|s| s.iter().map(|(seq, _)| *seq))
            .min()
            .unwrap_or(visible)
            .min(visible);
        drop(held);
        self.oldest_seen.fetch_max(oldest, Ordering::AcqRel);
        oldest
    }

    /// A bound at or below the oldest snapshot, without taking a lock.
    pub fn oldest_bound(&self) -> u64 {
        self.oldest_seen.load(Ordering::Acquire)
    }

    /// Live snapshots (for tests and figures).
    #[cfg(test)]
    pub fn live(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.0.lock().iter().map(|(_, n)| n).sum::<usize>())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oldest_is_the_oldest_live_snapshot_or_the_visible_state() {
        let r = SnapshotRegistry::new(5);
        let a = r.begin();
        r.set_visible(9);
        let b = r.begin();
        assert_eq!((a, b), (5, 9));
        assert_eq!(r.oldest(), 5);
        assert!(r.end(a), "the older snapshot may have held the oldest back");
        assert_eq!(r.oldest(), 9);
        assert!(!r.end(b), "a snapshot of the visible state never holds it back");
        assert_eq!(r.live(), 0);
        assert_eq!(r.oldest_bound(), 9);
    }

    #[test]
    fn a_snapshot_ended_on_another_thread_is_found() {
        let r = std::sync::Arc::new(SnapshotRegistry::new(3));
        let seq = r.begin();
        r.set_visible(4);
        let other = r.clone();
        let moved = std::thread::spawn(move || other.end(seq)).join().expect("thread");
        assert!(moved);
        assert_eq!(r.live(), 0);
        assert_eq!(r.oldest(), 4);
    }

    #[test]
    fn oldest_never_passes_a_snapshot_taken_while_it_runs() {
        let r = std::sync::Arc::new(SnapshotRegistry::new(0));
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let readers: Vec<_> = (0..4)
            .map(|_| {
                let (r, stop) = (r.clone(), stop.clone());
                std::thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        let seq = r.begin();
                        assert!(r.oldest_bound() <= seq, "the bound passed a live snapshot");
                        std::thread::yield_now();
                        assert!(r.oldest_bound() <= seq, "the bound passed a live snapshot");
                        r.end(seq);
                    }
                })
            })
            .collect();
        for v in 1..20_000 {
            r.set_visible(v);
            let _ = r.oldest();
        }
        stop.store(true, Ordering::Relaxed);
        for t in readers {
            t.join().expect("reader");
        }
        assert_eq!(r.live(), 0);
    }
}
