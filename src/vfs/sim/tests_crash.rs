//! What survives a crash: data by crash mode, names by `sync_dir`, torn
//! writes, determinism.

use super::tests::{p, read_all, setup};
use super::*;
use std::collections::BTreeMap;

/// Crash, restart, and reopen "d/f" (None if it did not survive).
fn crash_and_reopen(vfs: &SimVfs) -> Option<Arc<dyn VfsFile>> {
    vfs.crash();
    vfs.restart();
    vfs.open(&p("d/f"), OpenMode::Existing).ok()
}

#[test]
fn unsynced_write_dropped_or_kept_by_mode() {
    for (mode, expect) in [(CrashMode::DropAll, &b"base"[..]), (CrashMode::KeepAll, b"base+more")] {
        let (vfs, file) = setup(9);
        vfs.set_crash_mode(mode);
        file.write_at(b"base", 0).unwrap();
        file.sync_data().unwrap();
        vfs.sync_dir(&p("d")).unwrap();
        file.write_at(b"+more", 4).unwrap();
        let file = crash_and_reopen(&vfs).expect("durably named");
        assert_eq!(read_all(&*file), expect, "{mode:?}");
        assert_eq!(vfs.written_image(&p("d/f")).unwrap(), expect);
    }
}

#[test]
fn synced_write_survives_random_crash() {
    let synced: Vec<u8> = (0..1000u32).map(|i| (i * 7 % 251) as u8).collect();
    for seed in 0..300 {
        let (vfs, file) = setup(seed);
        file.write_at(&synced, 0).unwrap();
        file.sync_data().unwrap();
        vfs.sync_dir(&p("d")).unwrap();
        for i in 0..8u64 {
            file.write_at(&[0xEE; 700], 1000 + i * 500).unwrap();
        }
        file.set_len(6000).unwrap();
        let file = crash_and_reopen(&vfs).expect("durably named");
        let data = read_all(&*file);
        assert!(data.len() >= 1000, "seed {seed}");
        assert_eq!(&data[..1000], &synced[..], "seed {seed}");
    }
}

#[test]
fn create_needs_sync_dir() {
    for seed in 0..20 {
        let (vfs, file) = setup(seed);
        file.write_at(b"x", 0).unwrap();
        file.sync_data().unwrap();
        assert!(crash_and_reopen(&vfs).is_none(), "seed {seed}");
        assert_eq!(vfs.list(&p("d")).unwrap(), Vec::<String>::new());

        let (vfs, file) = setup(seed);
        file.write_at(b"x", 0).unwrap();
        file.sync_data().unwrap();
        vfs.sync_dir(&p("d")).unwrap();
        let file = crash_and_reopen(&vfs).expect("durably named");
        assert_eq!(read_all(&*file), b"x");
    }
}

#[test]
fn rename_needs_sync_dir() {
    let (vfs, file) = setup(1);
    file.write_at(b"x", 0).unwrap();
    file.sync_data().unwrap();
    vfs.sync_dir(&p("d")).unwrap();
    vfs.rename(&p("d/f"), &p("d/g")).unwrap();
    assert!(crash_and_reopen(&vfs).is_some());
    assert_eq!(vfs.list(&p("d")).unwrap(), ["f"]);

    vfs.rename(&p("d/f"), &p("d/g")).unwrap();
    vfs.sync_dir(&p("d")).unwrap();
    assert!(crash_and_reopen(&vfs).is_none());
    assert_eq!(vfs.list(&p("d")).unwrap(), ["g"]);
    assert_eq!(vfs.durable_image(&p("d/g")).unwrap(), b"x");
}

#[test]
fn rename_over_target_reverts_both() {
    let (vfs, file) = setup(1);
    let other = vfs.open(&p("d/g"), OpenMode::CreateNew).unwrap();
    file.write_at(b"new", 0).unwrap();
    other.write_at(b"old", 0).unwrap();
    file.sync_data().unwrap();
    other.sync_data().unwrap();
    vfs.sync_dir(&p("d")).unwrap();
    vfs.rename(&p("d/f"), &p("d/g")).unwrap();
    vfs.crash();
    vfs.restart();
    assert_eq!(vfs.durable_image(&p("d/f")).unwrap(), b"new");
    assert_eq!(vfs.durable_image(&p("d/g")).unwrap(), b"old");
}

