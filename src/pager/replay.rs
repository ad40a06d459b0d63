//! The pages the redo pass works on: loaded from the file at their first
//! change, changed in memory, and spilled to the file when they outgrow the
//! cache budget. A spill writes the least recently changed pages only, so
//! the pages a workload keeps changing (the growing end of each mailbox)
//! stay in memory and are written once, at the end.
//!
//! Pages are shared (`PageRef`) and copied on write (`Arc::make_mut`), so a
//! readable copy's snapshot captures them as pointers (`passive_read`).

use super::page::{PageBuf, PageNo, PageRef};
use crate::log::Lsn;
use std::collections::HashMap;
use std::sync::Arc;

/// A page under redo.
pub(super) struct RedoPage {
    /// Shared with the snapshots that captured it: change it through
    /// `Arc::make_mut`, which copies it first while one holds it.
    pub buf: PageRef,
    /// Its file copy is torn, never written or beyond the end: only a full
    /// image in the log can make it whole.
    pub unreadable: bool,
    /// The LSN of the first record that changed it since it was loaded: a
    /// checkpoint that leaves it in memory must start redo there.
    pub first_change: Option<Lsn>,
    /// When it was last changed (a record counter), for choosing what to spill.
    last_change: u64,
    /// The LSN of the full image this version was built from, when nothing
    /// of it came from the file: replaying the log from there rebuilds it
    /// whatever the file holds, so a copy writes it without double-write.
    pub rebuilt_from: Option<Lsn>,
    /// Handed to a background checkpoint (this version, shared), and kept
    /// here until it is in the file.
    writing: bool,
}

/// Changed pages for a checkpoint: those whose file copy must survive a torn
/// write (through the double-write area), and those the log rebuilds from
/// an image after the last checkpoint's redo point.
#[derive(Default)]
pub(crate) struct Changed {
    pub protected: Vec<(PageNo, PageRef)>,
    pub rebuilt: Vec<(PageNo, PageRef)>,
}

impl Changed {
    fn push(&mut self, no: PageNo, p: RedoPage) {
        match p.rebuilt_from {
            Some(_) => self.rebuilt.push((no, p.buf)),
            None => self.protected.push((no, p.buf)),
        }
    }

    /// Every page, for a writer that protects them all alike.
    pub fn all(self) -> Vec<(PageNo, PageRef)> {
        let mut all = self.protected;
        all.extend(self.rebuilt);
        all
    }
}

/// The pages under redo, bounded by a page budget.
pub(super) struct RedoSet {
    pages: HashMap<PageNo, RedoPage>,
    budget: usize,
    clock: u64,
    /// Pages being written by a background checkpoint: not counted in the
    /// budget, so the set holds up to 1.5 × its budget while one runs.
    writing: usize,
}

impl RedoSet {
    /// A set holding at most `budget` pages (at least 2) between spills.
    pub fn new(budget: usize) -> RedoSet {
        RedoSet {
            pages: HashMap::new(),
            budget: budget.max(2),
            clock: 0,
            writing: 0,
        }
    }

    /// Whether the set is over its budget, and must spill before it grows.
    pub fn is_full(&self) -> bool {
        self.pages.len() - self.writing >= self.budget
    }

    pub fn contains(&self, no: PageNo) -> bool {
        self.pages.contains_key(&no)
    }

    /// Adds a page just loaded (or a zeroed one standing for an unreadable page).
    pub fn insert(&mut self, no: PageNo, buf: PageBuf, unreadable: bool) {
        self.pages.insert(
            no,
            RedoPage {
                buf: Arc::new(buf),
                unreadable,
                first_change: None,
                last_change: 0,
                rebuilt_from: None,
                writing: false,
            },
        );
    }

    pub fn get_mut(&mut self, no: PageNo) -> Option<&mut RedoPage> {
        self.pages.get_mut(&no)
    }

    /// Page `no` if the set holds it whole (not awaiting an image).
    pub fn whole_page(&self, no: PageNo) -> Option<&[u8]> {
        self.pages.get(&no).filter(|p| !p.unreadable).map(|p| &p.buf[..])
    }

