//! Opening a log directory: find the generations, check that they form one
//! unbroken, signed chain, verify their frames, and find the end of the log.
//!
//! Rules (DESIGN.md, "Recovery"): a name the log does not own is a foreign
//! file; a missing number between the first and last generation is a gap; a
//! header that does not chain to its predecessor is divergence; an invalid
//! frame is a torn tail only at the end of the last generation, and corruption
//! anywhere else. Every error names the file and the offset.

use super::files::{GenFile, LogFileName, parse_name, read_header};
use super::format::{DATA_START, FrameHeader, GenerationHeader, GenerationState, HEADER_LEN, LogSignature};
use super::records::Record;
use super::scan::{GenerationScan, TornTail, scan_generation};
use super::{LogError, Lsn, Result};
use crate::vfs::{OpenMode, Vfs, VfsFile};
use std::path::{Path, PathBuf};

/// What opening the log found, for the operator.
#[derive(Debug, Clone)]
pub struct RecoveryReport {
    pub first_generation: u32,
    pub last_generation: u32,
    /// End of the log: just after the last complete record.
    pub end: Lsn,
    /// Records verified (in the generations scanned).
    pub records: u64,
    /// Bytes of those records, headers included.
    pub record_bytes: u64,
    /// Generations whose frames were read and verified.
    pub generations_scanned: u32,
    /// A torn tail that was cut off: the file and what was there.
    pub torn_tail: Option<(PathBuf, TornTail)>,
    /// A prepared (never activated) file after the last generation.
    pub spare: Option<PathBuf>,
    /// Recycled files waiting for reuse.
    pub recycled: Vec<u32>,
    /// Rebuilds a crash interrupted (removed when the log is opened for writing).
    pub leftover_rebuilds: Vec<u32>,
    /// The log's signature.
    pub signature: LogSignature,
}

/// The result of recovery: the last generation, opened, and where to resume.
pub(crate) struct Recovered {
    pub last: GenFile,
    pub last_scan: GenerationScan,
    pub report: RecoveryReport,
}

/// Scans `dir`. Records of the scanned generations go to `sink`.
pub(crate) fn recover(
    vfs: &dyn Vfs,
    dir: &Path,
    expected: Option<LogSignature>,
    verify_from: Lsn,
    keep_bodies: bool,
    sink: &mut dyn FnMut(Record) -> Result<()>,
) -> Result<Recovered> {
    let names = vfs.list(dir).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => LogError::NoLog {
            dir: dir.to_path_buf(),
            reason: "the directory does not exist".into(),
        },
        _ => LogError::io(dir, 0, "list", e),
    })?;
    let mut generations = Vec::new();
    let mut recycled = Vec::new();
    let mut leftover_rebuilds = Vec::new();
    for name in &names {
        match parse_name(name) {
            Some(LogFileName::Generation(g)) => generations.push(g),
            Some(LogFileName::Recycled(g)) => recycled.push(g),
            Some(LogFileName::Rebuild(g)) => leftover_rebuilds.push(g),
            None => {
                return Err(LogError::ForeignFile {
                    file: dir.join(name),
                    offset: 0,
                    reason: "not a log file name (expected NNNNNNNNNN.mvlog)".into(),
                });
            }
        }
    }
    generations.sort_unstable();
    recycled.sort_unstable();
    if generations.is_empty() {
        return Err(LogError::NoLog {
            dir: dir.to_path_buf(),
            reason: "no generation files".into(),
        });
    }
    for pair in generations.windows(2) {
        if pair[1] != pair[0] + 1 {
            return Err(LogError::MissingGeneration {
                dir: dir.to_path_buf(),
                generation: pair[0] + 1,
                before: dir.join(super::files::generation_name(pair[0])),
                after: dir.join(super::files::generation_name(pair[1])),
            });
        }
    }
    let (headers, spare) = read_headers(vfs, dir, &generations, expected)?;
    check_header_chain(dir, &headers)?;
    let signature = headers[0].1.signature;
    let first = headers[0].0;
    let last_generation = headers[headers.len() - 1].0;
    let mut report = RecoveryReport {
        first_generation: first,
        last_generation,
        end: Lsn::ZERO,
        records: 0,
        record_bytes: 0,
        generations_scanned: 0,
        torn_tail: None,
        spare,
        recycled,
        leftover_rebuilds,
        signature,
    };
    let start = verify_from.generation().clamp(first, last_generation);
    let mut last_scan = None;
    let mut last_file = None;
    for (i, (generation, _, _)) in headers.iter().enumerate() {
        if *generation < start {
            continue;
        }
        let is_last = i + 1 == headers.len();
        let gfile = GenFile::open(vfs, dir, *generation)?;
        let scan = scan_generation(&gfile, is_last, keep_bodies, sink)?;
        report.generations_scanned += 1;
        report.records += scan.records;
        report.record_bytes += scan.record_bytes;
        if let Some((_, next, _)) = headers.get(i + 1) {
            if next.prev_chain != scan.chain {
                return Err(LogError::Divergent {
                    file: dir.join(super::files::generation_name(next.generation)),
                    offset: 84,
                    reason: format!(
                        "it chains to a generation {} with checksum {:#010x}, but that file's frames sum to {:#010x}",
                        generation, next.prev_chain, scan.chain
                    ),
                });
            }
        } else {
            if let Some(torn) = scan.torn.clone() {
                report.torn_tail = Some((gfile.path.clone(), torn));
            }
            report.end = scan.end;
            last_scan = Some(scan);
            last_file = Some(gfile);
        }
    }
    let (Some(last), Some(last_scan)) = (last_file, last_scan) else {
        unreachable!("the last generation is always scanned: start <= last_generation")
    };
    Ok(Recovered {
        last,
        last_scan,
        report,
    })
}

