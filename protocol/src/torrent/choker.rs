//! [`Choker`]: which peers of one torrent we upload to (BEP 3 choking).
//!
//! The torrent calls [`Choker::rechoke`] with a snapshot of its peers at [`Choker::next_rechoke`]
//! (every `rechoke_interval`, 10 s by default) and whenever the peer set changes in a way that may
//! free or fill a slot (a peer connects, leaves, or changes its interest). It gets back the
//! [`Unchoked`] set and sends choke/unchoke messages for the differences.
//!
//! The algorithm is the one of the original mainline client and libtorrent's defaults
//! ("fastest upload" when seeding, tit-for-tat when leeching), with a fixed number of slots:
//!
//! - Only peers that are interested in us and are not seeds can be unchoked; every other peer is
//!   choked (mainline keeps a few fast uninterested peers unchoked "in reserve"; we do not).
//! - Leeching (tit-for-tat): the `upload_slots` peers that gave us the best download rate get the
//!   regular slots; snubbed peers rank after every peer that is not snubbed.
//! - Seeding: the `upload_slots` peers we upload to fastest get the regular slots (mainline's seed
//!   choker: the peers that can take our data fastest spread it fastest).
//! - Ties are broken by a random key per peer, drawn from the seeded [`Rng`] afresh each round, so
//!   no peer is always favoured and one seed always gives the same order.
//! - One more interested peer, not among the regular ones, is unchoked optimistically, chosen at
//!   random; a peer connected less than `optimistic_interval` ago weighs three times as much (as in
//!   mainline, so newcomers get their first pieces quickly). It is kept for `optimistic_interval`
//!   (30 s) and then replaced by another peer when there is one. It is replaced at once when it
//!   leaves, stops being interested, becomes a seed or wins a regular slot; each new optimistic peer
//!   gets a full interval.
//!
//! Rounds: the regular slots are re-ranked from scratch only when a round is due (`now` has reached
//! [`Choker::next_rechoke`]'s round time) or when we switch between leeching and seeding. A call
//! between rounds keeps every regular peer that is still eligible and only fills free slots from the
//! ranking, so calling `rechoke` early or twice is harmless: it never demotes a peer before its round
//! is over, and the optimistic peer only rotates when its interval has passed.
//!
//! Invariants (checked by the tests below, including a proptest over random peer sets and times):
//! - at most `upload_slots` regular peers plus one optimistic peer are unchoked;
//! - every unchoked peer is in the latest snapshot, interested and not a seed;
//! - the optimistic peer is not among the regular ones;
//! - no slot is wasted: exactly `min(upload_slots + 1, eligible peers)` peers are unchoked;
//! - the decision depends only on the seed and the sequence of calls (not on the order of the
//!   snapshot slice); the same seed and the same calls give the same results.
//!
//! Memory is O(peers in the latest snapshot). Nothing here panics on any input: duplicate keys in a
//! snapshot are ignored after the first, time going backwards only delays rounds, and every
//! arithmetic on time and slot counts saturates.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::rng::Rng;
use crate::time::Instant;

/// How many peers the [`Choker`] unchokes and how often it reconsiders.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChokerConfig {
    /// Regular upload slots, not counting the optimistic one (default 4).
    pub upload_slots: usize,
    /// How often the regular slots are re-ranked (default 10 s).
    pub rechoke_interval: Duration,
    /// How long one peer keeps the optimistic slot (default 30 s).
    pub optimistic_interval: Duration,
}

impl Default for ChokerConfig {
    fn default() -> Self {
        ChokerConfig {
            upload_slots: 4,
            rechoke_interval: Duration::from_secs(10),
            optimistic_interval: Duration::from_secs(30),
        }
    }
}

/// What the [`Choker`] needs to know about one peer at a rechoke.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerSnapshot<K> {
    /// The torrent's handle for the peer (its connection id).
    pub key: K,
    /// The peer is interested in our pieces.
    pub interested: bool,
    /// Bytes per second we received from the peer over the rolling rate window.
    pub download_rate: u64,
    /// Bytes per second we sent to the peer over the rolling rate window.
    pub upload_rate: u64,
    /// The peer has every piece (it never needs our uploads).
    pub is_seed: bool,
    /// The peer sent us nothing for a long time while we had requests out to it.
    pub snubbed: bool,
    /// When the connection was established; peers younger than `optimistic_interval` are three
    /// times as likely to get the optimistic slot.
    pub connected_at: Instant,
}

