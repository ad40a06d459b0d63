//! `mailvault dump log DIR`: decodes every file of a log directory leniently
//! (`codec::decode_frame_stream`) and prints its header, its records and a
//! summary of its frames, without judging the log as a whole (that is `check`).

use crate::error::{Context, Result};
use crate::output::{self, format_unix_us};
use clap::Args;
use mailvault::log::codec::{DATA_START, Defect, ImageReport, decode_frame_stream};
use mailvault::log::{DEFAULT_FRAME_SIZE, GENERATION_SUFFIX, GenerationHeader, GenerationState, Lsn};
use serde::Serialize;
use std::path::{Path, PathBuf};

/// Invalid frames listed individually per file; the rest are only counted.
const INVALID_SAMPLES: usize = 8;

#[derive(Debug, Args)]
pub struct DumpLogArgs {
    /// The log directory.
    dir: PathBuf,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Serialize)]
struct Dump {
    dir: String,
    generations: Vec<FileDump>,
    /// Names in the directory that are not log files.
    other_files: Vec<String>,
}

#[derive(Debug, Serialize)]
struct FileDump {
    file: String,
    size: u64,
    header: Option<HeaderJson>,
    header_error: Option<String>,
    records: Vec<RecordJson>,
    home_frames: u64,
    zero_frames: u64,
    /// Frames that decode but belong elsewhere (another salt or LSN): left over from earlier use of the file.
    stale_frames: u64,
    shadows: Vec<ShadowJson>,
    invalid_frames: u64,
    invalid_frame_samples: Vec<InvalidFrame>,
}

#[derive(Debug, Serialize)]
struct HeaderJson {
    generation: u32,
    state: &'static str,
    epoch: u64,
    created_us: u64,
    created: String,
    frame_size: u32,
    generation_size: u64,
    signature: String,
    salt: String,
    nonce: u64,
    prev_created_us: u64,
    prev_salt: String,
    prev_chain: String,
    max_write_span: u64,
}

#[derive(Debug, Serialize)]
struct RecordJson {
    lsn: String,
    lsn_u64: u64,
    len: u32,
    checksum_ok: bool,
    /// False if the body runs past the valid home frames (cut short, not corrupt);
    /// the end of the log is often only in a shadow slot, which is not decoded.
    complete: bool,
    /// The LSN names another generation: a leftover of the file's earlier use.
    stale: bool,
}

#[derive(Debug, Serialize)]
struct ShadowJson {
    slot: u32,
    /// The home frame it copies, and that frame's LSN.
    frame: u32,
    lsn: String,
    used: u16,
    shadow_seq: u32,
    /// Whether it carries this file's salt.
    current: bool,
}

#[derive(Debug, Serialize)]
struct InvalidFrame {
    slot: u32,
    offset: u64,
    reason: String,
}

pub fn run(args: &DumpLogArgs) -> Result<()> {
    let mut names: Vec<String> = std::fs::read_dir(&args.dir)
        .context(|| format!("listing {}", args.dir.display()))?
        .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect::<std::io::Result<_>>()
        .context(|| format!("listing {}", args.dir.display()))?;
    names.sort_unstable();
    let (logs, other_files): (Vec<String>, Vec<String>) =
        names.into_iter().partition(|n| n.ends_with(GENERATION_SUFFIX));
    let mut dump = Dump {
        dir: args.dir.display().to_string(),
        generations: Vec::new(),
        other_files,
    };
    for name in &logs {
        let file = dump_file(&args.dir.join(name), name)?;
        if !args.json {
            print_file(&file);
        }
        dump.generations.push(file);
    }
    if args.json {
        return output::print_json(&dump);
    }
    for name in &dump.other_files {
        outln!("== {name}: not a log file (skipped)");
    }
    Ok(())
}

fn dump_file(path: &Path, name: &str) -> Result<FileDump> {
    let image = std::fs::read(path).context(|| format!("reading {}", path.display()))?;
    let report = decode_frame_stream(&image, DEFAULT_FRAME_SIZE, usize::MAX);
    let mut out = FileDump {
        file: name.to_string(),
        size: image.len() as u64,
        header: None,
        header_error: None,
        records: Vec::new(),
        home_frames: 0,
        zero_frames: 0,
        stale_frames: 0,
        shadows: Vec::new(),
        invalid_frames: 0,
        invalid_frame_samples: Vec::new(),
    };
    let current = match &report.header {
        Ok((h, salt)) => {
            out.header = Some(header_json(h, *salt));
            Some((*h, *salt))
        }
        Err(e) => {
            out.header_error = Some(e.clone());
            None
        }
    };
    // The decoder falls back to the default frame size without a header.
    let fs = current.map_or(DEFAULT_FRAME_SIZE, |(h, _)| h.frame_size);
    summarize_frames(&report, current, fs, &mut out);
    for r in &report.records {
        out.records.push(RecordJson {
            lsn: r.lsn.to_string(),
            lsn_u64: r.lsn.0,
            len: r.len,
            checksum_ok: r.checksum_ok,
            complete: r.complete,
            stale: current.is_some_and(|(h, _)| r.lsn.generation() != h.generation),
        });
    }
    Ok(out)
}

