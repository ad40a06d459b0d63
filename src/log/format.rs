//! The on-disk log format: generation headers, frames and record headers.
//! DESIGN.md documents every byte; keep the two in step.
//!
//! A generation file is `frames_per_generation` frames of `frame_size` bytes:
//! slot 0 holds the generation header, slots 1 and 2 are the shadow slots for
//! the partly filled tail frame, and data frames start at slot 3.

use super::Lsn;

/// Magic at the start of every generation header.
pub const HEADER_MAGIC: [u8; 8] = *b"MVLOGHDR";
/// Magic in every frame header.
pub const FRAME_MAGIC: u32 = 0x5246_564d; // "MVFR" little-endian
/// Current format version.
pub const FORMAT_VERSION: u16 = 1;
/// Bytes of the generation header that carry data (the rest of slot 0 is zero).
pub const HEADER_LEN: usize = 128;
/// Bytes of a frame header.
pub const FRAME_HEADER_LEN: usize = 32;
/// Bytes of a record header (length and checksum).
pub const RECORD_HEADER_LEN: usize = 8;
/// The two shadow slots.
pub const SHADOW_SLOTS: [u32; 2] = [1, 2];
/// The first data frame.
pub const DATA_START: u32 = 3;
/// `first_record` value of a frame in which no record starts.
pub const NO_RECORD: u16 = u16::MAX;
/// Smallest and largest frame sizes.
pub const MIN_FRAME_SIZE: u32 = 512;
/// Frame `used` is a u16, so payloads stay below 64 KiB.
pub const MAX_FRAME_SIZE: u32 = 32 * 1024;
/// Largest generation: offsets must fit the low 32 bits of an LSN.
pub const MAX_GENERATION_SIZE: u64 = 1 << 30;
/// Frame flag: the last frame of its generation.
pub const FLAG_SEALED: u8 = 1;
/// Frame flag: a partial copy of a tail frame, stored in a shadow slot.
pub const FLAG_SHADOW: u8 = 2;

/// State byte of a generation header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GenerationState {
    /// Created ahead of time; not yet part of the log.
    Reserved = 1,
    /// Part of the log.
    Active = 2,
}

/// The random identity of a log, fixed when the log is created.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct LogSignature(pub [u8; 16]);

impl LogSignature {
    /// A fresh random signature.
    pub fn random() -> std::io::Result<LogSignature> {
        let mut bytes = [0u8; 16];
        getrandom::fill(&mut bytes).map_err(|e| std::io::Error::other(e.to_string()))?;
        Ok(LogSignature(bytes))
    }
}

impl std::fmt::Display for LogSignature {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl std::fmt::Debug for LogSignature {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LogSignature({self})")
    }
}

/// The header in slot 0 of a generation file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GenerationHeader {
    pub state: GenerationState,
    pub frame_size: u32,
    pub generation: u32,
    pub generation_size: u64,
    pub signature: LogSignature,
    pub epoch: u64,
    /// Microseconds since the Unix epoch.
    pub created_us: u64,
    /// Random; makes each activation of a generation number unique.
    pub nonce: u64,
    /// `created_us` of the previous generation (0 for the first).
    pub prev_created_us: u64,
    /// `salt` of the previous generation (0 for the first).
    pub prev_salt: u32,
    /// Accumulated frame checksum of the previous generation (0 for the first).
    pub prev_chain: u32,
    /// Most bytes one unsynced write batch can span; bounds the region that
    /// recovery wipes behind a torn tail.
    pub max_write_span: u64,
}

/// Why a header or frame is not valid. Not an error by itself: at the tail of
/// the log an invalid frame is the end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Defect {
    Zeroed,
    BadChecksum,
    BadMagic,
    BadField(&'static str),
    WrongSalt,
    WrongLsn { found: Lsn },
}

impl std::fmt::Display for Defect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Defect::Zeroed => write!(f, "all zeros"),
            Defect::BadChecksum => write!(f, "checksum mismatch"),
            Defect::BadMagic => write!(f, "bad magic"),
            Defect::BadField(name) => write!(f, "invalid field {name}"),
            Defect::WrongSalt => write!(f, "frame of another generation file (stale or foreign)"),
            Defect::WrongLsn { found } => write!(f, "frame carries LSN {found}"),
        }
    }
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(x)
}

