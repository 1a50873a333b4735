//! Rate limits: [`TokenBucket`] (one limit in bytes per second), the per-torrent pacer that
//! decides which peers may request or be served a block now and when to wake for the next, and
//! [`RateShares`], the division of a process-wide limit among torrents.
//!
//! What counts: only block payload (the `len` of the blocks of `request` and `piece` messages),
//! never handshakes, message headers or extension traffic. The rates users see and set are payload
//! rates, as in libtorrent's and Transmission's displays, so the limit is on the same quantity.
//!
//! The guarantee: a torrent with a limit of `r` bytes/s takes at most `r * t + depth` bytes of
//! tokens over any span `t`, where `depth` ([`TokenBucket::depth`]) is [`DEPTH_TIME`] of rate but at
//! least one block ([`BLOCK_SIZE`]). With the default 200 ms the payload moved over any 10 s window
//! exceeds the limit by at most 2 %, for rates of 80 KiB/s and more (below that, one block is more
//! than 200 ms of rate and the slack is one block). Tokens accrue continuously, so a torrent
//! that always wants more moves the full rate: it falls short only by what it could not use.
//!
//! Downloads are limited where they start: a request goes out only once the bucket holds its
//! block, so the peer is never asked for more than the limit (reading slowly would leave the
//! bytes in flight in the peer's socket). A request the peer rejects, or drops as it chokes us,
//! gives its tokens back, so refusals do not eat into the rate. Uploads are limited where the disk read for a
//! requested block is issued; requests wait in the peer's bounded queue meanwhile.
//!
//! Time is an argument everywhere ([`Instant`]); arithmetic is in whole micro-bytes, so no
//! rounding drifts however often the bucket is asked.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::metainfo::BLOCK_SIZE;
use crate::time::Instant;

/// The bucket depth, as time of rate: a full bucket lets this much of the rate through at once.
pub const DEPTH_TIME: Duration = Duration::from_millis(200);

/// How often [`RateShares`] divides a global limit among torrents anew.
pub const DIVISION_INTERVAL: Duration = Duration::from_secs(1);

/// Micro-bytes in a byte: the bucket's unit, so a microsecond at any whole rate is a whole count.
const MICRO: u128 = 1_000_000;

/// A token bucket over payload bytes: tokens accrue at [`TokenBucket::rate`] bytes per second up
/// to [`TokenBucket::depth`] bytes; moving `n` bytes takes `n` tokens. See the module docs.
///
/// Invariant: the level never exceeds the depth; it is the level at `updated`, the latest instant
/// the bucket was given (earlier instants add nothing).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenBucket {
    rate: u64,
    depth: u64,
    /// Tokens in micro-bytes, at most `depth * MICRO`.
    level: u128,
    updated: Instant,
}

impl TokenBucket {
    /// A full bucket of `rate_bytes_per_s` at `now`. A rate of zero lets nothing through.
    pub fn new(rate_bytes_per_s: u64, now: Instant) -> Self {
        let depth = Self::depth_for(rate_bytes_per_s);
        TokenBucket {
            rate: rate_bytes_per_s,
            depth,
            level: if rate_bytes_per_s == 0 {
                0
            } else {
                u128::from(depth) * MICRO
            },
            updated: now,
        }
    }

    /// The depth a bucket of `rate_bytes_per_s` gets: [`DEPTH_TIME`] of rate, at least one
    /// block ([`BLOCK_SIZE`]) so every block can pass.
    pub fn depth_for(rate_bytes_per_s: u64) -> u64 {
        let of_rate = u128::from(rate_bytes_per_s) * DEPTH_TIME.as_micros() / MICRO;
        u64::try_from(of_rate)
            .unwrap_or(u64::MAX)
            .max(u64::from(BLOCK_SIZE))
    }

    /// The rate in bytes per second.
    pub fn rate(&self) -> u64 {
        self.rate
    }

    /// The most tokens the bucket holds, in bytes.
    pub fn depth(&self) -> u64 {
        self.depth
    }

