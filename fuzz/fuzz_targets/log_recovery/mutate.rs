//! Step 2 of `log_recovery`: the directory image changed as the input says.

use super::*;

fn files(sim: &SimVfs) -> Vec<String> {
    sim.list(&dir()).unwrap_or_default()
}

fn pick(sim: &SimVfs, sel: u8) -> Option<PathBuf> {
    let names = files(sim);
    if names.is_empty() {
        return None;
    }
    Some(dir().join(&names[sel as usize % names.len()]))
}

fn name_path(sim: &SimVfs, name: &Name) -> PathBuf {
    let gens: Vec<u32> = files(sim).iter().filter_map(|n| parse_generation(n)).collect();
    let first = gens.iter().copied().min().unwrap_or(1);
    let last = gens.iter().copied().max().unwrap_or(0);
    let file_name = match name {
        Name::AfterLast(k) => generation_name(last.saturating_add(u32::from(k % 4) + 1)),
        Name::BeforeFirst(k) => generation_name(first.saturating_sub(u32::from(k % 4) + 1)),
        Name::Generation(g) => generation_name(*g),
        Name::Recycled(g) => format!("recycle-{}", generation_name(*g)),
        Name::Raw(s) => s.chars().take(24).collect(),
    };
    dir().join(file_name)
}

fn image(sim: &SimVfs, path: &Path) -> Vec<u8> {
    sim.written_image(path).unwrap_or_default()
}

fn read_uint(bytes: &[u8], at: usize, width: usize) -> u64 {
    let mut b = [0u8; 8];
    for (i, slot) in b.iter_mut().enumerate().take(width) {
        *slot = bytes.get(at + i).copied().unwrap_or(0);
    }
    u64::from_le_bytes(b)
}

fn write_uint(bytes: &mut [u8], at: usize, width: usize, value: u64) {
    bytes[at..at + width].copy_from_slice(&value.to_le_bytes()[..width]);
}

fn reseal_header(h: &mut [u8]) {
    let crc = crc32c::crc32c(&h[4..HEADER_LEN]);
    h[0..4].copy_from_slice(&crc.to_le_bytes());
}

fn reseal_frame(frame: &mut [u8]) {
    let crc = frame_checksum(frame);
    frame[0..4].copy_from_slice(&crc.to_le_bytes());
}

/// The bytes of frame `slot` (zeros past the end of the file).
fn frame_of(img: &[u8], slot: usize) -> Vec<u8> {
    let mut frame = vec![0u8; FS];
    let start = slot * FS;
    if start < img.len() {
        let end = img.len().min(start + FS);
        frame[..end - start].copy_from_slice(&img[start..end]);
    }
    frame
}

fn slot_of(sel: u8) -> usize {
    sel as usize % GENERATION_FRAMES as usize
}

/// Frame `from_slot` of `from`, ready to be written at `to_slot` of `to`.
fn copied_frame(
    sim: &SimVfs,
    from: u8,
    from_slot: u8,
    to: u8,
    to_slot: u8,
    retarget: bool,
) -> Option<(PathBuf, u64, Vec<u8>)> {
    let src = pick(sim, from)?;
    let dst = pick(sim, to)?;
    let to_slot = slot_of(to_slot).max(1);
    let mut frame = frame_of(&image(sim, &src), slot_of(from_slot).max(1));
    if retarget {
        let dst_img = image(sim, &dst);
        let salt = read_uint(&dst_img, 0, 4);
        let generation = read_uint(&dst_img, 20, 4) as u32;
        let shadow = frame[24] & FLAG_SHADOW != 0;
        write_uint(&mut frame, 4, 4, salt);
        if !shadow {
            write_uint(&mut frame, 8, 8, Lsn::new(generation, (to_slot * FS) as u32).0);
        }
        write_uint(&mut frame, 28, 4, u64::from(FRAME_MAGIC));
        reseal_frame(&mut frame);
    }
    Some((dst, (to_slot * FS) as u64, frame))
}

fn write_file(sim: &SimVfs, path: &Path, bytes: &[u8]) -> io::Result<()> {
    let file = sim.open(path, OpenMode::CreateOrOpen)?;
    file.set_len(0)?;
    file.write_at(bytes, 0)?;
    file.sync_data()?;
    sim.sync_dir(&dir())
}

