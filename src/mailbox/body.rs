//! Message bodies: compressed in independent chunks, so that a byte range
//! is read by decompressing only the chunks it covers (IMAP partial fetch).
//! A body of one chunk (most mail) is compressed with LZ4, which decodes
//! several times faster than zstd with no tables to build per frame. A
//! longer one is tagged chunks: base64 lines packed to the bytes they encode
//! (attachments, which only entropy coding would shrink, and slowly), or
//! zstd (DESIGN.md, "Chunk size and codecs", "Base64 lines"). A chunk that does not
//! shrink is stored raw; a body none of whose chunks shrink is stored raw
//! whole, with no chunk table.
//!
//! A body is two entries of the bodies table (DESIGN.md): its meta record
//! (reference count, lengths, encoding, checksum, chunk table), and its
//! stored bytes (a long value once past a page).

use super::base64_lines;
use super::codec::{DecodeResult, Decoder};
use super::error::{MailError, Result};
use super::prepare::PreparedBody;
use crate::btree::{self, Value};
use crate::pager::{PageNo, PageRead};
use std::io::Write;

/// Raw bytes per compressed chunk: a 4 KiB partial fetch decompresses one
/// chunk read from at most two pages (DESIGN.md has the measurement).
pub const CHUNK_RAW: usize = 16 << 10;

/// Bytes of a meta record before its chunk table.
const META_HEADER: u64 = 30;

/// Chunk-table flag: this chunk is stored raw.
pub(crate) const RAW_CHUNK: u32 = 1 << 31;

/// How a body's bytes are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// As delivered.
    Raw = 0,
    /// zstd chunks of `CHUNK_RAW` raw bytes, some possibly raw.
    ZstdChunks = 1,
    /// One chunk (the body is at most `CHUNK_RAW` bytes), an LZ4 block.
    Lz4Chunk = 2,
    /// Chunks of `CHUNK_RAW` raw bytes, each raw or a codec byte and its
    /// payload: [`ZSTD_CHUNK`] a zstd frame, [`LINES_CHUNK`] base64 lines
    /// packed to their bytes (`base64_lines`), [`LZ4_CHUNK`] an LZ4 block.
    TaggedChunks = 3,
}

/// Codec byte of a tagged chunk: a zstd frame follows.
pub(crate) const ZSTD_CHUNK: u8 = 0;
/// Codec byte of a tagged chunk: packed base64 lines follow.
pub(crate) const LINES_CHUNK: u8 = 1;
/// Codec byte of a tagged chunk: an LZ4 block follows.
pub(crate) const LZ4_CHUNK: u8 = 2;

thread_local! {
    /// Each reading thread's zstd decompressor: creating a context per
    /// body costs allocations and page faults on every fetch.
    static DECOMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> =
        const { std::cell::RefCell::new(None) };
}

/// The meta record of a stored body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BodyMeta {
    pub refcount: u32,
    pub raw_len: u64,
    pub stored_len: u64,
    pub encoding: Encoding,
    pub checksum: u32,
    /// Per chunk, u32: bit 31 set if stored raw, bits 0–30 the end offset
    /// of the chunk in the stored bytes. Empty for a raw body.
    pub chunks: Vec<u8>,
}

