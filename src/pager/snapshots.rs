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

/// A registered snapshot: its sequence and the shard that holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Registered {
    pub seq: u64,
    shard: usize,
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

    /// Registers a snapshot of the visible state on this thread's shard.
    pub fn begin(&self) -> Registered {
        let shard = home();
        let mut held = self.shards[shard].0.lock();
        let seq = self.visible();
        match held.iter_mut().find(|(s, _)| *s == seq) {
            Some((_, n)) => *n += 1,
            None => held.push((seq, 1)),
        }
        Registered { seq, shard }
    }

    /// Ends a snapshot, on the shard it was registered on (whatever thread
    /// ends it: a search of the other shards could pass one that gains an
    /// entry of the same sequence meanwhile, and leave an entry behind for
    /// good). Returns whether the oldest snapshot may have moved: only a
    /// snapshot older than the visible state can have held it back.
    pub fn end(&self, snapshot: Registered) -> bool {
        let mut held = self.shards[snapshot.shard].0.lock();
        if let Some(at) = held.iter().position(|(s, _)| *s == snapshot.seq) {
            held[at].1 -= 1;
            if held[at].1 == 0 {
                held.swap_remove(at);
            }
            return snapshot.seq < self.visible();
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
        assert_eq!((a.seq, b.seq), (5, 9));
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
        let snapshot = r.begin();
        r.set_visible(4);
        let other = r.clone();
        let moved = std::thread::spawn(move || other.end(snapshot)).join().expect("thread");
        assert!(moved);
        assert_eq!(r.live(), 0);
        assert_eq!(r.oldest(), 4);
    }

    /// Snapshots of one sequence begun on some threads and ended on others,
    /// all at once: no entry is left behind. (An earlier `end` searched the
    /// shards by sequence and could pass a shard that gained an entry
    /// meanwhile; that interleaving is narrow, and this test did not meet
    /// it in 10 runs against that version. The shard in the ticket rules it
    /// out by construction; this checks the count stays exact.)
    #[test]
    fn snapshots_ended_on_other_threads_at_once_leave_nothing_behind() {
        let r = std::sync::Arc::new(SnapshotRegistry::new(7));
        let (to_end, ends) = std::sync::mpsc::sync_channel::<Registered>(64);
        let ends = std::sync::Arc::new(Mutex::new(ends));
        let enders: Vec<_> = (0..3)
            .map(|_| {
                let (r, ends) = (r.clone(), ends.clone());
                std::thread::spawn(move || {
                    loop {
                        let next = ends.lock().recv();
                        match next {
                            Ok(s) => {
                                r.end(s);
                            }
                            Err(_) => return,
                        }
                    }
                })
            })
            .collect();
        let beginners: Vec<_> = (0..3)
            .map(|_| {
                let (r, to_end) = (r.clone(), to_end.clone());
                std::thread::spawn(move || {
                    for _ in 0..20_000 {
                        to_end.send(r.begin()).expect("an ender is there");
                    }
                })
            })
            .collect();
        drop(to_end);
        for t in beginners.into_iter().chain(enders) {
            t.join().expect("thread");
        }
        assert_eq!(r.live(), 0);
        r.set_visible(8);
        assert_eq!(r.oldest(), 8, "nothing holds the oldest back");
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
                        let snapshot = r.begin();
                        assert!(r.oldest_bound() <= snapshot.seq, "the bound passed a live snapshot");
                        std::thread::yield_now();
                        assert!(r.oldest_bound() <= snapshot.seq, "the bound passed a live snapshot");
                        r.end(snapshot);
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
