//! Writes seed inputs for `page_decode` and `db_record`:
//!
//!     cargo run --manifest-path fuzz/Cargo.toml --example seed_pages [CORPUS_DIR]
//!
//! CORPUS_DIR defaults to fuzz/corpus (git-ignored); the seeds go to its
//! `page_decode` and `db_record` subdirectories. `page_decode` gets database
//! header pages of each page size for both slots (whole pages, so the run
//! needs `-max_len=16388`) and control bytes alone (damage over the target's
//! own tree pages); `db_record` gets encoded commit records with page images
//! and byte ranges made by `redo::diff`, and a checkpoint record.
//! `txn_ops` and `db_open` need no seeds: any input decodes to a run.

use mailvault::log::{LogSignature, Lsn};
use mailvault::pager::header::{DbHeader, DbState};
use mailvault::pager::page;
use mailvault::pager::redo::{self, DbRecord, LOGGED_FROM, PageChange};
use std::path::{Path, PathBuf};

fn write(dir: &Path, name: &str, bytes: &[u8]) {
    std::fs::create_dir_all(dir).expect("create corpus directory");
    std::fs::write(dir.join(name), bytes).expect("write seed");
}

fn header(page_size: usize) -> DbHeader {
    DbHeader {
        state: DbState::Dirty,
        page_size: page_size as u32,
        signature: LogSignature(*b"mailvault-seed!!"),
        log_signature: LogSignature(*b"mailvault-slog!!"),
        sequence: 12,
        redo_lsn: Lsn::new(3, 1536),
        required_lsn: Lsn::new(3, 1024),
        page_count: 19,
        catalog_root: 3,
        created_us: 1_700_000_000_000_000,
        epoch: 0,
    }
}

/// A leaf-like page body: a node header and a few cells' worth of bytes.
fn page_like(page_size: usize, seed: u8) -> Vec<u8> {
    let mut p = vec![0u8; page_size];
    page::init_header(&mut p, 5, page::PageKind::Leaf, 0x1234_5679);
    for (i, b) in p[52..].iter_mut().enumerate() {
        if i % 97 < 40 {
            *b = seed.wrapping_add((i / 5) as u8);
        }
    }
    p
}

fn main() {
    let root = std::env::args()
        .nth(1)
        .map_or_else(|| PathBuf::from("fuzz/corpus"), PathBuf::from);

    let pages = root.join("page_decode");
    for (ctl, page_size) in [(0u8, 4096usize), (1, 8192), (2, 16384)] {
        for slot in [0u32, 1] {
            let mut input = vec![ctl, 0, 0, 0];
            input.extend_from_slice(&header(page_size).encode(slot, page_size));
            write(&pages, &format!("header-{page_size}-slot{slot}"), &input);
        }
        // Control bytes alone: overlay mode, sealed, writes, over several pages.
        for sel in [0u8, 3, 7] {
            write(
                &pages,
                &format!("overlay-{page_size}-{sel}"),
                &[ctl | 4 | 8 | 16, sel, 34, 0],
            );
        }
    }

    let records = root.join("db_record");
    for (i, page_size) in [4096usize, 8192, 16384].into_iter().enumerate() {
        let old = page_like(page_size, i as u8);
        let mut new = old.clone();
        for at in [40usize, 41, 300, 301, 302, page_size - 1] {
            new[at] ^= 0x5a;
        }
        page::set_lsn(&mut new, Lsn::new(2, 512));
        let record = DbRecord::Commit {
            seq: 9 + i as u64,
            page_count: 20,
            changes: vec![
                (5, PageChange::Image(new[LOGGED_FROM..].to_vec())),
                (
                    6,
                    PageChange::Ranges {
                        before: Lsn::new(2, 512),
                        ranges: redo::diff(&old, &new),
                    },
                ),
            ],
        };
        let mut input = vec![0u8];
        input.extend_from_slice(&record.encode());
        write(&records, &format!("commit-{page_size}"), &input);
    }
    for (name, whole_digest) in [("checkpoint", false), ("checkpoint-whole", true)] {
        let mut input = vec![0u8];
        input.extend_from_slice(
            &DbRecord::Checkpoint {
                number: 4,
                whole_digest,
            }
            .encode(),
        );
        write(&records, name, &input);
    }
    let mut input = vec![0u8];
    let whole = redo::WholeDigest {
        marker: Lsn::new(3, 4096),
        page_count: 200,
        group_pages: 64,
        root: [7; 32],
        first_group: 1,
        groups: vec![[1; 16], [2; 16]],
    };
    input.extend_from_slice(&DbRecord::WholeDigest(whole).encode());
    write(&records, "whole-digest", &input);
    println!("seeds written under {}", root.display());
}
