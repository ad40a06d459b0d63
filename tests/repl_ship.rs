//! Frame-level log shipping: an active log written by committers, read by
//! `FrameSource` and applied by `LogReplica` into a second directory, must
//! read back (with the log's own reader) as exactly the active's durable
//! records, byte for byte and at the same LSNs, across generations, with
//! the replica reopened at any point. Damaged or out-of-order chunks are
//! refused before anything is written.

mod common;

use common::{read_records, small_opts as opts};
use mailvault::log::{FrameSource, Log, LogReplica, Lsn};
use mailvault::vfs::SimVfs;
use mailvault::vfs::sim::SimRng;

fn record(rng: &mut SimRng, n: u32) -> Vec<u8> {
    let mut v = vec![0u8; 1 + rng.below(1500) as usize];
    rng.fill(&mut v);
    v[0] = n as u8;
    v
}

#[test]
fn shipped_frames_read_back_as_the_active_records() {
    for seed in 0..6u64 {
        let disk = SimVfs::new(seed);
        let log = Log::create(disk.clone(), "/active", opts()).unwrap();
        let source = FrameSource::new(disk.clone(), "/active");
        let mut replica = LogReplica::open(disk.clone(), "/copy").unwrap();
        replica.start_at(Lsn::new(1, 0));
        let mut rng = SimRng::new(seed);
        let mut acked = Vec::new();
        for n in 0..200u32 {
            let data = record(&mut rng, n);
            let a = log.commit(&data).unwrap();
            acked.push((a.lsn, data));
            // Ship at random moments, in chunks of random size.
            if rng.below(3) == 0 {
                loop {
                    let chunk = source
                        .read(replica.next(), log.durable_lsn(), 512 * (1 + rng.below(6) as usize))
                        .unwrap();
                    if chunk.is_empty() {
                        break;
                    }
                    replica.apply(&chunk).unwrap();
                    if chunk.tail.is_some() || chunk.next == replica.next() && chunk.frames.is_empty() {
                        break;
                    }
                }
                replica.sync().unwrap();
                if rng.below(4) == 0 {
                    replica = LogReplica::open(disk.clone(), "/copy").unwrap();
                }
            }
        }
        loop {
            let chunk = source.read(replica.next(), log.durable_lsn(), 1 << 20).unwrap();
            if chunk.is_empty() {
                break;
            }
            replica.apply(&chunk).unwrap();
            if chunk.tail.is_some() {
                break;
            }
        }
        replica.sync().unwrap();
        assert_eq!(
            replica.end(),
            log.durable_lsn(),
            "seed {seed}: the replica holds everything durable"
        );
        let shipped = read_records(disk.clone(), "/copy", replica.end());
        assert_eq!(
            shipped, acked,
            "seed {seed}: the replica reads back as the active's records"
        );
        assert!(acked.last().unwrap().0.generation() > 3, "the test crosses generations");
        log.close().unwrap();
    }
}

#[test]
fn damaged_or_misplaced_chunks_are_refused() {
    let disk = SimVfs::new(9);
    let log = Log::create(disk.clone(), "/active", opts()).unwrap();
    let mut rng = SimRng::new(1);
    for n in 0..20 {
        log.commit(&record(&mut rng, n)).unwrap();
    }
    let source = FrameSource::new(disk.clone(), "/active");
    let chunk = source.read(Lsn::new(1, 0), log.durable_lsn(), 4096).unwrap();
    assert!(chunk.header.is_some() && !chunk.frames.is_empty());
    // A flipped byte in a frame.
    let mut bad = chunk.clone();
    bad.frames[700] ^= 1;
    let mut replica = LogReplica::open(disk.clone(), "/copy").unwrap();
    assert!(replica.apply(&bad).is_err());
    // Frames before their generation's header.
    let mut headless = chunk.clone();
    headless.header = None;
    let mut fresh = LogReplica::open(disk.clone(), "/copy2").unwrap();
    assert!(fresh.apply(&headless).is_err());
    // The same chunk twice: the second starts at the wrong place.
    let mut ok = LogReplica::open(disk.clone(), "/copy3").unwrap();
    ok.apply(&chunk).unwrap();
    let mut again = chunk.clone();
    again.header = None;
    assert!(ok.apply(&again).is_err());
    // A generation of another log.
    let other = Log::create(disk.clone(), "/other", opts()).unwrap();
    other.commit(b"x").unwrap();
    let foreign = FrameSource::new(disk.clone(), "/other")
        .read(Lsn::new(1, 0), other.durable_lsn(), 4096)
        .unwrap();
    let next = source.read(ok.next(), log.durable_lsn(), 1 << 20).unwrap();
    ok.apply(&next).unwrap();
    let mut wrong = foreign.clone();
    wrong.header = foreign.header.map(|(_, b)| (ok.next().generation(), b));
    assert!(ok.apply(&wrong).is_err(), "a header of another log is refused");
}

