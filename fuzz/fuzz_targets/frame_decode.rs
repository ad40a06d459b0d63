//! Decoders over arbitrary bytes: `FrameHeader::decode`, `GenerationHeader::decode`
//! and `codec::decode_frame_stream` must never panic, and whatever decodes must
//! re-encode to the same bytes.
//!
//! Input: one control byte, then the image.
//! - bit 0: frame size, 512 (0) or 4096 (1), used when the image has no valid header;
//! - bit 1: before decoding, fix the magic and checksum of every frame, so the
//!   fuzzer reaches the field checks and the record parser instead of stopping
//!   at the checksum;
//! - bit 2: the same for the generation header in the first 128 bytes.

#![no_main]

use libfuzzer_sys::fuzz_target;
use mailvault::log::codec::{
    FRAME_HEADER_LEN, FRAME_MAGIC, HEADER_LEN, HEADER_MAGIC, check_geometry, decode_frame_stream, decode_record_header,
    frame_checksum,
};
use mailvault::log::{FrameHeader, GenerationHeader};

/// Frames past this are not examined by `decode_frame_stream`.
const MAX_FRAMES: usize = 4096;

fn fix_header(image: &mut [u8]) {
    if image.len() >= HEADER_LEN {
        image[4..12].copy_from_slice(&HEADER_MAGIC);
        let crc = crc32c::crc32c(&image[4..HEADER_LEN]);
        image[0..4].copy_from_slice(&crc.to_le_bytes());
    }
}

fn fix_frames(image: &mut [u8], fs: usize) {
    for frame in image.chunks_exact_mut(fs).skip(1) {
        frame[28..32].copy_from_slice(&FRAME_MAGIC.to_le_bytes());
        let crc = frame_checksum(frame);
        frame[0..4].copy_from_slice(&crc.to_le_bytes());
    }
}

/// A decoded frame header, sealed into a copy of the frame, gives the frame back.
fn check_frame_roundtrip(frame: &[u8]) {
    let Ok(header) = FrameHeader::decode(frame) else {
        return;
    };
    let mut copy = frame.to_vec();
    copy[..FRAME_HEADER_LEN].fill(0);
    let mut resealed = header;
    resealed.seal_into(&mut copy);
    assert_eq!(resealed, header, "seal_into computed another checksum");
    assert_eq!(copy, frame, "re-sealing a decoded frame header changed the frame");
    assert_eq!(FrameHeader::decode(&copy), Ok(header));
}

/// A decoded generation header re-encodes to a header that decodes to the same
/// value; when the bytes the encoder leaves zero are zero, to the same bytes.
fn check_header_roundtrip(image: &[u8]) {
    let Ok((header, salt)) = GenerationHeader::decode(image) else {
        return;
    };
    let mut out = vec![0u8; HEADER_LEN];
    let new_salt = header.encode(&mut out);
    assert_eq!(GenerationHeader::decode(&out), Ok((header, new_salt)));
    let reserved_zero = image[15] == 0 && image[96..HEADER_LEN].iter().all(|&b| b == 0);
    if reserved_zero {
        assert_eq!(new_salt, salt);
        assert_eq!(
            &out[..],
            &image[..HEADER_LEN],
            "re-encoding a decoded header changed it"
        );
    }
    assert!(check_geometry(header.frame_size, header.generation_size).is_ok());
}

fuzz_target!(|data: &[u8]| {
    let Some((&ctl, body)) = data.split_first() else {
        return;
    };
    let fs: usize = if ctl & 1 == 0 { 512 } else { 4096 };
    let mut image = body.to_vec();
    if ctl & 4 != 0 {
        fix_header(&mut image);
    }
    // Frames follow the header's frame size when it has a valid one.
    let stream_fs = match GenerationHeader::decode(&image) {
        Ok((h, _)) => h.frame_size as usize,
        Err(_) => fs,
    };
    if ctl & 2 != 0 {
        fix_frames(&mut image, stream_fs);
    }

    // Arbitrary lengths: anything not a valid frame size is a defect, not a panic.
    let _ = FrameHeader::decode(body);
    let _ = FrameHeader::decode(&image);
    let _ = GenerationHeader::decode(body);
    check_header_roundtrip(&image);

    // Frame-sized slices, the last one zero-padded.
    for chunk in image.chunks(fs) {
        if chunk.len() == fs {
            check_frame_roundtrip(chunk);
        } else {
            let mut padded = chunk.to_vec();
            padded.resize(fs, 0);
            check_frame_roundtrip(&padded);
        }
    }
    if stream_fs != fs {
        for chunk in image.chunks_exact(stream_fs) {
            check_frame_roundtrip(chunk);
        }
    }

    // Record headers wherever they may start (the decoder needs 8 bytes).
    for window in image.chunks_exact(8).take(64) {
        let _ = decode_record_header(window);
    }

    let report = decode_frame_stream(&image, fs as u32, MAX_FRAMES);
    assert!(report.frames.len() < MAX_FRAMES);
    assert!(report.frames.len() <= image.len() / stream_fs);
    let _ = decode_frame_stream(&image, 0, 3);
    let _ = decode_frame_stream(body, fs as u32, MAX_FRAMES);
});
