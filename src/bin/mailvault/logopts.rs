//! Log options that fit a geometry, and the geometry of an existing log.
//!
//! The library's defaults (8 MiB buffer, 4 MiB records) only fit generations
//! of at least 2 MiB: `Log::create`/`Log::open` refuse a buffer larger than
//! four generations or a record larger than one. For smaller generations the
//! buffer and the largest record are shrunk to the most that fits; everything
//! else stays at the library default.

use mailvault::log::codec::{DATA_START, FRAME_HEADER_LEN, HEADER_LEN, RECORD_HEADER_LEN, check_geometry};
use mailvault::log::{GENERATION_SUFFIX, GenerationHeader, LogOptions};
use std::io::Read;
use std::path::Path;

/// Library defaults, with the buffer and record limit reduced to fit
/// `frame_size` and `generation_size` if needed. An invalid geometry is left
/// as is, for the library to report.
pub fn options_for(frame_size: u32, generation_size: u64) -> LogOptions {
    let mut opts = LogOptions {
        frame_size,
        generation_size,
        ..LogOptions::default()
    };
    let Ok(frames) = check_geometry(frame_size, generation_size) else {
        return opts;
    };
    let fs = frame_size as usize;
    let generation_payload = (frames - DATA_START) as usize * (fs - FRAME_HEADER_LEN);
    let four_generations = usize::try_from(generation_size.saturating_mul(4)).unwrap_or(usize::MAX);
    opts.buffer_size = opts.buffer_size.min(four_generations);
    let record_room = generation_payload
        .min(opts.buffer_size.saturating_sub(2 * fs))
        .saturating_sub(RECORD_HEADER_LEN);
    opts.max_record_size = opts.max_record_size.min(record_room);
    opts
}

/// Frame and generation size of the log in `dir`, from the first generation
/// header that decodes (newest first); `None` if there is none.
pub fn geometry_of(dir: &Path) -> Option<(u32, u64)> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| {
            n.strip_suffix(GENERATION_SUFFIX)
                .is_some_and(|s| s.len() == 10 && s.bytes().all(|b| b.is_ascii_digit()))
        })
        .collect();
    names.sort_unstable();
    names.iter().rev().find_map(|name| {
        let mut buf = [0u8; HEADER_LEN];
        std::fs::File::open(dir.join(name)).ok()?.read_exact(&mut buf).ok()?;
        let (h, _) = GenerationHeader::decode(&buf).ok()?;
        Some((h.frame_size, h.generation_size))
    })
}

/// Options for opening the log in `dir`: the library defaults, fitted to the
/// geometry found on disk.
pub fn options_for_dir(dir: &Path) -> LogOptions {
    match geometry_of(dir) {
        Some((fs, gs)) => options_for(fs, gs),
        None => LogOptions::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mailvault::log::{DEFAULT_FRAME_SIZE, DEFAULT_GENERATION_SIZE};

    #[test]
    fn defaults_unchanged_for_default_geometry() {
        let d = LogOptions::default();
        let o = options_for(DEFAULT_FRAME_SIZE, DEFAULT_GENERATION_SIZE);
        assert_eq!((o.buffer_size, o.max_record_size), (d.buffer_size, d.max_record_size));
    }

    #[test]
    fn small_generations_fit_and_the_library_accepts_them() {
        let o = options_for(4096, 256 << 10);
        assert_eq!(o.buffer_size, 1 << 20);
        assert_eq!(o.max_record_size, 61 * 4064 - 8);
        let dir = tempfile::tempdir().expect("tempdir");
        let vfs = std::sync::Arc::new(mailvault::vfs::OsVfs);
        let log = mailvault::log::Log::create(vfs, dir.path(), o.clone()).expect("create");
        log.commit(&vec![7u8; o.max_record_size]).expect("largest record");
        log.close().expect("close");
        assert_eq!(geometry_of(dir.path()), Some((4096, 256 << 10)));
    }
}
