//! [`Congestion`]: a uTP sender's round-trip estimate, retransmission timeout and LEDBAT
//! congestion window (BEP 29).
//!
//! - RTT: each ACK of a packet sent once gives a sample; `rtt_var += (|rtt - sample| - rtt_var) / 4`,
//!   `rtt += (sample - rtt) / 8`, and `rto = max(rtt + 4 * rtt_var, MIN_RTO)`. Before the first
//!   sample the RTO is [`INITIAL_RTO`]; each timeout doubles it, up to [`MAX_RTO`].
//! - Delay: every packet from the peer carries its measurement of our packets' one-way delay
//!   (`timestamp_difference_microseconds`, clocks unsynchronised). The base delay is the least
//!   sample over the last [`BASE_DELAY_MINUTES`] minutes, kept as one minimum per minute
//!   ([`DelayHistory`]); the queueing delay is a sample minus the base.
//! - Window: on each ACK of `bytes_acked`, with `off_target = (TARGET - queueing) / TARGET`
//!   (at most 1), `cwnd += MAX_CWND_INCREASE_PER_RTT * off_target * bytes_acked / cwnd`, so the
//!   window grows by at most [`MAX_CWND_INCREASE_PER_RTT`] bytes a round trip and shrinks in
//!   proportion when the delay is over target. As libtorrent does, a new connection starts in slow
//!   start (the window grows by the bytes acked) until the delay reaches the target or a loss;
//!   the window only grows while the sender fills it. A loss halves the window, a timeout drops it
//!   to one packet, and it never falls below one packet ([`Congestion::MSS`]) nor rises above
//!   [`MAX_CWND`].

use core::time::Duration;

use crate::time::Instant;

/// The RTO before any RTT sample (BEP 29: 1000 ms).
pub const INITIAL_RTO: Duration = Duration::from_secs(1);

/// The least RTO (BEP 29: 500 ms).
pub const MIN_RTO: Duration = Duration::from_millis(500);

/// The most the RTO backs off to.
pub const MAX_RTO: Duration = Duration::from_secs(60);

/// LEDBAT's queueing-delay target (BEP 29: `CCONTROL_TARGET`, 100 ms).
pub const TARGET_DELAY: Duration = Duration::from_millis(100);

/// The most the window grows in one round trip, in bytes (BEP 29:
/// `MAX_CWND_INCREASE_PACKETS_PER_RTT`, 3000 bytes).
pub const MAX_CWND_INCREASE_PER_RTT: f64 = 3000.0;

/// The largest congestion window, in bytes (the in-flight bound makes more useless).
pub const MAX_CWND: f64 = (1 << 20) as f64;

/// How many minutes of delay minima make the base delay.
pub const BASE_DELAY_MINUTES: usize = 2;

const MINUTE: Duration = Duration::from_secs(60);

/// Whether `a` is before `b` on a wrapping 32-bit microsecond clock.
fn before_wrapping(a: u32, b: u32) -> bool {
    b.wrapping_sub(a) < a.wrapping_sub(b)
}

/// Per-minute minima of the peer's delay samples over the last [`BASE_DELAY_MINUTES`] minutes;
/// fixed size.
#[derive(Clone, Debug)]
pub struct DelayHistory {
    minima: [Option<u32>; BASE_DELAY_MINUTES],
    minute_started: Option<Instant>,
}

impl DelayHistory {
    /// An empty history.
    pub const fn new() -> Self {
        DelayHistory {
            minima: [None; BASE_DELAY_MINUTES],
            minute_started: None,
        }
    }

    /// Records `sample` (a wrapping microsecond difference) taken at `now`; returns the queueing
    /// delay it shows: the sample minus the base delay.
    pub fn add(&mut self, now: Instant, sample: u32) -> Duration {
        let started = *self.minute_started.get_or_insert(now);
        let minutes = (now.saturating_since(started).as_secs() / MINUTE.as_secs()) as usize;
        if minutes > 0 {
            let shift = minutes.min(BASE_DELAY_MINUTES);
            self.minima.rotate_right(shift);
            self.minima[..shift].fill(None);
            self.minute_started = Some(started + MINUTE * minutes.min(1 << 20) as u32);
        }
        let current = &mut self.minima[0];
        if current.is_none_or(|m| before_wrapping(sample, m)) {
            *current = Some(sample);
        }
        let base = self.base().unwrap_or(sample);
        Duration::from_micros(u64::from(sample.wrapping_sub(base)))
    }

