//! The random transaction the replication tests drive an active with: a few
//! puts and deletes on table `t`, some values long (several pages). Each
//! test picks its own mix.

use mailvault::txn::Database;
use mailvault::vfs::sim::SimRng;

/// The shape of a transaction: every choice is "one in n" or "below n".
pub struct Mix {
    /// Operations: 1 + below(ops_below).
    pub ops_below: u64,
    /// Keys `k000` up to this many.
    pub keys: u64,
    pub delete_one_in: u64,
    pub long_one_in: u64,
    /// A long value's length: long_min + below(long_span).
    pub long_min: u64,
    pub long_span: u64,
    /// A short value's length: below(short_below).
    pub short_below: u64,
}

/// One transaction of `mix`, committed; values are filled from `round`.
pub fn work_mix(db: &Database, rng: &mut SimRng, round: u64, mix: &Mix) {
    let mut tx = db.begin_write();
    let t = tx.open_table("t").unwrap();
    for _ in 0..1 + rng.below(mix.ops_below) {
        let key = format!("k{:03}", rng.below(mix.keys));
        if rng.below(mix.delete_one_in) == 0 {
            tx.delete(&t, key.as_bytes()).unwrap();
        } else {
            let len = if rng.below(mix.long_one_in) == 0 {
                mix.long_min + rng.below(mix.long_span)
            } else {
                rng.below(mix.short_below)
            };
            let mut v = vec![0u8; len as usize];
            SimRng::new(round).fill(&mut v);
            tx.put(&t, key.as_bytes(), &v).unwrap();
        }
    }
    tx.commit().unwrap();
}