    /// Whole bytes available at `now`.
    pub fn available(&self, now: Instant) -> u64 {
        u64::try_from(self.level_at(now) / MICRO).unwrap_or(u64::MAX)
    }

    /// Takes `bytes` tokens at `now` if that many are available; all or nothing.
    pub fn take(&mut self, now: Instant, bytes: u64) -> bool {
        self.settle(now);
        let want = u128::from(bytes) * MICRO;
        if self.level < want {
            return false;
        }
        self.level -= want;
        true
    }

    /// Gives back `bytes` tokens taken for payload that never moved (a request the peer
    /// rejected or dropped), up to the depth.
    pub fn refund(&mut self, bytes: u64) {
        let depth = u128::from(self.depth) * MICRO;
        self.level = (self.level + u128::from(bytes) * MICRO).min(depth);
    }

    /// When `bytes` tokens (at most the depth: more never fit) are available: the instant of the
    /// last call if they already are, `None` if never (a rate of zero).
    pub fn ready_at(&self, bytes: u64) -> Option<Instant> {
        let want = u128::from(bytes.min(self.depth)) * MICRO;
        if self.level >= want {
            return Some(self.updated);
        }
        if self.rate == 0 {
            return None;
        }
        let micros = (want - self.level).div_ceil(u128::from(self.rate));
        let micros = u64::try_from(micros).unwrap_or(u64::MAX);
        Some(self.updated + Duration::from_micros(micros))
    }

    /// Changes the rate at `now`: tokens accrued until `now` count at the old rate, the depth
    /// follows the new rate ([`TokenBucket::depth_for`]) and the level is cut to it.
    pub fn set_rate(&mut self, now: Instant, rate_bytes_per_s: u64) {
        self.settle(now);
        self.rate = rate_bytes_per_s;
        self.depth = Self::depth_for(rate_bytes_per_s);
        self.level = self.level.min(u128::from(self.depth) * MICRO);
    }

    fn level_at(&self, now: Instant) -> u128 {
        let elapsed = now.saturating_since(self.updated).as_micros();
        (self.level + elapsed * u128::from(self.rate)).min(u128::from(self.depth) * MICRO)
    }

    fn settle(&mut self, now: Instant) {
        if now > self.updated {
            self.level = self.level_at(now);
            self.updated = now;
        }
    }
}

/// What one torrent did with one direction's limit since it was last asked: the input of
/// [`RateShares::divide`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    /// Payload bytes the bucket let through.
    pub bytes: u64,
    /// Whether the bucket held a transfer back (the torrent would have moved more).
    pub held_back: bool,
}

/// A download and an upload limit in bytes per second; `None` is unlimited.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Limits {
    /// Download payload limit.
    pub download: Option<u64>,
    /// Upload payload limit.
    pub upload: Option<u64>,
}

/// One direction's limit inside a torrent: the bucket, the peers it holds back (waiting for
/// tokens) and the usage reported to [`RateShares`]. Unlimited, it holds nothing and every method
/// is a field test.
///
/// Bounds: `waiting` holds at most one entry per connected peer (callers [`Pacer::forget`] a peer
/// that goes).
#[derive(Clone, Debug)]
pub(crate) struct Pacer<K> {
    bucket: Option<TokenBucket>,
    /// Peers that wanted to move a block and found too few tokens: looked at again once a block's
    /// worth accrues.
    waiting: BTreeSet<K>,
    /// The peer that last moved a block under the limit: the next pass starts after it, so the
    /// tokens go round the peers instead of to the lowest handle.
    last_served: Option<K>,
    usage: Usage,
}

impl<K: Ord + Copy> Pacer<K> {
    /// A pacer for `limit` bytes/s (`None`: unlimited); a limited one starts full.
    pub(crate) fn new(limit: Option<u64>) -> Self {
        Pacer {
            bucket: limit.map(|rate| TokenBucket::new(rate, Instant::ZERO)),
            waiting: BTreeSet::new(),
            last_served: None,
            usage: Usage::default(),
        }
    }

