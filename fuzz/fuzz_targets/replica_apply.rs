//! A copy's log replica (`LogReplica::apply`) fed hostile chunks: the bytes
//! a copy takes from the wire after `repl_wire` decoded the messages.
//!
//! 1. A real log is made once on a `SimVfs` (frame 512, generation 64
//!    frames, several generations); `FrameSource` cuts its durable log into
//!    chunks of sizes from the input.
//! 2. The chunks are mutated by the input: bytes flipped (with the frame or
//!    header checksum fixed, so the field checks are reached, or not),
//!    positions and frame sizes changed, headers and tails dropped or moved,
//!    chunks skipped, repeated or swapped.
//! 3. They are applied in turn to a fresh replica, with syncs and reopens
//!    from the replica's files in between.
//!
//! Nothing may panic. ORACLE: a run whose chunks were all left whole and in
//! order must end with the replica holding the source's whole durable log.

#![no_main]

use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use mailvault::log::codec::{HEADER_LEN, frame_checksum};
use mailvault::log::{FrameSource, GenerationHeader, Log, LogOptions, LogReplica, LogSignature, Lsn, ShipChunk};
use mailvault::vfs::{SharedVfs, SimVfs};
use std::sync::OnceLock;

const FS: usize = 512;
const GENERATION_FRAMES: u64 = 64;
const MAX_STEPS: usize = 48;
/// Generation sizes a header is re-encoded with are cut to this: the
/// simulated disk holds files in memory, and a copy reserves a generation's
/// size (up to the format's 1 GiB, as a real log of that size would).
const MAX_SIM_GENERATION: u64 = 1 << 20;

struct Source {
    vfs: SharedVfs,
    durable: Lsn,
}

/// The active's log, made once: records of varied sizes over several
/// generations, closed so its files no longer change.
fn source() -> &'static Source {
    static SOURCE: OnceLock<Source> = OnceLock::new();
    SOURCE.get_or_init(|| {
        let vfs: SharedVfs = SimVfs::new(7);
        let opts = LogOptions {
            frame_size: FS as u32,
            generation_size: GENERATION_FRAMES * FS as u64,
            buffer_size: 8 * FS,
            max_record_size: 2048,
            signature: Some(LogSignature(*b"mailvault-fuzz!!")),
            ..LogOptions::default()
        };
        let log = Log::create(vfs.clone(), "/active", opts).expect("a log on the simulated disk");
        for n in 0..160u32 {
            let len = 1 + (n as usize * 97) % 1400;
            log.commit(&vec![n as u8; len]).expect("a commit on the simulated disk");
        }
        let durable = log.durable_lsn();
        log.close().expect("a clean close");
        Source { vfs, durable }
    })
}

#[derive(Debug, Arbitrary)]
enum Mutation {
    /// Flip a byte of the frames; `fix` recomputes that frame's checksum.
    FlipFrame {
        at: u16,
        xor: u8,
        fix: bool,
    },
    /// Flip a byte of the generation header; `fix` re-encodes it.
    FlipHeader {
        at: u8,
        xor: u8,
        fix: bool,
    },
    /// Change a header field and re-encode (salt changes with it).
    HeaderField {
        field: u8,
        value: u64,
    },
    FlipTail {
        at: u16,
        xor: u8,
    },
    MoveFirst {
        by: i16,
    },
    FrameSize {
        size: u32,
    },
    DropHeader,
    DropTail,
    /// Cut the frames to a length (not a whole number of frames, often).
    CutFrames {
        len: u16,
    },
    /// The header of another generation number.
    Renumber {
        generation: u32,
    },
}

#[derive(Debug, Arbitrary)]
enum Step {
    /// The next chunk of the source (size in frames), mutated.
    Next {
        frames: u8,
        mutations: Vec<Mutation>,
    },
    /// The chunk from a position of the input's choosing.
    From {
        generation: u8,
        frame: u8,
        frames: u8,
    },
    /// The last chunk read, again.
    Again,
    Sync,
    Reopen,
}

