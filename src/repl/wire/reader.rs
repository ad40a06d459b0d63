//! Frames read into, and seed frames built in, buffers kept from message
//! to message: a stream of large frames (seed pages, shipped log) then
//! allocates and zeroes nothing per frame, and seed pages are checked and
//! written where they arrived.

use super::{HEADER_LEN, Message, RecvError, WireError, arr, decode_header, finish_frame, whole_units};
use crate::vfs::UNCACHED_ALIGN;
use std::io::Read;

/// Message type of `SeedPages`.
const SEED_PAGES: u8 = 13;

/// Bytes of a `SeedPages` payload before its pages.
const SEED_PREFIX: usize = 8;

/// A `SeedPages` payload's fields: first page, page size and the pages.
pub(super) fn seed_pages_fields(p: &[u8]) -> Result<(u32, u32, &[u8]), WireError> {
    let bad = |reason: String| WireError::Malformed {
        message: "SeedPages",
        reason,
    };
    if p.len() < 8 {
        return Err(bad(format!("{} bytes, expected at least 8", p.len())));
    }
    let page_size = u32::from_le_bytes(arr(&p[4..8]));
    let bytes = &p[8..];
    whole_units(bytes, page_size, 4096..=65536, "page").map_err(bad)?;
    Ok((u32::from_le_bytes(arr(&p[..4])), page_size, bytes))
}

/// Buffers reused from frame to frame; they grow to the largest frame
/// seen, which `MAX_PAYLOAD` bounds.
#[derive(Default)]
pub struct FrameReader {
    body: Vec<u8>,
    plain: Vec<u8>,
    /// The last frame read: its kind, and where its payload is.
    last: Option<(u8, Held)>,
}

/// Where a payload is held.
#[derive(Clone, Copy)]
enum Held {
    Body { start: usize, len: usize },
    Decompressed,
}

/// Where in `buf` a payload starts so that the bytes after a `SeedPages`
/// prefix are aligned for an uncached write where they arrived.
fn payload_start(buf: &[u8]) -> usize {
    let after_prefix = buf.as_ptr() as usize + SEED_PREFIX;
    (UNCACHED_ALIGN - after_prefix % UNCACHED_ALIGN) % UNCACHED_ALIGN
}

/// A checked, decompressed payload, borrowed from its reader.
pub struct Payload<'a> {
    kind: u8,
    bytes: &'a [u8],
}

/// `SeedPages` as it arrived.
pub struct SeedPagesRef<'a> {
    pub first: u32,
    pub page_size: u32,
    pub bytes: &'a [u8],
}

impl FrameReader {
    /// Reads one frame and checks its checksum.
    pub fn read<'a>(&'a mut self, r: &mut dyn Read) -> Result<Payload<'a>, RecvError> {
        let mut head = [0u8; HEADER_LEN];
        r.read_exact(&mut head)?;
        let header = decode_header(&head)?;
        let len = header.wire_len();
        // Grown only, so bytes already there are not zeroed again.
        if self.body.len() < len + UNCACHED_ALIGN {
            self.body.resize(len + UNCACHED_ALIGN, 0);
        }
        let start = payload_start(&self.body);
        self.last = None;
        let body = &mut self.body[start..start + len];
        r.read_exact(body)?;
        let bytes = header.plain(body, &mut self.plain)?;
        let held = if bytes.as_ptr() == body.as_ptr() {
            Held::Body { start, len }
        } else {
            Held::Decompressed
        };
        self.last = Some((header.kind(), held));
        Ok(Payload {
            kind: header.kind(),
            bytes,
        })
    }

    /// The payload of the last frame read, if it was read whole and checked.
    pub fn last(&self) -> Option<Payload<'_>> {
        let (kind, held) = self.last?;
        let bytes = match held {
            Held::Body { start, len } => &self.body[start..start + len],
            Held::Decompressed => &self.plain[..],
        };
        Some(Payload { kind, bytes })
    }
}

impl<'a> Payload<'a> {
    /// The message, decoded into owned fields.
    pub fn message(&self) -> Result<Message, WireError> {
        Message::decode(self.kind, self.bytes)
    }