/// The peers to keep unchoked after a rechoke: the regular slots and the optimistic one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unchoked<K> {
    /// Sorted by key, no duplicates, never containing `optimistic`.
    regular: Vec<K>,
    optimistic: Option<K>,
}

impl<K> Default for Unchoked<K> {
    fn default() -> Self {
        Unchoked {
            regular: Vec::new(),
            optimistic: None,
        }
    }
}

impl<K: Ord + Copy> Unchoked<K> {
    /// The peers holding regular slots, sorted by key.
    pub fn regular(&self) -> &[K] {
        &self.regular
    }

    /// The peer holding the optimistic slot, if any.
    pub fn optimistic(&self) -> Option<K> {
        self.optimistic
    }

    /// Whether `key` should be unchoked (regular or optimistic).
    pub fn contains(&self, key: &K) -> bool {
        self.optimistic.as_ref() == Some(key) || self.regular.binary_search(key).is_ok()
    }

    /// How many peers are unchoked.
    pub fn len(&self) -> usize {
        self.regular.len() + usize::from(self.optimistic.is_some())
    }

    /// Whether no peer is unchoked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every unchoked peer: the regular ones in key order, then the optimistic one.
    pub fn iter(&self) -> impl Iterator<Item = K> + '_ {
        self.regular.iter().copied().chain(self.optimistic)
    }
}

/// Decides which peers of one torrent are unchoked (see the module docs for the algorithm).
///
/// Methods, in the shape of the protocol's state machines:
/// - getters: [`config`](Self::config), [`unchoked`](Self::unchoked) (the latest decision) and
///   [`next_rechoke`](Self::next_rechoke) (when to call again; merge it into the torrent's timers);
/// - one input, [`rechoke`](Self::rechoke), called when that time comes and whenever the peer set
///   changes. Early or repeated calls are harmless.
///
/// `K` is the torrent's peer handle; any `Ord + Copy` key works.
#[derive(Clone, Debug)]
pub struct Choker<K> {
    config: ChokerConfig,
    rng: Rng,
    /// Random tie-break key per peer in the latest snapshot; redrawn each round.
    tiebreak: BTreeMap<K, u64>,
    unchoked: Unchoked<K>,
    /// When the current optimistic peer's turn ends (meaningless while there is none).
    optimistic_until: Instant,
    /// When the regular slots are next re-ranked.
    next_round: Instant,
    /// The mode of the latest round (`None` before the first).
    seeding: Option<bool>,
}

impl<K: Ord + Copy> Choker<K> {
    /// A choker with nobody unchoked, whose first round is due at once.
    pub fn new(config: ChokerConfig, rng: Rng) -> Self {
        Choker {
            config,
            rng,
            tiebreak: BTreeMap::new(),
            unchoked: Unchoked::default(),
            optimistic_until: Instant::ZERO,
            next_round: Instant::ZERO,
            seeding: None,
        }
    }

    /// The configuration this choker was built with.
    pub fn config(&self) -> &ChokerConfig {
        &self.config
    }

    /// The latest decision (empty before the first [`rechoke`](Self::rechoke)).
    pub fn unchoked(&self) -> &Unchoked<K> {
        &self.unchoked
    }

    /// When [`rechoke`](Self::rechoke) should next be called: the next round of the regular slots
    /// or the end of the optimistic peer's turn, whichever comes first. [`Instant::ZERO`] (due at
    /// once) before the first call.
    pub fn next_rechoke(&self) -> Instant {
        match self.unchoked.optimistic {
            Some(_) => self.next_round.min(self.optimistic_until),
            None => self.next_round,
        }
    }