    /// Sets the limit at `now`; the peers held back are returned, to be looked at again (a
    /// limit raised or lifted lets them go on).
    pub(crate) fn set_limit(&mut self, now: Instant, limit: Option<u64>) -> BTreeSet<K> {
        match (&mut self.bucket, limit) {
            (Some(bucket), Some(rate)) => bucket.set_rate(now, rate),
            (bucket, limit) => *bucket = limit.map(|rate| TokenBucket::new(rate, now)),
        }
        std::mem::take(&mut self.waiting)
    }

    /// The limit in bytes/s, if any.
    pub(crate) fn limit(&self) -> Option<u64> {
        self.bucket.as_ref().map(TokenBucket::rate)
    }

    /// How many whole blocks may move at `now` (unlimited: `usize::MAX`).
    pub(crate) fn blocks_available(&self, now: Instant) -> usize {
        match &self.bucket {
            None => usize::MAX,
            Some(b) => {
                usize::try_from(b.available(now) / u64::from(BLOCK_SIZE)).unwrap_or(usize::MAX)
            }
        }
    }

    /// Takes tokens for `bytes` of payload moved by `key` at `now`; `false` (nothing taken) if
    /// too few. Always `true` when unlimited.
    pub(crate) fn take(&mut self, now: Instant, key: K, bytes: u64) -> bool {
        let Some(bucket) = &mut self.bucket else {
            return true;
        };
        if !bucket.take(now, bytes) {
            return false;
        }
        self.usage.bytes = self.usage.bytes.saturating_add(bytes);
        self.last_served = Some(key);
        true
    }

    /// Gives back the tokens of `bytes` of payload taken but never moved: a request the peer
    /// rejected, or dropped when it choked us. A block that arrives anyway after its request
    /// was dropped is not taken again, so the bound can be passed by such stragglers only.
    pub(crate) fn refund(&mut self, bytes: u64) {
        if let Some(bucket) = &mut self.bucket {
            bucket.refund(bytes);
            self.usage.bytes = self.usage.bytes.saturating_sub(bytes);
        }
    }

    /// `key` wanted to move more than the tokens allowed: it is looked at again at
    /// [`Pacer::wake_at`].
    pub(crate) fn hold(&mut self, key: K) {
        self.waiting.insert(key);
        self.usage.held_back = true;
    }

    /// When the peers held back may go on: once a block's worth of tokens has accrued.
    pub(crate) fn wake_at(&self) -> Option<Instant> {
        if self.waiting.is_empty() {
            return None;
        }
        self.bucket
            .as_ref()
            .and_then(|b| b.ready_at(u64::from(BLOCK_SIZE)))
    }

    /// The peers held back, if their wake-up is due at `now` (they are released).
    pub(crate) fn take_due(&mut self, now: Instant) -> Option<BTreeSet<K>> {
        self.wake_at()
            .is_some_and(|at| at <= now)
            .then(|| std::mem::take(&mut self.waiting))
    }

    /// Forgets a peer that went.
    pub(crate) fn forget(&mut self, key: K) {
        self.waiting.remove(&key);
        if self.last_served == Some(key) {
            self.last_served = None;
        }
    }

    /// Reorders `keys` (sorted) so those after the peer served last come first, when limited.
    pub(crate) fn rotate(&self, keys: &mut [K]) {
        if let (Some(_), Some(last)) = (&self.bucket, self.last_served) {
            let start = keys.partition_point(|k| *k <= last);
            keys.rotate_left(start);
        }
    }

    /// The usage since the last call (held back also if peers wait now), and starts anew.
    pub(crate) fn take_usage(&mut self) -> Usage {
        let mut usage = std::mem::take(&mut self.usage);
        usage.held_back |= !self.waiting.is_empty();
        usage
    }
}

