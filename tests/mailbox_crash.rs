//! The mailbox store under crashes and I/O errors on the simulated disk.
//! A random workload of deliveries, flag changes, moves and expunges runs,
//! each operation its own durable transaction, until the disk crashes or an
//! injected error stops the store. A shadow store on a fault-free disk runs
//! the same operations; after reopening, the store must equal the shadow
//! after the last acknowledged operation (or after the one in flight), and
//! every counter, index and reference count must verify.

use mailvault::mailbox::{AppendOptions, FlagOp, Flags, MailError, MailView, Quota, Store, StoreOptions, UidSet};
use mailvault::vfs::{FaultKind, SimVfs, sim::SimRng};

const DIR: &str = "/mail";
/// About the number of file-system calls the workload after the warm-up makes.
const WORKLOAD_OPS: u64 = 110;
const FOLDERS: [(&str, &str); 4] = [
    ("ann", "INBOX"),
    ("ann", "Archive"),
    ("ben", "INBOX"),
    ("ben", "Lists/rust"),
];

fn opts() -> StoreOptions {
    StoreOptions {
        page_size: 4096,
        cache_bytes: 48 * 4096,
        generation_size: 512 << 10,
        checkpoint_depth: 96 << 10,
        max_body_bytes: 96 << 10,
        ..StoreOptions::default()
    }
}

/// Everything an IMAP client could observe, except UIDVALIDITY (the two
/// stores are created at different times).
type Digest = Vec<String>;

fn digest(s: &Store) -> Result<Digest, MailError> {
    let rx = s.read();
    let mut out = Vec::new();
    for m in rx.list_mailboxes()? {
        out.push(format!("{m:?}"));
        for f in rx.list_folders(&m.name)? {
            out.push(format!(
                "{}/{} next {} hms {} n {} unseen {} bytes {}",
                m.name, f.name, f.uid_next, f.highest_modseq, f.messages, f.unseen, f.bytes
            ));
            for meta in rx.fetch(&m.name, &f.name, &UidSet::all())? {
                let body = rx.read_body(&m.name, &f.name, meta.uid)?;
                out.push(format!(
                    "  {} {} {:?} {:?} {} {:08x}",
                    meta.uid,
                    meta.modseq,
                    meta.flags,
                    meta.keywords,
                    meta.size,
                    crc32c::crc32c(&body)
                ));
            }
        }
    }
    Ok(out)
}

fn body(rng: &mut SimRng, id: u64) -> Vec<u8> {
    let len = match rng.below(10) {
        0..=6 => 200 + rng.below(3000) as usize,
        7 | 8 => 5000 + rng.below(20_000) as usize,
        _ => 40_000 + rng.below(50_000) as usize,
    };
    let mut text = format!("Message-ID: <{id}@sim>\r\n\r\n").into_bytes();
    let mut filler = SimRng::new(id);
    while text.len() < len {
        // Half words (compressible), half noise (not).
        if filler.below(2) == 0 {
            text.extend_from_slice(b"lorem ipsum dolor sit amet ");
        } else {
            let mut noise = [0u8; 24];
            filler.fill(&mut noise);
            text.extend_from_slice(&noise);
        }
    }
    text
}

/// One random operation, as its own transaction.
fn operation(s: &Store, rng: &mut SimRng, id: u64) -> Result<(), MailError> {
    let (mailbox, folder) = FOLDERS[rng.below(4) as usize];
    match rng.below(10) {
        0..=4 => {
            let opts = AppendOptions {
                internal_date: id as i64,
                flags: Flags::from_bits(rng.below(32) as u32).unwrap_or_default(),
                keywords: if rng.below(3) == 0 { vec!["work".into()] } else { vec![] },
            };
            s.append(mailbox, folder, &opts, &body(rng, id)).map(|_| ())
        }
        5 | 6 => {
            let set = UidSet::range(1 + rng.below(20) as u32, 1 + rng.below(20) as u32);
            let flags = if rng.below(2) == 0 {
                Flags::SEEN
            } else {
                Flags::FLAGGED | Flags::ANSWERED
            };
            let op = [FlagOp::Add, FlagOp::Remove, FlagOp::Set][rng.below(3) as usize];
            s.transaction(move |tx| tx.store_flags(mailbox, folder, &set, op, flags, &[], None).map(|_| ()))
        }
        7 | 8 => {
            let (to_m, to_f) = FOLDERS[rng.below(4) as usize];
            let set = UidSet::range(1 + rng.below(20) as u32, 1 + rng.below(20) as u32);
            s.transaction(move |tx| {
                if (to_m, to_f) == (mailbox, folder) {
                    return Ok(());
                }
                tx.move_messages(mailbox, folder, &set, to_m, to_f).map(|_| ())
            })
        }
        _ => {
            let set = UidSet::range(1 + rng.below(20) as u32, 1 + rng.below(20) as u32);
            s.transaction(move |tx| tx.expunge(mailbox, folder, &set).map(|_| ()))
        }
    }
}