    /// The base delay: the least sample kept, if any.
    pub fn base(&self) -> Option<u32> {
        self.minima
            .iter()
            .flatten()
            .copied()
            .reduce(|a, b| if before_wrapping(b, a) { b } else { a })
    }
}

impl Default for DelayHistory {
    fn default() -> Self {
        Self::new()
    }
}

/// The sender's congestion state: see the module docs.
#[derive(Clone, Debug)]
pub struct Congestion {
    cwnd: f64,
    slow_start: bool,
    ssthresh: f64,
    rtt: Option<(Duration, Duration)>,
    rto: Duration,
    delays: DelayHistory,
    queuing_delay: Option<Duration>,
}

impl Congestion {
    /// One packet's payload, in bytes: the least window.
    pub const MSS: f64 = crate::utp::socket::MAX_PAYLOAD as f64;

    /// A new connection's state: a window of two packets, in slow start.
    pub fn new() -> Self {
        Congestion {
            cwnd: 2.0 * Self::MSS,
            slow_start: true,
            ssthresh: MAX_CWND,
            rtt: None,
            rto: INITIAL_RTO,
            delays: DelayHistory::new(),
            queuing_delay: None,
        }
    }

    /// The congestion window, in bytes.
    pub fn cwnd(&self) -> usize {
        self.cwnd as usize
    }

    /// The smoothed round-trip time and its mean deviation, once sampled.
    pub fn rtt(&self) -> Option<(Duration, Duration)> {
        self.rtt
    }

    /// The retransmission timeout.
    pub fn rto(&self) -> Duration {
        self.rto
    }

    /// The last queueing delay measured.
    pub fn queuing_delay(&self) -> Option<Duration> {
        self.queuing_delay
    }

    /// Whether the window is still in slow start.
    pub fn in_slow_start(&self) -> bool {
        self.slow_start
    }

    /// Takes a round-trip sample (from a packet sent only once).
    pub fn on_rtt_sample(&mut self, sample: Duration) {
        let (rtt, var) = match self.rtt {
            None => (sample, sample / 2),
            Some((rtt, var)) => {
                let delta = rtt.abs_diff(sample);
                let var = (var * 3 + delta) / 4;
                let rtt = (rtt * 7 + sample) / 8;
                (rtt, var)
            }
        };
        self.rtt = Some((rtt, var));
        self.rto = (rtt + var * 4).clamp(MIN_RTO, MAX_RTO);
    }

    /// Takes the peer's delay sample (`timestamp_difference_microseconds`) carried by a packet.
    pub fn on_delay_sample(&mut self, now: Instant, sample: u32) {
        self.queuing_delay = Some(self.delays.add(now, sample));
    }

    /// Grows or shrinks the window for an ACK of `bytes_acked` new bytes, with `in_flight`
    /// bytes outstanding before it.
    pub fn on_ack(&mut self, bytes_acked: usize, in_flight: usize) {
        let Some(queuing) = self.queuing_delay else {
            return;
        };
        let target = TARGET_DELAY.as_secs_f64();
        let off_target = ((target - queuing.as_secs_f64()) / target).min(1.0);
        if off_target <= 0.0 && self.slow_start {
            self.slow_start = false;
            self.ssthresh = self.cwnd / 2.0;
        }
        // Only a sender that fills its window learns anything about the path.
        let saturated = (in_flight as f64) + Self::MSS > self.cwnd;
        if !saturated {
            return;
        }
        let acked = bytes_acked as f64;
        let linear = MAX_CWND_INCREASE_PER_RTT * off_target * acked / self.cwnd;
        let gain = if self.slow_start && self.cwnd + acked <= self.ssthresh {
            acked.max(linear)
        } else {
            self.slow_start = false;
            linear
        };
        self.cwnd = (self.cwnd + gain).clamp(Self::MSS, MAX_CWND);
    }

