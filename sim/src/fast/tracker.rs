//! [`Directory`]: the fast engine's tracker, an in-process list of the peers that announced.
//!
//! It answers an announce as a tracker would (BEP 3): it remembers the peer (or forgets it on
//! `stopped`), and gives up to `max_peers` others drawn at random, with the seeder and leecher
//! counts and its interval. Peers it has not heard from for two intervals plus a minute are
//! forgotten, as real trackers expire peers that vanished without `stopped`.
//!
//! Bounds: one entry per announcing peer (the scenario caps peers); an answer holds at most
//! `min(numwant, max_peers)` peers.

use core::net::SocketAddr;
use std::collections::BTreeMap;
use std::time::Duration;

use bt_protocol::rng::Rng;
use bt_protocol::time::Instant;
use bt_protocol::tracker::{AnnounceResponse, Event};

use crate::scenario::TrackerSpec;

#[derive(Clone, Copy, Debug)]
struct Member {
    addr: SocketAddr,
    seen: Instant,
    seed: bool,
}

/// One tracker's peer list. See the module docs.
#[derive(Debug)]
pub struct Directory {
    spec: TrackerSpec,
    members: Vec<Member>,
    index: BTreeMap<SocketAddr, usize>,
    rng: Rng,
    /// Whether it answers.
    pub up: bool,
    next_sweep: Instant,
    /// Announces answered.
    pub announces: u64,
}

impl Directory {
    /// An empty directory.
    pub fn new(spec: TrackerSpec, rng: Rng) -> Self {
        Directory {
            spec,
            members: Vec::new(),
            index: BTreeMap::new(),
            rng,
            up: true,
            next_sweep: Instant::ZERO,
            announces: 0,
        }
    }

    /// How long a silent peer is remembered.
    fn expiry(&self) -> Duration {
        self.spec.interval * 2 + Duration::from_secs(60)
    }

    fn remove(&mut self, addr: SocketAddr) {
        let Some(i) = self.index.remove(&addr) else {
            return;
        };
        self.members.swap_remove(i);
        if let Some(moved) = self.members.get(i) {
            self.index.insert(moved.addr, i);
        }
    }

    fn sweep(&mut self, now: Instant) {
        if now < self.next_sweep {
            return;
        }
        self.next_sweep = now + Duration::from_secs(10);
        let expiry = self.expiry();
        let stale: Vec<SocketAddr> = self
            .members
            .iter()
            .filter(|m| now.saturating_since(m.seen) > expiry)
            .map(|m| m.addr)
            .collect();
        for addr in stale {
            self.remove(addr);
        }
    }

    /// Handles an announce from `addr` and gives the answer.
    pub fn announce(
        &mut self,
        now: Instant,
        addr: SocketAddr,
        event: Event,
        left: u64,
        numwant: usize,
    ) -> AnnounceResponse {
        self.announces += 1;
        self.sweep(now);
        if event == Event::Stopped {
            self.remove(addr);
        } else {
            let member = Member {
                addr,
                seen: now,
                seed: left == 0,
            };
            match self.index.get(&addr) {
                Some(&i) => self.members[i] = member,
                None => {
                    self.index.insert(addr, self.members.len());
                    self.members.push(member);
                }
            }
        }
        let want = if event == Event::Stopped {
            0
        } else {
            numwant.min(self.spec.max_peers)
        };
        let others = self.members.len() - usize::from(self.index.contains_key(&addr));
        let mut peers = Vec::with_capacity(want.min(others));
        if others <= want {
            peers.extend(
                self.members
                    .iter()
                    .filter(|m| m.addr != addr)
                    .map(|m| m.addr),
            );
            self.rng.shuffle(&mut peers);
        } else {
            // Rejection sampling: `want` is small next to `others` or the branch above runs.
            let mut chosen = std::collections::BTreeSet::new();
            while peers.len() < want {
                let i = self.rng.below(self.members.len() as u64) as usize;
                let m = self.members[i];
                if m.addr != addr && chosen.insert(i) {
                    peers.push(m.addr);
                }
            }
        }
        let complete = self.members.iter().filter(|m| m.seed).count() as u32;
        AnnounceResponse {
            interval: self.spec.interval,
            min_interval: None,
            tracker_id: None,
            complete: Some(complete),
            incomplete: Some(self.members.len() as u32 - complete),
            peers,
            warning: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::TrackerKind;

    fn addr(i: u8) -> SocketAddr {
        SocketAddr::from(([10, 0, 0, i], 6881))
    }

    #[test]
    fn gives_others_at_random_and_forgets_the_stopped_and_the_silent() {
        // Proves answers never include the asker, stay within max_peers, drop stopped peers
        // at once and silent ones after two intervals plus a minute.
        let spec = TrackerSpec {
            kind: TrackerKind::Http,
            interval: Duration::from_secs(30),
            max_peers: 3,
            loss: 0.0,
        };
        let mut d = Directory::new(spec, Rng::new(1));
        let t0 = Instant::ZERO;
        for i in 1..=6 {
            d.announce(t0, addr(i), Event::Started, 100, 80);
        }
        let answer = d.announce(t0, addr(1), Event::None, 100, 80);
        assert_eq!(answer.peers.len(), 3);
        assert!(!answer.peers.contains(&addr(1)));
        assert_eq!(answer.incomplete, Some(6));
        d.announce(t0, addr(2), Event::Stopped, 100, 80);
        let later = Instant::from_micros(100_000_000);
        for i in 3..=6 {
            d.announce(later, addr(i), Event::None, 0, 80);
        }
        let answer = d.announce(later, addr(3), Event::None, 0, 80);
        assert!(!answer.peers.contains(&addr(2)));
        // Peer 1 was last heard at 0 s; 121 s later it is gone.
        let gone = Instant::from_micros(221_000_000);
        let answer = d.announce(gone, addr(3), Event::None, 0, 80);
        assert!(!answer.peers.contains(&addr(1)), "{:?}", answer.peers);
        assert_eq!(answer.peers.len(), 0);
    }
}