impl BodyMeta {
    pub fn of(body: &PreparedBody) -> BodyMeta {
        BodyMeta {
            refcount: 1,
            raw_len: body.raw_len,
            stored_len: body.data.len(),
            encoding: body.encoding,
            checksum: body.checksum,
            chunks: body.chunks.clone(),
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(30 + self.chunks.len());
        v.push(1);
        v.extend_from_slice(&self.refcount.to_le_bytes());
        v.extend_from_slice(&self.raw_len.to_le_bytes());
        v.extend_from_slice(&self.stored_len.to_le_bytes());
        v.push(self.encoding as u8);
        v.extend_from_slice(&(CHUNK_RAW as u32).to_le_bytes());
        v.extend_from_slice(&self.checksum.to_le_bytes());
        v.extend_from_slice(&self.chunks);
        v
    }

    pub fn decode(bytes: &[u8]) -> DecodeResult<BodyMeta> {
        let mut d = Decoder::new(bytes);
        if d.u8()? != 1 {
            return Err("body record version".into());
        }
        let refcount = d.u32()?;
        let raw_len = d.u64()?;
        let stored_len = d.u64()?;
        let encoding = match d.u8()? {
            0 => Encoding::Raw,
            1 => Encoding::ZstdChunks,
            2 => Encoding::Lz4Chunk,
            3 => Encoding::TaggedChunks,
            e => return Err(format!("encoding {e}")),
        };
        let chunk = d.u32()?;
        let checksum = d.u32()?;
        let chunks = d.rest().to_vec();
        if chunk as usize != CHUNK_RAW {
            return Err(format!("chunk size {chunk}, this build reads {CHUNK_RAW}"));
        }
        if refcount == 0 {
            return Err("reference count 0".into());
        }
        if encoding == Encoding::Raw && raw_len != stored_len {
            return Err(format!("raw body of {raw_len} bytes stored in {stored_len}"));
        }
        if encoding == Encoding::Lz4Chunk && raw_len > CHUNK_RAW as u64 {
            return Err(format!("an LZ4 body of {raw_len} bytes, more than one chunk"));
        }
        let want = match encoding {
            Encoding::Raw => 0,
            Encoding::ZstdChunks | Encoding::Lz4Chunk | Encoding::TaggedChunks => {
                raw_len.div_ceil(CHUNK_RAW as u64) * 4
            }
        };
        if chunks.len() as u64 != want {
            return Err(format!("chunk table of {} bytes, {want} expected", chunks.len()));
        }
        Ok(BodyMeta {
            refcount,
            raw_len,
            stored_len,
            encoding,
            checksum,
            chunks,
        })
    }
}

/// Reads exactly `buf.len()` bytes of a stored value from `offset`.
pub(crate) fn read_value_at<S: PageRead + ?Sized>(store: &S, value: &Value, offset: u64, buf: &mut [u8]) -> Result<()> {
    let want = buf.len();
    let short = || {
        MailError::Db(crate::pager::DbError::corrupt(
            store.file_path(),
            0,
            format!(
                "a stored body value of {} bytes is shorter than {offset} + {want}",
                value.len(),
            ),
        ))
    };
    match value {
        Value::Inline(bytes) => {
            let start = usize::try_from(offset).map_err(|_| short())?;
            let end = start.checked_add(buf.len()).ok_or_else(short)?;
            let src = bytes.get(start..end).ok_or_else(short)?;
            buf.copy_from_slice(src);
        }
        Value::Long(long) => {
            let mut done = 0;
            while done < buf.len() {
                let n = btree::read_long(store, long, offset + done as u64, &mut buf[done..])?;
                if n == 0 {
                    return Err(short());
                }
                done += n;
            }
        }
    }
    Ok(())
}

/// A stored body opened for reading: its meta record and values.
pub(crate) struct StoredBody<'s, S: PageRead + ?Sized> {
    pub store: &'s S,
    pub id: u64,
    pub meta: BodyMeta,
    pub data: Value,
}