/// Divides `global` bytes/s among demands (`None`: as much as it gets): max-min fair, by water
/// filling. Every demand at or below the fair level gets its demand; the others share the rest
/// equally. When the demands leave some of `global` over, it is spread equally on top of every
/// share, so a torrent can grow into it. The shares never sum to more than `global`.
pub fn divide(global: u64, demands: &[Option<u64>]) -> Vec<u64> {
    let mut order: Vec<usize> = (0..demands.len()).collect();
    order.sort_by_key(|&i| (demands[i].is_none(), demands[i]));
    let mut shares = vec![0; demands.len()];
    let mut remaining = global;
    for (done, &i) in order.iter().enumerate() {
        let fair = remaining / (demands.len() - done) as u64;
        let share = demands[i].map_or(fair, |d| d.min(fair));
        shares[i] = share;
        remaining -= share;
    }
    if !demands.is_empty() {
        let extra = remaining / demands.len() as u64;
        shares.iter_mut().for_each(|s| *s += extra);
    }
    shares
}

/// A process-wide download and upload limit shared among torrents, and each torrent's own
/// limits; it computes every torrent's effective limit, the min of its own limit and its share.
///
/// The allocation rule: every [`DIVISION_INTERVAL`] the global rate of each direction is divided
/// anew ([`divide`]) by what each torrent did in the interval ([`Usage`]). A torrent whose bucket
/// held it back demands its own limit (or without one, as much as it gets); any other demands
/// the rate it used. So idle and slow torrents keep what they use, plus an equal part of what
/// nobody uses, and busy ones split the rest equally. A torrent that wants more than its share
/// is held back, and so at the next division demands more. When the global limit is set, the
/// rate is split as if every torrent were busy; a torrent added afterwards gets nothing until the
/// next division (at most an interval), which then sees it held back. Without a global limit a
/// torrent's effective limit is its own.
///
/// Bounds: one entry per torrent given own limits or a share (callers [`RateShares::forget`] or
/// [`RateShares::retain`] removed ones; [`RateShares::divide`] drops keys it is not given).
#[derive(Clone, Debug)]
pub struct RateShares<K> {
    global: Limits,
    own: BTreeMap<K, Limits>,
    /// The shares of the last division.
    shares: BTreeMap<K, Limits>,
    last_division: Instant,
    next_division: Option<Instant>,
}

impl<K: Ord + Copy> Default for RateShares<K> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K: Ord + Copy> RateShares<K> {
    /// No limits.
    pub fn new() -> Self {
        RateShares {
            global: Limits::default(),
            own: BTreeMap::new(),
            shares: BTreeMap::new(),
            last_division: Instant::ZERO,
            next_division: None,
        }
    }

    /// The global limits.
    pub fn global(&self) -> Limits {
        self.global
    }

    /// `key`'s own limits.
    pub fn own(&self, key: K) -> Limits {
        self.own.get(&key).copied().unwrap_or_default()
    }

    /// When the next division is due, while a global limit is set.
    pub fn next_division(&self) -> Option<Instant> {
        self.next_division
    }

    /// Sets the global limits at `now`; the caller then calls [`RateShares::divide`] with
    /// `busy` set, to split them evenly at once.
    pub fn set_global(&mut self, now: Instant, global: Limits) {
        self.global = global;
        self.next_division = (global.download.is_some() || global.upload.is_some()).then_some(now);
    }

    /// Sets `key`'s own limits; returns its effective limits (see the type's docs).
    pub fn set_own(&mut self, key: K, own: Limits) -> Limits {
        if own == Limits::default() {
            self.own.remove(&key);
        } else {
            self.own.insert(key, own);
        }
        self.effective(key)
    }

    /// Forgets a removed torrent.
    pub fn forget(&mut self, key: K) {
        self.own.remove(&key);
        self.shares.remove(&key);
    }

    /// Keeps only the torrents `live` says still exist.
    pub fn retain(&mut self, mut live: impl FnMut(&K) -> bool) {
        self.own.retain(|k, _| live(k));
        self.shares.retain(|k, _| live(k));
    }

    /// The limits a torrent given no share yet starts with: a share of zero in each direction
    /// with a global limit, so the sum stays within it until the next division.
    pub fn newcomer(&self) -> Limits {
        Limits {
            download: self.global.download.map(|_| 0),
            upload: self.global.upload.map(|_| 0),
        }
    }

