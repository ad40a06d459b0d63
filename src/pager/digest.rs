//! The whole-database digest. Every Nth checkpoint the active flags its
//! marker, writes its pages as usual (the data file then holds exactly the
//! committed state as of the marker: no-steal), hashes pages 2..page count
//! of the file and logs the group hashes and their root (record kind 4). A
//! passive copy hashes its own state (file plus pages changed in memory)
//! when it replays the flagged marker, and compares when the digest
//! arrives. The header pages 0 and 1 differ between copies by design and
//! are left out. DESIGN.md ("Log records") has the layout.
//!
//! Leaves are the crc32c of each page's bytes 4.. (what the kind-3 digest
//! lists); a group of `GROUP_PAGES` leaves is hashed with SHA-256 and
//! truncated to 16 bytes; the root is SHA-256 over the page count, the
//! group size and every group hash. Every group hash is logged, so a
//! mismatch names its pages without more round trips: a deeper tree would
//! only shorten a record nobody ships separately.

use super::file::DbFile;
use super::header::read_full;
use super::page::{self, PageNo};
use super::redo::{GROUP_HASH_LEN, WHOLE_DIGEST_HEADER, WholeDigest, group_count};
use super::replay::RedoSet;
use super::{DbError, Result};
use crate::log::Lsn;
use sha2::{Digest, Sha256};
use std::path::Path;

/// Pages per group: a mismatch names 64 pages (1 MiB of 16 KiB pages),
/// and the digest of a 16 GiB database is about 16 KiB of log.
pub const GROUP_PAGES: u32 = 64;
/// The first page digested: 0 and 1 are the header copies.
const FIRST_PAGE: PageNo = 2;
/// Bytes read from the file at a time.
const READ_CHUNK: usize = 1 << 20;
/// Most pages below the page count that neither the file nor the pages in
/// memory hold (allocated, never logged): more means a hostile page count,
/// which must not make a copy hash (and allocate for) billions of pages.
const MAX_UNBACKED: u64 = 1 << 16;

type GroupHash = [u8; GROUP_HASH_LEN];

/// The group hashes of a database state as of a checkpoint marker.
pub(super) struct StateDigest {
    pub marker: Lsn,
    pub page_count: u32,
    pub groups: Vec<GroupHash>,
    /// Groups (sorted) holding a page changed after the marker: a copy seeded
    /// from a live file, or reopened after a spill, is partly ahead of the
    /// log it replays until it passes that point. Not comparable.
    pub ahead: Vec<u32>,
}

impl StateDigest {
    pub fn root(&self) -> [u8; 32] {
        root(self.page_count, GROUP_PAGES, &self.groups)
    }

    /// The records that log this digest, each at most `max_record` bytes.
    pub fn records(&self, max_record: usize) -> Vec<WholeDigest> {
        let per = (max_record.saturating_sub(WHOLE_DIGEST_HEADER) / GROUP_HASH_LEN).max(1);
        let root = self.root();
        let part = |first: usize, groups: &[GroupHash]| WholeDigest {
            marker: self.marker,
            page_count: self.page_count,
            group_pages: GROUP_PAGES,
            root,
            // Group indexes fit u32: there are fewer groups than pages.
            first_group: first as u32,
            groups: groups.to_vec(),
        };
        if self.groups.is_empty() {
            return vec![part(0, &[])];
        }
        self.groups
            .chunks(per)
            .enumerate()
            .map(|(i, groups)| part(i * per, groups))
            .collect()
    }
}

/// The root over `groups` of a database of `page_count` pages.
pub fn root(page_count: u32, group_pages: u32, groups: &[GroupHash]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"mailvault whole digest 1");
    h.update(page_count.to_le_bytes());
    h.update(group_pages.to_le_bytes());
    for g in groups {
        h.update(g);
    }
    h.finalize().into()
}

/// Pages `start..end` of group `g`.
pub fn group_pages(g: u32, page_count: u32) -> (PageNo, PageNo) {
    let start = FIRST_PAGE.saturating_add(g.saturating_mul(GROUP_PAGES));
    (start, start.saturating_add(GROUP_PAGES).min(page_count))
}

