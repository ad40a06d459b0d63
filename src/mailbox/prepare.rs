//! Compressing a body ahead of its transaction, on the delivering thread:
//! one LZ4 block for a body of one chunk (most mail); for a longer one,
//! chunks of base64 lines packed to their bytes (attachments) and LZ4 (or,
//! if the store asks, zstd) chunks of text; raw where nothing shrinks (the
//! layouts are in `body`).

use super::TextCompression;
use super::base64_lines;
use super::body::{CHUNK_RAW, Encoding, LINES_CHUNK, LZ4_CHUNK, RAW_CHUNK, ZSTD_CHUNK};
use super::error::{MailError, Result};
use crate::btree::ValueBuilder;
use std::io::Read;

/// A body compressed and checksummed ahead of its transaction, so that the
/// work happens on the delivering thread, not under the writer lock.
#[derive(Debug, Clone)]
pub struct PreparedBody {
    pub(crate) raw_len: u64,
    pub(crate) checksum: u32,
    pub(crate) encoding: Encoding,
    pub(crate) chunks: Vec<u8>,
    /// The stored bytes, in the pages they will be stored in once they
    /// outgrow one: never copied again, nor held in one allocation.
    pub(crate) data: ValueBuilder,
}

impl PreparedBody {
    /// The body's length as delivered.
    pub fn raw_len(&self) -> u64 {
        self.raw_len
    }

    /// Bytes it takes stored (data and chunk table).
    pub fn stored_len(&self) -> u64 {
        self.data.len() + self.chunks.len() as u64
    }

    /// crc32c of the body as delivered.
    pub fn checksum(&self) -> u32 {
        self.checksum
    }
}

thread_local! {
    /// Each delivering thread's compressor and its level: creating a zstd
    /// context per message cost 3 % of the active's CPU in `bench
    /// replication` (and its allocations and page faults as much again).
    static COMPRESSOR: std::cell::RefCell<Option<(i32, zstd::bulk::Compressor<'static>)>> =
        const { std::cell::RefCell::new(None) };
}

/// Compresses `reader` (at most `max` bytes) chunk by chunk, the text of a
/// long body as `text` says.
pub(crate) fn prepare(
    reader: &mut dyn Read,
    text: TextCompression,
    max: u64,
    page_size: usize,
) -> Result<PreparedBody> {
    let TextCompression::Zstd(level) = text else {
        return prepare_with(TextCodec::Lz4, reader, max, page_size);
    };
    COMPRESSOR.with(|cell| {
        // A reader that itself delivers mail on this thread finds the cache
        // taken: it gets a compressor of its own.
        let Ok(mut cached) = cell.try_borrow_mut() else {
            let mut own = zstd::bulk::Compressor::new(level).map_err(MailError::Read)?;
            return prepare_with(TextCodec::Zstd(&mut own), reader, max, page_size);
        };
        let compressor = match &mut *cached {
            Some((l, c)) if *l == level => c,
            _ => {
                &mut cached
                    .insert((level, zstd::bulk::Compressor::new(level).map_err(MailError::Read)?))
                    .1
            }
        };
        prepare_with(TextCodec::Zstd(compressor), reader, max, page_size)
    })
}

/// What compresses the chunks of a long body that do not pack.
enum TextCodec<'a> {
    Lz4,
    Zstd(&'a mut zstd::bulk::Compressor<'static>),
}

/// Compresses `raw` into `out` (cleared first) as one LZ4 block.
fn lz4_into(raw: &[u8], out: &mut Vec<u8>) -> Result<()> {
    out.clear();
    out.resize(lz4_flex::block::get_maximum_output_size(raw.len()), 0);
    let len = lz4_flex::block::compress_into(raw, out).map_err(|e| MailError::Read(std::io::Error::other(e)))?;
    out.truncate(len);
    Ok(())
}