    /// `key`'s effective limits: the min of its own and its share.
    pub fn effective(&self, key: K) -> Limits {
        let own = self.own(key);
        let share = self
            .shares
            .get(&key)
            .copied()
            .unwrap_or_else(|| self.newcomer());
        let min = |a: Option<u64>, b: Option<u64>| match (a, b) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        Limits {
            download: min(own.download, share.download),
            upload: min(own.upload, share.upload),
        }
    }

    /// Divides the global limits at `now` among the torrents of `usage` (each with its
    /// download and upload [`Usage`] since the last division), or evenly if `busy` (every torrent
    /// counted as held back); returns every torrent's effective limits. The next division is due
    /// [`DIVISION_INTERVAL`] later.
    pub fn divide(
        &mut self,
        now: Instant,
        usage: &[(K, Usage, Usage)],
        busy: bool,
    ) -> Vec<(K, Limits)> {
        let elapsed = now.saturating_since(self.last_division).as_micros().max(1);
        self.last_division = now;
        self.next_division = self.next_division.map(|_| now + DIVISION_INTERVAL);
        let demand = |u: &Usage, own: Option<u64>| {
            if busy || u.held_back {
                own
            } else {
                let rate = u128::from(u.bytes) * MICRO / elapsed;
                Some(u64::try_from(rate).unwrap_or(u64::MAX))
            }
        };
        let down: Vec<Option<u64>> = usage
            .iter()
            .map(|(k, d, _)| demand(d, self.own(*k).download))
            .collect();
        let up: Vec<Option<u64>> = usage
            .iter()
            .map(|(k, _, u)| demand(u, self.own(*k).upload))
            .collect();
        let down = self.global.download.map(|g| divide(g, &down));
        let up = self.global.upload.map(|g| divide(g, &up));
        self.shares.clear();
        let keys: BTreeSet<K> = usage.iter().map(|(k, ..)| *k).collect();
        self.own.retain(|k, _| keys.contains(k));
        for (i, (k, ..)) in usage.iter().enumerate() {
            let share = Limits {
                download: down.as_ref().map(|s| s[i]),
                upload: up.as_ref().map(|s| s[i]),
            };
            self.shares.insert(*k, share);
        }
        usage
            .iter()
            .map(|(k, ..)| (*k, self.effective(*k)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BLOCK: u64 = BLOCK_SIZE as u64;

    fn at_ms(ms: u64) -> Instant {
        Instant::from_micros(ms * 1000)
    }

    #[test]
    fn bucket_accrues_at_its_rate_up_to_its_depth() {
        // Proves tokens accrue continuously at the rate, stop at the depth, and are taken all or
        // nothing.
        let mut b = TokenBucket::new(1_000_000, at_ms(0));
        assert_eq!(b.depth(), 200_000);
        assert_eq!(b.available(at_ms(0)), 200_000, "starts full");
        assert!(b.take(at_ms(0), 200_000));
        assert_eq!(b.available(at_ms(0)), 0);
        assert!(!b.take(at_ms(0), 1), "empty");
        assert_eq!(b.available(at_ms(50)), 50_000);
        assert!(!b.take(at_ms(50), 50_001), "all or nothing");
        assert!(b.take(at_ms(50), 50_000));
        assert_eq!(b.available(at_ms(10_000)), 200_000, "capped at the depth");
        // An earlier instant adds nothing and takes nothing away.
        assert_eq!(b.available(at_ms(10)), 0);
    }

    #[test]
    fn a_refund_gives_tokens_back_up_to_the_depth_and_leaves_the_usage() {
        // Proves refunded tokens can be taken again at once, never raise the level past the
        // depth, and come off the usage the pacer reports; unlimited, a refund is nothing.
        let mut b = TokenBucket::new(1_000_000, at_ms(0));
        assert!(b.take(at_ms(0), 200_000));
        b.refund(BLOCK);
        assert_eq!(b.available(at_ms(0)), BLOCK);
        b.refund(1_000_000);
        assert_eq!(b.available(at_ms(0)), 200_000, "capped at the depth");

        let mut p: Pacer<u32> = Pacer::new(Some(1_000_000));
        assert!(p.take(at_ms(0), 1, 3 * BLOCK));
        p.refund(BLOCK);
        assert_eq!(p.take_usage().bytes, 2 * BLOCK);
        assert_eq!(
            p.blocks_available(at_ms(0)),
            (200_000 - 2 * BLOCK as usize) / BLOCK as usize
        );
        let mut unlimited: Pacer<u32> = Pacer::new(None);
        unlimited.refund(BLOCK);
        assert_eq!(unlimited.take_usage().bytes, 0);
    }

    #[test]
    fn bucket_never_drifts_over_many_small_takes() {
        // Proves fractional accrual is kept: 3 bytes/s asked every 100 ms for a second's worth
        // yields exactly the rate, however the time is cut.
        let mut b = TokenBucket::new(3, at_ms(0));
        let depth = b.depth();
        assert!(b.take(at_ms(0), depth));
        let mut taken = 0;
        for step in 1..=100_000 {
            let now = at_ms(step * 100);
            while b.take(now, 1) {
                taken += 1;
            }
        }
        assert_eq!(taken, 30_000, "10 000 s at 3 bytes/s");
    }

    #[test]
    fn ready_at_says_when_tokens_arrive() {
        // Proves the wake-up time an owner puts in its poll_timeout is exact and never early.
        let mut b = TokenBucket::new(BLOCK * 10, at_ms(0));
        assert_eq!(b.ready_at(BLOCK), Some(at_ms(0)));
        assert!(b.take(at_ms(0), b.depth()));
        let at = b.ready_at(BLOCK).unwrap();
        assert_eq!(at, at_ms(100), "a tenth of a second per block");
        assert!(
            b.available(Instant::from_micros(at.as_micros() - 1)) < BLOCK,
            "not early"
        );
        assert!(b.take(at, BLOCK));
        // More than the depth is capped: it would never be available.
        assert_eq!(b.depth(), 2 * BLOCK);
        assert_eq!(b.ready_at(u64::MAX), Some(at_ms(300)));
        assert_eq!(
            TokenBucket::new(0, at_ms(0)).ready_at(1),
            None,
            "rate zero: never"
        );
        assert_eq!(TokenBucket::new(0, at_ms(0)).available(at_ms(99_999)), 0);
    }

    #[test]
    fn depth_is_a_fraction_of_a_second_and_at_least_a_block() {
        // Proves the burst is 200 ms of rate, and that a slow limit still passes whole blocks.
        assert_eq!(TokenBucket::depth_for(1 << 20), (1 << 20) / 5);
        assert_eq!(TokenBucket::depth_for(1000), BLOCK);
        assert_eq!(TokenBucket::depth_for(u64::MAX), u64::MAX / 5);
    }

    #[test]
    fn set_rate_keeps_accrued_tokens_and_cuts_to_the_new_depth() {
        // Proves a rate change counts the past at the old rate and never adds a burst.
        let mut b = TokenBucket::new(1_000_000, at_ms(0));
        assert!(b.take(at_ms(0), 200_000));
        b.set_rate(at_ms(100), 100_000);
        assert_eq!(b.depth(), 20_000);
        assert_eq!(
            b.available(at_ms(100)),
            20_000,
            "100 000 accrued, cut to the depth"
        );
        b.set_rate(at_ms(100), 1_000_000);
        assert_eq!(
            b.available(at_ms(100)),
            20_000,
            "raising the rate adds no tokens"
        );
        assert_eq!(b.available(at_ms(110)), 30_000);
    }

    #[test]
    fn pacer_holds_peers_and_wakes_them_when_a_block_accrues() {
        // Proves the pacer's wake-up exists only while someone waits, and releases them when due.
        let mut p: Pacer<u32> = Pacer::new(Some(BLOCK * 10));
        assert_eq!(p.blocks_available(at_ms(0)), 2);
        assert!(p.take(at_ms(0), 7, 2 * BLOCK));
        assert!(!p.take(at_ms(0), 7, BLOCK));
        assert_eq!(p.wake_at(), None, "nobody waits");
        p.hold(3);
        p.hold(9);
        assert_eq!(p.wake_at(), Some(at_ms(100)));
        assert_eq!(p.take_due(at_ms(99)), None);
        assert_eq!(p.take_due(at_ms(100)), Some([3, 9].into()));
        assert_eq!(p.wake_at(), None);
        let mut keys = [1, 3, 7, 8, 9];
        p.rotate(&mut keys);
        assert_eq!(keys, [8, 9, 1, 3, 7], "after the peer served last");
        assert_eq!(
            p.take_usage(),
            Usage {
                bytes: 2 * BLOCK,
                held_back: true
            }
        );
        assert_eq!(p.take_usage(), Usage::default());
        let unlimited: Pacer<u32> = Pacer::new(None);
        assert_eq!(unlimited.blocks_available(at_ms(0)), usize::MAX);
        let mut keys = [1, 2];
        unlimited.rotate(&mut keys);
        assert_eq!(keys, [1, 2], "unlimited: handle order");
    }

    #[test]
    fn divide_is_max_min_fair() {
        // Proves small demands are met, the rest is split evenly, leftovers spread, and the sum
        // never exceeds the global rate.
        assert_eq!(divide(1000, &[None, None]), [500, 500]);
        assert_eq!(divide(1000, &[Some(100), None]), [100, 900]);
        assert_eq!(divide(1000, &[Some(100), None, Some(600)]), [100, 450, 450]);
        assert_eq!(
            divide(1000, &[Some(100), Some(200)]),
            [450, 550],
            "700 left over"
        );
        assert_eq!(divide(1000, &[]), Vec::<u64>::new());
        for demands in [
            vec![Some(1), Some(2), None],
            vec![Some(999), Some(999), Some(999)],
            vec![None; 7],
        ] {
            assert!(divide(1000, &demands).iter().sum::<u64>() <= 1000);
        }
    }

    #[test]
    fn shares_follow_usage_and_own_limits() {
        // Proves the allocation rule: an even split when set, then a held-back torrent takes what
        // a torrent that uses little leaves, and own limits cap the effective limit.
        let mut s: RateShares<u32> = RateShares::new();
        let none = Usage::default();
        s.set_global(
            at_ms(0),
            Limits {
                download: Some(1000),
                upload: None,
            },
        );
        assert_eq!(s.next_division(), Some(at_ms(0)));
        let even = s.divide(at_ms(0), &[(1, none, none), (2, none, none)], true);
        let lim = |d: Option<u64>| Limits {
            download: d,
            upload: None,
        };
        assert_eq!(even, [(1, lim(Some(500))), (2, lim(Some(500)))]);
        assert_eq!(s.next_division(), Some(at_ms(1000)));
        assert_eq!(
            s.effective(3),
            lim(Some(0)),
            "a newcomer waits for the next division"
        );
        let slow = Usage {
            bytes: 100,
            held_back: false,
        };
        let busy = Usage {
            bytes: 500,
            held_back: true,
        };
        let after = s.divide(at_ms(1000), &[(1, slow, none), (2, busy, none)], false);
        assert_eq!(after, [(1, lim(Some(100))), (2, lim(Some(900)))]);
        assert_eq!(s.set_own(2, lim(Some(300))), lim(Some(300)));
        let capped = s.divide(at_ms(2000), &[(1, busy, none), (2, busy, none)], false);
        assert_eq!(capped, [(1, lim(Some(700))), (2, lim(Some(300)))]);
        s.set_global(at_ms(2500), Limits::default());
        assert_eq!(s.next_division(), None);
        let own_only = s.divide(at_ms(2500), &[(1, busy, none), (2, busy, none)], true);
        assert_eq!(own_only, [(1, lim(None)), (2, lim(Some(300)))]);
    }
}
