//! The replication wire protocol: versioned frames, each with a crc32c, and
//! the messages they carry (DESIGN.md, "Replication wire protocol", has the
//! layout byte by byte). Decoding never trusts a length: every length is
//! checked against a fixed bound before anything is allocated.

use crate::log::Lsn;
use std::io::{Read, Write};

/// First bytes of every frame.
pub const MAGIC: [u8; 4] = *b"MVRP";
/// The protocol version this build speaks.
pub const VERSION: u8 = 1;
/// Frame header length.
pub const HEADER_LEN: usize = 20;
/// Largest payload, on the wire and uncompressed.
pub const MAX_PAYLOAD: usize = 32 << 20;
/// Flag: the payload is zstd-compressed.
const COMPRESSED: u8 = 1;

/// A protocol violation or a damaged frame.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum WireError {
    /// The frame does not start with the magic.
    #[error("not a mailvault replication frame (magic {0:02x?})")]
    BadMagic([u8; 4]),
    /// The peer speaks another protocol version.
    #[error("protocol version {0}, this build speaks {VERSION}")]
    Version(u8),
    /// The frame's checksum does not match.
    #[error("frame checksum {found:08x}, computed {computed:08x}")]
    Checksum {
        /// In the frame.
        found: u32,
        /// Over what arrived.
        computed: u32,
    },
    /// A length over the bounds.
    #[error("frame payload of {0} bytes exceeds the maximum of {MAX_PAYLOAD}")]
    TooLarge(u64),
    /// A payload that does not decode.
    #[error("bad {message} message: {reason}")]
    Malformed {
        /// The message type.
        message: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// A message type this version does not know.
    #[error("unknown message type {0}")]
    UnknownType(u8),
    /// Unknown flag bits.
    #[error("unknown frame flags {0:#04x}")]
    Flags(u8),
}

/// A database's identity as a copy states it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The copy's own id (random, kept in its directory); zero from the active.
    pub copy: [u8; 16],
    /// Signature of the database (`[0; 16]` for a copy with no database yet).
    pub database: [u8; 16],
    /// Signature of its log.
    pub log: [u8; 16],
    /// Highest epoch the copy has seen.
    pub epoch: u64,
    /// Where the copy's log ends: it wants everything from here.
    pub position: Lsn,
}

/// Every message of the protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// Copy → active: opens the session with the copy's nonce.
    Hello { nonce: [u8; 32] },
    /// Active → copy: the active's nonce and its proof of the key.
    Challenge { nonce: [u8; 32], proof: [u8; 32] },
    /// Copy → active: the copy's proof of the key.
    Proof { proof: [u8; 32] },
    /// Copy → active: which database the copy holds, and its position.
    Identify(Identity),
    /// Either way: the session is refused or ended, with the reason.
    Refuse { code: u16, reason: String },
    /// Active → copy: accepted; shipping starts at `start`.
    Accept { identity: Identity, start: Lsn },
    /// Active → copy: a generation's header slot (frame 0 of its file).
    GenerationHeader { generation: u32, bytes: Vec<u8> },
    /// Active → copy: consecutive home frames, the first at `first`.
    Frames {
        first: Lsn,
        frame_size: u32,
        bytes: Vec<u8>,
    },
    /// Active → copy: the current image of the open (partly filled) frame.
    Tail { frame: Vec<u8> },
    /// Active → copy: nothing new; the active's durable end and clock.
    Heartbeat { durable: Lsn, time_us: u64 },
    /// Copy → active: how far the copy has inspected and replayed; a
    /// lagged copy holds the active's log only until it has inspected it.
    Ack {
        inspected: Lsn,
        replayed: Lsn,
        lagged: bool,
    },
    /// Active → copy: a seed starts; the database header (page 0's image)
    /// of the checkpoint it starts from.
    SeedBegin { header: Vec<u8> },
    /// Active → copy: consecutive pages of the seed, the first numbered
    /// `first`; a never-written page is all zeros.
    SeedPages { first: u32, page_size: u32, bytes: Vec<u8> },
    /// Active → copy: the seed's pages are all sent; the file has `pages`.
    SeedEnd { pages: u32 },
    /// Copy → active, instead of `Identify`: the copy holds part of a seed
    /// (its identity's `position` is the seed's redo point) and asks for
    /// the pages from `next_page` on.
    ResumeSeed { identity: Identity, next_page: u32 },
    /// Active → copy: the seed goes on from page `first`, against the
    /// header the copy already holds (`SeedPages` and `SeedEnd` follow).
    SeedResumed { first: u32 },
}

