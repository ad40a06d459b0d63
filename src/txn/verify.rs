//! Online verification: on a snapshot, so it runs while the writer works.
//! Every page's checksum, the catalog and every table's B+tree invariants,
//! and the free-space maps against the pages the trees use.

use super::read::ReadTxn;
use crate::btree;
use crate::pager::{DbError, FIRST_DATA_PAGE, PageNo, PageRead, Result, freemap};
use std::collections::BTreeSet;

/// A problem found by [`ReadTxn::verify`], with its page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageProblem {
    pub page: PageNo,
    pub message: String,
}

impl std::fmt::Display for PageProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "page {}: {}", self.page, self.message)
    }
}

/// What verification found.
#[derive(Debug, Clone, Default)]
pub struct DbVerifyReport {
    /// Pages in the database.
    pub page_count: u32,
    /// Pages whose checksum was verified (every allocated page).
    pub pages_checked: u64,
    /// Tables and their entry counts.
    pub tables: Vec<(String, u64)>,
    /// Pages used by trees (catalog included), maps and headers.
    pub used_pages: u64,
    /// Pages marked free.
    pub free_pages: u64,
    pub problems: Vec<PageProblem>,
}

impl DbVerifyReport {
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Damage to report as a problem, or a failure (I/O, a stopped database)
/// that stops verification.
fn damage(e: DbError) -> Result<String> {
    match e {
        DbError::CorruptPage { reason, .. } => Ok(reason),
        DbError::Corrupt { .. } => Ok(e.to_string()),
        other => Err(other),
    }
}

impl ReadTxn<'_> {
    /// Verifies the snapshot. Damage is reported in the result; `Err` only
    /// for failures that stop verification (I/O).
    pub fn verify(&self) -> Result<DbVerifyReport> {
        let pages = self.pages();
        let ps = pages.page_size();
        let page_count = pages.page_count();
        let mut report = DbVerifyReport {
            page_count,
            ..DbVerifyReport::default()
        };
        let mut used: BTreeSet<PageNo> = (0..FIRST_DATA_PAGE).collect();
        let problem = |page: PageNo, message: String| PageProblem { page, message };
        let mut problems = Vec::new();
        // Trees: the catalog, then every table.
        let mut roots = vec![("(catalog)".to_string(), FIRST_DATA_PAGE, None)];
        match self.list_tables() {
            Ok(names) => {
                for name in names {
                    match self.open_table(&name) {
                        Ok(t) => roots.push((name, t.root(), t.values_root())),
                        Err(e) => problems.push(problem(FIRST_DATA_PAGE, format!("table {name:?}: {}", damage(e)?))),
                    }
                }
            }
            Err(e) => problems.push(problem(FIRST_DATA_PAGE, format!("catalog unreadable: {}", damage(e)?))),
        }
        for (name, root, values) in roots {
            let verified = match values {
                Some(values) => btree::verify_with_values(pages, root, values),
                None => btree::verify(pages, root),
            };
            match verified {
                Ok(tree) => {
                    for p in &tree.problems {
                        problems.push(problem(p.page, format!("table {name:?}: {}", p.message)));
                    }
                    for no in &tree.pages {
                        if !used.insert(*no) {
                            problems.push(problem(*no, format!("table {name:?} uses a page another tree uses")));
                        }
                    }
                    if name != "(catalog)" {
                        report.tables.push((name, tree.entries));
                    }
                }
                Err(e) => problems.push(problem(root, format!("table {name:?}: {}", damage(e)?))),
            }
        }
        // Free-space maps against use, and every allocated page's checksum.
        let span = freemap::span(ps);
        let mut range_start = 0u32;
        while range_start < page_count {
            let (map_no, _) = freemap::locate(range_start, ps);
            used.insert(map_no);
            let map = match pages.page(map_no) {
                Ok(m) => m,
                Err(e) => {
                    problems.push(problem(map_no, format!("free-space map unreadable: {}", damage(e)?)));
                    range_start += span;
                    continue;
                }
            };
            let limit = (page_count - range_start).min(span);
            for bit in 0..limit {
                let no = range_start + bit;
                let allocated = freemap::get(&map, bit as usize);
                let in_use = used.contains(&no) || freemap::is_map_page(no, ps);
                match (allocated, in_use) {
                    (false, true) => problems.push(problem(no, "in use but marked free".into())),
                    (true, false) => problems.push(problem(no, "marked allocated but used by nothing (leaked)".into())),
                    (false, false) => report.free_pages += 1,
                    (true, true) => {}
                }
                if allocated && no >= FIRST_DATA_PAGE {
                    report.pages_checked += 1;
                    if let Err(e) = pages.page(no) {
                        problems.push(problem(no, damage(e)?));
                    }
                }
            }
            range_start += span;
        }
        report.used_pages = used.len() as u64;
        report.problems = problems;
        Ok(report)
    }
}
