//! Long values: values stored outside the leaf, in a tree of pages of their
//! own, so any byte range is read without touching unrelated pages.
//!
//! The leaf cell holds a descriptor: `total length: u64 | root page: u32`.
//! The shape of the value's pages follows from its length alone: data pages
//! hold `D = page_size - 48` bytes each, index pages list up to `E =
//! (page_size - 48) / 4` pages of the level below. The height `h` is the
//! smallest with `D * E^h >= length`; `h = 0` means the root is the single
//! data page. Every page is full except the last one of each level.
//! (4 KiB pages: D = 4048, E = 1012; 16 KiB: D = 16336, E = 4084.)
//!
//! Both kinds share one header after the page header:
//!
//! | offset | size | field |
//! |---|---|---|
//! | 32 | 8 | offset within the value of the first byte under this page |
//! | 40 | 4 | count: bytes on a data page, entries on an index page |
//! | 44 | 1 | level: 0 for data (kind LongData), 1..=h for index (kind LongIndex) |
//! | 45 | 3 | zero |
//! | 48 | ... | data bytes, or `count` u32 page numbers of level `level - 1` |
//!
//! Every page read is checked against the position it was reached from: kind,
//! level, offset and count must be exactly what the length implies. So a page
//! fits at most one place in one value: walks never loop or visit a page twice.

use super::{Geometry, LongValue, MAX_VALUE_LEN, Value};
use crate::pager::page::{self, PageKind, PageNo, PageRef};
use crate::pager::{DbError, PageRead, PageWrite, Result};
use std::io::Read;

const OFFSET_AT: usize = 32;
const COUNT_AT: usize = 40;
const LEVEL_AT: usize = 44;
pub(super) const BODY_AT: usize = 48;

/// Where a reader's errors are reported: the `file` of [`DbError::Io`].
pub(crate) const VALUE_READER: &str = "<value reader>";

/// The page structure a value of `len` bytes has.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Shape {
    pub len: u64,
    data_cap: u64,
    fanout: u64,
    pub height: u8,
    page_size: usize,
}

impl Shape {
    /// `len` is at most [`MAX_VALUE_LEN`] (callers check), so the height is small.
    pub fn new(geo: &Geometry, len: u64) -> Shape {
        let body = (geo.page_size - BODY_AT) as u64;
        let mut shape = Shape {
            len,
            data_cap: body,
            fanout: body / 4,
            height: 0,
            page_size: geo.page_size,
        };
        while shape.span(shape.height) < len && shape.height < 8 {
            shape.height += 1;
        }
        shape
    }

    /// Bytes under one page at `level`.
    fn span(&self, level: u8) -> u64 {
        (0..level).fold(self.data_cap, |span, _| span.saturating_mul(self.fanout))
    }

    /// The count field of the page at `level` whose bytes start at `start`.
    fn count(&self, level: u8, start: u64) -> u64 {
        let left = self.len.saturating_sub(start);
        if level == 0 {
            left.min(self.data_cap)
        } else {
            left.min(self.span(level)).div_ceil(self.span(level - 1))
        }
    }

    fn page_offset(&self, no: PageNo, at: usize) -> u64 {
        u64::from(no) * self.page_size as u64 + at as u64
    }
}

fn field_u64(page: &[u8], at: usize) -> u64 {
    page.get(at..at + 8)
        .and_then(|b| b.try_into().ok())
        .map_or(u64::MAX, u64::from_le_bytes)
}

fn field_u32(page: &[u8], at: usize) -> u32 {
    page.get(at..at + 4)
        .and_then(|b| b.try_into().ok())
        .map_or(u32::MAX, u32::from_le_bytes)
}

/// Values longer than this many pages have their data pages read around the
/// cache.
const IN_PASSING_PAGES: u64 = 4;