/// Hashes pages 2..`page_count` of `file`, taking each page `overlay`
/// holds whole from there; a page past the file's end reads as zeros.
pub(super) fn scan(file: &DbFile, page_count: u32, marker: Lsn, overlay: Option<&RedoSet>) -> Result<StateDigest> {
    let ps = file.page_size;
    let file_pages = file.file.len().map_err(|e| DbError::io(&file.path, 0, "stat", e))? / ps as u64;
    let per_read = (READ_CHUNK / ps).max(1) as u32;
    let mut buf = vec![0u8; per_read as usize * ps];
    let mut out = StateDigest {
        marker,
        page_count,
        groups: Vec::new(),
        ahead: Vec::new(),
    };
    let (mut hasher, mut in_group, mut ahead, mut unbacked) = (Sha256::new(), 0, false, 0u64);
    let mut no = FIRST_PAGE;
    while no < page_count {
        let n = per_read.min(page_count - no);
        let bytes = &mut buf[..n as usize * ps];
        let got = if u64::from(no) < file_pages {
            read_full(file.file.as_ref(), bytes, file.offset(no), &file.path)?
        } else {
            0
        };
        bytes[got..].fill(0);
        for (i, from_file) in bytes.chunks(ps).enumerate() {
            let p = no + i as u32;
            let page = match overlay.and_then(|o| o.whole_page(p)) {
                Some(page) => page,
                None => {
                    if u64::from(p) >= file_pages {
                        unbacked += 1;
                        if unbacked > MAX_UNBACKED {
                            return Err(DbError::corrupt(
                                &file.path,
                                file.offset(p),
                                format!("page count {page_count} at {marker}, but the file ends at page {file_pages}"),
                            ));
                        }
                    }
                    from_file
                }
            };
            ahead |= page::page_lsn(page) > marker;
            hasher.update(crc32c::crc32c(&page[4..]).to_le_bytes());
            in_group += 1;
            if in_group == GROUP_PAGES || p + 1 == page_count {
                let full = std::mem::take(&mut hasher).finalize();
                let mut g = [0u8; GROUP_HASH_LEN];
                g.copy_from_slice(&full[..GROUP_HASH_LEN]);
                if std::mem::take(&mut ahead) {
                    out.ahead.push(out.groups.len() as u32);
                }
                out.groups.push(g);
                in_group = 0;
            }
        }
        no += n;
    }
    Ok(out)
}

/// A passive copy's side: the state hashed at the last flagged marker,
/// compared part by part as the digest records arrive.
#[derive(Default)]
pub(super) struct Verifier {
    pending: Option<Pending>,
    /// Whole digests that matched.
    pub verified: u64,
    /// Whole digests that could not be compared (state ahead of the marker,
    /// marker replayed before this copy opened, another group size).
    pub skipped: u64,
}

struct Pending {
    state: StateDigest,
    root: [u8; 32],
    /// Groups compared so far (parts arrive in order).
    checked: u32,
}

impl Verifier {
    /// Hashes the copy's state at the flagged marker `marker`.
    pub fn at_marker(&mut self, file: &DbFile, pages: &RedoSet, page_count: u32, marker: Lsn) -> Result<()> {
        // A digest announced earlier that never came (the active crashed) is dropped.
        self.pending = None;
        let state = scan(file, page_count, marker, Some(pages))?;
        let root = state.root();
        self.pending = Some(Pending {
            state,
            root,
            checked: 0,
        });
        Ok(())
    }

