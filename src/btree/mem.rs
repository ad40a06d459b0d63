//! An in-memory page store, for tests and benchmarks of code over pages.

use crate::pager::page::{self, MAX_PAGE_SIZE, MIN_PAGE_SIZE, PageBuf, PageKind, PageNo, PageRef};
use crate::pager::{DbError, PageRead, PageWrite, Result};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Pages 0 and 1 hold the database header in a real file; never allocated here.
const FIRST_PAGE: PageNo = 2;

/// Pages in memory, with real page headers. Freed pages get the kind
/// `Free` and are reused (last freed first) by the next allocation at once,
/// which makes use-after-free bugs show up quickly. Reading a free page
/// returns it (with its `Free` kind); changing or freeing it is an error.
/// Cloning is cheap: pages are shared until changed.
#[derive(Clone)]
pub struct MemStore {
    page_size: usize,
    path: PathBuf,
    salt: u32,
    /// Indexed by page number; `None` below `FIRST_PAGE`.
    pages: Vec<Option<PageRef>>,
    is_free: Vec<bool>,
    free: Vec<PageNo>,
}

impl MemStore {
    /// An empty store of `page_size`-byte pages (operations fail unless it is
    /// a power of two between the pager's limits).
    pub fn new(page_size: usize) -> MemStore {
        MemStore {
            page_size,
            path: PathBuf::from("<memory>"),
            salt: 0x6d76_6c74,
            pages: vec![None; FIRST_PAGE as usize],
            is_free: vec![false; FIRST_PAGE as usize],
            free: Vec::new(),
        }
    }

    /// Pages allocated and not freed.
    pub fn live_pages(&self) -> usize {
        self.pages.len() - FIRST_PAGE as usize - self.free.len()
    }

    /// The numbers of the live pages.
    pub fn live_page_numbers(&self) -> BTreeSet<PageNo> {
        (FIRST_PAGE..self.pages.len() as PageNo)
            .filter(|&no| !self.is_free[no as usize])
            .collect()
    }

    /// Pages ever allocated (the file size, in pages, less the header pages).
    pub fn allocated_pages(&self) -> usize {
        self.pages.len() - FIRST_PAGE as usize
    }

    /// Seals every live page (computes its checksum), as a commit would.
    pub fn seal_all(&mut self) {
        for (no, slot) in self.pages.iter_mut().enumerate() {
            if let Some(page) = slot.as_mut()
                && !self.is_free[no]
            {
                page::seal(&mut Arc::make_mut(page)[..]);
            }
        }
    }

    /// Verifies every live page's checksum, number, salt and kind, as the
    /// pager does when it reads a page from the file.
    pub fn verify_pages(&self) -> Result<()> {
        for no in self.live_page_numbers() {
            let page = self.page(no)?;
            page::verify(&page, no, self.salt, &self.path, self.page_size)?;
        }
        Ok(())
    }

    fn index(&self, no: PageNo) -> Result<usize> {
        let i = no as usize;
        match self.pages.get(i) {
            Some(Some(_)) => Ok(i),
            _ => Err(DbError::corrupt_page(
                &self.path,
                no,
                u64::from(no) * self.page_size as u64,
                "no such page in the store",
            )),
        }
    }

    fn live_index(&self, no: PageNo) -> Result<usize> {
        let i = self.index(no)?;
        if self.is_free[i] {
            return Err(DbError::InvalidArgument(format!("page {no} is free")));
        }
        Ok(i)
    }
}

impl PageRead for MemStore {
    fn page_size(&self) -> usize {
        self.page_size
    }

    fn file_path(&self) -> &Path {
        &self.path
    }

    fn page(&self, no: PageNo) -> Result<PageRef> {
        let i = self.index(no)?;
        // index() checked the slot holds a page.
        self.pages[i]
            .clone()
            .ok_or_else(|| DbError::InvalidArgument(format!("page {no} missing")))
    }
}

impl PageWrite for MemStore {
    fn page_mut(&mut self, no: PageNo) -> Result<&mut [u8]> {
        let i = self.live_index(no)?;
        match self.pages[i].as_mut() {
            Some(page) => Ok(&mut Arc::make_mut(page)[..]),
            None => Err(DbError::InvalidArgument(format!("page {no} missing"))),
        }
    }

    fn allocate(&mut self, kind: PageKind) -> Result<PageNo> {
        self.allocate_filled(kind, PageBuf::zeroed(self.page_size))
    }

    fn allocate_filled(&mut self, kind: PageKind, mut page: PageBuf) -> Result<PageNo> {
        if !(MIN_PAGE_SIZE..=MAX_PAGE_SIZE).contains(&self.page_size) || !self.page_size.is_power_of_two() {
            return Err(DbError::InvalidArgument(format!("page size {}", self.page_size)));
        }
        if page.len() != self.page_size {
            return Err(DbError::InvalidArgument(format!("a page of {} bytes", page.len())));
        }
        let no = match self.free.pop() {
            Some(no) => no,
            None => {
                self.pages.push(None);
                self.is_free.push(false);
                (self.pages.len() - 1) as PageNo
            }
        };
        page::init_header(&mut page, no, kind, self.salt);
        page::seal(&mut page);
        self.pages[no as usize] = Some(Arc::new(page));
        self.is_free[no as usize] = false;
        Ok(no)
    }

    fn free(&mut self, no: PageNo) -> Result<()> {
        let i = self.live_index(no)?;
        if let Some(page) = self.pages[i].as_mut() {
            page::set_kind(&mut Arc::make_mut(page)[..], PageKind::Free);
        }
        self.is_free[i] = true;
        self.free.push(no);
        Ok(())
    }
}
