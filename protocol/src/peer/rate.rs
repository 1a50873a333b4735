//! [`RateMeter`]: bytes per second over a rolling window, from timestamps the caller gives.
//!
//! One-second buckets in a fixed ring: O(1) memory and time per sample, whatever the traffic. A
//! running sum of the ring makes [`RateMeter::rate`] O(1) too (plus one step per whole second
//! since the last sample, at most [`RateMeter::WINDOW_SECS`]). The rate is the bytes in the last [`RateMeter::WINDOW_SECS`] whole seconds (plus the current
//! partial one) divided by the time they span, so a peer that just connected is not under-rated.

use crate::time::Instant;

/// A rolling-window byte rate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RateMeter {
    buckets: [u64; Self::WINDOW_SECS as usize + 1],
    /// The second (since the epoch) that `buckets[current]` counts.
    current_sec: u64,
    current: usize,
    /// The sum of `buckets` (a `u128`, so no sum of saturated buckets overflows).
    sum: u128,
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
            sum: 0,
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
            self.sum -= u128::from(self.buckets[self.current]);
            self.buckets[self.current] = 0;
        }
        self.current_sec = sec;
    }

    /// Counts `bytes` moved at `now`. Earlier-than-last timestamps count in the current second.
    pub fn record(&mut self, now: Instant, bytes: u64) {
        self.advance(now);
        let bucket = &mut self.buckets[self.current];
        let before = *bucket;
        *bucket = before.saturating_add(bytes);
        self.sum += u128::from(*bucket - before);
        self.total = self.total.saturating_add(bytes);
    }

    /// Bytes per second over the window ending at `now`.
    pub fn rate(&self, now: Instant) -> u64 {
        let now_sec = now.as_micros() / 1_000_000;
        let age = now_sec.saturating_sub(self.current_sec);
        let len = self.buckets.len();
        // Bucket `j` steps back from the current one counts second `current_sec - j`; it is in the
        // window if that second is at most WINDOW_SECS before `now`'s: all but the `age` oldest.
        let sum = if age > Self::WINDOW_SECS {
            0
        } else {
            let oldest: u128 = (Self::WINDOW_SECS - age + 1..len as u64)
                .map(|j| u128::from(self.buckets[(self.current + len - j as usize) % len]))
                .sum();
            self.sum - oldest
        };
        // The window spans WINDOW_SECS whole seconds plus the fraction of the current one, but
        // never more than the meter has existed.
        let into_current = now.as_micros() % 1_000_000;
        let window_micros = Self::WINDOW_SECS * 1_000_000 + into_current;
        let alive_micros = u64::try_from((now - self.started).as_micros()).unwrap_or(u64::MAX);
        let span = window_micros.min(alive_micros).max(1_000_000);
        // The choker asks this of every peer each round: a 64-bit division when the product
        // fits (below about 18 TB in the window), the 128-bit one only past that.
        match u64::try_from(sum)
            .ok()
            .and_then(|s| s.checked_mul(1_000_000))
        {
            Some(scaled) => scaled / span,
            None => ((sum * 1_000_000) / u128::from(span)) as u64,
        }
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

    /// The rate as the meter computed it before the running sum: every bucket of the ring looked
    /// at afresh.
    fn rate_from_scratch(m: &RateMeter, now: Instant) -> u64 {
        let now_sec = now.as_micros() / 1_000_000;
        let age = now_sec.saturating_sub(m.current_sec);
        let len = m.buckets.len();
        let sum: u128 = (0..len as u64)
            .filter(|j| age + j <= RateMeter::WINDOW_SECS)
            .map(|j| u128::from(m.buckets[(m.current + len - j as usize) % len]))
            .sum();
        let into_current = now.as_micros() % 1_000_000;
        let window_micros = RateMeter::WINDOW_SECS * 1_000_000 + into_current;
        let alive_micros = u64::try_from((now - m.started).as_micros()).unwrap_or(u64::MAX);
        let span = window_micros.min(alive_micros).max(1_000_000);
        // The choker asks this of every peer each round: a 64-bit division when the product
        // fits (below about 18 TB in the window), the 128-bit one only past that.
        match u64::try_from(sum)
            .ok()
            .and_then(|s| s.checked_mul(1_000_000))
        {
            Some(scaled) => scaled / span,
            None => ((sum * 1_000_000) / u128::from(span)) as u64,
        }
    }

    proptest::proptest! {
        #[test]
        fn running_sum_matches_the_ring(
            start in 0u64..5_000_000,
            steps in proptest::collection::vec((0u64..3_000_000, 0u64..100_000, 0u64..30_000_000), 1..60),
        ) {
            // Proves the O(1) rate equals summing the ring afresh, at every sample and at later
            // instants up to past the window, with gaps, bursts and timestamps out of order.
            let mut t = start;
            let mut m = RateMeter::new(Instant::from_micros(start));
            for (gap, bytes, probe) in steps {
                t += gap;
                let at = Instant::from_micros(if bytes % 7 == 0 { t.saturating_sub(gap * 2) } else { t });
                m.record(at, bytes);
                for later in [t, t + probe, t + probe / 3, t.saturating_sub(probe)] {
                    let later = Instant::from_micros(later);
                    proptest::prop_assert_eq!(m.rate(later), rate_from_scratch(&m, later));
                }
            }
        }
    }
}