/// Checks frame and generation sizes; returns the number of frames per generation.
pub fn check_geometry(frame_size: u32, generation_size: u64) -> Result<u32, &'static str> {
    if !frame_size.is_power_of_two() || !(MIN_FRAME_SIZE..=MAX_FRAME_SIZE).contains(&frame_size) {
        return Err("frame size must be a power of two between 512 and 32768");
    }
    if !generation_size.is_multiple_of(frame_size as u64) || generation_size > MAX_GENERATION_SIZE {
        return Err("generation size must be a multiple of the frame size and at most 1 GiB");
    }
    let frames = generation_size / frame_size as u64;
    if frames < DATA_START as u64 + 4 {
        return Err("generation size must hold at least 7 frames");
    }
    Ok(frames as u32)
}

impl GenerationHeader {
    /// Encodes into the first `HEADER_LEN` bytes of `out` and returns the salt (the header checksum).
    pub fn encode(&self, out: &mut [u8]) -> u32 {
        let b = &mut out[..HEADER_LEN];
        b.fill(0);
        b[4..12].copy_from_slice(&HEADER_MAGIC);
        b[12..14].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        b[14] = self.state as u8;
        b[16..20].copy_from_slice(&self.frame_size.to_le_bytes());
        b[20..24].copy_from_slice(&self.generation.to_le_bytes());
        b[24..32].copy_from_slice(&self.generation_size.to_le_bytes());
        b[32..48].copy_from_slice(&self.signature.0);
        b[48..56].copy_from_slice(&self.epoch.to_le_bytes());
        b[56..64].copy_from_slice(&self.created_us.to_le_bytes());
        b[64..72].copy_from_slice(&self.nonce.to_le_bytes());
        b[72..80].copy_from_slice(&self.prev_created_us.to_le_bytes());
        b[80..84].copy_from_slice(&self.prev_salt.to_le_bytes());
        b[84..88].copy_from_slice(&self.prev_chain.to_le_bytes());
        b[88..96].copy_from_slice(&self.max_write_span.to_le_bytes());
        let crc = crc32c::crc32c(&b[4..]);
        b[0..4].copy_from_slice(&crc.to_le_bytes());
        crc
    }

    /// Decodes and validates a header; returns it with its salt.
    pub fn decode(b: &[u8]) -> Result<(GenerationHeader, u32), Defect> {
        if b.len() < HEADER_LEN {
            return Err(Defect::BadField("header length"));
        }
        let b = &b[..HEADER_LEN];
        if b.iter().all(|&x| x == 0) {
            return Err(Defect::Zeroed);
        }
        if b[4..12] != HEADER_MAGIC {
            return Err(Defect::BadMagic);
        }
        let crc = u32_at(b, 0);
        if crc != crc32c::crc32c(&b[4..]) {
            return Err(Defect::BadChecksum);
        }
        if u16_at(b, 12) != FORMAT_VERSION {
            return Err(Defect::BadField("format version"));
        }
        let state = match b[14] {
            1 => GenerationState::Reserved,
            2 => GenerationState::Active,
            _ => return Err(Defect::BadField("state")),
        };
        let mut signature = [0u8; 16];
        signature.copy_from_slice(&b[32..48]);
        let header = GenerationHeader {
            state,
            frame_size: u32_at(b, 16),
            generation: u32_at(b, 20),
            generation_size: u64_at(b, 24),
            signature: LogSignature(signature),
            epoch: u64_at(b, 48),
            created_us: u64_at(b, 56),
            nonce: u64_at(b, 64),
            prev_created_us: u64_at(b, 72),
            prev_salt: u32_at(b, 80),
            prev_chain: u32_at(b, 84),
            max_write_span: u64_at(b, 88),
        };
        check_geometry(header.frame_size, header.generation_size).map_err(|_| Defect::BadField("geometry"))?;
        if header.generation == 0 {
            return Err(Defect::BadField("generation"));
        }
        Ok((header, crc))
    }