/// Reads page `no`, expected at `level` covering bytes from `start`, and
/// checks every header field against that position.
pub(crate) fn read_page<S: PageRead + ?Sized>(
    store: &S,
    shape: &Shape,
    no: PageNo,
    level: u8,
    start: u64,
) -> Result<PageRef> {
    let bad =
        |at: usize, reason: String| DbError::corrupt_page(store.file_path(), no, shape.page_offset(no, at), reason);
    // The data pages of a value longer than a few pages are read once in
    // passing (a message body is mostly fetched once); index pages and the
    // pages of short values stay cached.
    let page = if level == 0 && shape.len > IN_PASSING_PAGES * shape.page_size as u64 {
        store.page_in_passing(no)?
    } else {
        store.page(no)?
    };
    if page.len() != shape.page_size {
        return Err(bad(
            0,
            format!("page of {} bytes, expected {}", page.len(), shape.page_size),
        ));
    }
    let want = if level == 0 {
        PageKind::LongData
    } else {
        PageKind::LongIndex
    };
    if page::page_kind(&page) != Some(want) {
        return Err(bad(
            16,
            format!("page kind {} where a long value's {want:?} page belongs", page[16]),
        ));
    }
    let (offset, count, found_level) = (field_u64(&page, OFFSET_AT), field_u32(&page, COUNT_AT), page[LEVEL_AT]);
    if found_level != level || offset != start {
        return Err(bad(
            OFFSET_AT,
            format!(
                "page is at level {found_level} from value byte {offset}, expected level {level} from byte {start}"
            ),
        ));
    }
    let expected = shape.count(level, start);
    if u64::from(count) != expected {
        return Err(bad(
            COUNT_AT,
            format!("count {count}, expected {expected} for a value of {}", shape.len),
        ));
    }
    Ok(page)
}

/// Entry `i` of an index page checked by [`read_page`].
pub(crate) fn entry<S: PageRead + ?Sized>(
    store: &S,
    shape: &Shape,
    page: &[u8],
    no: PageNo,
    i: usize,
) -> Result<PageNo> {
    match field_u32(page, BODY_AT + 4 * i) {
        0 | u32::MAX => Err(DbError::corrupt_page(
            store.file_path(),
            no,
            shape.page_offset(no, BODY_AT + 4 * i),
            format!("index entry {i} is not a page"),
        )),
        child => Ok(child),
    }
}

/// The children of an index page checked by [`read_page`], with the offset
/// of each one's first byte.
pub(crate) fn children<S: PageRead + ?Sized>(
    store: &S,
    shape: &Shape,
    page: &[u8],
    no: PageNo,
    level: u8,
    start: u64,
) -> Result<Vec<(PageNo, u64)>> {
    let span = shape.span(level - 1);
    let count = field_u32(page, COUNT_AT) as usize;
    (0..count)
        .map(|i| Ok((entry(store, shape, page, no, i)?, start + i as u64 * span)))
        .collect()
}

/// Checks a descriptor read from a leaf: a long value is never empty.
pub(crate) fn check_descriptor(len: u64, root: PageNo) -> std::result::Result<LongValue, String> {
    if len == 0 || len > MAX_VALUE_LEN || root == 0 {
        return Err(format!("long value descriptor of {len} bytes at page {root}"));
    }
    Ok(LongValue { len, root })
}

/// Reads bytes of a long value from `offset` into `buf`; returns how many
/// (fewer than `buf.len()` only at the end of the value; 0 past it).
pub fn read_long<S: PageRead + ?Sized>(store: &S, value: &LongValue, offset: u64, buf: &mut [u8]) -> Result<usize> {
    let geo = Geometry::checked(store.page_size())?;
    if offset >= value.len {
        return Ok(0);
    }
    let shape = Shape::new(&geo, value.len);
    let n = (value.len - offset).min(buf.len() as u64) as usize;
    let mut done = 0;
    while done < n {
        let pos = offset + done as u64;
        let (page, start) = find_data_page(store, &shape, value.root, pos)?;
        // read_page checked that the page holds count bytes from `start`,
        // and pos lies in [start, start + count).
        let in_page = (pos - start) as usize;
        let count = shape.count(0, start) as usize;
        let take = (count - in_page).min(n - done);
        buf[done..done + take].copy_from_slice(&page[BODY_AT + in_page..BODY_AT + in_page + take]);
        done += take;
    }
    Ok(n)
}

/// The data page holding byte `pos` (below the value's length), and its start.
fn find_data_page<S: PageRead + ?Sized>(store: &S, shape: &Shape, root: PageNo, pos: u64) -> Result<(PageRef, u64)> {
    let (mut no, mut level, mut start) = (root, shape.height, 0u64);
    loop {
        let page = read_page(store, shape, no, level, start)?;
        if level == 0 {
            return Ok((page, start));
        }
        let span = shape.span(level - 1);
        // pos < start + span(level) and the count covers every child up to len.
        let i = (pos - start) / span;
        no = entry(store, shape, &page, no, i as usize)?;
        start += i * span;
        level -= 1;
    }
}