    /// Decides who is unchoked at `now`, given whether we are `seeding` (we have every piece) and a
    /// snapshot of every connected peer. Returns the new decision (also kept as
    /// [`unchoked`](Self::unchoked)); the caller chokes every peer not in it and unchokes every
    /// peer in it.
    pub fn rechoke(
        &mut self,
        now: Instant,
        seeding: bool,
        peers: &[PeerSnapshot<K>],
    ) -> Unchoked<K> {
        // One snapshot per key, in key order, so the slice's order never matters.
        let mut peers: Vec<&PeerSnapshot<K>> = peers.iter().collect();
        peers.sort_by_key(|p| p.key);
        peers.dedup_by_key(|p| p.key);

        let full_round = now >= self.next_round || self.seeding != Some(seeding);

        // Tie-break keys: fresh each round; between rounds, only newcomers draw one.
        let previous = std::mem::take(&mut self.tiebreak);
        for p in &peers {
            let key = match previous.get(&p.key) {
                Some(&k) if !full_round => k,
                _ => self.rng.next_u64(),
            };
            self.tiebreak.insert(p.key, key);
        }

        // Eligible peers, in key order, and ranked best first.
        let eligible: Vec<&PeerSnapshot<K>> = peers
            .into_iter()
            .filter(|p| p.interested && !p.is_seed)
            .collect();
        let is_eligible = |k: &K| eligible.binary_search_by(|p| p.key.cmp(k)).is_ok();
        let mut ranked = eligible.clone();
        let tiebreak = &self.tiebreak;
        ranked.sort_by_key(|p| {
            let tie = tiebreak.get(&p.key).copied().unwrap_or(0);
            if seeding {
                (false, Reverse(p.upload_rate), tie)
            } else {
                (p.snubbed, Reverse(p.download_rate), tie)
            }
        });

        // Regular slots.
        let slots = self.config.upload_slots;
        let current_optimistic = self.unchoked.optimistic.filter(|k| is_eligible(k));
        let mut regular: BTreeSet<K> = BTreeSet::new();
        if !full_round {
            // Between rounds: nobody still eligible loses a regular slot.
            regular.extend(
                self.unchoked
                    .regular
                    .iter()
                    .copied()
                    .filter(|k| is_eligible(k))
                    .take(slots),
            );
        }
        for p in &ranked {
            if regular.len() >= slots {
                break;
            }
            // Between rounds the optimistic peer keeps its own slot rather than taking a regular
            // one; at a round it competes like everyone else.
            if !full_round && current_optimistic == Some(p.key) {
                continue;
            }
            regular.insert(p.key);
        }

        // The optimistic slot.
        let kept =
            current_optimistic.filter(|k| !regular.contains(k) && now < self.optimistic_until);
        let optimistic = match kept {
            Some(k) => Some(k),
            None => {
                let outgoing = self.unchoked.optimistic;
                let mut candidates: Vec<&PeerSnapshot<K>> = eligible
                    .iter()
                    .copied()
                    .filter(|p| !regular.contains(&p.key))
                    .collect();
                if candidates.len() > 1 {
                    // Rotation means someone else gets a turn.
                    candidates.retain(|p| Some(p.key) != outgoing);
                }
                let choice = self.draw_optimistic(now, &candidates);
                if choice.is_some() {
                    self.optimistic_until = now + self.config.optimistic_interval;
                }
                choice
            }
        };

        if full_round {
            self.next_round = now + self.config.rechoke_interval;
            self.seeding = Some(seeding);
        }
        self.unchoked = Unchoked {
            regular: regular.into_iter().collect(),
            optimistic,
        };
        self.unchoked.clone()
    }

