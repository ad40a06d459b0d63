//! `mailvault dump header|checkpoint|page N DIR`: the database file's
//! structures, decoded leniently and read-only (no recovery runs, nothing is
//! written), for an operator looking at a damaged or live store.

use crate::error::{CliError, Context, Result};
use crate::output::{self, format_unix_us};
use clap::Args;
use mailvault::btree::{CellSummary, inspect_node};
use mailvault::log::{LogReader, Lsn};
use mailvault::pager::header::{DbHeader, DbState, read_best, salt_of};
use mailvault::pager::page::{self, PageKind};
use mailvault::pager::redo::{DbRecord, WholeDigest, group_count};
use mailvault::pager::{data_path, freemap, log_dir};
use mailvault::vfs::{OpenMode, OsVfs, Vfs, VfsFile};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Cells of a node listed by `dump page`; the rest are only counted.
const CELLS_SHOWN: usize = 64;
/// Bytes of a key or inline value shown.
const BYTES_SHOWN: usize = 48;

#[derive(Debug, Args)]
pub struct DumpDbArgs {
    /// The store directory (holding data.mvdb and log/).
    dir: PathBuf,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub struct DumpPageArgs {
    /// The page number.
    page: u32,
    /// The store directory (holding data.mvdb and log/).
    dir: PathBuf,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Serialize)]
struct HeaderCopy {
    slot: u32,
    valid: bool,
    error: Option<String>,
    header: Option<HeaderJson>,
}

#[derive(Debug, Serialize)]
struct HeaderJson {
    state: &'static str,
    page_size: u32,
    signature: String,
    log_signature: String,
    sequence: u64,
    redo_lsn: String,
    required_lsn: String,
    page_count: u32,
    catalog_root: u32,
    created_us: u64,
    created: String,
    epoch: u64,
}

impl HeaderJson {
    fn new(h: &DbHeader) -> HeaderJson {
        HeaderJson {
            state: match h.state {
                DbState::Clean => "clean",
                DbState::Dirty => "dirty",
            },
            page_size: h.page_size,
            signature: h.signature.to_string(),
            log_signature: h.log_signature.to_string(),
            sequence: h.sequence,
            redo_lsn: h.redo_lsn.to_string(),
            required_lsn: h.required_lsn.to_string(),
            page_count: h.page_count,
            catalog_root: h.catalog_root,
            created_us: h.created_us,
            created: format_unix_us(h.created_us),
            epoch: h.epoch,
        }
    }
}

#[derive(Debug, Serialize)]
struct HeaderDump {
    file: String,
    file_size: u64,
    copies: Vec<HeaderCopy>,
    /// The copy an open would use (the valid one with the higher sequence).
    in_use: Option<u32>,
}

fn open_data(dir: &Path) -> Result<(PathBuf, Arc<dyn VfsFile>)> {
    let path = data_path(dir);
    let file = OsVfs
        .open(&path, OpenMode::Existing)
        .context(|| format!("opening {}", path.display()))?;
    Ok((path, file))
}

fn read_at(file: &dyn VfsFile, path: &Path, offset: u64, len: usize) -> Result<Vec<u8>> {
    let mut buf = vec![0u8; len];
    let mut done = 0;
    while done < len {
        let n = file
            .read_at(&mut buf[done..], offset + done as u64)
            .context(|| format!("reading {} at offset {}", path.display(), offset + done as u64))?;
        if n == 0 {
            break;
        }
        done += n;
    }
    buf.truncate(done);
    Ok(buf)
}

/// Both header copies, each judged on its own.
fn header_dump(dir: &Path) -> Result<(HeaderDump, Option<DbHeader>)> {
    let (path, file) = open_data(dir)?;
    let file_size = file.len().context(|| format!("sizing {}", path.display()))?;
    let best = read_best(file.as_ref(), &path);
    let page_size = best.as_ref().map_or(page::MAX_PAGE_SIZE, |(h, _)| h.page_size as usize);
    let mut copies = Vec::new();
    for slot in 0..2u32 {
        let bytes = read_at(file.as_ref(), &path, u64::from(slot) * page_size as u64, page_size)?;
        let copy = match DbHeader::decode(&bytes, slot, &path) {
            Ok(h) => HeaderCopy {
                slot,
                valid: true,
                error: None,
                header: Some(HeaderJson::new(&h)),
            },
            Err(e) => HeaderCopy {
                slot,
                valid: false,
                error: Some(e.to_string()),
                header: None,
            },
        };
        copies.push(copy);
    }
    let (in_use, header) = match best {
        Ok((h, slot)) => (Some(slot), Some(h)),
        Err(_) => (None, None),
    };
    let dump = HeaderDump {
        file: path.display().to_string(),
        file_size,
        copies,
        in_use,
    };
    Ok((dump, header))
}

