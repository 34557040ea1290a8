//! How many GPUs an order's recorded usage occupies at each instant, so that overlapping records
//! are checked against each other: at no instant may an order's records add up to more GPUs than
//! it ordered.
//!
//! A record of `gpu_seconds` over `[start, end)` occupies `gpu_seconds / (end - start)` GPUs
//! evenly over its period, counted in millionths of a GPU (rounded down, so a record never counts
//! for more than it says). The occupancy is a step function kept as its breakpoints: the level
//! from each breakpoint to the next, zero before the first. Equal neighbours are merged, and
//! past [`BREAKPOINTS_MAX`] the two oldest steps are merged into one at the higher level: memory
//! stays bounded per open order, and the summary only ever overstates what is occupied, so it may
//! refuse a late record that would have fit, never accept one that does not. When an order ends
//! its occupancy is summarized to [`ENDED_BREAKPOINTS_MAX`] breakpoints: late records of its run
//! are still checked against it.

use imbl::OrdMap;

/// Millionths of a GPU per GPU.
pub const MICRO: i64 = 1_000_000;

/// The most breakpoints kept per order before the oldest steps are summarized.
pub const BREAKPOINTS_MAX: usize = 512;

/// The most breakpoints kept for an order that has ended (late records of its run are still
/// checked against it).
pub const ENDED_BREAKPOINTS_MAX: usize = 16;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Occupancy {
    /// Breakpoint → level (micro-GPUs) from it to the next breakpoint; the last level is 0.
    steps: OrdMap<i64, i64>,
}

/// The micro-GPUs a record occupies: its GPU-seconds spread evenly over its period.
pub fn rate(gpu_seconds: i64, start_s: i64, end_s: i64) -> i64 {
    debug_assert!(end_s > start_s);
    let rate = i128::from(gpu_seconds) * i128::from(MICRO) / i128::from(end_s - start_s);
    i64::try_from(rate).unwrap_or(i64::MAX)
}

impl Occupancy {
    /// A summary that counts `[start, end)` as fully occupied at `level`: what a checkpoint
    /// written before occupancies were kept is rebuilt as.
    pub fn full(start_s: i64, end_s: i64, level: i64) -> Occupancy {
        let mut occupancy = Occupancy::default();
        if end_s > start_s {
            occupancy.steps.insert(start_s, level);
            occupancy.steps.insert(end_s, 0);
        }
        occupancy
    }

    fn level_at(&self, t: i64) -> i64 {
        self.steps.range(..=t).next_back().map_or(0, |(_, level)| *level)
    }

    /// The highest level anywhere in `[start, end)`.
    pub fn peak(&self, start_s: i64, end_s: i64) -> i64 {
        let inside = self.steps.range(start_s..end_s).map(|(_, level)| *level).max().unwrap_or(0);
        inside.max(self.level_at(start_s))
    }

    /// Adds `rate` micro-GPUs over `[start, end)`.
    pub fn add(&mut self, start_s: i64, end_s: i64, rate: i64) {
        if end_s <= start_s || rate == 0 {
            return;
        }
        let at_start = self.level_at(start_s);
        let at_end = self.level_at(end_s);
        self.steps.insert(start_s, at_start);
        self.steps.insert(end_s, at_end);
        let inside: Vec<i64> = self.steps.range(start_s..end_s).map(|(t, _)| *t).collect();
        for t in inside {
            if let Some(level) = self.steps.get_mut(&t) {
                *level = level.saturating_add(rate);
            }
        }
        self.merge_equal(start_s);
        self.merge_equal(end_s);
        while self.steps.len() > BREAKPOINTS_MAX {
            self.summarize_oldest();
        }
    }

    /// Removes the breakpoint at `t` when it does not change the level.
    fn merge_equal(&mut self, t: i64) {
        let Some(level) = self.steps.get(&t).copied() else { return };
        let before = self.steps.range(..t).next_back().map_or(0, |(_, level)| *level);
        if level == before {
            self.steps.remove(&t);
        }
    }

    /// Summarizes the oldest steps until at most `max` breakpoints remain.
    pub fn compact(&mut self, max: usize) {
        while self.steps.len() > max.max(2) {
            self.summarize_oldest();
        }
    }

    /// Merges the two oldest steps into one at the higher level.
    fn summarize_oldest(&mut self) {
        let mut oldest = self.steps.iter().take(2).map(|(t, level)| (*t, *level));
        let (Some((first, a)), Some((second, b))) = (oldest.next(), oldest.next()) else { return };
        self.steps.remove(&second);
        self.steps.insert(first, a.max(b));
    }

    /// The breakpoints, for a checkpoint.
    pub fn steps(&self) -> Vec<(i64, i64)> {
        self.steps.iter().map(|(t, level)| (*t, *level)).collect()
    }

    pub fn from_steps(steps: Vec<(i64, i64)>) -> Occupancy {
        Occupancy { steps: steps.into_iter().collect() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The occupancy at `t` by brute force over the records added.
    fn brute(records: &[(i64, i64, i64)], t: i64) -> i64 {
        records.iter().filter(|(s, e, _)| *s <= t && t < *e).map(|(_, _, r)| r).sum()
    }

    #[test]
    fn overlapping_records_add_up() {
        let mut o = Occupancy::default();
        o.add(0, 3600, rate(100 * 3600, 0, 3600));
        assert_eq!(o.peak(0, 3600), 100 * MICRO);
        assert_eq!(o.peak(3600, 7200), 0);
        o.add(1800, 1801, rate(1, 1800, 1801));
        assert_eq!(o.peak(0, 7200), 100 * MICRO + MICRO);
        assert_eq!(o.peak(1801, 3600), 100 * MICRO);
    }

    proptest! {
        /// Without summarizing, the peak is exact; with it, never below the truth.
        #[test]
        fn peak_never_understates(
            records in prop::collection::vec((0i64..2_000, 1i64..300, 0i64..5_000), 1..700),
            probes in prop::collection::vec((0i64..2_400, 1i64..300), 1..40),
        ) {
            let mut o = Occupancy::default();
            let mut added = Vec::new();
            for (start, len, r) in records {
                o.add(start, start + len, r);
                added.push((start, start + len, r));
                prop_assert!(o.steps.len() <= BREAKPOINTS_MAX);
            }
            for (start, len) in probes {
                let truth = (start..start + len).map(|t| brute(&added, t)).max().unwrap();
                let peak = o.peak(start, start + len);
                prop_assert!(peak >= truth, "peak {} below the truth {}", peak, truth);
                if added.len() * 2 < BREAKPOINTS_MAX {
                    prop_assert_eq!(peak, truth);
                }
            }
        }
    }
}