impl<S: PageRead + ?Sized> StoredBody<'_, S> {
    fn corrupt(&self, reason: String) -> MailError {
        corrupt(self.store.file_path(), self.id, reason)
    }

    fn chunk_span(&self, i: u64) -> Result<(u64, u64, bool)> {
        chunk_span(&self.meta, i).map_err(|reason| self.corrupt(reason))
    }

    /// Writes raw bytes `offset..offset + len` (cut at the body's end) to
    /// `out`, reading only the chunks they cover. Returns the bytes written.
    pub fn copy_range(&self, offset: u64, len: u64, out: &mut dyn Write) -> Result<u64> {
        let end = offset.saturating_add(len).min(self.meta.raw_len);
        if offset >= end {
            return Ok(0);
        }
        if self.meta.encoding == Encoding::Raw {
            let mut buf = vec![0u8; CHUNK_RAW];
            let mut at = offset;
            while at < end {
                let n = (end - at).min(CHUNK_RAW as u64) as usize;
                read_value_at(self.store, &self.data, at, &mut buf[..n])?;
                out.write_all(&buf[..n]).map_err(MailError::Read)?;
                at += n as u64;
            }
            return Ok(end - offset);
        }
        DECOMPRESSOR.with(|cell| {
            // A writer that itself reads bodies on this thread finds the
            // cache taken: it gets a decompressor of its own.
            let Ok(mut cached) = cell.try_borrow_mut() else {
                let mut own = zstd::bulk::Decompressor::new().map_err(MailError::Read)?;
                return self.copy_chunks(&mut own, offset, end, out);
            };
            let decompressor = match &mut *cached {
                Some(d) => d,
                None => cached.insert(zstd::bulk::Decompressor::new().map_err(MailError::Read)?),
            };
            self.copy_chunks(decompressor, offset, end, out)
        })
    }

    /// The whole body.
    pub fn read_all(&self) -> Result<Vec<u8>> {
        if self.meta.encoding != Encoding::Lz4Chunk {
            let mut out = Vec::with_capacity(self.meta.raw_len as usize);
            self.copy_range(0, self.meta.raw_len, &mut out)?;
            return Ok(out);
        }
        match &self.data {
            Value::Inline(bytes) => one_chunk(&self.meta, bytes).map_err(|reason| self.corrupt(reason)),
            Value::Long(_) => {
                let (_, end, _) = self.chunk_span(0)?;
                // An LZ4 chunk that did not shrink is stored raw: a longer
                // one is corrupt (and must not size a buffer).
                if end > self.meta.raw_len {
                    return Err(self.corrupt(format!(
                        "chunk 0 stored in {end} bytes, more than its {}",
                        self.meta.raw_len
                    )));
                }
                let mut stored = vec![0u8; end as usize];
                read_value_at(self.store, &self.data, 0, &mut stored)?;
                one_chunk(&self.meta, &stored).map_err(|reason| self.corrupt(reason))
            }
        }
    }

    /// `copy_range` of a compressed body.
    fn copy_chunks(
        &self,
        decompressor: &mut zstd::bulk::Decompressor<'static>,
        offset: u64,
        end: u64,
        out: &mut dyn Write,
    ) -> Result<u64> {
        let mut stored = Vec::new();
        let mut raw = vec![0u8; CHUNK_RAW];
        let chunk = CHUNK_RAW as u64;
        for i in offset / chunk..end.div_ceil(chunk) {
            let chunk_start = i * chunk;
            let chunk_len = (self.meta.raw_len - chunk_start).min(chunk) as usize;
            let (s, e, is_raw) = self.chunk_span(i)?;
            // A chunk is stored only if it shrank: a longer one is corrupt
            // (and must not size a buffer).
            if e - s > chunk_len as u64 {
                return Err(self.corrupt(format!(
                    "chunk {i} stored in {} bytes, more than its {chunk_len}",
                    e - s
                )));
            }
            stored.resize((e - s) as usize, 0);
            read_value_at(self.store, &self.data, s, &mut stored)?;
            let plain: &[u8] = if is_raw {
                if stored.len() != chunk_len {
                    return Err(self.corrupt(format!("raw chunk {i} holds {} bytes, not {chunk_len}", stored.len())));
                }
                &stored
            } else {
                let undecodable = |e: String| self.corrupt(format!("chunk {i} does not decompress: {e}"));
                let n = match (self.meta.encoding, stored.split_first()) {
                    (Encoding::Lz4Chunk, _) => lz4_flex::block::decompress_into(&stored, &mut raw[..chunk_len])
                        .map_err(|e| undecodable(e.to_string()))?,
                    (Encoding::TaggedChunks, Some((&LINES_CHUNK, packed))) => {
                        base64_lines::unpack(packed, &mut raw[..chunk_len]).map_err(undecodable)?
                    }
                    (Encoding::TaggedChunks, Some((&LZ4_CHUNK, block))) => {
                        lz4_flex::block::decompress_into(block, &mut raw[..chunk_len])
                            .map_err(|e| undecodable(e.to_string()))?
                    }
                    (Encoding::TaggedChunks, Some((&ZSTD_CHUNK, frame))) => decompressor
                        .decompress_to_buffer(frame, &mut raw[..])
                        .map_err(|e| undecodable(e.to_string()))?,
                    (Encoding::TaggedChunks, tag) => {
                        return Err(self.corrupt(format!("chunk {i} has codec byte {:?}", tag.map(|t| *t.0))));
                    }
                    _ => decompressor
                        .decompress_to_buffer(&stored, &mut raw[..])
                        .map_err(|e| undecodable(e.to_string()))?,
                };
                if n != chunk_len {
                    return Err(self.corrupt(format!("chunk {i} decompresses to {n} bytes, not {chunk_len}")));
                }
                &raw[..n]
            };
            let from = offset.saturating_sub(chunk_start) as usize;
            let to = ((end - chunk_start) as usize).min(chunk_len);
            out.write_all(&plain[from..to]).map_err(MailError::Read)?;
        }
        Ok(end - offset)
    }
}

/// Body `id` of the store in `file` is corrupt.
fn corrupt(file: &std::path::Path, id: u64, reason: String) -> MailError {
    MailError::Corrupt {
        file: file.to_path_buf(),
        table: super::schema::BODIES,
        key: format!("body {id}"),
        reason,
    }
}