#[test]
fn cross_directory_rename_each_side_synced_separately() {
    let (vfs, file) = setup(1);
    vfs.create_dir_all(&p("e")).unwrap();
    file.write_at(b"x", 0).unwrap();
    file.sync_data().unwrap();
    vfs.sync_dir(&p("d")).unwrap();
    vfs.rename(&p("d/f"), &p("e/f")).unwrap();
    vfs.sync_dir(&p("e")).unwrap();
    vfs.crash();
    vfs.restart();
    // Both names survive, pointing at one inode.
    assert_eq!(vfs.durable_image(&p("d/f")).unwrap(), b"x");
    assert_eq!(vfs.durable_image(&p("e/f")).unwrap(), b"x");
    let a = vfs.open(&p("d/f"), OpenMode::Existing).unwrap();
    a.write_at(b"y", 0).unwrap();
    assert_eq!(vfs.written_image(&p("e/f")).unwrap(), b"y");
    // Only the source directory synced: neither name survives.
    vfs.remove(&p("e/f")).unwrap();
    vfs.sync_dir(&p("e")).unwrap();
    vfs.rename(&p("d/f"), &p("e/f")).unwrap();
    vfs.sync_dir(&p("d")).unwrap();
    vfs.crash();
    vfs.restart();
    assert!(!vfs.exists(&p("d/f")).unwrap());
    assert!(!vfs.exists(&p("e/f")).unwrap());
    assert!(vfs.state.lock().inodes.is_empty());
}

#[test]
fn remove_needs_sync_dir() {
    let (vfs, file) = setup(1);
    file.write_at(b"x", 0).unwrap();
    file.sync_data().unwrap();
    vfs.sync_dir(&p("d")).unwrap();
    vfs.remove(&p("d/f")).unwrap();
    let file = crash_and_reopen(&vfs).expect("removal reverted");
    assert_eq!(read_all(&*file), b"x");

    vfs.remove(&p("d/f")).unwrap();
    vfs.sync_dir(&p("d")).unwrap();
    // The unlinked file still works through its handle, until the crash.
    file.write_at(b"y", 1).unwrap();
    file.sync_data().unwrap();
    assert_eq!(read_all(&*file), b"xy");
    assert!(crash_and_reopen(&vfs).is_none());
    assert!(vfs.state.lock().inodes.is_empty());
}

#[test]
fn write_past_durable_end_zero_fills() {
    let (vfs, file) = setup(1);
    vfs.set_crash_mode(CrashMode::KeepAll);
    file.write_at(b"ab", 0).unwrap();
    file.sync_data().unwrap();
    vfs.sync_dir(&p("d")).unwrap();
    file.write_at(b"z", 5).unwrap();
    crash_and_reopen(&vfs).unwrap();
    assert_eq!(vfs.durable_image(&p("d/f")).unwrap(), b"ab\0\0\0z");
}

#[derive(Debug, Default)]
struct Fates {
    kept: usize,
    dropped: usize,
    garbage: usize,
    mixed_writes: usize,
}

