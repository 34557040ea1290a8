//! Where the service reads the time, so tests and drills can set it.
//!
//! Every rule that depends on time (application windows, voucher expiry, annual caps, "usage not
//! in the future", which month a statement covers) reads [`Clock::now_s`] once per command. The
//! system clock serves production; [`ManualClock`] serves tests, which move time forward by a year
//! in a line instead of waiting.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

/// A source of the current time in Unix seconds.
pub trait Clock: Send + Sync {
    fn now_s(&self) -> i64;
}

/// The operating system's clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_s(&self) -> i64 {
        let since_epoch = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        i64::try_from(since_epoch.as_secs()).unwrap_or(i64::MAX)
    }
}

/// A clock that moves only when told; clones share the same time.
#[derive(Clone, Debug)]
pub struct ManualClock(Arc<AtomicI64>);

impl ManualClock {
    pub fn new(now_s: i64) -> ManualClock {
        ManualClock(Arc::new(AtomicI64::new(now_s)))
    }

    pub fn set(&self, now_s: i64) {
        self.0.store(now_s, Ordering::SeqCst);
    }

    pub fn advance(&self, seconds: i64) {
        self.0.fetch_add(seconds, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_s(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// A clock that starts at a chosen instant and then runs at the speed of real time: a server
/// started `--now` in the past, or the demo serving on after its simulated month, keeps moving
/// (usage can be posted, vouchers expire) instead of standing still.
#[derive(Clone, Copy, Debug)]
pub struct RunningClock {
    start_s: i64,
    since: std::time::Instant,
}

impl RunningClock {
    pub fn from(start_s: i64) -> RunningClock {
        RunningClock { start_s, since: std::time::Instant::now() }
    }
}

impl Clock for RunningClock {
    fn now_s(&self) -> i64 {
        let elapsed = i64::try_from(self.since.elapsed().as_secs()).unwrap_or(i64::MAX);
        self.start_s.saturating_add(elapsed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_running_clock_starts_where_it_is_told_and_moves_on() {
        let clock = RunningClock::from(1_000);
        assert!((1_000..1_002).contains(&clock.now_s()));
        std::thread::sleep(std::time::Duration::from_millis(1_100));
        assert!(clock.now_s() >= 1_001);
    }
}