/// Spare files in a replica's directory.
fn spares(disk: &SimVfs) -> usize {
    use mailvault::vfs::Vfs;
    disk.list(std::path::Path::new("/copy"))
        .unwrap()
        .iter()
        .filter(|n| n.starts_with("recycle-"))
        .count()
}

/// Ships everything durable (whole chunks) and syncs; returns whether a
/// generation header was among them.
fn ship_all(source: &FrameSource, replica: &mut LogReplica, log: &Log) -> bool {
    let mut headers = false;
    loop {
        let chunk = source.read(replica.next(), log.durable_lsn(), 4096).unwrap();
        if chunk.is_empty() {
            break;
        }
        headers |= chunk.header.is_some();
        replica.apply(&chunk).unwrap();
        if chunk.tail.is_some() {
            break;
        }
    }
    replica.sync().unwrap();
    headers
}

/// Retired generations become spares (at most `REPLICA_POOL`), the next
/// generations are written into them over their stale frames, and the
/// replica still reads back as exactly the active's records, also after a
/// power cut right after a spare was taken.
#[test]
fn retired_generations_are_written_into_again_and_read_back_exactly() {
    for seed in 0..4u64 {
        // The copy's disk of its own: the power cuts below are the copy's.
        let (active, disk) = (SimVfs::new(seed), SimVfs::new(40 + seed));
        let log = Log::create(active.clone(), "/active", opts()).unwrap();
        let source = FrameSource::new(active, "/active");
        let mut replica = LogReplica::open(disk.clone(), "/copy").unwrap();
        replica.start_at(Lsn::new(1, 0));
        let mut rng = SimRng::new(seed);
        let mut acked = Vec::new();
        let mut taken = 0;
        for n in 0..400u32 {
            let data = record(&mut rng, n);
            let a = log.commit(&data).unwrap();
            acked.push((a.lsn, data));
            if n % 5 != 4 {
                continue;
            }
            let before = spares(&disk);
            if ship_all(&source, &mut replica, &log) && before > 0 {
                assert!(spares(&disk) < before, "seed {seed}: a new generation took no spare");
                taken += 1;
                if taken % 3 == 1 {
                    // A power cut: what was synced stays.
                    let synced = replica.end();
                    drop(replica);
                    disk.crash();
                    disk.restart();
                    replica = LogReplica::open(disk.clone(), "/copy").unwrap();
                    assert!(
                        replica.end() >= synced,
                        "seed {seed}: {} after a cut, {synced} synced",
                        replica.end()
                    );
                }
            }
            // Everything before the current generation is replayed, say.
            let current = replica.next().generation();
            mailvault::log::retire_generations(disk.as_ref(), std::path::Path::new("/copy"), current).unwrap();
            assert!(spares(&disk) <= mailvault::log::REPLICA_POOL);
        }
        ship_all(&source, &mut replica, &log);
        assert_eq!(replica.end(), log.durable_lsn(), "seed {seed}");
        assert!(taken > 5, "seed {seed}: only {taken} generations went into spares");
        let from = Lsn::new(replica.next().generation(), 0);
        let kept: Vec<(Lsn, Vec<u8>)> = acked.into_iter().filter(|(lsn, _)| *lsn >= from).collect();
        let shipped: Vec<(Lsn, Vec<u8>)> = read_records(disk.clone(), "/copy", replica.end())
            .into_iter()
            .filter(|(lsn, _)| *lsn >= from)
            .collect();
        assert_eq!(
            shipped, kept,
            "seed {seed}: the replica reads back as the active's records"
        );
        log.close().unwrap();
    }
}