/// Counts the frames by kind into `out`.
fn summarize_frames(report: &ImageReport, current: Option<(GenerationHeader, u32)>, fs: u32, out: &mut FileDump) {
    let zeroed = Defect::Zeroed.to_string();
    for f in &report.frames {
        match &f.header {
            Ok(h) if h.is_shadow() => out.shadows.push(ShadowJson {
                slot: f.slot,
                frame: h.lsn.offset() / fs,
                lsn: h.lsn.to_string(),
                used: h.used,
                shadow_seq: h.shadow_seq,
                current: current.is_some_and(|(g, salt)| h.salt == salt && h.lsn.generation() == g.generation),
            }),
            Ok(h) => {
                let home_lsn = |g: &GenerationHeader| Lsn::new(g.generation, f.slot.wrapping_mul(fs));
                let belongs = current.is_none_or(|(g, salt)| h.salt == salt && h.lsn == home_lsn(&g));
                if f.slot >= DATA_START && belongs {
                    out.home_frames += 1;
                } else {
                    out.stale_frames += 1;
                }
            }
            Err(e) if *e == zeroed => out.zero_frames += 1,
            Err(e) => {
                out.invalid_frames += 1;
                if out.invalid_frame_samples.len() < INVALID_SAMPLES {
                    out.invalid_frame_samples.push(InvalidFrame {
                        slot: f.slot,
                        offset: u64::from(f.slot) * u64::from(fs),
                        reason: e.clone(),
                    });
                }
            }
        }
    }
}

fn header_json(h: &GenerationHeader, salt: u32) -> HeaderJson {
    HeaderJson {
        generation: h.generation,
        state: match h.state {
            GenerationState::Active => "active",
            GenerationState::Reserved => "reserved",
        },
        epoch: h.epoch,
        created_us: h.created_us,
        created: format_unix_us(h.created_us),
        frame_size: h.frame_size,
        generation_size: h.generation_size,
        signature: h.signature.to_string(),
        salt: format!("{salt:#010x}"),
        nonce: h.nonce,
        prev_created_us: h.prev_created_us,
        prev_salt: format!("{:#010x}", h.prev_salt),
        prev_chain: format!("{:#010x}", h.prev_chain),
        max_write_span: h.max_write_span,
    }
}

fn print_file(f: &FileDump) {
    outln!("== {} ({} bytes)", f.file, f.size);
    match (&f.header, &f.header_error) {
        (Some(h), _) => {
            outln!("  generation {}, {}, epoch {}", h.generation, h.state, h.epoch);
            outln!("  created {} ({} us)", h.created, h.created_us);
            outln!("  frame size {}, generation size {}", h.frame_size, h.generation_size);
            outln!("  signature {}, salt {}, nonce {:#018x}", h.signature, h.salt, h.nonce);
            outln!(
                "  previous generation: created {} us, salt {}, chain {}",
                h.prev_created_us,
                h.prev_salt,
                h.prev_chain
            );
            outln!("  max write span {} bytes", h.max_write_span);
        }
        (None, Some(e)) => outln!("  header: INVALID ({e})"),
        (None, None) => outln!("  header: INVALID"),
    }
    outln!(
        "  frames: {} home, {} shadow, {} zero, {} stale, {} invalid",
        f.home_frames,
        f.shadows.len(),
        f.zero_frames,
        f.stale_frames,
        f.invalid_frames
    );
    for s in &f.shadows {
        let stale = if s.current { "" } else { " (stale)" };
        outln!(
            "  shadow slot {}: copy of frame {} ({}), {} bytes used, seq {}{stale}; its records are not listed",
            s.slot,
            s.frame,
            s.lsn,
            s.used,
            s.shadow_seq
        );
    }
    for i in &f.invalid_frame_samples {
        outln!("  invalid frame {} at offset {}: {}", i.slot, i.offset, i.reason);
    }
    if f.invalid_frames > f.invalid_frame_samples.len() as u64 {
        outln!(
            "  ... and {} more invalid frames",
            f.invalid_frames - f.invalid_frame_samples.len() as u64
        );
    }
    outln!("  records: {}", f.records.len());
    if !f.records.is_empty() {
        outln!("    {:<16} {:>20} {:>10}  checksum", "LSN", "LSN (u64)", "length");
    }
    for r in &f.records {
        let status = match (r.checksum_ok, r.complete) {
            (true, _) => "ok",
            (false, true) => "BAD",
            (false, false) => "cut short (continues past the valid home frames)",
        };
        let stale = if r.stale { " [stale: another generation]" } else { "" };
        outln!("    {:<16} {:>20} {:>10}  {status}{stale}", r.lsn, r.lsn_u64, r.len);
    }
}
