//! [`Instant`]: the protocol's clock reading, always given by the caller.
//!
//! Microseconds since an arbitrary epoch chosen by the driver (the runtime converts from
//! `tokio::time::Instant`, the simulator starts at zero). The protocol never reads a clock, so
//! fuzzers, tests and the simulator can build any time they like. Durations are `std::time::Duration`.

use std::fmt;
use std::ops::{Add, Sub};
use std::time::Duration;

/// A point in time, in microseconds since the driver's epoch.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Instant(u64);

impl Instant {
    /// The epoch itself.
    pub const ZERO: Instant = Instant(0);

    /// The instant `micros` microseconds after the epoch.
    pub const fn from_micros(micros: u64) -> Self {
        Instant(micros)
    }

    /// Microseconds since the epoch.
    pub const fn as_micros(self) -> u64 {
        self.0
    }

    /// Time since `earlier`, or zero if `earlier` is later.
    pub fn saturating_since(self, earlier: Instant) -> Duration {
        Duration::from_micros(self.0.saturating_sub(earlier.0))
    }

    /// `self + d`, saturating at the end of time.
    pub fn saturating_add(self, d: Duration) -> Instant {
        Instant(
            self.0
                .saturating_add(u64::try_from(d.as_micros()).unwrap_or(u64::MAX)),
        )
    }
}

impl Add<Duration> for Instant {
    type Output = Instant;

    /// Saturating: the far future stays the far future.
    fn add(self, d: Duration) -> Instant {
        self.saturating_add(d)
    }
}

impl Sub for Instant {
    type Output = Duration;

    /// Saturating: zero if `other` is later.
    fn sub(self, other: Instant) -> Duration {
        self.saturating_since(other)
    }
}

impl fmt::Debug for Instant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:06}s", self.0 / 1_000_000, self.0 % 1_000_000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_saturates() {
        // Proves time arithmetic never panics or wraps, whatever the caller passes.
        let t = Instant::from_micros(1_500_000);
        assert_eq!(
            t + Duration::from_millis(500),
            Instant::from_micros(2_000_000)
        );
        assert_eq!(Instant::ZERO - t, Duration::ZERO);
        assert_eq!(t - Instant::ZERO, Duration::from_micros(1_500_000));
        assert_eq!(
            Instant::from_micros(u64::MAX) + Duration::MAX,
            Instant::from_micros(u64::MAX)
        );
        assert_eq!(format!("{t:?}"), "1.500000s");
    }
}
