//! The write transaction's page store: private copies of the pages it
//! changes, allocation from the free-space maps, and the commit record.

use crate::log::Lsn;
use crate::pager::page::{self, PAGE_HEADER_LEN};
use crate::pager::{DbError, LATEST, PageBuf, PageKind, PageNo, PageRead, PageRef, PageWrite, Pager, Result, freemap};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;

/// One page the transaction changed.
struct Private {
    /// The committed version it started from; None for a page allocated here.
    base: Option<PageRef>,
    page: PageRef,
}

/// The pages of one write transaction (its page store).
pub struct TxnPages {
    pager: Arc<Pager>,
    private: BTreeMap<PageNo, Private>,
    page_count: u32,
    /// Where the next allocation search starts.
    alloc_hint: PageNo,
    /// Committed versions of reused pages, kept for older snapshots.
    displaced: Vec<(PageNo, PageRef)>,
}

impl TxnPages {
    pub fn new(pager: Arc<Pager>) -> Self {
        let page_count = pager.page_count();
        let alloc_hint = pager.free_search_from.load(Ordering::Acquire);
        TxnPages {
            pager,
            private: BTreeMap::new(),
            page_count,
            alloc_hint,
            displaced: Vec::new(),
        }
    }

    /// What a committed or rolled-back transaction leaves behind: changes
    /// nothing and holds nothing.
    pub(crate) fn spent(pager: Arc<Pager>) -> Self {
        TxnPages {
            pager,
            private: BTreeMap::new(),
            page_count: 0,
            alloc_hint: crate::pager::FIRST_DATA_PAGE,
            displaced: Vec::new(),
        }
    }

    pub fn pager(&self) -> &Arc<Pager> {
        &self.pager
    }

    /// Bytes of private page copies held.
    pub fn held_bytes(&self) -> usize {
        self.private.len() * self.pager.page_size()
    }

    fn bound(&self) -> Result<()> {
        // The private copies are whole pages (no steal: they stay in memory
        // until the commit), and each logs at most itself, so bounding them
        // bounds the transaction's records too. A thousand random inserts
        // touch hundreds of leaves with a hundred bytes each, so the bound
        // is never below half the cache.
        let opts = self.pager.options();
        let max = (opts.cache_bytes / 2).max(opts.max_transaction_bytes) + 16 * self.pager.page_size();
        if self.held_bytes() > max {
            return Err(DbError::TransactionTooLarge {
                measure: "the changed pages it holds",
                bytes: self.held_bytes(),
                max,
            });
        }
        Ok(())
    }

    /// Writes the transaction: its log records, the page versions published.
    /// Returns the end of the record, for the durability wait.
    pub fn commit(self) -> Result<Option<Lsn>> {
        if self.private.is_empty() {
            return Ok(None);
        }
        let page_count = self.page_count;
        // The committed versions this transaction started from stay cached
        // beside the new ones for older snapshots: the cache may have evicted
        // them while the transaction ran.
        let mut bases = self.displaced;
        bases.extend(
            self.private
                .iter()
                .filter_map(|(no, p)| p.base.clone().map(|b| (*no, b))),
        );
        let changed = self.private.into_iter().map(|(no, p)| (no, p.base, p.page)).collect();
        let pager = self.pager;
        let (_, end) = pager.append_commit(changed, page_count, bases)?;
        // Every page below the hint is allocated now: the search began at
        // the committed hint and passed only allocated pages, and a free
        // here lowered it.
        pager.free_search_from.store(self.alloc_hint, Ordering::Release);
        Ok(Some(end))
    }

    /// Marks `no` allocated or free in its map page.
    fn set_allocated(&mut self, no: PageNo, allocated: bool) -> Result<()> {
        let ps = self.pager.page_size();
        let (map, bit) = freemap::locate(no, ps);
        let page = self.page_mut(map)?;
        if page::page_kind(page) != Some(PageKind::FreeMap) {
            return Err(DbError::corrupt_page(
                self.pager.file_path(),
                map,
                u64::from(map) * ps as u64,
                "expected a free-space map page",
            ));
        }
        if freemap::get(page, bit) == allocated {
            return Err(DbError::corrupt_page(
                self.pager.file_path(),
                map,
                u64::from(map) * ps as u64 + (PAGE_HEADER_LEN + bit / 8) as u64,
                format!(
                    "page {no} is already {} in the free-space map",
                    if allocated { "allocated" } else { "free" }
                ),
            ));
        }
        freemap::put(page, bit, allocated);
        Ok(())
    }