impl Message {
    fn kind(&self) -> u8 {
        match self {
            Message::Hello { .. } => 1,
            Message::Challenge { .. } => 2,
            Message::Proof { .. } => 3,
            Message::Identify(_) => 4,
            Message::Refuse { .. } => 5,
            Message::Accept { .. } => 6,
            Message::GenerationHeader { .. } => 7,
            Message::Frames { .. } => 8,
            Message::Tail { .. } => 9,
            Message::Heartbeat { .. } => 10,
            Message::Ack { .. } => 11,
            Message::SeedBegin { .. } => 12,
            Message::SeedPages { .. } => 13,
            Message::SeedEnd { .. } => 14,
            Message::ResumeSeed { .. } => 15,
            Message::SeedResumed { .. } => 16,
        }
    }

    /// The message's name, for errors and logs.
    pub fn name(&self) -> &'static str {
        kind_name(self.kind()).unwrap_or("?")
    }

    /// Appends the payload to `p`.
    fn encode_payload_into(&self, p: &mut Vec<u8>) {
        match self {
            Message::Hello { nonce } => p.extend_from_slice(nonce),
            Message::Challenge { nonce, proof } => {
                p.extend_from_slice(nonce);
                p.extend_from_slice(proof);
            }
            Message::Proof { proof } => p.extend_from_slice(proof),
            Message::Identify(id) => put_identity(p, id),
            Message::Refuse { code, reason } => {
                p.extend_from_slice(&code.to_le_bytes());
                let mut cut = reason.len().min(MAX_REASON);
                while !reason.is_char_boundary(cut) {
                    cut -= 1;
                }
                p.extend_from_slice(&reason.as_bytes()[..cut]);
            }
            Message::Accept { identity, start } => {
                put_identity(p, identity);
                p.extend_from_slice(&start.0.to_le_bytes());
            }
            Message::GenerationHeader { generation, bytes } => {
                p.extend_from_slice(&generation.to_le_bytes());
                p.extend_from_slice(bytes);
            }
            Message::Frames {
                first,
                frame_size,
                bytes,
            } => {
                p.extend_from_slice(&first.0.to_le_bytes());
                p.extend_from_slice(&frame_size.to_le_bytes());
                p.extend_from_slice(bytes);
            }
            Message::Tail { frame } => p.extend_from_slice(frame),
            Message::Heartbeat { durable, time_us } => {
                p.extend_from_slice(&durable.0.to_le_bytes());
                p.extend_from_slice(&time_us.to_le_bytes());
            }
            Message::Ack {
                inspected,
                replayed,
                lagged,
            } => {
                p.extend_from_slice(&inspected.0.to_le_bytes());
                p.extend_from_slice(&replayed.0.to_le_bytes());
                p.push(u8::from(*lagged));
            }
            Message::SeedBegin { header } => p.extend_from_slice(header),
            Message::SeedPages {
                first,
                page_size,
                bytes,
            } => {
                p.extend_from_slice(&first.to_le_bytes());
                p.extend_from_slice(&page_size.to_le_bytes());
                p.extend_from_slice(bytes);
            }
            Message::SeedEnd { pages } => p.extend_from_slice(&pages.to_le_bytes()),
            Message::ResumeSeed { identity, next_page } => {
                put_identity(p, identity);
                p.extend_from_slice(&next_page.to_le_bytes());
            }
            Message::SeedResumed { first } => p.extend_from_slice(&first.to_le_bytes()),
        }
    }

    /// Decodes a payload of message type `kind`.
    pub fn decode(kind: u8, p: &[u8]) -> Result<Message, WireError> {
        let name = kind_name(kind).ok_or(WireError::UnknownType(kind))?;
        let bad = |reason: String| WireError::Malformed { message: name, reason };
        let exact = |n: usize| {
            if p.len() == n {
                Ok(())
            } else {
                Err(bad(format!("{} bytes, expected {n}", p.len())))
            }
        };
        let at_least = |n: usize| {
            if p.len() >= n {
                Ok(())
            } else {
                Err(bad(format!("{} bytes, expected at least {n}", p.len())))
            }
        };
        Ok(match kind {
            1 => {
                exact(32)?;
                Message::Hello { nonce: arr(&p[..32]) }
            }
            2 => {
                exact(64)?;
                Message::Challenge {
                    nonce: arr(&p[..32]),
                    proof: arr(&p[32..64]),
                }
            }
            3 => {
                exact(32)?;
                Message::Proof { proof: arr(&p[..32]) }
            }
            4 => {
                exact(IDENTITY_LEN)?;
                Message::Identify(get_identity(p))
            }
            5 => {
                at_least(2)?;
                if p.len() > 2 + MAX_REASON {
                    return Err(bad(format!("reason of {} bytes", p.len() - 2)));
                }
                let reason = std::str::from_utf8(&p[2..]).map_err(|_| bad("reason is not UTF-8".into()))?;
                Message::Refuse {
                    code: u16::from_le_bytes([p[0], p[1]]),
                    reason: reason.to_string(),
                }
            }
            6 => {
                exact(IDENTITY_LEN + 8)?;
                Message::Accept {
                    identity: get_identity(p),
                    start: Lsn(u64_at(p, IDENTITY_LEN)),
                }
            }
            7 => {
                at_least(4)?;
                Message::GenerationHeader {
                    generation: u32::from_le_bytes(arr(&p[..4])),
                    bytes: p[4..].to_vec(),
                }
            }
            8 => {
                at_least(12)?;
                let frame_size = u32::from_le_bytes(arr(&p[8..12]));
                let bytes = &p[12..];
                whole_units(bytes, frame_size, 512..=32768, "frame").map_err(bad)?;
                Message::Frames {
                    first: Lsn(u64_at(p, 0)),
                    frame_size,
                    bytes: bytes.to_vec(),
                }
            }
            9 => {
                if !p.len().is_power_of_two() || !(512..=32768).contains(&p.len()) {
                    return Err(bad(format!("a frame of {} bytes", p.len())));
                }
                Message::Tail { frame: p.to_vec() }
            }
            10 => {
                exact(16)?;
                Message::Heartbeat {
                    durable: Lsn(u64_at(p, 0)),
                    time_us: u64_at(p, 8),
                }
            }
            11 => {
                exact(17)?;
                Message::Ack {
                    inspected: Lsn(u64_at(p, 0)),
                    replayed: Lsn(u64_at(p, 8)),
                    lagged: match p[16] {
                        0 => false,
                        1 => true,
                        b => return Err(bad(format!("lagged byte {b}"))),
                    },
                }
            }
            12 => {
                if !p.len().is_power_of_two() || !(4096..=65536).contains(&p.len()) {
                    return Err(bad(format!("a header page of {} bytes", p.len())));
                }
                Message::SeedBegin { header: p.to_vec() }
            }
            13 => {
                let (first, page_size, bytes) = seed_pages_fields(p)?;
                Message::SeedPages {
                    first,
                    page_size,
                    bytes: bytes.to_vec(),
                }
            }
            14 => {
                exact(4)?;
                Message::SeedEnd {
                    pages: u32::from_le_bytes(arr(p)),
                }
            }
            15 => {
                exact(IDENTITY_LEN + 4)?;
                Message::ResumeSeed {
                    identity: get_identity(p),
                    next_page: u32::from_le_bytes(arr(&p[IDENTITY_LEN..])),
                }
            }
            _ => {
                exact(4)?;
                Message::SeedResumed {
                    first: u32::from_le_bytes(arr(p)),
                }
            }
        })
    }
}