type HeaderRow = (u32, GenerationHeader, u32);

/// Reads every header. Only the highest-numbered file may lack an active
/// header: it is a spare prepared ahead of time (possibly torn while being
/// activated), and is not part of the log.
fn read_headers(
    vfs: &dyn Vfs,
    dir: &Path,
    generations: &[u32],
    expected: Option<LogSignature>,
) -> Result<(Vec<HeaderRow>, Option<PathBuf>)> {
    let mut rows: Vec<HeaderRow> = Vec::new();
    let mut spare = None;
    for (i, &generation) in generations.iter().enumerate() {
        let path = dir.join(super::files::generation_name(generation));
        let file = vfs
            .open(&path, OpenMode::Existing)
            .map_err(|e| LogError::io(&path, 0, "open", e))?;
        let is_last = i + 1 == generations.len();
        match read_header(file.as_ref(), &path)? {
            Ok((h, _)) if h.generation != generation => {
                if is_last && !rows.is_empty() && h.signature == rows[0].1.signature {
                    // A recycled file renamed for reuse before its header was rewritten.
                    spare = Some(path);
                    continue;
                }
                return Err(LogError::ForeignFile {
                    file: path,
                    offset: 20,
                    reason: format!("header says generation {}, the name says {generation}", h.generation),
                });
            }
            Ok((h, salt)) => {
                let want = expected.or(rows.first().map(|r| r.1.signature));
                if let Some(want) = want.filter(|w| *w != h.signature) {
                    return Err(LogError::WrongSignature {
                        file: path,
                        offset: 32,
                        expected: want.to_string(),
                        found: h.signature.to_string(),
                    });
                }
                if h.state == GenerationState::Active {
                    rows.push((generation, h, salt));
                } else if is_last && !rows.is_empty() {
                    spare = Some(path);
                } else {
                    return Err(LogError::corrupt(
                        &path,
                        14,
                        "a generation before the last was never activated",
                    ));
                }
            }
            Err(defect) if is_last && !rows.is_empty() => {
                // A spare whose activation was torn, unless frames of a later
                // batch show that the header was once durable.
                if let Some(offset) = later_batch_frame(file.as_ref(), &path, generation)? {
                    return Err(LogError::corrupt(
                        &path,
                        0,
                        format!(
                            "generation header: {defect}, but the frame at offset {offset} was written by a later batch, so the header was durable"
                        ),
                    ));
                }
                tracing::warn!(file = %path.display(), %defect, "spare log file has no valid header");
                spare = Some(path);
            }
            Err(defect) => {
                return Err(LogError::corrupt(&path, 0, format!("generation header: {defect}")));
            }
        }
    }
    if rows.is_empty() {
        return Err(LogError::NoLog {
            dir: dir.to_path_buf(),
            reason: "no activated generation".into(),
        });
    }
    Ok((rows, spare))
}

/// Looks for a checksummed frame of `generation` written by a batch that did
/// not start at the first data frame. Activation writes the header with the
/// first batch, so such a frame exists only if the header was made durable.
fn later_batch_frame(file: &dyn VfsFile, path: &Path, generation: u32) -> Result<Option<u64>> {
    let mut probe = [0u8; HEADER_LEN];
    if super::files::read_up_to(file, path, &mut probe, 0)? < HEADER_LEN {
        return Ok(None);
    }
    // Without a header, take the frame size from the first decodable frame.
    let len = file.len().map_err(|e| LogError::io(path, 0, "stat", e))?;
    let mut buf = vec![0u8; 1 << 20];
    let mut at = 0u64;
    while at < len {
        let n = super::files::read_up_to(file, path, &mut buf, at)?;
        for fs in [512usize, 1024, 2048, 4096, 8192, 16384, 32768] {
            for (i, frame) in buf[..n].chunks_exact(fs).enumerate() {
                let offset = at + (i * fs) as u64;
                if let Ok(h) = FrameHeader::decode(frame)
                    && h.lsn.generation() == generation
                    && !h.is_shadow()
                    && u64::from(h.lsn.offset()) == offset
                    && h.batch_start > DATA_START
                {
                    return Ok(Some(offset));
                }
            }
        }
        at += n.max(1) as u64;
        if n == 0 {
            break;
        }
    }
    Ok(None)
}

/// Each header must name its predecessor's creation time and salt, and the
/// epoch never goes back.
fn check_header_chain(dir: &Path, rows: &[HeaderRow]) -> Result<()> {
    for pair in rows.windows(2) {
        let (prev, next) = (&pair[0], &pair[1]);
        let file = dir.join(super::files::generation_name(next.0));
        if next.1.prev_created_us != prev.1.created_us || next.1.prev_salt != prev.2 {
            return Err(LogError::Divergent {
                file,
                offset: 72,
                reason: format!(
                    "it does not follow generation {} (created {} salt {:#010x}; it names created {} salt {:#010x})",
                    prev.0, prev.1.created_us, prev.2, next.1.prev_created_us, next.1.prev_salt
                ),
            });
        }
        if next.1.epoch < prev.1.epoch {
            return Err(LogError::Divergent {
                file,
                offset: 48,
                reason: format!(
                    "epoch {} is older than generation {}'s epoch {}",
                    next.1.epoch, prev.0, prev.1.epoch
                ),
            });
        }
    }
    Ok(())
}