    /// Notes that the record at `lsn` changed page `no`.
    pub fn changed(&mut self, no: PageNo, lsn: Lsn) {
        self.clock += 1;
        if let Some(p) = self.pages.get_mut(&no) {
            p.first_change.get_or_insert(lsn);
            p.last_change = self.clock;
        }
    }

    /// A page still waiting for its full image, if any.
    pub fn first_unreadable(&self) -> Option<PageNo> {
        self.pages.iter().find(|(_, p)| p.unreadable).map(|(no, _)| *no)
    }

    /// Takes the least recently changed half of the pages out of the set:
    /// the changed ones to write, and the LSN redo must start from once they
    /// are written (the first change of any changed page left, or `next`,
    /// the record about to be applied). Pages awaiting an image stay.
    pub fn spill(&mut self, next: Lsn) -> (Changed, Lsn) {
        let mut out = Changed::default();
        for no in self.coldest(false) {
            if let Some(p) = self.pages.remove(&no)
                && p.first_change.is_some()
            {
                out.push(no, p);
            }
        }
        (out, self.redo_from(next))
    }

    /// The readable pages not being written, least recently changed first:
    /// all of them, or the coldest half.
    fn coldest(&self, all: bool) -> Vec<PageNo> {
        let mut order: Vec<(u64, PageNo)> = self
            .pages
            .iter()
            .filter(|(_, p)| !p.unreadable && !p.writing)
            .map(|(no, p)| (p.last_change, *no))
            .collect();
        order.sort_unstable();
        let take = if all { order.len() } else { order.len().div_ceil(2) };
        order.into_iter().take(take).map(|(_, no)| no).collect()
    }

    /// Where redo must start once the pages taken are written: the first
    /// change of any changed page left, or `next`.
    fn redo_from(&self, next: Lsn) -> Lsn {
        self.pages
            .values()
            .filter_map(|p| p.first_change)
            .min()
            .map_or(next, |first| first.min(next))
    }

    /// As [`RedoSet::spill`], for a checkpoint written in the background
    /// while replay goes on: the changed pages taken stay here, shared with
    /// the writer, so that replay and readers keep finding them (a change
    /// copies them first) until [`RedoSet::written`]. Their next change
    /// counts from here: redo starts at it or later. Unchanged pages taken
    /// are dropped at once. `all`: every readable page is taken, not the
    /// coldest half (a periodic checkpoint rather than a spill).
    pub fn spill_to_write(&mut self, next: Lsn, all: bool) -> (Changed, Lsn) {
        let mut out = Changed::default();
        for no in self.coldest(all) {
            let Some(p) = self.pages.get_mut(&no) else { continue };
            if p.first_change.is_none() {
                self.pages.remove(&no);
                continue;
            }
            let shared = RedoPage {
                buf: p.buf.clone(),
                unreadable: false,
                first_change: p.first_change.take(),
                last_change: p.last_change,
                rebuilt_from: p.rebuilt_from.take(),
                writing: false,
            };
            // Reloaded from the file, its version would not be rebuilt
            // from an image either: after this checkpoint's redo point the
            // image may be gone.
            p.writing = true;
            self.writing += 1;
            out.push(no, shared);
        }
        (out, self.redo_from(next))
    }

    /// The background checkpoint is in the file: pages it wrote that were
    /// not changed since leave the set.
    pub fn written(&mut self) {
        self.pages.retain(|_, p| {
            let keep = !p.writing || p.first_change.is_some();
            p.writing = false;
            keep
        });
        self.writing = 0;
    }

    /// Every readable page, shared: what a snapshot of the pass reads
    /// before the file (O(pages) pointer copies).
    pub fn capture(&self) -> HashMap<PageNo, PageRef> {
        self.pages
            .iter()
            .filter(|(_, p)| !p.unreadable)
            .map(|(no, p)| (*no, p.buf.clone()))
            .collect()
    }

    /// The pages changed since they were read, for a checkpoint.
    pub fn into_changed(self) -> Changed {
        let mut out = Changed::default();
        for (no, p) in self.pages.into_iter().filter(|(_, p)| p.first_change.is_some()) {
            out.push(no, p);
        }
        out
    }