    /// Compares a part of the active's digest, logged at `at`.
    pub fn check(&mut self, path: &Path, d: &WholeDigest, at: Lsn) -> Result<()> {
        let Some(p) = self.pending.as_mut().filter(|p| p.state.marker == d.marker) else {
            if d.first_group == 0 {
                self.skipped += 1;
            }
            return Ok(());
        };
        if d.group_pages != GROUP_PAGES || d.first_group != p.checked {
            tracing::warn!(marker = %d.marker, group_pages = d.group_pages, first_group = d.first_group,
                "whole digest not comparable: another group size, or a part missing");
            self.pending = None;
            self.skipped += 1;
            return Ok(());
        }
        let diverged = |pages: Vec<(PageNo, PageNo)>, reason: String| DbError::Diverged {
            file: path.to_path_buf(),
            marker: d.marker,
            digest: at,
            pages,
            reason,
        };
        let ours = p.state.page_count;
        if d.page_count != ours {
            if !p.state.ahead.is_empty() {
                self.pending = None;
                self.skipped += 1;
                return Ok(());
            }
            let span = (ours.min(d.page_count), ours.max(d.page_count));
            return Err(diverged(
                vec![span],
                format!("the active had {} pages, this copy {ours}", d.page_count),
            ));
        }
        let mut ranges: Vec<(PageNo, PageNo)> = Vec::new();
        for (i, theirs) in d.groups.iter().enumerate() {
            // Below the group count: the decoder checked first + n against it.
            let g = d.first_group + i as u32;
            if p.state.groups.get(g as usize) == Some(theirs) || p.state.ahead.binary_search(&g).is_ok() {
                continue;
            }
            let (start, end) = group_pages(g, ours);
            match ranges.last_mut() {
                Some(last) if last.1 == start => last.1 = end,
                _ => ranges.push((start, end)),
            }
        }
        if !ranges.is_empty() {
            return Err(diverged(ranges, "their page checksums differ from the active's".into()));
        }
        p.checked += d.groups.len() as u32;
        if p.checked < group_count(ours, GROUP_PAGES) {
            return Ok(());
        }
        let (ahead, root) = (!p.state.ahead.is_empty(), p.root);
        self.pending = None;
        if ahead {
            self.skipped += 1;
        } else if d.root != root {
            return Err(diverged(Vec::new(), "every group matches but the root differs".into()));
        } else {
            self.verified += 1;
        }
        Ok(())
    }
}