fn content_bytes(sim: &SimVfs, path: &Path, content: &Content) -> Vec<u8> {
    let generation = path
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(parse_generation)
        .unwrap_or(0);
    match content {
        Content::Bytes(b) => b.iter().take(MAX_BYTES).copied().collect(),
        Content::CopyOf(sel) => pick(sim, *sel).map(|p| image(sim, &p)).unwrap_or_default(),
        Content::CopyRenumbered(sel) => {
            let mut img = pick(sim, *sel).map(|p| image(sim, &p)).unwrap_or_default();
            if img.len() >= HEADER_LEN {
                write_uint(&mut img, 20, 4, u64::from(generation));
                reseal_header(&mut img);
            }
            img
        }
        Content::Reserved => {
            let header = GenerationHeader {
                state: GenerationState::Reserved,
                frame_size: FS as u32,
                generation: generation.max(1),
                generation_size: GENERATION_FRAMES * FS as u64,
                signature: SIG,
                epoch: 0,
                created_us: 1,
                nonce: 0,
                prev_created_us: 0,
                prev_salt: 0,
                prev_chain: 0,
                max_write_span: 0,
            };
            let mut img = vec![0u8; GENERATION_FRAMES as usize * FS];
            header.encode(&mut img);
            img
        }
        Content::Zeros(n) => vec![0u8; *n as usize],
    }
}

pub(super) fn mutate(sim: &SimVfs, m: &Mutation) -> io::Result<()> {
    let missing = || io::Error::other("no file");
    match m {
        Mutation::Poke { file, offset, bytes } => {
            let path = pick(sim, *file).ok_or_else(missing)?;
            sim.poke(&path, u64::from(*offset), &bytes[..bytes.len().min(MAX_BYTES)])
        }
        Mutation::SetHeaderField { file, field, value } => {
            let path = pick(sim, *file).ok_or_else(missing)?;
            let mut h = frame_of(&image(sim, &path), 0);
            let (at, width) = field.at();
            let new = value.apply(read_uint(&h, at, width), width);
            write_uint(&mut h, at, width, new);
            reseal_header(&mut h);
            sim.poke(&path, 0, &h[..HEADER_LEN])
        }
        Mutation::SetFrameField {
            file,
            slot,
            field,
            value,
        } => {
            let path = pick(sim, *file).ok_or_else(missing)?;
            let slot = slot_of(*slot).max(1);
            let mut frame = frame_of(&image(sim, &path), slot);
            let (at, width) = field.at();
            let new = value.apply(read_uint(&frame, at, width), width);
            write_uint(&mut frame, at, width, new);
            reseal_frame(&mut frame);
            sim.poke(&path, (slot * FS) as u64, &frame)
        }
        Mutation::CopyFrame {
            from,
            from_slot,
            to,
            to_slot,
            retarget,
        } => {
            let (dst, offset, frame) =
                copied_frame(sim, *from, *from_slot, *to, *to_slot, *retarget).ok_or_else(missing)?;
            sim.poke(&dst, offset, &frame)
        }
        Mutation::ZeroFrame { file, slot } => {
            let path = pick(sim, *file).ok_or_else(missing)?;
            sim.poke(&path, (slot_of(*slot) * FS) as u64, &[0u8; FS])
        }
        Mutation::Truncate { file, len } => {
            let path = pick(sim, *file).ok_or_else(missing)?;
            let f = sim.open(&path, OpenMode::Existing)?;
            f.set_len(u64::from(*len))?;
            f.sync_data()
        }
        Mutation::AddFile { name, content } => {
            let path = name_path(sim, name);
            let bytes = content_bytes(sim, &path, content);
            write_file(sim, &path, &bytes)
        }
        Mutation::Remove { file } => {
            let path = pick(sim, *file).ok_or_else(missing)?;
            sim.remove(&path)?;
            sim.sync_dir(&dir())
        }
        Mutation::Rename { file, to } => {
            let path = pick(sim, *file).ok_or_else(missing)?;
            let to = name_path(sim, to);
            sim.rename(&path, &to)?;
            sim.sync_dir(&dir())
        }
        Mutation::UnsyncedCopyFrame {
            from,
            from_slot,
            to,
            to_slot,
            retarget,
        } => {
            let (dst, offset, frame) =
                copied_frame(sim, *from, *from_slot, *to, *to_slot, *retarget).ok_or_else(missing)?;
            sim.open(&dst, OpenMode::Existing)?.write_at(&frame, offset)
        }
        Mutation::UnsyncedWrite { file, offset, bytes } => {
            let path = pick(sim, *file).ok_or_else(missing)?;
            let f = sim.open(&path, OpenMode::Existing)?;
            f.write_at(&bytes[..bytes.len().min(MAX_BYTES)], u64::from(*offset))
        }
        Mutation::UnsyncedSetLen { file, len } => {
            let path = pick(sim, *file).ok_or_else(missing)?;
            sim.open(&path, OpenMode::Existing)?.set_len(u64::from(*len))
        }
        Mutation::Crash { mode } => {
            sim.set_crash_mode(mode.crash_mode());
            sim.crash();
            sim.restart();
            Ok(())
        }
    }
}

// ---------------------------------------------------------------- step 3: recovery
