//! Values gathered ahead of their transaction. A value that outgrows one
//! data page is laid out as it will be stored, in the data pages of a long
//! value (`long`), so that storing it takes those pages over instead of
//! copying its bytes under the writer lock, and the caller never holds it
//! in one growing allocation.

use super::long::{self, BODY_AT};
use super::tree::{Role, check_key, check_len, put_in, put_long};
use super::{Geometry, MAX_VALUE_LEN};
use crate::pager::page::PageKind;
use crate::pager::{DbError, PageBuf, PageNo, PageWrite, Result};

/// A value built up by appending, then stored with [`put_built`].
#[derive(Clone)]
pub struct ValueBuilder {
    page_size: usize,
    len: u64,
    /// The bytes while they fit one data page.
    head: Vec<u8>,
    /// Once they do not: every data page, full but the last, bytes from
    /// `BODY_AT`, headers not yet written.
    pages: Vec<PageBuf>,
}

impl std::fmt::Debug for ValueBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ValueBuilder")
            .field("page_size", &self.page_size)
            .field("len", &self.len)
            .field("pages", &self.pages.len())
            .finish()
    }
}

impl ValueBuilder {
    /// An empty value for a database of `page_size`-byte pages.
    pub fn new(page_size: usize) -> Result<ValueBuilder> {
        Geometry::checked(page_size)?;
        Ok(ValueBuilder {
            page_size,
            len: 0,
            head: Vec::new(),
            pages: Vec::new(),
        })
    }

    /// The page size it lays its pages out for.
    pub fn page_size(&self) -> usize {
        self.page_size
    }

    /// Bytes appended so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether nothing was appended.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn data_cap(&self) -> usize {
        self.page_size - BODY_AT
    }

    /// Appends `bytes`; a value may not grow past [`MAX_VALUE_LEN`].
    pub fn extend_from_slice(&mut self, bytes: &[u8]) -> Result<()> {
        let len = self.len.saturating_add(bytes.len() as u64);
        check_len(len)?;
        let cap = self.data_cap();
        if self.pages.is_empty() {
            if self.head.len() + bytes.len() <= cap {
                self.head.extend_from_slice(bytes);
                self.len = len;
                return Ok(());
            }
            let mut first = PageBuf::zeroed(self.page_size);
            first[BODY_AT..BODY_AT + self.head.len()].copy_from_slice(&self.head);
            self.pages.push(first);
            self.head = Vec::new();
        }
        let mut rest = bytes;
        while !rest.is_empty() {
            // Full pages before the last one: the last holds the remainder.
            let filled = (self.len - (self.pages.len() as u64 - 1) * cap as u64) as usize;
            if filled == cap {
                self.pages.push(PageBuf::zeroed(self.page_size));
                continue;
            }
            let n = rest.len().min(cap - filled);
            // `pages` is not empty here: the first page was pushed above.
            let page = self.pages.last_mut().expect("a page to fill");
            page[BODY_AT + filled..BODY_AT + filled + n].copy_from_slice(&rest[..n]);
            self.len += n as u64;
            rest = &rest[n..];
        }
        Ok(())
    }

    /// The bytes, copied out.
    pub fn to_vec(&self) -> Vec<u8> {
        if self.pages.is_empty() {
            return self.head.clone();
        }
        let cap = self.data_cap() as u64;
        let mut out = Vec::with_capacity(self.len as usize);
        for (i, page) in self.pages.iter().enumerate() {
            let n = (self.len - i as u64 * cap).min(cap) as usize;
            out.extend_from_slice(&page[BODY_AT..BODY_AT + n]);
        }
        out
    }
}

/// Stores `value` under `key`, as [`put`] would store its bytes (the pages
/// are the same, byte for byte). Returns whether a value was replaced.
pub fn put_built<S: PageWrite + ?Sized>(store: &mut S, root: PageNo, key: &[u8], value: ValueBuilder) -> Result<bool> {
    put_built_in(store, root, key, value, Role::Table(None))
}

