//! Page-by-page comparison of two copies of a database (the active's and a
//! passive's, or two passives'), to prove them identical.

use super::error::Result;
use crate::log::Lsn;
use crate::pager::header::read_best;
use crate::pager::{DbError, data_path};
use crate::vfs::{OpenMode, SharedVfs};
use std::path::Path;

/// What a comparison found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Comparison {
    /// Pages compared (2 to the larger page count; the header pages differ
    /// by design: each copy keeps its own sequence and slot).
    pub pages: u32,
    /// Pages whose bytes differ.
    pub differing: Vec<u32>,
    /// Each side's page count, header LSNs (redo point, newest change) and
    /// database signature.
    pub page_counts: (u32, u32),
    pub redo: (Lsn, Lsn),
    pub required: (Lsn, Lsn),
    pub same_database: bool,
}

impl Comparison {
    /// Same database, same pages.
    pub fn identical(&self) -> bool {
        self.same_database && self.differing.is_empty() && self.page_counts.0 == self.page_counts.1
    }
}

/// Compares the data files of the stores in `a` and `b`, which must both be
/// at rest or checkpointed at the same LSN.
pub fn compare(vfs: &SharedVfs, a: &Path, b: &Path) -> Result<Comparison> {
    let (pa, pb) = (data_path(a), data_path(b));
    let fa = vfs
        .open(&pa, OpenMode::Existing)
        .map_err(|e| DbError::io(&pa, 0, "open", e))?;
    let fb = vfs
        .open(&pb, OpenMode::Existing)
        .map_err(|e| DbError::io(&pb, 0, "open", e))?;
    let (ha, _) = read_best(fa.as_ref(), &pa)?;
    let (hb, _) = read_best(fb.as_ref(), &pb)?;
    let ps = ha.page_size as usize;
    let mut out = Comparison {
        pages: 0,
        differing: Vec::new(),
        page_counts: (ha.page_count, hb.page_count),
        redo: (ha.redo_lsn, hb.redo_lsn),
        required: (ha.required_lsn, hb.required_lsn),
        same_database: ha.signature == hb.signature && ha.page_size == hb.page_size,
    };
    if !out.same_database {
        return Ok(out);
    }
    let count = ha.page_count.max(hb.page_count);
    let (mut x, mut y) = (vec![0u8; ps], vec![0u8; ps]);
    for no in 2..count {
        let at = u64::from(no) * ps as u64;
        x.fill(0);
        y.fill(0);
        // A page beyond a file's end reads as zeros.
        read_up_to(fa.as_ref(), &mut x, at).map_err(|e| DbError::io(&pa, at, "read", e))?;
        read_up_to(fb.as_ref(), &mut y, at).map_err(|e| DbError::io(&pb, at, "read", e))?;
        if x != y {
            out.differing.push(no);
        }
        out.pages += 1;
    }
    Ok(out)
}

fn read_up_to(file: &dyn crate::vfs::VfsFile, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        let n = file.read_at(&mut buf[done..], offset + done as u64)?;
        if n == 0 {
            break;
        }
        done += n;
    }
    Ok(done)
}