const MAX_REASON: usize = 1024;
const IDENTITY_LEN: usize = 16 + 16 + 16 + 8 + 8;

fn kind_name(kind: u8) -> Option<&'static str> {
    const NAMES: [&str; 16] = [
        "Hello",
        "Challenge",
        "Proof",
        "Identify",
        "Refuse",
        "Accept",
        "GenerationHeader",
        "Frames",
        "Tail",
        "Heartbeat",
        "Ack",
        "SeedBegin",
        "SeedPages",
        "SeedEnd",
        "ResumeSeed",
        "SeedResumed",
    ];
    NAMES.get(usize::from(kind).checked_sub(1)?).copied()
}

/// Checks that `bytes` is one or more whole units (frames, pages) of
/// `size`, a power of two within `sizes`.
pub(crate) fn whole_units(
    bytes: &[u8],
    size: u32,
    sizes: std::ops::RangeInclusive<u32>,
    unit: &str,
) -> Result<(), String> {
    if !size.is_power_of_two() || !sizes.contains(&size) {
        return Err(format!("{unit} size {size}"));
    }
    if bytes.is_empty() || !bytes.len().is_multiple_of(size as usize) {
        return Err(format!("{} bytes of {unit}s of {size}", bytes.len()));
    }
    Ok(())
}