/// The whole value: inline bytes, or a long value read page by page.
pub fn read_value<S: PageRead + ?Sized>(store: &S, value: &Value) -> Result<Vec<u8>> {
    match value {
        Value::Inline(bytes) => Ok(bytes.clone()),
        Value::Long(long) => {
            // Grow as pages are read: a damaged length never allocates ahead.
            let mut out = Vec::with_capacity(long.len.min(1 << 20) as usize);
            let chunk = store.page_size();
            while (out.len() as u64) < long.len {
                let done = out.len();
                let take = (long.len - done as u64).min(chunk as u64) as usize;
                out.resize(done + take, 0);
                read_long(store, long, done as u64, &mut out[done..])?;
            }
            Ok(out)
        }
    }
}

/// Writes `len` bytes from `reader` as a long value; returns its root. On any
/// error every page written so far is freed again.
pub(crate) fn write_long<S: PageWrite + ?Sized>(
    store: &mut S,
    geo: &Geometry,
    reader: &mut dyn Read,
    len: u64,
) -> Result<PageNo> {
    write_with(store, geo, len, |store, pos, take| {
        let no = store.allocate(PageKind::LongData)?;
        let filled = store.page_mut(no).and_then(|page| {
            write_header(page, pos, take as u32, 0);
            reader
                .read_exact(&mut page[BODY_AT..BODY_AT + take])
                .map_err(|e| DbError::io(VALUE_READER, pos, "read value", e))
        });
        match filled {
            Ok(()) => Ok(no),
            Err(e) => {
                // Not yet listed anywhere: freed here, not by the caller.
                let _ = store.free(no);
                Err(e)
            }
        }
    })
}

/// Writes a long value of `len` bytes whose data page for bytes `pos..pos +
/// take` `data_page` stores and numbers; builds the index pages above them.
/// On any error every page written so far is freed again.
pub(super) fn write_with<S, F>(store: &mut S, geo: &Geometry, len: u64, mut data_page: F) -> Result<PageNo>
where
    S: PageWrite + ?Sized,
    F: FnMut(&mut S, u64, usize) -> Result<PageNo>,
{
    let shape = Shape::new(geo, len);
    let mut pending = Pending {
        pages: vec![Vec::new(); usize::from(shape.height) + 1],
        starts: vec![0; usize::from(shape.height) + 1],
    };
    let written = write_pages(store, &shape, &mut data_page, &mut pending);
    if written.is_err() {
        for (level, pages) in pending.pages.iter().enumerate() {
            for (i, &no) in pages.iter().enumerate() {
                let start = pending.starts[level] + i as u64 * shape.span(level as u8);
                // Best effort: the first error is the one reported.
                let _ = free_pages(store, &shape, no, level as u8, start);
            }
        }
    }
    written
}

/// Finished pages of each level not yet listed by a parent, and the offset
/// of the first one of each level.
struct Pending {
    pages: Vec<Vec<PageNo>>,
    starts: Vec<u64>,
}

fn write_pages<S, F>(store: &mut S, shape: &Shape, data_page: &mut F, pending: &mut Pending) -> Result<PageNo>
where
    S: PageWrite + ?Sized,
    F: FnMut(&mut S, u64, usize) -> Result<PageNo>,
{
    let mut pos = 0u64;
    while pos < shape.len {
        let take = shape.count(0, pos) as usize;
        let no = data_page(store, pos, take)?;
        push(pending, 0, no, pos);
        pos += take as u64;
        for level in 0..shape.height {
            let full = pending.pages[usize::from(level)].len() as u64 == shape.fanout;
            if full || pos == shape.len {
                write_index(store, pending, level + 1)?;
            }
        }
    }
    let root = pending.pages[usize::from(shape.height)].first().copied();
    // The height makes everything fit under one page at the top level.
    root.ok_or_else(|| DbError::InvalidArgument(format!("cannot store a value of {} bytes", shape.len)))
}

fn push(pending: &mut Pending, level: usize, no: PageNo, start: u64) {
    if pending.pages[level].is_empty() {
        pending.starts[level] = start;
    }
    pending.pages[level].push(no);
}

/// Writes the index page at `level` listing the pending pages of the level below.
fn write_index<S: PageWrite + ?Sized>(store: &mut S, pending: &mut Pending, level: u8) -> Result<()> {
    let below = usize::from(level - 1);
    if pending.pages[below].is_empty() {
        return Ok(());
    }
    let start = pending.starts[below];
    let no = store.allocate(PageKind::LongIndex)?;
    let entries = &pending.pages[below];
    match store.page_mut(no) {
        Ok(page) => {
            write_header(page, start, entries.len() as u32, level);
            for (i, child) in entries.iter().enumerate() {
                page[BODY_AT + 4 * i..BODY_AT + 4 * i + 4].copy_from_slice(&child.to_le_bytes());
            }
        }
        Err(e) => {
            let _ = store.free(no);
            return Err(e);
        }
    }
    pending.pages[below].clear();
    push(pending, usize::from(level), no, start);
    Ok(())
}