pub fn run_header(args: &DumpDbArgs) -> Result<()> {
    let (dump, _) = header_dump(&args.dir)?;
    if args.json {
        return output::print_json(&dump);
    }
    outln!("{} ({} bytes)", dump.file, dump.file_size);
    for copy in &dump.copies {
        let mark = if dump.in_use == Some(copy.slot) {
            " (in use)"
        } else {
            ""
        };
        match (&copy.header, &copy.error) {
            (Some(h), _) => {
                outln!("header copy {} (page {}){mark}", copy.slot, copy.slot);
                outln!(
                    "  state {}, page size {}, sequence {}, epoch {}",
                    h.state,
                    h.page_size,
                    h.sequence,
                    h.epoch
                );
                outln!("  signature {}, log signature {}", h.signature, h.log_signature);
                outln!("  redo from {}, requires the log up to {}", h.redo_lsn, h.required_lsn);
                outln!(
                    "  {} pages, catalog root {}, created {}",
                    h.page_count,
                    h.catalog_root,
                    h.created
                );
            }
            (None, error) => outln!(
                "header copy {}: invalid: {}",
                copy.slot,
                error.as_deref().unwrap_or("unknown")
            ),
        }
    }
    Ok(())
}

#[derive(Debug, Serialize)]
struct CheckpointDump {
    header_copy: u32,
    state: &'static str,
    sequence: u64,
    redo_lsn: String,
    required_lsn: String,
    page_count: u32,
    /// The record at the redo LSN, as the log holds it.
    marker: Option<String>,
    /// What the log holds after the redo LSN: what recovery would replay.
    records_after: u64,
    /// The whole-database digest records after the redo LSN.
    whole_digests: Vec<String>,
    log_bytes_after: u64,
    log_end: Option<String>,
    log_error: Option<String>,
}