/// Formats page ranges `start..end` for an error.
pub(super) fn fmt_ranges(pages: &[(PageNo, PageNo)]) -> String {
    if pages.is_empty() {
        return "the pages".into();
    }
    let parts: Vec<String> = pages.iter().map(|(s, e)| format!("{s}..{e}")).collect();
    format!("pages {}", parts.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pager::redo::DbRecord;

    fn state(page_count: u32) -> StateDigest {
        let n = group_count(page_count, GROUP_PAGES);
        StateDigest {
            marker: Lsn::new(3, 512),
            page_count,
            groups: (0..n).map(|g| [g as u8 + 1; GROUP_HASH_LEN]).collect(),
            ahead: Vec::new(),
        }
    }

    fn verifier(s: StateDigest) -> Verifier {
        let root = s.root();
        Verifier {
            pending: Some(Pending {
                state: s,
                root,
                checked: 0,
            }),
            ..Verifier::default()
        }
    }

    /// The parts of `s` as the log carries them: encoded and decoded.
    fn parts(s: &StateDigest, max_record: usize) -> Vec<WholeDigest> {
        s.records(max_record)
            .iter()
            .map(
                |p| match DbRecord::decode(&DbRecord::WholeDigest(p.clone()).encode(), 4096) {
                    Ok(DbRecord::WholeDigest(d)) => d,
                    other => panic!("a part does not decode: {other:?}"),
                },
            )
            .collect()
    }

    #[test]
    fn a_digest_split_into_parts_verifies_once_all_arrived() {
        // 5 groups, 2 per record.
        let s = state(2 + 64 * 4 + 10);
        let ps = parts(&s, WHOLE_DIGEST_HEADER + 2 * GROUP_HASH_LEN);
        assert_eq!(
            ps.iter().map(|p| (p.first_group, p.groups.len())).collect::<Vec<_>>(),
            [(0, 2), (2, 2), (4, 1)]
        );
        let mut v = verifier(state(2 + 64 * 4 + 10));
        for (i, p) in ps.iter().enumerate() {
            v.check(Path::new("/c/data.mvdb"), p, Lsn::new(3, 9000)).unwrap();
            assert_eq!(v.verified, u64::from(i == 2), "verified only after the last part");
        }
        assert_eq!(v.skipped, 0);
        // A repeat of the digest (replayed again after a reopen) has nothing pending.
        v.check(Path::new("/c/data.mvdb"), &ps[0], Lsn::new(3, 9000)).unwrap();
        assert_eq!((v.verified, v.skipped), (1, 1));
    }

    #[test]
    fn a_differing_group_names_its_pages_unless_the_copy_is_ahead_there() {
        let page_count = 2 + 64 * 4 + 10;
        let active = state(page_count);
        let mut ours = state(page_count);
        ours.groups[3][0] ^= 1;
        ours.groups[4][5] ^= 1;
        let err = verifier(ours)
            .check(
                Path::new("/c/data.mvdb"),
                &parts(&active, 1 << 20)[0],
                Lsn::new(3, 9000),
            )
            .unwrap_err();
        match &err {
            DbError::Diverged {
                pages, marker, file, ..
            } => {
                assert_eq!(pages, &[(194, page_count)], "groups 3 and 4 merge into one range");
                assert_eq!(*marker, active.marker);
                assert_eq!(file, Path::new("/c/data.mvdb"));
            }
            other => panic!("not a divergence: {other}"),
        }
        assert!(err.to_string().contains("pages 194..268"), "{err}");
        // The same difference in a group holding pages newer than the
        // marker is not comparable: skipped, not verified.
        let mut ours = state(page_count);
        ours.groups[3][0] ^= 1;
        ours.ahead = vec![3];
        let mut v = verifier(ours);
        v.check(
            Path::new("/c/data.mvdb"),
            &parts(&active, 1 << 20)[0],
            Lsn::new(3, 9000),
        )
        .unwrap();
        assert_eq!((v.verified, v.skipped), (0, 1));
        // Another page count is a divergence too.
        let err = verifier(state(page_count - 1))
            .check(
                Path::new("/c/data.mvdb"),
                &parts(&active, 1 << 20)[0],
                Lsn::new(3, 9000),
            )
            .unwrap_err();
        assert!(
            matches!(&err, DbError::Diverged { pages, .. } if pages == &[(page_count - 1, page_count)]),
            "{err}"
        );
    }

    /// The cost of a digest: `cargo test --release --lib digest_cost -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn digest_cost_of_a_256_mib_file() {
        use crate::vfs::{OpenMode, OsVfs, Vfs};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data.mvdb");
        let ps = 16384;
        let pages: u32 = 256 << 20 >> 14;
        let file = OsVfs.open(&path, OpenMode::CreateNew).unwrap();
        let mut chunk = vec![0u8; 1 << 20];
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for at in (0..u64::from(pages) * ps as u64).step_by(chunk.len()) {
            for b in chunk.chunks_mut(8) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                b.copy_from_slice(&x.to_le_bytes());
            }
            file.write_at(&chunk, at).unwrap();
        }
        file.sync_data().unwrap();
        let db = DbFile {
            path,
            file,
            page_size: ps,
            salt: 1,
            double_write: None,
            known_len: Default::default(),
        };
        for round in 0..4 {
            // The first round reads from the disk: the file leaves the page cache.
            let cold = round == 0;
            if cold {
                let f = std::fs::File::open(&db.path).unwrap();
                rustix::fs::fadvise(&f, 0, None, rustix::fs::Advice::DontNeed).unwrap();
            }
            let started = std::time::Instant::now();
            let s = scan(&db, pages, Lsn::MAX, None).unwrap();
            let secs = started.elapsed().as_secs_f64();
            assert_eq!(s.groups.len() as u32, group_count(pages, GROUP_PAGES));
            println!(
                "round {round}: {pages} pages of 16 KiB (256 MiB, {}) digested in {:.3} s: {:.0} MiB/s",
                if cold {
                    "read from the disk"
                } else {
                    "in the page cache"
                },
                secs,
                256.0 / secs
            );
        }
    }
}