    /// Frames in this generation's file.
    pub fn frames(&self) -> u32 {
        (self.generation_size / self.frame_size as u64) as u32
    }
}

/// The header of a frame (the first 32 bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    pub crc: u32,
    pub salt: u32,
    /// LSN of the frame's home position (for a shadow copy: of the frame it copies).
    pub lsn: Lsn,
    /// Increases with each shadow write within a generation; 0 for home frames.
    pub shadow_seq: u32,
    /// Payload bytes in use.
    pub used: u16,
    /// Payload offset of the first record that starts here, or `NO_RECORD`.
    pub first_record: u16,
    pub flags: u8,
    /// Frame index where the write batch that wrote this frame began.
    pub batch_start: u32,
}

impl FrameHeader {
    /// Like [`FrameHeader::seal_into`], with the payload's crc32c computed
    /// beforehand (by the committer that filled the frame, off the leader's path).
    pub fn seal_with_payload_crc(&mut self, frame: &mut [u8], payload_crc: u32) {
        self.write_fields(frame);
        self.crc = crc32c::crc32c_append(payload_crc, &frame[4..FRAME_HEADER_LEN]);
        frame[0..4].copy_from_slice(&self.crc.to_le_bytes());
    }

    /// Writes the header into `frame` and seals it with its checksum.
    pub fn seal_into(&mut self, frame: &mut [u8]) {
        self.write_fields(frame);
        self.crc = frame_checksum(frame);
        frame[0..4].copy_from_slice(&self.crc.to_le_bytes());
    }

    fn write_fields(&self, frame: &mut [u8]) {
        frame[4..8].copy_from_slice(&self.salt.to_le_bytes());
        frame[8..16].copy_from_slice(&self.lsn.0.to_le_bytes());
        frame[16..20].copy_from_slice(&self.shadow_seq.to_le_bytes());
        frame[20..22].copy_from_slice(&self.used.to_le_bytes());
        frame[22..24].copy_from_slice(&self.first_record.to_le_bytes());
        frame[24] = self.flags;
        frame[25..28].copy_from_slice(&self.batch_start.to_le_bytes()[..3]);
        frame[28..32].copy_from_slice(&FRAME_MAGIC.to_le_bytes());
    }

    /// Decodes a whole frame and validates its checksum and fields. The caller
    /// checks salt and LSN against what it expects at this position.
    pub fn decode(frame: &[u8]) -> Result<FrameHeader, Defect> {
        let size = frame.len();
        if !(MIN_FRAME_SIZE as usize..=MAX_FRAME_SIZE as usize).contains(&size) || !size.is_power_of_two() {
            return Err(Defect::BadField("frame size"));
        }
        if frame[..FRAME_HEADER_LEN].iter().all(|&x| x == 0) {
            return Err(Defect::Zeroed);
        }
        if u32_at(frame, 28) != FRAME_MAGIC {
            return Err(Defect::BadMagic);
        }
        let crc = u32_at(frame, 0);
        if crc != frame_checksum(frame) {
            return Err(Defect::BadChecksum);
        }
        let batch_start = u32::from_le_bytes([frame[25], frame[26], frame[27], 0]);
        let header = FrameHeader {
            crc,
            salt: u32_at(frame, 4),
            lsn: Lsn(u64_at(frame, 8)),
            shadow_seq: u32_at(frame, 16),
            used: u16_at(frame, 20),
            first_record: u16_at(frame, 22),
            flags: frame[24],
            batch_start,
        };
        let payload = size - FRAME_HEADER_LEN;
        if header.used as usize > payload {
            return Err(Defect::BadField("used"));
        }
        if header.first_record != NO_RECORD && header.first_record >= header.used {
            return Err(Defect::BadField("first_record"));
        }
        if header.flags & !(FLAG_SEALED | FLAG_SHADOW) != 0 {
            return Err(Defect::BadField("flags"));
        }
        if (header.flags & FLAG_SHADOW != 0) != (header.shadow_seq != 0) {
            return Err(Defect::BadField("shadow_seq"));
        }
        Ok(header)
    }