/// The next generation's header must name the chain of the generation the
/// copy received whole (its salt and every home frame's checksum): a header
/// of another history of that generation is refused before anything is
/// written, also by a replica reopened from its files, and the right
/// header is taken after it.
#[test]
fn a_next_generation_that_names_another_chain_is_refused() {
    use mailvault::log::GenerationHeader;
    let disk = SimVfs::new(21);
    let log = Log::create(disk.clone(), "/active", opts()).unwrap();
    let mut rng = SimRng::new(21);
    let mut n = 0;
    while log.durable_lsn().generation() < 4 {
        log.commit(&record(&mut rng, n)).unwrap();
        n += 1;
    }
    let source = FrameSource::new(disk.clone(), "/active");
    for reopen in [false, true] {
        let dir = if reopen { "/copy-reopened" } else { "/copy" };
        let mut replica = LogReplica::open(disk.clone(), dir).unwrap();
        replica.start_at(Lsn::new(1, 0));
        // Up to the seal of generation 2 (a chunk ends at a seal).
        while replica.next() != Lsn::new(3, 0) {
            let chunk = source.read(replica.next(), log.durable_lsn(), 4096).unwrap();
            assert!(!chunk.is_empty());
            replica.apply(&chunk).unwrap();
        }
        replica.sync().unwrap();
        if reopen {
            replica = LogReplica::open(disk.clone(), dir).unwrap();
            assert_eq!(replica.next(), Lsn::new(3, 0));
        }
        let mut chunk = source.read(replica.next(), log.durable_lsn(), 4096).unwrap();
        chunk.frames.clear();
        chunk.tail = None;
        let (generation, bytes) = chunk.header.clone().unwrap();
        assert_eq!(generation, 3);
        let (mut header, _) = GenerationHeader::decode(&bytes).unwrap();
        header.prev_chain ^= 0x5a5a;
        let mut other = bytes.clone();
        header.encode(&mut other);
        let mut divergent = chunk.clone();
        divergent.header = Some((generation, other));
        let err = replica.apply(&divergent).unwrap_err();
        assert!(err.to_string().contains("chain"), "reopen {reopen}: {err}");
        assert_eq!(replica.next(), Lsn::new(3, 0), "nothing was taken");
        replica.apply(&chunk).unwrap();
        assert_eq!(replica.next().generation(), 3);
    }
    log.close().unwrap();
}

/// A chunk that goes on past a sealed frame (a frame marked sealed, with
/// its checksum made good, then more frames) is refused: nothing follows a
/// seal in its generation, and a reopened replica would end at the seal.
#[test]
fn frames_after_a_sealed_frame_are_refused() {
    use mailvault::log::FrameHeader;
    use mailvault::log::codec::FLAG_SEALED;
    let disk = SimVfs::new(23);
    let log = Log::create(disk.clone(), "/active", opts()).unwrap();
    let mut rng = SimRng::new(23);
    for n in 0..40 {
        log.commit(&record(&mut rng, n)).unwrap();
    }
    let source = FrameSource::new(disk.clone(), "/active");
    let chunk = source.read(Lsn::new(1, 0), log.durable_lsn(), 8192).unwrap();
    let fs = chunk.frame_size as usize;
    assert!(chunk.frames.len() >= 3 * fs, "a chunk of several frames");
    let mut forged = chunk.clone();
    let mut h = FrameHeader::decode(&forged.frames[..fs]).unwrap();
    assert_eq!(h.flags & FLAG_SEALED, 0);
    h.flags |= FLAG_SEALED;
    h.seal_into(&mut forged.frames[..fs]);
    let mut replica = LogReplica::open(disk.clone(), "/copy").unwrap();
    replica.start_at(Lsn::new(1, 0));
    let err = replica.apply(&forged).unwrap_err();
    assert!(err.to_string().contains("after the sealed frame"), "{err}");
    // The header went in before its frames were refused; the true frames
    // are taken after it.
    assert_eq!(replica.next(), Lsn::new(1, chunk.first.offset()));
    let mut frames = chunk.clone();
    frames.header = None;
    replica.apply(&frames).unwrap();
    assert_eq!(replica.next(), chunk.next);
    log.close().unwrap();
}