    /// The pages, if this is `SeedPages`, without copying them.
    pub fn seed_pages(&self) -> Option<Result<SeedPagesRef<'a>, WireError>> {
        (self.kind == SEED_PAGES).then(|| {
            seed_pages_fields(self.bytes).map(|(first, page_size, bytes)| SeedPagesRef {
                first,
                page_size,
                bytes,
            })
        })
    }
}

/// Builds a `SeedPages` frame in `frame` (reused: its bytes are
/// overwritten, not zeroed first): `fill` writes the `count` pages of
/// `page_size` bytes from `first` into the slice it is given, every byte.
pub fn seed_pages_frame<E>(
    frame: &mut Vec<u8>,
    first: u32,
    page_size: u32,
    count: u32,
    compress: Option<i32>,
    fill: impl FnOnce(&mut [u8]) -> Result<(), E>,
) -> Result<(), E> {
    let pages_at = HEADER_LEN + SEED_PREFIX;
    let len = pages_at + count as usize * page_size as usize;
    frame.resize(len, 0);
    frame[HEADER_LEN..HEADER_LEN + 4].copy_from_slice(&first.to_le_bytes());
    frame[HEADER_LEN + 4..pages_at].copy_from_slice(&page_size.to_le_bytes());
    fill(&mut frame[pages_at..])?;
    finish_frame(frame, 0, SEED_PAGES, compress);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::{Message, decode, encode};
    use super::*;

    #[test]
    fn a_reader_reused_across_frames_of_every_size_gives_what_was_sent() {
        let messages = [
            Message::SeedPages {
                first: 7,
                page_size: 4096,
                bytes: (0..3 * 4096).map(|i| (i % 251) as u8).collect(),
            },
            Message::SeedEnd { pages: 10 },
            Message::SeedPages {
                first: 9,
                page_size: 4096,
                bytes: vec![3; 4096],
            },
        ];
        let mut wire = Vec::new();
        for (i, m) in messages.iter().enumerate() {
            wire.extend_from_slice(&encode(m, (i == 2).then_some(3)));
        }
        let mut reader = FrameReader::default();
        let mut r = &wire[..];
        for (i, m) in messages.iter().enumerate() {
            reader.read(&mut r).unwrap();
            let payload = reader.last().unwrap();
            assert_eq!(&payload.message().unwrap(), m);
            match (m, payload.seed_pages()) {
                (
                    Message::SeedPages {
                        first,
                        page_size,
                        bytes,
                    },
                    Some(Ok(p)),
                ) => {
                    assert_eq!((p.first, p.page_size, p.bytes), (*first, *page_size, &bytes[..]));
                    // Uncompressed pages arrive aligned for an uncached
                    // write (the third message was compressed).
                    assert_eq!(crate::vfs::uncached_aligned(p.bytes, 0), i == 0);
                }
                (Message::SeedEnd { .. }, None) => {}
                _ => panic!("seed_pages() disagrees with the message"),
            }
        }
        assert!(r.is_empty());
    }

    #[test]
    fn a_built_seed_frame_matches_the_encoded_message_and_is_checked() {
        let bytes: Vec<u8> = (0..2 * 4096).map(|i| (i % 13) as u8).collect();
        // A frame left longer by an earlier message is cut to size.
        let mut frame = vec![0xee; 5 * 4096];
        seed_pages_frame::<()>(&mut frame, 4, 4096, 2, None, |out| {
            out.copy_from_slice(&bytes);
            Ok(())
        })
        .unwrap();
        let msg = Message::SeedPages {
            first: 4,
            page_size: 4096,
            bytes,
        };
        assert_eq!(frame, encode(&msg, None));
        let (decoded, used) = decode(&frame).unwrap().unwrap();
        assert_eq!((decoded, used), (msg, frame.len()));
        frame[HEADER_LEN + 100] ^= 1;
        let mut reader = FrameReader::default();
        assert!(matches!(
            reader.read(&mut &frame[..]),
            Err(RecvError::Wire(WireError::Checksum { .. }))
        ));
        // A failing fill is the builder's error.
        assert_eq!(seed_pages_frame(&mut frame, 0, 4096, 1, None, |_| Err(5)), Err(5));
    }
}
