//! The page-store traits the B+tree is written against. A read transaction
//! implements [`PageRead`] over its snapshot; a write transaction implements
//! [`PageWrite`] over private copies of the pages it changes.

use super::Result;
use super::page::{PageBuf, PageKind, PageNo, PageRef};
use std::path::Path;

/// Read access to one consistent state of the database.
pub trait PageRead {
    /// Page size in bytes.
    fn page_size(&self) -> usize;
    /// The database file, for error messages.
    fn file_path(&self) -> &Path;
    /// The page's bytes, header included, verified.
    fn page(&self, no: PageNo) -> Result<PageRef>;
    /// [`PageRead::page`] for a page read once in passing, as the data of
    /// a long value is: a store may leave it out of its cache.
    fn page_in_passing(&self, no: PageNo) -> Result<PageRef> {
        self.page(no)
    }
}

/// Write access within one write transaction.
pub trait PageWrite: PageRead {
    /// The transaction's private, writable copy of page `no` (copied on the
    /// first call). The header's number, kind and salt are kept; the caller
    /// owns the body (bytes from `PAGE_HEADER_LEN`) and may change the kind
    /// with [`super::page::set_kind`].
    fn page_mut(&mut self, no: PageNo) -> Result<&mut [u8]>;
    /// A new page of `kind`, body zeroed.
    fn allocate(&mut self, kind: PageKind) -> Result<PageNo>;
    /// A new page of `kind` whose body is `page`'s, taken without a copy
    /// (its header is set here). `page` must be one page long.
    fn allocate_filled(&mut self, kind: PageKind, page: PageBuf) -> Result<PageNo>;
    /// Returns a page to free space (reusable after this transaction commits).
    fn free(&mut self, no: PageNo) -> Result<()>;
}