fn prepare_with(mut text: TextCodec<'_>, reader: &mut dyn Read, max: u64, page_size: usize) -> Result<PreparedBody> {
    let mut raw = vec![0u8; CHUNK_RAW];
    let mut packed = Vec::with_capacity(zstd::zstd_safe::compress_bound(CHUNK_RAW));
    let mut body = PreparedBody {
        raw_len: 0,
        checksum: 0,
        encoding: Encoding::TaggedChunks,
        chunks: Vec::new(),
        data: ValueBuilder::new(page_size)?,
    };
    let mut any_packed = false;
    loop {
        let n = fill(reader, &mut raw)?;
        if n == 0 {
            break;
        }
        body.raw_len += n as u64;
        if body.raw_len > max {
            return Err(MailError::BodyTooLarge { len: body.raw_len, max });
        }
        body.checksum = crc32c::crc32c_append(body.checksum, &raw[..n]);
        packed.clear();
        let tag;
        if body.raw_len == n as u64 && n < raw.len() {
            // The reader ended within the first chunk: the whole body.
            body.encoding = Encoding::Lz4Chunk;
            lz4_into(&raw[..n], &mut packed)?;
            tag = None;
        } else {
            body.encoding = Encoding::TaggedChunks;
            // Attachments: lines packed to their bytes come out about as
            // small as zstd's entropy coding makes them, several times faster.
            base64_lines::pack(&raw[..n], &mut packed);
            if packed.len() * 4 <= n * 3 {
                tag = Some(LINES_CHUNK);
            } else if let TextCodec::Zstd(compressor) = &mut text {
                tag = Some(ZSTD_CHUNK);
                packed.clear();
                compressor
                    .compress_to_buffer(&raw[..n], &mut packed)
                    .map_err(MailError::Read)?;
            } else {
                tag = Some(LZ4_CHUNK);
                lz4_into(&raw[..n], &mut packed)?;
            }
        }
        let flag = if packed.len() + usize::from(tag.is_some()) < n {
            any_packed = true;
            if let Some(tag) = tag {
                body.data.extend_from_slice(&[tag])?;
            }
            body.data.extend_from_slice(&packed)?;
            0
        } else {
            body.data.extend_from_slice(&raw[..n])?;
            RAW_CHUNK
        };
        // max_body_bytes is capped below 2^31 at open, so ends fit in 31 bits.
        body.chunks
            .extend_from_slice(&(body.data.len() as u32 | flag).to_le_bytes());
        if n < raw.len() {
            break;
        }
    }
    if !any_packed {
        body.encoding = Encoding::Raw;
        body.chunks.clear();
    }
    Ok(body)
}

/// Reads until `buf` is full or the reader ends.
fn fill(reader: &mut dyn Read, buf: &mut [u8]) -> Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match reader.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(MailError::Read(e)),
        }
    }
    Ok(got)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_compresses_random_bytes_stay_raw_and_limits_hold() {
        let text = b"Subject: hello\r\n\r\nthe quick brown fox ".repeat(2000);
        let body = prepare(&mut &text[..], TextCompression::Zstd(3), 1 << 20, 16384).unwrap();
        assert_eq!(body.encoding, Encoding::TaggedChunks);
        // A body of one chunk takes LZ4.
        let short = &text[..5000];
        let one = prepare(&mut &short[..], TextCompression::Zstd(3), 1 << 20, 16384).unwrap();
        assert_eq!(one.encoding, Encoding::Lz4Chunk);
        assert!(one.stored_len() < 1000, "{}", one.stored_len());
        assert_eq!(one.checksum, crc32c::crc32c(short));
        assert!(body.stored_len() < text.len() as u64 / 4);
        assert_eq!(body.checksum, crc32c::crc32c(&text));
        let mut x = 0x9e3779b97f4a7c15u64;
        let noise: Vec<u8> = (0..40_000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        let body = prepare(&mut &noise[..], TextCompression::Zstd(3), 1 << 20, 16384).unwrap();
        assert_eq!(body.encoding, Encoding::Raw);
        assert_eq!(body.data.to_vec(), noise);
        assert!(matches!(
            prepare(&mut &noise[..], TextCompression::Zstd(3), 39_999, 16384),
            Err(MailError::BodyTooLarge { max: 39_999, .. })
        ));
    }
}
