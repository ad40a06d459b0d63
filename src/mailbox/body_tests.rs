//! Tests of the stored-body layouts and their reading.
use super::super::TextCompression;
use super::super::prepare::prepare;
use super::*;

/// A store with no pages: the bodies below are inline values.
struct NoPages;

impl PageRead for NoPages {
    fn page_size(&self) -> usize {
        4096
    }
    fn file_path(&self) -> &std::path::Path {
        std::path::Path::new("/nowhere/data.mvdb")
    }
    fn page(&self, no: PageNo) -> crate::pager::Result<crate::pager::PageRef> {
        Err(crate::pager::DbError::corrupt(
            self.file_path(),
            u64::from(no),
            "no pages here",
        ))
    }
}

/// A long body of text and an attachment, with each text codec: its
/// text chunks are LZ4 blocks or zstd frames, its attachment's chunks
/// packed lines, and it reads back whole and by ranges across chunk
/// ends; a bad codec byte is corrupt.
#[test]
fn tagged_chunks_mix_codecs_and_read_back_by_range() {
    for (codec, tag) in [
        (TextCompression::Lz4, LZ4_CHUNK),
        (TextCompression::Zstd(1), ZSTD_CHUNK),
    ] {
        mixed_body_reads_back(codec, tag);
    }
    assert_eq!(TextCompression::default(), TextCompression::Lz4);
}

fn mixed_body_reads_back(codec: TextCompression, text_tag: u8) {
    let mut text = b"Subject: report\r\nContent-Type: multipart/mixed\r\n\r\n".to_vec();
    text.extend(b"the figures for the quarter are attached, words words. ".repeat(700));
    text.extend(b"\r\n--b\r\nContent-Transfer-Encoding: base64\r\n\r\n");
    let mut x = 0x2545f4914f6cdd1du64;
    while text.len() < 120_000 {
        for _ in 0..76 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            text.push(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"[(x % 64) as usize]);
        }
        text.extend(b"\r\n");
    }
    text.extend(b"--b--\r\n");
    let prepared = prepare(&mut &text[..], codec, 1 << 20, 16384).unwrap();
    assert_eq!(prepared.encoding, Encoding::TaggedChunks);
    let data = prepared.data.to_vec();
    let meta = BodyMeta::of(&prepared);
    let tags: Vec<u8> = (0..text.len().div_ceil(CHUNK_RAW) as u64)
        .map(|i| chunk_span(&meta, i).unwrap())
        .filter(|&(_, _, raw)| !raw)
        .map(|(s, _, _)| data[s as usize])
        .collect();
    assert_eq!(tags[..2], [text_tag, text_tag], "{codec:?}: {tags:?}");
    assert!(tags[3..].iter().all(|&t| t == LINES_CHUNK), "{tags:?}");
    // Packed lines lose the line ends too: under 0.75 of the attachment.
    assert!(
        prepared.stored_len() < text.len() as u64 * 3 / 4,
        "{}",
        prepared.stored_len()
    );
    let stored = |data: Vec<u8>, meta: BodyMeta| StoredBody {
        store: &NoPages,
        id: 9,
        meta,
        data: Value::Inline(data),
    };
    let body = stored(data.clone(), meta.clone());
    assert_eq!(body.read_all().unwrap(), text);
    for (offset, len) in [(0, 10), (16_380, 10), (40_000, 30_000), (text.len() as u64 - 5, 100)] {
        let mut out = Vec::new();
        body.copy_range(offset, len, &mut out).unwrap();
        let end = (offset + len).min(text.len() as u64) as usize;
        assert_eq!(out, &text[offset as usize..end], "range {offset}+{len}");
    }
    let (s, _, _) = chunk_span(&meta, 3).unwrap();
    for (byte, want) in [(7u8, "codec byte Some(7)"), (text_tag, "decompress")] {
        let mut bad = data.clone();
        bad[s as usize] = byte;
        match stored(bad, meta.clone()).copy_range(3 * CHUNK_RAW as u64, 10, &mut Vec::new()) {
            Err(MailError::Corrupt { reason, .. }) => assert!(reason.contains(want), "{codec:?}: {reason}"),
            other => panic!("expected Corrupt, got {other:?}"),
        }
    }
}

/// Bodies stored before chunks were tagged (encoding 1: zstd frames,
/// no codec byte) still read.
#[test]
fn untagged_zstd_chunks_still_read() {
    let text = b"an older body, stored in plain zstd chunks. ".repeat(1000);
    let mut data = Vec::new();
    let mut chunks = Vec::new();
    for chunk in text.chunks(CHUNK_RAW) {
        data.extend(zstd::bulk::compress(chunk, 1).unwrap());
        chunks.extend((data.len() as u32).to_le_bytes());
    }
    let meta = BodyMeta {
        refcount: 1,
        raw_len: text.len() as u64,
        stored_len: data.len() as u64,
        encoding: Encoding::ZstdChunks,
        checksum: crc32c::crc32c(&text),
        chunks,
    };
    let meta = BodyMeta::decode(&meta.encode()).unwrap();
    let body = StoredBody {
        store: &NoPages,
        id: 3,
        meta,
        data: Value::Inline(data),
    };
    assert_eq!(body.read_all().unwrap(), text);
}

/// An LZ4 body reads back whole and by range; a damaged block or a
/// meta record that claims more than one chunk is a typed error.
#[test]
fn a_one_chunk_body_round_trips_through_lz4_and_damage_is_refused() {
    let text = b"Subject: hi\r\n\r\nsome words, some more words, words again. ".repeat(120);
    let prepared = prepare(&mut &text[..], TextCompression::Zstd(1), 1 << 20, 16384).unwrap();
    assert_eq!(prepared.encoding, Encoding::Lz4Chunk);
    let stored = |data: Vec<u8>| StoredBody {
        store: &NoPages,
        id: 7,
        meta: BodyMeta::of(&prepared),
        data: Value::Inline(data),
    };
    let body = stored(prepared.data.to_vec());
    assert_eq!(body.read_all().unwrap(), text);
    let mut out = Vec::new();
    assert_eq!(body.copy_range(0, u64::MAX, &mut out).unwrap(), text.len() as u64);
    assert_eq!(out, text);
    out.clear();
    body.copy_range(1000, 333, &mut out).unwrap();
    assert_eq!(out, &text[1000..1333]);
    let damaged = stored(vec![0xff; prepared.data.len() as usize]);
    match damaged.copy_range(0, 10, &mut Vec::new()) {
        Err(MailError::Corrupt { reason, .. }) => assert!(reason.contains("does not decompress"), "{reason}"),
        other => panic!("expected Corrupt, got {other:?}"),
    }
    match damaged.read_all() {
        Err(MailError::Corrupt { reason, .. }) => assert!(reason.contains("does not decompress"), "{reason}"),
        other => panic!("expected Corrupt, got {other:?}"),
    }
    let mut meta = BodyMeta::of(&prepared);
    meta.raw_len = CHUNK_RAW as u64 + 1;
    meta.chunks = vec![0; 8];
    assert!(
        BodyMeta::decode(&meta.encode())
            .unwrap_err()
            .contains("more than one chunk")
    );
}