fn mutate(chunk: &mut ShipChunk, m: &Mutation) {
    match *m {
        Mutation::FlipFrame { at, xor, fix } => {
            if chunk.frames.is_empty() {
                return;
            }
            let i = at as usize % chunk.frames.len();
            chunk.frames[i] ^= xor;
            if fix {
                let start = i / FS * FS;
                if start + FS <= chunk.frames.len() {
                    let crc = frame_checksum(&chunk.frames[start..start + FS]);
                    chunk.frames[start..start + 4].copy_from_slice(&crc.to_le_bytes());
                }
            }
        }
        Mutation::FlipHeader { at, xor, fix } => {
            if let Some((_, bytes)) = &mut chunk.header
                && !bytes.is_empty()
            {
                let i = at as usize % bytes.len().min(HEADER_LEN);
                let before = GenerationHeader::decode(bytes).ok();
                bytes[i] ^= xor;
                if fix && let Some((mut h, _)) = before {
                    // Field bytes changed by the flip are re-read where they
                    // still decode; otherwise the old header is re-encoded.
                    if let Ok((changed, _)) = GenerationHeader::decode(bytes) {
                        h = changed;
                    }
                    h.generation_size = h.generation_size.min(MAX_SIM_GENERATION);
                    h.encode(bytes);
                }
            }
        }
        Mutation::HeaderField { field, value } => {
            if let Some((_, bytes)) = &mut chunk.header
                && let Ok((mut h, _)) = GenerationHeader::decode(bytes)
            {
                match field % 8 {
                    0 => h.prev_chain = value as u32,
                    1 => h.prev_salt = value as u32,
                    2 => h.prev_created_us = value,
                    3 => h.epoch = value,
                    4 => h.generation = value as u32,
                    5 => h.generation_size = value,
                    6 => h.frame_size = value as u32,
                    _ => h.created_us = value,
                }
                h.generation_size = h.generation_size.min(MAX_SIM_GENERATION);
                h.encode(bytes);
            }
        }
        Mutation::FlipTail { at, xor } => {
            if let Some(tail) = &mut chunk.tail
                && !tail.is_empty()
            {
                let i = at as usize % tail.len();
                tail[i] ^= xor;
            }
        }
        Mutation::MoveFirst { by } => {
            chunk.first = Lsn(chunk.first.0.wrapping_add_signed(i64::from(by) * FS as i64));
        }
        Mutation::FrameSize { size } => chunk.frame_size = size,
        Mutation::DropHeader => chunk.header = None,
        Mutation::DropTail => chunk.tail = None,
        Mutation::CutFrames { len } => chunk.frames.truncate(len as usize),
        Mutation::Renumber { generation } => {
            if let Some((g, _)) = &mut chunk.header {
                *g = generation;
            }
        }
    }
}

fuzz_target!(|steps: Vec<Step>| {
    let src = source();
    let frames = FrameSource::new(src.vfs.clone(), "/active");
    let disk: SharedVfs = SimVfs::new(11);
    let Ok(mut replica) = LogReplica::open(disk.clone(), "/copy") else {
        return;
    };
    replica.start_at(Lsn::new(1, 0));
    let mut last: Option<ShipChunk> = None;
    let mut intact = true;
    for step in steps.iter().take(MAX_STEPS) {
        match step {
            Step::Next { frames: n, mutations } => {
                let max = (1 + *n as usize % 12) * FS;
                let Ok(mut chunk) = frames.read(replica.next(), src.durable, max) else {
                    intact = false;
                    continue;
                };
                for m in mutations.iter().take(8) {
                    mutate(&mut chunk, m);
                }
                let applied = replica.apply(&chunk);
                if mutations.is_empty() && intact {
                    if let Err(e) = applied {
                        panic!("ORACLE: an intact chunk in order was refused: {e}");
                    }
                } else {
                    intact = false;
                }
                last = Some(chunk);
            }
            Step::From {
                generation,
                frame,
                frames: n,
            } => {
                intact = false;
                let at = Lsn::new(1 + u32::from(*generation) % 6, u32::from(*frame) % 64 * FS as u32);
                if let Ok(chunk) = frames.read(at, src.durable, (1 + *n as usize % 12) * FS) {
                    let _ = replica.apply(&chunk);
                    last = Some(chunk);
                }
            }
            Step::Again => {
                if let Some(chunk) = &last {
                    intact = false;
                    let _ = replica.apply(chunk);
                }
            }
            Step::Sync => {
                let _ = replica.sync();
            }
            Step::Reopen => {
                let _ = replica.sync();
                match LogReplica::open(disk.clone(), "/copy") {
                    Ok(r) => replica = r,
                    Err(_) => return,
                }
                // As the active's Accept does; nothing once a generation arrived.
                replica.start_at(Lsn::new(1, 0));
            }
        }
        if replica.is_stopped() {
            return;
        }
    }
    if !intact {
        return;
    }
    // Whole and in order so far: the rest of the log must apply too.
    loop {
        let chunk = frames
            .read(replica.next(), src.durable, 16 * FS)
            .expect("ORACLE: the source reads");
        if chunk.is_empty() {
            break;
        }
        replica.apply(&chunk).expect("ORACLE: an intact chunk in order applies");
        if chunk.tail.is_some() {
            break;
        }
    }
    assert_eq!(
        replica.end(),
        src.durable,
        "ORACLE: the replica holds the whole durable log"
    );
});