/// The stored range and rawness of chunk `i` of a body.
fn chunk_span(meta: &BodyMeta, i: u64) -> std::result::Result<(u64, u64, bool), String> {
    let entry = |i: u64| -> std::result::Result<u32, String> {
        let at = usize::try_from(i * 4).ok();
        match at.and_then(|at| meta.chunks.get(at..at + 4)) {
            Some(b) => Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]])),
            None => Err(format!("no chunk-table entry {i}")),
        }
    };
    let start = if i == 0 {
        0
    } else {
        u64::from(entry(i - 1)? & !RAW_CHUNK)
    };
    let e = entry(i)?;
    let end = u64::from(e & !RAW_CHUNK);
    if end < start || end > meta.stored_len {
        return Err(format!("chunk {i} spans {start}..{end} of {}", meta.stored_len));
    }
    Ok((start, end, e & RAW_CHUNK != 0))
}

/// The body of a one-chunk LZ4 body from its stored bytes (at least its
/// chunk's): decompressed straight into the result.
fn one_chunk(meta: &BodyMeta, stored: &[u8]) -> std::result::Result<Vec<u8>, String> {
    let raw_len = meta.raw_len as usize;
    let (_, end, is_raw) = chunk_span(meta, 0)?;
    if end > meta.raw_len {
        return Err(format!("chunk 0 stored in {end} bytes, more than its {raw_len}"));
    }
    let stored = stored
        .get(..end as usize)
        .ok_or_else(|| "data shorter than its chunk".to_string())?;
    if is_raw {
        if stored.len() != raw_len {
            return Err(format!("raw chunk 0 holds {} bytes, not {raw_len}", stored.len()));
        }
        return Ok(stored.to_vec());
    }
    let mut out = vec![0u8; raw_len];
    let n =
        lz4_flex::block::decompress_into(stored, &mut out).map_err(|e| format!("chunk 0 does not decompress: {e}"))?;
    if n != raw_len {
        return Err(format!("chunk 0 decompresses to {n} bytes, not {raw_len}"));
    }
    Ok(out)
}

/// Opens body `id` for reading: its two entries found in one descent (they
/// are adjacent keys), the meta record read in place.
pub(crate) fn open<'s, S: PageRead + ?Sized>(
    store: &'s S,
    root: PageNo,
    id: u64,
    max_raw: u64,
) -> Result<StoredBody<'s, S>> {
    use super::codec::keys;
    let corrupt = |reason: String| corrupt(store.file_path(), id, reason);
    let (meta_key, data_key) = (keys::body_meta(id), keys::body_data(id));
    let meta_most = META_HEADER + 4 * max_raw.div_ceil(CHUNK_RAW as u64);
    let mut meta: Option<BodyMeta> = None;
    let mut data = None;
    btree::visit_range(
        store,
        root,
        std::ops::Bound::Included(&meta_key[..]),
        std::ops::Bound::Included(&data_key[..]),
        |k, v| {
            let Some(meta) = &meta else {
                if k != meta_key {
                    return Err(corrupt("missing".into()));
                }
                // Its length bounds the read: a hostile one must not size a buffer.
                if v.len() > meta_most {
                    return Err(corrupt(format!("a meta record of {} bytes", v.len())));
                }
                let decoded = match v {
                    btree::ValueRef::Inline(bytes) => BodyMeta::decode(bytes),
                    btree::ValueRef::Long(_) => BodyMeta::decode(&btree::read_value(store, &v.to_value())?),
                }
                .map_err(corrupt)?;
                if decoded.raw_len > max_raw {
                    return Err(corrupt(format!(
                        "{} bytes, more than the store's maximum {max_raw}",
                        decoded.raw_len
                    )));
                }
                meta = Some(decoded);
                return Ok(true);
            };
            if k == data_key {
                if v.len() != meta.stored_len {
                    return Err(corrupt(format!(
                        "data of {} bytes, meta says {}",
                        v.len(),
                        meta.stored_len
                    )));
                }
                data = Some(v.to_value());
            }
            Ok(false)
        },
    )?;
    let meta = meta.ok_or_else(|| corrupt("missing".into()))?;
    let data = data.ok_or_else(|| corrupt("data missing".into()))?;
    Ok(StoredBody { store, id, meta, data })
}

#[cfg(test)]
#[path = "body_tests.rs"]
mod tests;