pub fn run_checkpoint(args: &DumpDbArgs) -> Result<()> {
    let (dump, header) = header_dump(&args.dir)?;
    let (Some(h), Some(slot)) = (header, dump.in_use) else {
        return Err(CliError::msg(format!(
            "{}: neither header copy is valid; `mailvault dump header` shows why",
            dump.file
        )));
    };
    let mut marker = None;
    let mut records_after = 0;
    let mut whole_digests = Vec::new();
    let mut log_bytes_after = 0;
    let mut log_end = None;
    let mut log_error = None;
    match LogReader::new(Arc::new(OsVfs), log_dir(&args.dir), h.redo_lsn, Lsn::MAX) {
        Ok(reader) => {
            for record in reader.expect_signature(h.log_signature) {
                match record {
                    Ok(r) => {
                        let decoded = DbRecord::decode(&r.data, h.page_size as usize);
                        if marker.is_none() {
                            marker = Some(match decoded {
                                Ok(DbRecord::Checkpoint { number, whole_digest }) => format!(
                                    "checkpoint {number} at {}{}",
                                    r.lsn,
                                    if whole_digest {
                                        ", a whole-database digest follows"
                                    } else {
                                        ""
                                    }
                                ),
                                Ok(DbRecord::Commit { seq, .. }) => format!("commit {seq} at {} (not a marker)", r.lsn),
                                Ok(DbRecord::Part { seq, index, .. }) => {
                                    format!(
                                        "part {index} of transaction {seq} at {} (redo starts at a transaction's first part)",
                                        r.lsn
                                    )
                                }
                                Ok(DbRecord::CommitParts { seq, parts, .. }) => format!(
                                    "commit {seq} of {} parts from {} at {} (not a marker)",
                                    parts.count, parts.first, r.lsn
                                ),
                                Ok(DbRecord::Digest { pages }) => {
                                    format!("digest of {} pages at {} (not a marker)", pages.len(), r.lsn)
                                }
                                Ok(DbRecord::WholeDigest(d)) => {
                                    format!("{} (not a marker)", describe_whole(&d, r.lsn))
                                }
                                Err(e) => format!("undecodable record at {}: {e}", r.lsn),
                            });
                        } else {
                            if let Ok(DbRecord::WholeDigest(d)) = decoded {
                                whole_digests.push(describe_whole(&d, r.lsn));
                            }
                            records_after += 1;
                            log_bytes_after += r.data.len() as u64;
                        }
                        log_end = Some(r.end.to_string());
                    }
                    Err(e) => {
                        log_error = Some(e.to_string());
                        break;
                    }
                }
            }
        }
        Err(e) => log_error = Some(e.to_string()),
    }
    let out = CheckpointDump {
        header_copy: slot,
        state: if h.state == DbState::Clean { "clean" } else { "dirty" },
        sequence: h.sequence,
        redo_lsn: h.redo_lsn.to_string(),
        required_lsn: h.required_lsn.to_string(),
        page_count: h.page_count,
        marker,
        records_after,
        whole_digests,
        log_bytes_after,
        log_end,
        log_error,
    };
    if args.json {
        return output::print_json(&out);
    }
    outln!(
        "checkpoint (header copy {}, sequence {}): {} shutdown",
        out.header_copy,
        out.sequence,
        out.state
    );
    outln!(
        "  redo from {}; the file requires the log up to {}",
        out.redo_lsn,
        out.required_lsn
    );
    outln!("  {} pages", out.page_count);
    outln!("  marker: {}", out.marker.as_deref().unwrap_or("not found in the log"));
    outln!(
        "  after it: {} records, {} bytes of log (what recovery replays), log ends at {}",
        out.records_after,
        out.log_bytes_after,
        out.log_end.as_deref().unwrap_or("?")
    );
    for d in &out.whole_digests {
        outln!("  {d}");
    }
    if let Some(e) = &out.log_error {
        outln!("  log: {e}");
    }
    Ok(())
}

/// One line for a whole-database digest record (kind 4) logged at `at`.
fn describe_whole(d: &WholeDigest, at: Lsn) -> String {
    let root: String = d.root[..8].iter().map(|b| format!("{b:02x}")).collect();
    let end = u64::from(d.first_group) + d.groups.len() as u64;
    format!(
        "whole-database digest at {at} of the state at {}: {} pages, groups {}..{end} of {} ({} pages each), root {root}…",
        d.marker,
        d.page_count,
        d.first_group,
        group_count(d.page_count, d.group_pages),
        d.group_pages,
    )
}

#[derive(Debug, Serialize)]
struct PageDump {
    file: String,
    page: u32,
    offset: u64,
    page_size: usize,
    bytes_read: usize,
    /// The checks an open would apply (checksum, number, salt).
    valid: bool,
    error: Option<String>,
    page_no_field: u32,
    lsn: String,
    kind: String,
    node: Option<NodeDump>,
    /// Free-space map pages: pages marked allocated in its range.
    allocated: Option<usize>,
}

#[derive(Debug, Serialize)]
struct NodeDump {
    level: u8,
    count: usize,
    used: usize,
    free: usize,
    leftmost_child: Option<u32>,
    cells: Vec<CellDump>,
    error: Option<String>,
}

#[derive(Debug, Serialize)]
struct CellDump {
    key: String,
    /// Inline value (start), child page, or long-value descriptor.
    value: String,
}

fn show(bytes: &[u8]) -> String {
    let shown = &bytes[..bytes.len().min(BYTES_SHOWN)];
    let more = if bytes.len() > BYTES_SHOWN { "…" } else { "" };
    if shown.iter().all(|b| b.is_ascii_graphic() || *b == b' ') {
        format!("{:?}{more}", String::from_utf8_lossy(shown))
    } else {
        let hex: String = shown.iter().map(|b| format!("{b:02x}")).collect();
        format!("0x{hex}{more}")
    }
}