fn arr<const N: usize>(b: &[u8]) -> [u8; N] {
    let mut a = [0u8; N];
    a.copy_from_slice(&b[..N]);
    a
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(arr(&b[at..at + 8]))
}

fn put_identity(p: &mut Vec<u8>, id: &Identity) {
    p.extend_from_slice(&id.copy);
    p.extend_from_slice(&id.database);
    p.extend_from_slice(&id.log);
    p.extend_from_slice(&id.epoch.to_le_bytes());
    p.extend_from_slice(&id.position.0.to_le_bytes());
}

fn get_identity(p: &[u8]) -> Identity {
    Identity {
        copy: arr(&p[..16]),
        database: arr(&p[16..32]),
        log: arr(&p[32..48]),
        epoch: u64_at(p, 48),
        position: Lsn(u64_at(p, 56)),
    }
}

/// Encodes `msg` as one frame, compressing its payload with zstd at
/// `level` when given and worth it.
pub fn encode(msg: &Message, compress: Option<i32>) -> Vec<u8> {
    let mut frame = Vec::new();
    encode_into(msg, compress, &mut frame);
    frame
}

/// Appends one frame holding `msg` to `out`. The payload is written in
/// place behind the header: shipped log is not copied again here.
pub fn encode_into(msg: &Message, compress: Option<i32>, out: &mut Vec<u8>) {
    let start = out.len();
    out.resize(start + HEADER_LEN, 0);
    msg.encode_payload_into(out);
    finish_frame(out, start, msg.kind(), compress);
}

/// Fills in the header of the frame at `out[start..]`, whose payload (of
/// message type `kind`) follows the `HEADER_LEN` bytes kept for it and
/// runs to the end of `out`; compresses the payload first when asked and
/// worth it.
pub(crate) fn finish_frame(out: &mut Vec<u8>, start: usize, kind: u8, compress: Option<i32>) {
    let plain_len = out.len() - start - HEADER_LEN;
    let mut flags = 0;
    if let Some(level) = compress
        && let Ok(packed) = zstd::bulk::compress(&out[start + HEADER_LEN..], level)
        && packed.len() < plain_len
    {
        out.truncate(start + HEADER_LEN);
        out.extend_from_slice(&packed);
        flags = COMPRESSED;
    }
    let wire_len = out.len() - start - HEADER_LEN;
    let head = &mut out[start..start + HEADER_LEN];
    head[..4].copy_from_slice(&MAGIC);
    head[4..8].copy_from_slice(&[VERSION, kind, flags, 0]);
    head[8..12].copy_from_slice(&(wire_len as u32).to_le_bytes());
    head[12..16].copy_from_slice(&(plain_len as u32).to_le_bytes());
    let crc = crc32c::crc32c_append(crc32c::crc32c(&out[start..start + 16]), &out[start + HEADER_LEN..]);
    out[start + 16..start + HEADER_LEN].copy_from_slice(&crc.to_le_bytes());
}

/// A frame header, checked.
#[derive(Debug, Clone, Copy)]
pub struct FrameHeader {
    kind: u8,
    flags: u8,
    wire_len: usize,
    plain_len: usize,
    crc: u32,
    raw: [u8; 16],
}

