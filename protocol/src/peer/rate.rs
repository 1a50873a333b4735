//! [`RateMeter`]: bytes per second over a rolling window, from timestamps the caller gives.
//!
//! One-second buckets in a fixed ring: O(1) memory and time per sample, whatever the traffic. The
//! rate is the bytes in the last [`RateMeter::WINDOW_SECS`] whole seconds (plus the current
//! partial one) divided by the time they span, so a peer that just connected is not under-rated.

use crate::time::Instant;

/// A rolling-window byte rate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RateMeter {
    buckets: [u64; Self::WINDOW_SECS as usize + 1],
    /// The second (since the epoch) that `buckets[current]` counts.
    current_sec: u64,
    current: usize,
    /// When the first sample or the meter's creation happened.
    started: Instant,
    total: u64,
}

impl RateMeter {
    /// Length of the window in seconds (the choker's tit-for-tat window).
    pub const WINDOW_SECS: u64 = 20;

    /// A meter that starts counting at `now`.
    pub fn new(now: Instant) -> Self {
        RateMeter {
            buckets: [0; Self::WINDOW_SECS as usize + 1],
            current_sec: now.as_micros() / 1_000_000,
            current: 0,
            started: now,
            total: 0,
        }
    }

    fn advance(&mut self, now: Instant) {
        let sec = now.as_micros() / 1_000_000;
        if sec <= self.current_sec {
            return;
        }
        let steps = (sec - self.current_sec).min(self.buckets.len() as u64);
        for _ in 0..steps {
            self.current = (self.current + 1) % self.buckets.len();
            self.buckets[self.current] = 0;
        }
        self.current_sec = sec;
    }

    /// Counts `bytes` moved at `now`. Earlier-than-last timestamps count in the current second.
    pub fn record(&mut self, now: Instant, bytes: u64) {
        self.advance(now);
        self.buckets[self.current] = self.buckets[self.current].saturating_add(bytes);
        self.total = self.total.saturating_add(bytes);
    }

    /// Bytes per second over the window ending at `now`.
    pub fn rate(&self, now: Instant) -> u64 {
        let now_sec = now.as_micros() / 1_000_000;
        let age = now_sec.saturating_sub(self.current_sec);
        let len = self.buckets.len();
        // Bucket `j` steps back from the current one counts second `current_sec - j`; it is in the
        // window if that second is at most WINDOW_SECS before `now`'s.
        let sum: u64 = (0..len as u64)
            .filter(|j| age + j <= Self::WINDOW_SECS)
            .map(|j| self.buckets[(self.current + len - j as usize) % len])
            .sum();
        // The window spans WINDOW_SECS whole seconds plus the fraction of the current one, but
        // never more than the meter has existed.
        let into_current = now.as_micros() % 1_000_000;
        let window_micros = Self::WINDOW_SECS * 1_000_000 + into_current;
        let alive_micros = u64::try_from((now - self.started).as_micros()).unwrap_or(u64::MAX);
        let span = window_micros.min(alive_micros).max(1_000_000);
        ((u128::from(sum) * 1_000_000) / u128::from(span)) as u64
    }

    /// Bytes counted since creation.
    pub fn total(&self) -> u64 {
        self.total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs_tenths: u64) -> Instant {
        Instant::from_micros(secs_tenths * 100_000)
    }

    #[test]
    fn steady_rate_is_measured() {
        // Proves a steady 100 KB/s stream reads as about 100 KB/s once the window is full and
        // while it fills.
        let mut m = RateMeter::new(at(0));
        for t in 0..300 {
            m.record(at(t), 10_000);
        }
        let r = m.rate(at(300));
        assert!((95_000..=105_000).contains(&r), "{r}");
        let mut young = RateMeter::new(at(0));
        for t in 0..30 {
            young.record(at(t), 10_000);
        }
        let r = young.rate(at(30));
        assert!((90_000..=110_000).contains(&r), "{r}");
    }

    #[test]
    fn rate_decays_after_traffic_stops() {
        // Proves old traffic leaves the window: 25 s of silence reads as zero.
        let mut m = RateMeter::new(at(0));
        m.record(at(5), 1_000_000);
        assert!(m.rate(at(10)) > 0);
        assert_eq!(m.rate(at(260)), 0);
        assert_eq!(m.total(), 1_000_000);
    }

    #[test]
    fn odd_timestamps_do_not_panic() {
        // Proves time going backwards or jumping far ahead is harmless.
        let mut m = RateMeter::new(at(100));
        m.record(at(50), 10);
        m.record(Instant::from_micros(u64::MAX), u64::MAX);
        m.record(Instant::from_micros(u64::MAX), 5);
        let _ = m.rate(Instant::from_micros(u64::MAX));
        let _ = m.rate(at(0));
    }
}