pub(super) fn write_header(page: &mut [u8], offset: u64, count: u32, level: u8) {
    page[OFFSET_AT..OFFSET_AT + 8].copy_from_slice(&offset.to_le_bytes());
    page[COUNT_AT..COUNT_AT + 4].copy_from_slice(&count.to_le_bytes());
    page[LEVEL_AT..BODY_AT].fill(0);
    page[LEVEL_AT] = level;
}

/// Frees every page of a long value.
pub(crate) fn free_long<S: PageWrite + ?Sized>(store: &mut S, geo: &Geometry, value: &LongValue) -> Result<()> {
    let shape = Shape::new(geo, value.len);
    free_pages(store, &shape, value.root, shape.height, 0)
}

/// Frees page `no` (at `level`, from byte `start`) and every page under it.
fn free_pages<S: PageWrite + ?Sized>(store: &mut S, shape: &Shape, no: PageNo, level: u8, start: u64) -> Result<()> {
    // Depth-first with an explicit stack: at most height * fanout entries.
    let mut stack = vec![(no, level, start)];
    while let Some((no, level, start)) = stack.pop() {
        if level > 0 {
            let page = read_page(store, shape, no, level, start)?;
            for (child, child_start) in children(store, shape, &page, no, level, start)? {
                stack.push((child, level - 1, child_start));
            }
        } else {
            read_page(store, shape, no, 0, start)?;
        }
        store.free(no)?;
    }
    Ok(())
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::btree::MemStore;

    /// Bytes that differ from page to page and from value to value.
    pub(in crate::btree) fn pattern(len: usize, seed: u8) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed ^ (i >> 12) as u8))
            .collect()
    }

    #[test]
    fn shapes_follow_the_length() {
        let geo = Geometry::checked(4096).unwrap();
        assert_eq!(Shape::new(&geo, 1).height, 0);
        assert_eq!(Shape::new(&geo, 4048).height, 0);
        assert_eq!(Shape::new(&geo, 4049).height, 1);
        assert_eq!(Shape::new(&geo, 4048 * 1012).height, 1);
        assert_eq!(Shape::new(&geo, 4048 * 1012 + 1).height, 2);
        assert_eq!(Shape::new(&geo, MAX_VALUE_LEN).height, 3);
        let shape = Shape::new(&geo, 4048 * 1012 + 1);
        assert_eq!(shape.count(2, 0), 2);
        assert_eq!(shape.count(1, 4048 * 1012), 1);
        assert_eq!(shape.count(0, 4048 * 1012), 1);
    }

    #[test]
    fn write_read_ranges_and_free() {
        let mut store = MemStore::new(4096);
        let geo = Geometry::checked(4096).unwrap();
        for (len, pages) in [
            (1usize, 1),
            (4048, 1),
            (4049, 3),
            (4048 * 1012 + 5000, 1 + 2 + 1012 + 2),
        ] {
            let data = pattern(len, len as u8);
            let root = write_long(&mut store, &geo, &mut &data[..], len as u64).unwrap();
            assert_eq!(store.live_pages(), pages, "len {len}");
            let value = LongValue { len: len as u64, root };
            assert_eq!(read_value(&store, &Value::Long(value)).unwrap(), data);
            for (off, n) in [(0, 10), (len / 2, 9000), (len.saturating_sub(3), 10), (4047, 2)] {
                let mut buf = vec![0u8; n];
                let got = read_long(&store, &value, off as u64, &mut buf).unwrap();
                let want = &data[off.min(len)..(off + n).min(len)];
                assert_eq!(&buf[..got], want, "len {len} off {off}");
            }
            free_long(&mut store, &geo, &value).unwrap();
            assert_eq!(store.live_pages(), 0);
        }
    }

    #[test]
    fn reader_errors_free_every_page() {
        let mut store = MemStore::new(4096);
        let geo = Geometry::checked(4096).unwrap();
        let data = pattern(4048 * 1012 + 100, 1);
        let short = &data[..4048 * 1012 + 50];
        let err = write_long(&mut store, &geo, &mut &short[..], data.len() as u64).unwrap_err();
        assert!(matches!(err, DbError::Io { .. }), "{err}");
        assert_eq!(store.live_pages(), 0);
        let err = write_long(&mut store, &geo, &mut &data[..5000], data.len() as u64).unwrap_err();
        assert!(err.to_string().contains(VALUE_READER), "{err}");
        assert_eq!(store.live_pages(), 0);
    }
}