/// Checks a frame header; returns it with the payload length to read.
pub fn decode_header(h: &[u8; HEADER_LEN]) -> Result<FrameHeader, WireError> {
    let magic = arr::<4>(&h[..4]);
    if magic != MAGIC {
        return Err(WireError::BadMagic(magic));
    }
    if h[4] != VERSION {
        return Err(WireError::Version(h[4]));
    }
    if h[6] & !COMPRESSED != 0 || h[7] != 0 {
        return Err(WireError::Flags(h[6] | h[7]));
    }
    let wire_len = u32::from_le_bytes(arr(&h[8..12])) as usize;
    let plain_len = u32::from_le_bytes(arr(&h[12..16])) as usize;
    for len in [wire_len, plain_len] {
        if len > MAX_PAYLOAD {
            return Err(WireError::TooLarge(len as u64));
        }
    }
    if h[6] & COMPRESSED == 0 && wire_len != plain_len {
        return Err(WireError::Malformed {
            message: "frame",
            reason: format!("uncompressed payload of {wire_len} bytes claims {plain_len}"),
        });
    }
    Ok(FrameHeader {
        kind: h[5],
        flags: h[6],
        wire_len,
        plain_len,
        crc: u32::from_le_bytes(arr(&h[16..20])),
        raw: arr(&h[..16]),
    })
}

impl FrameHeader {
    /// Bytes of payload that follow on the wire.
    pub fn wire_len(&self) -> usize {
        self.wire_len
    }

    /// Checks the payload against the checksum, decompresses and decodes it.
    pub fn decode_payload(&self, body: &[u8]) -> Result<Message, WireError> {
        let mut plain = Vec::new();
        Message::decode(self.kind, self.plain(body, &mut plain)?)
    }

    /// The payload of `body` once checked against the checksum, and
    /// decompressed into `scratch` if it was compressed.
    pub(crate) fn plain<'a>(&self, body: &'a [u8], scratch: &'a mut Vec<u8>) -> Result<&'a [u8], WireError> {
        let computed = crc32c::crc32c_append(crc32c::crc32c(&self.raw), body);
        if computed != self.crc {
            return Err(WireError::Checksum {
                found: self.crc,
                computed,
            });
        }
        if self.flags & COMPRESSED == 0 {
            return Ok(body);
        }
        // The declared length bounds the output: no decompression bomb.
        *scratch = zstd::bulk::decompress(body, self.plain_len).map_err(|e| WireError::Malformed {
            message: "frame",
            reason: format!("payload does not decompress: {e}"),
        })?;
        if scratch.len() != self.plain_len {
            return Err(WireError::Malformed {
                message: "frame",
                reason: format!(
                    "payload decompresses to {} bytes, not {}",
                    scratch.len(),
                    self.plain_len
                ),
            });
        }
        Ok(scratch)
    }

    pub(crate) fn kind(&self) -> u8 {
        self.kind
    }
}

/// Decodes one whole frame from `bytes`; returns the message and the bytes used.
pub fn decode(bytes: &[u8]) -> Result<Option<(Message, usize)>, WireError> {
    let Some(head) = bytes.get(..HEADER_LEN) else {
        return Ok(None);
    };
    let header = decode_header(&arr(head))?;
    let Some(body) = bytes.get(HEADER_LEN..HEADER_LEN + header.wire_len) else {
        return Ok(None);
    };
    Ok(Some((header.decode_payload(body)?, HEADER_LEN + header.wire_len)))
}

/// What reading a message can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RecvError {
    /// The connection failed or closed.
    #[error("connection: {0}")]
    Io(#[from] std::io::Error),
    /// The bytes are not a valid frame.
    #[error(transparent)]
    Wire(#[from] WireError),
}

/// Reads one message from a stream.
pub fn read_message(r: &mut dyn Read) -> Result<Message, RecvError> {
    Ok(FrameReader::default().read(r)?.message()?)
}

/// Writes one message to a stream.
pub fn write_message(w: &mut dyn Write, msg: &Message, compress: Option<i32>) -> std::io::Result<()> {
    w.write_all(&encode(msg, compress))
}

mod reader;
use reader::seed_pages_fields;
pub use reader::{FrameReader, Payload, SeedPagesRef, seed_pages_frame};

#[cfg(test)]
mod tests;
