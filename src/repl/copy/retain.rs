//! A copy's truncation lag: generations it has replayed stay in its log
//! directory for a while longer, so that a logical corruption found late
//! can still be replayed up to a point on another copy, or inspected.

use crate::log::Lsn;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// When replay passed each generation boundary.
#[derive(Debug)]
pub(crate) struct TruncationLag {
    lag: Duration,
    /// (t, g): every generation before `g` was wholly replayed by `t`.
    marks: VecDeque<(Instant, u32)>,
}

impl TruncationLag {
    /// Generations before `replayed` count as replayed `now` (a restarted
    /// copy does not know when: it holds them a whole lag more).
    pub(crate) fn new(lag: Duration, replayed: Lsn, now: Instant) -> TruncationLag {
        let mut marks = VecDeque::new();
        marks.push_back((now, replayed.generation()));
        TruncationLag { lag, marks }
    }

    pub(crate) fn lag(&self) -> Duration {
        self.lag
    }

    pub(crate) fn set_lag(&mut self, lag: Duration) {
        self.lag = lag;
    }

    /// Replay has reached `replayed` by `now`.
    pub(crate) fn replayed(&mut self, replayed: Lsn, now: Instant) {
        let g = replayed.generation();
        if self.marks.back().is_none_or(|&(_, last)| g > last) {
            self.marks.push_back((now, g));
        }
    }

    /// The log from here on must stay: generations before it were
    /// replayed at least a lag ago.
    pub(crate) fn keep(&mut self, now: Instant) -> Lsn {
        let Some(cutoff) = now.checked_sub(self.lag) else {
            return Lsn::ZERO;
        };
        // Older marks go once a newer one is old enough: it covers them.
        while self.marks.get(1).is_some_and(|&(t, _)| t <= cutoff) {
            self.marks.pop_front();
        }
        let free_before = self.marks.front().filter(|&&(t, _)| t <= cutoff).map(|&(_, g)| g);
        free_before.map_or(Lsn::ZERO, |g| Lsn::new(g, 0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replayed_generations_stay_for_the_lag_and_then_go() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let mut lag = TruncationLag::new(10 * s, Lsn::new(3, 0), t0);
        // Generations 1-2 (before 3) count as replayed at t0.
        assert_eq!(lag.keep(t0 + 5 * s), Lsn::ZERO);
        lag.replayed(Lsn::new(5, 100), t0 + 6 * s);
        lag.replayed(Lsn::new(5, 900), t0 + 7 * s);
        lag.replayed(Lsn::new(8, 0), t0 + 8 * s);
        assert_eq!(lag.keep(t0 + 10 * s), Lsn::new(3, 0));
        assert_eq!(lag.keep(t0 + 15 * s), Lsn::new(3, 0));
        assert_eq!(lag.keep(t0 + 16 * s), Lsn::new(5, 0));
        assert_eq!(lag.keep(t0 + 30 * s), Lsn::new(8, 0));
        // The floor stays once everything has aged.
        assert_eq!(lag.keep(t0 + 40 * s), Lsn::new(8, 0));
        let mut none = TruncationLag::new(Duration::ZERO, Lsn::new(4, 0), t0);
        none.replayed(Lsn::new(6, 0), t0 + s);
        assert_eq!(none.keep(t0 + s), Lsn::new(6, 0));
    }
}
