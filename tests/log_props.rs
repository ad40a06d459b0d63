//! Property tests: any sequence of appends, flushes and reopens, on any
//! geometry, reads back exactly as appended, from any starting record.

use mailvault::log::{Log, LogOptions, Lsn};
use mailvault::vfs::SimVfs;
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Append(usize, u8),
    Flush,
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (0usize..3000, any::<u8>()).prop_map(|(n, b)| Op::Append(n, b)),
        2 => Just(Op::Flush),
        1 => Just(Op::Reopen),
    ]
}

/// Every record from `from` on, as (LSN, body).
fn read_from(log: &Log, from: Lsn) -> Vec<(Lsn, Vec<u8>)> {
    log.reader(from)
        .expect("reader")
        .map(|r| r.map(|r| (r.lsn, r.data)).expect("record"))
        .collect()
}

fn opts(frame_size: u32, frames: u64) -> LogOptions {
    LogOptions {
        frame_size,
        generation_size: frames * frame_size as u64,
        buffer_size: 16 * 1024,
        max_record_size: 3000,
        recycle_pool: 1,
        ..LogOptions::default()
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn reads_back_what_was_appended(
        frame_size in prop_oneof![Just(512u32), Just(1024), Just(4096)],
        frames in 16u64..64,
        ops in proptest::collection::vec(op(), 1..120),
        start_pick in any::<prop::sample::Index>(),
    ) {
        let opts = opts(frame_size, frames.max(3000 / frame_size as u64 + 16));
        let sim = SimVfs::new(7);
        let mut log = Log::create(sim.clone(), "/log", opts.clone()).expect("create");
        let mut model: Vec<(Lsn, Vec<u8>)> = Vec::new();
        for op in ops {
            match op {
                Op::Append(n, b) => {
                    let data: Vec<u8> = (0..n).map(|i| b.wrapping_add(i as u8)).collect();
                    let a = log.append(&data).expect("append");
                    if let Some((last, _)) = model.last() {
                        prop_assert!(a.lsn > *last);
                    }
                    model.push((a.lsn, data));
                }
                Op::Flush => {
                    log.flush().expect("flush");
                }
                Op::Reopen => {
                    log.close().expect("close");
                    log = Log::open(sim.clone(), "/log", opts.clone()).expect("reopen");
                    prop_assert!(log.recovery_report().torn_tail.is_none());
                }
            }
        }
        log.flush().expect("flush");
        let got = read_from(&log, Lsn::ZERO);
        prop_assert_eq!(&got, &model);
        if !model.is_empty() {
            let start = start_pick.index(model.len());
            let tail = read_from(&log, model[start].0);
            prop_assert_eq!(&tail[..], &model[start..]);
        }
    }

    #[test]
    fn recycling_keeps_the_rest_readable(records in 50usize..300, keep_from in any::<prop::sample::Index>()) {
        let opts = opts(512, 24);
        let sim = SimVfs::new(9);
        let log = Log::create(sim.clone(), "/log", opts.clone()).expect("create");
        let mut model = Vec::new();
        for i in 0..records {
            let data = vec![i as u8; (i * 7) % 900];
            model.push((log.commit(&data).expect("commit").lsn, data));
        }
        let from = keep_from.index(model.len());
        let retired = log.recycle_before(model[from].0).expect("recycle");
        prop_assert_eq!(log.first_generation(), model[from].0.generation().min(log.durable_lsn().generation()));
        prop_assert!(retired < model[from].0.generation().max(1));
        // More writes reuse recycled files; everything from `from` on stays readable.
        for i in 0..100usize {
            let data = vec![(i + 7) as u8; 300];
            model.push((log.commit(&data).expect("commit").lsn, data));
        }
        drop(log);
        let log = Log::open(sim, "/log", opts).expect("reopen");
        let got = read_from(&log, model[from].0);
        prop_assert_eq!(&got[..], &model[from..]);
    }
}