fn node_dump(bytes: &[u8]) -> NodeDump {
    let summary = inspect_node(bytes, CELLS_SHOWN);
    NodeDump {
        level: summary.level,
        count: summary.count,
        used: summary.used_bytes,
        free: summary.free_bytes,
        leftmost_child: summary.leftmost,
        cells: summary
            .cells
            .iter()
            .map(|c| match c {
                CellSummary::Inline { key, value } => CellDump {
                    key: show(key),
                    value: format!("{} bytes: {}", value.len(), show(value)),
                },
                CellSummary::Long { key, len, root } => CellDump {
                    key: show(key),
                    value: format!("long value of {len} bytes at page {root}"),
                },
                CellSummary::Separated { key, len, tree, id } => CellDump {
                    key: show(key),
                    value: format!("separated value of {len} bytes, id {id} in the values tree at page {tree}"),
                },
                CellSummary::Child { key, child } => CellDump {
                    key: show(key),
                    value: format!("child {child}"),
                },
            })
            .collect(),
        error: summary.damage,
    }
}

pub fn run_page(args: &DumpPageArgs) -> Result<()> {
    let (dump, header) = header_dump(&args.dir)?;
    let (path, file) = open_data(&args.dir)?;
    // Without a valid header the page size is unknown: try the default.
    let page_size = header.map_or(mailvault::pager::DEFAULT_PAGE_SIZE, |h| h.page_size as usize);
    let salt = header.map(|h| salt_of(&h.signature));
    let offset = u64::from(args.page) * page_size as u64;
    if offset >= dump.file_size {
        return Err(CliError::msg(format!(
            "{}: page {} (offset {offset}) is beyond the end of the file ({} bytes)",
            path.display(),
            args.page,
            dump.file_size
        )));
    }
    let bytes = read_at(file.as_ref(), &path, offset, page_size)?;
    let check = match salt {
        Some(salt) if bytes.len() == page_size => {
            page::verify(&bytes, args.page, salt, &path, page_size).map_err(|e| e.to_string())
        }
        Some(_) => Err(format!("only {} bytes at offset {offset}", bytes.len())),
        None => Err("no valid database header: the salt is unknown".into()),
    };
    let kind = if bytes.len() >= 32 {
        page::page_kind(&bytes)
    } else {
        None
    };
    let out = PageDump {
        file: path.display().to_string(),
        page: args.page,
        offset,
        page_size,
        bytes_read: bytes.len(),
        valid: check.is_ok(),
        error: check.err(),
        page_no_field: if bytes.len() >= 8 { page::page_no(&bytes) } else { 0 },
        lsn: if bytes.len() >= 16 {
            page::page_lsn(&bytes).to_string()
        } else {
            "?".into()
        },
        kind: match kind {
            Some(k) => format!("{k:?}"),
            None if bytes.len() >= 17 => format!("unknown ({})", bytes[16]),
            None => "?".into(),
        },
        node: match kind {
            Some(PageKind::Leaf | PageKind::Branch) if bytes.len() == page_size => Some(node_dump(&bytes)),
            _ => None,
        },
        allocated: match kind {
            Some(PageKind::FreeMap) if bytes.len() == page_size => {
                let (_, first_bit) = freemap::locate(args.page, page_size);
                Some(freemap::count_allocated(
                    &bytes,
                    freemap::span(page_size) as usize - first_bit,
                ))
            }
            _ => None,
        },
    };
    if args.json {
        return output::print_json(&out);
    }
    outln!(
        "{} page {} (offset {}, {} bytes)",
        out.file,
        out.page,
        out.offset,
        out.page_size
    );
    match &out.error {
        None => outln!("  valid: checksum, number and salt"),
        Some(e) => outln!("  INVALID: {e}"),
    }
    outln!(
        "  number field {}, LSN {}, kind {}",
        out.page_no_field,
        out.lsn,
        out.kind
    );
    if let Some(n) = &out.allocated {
        outln!("  free-space map: {n} pages marked allocated in its range");
    }
    if let Some(node) = &out.node {
        outln!(
            "  node level {}, {} cells, {} bytes used, {} free{}",
            node.level,
            node.count,
            node.used,
            node.free,
            node.leftmost_child
                .map_or(String::new(), |c| format!(", leftmost child {c}"))
        );
        for c in &node.cells {
            outln!("    {} -> {}", c.key, c.value);
        }
        if node.count > node.cells.len() {
            outln!("    ... {} more", node.count - node.cells.len());
        }
        if let Some(e) = &node.error {
            outln!("  node damage: {e}");
        }
    }
    Ok(())
}