    /// A free page below the page count, searching map by map from the hint.
    fn find_free(&mut self) -> Result<Option<PageNo>> {
        let ps = self.pager.page_size();
        let span = freemap::span(ps);
        let mut no = self.alloc_hint;
        while no < self.page_count {
            let (map, bit) = freemap::locate(no, ps);
            let limit = (self.page_count - (no - bit as u32)).min(span) as usize;
            let page = self.page(map)?;
            if let Some(free) = freemap::find_free(&page, bit, limit) {
                return Ok(Some(no - bit as u32 + free as u32));
            }
            no = no - bit as u32 + span;
        }
        Ok(None)
    }

    fn fresh(&mut self, no: PageNo, kind: PageKind) {
        self.fresh_from(no, kind, PageBuf::zeroed(self.pager.page_size()));
    }

    fn fresh_from(&mut self, no: PageNo, kind: PageKind, mut page: PageBuf) {
        page::init_header(&mut page, no, kind, self.pager.salt());
        self.private.insert(
            no,
            Private {
                base: None,
                page: Arc::new(page),
            },
        );
    }
}

impl PageRead for TxnPages {
    fn page_size(&self) -> usize {
        self.pager.page_size()
    }

    fn file_path(&self) -> &Path {
        self.pager.file_path()
    }

    fn page(&self, no: PageNo) -> Result<PageRef> {
        if let Some(p) = self.private.get(&no) {
            return Ok(p.page.clone());
        }
        if no >= self.page_count {
            return Err(DbError::corrupt_page(
                self.pager.file_path(),
                no,
                u64::from(no) * self.pager.page_size() as u64,
                format!("page number beyond the database's {} pages", self.page_count),
            ));
        }
        self.pager.read(no, LATEST)
    }
}

impl PageWrite for TxnPages {
    fn page_mut(&mut self, no: PageNo) -> Result<&mut [u8]> {
        if !self.private.contains_key(&no) {
            let base = self.page(no)?;
            let page = Arc::new((*base).clone());
            self.private.insert(no, Private { base: Some(base), page });
            self.bound()?;
        }
        let p = self.private.get_mut(&no).expect("inserted above");
        Ok(&mut Arc::make_mut(&mut p.page)[..])
    }

    fn allocate(&mut self, kind: PageKind) -> Result<PageNo> {
        self.allocate_filled(kind, PageBuf::zeroed(self.pager.page_size()))
    }

    fn allocate_filled(&mut self, kind: PageKind, page: PageBuf) -> Result<PageNo> {
        let ps = self.pager.page_size();
        if page.len() != ps {
            return Err(DbError::InvalidArgument(format!(
                "a page of {} bytes given to a database of {ps}-byte pages",
                page.len()
            )));
        }
        let no = match self.find_free()? {
            Some(no) => no,
            None => {
                let mut no = self.page_count;
                if freemap::is_map_page(no, ps) {
                    // A new range starts: its first page is its map.
                    self.fresh(no, PageKind::FreeMap);
                    self.page_count = no + 1;
                    self.set_allocated(no, true)?;
                    no += 1;
                }
                self.page_count = no + 1;
                no
            }
        };
        self.set_allocated(no, true)?;
        if no < self.pager.page_count() && !self.displaced.iter().any(|(n, _)| *n == no) {
            // A reused page: older snapshots may still read its old content,
            // which the commit keeps cached for them (see `append_commit`).
            // A page that cannot be read was never written, so no snapshot
            // refers to it.
            if let Ok(old) = self.pager.read(no, LATEST) {
                self.displaced.push((no, old));
            }
        }
        self.fresh_from(no, kind, page);
        self.alloc_hint = no + 1;
        self.bound()?;
        Ok(no)
    }

    fn free(&mut self, no: PageNo) -> Result<()> {
        let ps = self.pager.page_size();
        if no < crate::pager::FIRST_DATA_PAGE || no >= self.page_count || freemap::is_map_page(no, ps) {
            return Err(DbError::InvalidArgument(format!("page {no} cannot be freed")));
        }
        self.set_allocated(no, false)?;
        // Its content no longer matters: nothing of it is logged.
        self.private.remove(&no);
        self.alloc_hint = self.alloc_hint.min(no);
        Ok(())
    }
}