fn setup(s: &Store) {
    s.create_mailbox("ann", Quota::default()).expect("mailbox");
    s.create_mailbox("ben", Quota::default()).expect("mailbox");
    s.create_folder("ann", "Archive").expect("folder");
    s.create_folder("ben", "Lists/rust").expect("folder");
}

/// Runs the workload with a fault armed, then crashes and reopens. Returns
/// whether the fault struck during the workload.
fn fault_case(seed: u64, fault: impl FnOnce(&SimVfs)) -> bool {
    let sim = SimVfs::new(seed);
    let store = Store::create(sim.clone(), DIR, opts()).expect("create");
    let shadow = Store::create(SimVfs::new(seed), DIR, opts()).expect("create shadow");
    setup(&store);
    setup(&shadow);
    let mut rng = SimRng::new(seed ^ 0xfeed);
    for id in 0..8 {
        let mut twin = rng.clone();
        operation(&store, &mut rng, id)
            .or_else(ignore_refusal)
            .expect("warm-up");
        operation(&shadow, &mut twin, id)
            .or_else(ignore_refusal)
            .expect("warm-up shadow");
    }
    fault(&sim);
    let (ops0, syncs0) = (sim.op_count(), sim.sync_count());
    let mut acked = digest(&shadow).expect("shadow digest");
    let mut in_flight = None;
    let mut stopped = false;
    for id in 8..40 {
        let mut twin = rng.clone();
        let result = operation(&store, &mut rng, id).or_else(ignore_refusal);
        operation(&shadow, &mut twin, id)
            .or_else(ignore_refusal)
            .expect("shadow op");
        let after = digest(&shadow).expect("shadow digest");
        match result {
            Ok(()) => acked = after,
            Err(_) => {
                in_flight = Some(after);
                stopped = true;
                break;
            }
        }
        if rng.below(12) == 0 && store.database().checkpoint().is_err() {
            stopped = true;
            break;
        }
    }
    if std::env::var("SHOW_OPS").is_ok() {
        eprintln!("ops {} syncs {}", sim.op_count() - ops0, sim.sync_count() - syncs0);
    }
    store.database().pager().stop_background();
    drop(store);
    sim.crash();
    sim.clear_faults();
    sim.restart();
    let store = Store::open(sim.clone(), DIR, opts()).unwrap_or_else(|e| panic!("seed {seed}: reopen: {e}"));
    let got = digest(&store).unwrap_or_else(|e| panic!("seed {seed}: read: {e}"));
    assert!(
        got == acked || in_flight.as_ref() == Some(&got),
        "seed {seed}: recovered store is neither the acknowledged state nor the one in flight\n got {got:#?}\n acked {acked:#?}"
    );
    let report = store.verify().unwrap_or_else(|e| panic!("seed {seed}: verify: {e}"));
    assert!(report.is_clean(), "seed {seed}: {:?}", report.problems);
    stopped
}

/// Refusals by the workload's own randomness (a move onto a missing UID
/// range is fine; quota is unlimited) are not faults. Only database errors
/// count as the fault striking.
fn ignore_refusal(e: MailError) -> Result<(), MailError> {
    match e {
        MailError::Db(_) => Err(e),
        other => panic!("unexpected refusal: {other}"),
    }
}

fn points() -> u64 {
    std::env::var("MAILVAULT_CRASH_POINTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000)
}

#[test]
fn crash_at_every_sync() {
    let n = 45;
    let stopped = (0..n)
        .filter(|&i| fault_case(i, |sim| sim.crash_at_sync(sim.sync_count() + i)))
        .count();
    assert!(
        stopped >= 30,
        "only {stopped} of {n} crashes struck during the workload"
    );
}

#[test]
fn crash_at_random_points() {
    let points = points();
    let mut rng = SimRng::new(7);
    let mut stopped = 0;
    for i in 0..points {
        let op = rng.below(WORKLOAD_OPS);
        stopped += u64::from(fault_case(100_000 + i, move |sim| {
            sim.inject_at_op(sim.op_count() + op, FaultKind::Crash)
        }));
    }
    assert!(
        stopped * 2 >= points,
        "only {stopped} of {points} crashes struck during the workload"
    );
}

#[test]
fn io_errors_at_every_call() {
    let mut stopped = 0;
    for op in 0..WORKLOAD_OPS {
        let kind = if op % 2 == 0 { FaultKind::Eio } else { FaultKind::Enospc };
        stopped += u64::from(fault_case(200_000 + op, move |sim| {
            sim.inject_at_op(sim.op_count() + op, kind)
        }));
    }
    assert!(
        stopped * 10 >= WORKLOAD_OPS * 6,
        "only {stopped} of {WORKLOAD_OPS} errors struck during the workload"
    );
}