    /// Every page left, for the cache (changed or not: they are loaded).
    pub fn into_pages(self) -> impl Iterator<Item = (PageNo, PageRef)> {
        self.pages.into_iter().map(|(no, p)| (no, p.buf))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(byte: u8) -> PageBuf {
        let mut p = PageBuf::zeroed(4096);
        p[100] = byte;
        p
    }

    #[test]
    fn a_background_spill_keeps_its_pages_until_written_and_counts_later_changes() {
        let mut set = RedoSet::new(4);
        for no in 10..14 {
            set.insert(no, page(no as u8), false);
        }
        set.changed(10, Lsn(5));
        set.changed(12, Lsn(30));
        set.changed(13, Lsn(31));
        // Page 11 is the coldest but unchanged: dropped, not written.
        let (out, redo) = set.spill_to_write(Lsn(50), false);
        let out = out.all();
        assert_eq!(out.iter().map(|(no, _)| *no).collect::<Vec<_>>(), vec![10]);
        assert_eq!(redo, Lsn(30), "pages 12 and 13 keep their changes from 30");
        // Page 10 is still found while written; the set has room again.
        assert!(set.contains(10) && !set.contains(11) && !set.is_full());
        assert_eq!(set.whole_page(10).map(|p| p[100]), Some(10));
        // A change after the spill copies the page: the writer's version stays.
        set.changed(10, Lsn(60));
        if let Some(p) = set.get_mut(10) {
            Arc::make_mut(&mut p.buf)[100] = 99;
        }
        assert_eq!(out[0].1[100], 10);
        // The next spill does not take a page being written.
        set.insert(14, page(14), false);
        set.changed(14, Lsn(70));
        let (second, _) = set.spill_to_write(Lsn(80), false);
        assert!(second.all().iter().all(|(no, _)| *no != 10));
        set.written();
        // Page 10 changed again after the first spill and stays; pages the
        // second spill wrote and nothing changed since leave.
        assert!(set.contains(10));
        assert_eq!(set.get_mut(10).and_then(|p| p.first_change), Some(Lsn(60)));
        assert!(
            !set.contains(12),
            "page 12, the coldest left, went with the second spill"
        );
    }

    #[test]
    fn spill_takes_the_coldest_half_and_starts_redo_at_the_oldest_kept_change() {
        let mut set = RedoSet::new(4);
        for no in 10..14 {
            set.insert(no, page(no as u8), false);
        }
        // Pages 10 and 11 change early, 12 and 13 late; 13 is loaded but
        // 12 is changed first at LSN 30.
        set.changed(10, Lsn(5));
        set.changed(11, Lsn(6));
        set.changed(12, Lsn(30));
        set.changed(13, Lsn(31));
        set.changed(12, Lsn(40));
        assert!(set.is_full());
        let (out, redo) = set.spill(Lsn(50));
        let out = out.all();
        let mut spilled: Vec<PageNo> = out.iter().map(|(no, _)| *no).collect();
        spilled.sort_unstable();
        assert_eq!(spilled, vec![10, 11]);
        assert_eq!(out.iter().find(|(no, _)| *no == 10).map(|(_, p)| p[100]), Some(10));
        assert_eq!(redo, Lsn(30), "page 12 kept, first changed at 30");
        assert!(set.contains(12) && set.contains(13) && !set.contains(10));
    }

    #[test]
    fn unchanged_and_unreadable_pages_are_never_written() {
        let mut set = RedoSet::new(2);
        set.insert(1, page(1), false);
        set.insert(2, page(2), true);
        set.insert(3, page(3), false);
        set.changed(3, Lsn(9));
        let (out, redo) = set.spill(Lsn(20));
        assert!(
            out.all().is_empty(),
            "page 1 was never changed; page 2 awaits its image"
        );
        assert!(set.contains(2) && set.contains(3) && !set.contains(1));
        assert_eq!(redo, Lsn(9));
        assert_eq!(set.first_unreadable(), Some(2));
    }
}