#[test]
fn torn_writes_mix_sectors() {
    let mut fates = Fates::default();
    for seed in 0..300 {
        let (vfs, file) = setup(seed);
        file.write_at(&[0x11; 4096], 0).unwrap();
        file.sync_data().unwrap();
        vfs.sync_dir(&p("d")).unwrap();
        file.write_at(&[0xAB; 4096], 0).unwrap();
        vfs.crash();
        let image = vfs.durable_image(&p("d/f")).unwrap();
        assert_eq!(image.len(), 4096);
        let mut kinds = [false; 3];
        for sector in image.chunks(SECTOR_SIZE as usize) {
            let kind = if sector.iter().all(|&b| b == 0xAB) {
                fates.kept += 1;
                0
            } else if sector.iter().all(|&b| b == 0x11) {
                fates.dropped += 1;
                1
            } else {
                fates.garbage += 1;
                2
            };
            kinds[kind] = true;
        }
        if kinds.iter().filter(|&&k| k).count() > 1 {
            fates.mixed_writes += 1;
        }
    }
    assert!(fates.kept > 0 && fates.dropped > 0 && fates.garbage > 0, "{fates:?}");
    assert!(fates.mixed_writes > 0, "{fates:?}");
    // About a third of the writes are torn; nearly all torn 8-sector writes mix.
    assert!((50..150).contains(&fates.mixed_writes), "{fates:?}");
}

#[test]
fn random_set_len_sometimes_applied() {
    let (mut applied, mut skipped) = (0, 0);
    for seed in 0..100 {
        let (vfs, file) = setup(seed);
        file.set_len(10).unwrap();
        file.sync_data().unwrap();
        vfs.sync_dir(&p("d")).unwrap();
        file.set_len(3).unwrap();
        vfs.crash();
        match vfs.durable_image(&p("d/f")).unwrap().len() {
            3 => applied += 1,
            10 => skipped += 1,
            other => panic!("unexpected length {other}"),
        }
    }
    assert!(applied > 20 && skipped > 20, "{applied} / {skipped}");
}

/// A fixed script of calls; returns every durable file after a crash.
fn run_script(seed: u64) -> BTreeMap<String, Vec<u8>> {
    let vfs = SimVfs::new(seed);
    vfs.create_dir_all(&p("/db")).unwrap();
    let mut rng = SimRng::new(1234); // Same calls for every seed.
    let mut files = Vec::new();
    for i in 0..4 {
        let name = p(&format!("/db/{i}"));
        files.push(vfs.open(&name, OpenMode::CreateNew).unwrap());
    }
    vfs.sync_dir(&p("/db")).unwrap();
    for step in 0..200u64 {
        let file = &files[rng.below(4) as usize];
        let mut data = vec![0; rng.below(3000) as usize + 1];
        rng.fill(&mut data);
        file.write_at(&data, rng.below(10_000)).unwrap();
        if step % 17 == 0 {
            file.sync_data().unwrap();
        }
        if step % 41 == 0 {
            file.set_len(rng.below(12_000)).unwrap();
        }
    }
    vfs.rename(&p("/db/0"), &p("/db/9")).unwrap();
    vfs.crash();
    vfs.restart();
    let names = vfs.list(&p("/db")).unwrap();
    names
        .into_iter()
        .map(|n| {
            let image = vfs.durable_image(&p(&format!("/db/{n}"))).unwrap();
            (n, image)
        })
        .collect()
}

#[test]
fn same_seed_same_outcome() {
    let mut outcomes = Vec::new();
    for seed in 0..8 {
        let first = run_script(seed);
        assert_eq!(first, run_script(seed), "seed {seed}");
        assert_eq!(first.keys().collect::<Vec<_>>(), ["0", "1", "2", "3"]);
        outcomes.push(first);
    }
    outcomes.sort();
    outcomes.dedup();
    assert!(outcomes.len() > 1, "the seed changes nothing");
}

#[test]
fn create_dir_over_durable_only_file() {
    let (vfs, file) = setup(1);
    file.write_at(b"x", 0).unwrap();
    file.sync_data().unwrap();
    vfs.sync_dir(&p("d")).unwrap();
    vfs.remove(&p("d/f")).unwrap();
    vfs.create_dir_all(&p("d/f/sub")).unwrap();
    drop(file);
    vfs.crash();
    vfs.restart();
    assert_eq!(vfs.list(&p("d")).unwrap(), ["f"]);
    assert_eq!(vfs.list(&p("d/f")).unwrap(), ["sub"]);
    assert_eq!(vfs.durable_image(&p("d/f")), None);
    assert!(vfs.state.lock().inodes.is_empty());
}