    /// A random candidate, newcomers weighted three times (mainline's rule).
    fn draw_optimistic(&mut self, now: Instant, candidates: &[&PeerSnapshot<K>]) -> Option<K> {
        let window = self.config.optimistic_interval;
        let weight =
            |p: &PeerSnapshot<K>| -> u64 { if now - p.connected_at < window { 3 } else { 1 } };
        let total: u64 = candidates.iter().map(|p| weight(p)).sum();
        if total == 0 {
            return None;
        }
        let mut ticket = self.rng.below(total);
        for p in candidates {
            let w = weight(p);
            if ticket < w {
                return Some(p.key);
            }
            ticket -= w;
        }
        // `ticket < total`, so the loop always returns; fall back to the last candidate anyway.
        candidates.last().map(|p| p.key)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use proptest::prelude::*;

    use super::*;
    use crate::rng::Rng;

    fn secs(s: u64) -> Instant {
        Instant::from_micros(s * 1_000_000)
    }

    fn ms(m: u64) -> Instant {
        Instant::from_micros(m * 1_000)
    }

    fn peer(key: u32, download_rate: u64, upload_rate: u64) -> PeerSnapshot<u32> {
        PeerSnapshot {
            key,
            interested: true,
            download_rate,
            upload_rate,
            is_seed: false,
            snubbed: false,
            connected_at: Instant::ZERO,
        }
    }

    fn choker(slots: usize, seed: u64) -> Choker<u32> {
        Choker::new(
            ChokerConfig {
                upload_slots: slots,
                ..ChokerConfig::default()
            },
            Rng::new(seed),
        )
    }

    #[test]
    fn leecher_unchokes_the_fastest_downloaders_plus_one_optimistic() {
        // Proves tit-for-tat: the regular slots go to the peers that upload to us fastest.
        let peers: Vec<_> = (1..=7).map(|k| peer(k, u64::from(k) * 100, 0)).collect();
        let mut c = choker(4, 1);
        let u = c.rechoke(secs(0), false, &peers);
        assert_eq!(u.regular(), &[4, 5, 6, 7]);
        let opt = u
            .optimistic()
            .expect("three peers left for the optimistic slot");
        assert!((1..=3).contains(&opt), "{opt}");
        assert_eq!(u.len(), 5);
        for k in (1..=3).filter(|&k| k != opt) {
            assert!(!u.contains(&k), "{k} should be choked");
        }
        assert!(u.contains(&opt) && u.contains(&7));
    }

    #[test]
    fn seeder_unchokes_the_fastest_uploads() {
        // Proves seed mode ranks by our upload rate to the peer, ignoring what they give us.
        let peers: Vec<_> = (1..=6)
            .map(|k| peer(k, 1000 - u64::from(k), u64::from(k) * 10))
            .collect();
        let mut c = choker(3, 2);
        let u = c.rechoke(secs(0), true, &peers);
        assert_eq!(u.regular(), &[4, 5, 6]);
        // The same peers leeching rank the other way round.
        let mut c = choker(3, 2);
        assert_eq!(c.rechoke(secs(0), false, &peers).regular(), &[1, 2, 3]);
    }

    #[test]
    fn snubbed_peers_rank_last() {
        // Proves a snubbed peer loses its slot to slower honest peers, but still fills a free one.
        let mut snubber = peer(1, 1_000_000, 0);
        snubber.snubbed = true;
        let peers = vec![snubber, peer(2, 10, 0), peer(3, 5, 0), peer(4, 1, 0)];
        let mut c = choker(2, 3);
        assert_eq!(c.rechoke(secs(0), false, &peers).regular(), &[2, 3]);
        let mut c = choker(4, 3);
        assert_eq!(c.rechoke(secs(0), false, &peers).regular(), &[1, 2, 3, 4]);
    }

    #[test]
    fn uninterested_peers_and_seeds_stay_choked() {
        // Proves only interested non-seeds are unchoked, however fast the others are.
        let mut bored = peer(1, 9_999, 9_999);
        bored.interested = false;
        let mut seed = peer(2, 9_999, 9_999);
        seed.is_seed = true;
        let peers = vec![bored, seed, peer(3, 1, 1)];
        for seeding in [false, true] {
            let mut c = choker(4, 4);
            let u = c.rechoke(secs(0), seeding, &peers);
            assert_eq!(u.iter().collect::<Vec<_>>(), vec![3], "seeding={seeding}");
        }
    }

    #[test]
    fn optimistic_rotates_at_thirty_seconds_and_not_before() {
        // Proves the optimistic peer keeps its slot through rounds and rotates once its 30 s are up.
        let mut peers: Vec<_> = (1..=9).map(|k| peer(k, 0, 0)).collect();
        peers.push(peer(10, 5_000, 0));
        let mut c = choker(1, 5);
        let first = c.rechoke(secs(0), false, &peers);
        assert_eq!(first.regular(), &[10]);
        let opt = first.optimistic().expect("nine candidates");
        for t in [ms(1), secs(10), secs(20), ms(29_999)] {
            let u = c.rechoke(t, false, &peers);
            assert_eq!(u.optimistic(), Some(opt), "at {t:?}");
            assert_eq!(u.regular(), &[10]);
        }
        assert_eq!(c.next_rechoke(), secs(30));
        let rotated = c.rechoke(secs(30), false, &peers);
        assert_eq!(rotated.regular(), &[10]);
        let next = rotated.optimistic().expect("nine candidates");
        assert_ne!(next, opt);
        assert_eq!(
            c.rechoke(ms(59_999), false, &peers).optimistic(),
            Some(next)
        );
        assert_ne!(c.rechoke(secs(60), false, &peers).optimistic(), Some(next));
    }

    #[test]
    fn rotation_gives_another_peer_the_turn() {
        // Proves that with two candidates the optimistic slot alternates every interval instead of
        // being redrawn for the same peer.
        let peers = vec![peer(1, 0, 0), peer(2, 0, 0)];
        for seed in 0..8 {
            let mut c = choker(0, seed);
            let turns: Vec<_> = (0..6)
                .map(|i| c.rechoke(secs(30 * i), false, &peers).optimistic().unwrap())
                .collect();
            assert!(
                turns.windows(2).all(|w| w[0] != w[1]),
                "seed {seed}: {turns:?}"
            );
        }
    }

    #[test]
    fn between_rounds_a_free_slot_goes_to_a_ranked_peer_not_the_optimistic_one() {
        // Proves an early rechoke leaves the optimistic peer in its own slot, fills a vacated
        // regular slot from the ranking, and promotes the optimistic peer only at the round.
        let mut peers = vec![peer(1, 100, 0), peer(2, 50, 0), peer(3, 0, 0)];
        let mut c = choker(1, 18);
        let u = c.rechoke(secs(0), false, &peers);
        assert_eq!(u.regular(), &[1]);
        let opt = u.optimistic().unwrap();
        let other = if opt == 2 { 3 } else { 2 };
        peers.retain(|p| p.key != 1);
        for p in &mut peers {
            p.download_rate = if p.key == opt { 1_000 } else { 0 };
        }
        let u = c.rechoke(secs(2), false, &peers);
        assert_eq!((u.regular(), u.optimistic()), (&[other][..], Some(opt)));
        let u = c.rechoke(secs(10), false, &peers);
        assert_eq!((u.regular(), u.optimistic()), (&[opt][..], Some(other)));
    }

    #[test]
    fn optimistic_is_replaced_at_once_when_it_leaves_or_loses_interest() {
        // Proves a departed or uninterested optimistic peer is replaced immediately, and the
        // replacement gets a full interval.
        let peers: Vec<_> = (1..=6).map(|k| peer(k, 0, 0)).collect();
        let mut c = choker(0, 6);
        let gone = c.rechoke(secs(0), false, &peers).optimistic().unwrap();
        let remaining: Vec<_> = peers.iter().copied().filter(|p| p.key != gone).collect();
        let next = c.rechoke(secs(5), false, &remaining).optimistic().unwrap();
        assert_ne!(next, gone);
        assert_eq!(c.next_rechoke(), secs(10), "the round still comes first");
        assert_eq!(
            c.rechoke(secs(34), false, &remaining).optimistic(),
            Some(next)
        );
        // Losing interest counts as leaving.
        let bored: Vec<_> = remaining
            .iter()
            .map(|&p| PeerSnapshot {
                interested: p.key != next,
                ..p
            })
            .collect();
        let third = c.rechoke(secs(34), false, &bored).optimistic().unwrap();
        assert_ne!(third, next);
        assert_ne!(third, gone);
    }

    #[test]
    fn optimistic_peer_that_wins_a_regular_slot_is_replaced() {
        // Proves a fast optimistic peer is promoted at the next round and someone else gets the
        // optimistic slot at once.
        let mut peers: Vec<_> = (1..=5).map(|k| peer(k, 10, 0)).collect();
        peers.push(peer(6, 1_000, 0));
        let mut c = choker(1, 7);
        let opt = c.rechoke(secs(0), false, &peers).optimistic().unwrap();
        // It reciprocates generously; between rounds nothing changes.
        for p in &mut peers {
            if p.key == opt {
                p.download_rate = 50_000;
            }
        }
        let u = c.rechoke(secs(3), false, &peers);
        assert_eq!((u.regular(), u.optimistic()), (&[6][..], Some(opt)));
        let u = c.rechoke(secs(10), false, &peers);
        assert_eq!(u.regular(), &[opt]);
        let replacement = u.optimistic().unwrap();
        assert_ne!(replacement, opt);
        assert_eq!(c.next_rechoke(), secs(20));
    }

    #[test]
    fn zero_peers_unchokes_nobody() {
        // Proves an empty swarm yields an empty decision and a plain round timer.
        let mut c = choker(4, 8);
        assert_eq!(c.next_rechoke(), Instant::ZERO);
        let u = c.rechoke(secs(0), false, &[]);
        assert!(u.is_empty());
        assert_eq!(u.optimistic(), None);
        assert_eq!(c.next_rechoke(), secs(10));
        assert!(c.unchoked().is_empty());
    }

    #[test]
    fn fewer_peers_than_slots_all_get_regular_slots() {
        // Proves every interested peer is unchoked when there are fewer than the slots.
        let peers: Vec<_> = (1..=3).map(|k| peer(k, u64::from(k), 0)).collect();
        let mut c = choker(4, 9);
        let u = c.rechoke(secs(0), false, &peers);
        assert_eq!(u.regular(), &[1, 2, 3]);
        assert_eq!(u.optimistic(), None);
        assert_eq!(c.next_rechoke(), secs(10));
    }

    #[test]
    fn zero_slots_leaves_only_the_optimistic_peer() {
        // Proves upload_slots = 0 unchokes exactly one peer, optimistically.
        let peers: Vec<_> = (1..=5).map(|k| peer(k, 1_000 * u64::from(k), 0)).collect();
        let mut c = choker(0, 10);
        for t in [0, 10, 30, 60] {
            let u = c.rechoke(secs(t), false, &peers);
            assert!(u.regular().is_empty());
            assert!(u.optimistic().is_some());
            assert_eq!(u.len(), 1);
        }
    }

    #[test]
    fn a_peer_becoming_interested_fills_a_free_slot_between_rounds() {
        // Proves an early rechoke unchokes a newly interested peer without waiting for the round.
        let mut c = choker(2, 11);
        let mut peers = vec![peer(1, 0, 0), peer(2, 0, 0)];
        peers[1].interested = false;
        assert_eq!(c.rechoke(secs(0), false, &peers).regular(), &[1]);
        peers[1].interested = true;
        assert_eq!(c.rechoke(secs(1), false, &peers).regular(), &[1, 2]);
        assert_eq!(
            c.next_rechoke(),
            secs(10),
            "an early call does not move the round"
        );
    }

    #[test]
    fn early_and_repeated_rechokes_do_not_demote_anyone() {
        // Proves calls between rounds keep the regular peers even when rates shift, and that two
        // identical calls give identical answers.
        let peers: Vec<_> = (1..=6).map(|k| peer(k, u64::from(k) * 100, 0)).collect();
        let mut c = choker(2, 12);
        let first = c.rechoke(secs(0), false, &peers);
        assert_eq!(first.regular(), &[5, 6]);
        assert_eq!(c.rechoke(secs(0), false, &peers), first);
        let mut shifted = peers.clone();
        shifted[0].download_rate = 1_000_000;
        let u = c.rechoke(secs(4), false, &shifted);
        assert_eq!(u.regular(), &[5, 6]);
        assert_eq!(c.rechoke(secs(9), false, &shifted), u);
        assert_eq!(c.rechoke(secs(10), false, &shifted).regular(), &[1, 6]);
    }

    #[test]
    fn switching_to_seeding_reranks_at_once() {
        // Proves completing the download re-ranks by upload rate immediately, not at the next round.
        let peers = vec![peer(1, 100, 1), peer(2, 1, 100), peer(3, 50, 50)];
        let mut c = choker(1, 13);
        assert_eq!(c.rechoke(secs(0), false, &peers).regular(), &[1]);
        assert_eq!(c.rechoke(secs(2), true, &peers).regular(), &[2]);
        assert_eq!(c.next_rechoke(), secs(12));
    }

    #[test]
    fn ties_are_broken_at_random_not_by_key() {
        // Proves equal rates do not always favour the same peer: the winner varies across seeds
        // and across rounds of one seed.
        let peers: Vec<_> = (1..=8).map(|k| peer(k, 100, 0)).collect();
        let winners: BTreeSet<u32> = (0..32)
            .map(|seed| choker(1, seed).rechoke(secs(0), false, &peers).regular()[0])
            .collect();
        assert!(winners.len() >= 4, "{winners:?}");
        let mut c = choker(1, 14);
        let per_round: BTreeSet<u32> = (0..32)
            .map(|round| c.rechoke(secs(10 * round), false, &peers).regular()[0])
            .collect();
        assert!(per_round.len() >= 4, "{per_round:?}");
    }

    #[test]
    fn newcomers_are_three_times_as_likely_to_be_optimistic() {
        // Proves mainline's 3x weighting of peers connected less than optimistic_interval ago.
        let old = peer(1, 0, 0);
        let new = PeerSnapshot {
            connected_at: secs(95),
            ..peer(2, 0, 0)
        };
        let newcomer_wins = (0..4_000)
            .filter(|&seed| {
                choker(0, seed)
                    .rechoke(secs(100), false, &[old, new])
                    .optimistic()
                    == Some(2)
            })
            .count();
        // Expected 3,000 of 4,000 (p = 3/4); the bounds are about six standard deviations wide.
        assert!((2_830..3_170).contains(&newcomer_wins), "{newcomer_wins}");
    }

    #[test]
    fn snapshot_order_and_duplicates_do_not_matter() {
        // Proves the decision depends on the peers, not on the slice's order; duplicate keys count once.
        let peers: Vec<_> = (1..=9).map(|k| peer(k, u64::from(k % 3), 0)).collect();
        let mut reversed = peers.clone();
        reversed.reverse();
        reversed.push(peer(4, 0, 0));
        let mut a = choker(3, 15);
        let mut b = choker(3, 15);
        for t in [0, 10, 30, 45] {
            assert_eq!(
                a.rechoke(secs(t), false, &peers),
                b.rechoke(secs(t), false, &reversed)
            );
        }
    }

    #[test]
    fn extreme_inputs_do_not_panic() {
        // Proves huge slot counts, zero intervals, far-future and backwards times are all safe.
        let peers: Vec<_> = (1..=5).map(|k| peer(k, u64::MAX, u64::MAX)).collect();
        let mut c = Choker::new(
            ChokerConfig {
                upload_slots: usize::MAX,
                rechoke_interval: Duration::ZERO,
                optimistic_interval: Duration::MAX,
            },
            Rng::new(16),
        );
        assert_eq!(
            c.rechoke(Instant::from_micros(u64::MAX), true, &peers)
                .len(),
            5
        );
        assert_eq!(c.rechoke(Instant::ZERO, false, &peers).len(), 5);
        let mut c = Choker::new(
            ChokerConfig {
                upload_slots: 0,
                rechoke_interval: Duration::MAX,
                optimistic_interval: Duration::ZERO,
            },
            Rng::new(17),
        );
        for t in [u64::MAX, 0, u64::MAX] {
            assert_eq!(c.rechoke(Instant::from_micros(t), false, &peers).len(), 1);
        }
        assert_eq!(c.next_rechoke(), Instant::from_micros(u64::MAX));
    }

    /// One call of a proptest scenario: time advance, mode and snapshot.
    type Step = (u64, bool, Vec<PeerSnapshot<u8>>);

    fn arb_peer() -> impl Strategy<Value = PeerSnapshot<u8>> {
        (
            0u8..12,
            any::<bool>(),
            0u64..4,
            0u64..4,
            prop::bool::weighted(0.15),
            prop::bool::weighted(0.2),
            0u64..200,
        )
            .prop_map(
                |(key, interested, down, up, is_seed, snubbed, at)| PeerSnapshot {
                    key,
                    interested,
                    download_rate: down * 1_000,
                    upload_rate: up * 1_000,
                    is_seed,
                    snubbed,
                    connected_at: secs(at),
                },
            )
    }

    fn arb_steps() -> impl Strategy<Value = Vec<Step>> {
        prop::collection::vec(
            (
                prop_oneof![Just(0u64), 0u64..15_000, Just(10_000), Just(30_000)],
                prop::bool::weighted(0.3),
                prop::collection::vec(arb_peer(), 0..14),
            ),
            1..25,
        )
    }

    fn run(config: ChokerConfig, seed: u64, steps: &[Step]) -> Vec<(Unchoked<u8>, Instant)> {
        let mut c = Choker::new(config, Rng::new(seed));
        let mut now = Instant::ZERO;
        steps
            .iter()
            .map(|(advance_ms, seeding, peers)| {
                now = now + Duration::from_millis(*advance_ms);
                let u = c.rechoke(now, *seeding, peers);
                assert_eq!(&u, c.unchoked());
                (u, c.next_rechoke())
            })
            .collect()
    }

    proptest! {
        #[test]
        fn invariants_hold_for_any_peers_and_times(
            slots in 0usize..6,
            intervals in prop_oneof![
                Just((10_000u64, 30_000u64)),
                (0u64..40_000, 0u64..60_000),
            ],
            seed in any::<u64>(),
            steps in arb_steps(),
        ) {
            // Proves the choker's invariants over random swarms and call times: the slot bound, only
            // interested non-seeds, optimistic disjoint from regular, no wasted slot, no rotation
            // before the interval, and identical results for the same seed and calls.
            let config = ChokerConfig {
                upload_slots: slots,
                rechoke_interval: Duration::from_millis(intervals.0),
                optimistic_interval: Duration::from_millis(intervals.1),
            };
            let results = run(config, seed, &steps);
            prop_assert_eq!(&results, &run(config, seed, &steps));

            let mut now = Instant::ZERO;
            // The optimistic peer and when it got the slot.
            let mut optimistic_since: Option<(u8, Instant)> = None;
            for ((advance_ms, _, peers), (u, next)) in steps.iter().zip(&results) {
                now = now + Duration::from_millis(*advance_ms);
                let eligible: BTreeSet<u8> = {
                    let mut first = BTreeMap::new();
                    for p in peers {
                        first.entry(p.key).or_insert(*p);
                    }
                    first.values().filter(|p| p.interested && !p.is_seed).map(|p| p.key).collect()
                };
                prop_assert!(u.len() <= slots + 1);
                prop_assert!(u.regular().len() <= slots);
                prop_assert_eq!(u.len(), eligible.len().min(slots + 1), "a slot was wasted");
                prop_assert!(u.regular().windows(2).all(|w| w[0] < w[1]));
                for k in u.iter() {
                    prop_assert!(eligible.contains(&k), "{} unchoked but not eligible", k);
                }
                if let Some(o) = u.optimistic() {
                    prop_assert!(!u.regular().contains(&o));
                }
                prop_assert!(*next >= now);
                if let Some((o, since)) = optimistic_since
                    && now < since + config.optimistic_interval
                    && eligible.contains(&o)
                    && !u.regular().contains(&o)
                {
                    prop_assert_eq!(u.optimistic(), Some(o), "rotated before its interval");
                }
                optimistic_since = match (u.optimistic(), optimistic_since) {
                    (Some(o), Some((prev, since))) if o == prev => Some((o, since)),
                    (Some(o), _) => Some((o, now)),
                    (None, _) => None,
                };
            }
        }
    }
}