    pub fn is_shadow(&self) -> bool {
        self.flags & FLAG_SHADOW != 0
    }

    pub fn is_sealed(&self) -> bool {
        self.flags & FLAG_SEALED != 0
    }
}

/// A frame's checksum: crc32c over the payload area, then over header bytes
/// 4..32. Payload first, so a committer can checksum a frame it closed and
/// the leader only folds in the 28 header bytes it fills.
pub fn frame_checksum(frame: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(&frame[FRAME_HEADER_LEN..]), &frame[4..FRAME_HEADER_LEN])
}

/// Encodes a record header: body length and crc32c of the body.
pub fn record_header(len: usize, crc: u32) -> [u8; RECORD_HEADER_LEN] {
    let mut h = [0u8; RECORD_HEADER_LEN];
    h[0..4].copy_from_slice(&(len as u32).to_le_bytes());
    h[4..8].copy_from_slice(&crc.to_le_bytes());
    h
}

/// Decodes a record header into (length, checksum).
pub fn decode_record_header(h: &[u8]) -> (u32, u32) {
    (u32_at(h, 0), u32_at(h, 4))
}

/// Adds one home frame to the chain checksum of its generation: a wrapping
/// sum of crc32c(index, frame checksum), so frames can be added in any order
/// (committers write the interior frames of large records themselves).
pub fn chain_add(chain: u32, index: u32, frame_crc: u32) -> u32 {
    let mut b = [0u8; 8];
    b[..4].copy_from_slice(&index.to_le_bytes());
    b[4..].copy_from_slice(&frame_crc.to_le_bytes());
    chain.wrapping_add(crc32c::crc32c(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> GenerationHeader {
        GenerationHeader {
            state: GenerationState::Active,
            frame_size: 4096,
            generation: 7,
            generation_size: 1 << 20,
            signature: LogSignature([9; 16]),
            epoch: 2,
            created_us: 1234,
            nonce: 99,
            prev_created_us: 1000,
            prev_salt: 5,
            prev_chain: 6,
            max_write_span: 1 << 20,
        }
    }

    #[test]
    fn header_roundtrips_and_detects_flips() {
        let mut buf = vec![0u8; 4096];
        let salt = header().encode(&mut buf);
        assert_eq!(GenerationHeader::decode(&buf), Ok((header(), salt)));
        for i in 0..HEADER_LEN {
            let mut bad = buf.clone();
            bad[i] ^= 0x10;
            assert!(GenerationHeader::decode(&bad).is_err(), "flip at byte {i} accepted");
        }
        assert_eq!(GenerationHeader::decode(&[0u8; 4096]), Err(Defect::Zeroed));
    }

    #[test]
    fn frame_roundtrips_and_detects_flips() {
        let mut frame = vec![0u8; 512];
        frame[FRAME_HEADER_LEN..FRAME_HEADER_LEN + 10].copy_from_slice(b"0123456789");
        let mut h = FrameHeader {
            crc: 0,
            salt: 77,
            lsn: Lsn::new(3, 512 * 4),
            shadow_seq: 0,
            used: 10,
            first_record: 0,
            flags: FLAG_SEALED,
            batch_start: 4,
        };
        h.seal_into(&mut frame);
        assert_eq!(FrameHeader::decode(&frame), Ok(h));
        let mut combined = frame.clone();
        let mut h2 = h;
        h2.seal_with_payload_crc(&mut combined, crc32c::crc32c(&frame[FRAME_HEADER_LEN..]));
        assert_eq!(combined, frame, "a precomputed payload checksum seals the same frame");
        for i in 0..frame.len() {
            let mut bad = frame.clone();
            bad[i] ^= 1;
            assert!(FrameHeader::decode(&bad).is_err(), "flip at byte {i} accepted");
        }
    }

    #[test]
    fn geometry_limits() {
        assert!(check_geometry(4096, 16 << 20).is_ok());
        assert!(check_geometry(4000, 16 << 20).is_err());
        assert!(check_geometry(4096, (16 << 20) + 1).is_err());
        assert!(check_geometry(4096, 4096 * 6).is_err());
        assert!(check_geometry(4096, 2 << 30).is_err());
    }
}