/// [`put_built`] in a tree of the given role; a short value goes as
/// [`put_separating`](super::put_separating) would put it when the table
/// has a values tree.
pub(crate) fn put_built_in<S: PageWrite + ?Sized>(
    store: &mut S,
    root: PageNo,
    key: &[u8],
    value: ValueBuilder,
    role: Role,
) -> Result<bool> {
    let geo = Geometry::checked(store.page_size())?;
    if value.page_size != geo.page_size {
        return Err(DbError::InvalidArgument(format!(
            "a value built for {}-byte pages stored in a database of {}-byte pages",
            value.page_size, geo.page_size
        )));
    }
    if value.pages.is_empty() {
        return match role {
            Role::Table(Some(values)) => super::put_separating(store, root, values, key, &value.head),
            _ => put_in(store, root, key, &value.head, role),
        };
    }
    check_key(&geo, key)?;
    debug_assert!(value.len <= MAX_VALUE_LEN);
    let len = value.len;
    let mut pages = value.pages.into_iter();
    put_long(store, &geo, root, key, len, role, |store, geo| {
        long::write_with(store, geo, len, |store, pos, take| {
            // The builder filled exactly the data pages the length implies.
            let mut page = pages
                .next()
                .ok_or_else(|| DbError::InvalidArgument(format!("a built value of {len} bytes lacks a page")))?;
            long::write_header(&mut page, pos, take as u32, 0);
            store.allocate_filled(PageKind::LongData, page)
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::btree::long::tests::pattern;
    use crate::btree::{MemStore, create, get_bytes, put};

    /// Every page of `store`, as bytes.
    fn images(store: &MemStore) -> Vec<Vec<u8>> {
        (0..store.live_pages() as u32 + 8)
            .filter_map(|no| crate::pager::PageRead::page(store, no).ok().map(|p| p.to_vec()))
            .collect()
    }

    #[test]
    fn built_values_are_stored_in_the_same_pages_as_their_bytes() {
        for page_size in [4096usize, 16384] {
            let cap = page_size - BODY_AT;
            let fanout = cap / 4;
            let mut lens = vec![0, 1, 100, cap / 4, cap - 1, cap, cap + 1, 2 * cap, 3 * cap + 7];
            // Where the value's tree gains a level.
            lens.extend([cap * fanout - 1, cap * fanout, cap * fanout + 1]);
            for len in lens {
                let data = pattern(len, len as u8);
                // Appended in uneven pieces, across page ends.
                let mut built = ValueBuilder::new(page_size).unwrap();
                for piece in data.chunks(1 + len / 7 + (len % 13)) {
                    built.extend_from_slice(piece).unwrap();
                }
                assert_eq!(built.len(), len as u64);
                assert_eq!(built.to_vec(), data, "len {len}");
                let (mut by_bytes, mut by_pages) = (MemStore::new(page_size), MemStore::new(page_size));
                let (r1, r2) = (create(&mut by_bytes).unwrap(), create(&mut by_pages).unwrap());
                assert!(!put(&mut by_bytes, r1, b"k", &data).unwrap());
                assert!(!put_built(&mut by_pages, r2, b"k", built).unwrap());
                assert_eq!(get_bytes(&by_pages, r2, b"k").unwrap().unwrap(), data, "len {len}");
                // Checksums as the pager would write them.
                by_bytes.seal_all();
                by_pages.seal_all();
                by_pages.verify_pages().unwrap();
                let (a, b) = (images(&by_bytes), images(&by_pages));
                assert_eq!(a.len(), b.len(), "page size {page_size}, len {len}");
                for (no, (x, y)) in a.iter().zip(&b).enumerate() {
                    let at = x.iter().zip(y).position(|(p, q)| p != q);
                    assert_eq!(at, None, "page size {page_size}, len {len}: page {no} differs");
                }
            }
        }
    }

    #[test]
    fn a_value_built_for_another_page_size_is_refused_and_nothing_changes() {
        let mut store = MemStore::new(4096);
        let root = create(&mut store).unwrap();
        let mut built = ValueBuilder::new(16384).unwrap();
        built.extend_from_slice(&pattern(40_000, 3)).unwrap();
        let before = images(&store);
        let err = put_built(&mut store, root, b"k", built).unwrap_err();
        assert!(matches!(err, DbError::InvalidArgument(_)), "{err}");
        assert!(images(&store) == before, "the store changed");
        assert!(matches!(ValueBuilder::new(1000), Err(DbError::InvalidArgument(_))));
    }

    #[test]
    fn a_refused_key_leaves_no_pages_behind() {
        let mut store = MemStore::new(4096);
        let root = create(&mut store).unwrap();
        let mut built = ValueBuilder::new(4096).unwrap();
        built.extend_from_slice(&pattern(20_000, 5)).unwrap();
        let live = store.live_pages();
        // A key longer than any leaf takes.
        let err = put_built(&mut store, root, &[7u8; 5000], built).unwrap_err();
        assert!(matches!(err, DbError::KeyTooLarge { .. }), "{err}");
        assert_eq!(store.live_pages(), live);
    }
}
