//! Writes seed inputs for `frame_decode` made from real log images:
//!
//!     cargo run --manifest-path fuzz/Cargo.toml --example seed_corpus [OUT_DIR]
//!
//! OUT_DIR defaults to fuzz/corpus/frame_decode (git-ignored). Each seed is a
//! control byte (see fuzz_targets/frame_decode.rs) followed by the first bytes
//! of a generation file: a valid header, shadow slots and data frames with
//! records, for 512- and 4096-byte frames. `log_recovery` needs no seeds: it
//! builds its log itself and any input decodes to a workload.

use mailvault::log::{Log, LogOptions, LogSignature, generation_name};
use mailvault::vfs::SimVfs;
use std::path::{Path, PathBuf};

/// A control byte and the first frames of a generation: the header, the two
/// shadow slots and at least one data frame. With 4096-byte frames that is more
/// than libFuzzer's default `-max_len` of 4096, which then grows to fit.
const FRAMES_PER_SEED: usize = 5;

fn image(frame_size: u32, records: usize, seed: u64) -> Vec<u8> {
    let sim = SimVfs::new(seed);
    let opts = LogOptions {
        frame_size,
        generation_size: 64 * u64::from(frame_size),
        buffer_size: 8 * frame_size as usize,
        max_record_size: 2 * frame_size as usize,
        signature: Some(LogSignature(*b"mailvault-fuzz!!")),
        ..LogOptions::default()
    };
    let dir = Path::new("/seed/log");
    let log = Log::create(sim.clone(), dir, opts).expect("create");
    for i in 0..records {
        let len = (i * 37) % (frame_size as usize + 100);
        let body: Vec<u8> = (0..len).map(|j| (i + j) as u8).collect();
        log.commit(&body).expect("commit");
    }
    log.close().expect("close");
    sim.written_image(&dir.join(generation_name(1))).expect("generation 1")
}

fn main() {
    let out = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("corpus/frame_decode"));
    std::fs::create_dir_all(&out).expect("create the output directory");
    let mut written = 0;
    for (frame_size, ctl_size_bit) in [(512u32, 0u8), (4096, 1)] {
        for (records, seed) in [(3usize, 1u64), (20, 2)] {
            let img = image(frame_size, records, seed);
            for ctl in [ctl_size_bit, ctl_size_bit | 2 | 4] {
                let mut input = vec![ctl];
                input.extend_from_slice(&img[..img.len().min(FRAMES_PER_SEED * frame_size as usize)]);
                let name = format!("seed-fs{frame_size}-r{records}-c{ctl}");
                std::fs::write(out.join(name), &input).expect("write seed");
                written += 1;
            }
        }
    }
    println!("wrote {written} seeds to {}", out.display());
}
