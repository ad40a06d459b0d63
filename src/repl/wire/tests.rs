//! The wire codec's round trips, bit flips and length bounds.
use super::*;

fn samples() -> Vec<Message> {
    let id = Identity {
        copy: [6; 16],
        database: [1; 16],
        log: [2; 16],
        epoch: 3,
        position: Lsn(0x1_0000_2000),
    };
    vec![
        Message::Hello { nonce: [7; 32] },
        Message::Challenge {
            nonce: [8; 32],
            proof: [9; 32],
        },
        Message::Proof { proof: [10; 32] },
        Message::Identify(id.clone()),
        Message::Refuse {
            code: 2,
            reason: "another database".into(),
        },
        Message::Accept {
            identity: id,
            start: Lsn(5),
        },
        Message::GenerationHeader {
            generation: 4,
            bytes: vec![1; 4096],
        },
        Message::Frames {
            first: Lsn(77),
            frame_size: 4096,
            bytes: vec![3; 8192],
        },
        Message::Tail { frame: vec![4; 4096] },
        Message::Heartbeat {
            durable: Lsn(9),
            time_us: 11,
        },
        Message::Ack {
            inspected: Lsn(1),
            replayed: Lsn(2),
            lagged: true,
        },
        Message::SeedBegin { header: vec![5; 4096] },
        Message::SeedPages {
            first: 2,
            page_size: 4096,
            bytes: vec![6; 8192],
        },
        Message::SeedEnd { pages: 99 },
        Message::ResumeSeed {
            identity: Identity {
                copy: [1; 16],
                database: [2; 16],
                log: [3; 16],
                epoch: 4,
                position: Lsn::new(5, 4096),
            },
            next_page: 77,
        },
        Message::SeedResumed { first: 77 },
    ]
}

#[test]
fn every_message_round_trips_plain_and_compressed() {
    for m in samples() {
        for compress in [None, Some(1)] {
            let bytes = encode(&m, compress);
            let (back, used) = decode(&bytes).unwrap().unwrap();
            assert_eq!((back, used), (m.clone(), bytes.len()));
            assert_eq!(decode(&bytes[..bytes.len() - 1]).unwrap(), None, "a short frame waits");
        }
    }
    let big = encode(&samples()[7], Some(1));
    assert!(big.len() < 8192, "repetitive frames compress");
}

#[test]
fn any_flipped_bit_is_caught() {
    for m in samples() {
        let bytes = encode(&m, None);
        for bit in 0..bytes.len() * 8 {
            let mut bad = bytes.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            assert!(
                !matches!(decode(&bad), Ok(Some((ref x, _))) if *x == m),
                "{}: bit {bit} flipped went unnoticed",
                m.name()
            );
        }
    }
}

#[test]
fn lengths_are_bounded_before_allocation() {
    let mut bytes = encode(&Message::Tail { frame: vec![0; 512] }, None);
    bytes[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
    assert_eq!(decode(&bytes), Err(WireError::TooLarge(u64::from(u32::MAX))));
    let mut bytes = encode(&Message::Hello { nonce: [0; 32] }, None);
    bytes[5] = 200;
    let crc = crc32c::crc32c_append(crc32c::crc32c(&bytes[..16]), &bytes[20..]);
    bytes[16..20].copy_from_slice(&crc.to_le_bytes());
    assert_eq!(decode(&bytes), Err(WireError::UnknownType(200)));
}