    /// A packet was lost: halve the window and leave slow start (the caller limits this to
    /// once a round trip).
    pub fn on_loss(&mut self) {
        self.cwnd = (self.cwnd / 2.0).max(Self::MSS);
        self.ssthresh = self.cwnd;
        self.slow_start = false;
    }

    /// The retransmission timer fired: one packet of window, slow start up to half the old
    /// window, and the RTO doubled.
    pub fn on_timeout(&mut self) {
        self.ssthresh = (self.cwnd / 2.0).max(Self::MSS);
        self.cwnd = Self::MSS;
        self.slow_start = true;
        self.rto = (self.rto * 2).min(MAX_RTO);
    }
}

impl Default for Congestion {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at_secs(s: u64) -> Instant {
        Instant::from_micros(s * 1_000_000)
    }

    #[test]
    fn base_delay_is_the_recent_minimum_across_the_wrap() {
        // Proves the base is the least sample of the last two minutes, compared across the u32
        // wrap, and that an old minimum is forgotten after two minutes.
        let mut h = DelayHistory::new();
        let base = u32::MAX - 1000; // the peer's clock offset puts samples around the wrap
        assert_eq!(h.add(at_secs(0), base), Duration::ZERO);
        assert_eq!(
            h.add(at_secs(1), base.wrapping_add(50_000)),
            Duration::from_millis(50)
        );
        assert_eq!(
            h.add(at_secs(61), base.wrapping_add(20_000)),
            Duration::from_millis(20)
        );
        assert_eq!(h.base(), Some(base));
        assert_eq!(
            h.add(at_secs(125), base.wrapping_add(30_000)),
            Duration::from_millis(10)
        );
        assert_eq!(h.base(), Some(base.wrapping_add(20_000)));
        assert_eq!(
            h.add(at_secs(600), base.wrapping_add(30_000)),
            Duration::ZERO
        );
    }

    #[test]
    fn rto_follows_rtt_and_backs_off() {
        // Proves BEP 29's RTO: 1 s before samples, rtt + 4 var floored at 500 ms, doubling on timeout.
        let mut c = Congestion::new();
        assert_eq!(c.rto(), INITIAL_RTO);
        c.on_rtt_sample(Duration::from_millis(40));
        assert_eq!(
            c.rtt(),
            Some((Duration::from_millis(40), Duration::from_millis(20)))
        );
        assert_eq!(c.rto(), MIN_RTO);
        c.on_rtt_sample(Duration::from_millis(800));
        let (rtt, var) = c.rtt().unwrap();
        assert_eq!(rtt, Duration::from_millis(135));
        assert_eq!(var, Duration::from_millis(205));
        assert_eq!(c.rto(), Duration::from_millis(955));
        c.on_timeout();
        assert_eq!(c.rto(), Duration::from_millis(1910));
        assert_eq!(c.cwnd(), Congestion::MSS as usize);
        for _ in 0..10 {
            c.on_timeout();
        }
        assert_eq!(c.rto(), MAX_RTO);
    }

    #[test]
    fn window_grows_under_target_and_shrinks_over_it() {
        // Proves LEDBAT's direction: growth below the target, at most 3000 bytes a round trip,
        // shrinking above it, never under one packet; a loss halves.
        let mut c = Congestion::new();
        c.slow_start = false;
        c.cwnd = 30_000.0;
        c.on_delay_sample(at_secs(0), 1_000_000);
        // A whole window acked at zero queueing: +3000 bytes, in pieces.
        for _ in 0..30 {
            c.on_ack(1000, c.cwnd() + 1000);
        }
        assert!((32_800..=33_000).contains(&c.cwnd()), "{}", c.cwnd());
        // Queueing 300 ms: off_target -2, shrinks.
        c.on_delay_sample(at_secs(1), 1_300_000);
        let before = c.cwnd();
        c.on_ack(10_000, c.cwnd());
        assert!(c.cwnd() < before - 1500, "{} {before}", c.cwnd());
        // Not saturated: no change.
        let before = c.cwnd();
        c.on_ack(1000, 0);
        assert_eq!(c.cwnd(), before);
        c.on_loss();
        assert_eq!(c.cwnd(), before / 2);
        for _ in 0..100 {
            c.on_ack(100_000, c.cwnd());
        }
        assert_eq!(c.cwnd(), Congestion::MSS as usize);
    }
}
