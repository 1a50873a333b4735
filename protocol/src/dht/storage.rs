//! [`PeerStore`]: the peers other nodes announced to us (BEP 5 `announce_peer`), served in
//! `get_peers` answers.
//!
//! Bounds: at most [`PeerStoreConfig::max_info_hashes`] info hashes (default 2,000) of at most
//! [`PeerStoreConfig::max_peers_per_hash`] peers each (default 100); an entry expires
//! [`PeerStoreConfig::ttl`] after its last announce (default 30 minutes). When a bound is hit the
//! oldest entry goes first: the info hash whose newest announce is the oldest, or the peer
//! announced longest ago.

use core::net::SocketAddr;
use std::collections::BTreeMap;
use std::time::Duration;

use crate::metainfo::InfoHash;
use crate::time::Instant;

/// The bounds of a [`PeerStore`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerStoreConfig {
    /// Most info hashes kept.
    pub max_info_hashes: usize,
    /// Most peers kept per info hash.
    pub max_peers_per_hash: usize,
    /// How long an announce is kept.
    pub ttl: Duration,
}

impl Default for PeerStoreConfig {
    /// 2,000 info hashes, 100 peers each, 30 minutes.
    fn default() -> Self {
        PeerStoreConfig {
            max_info_hashes: 2_000,
            max_peers_per_hash: 100,
            ttl: Duration::from_secs(30 * 60),
        }
    }
}

/// Announced peers by info hash, bounded as the module docs say.
#[derive(Clone, Debug, Default)]
pub struct PeerStore {
    config: PeerStoreConfig,
    /// Per info hash: (peer, when it last announced), oldest first.
    torrents: BTreeMap<InfoHash, Vec<(SocketAddr, Instant)>>,
}

impl PeerStore {
    /// An empty store with these bounds.
    pub fn new(config: PeerStoreConfig) -> Self {
        PeerStore {
            config,
            torrents: BTreeMap::new(),
        }
    }

    /// The number of info hashes held.
    pub fn info_hash_count(&self) -> usize {
        self.torrents.len()
    }

    /// The number of peers held, all info hashes together.
    pub fn peer_count(&self) -> usize {
        self.torrents.values().map(Vec::len).sum()
    }

    /// The largest number of peers held for one info hash.
    pub fn max_peers_held(&self) -> usize {
        self.torrents.values().map(Vec::len).max().unwrap_or(0)
    }

    /// Up to `max` unexpired peers of `info_hash` of the same address family as `family`,
    /// most recently announced first.
    pub fn peers(
        &self,
        now: Instant,
        info_hash: &InfoHash,
        family: SocketAddr,
        max: usize,
    ) -> Vec<SocketAddr> {
        let Some(peers) = self.torrents.get(info_hash) else {
            return Vec::new();
        };
        peers
            .iter()
            .rev()
            .filter(|(p, at)| {
                p.is_ipv4() == family.is_ipv4() && now.saturating_since(*at) < self.config.ttl
            })
            .map(|(p, _)| *p)
            .take(max)
            .collect()
    }

    /// Records that `peer` announced `info_hash` at `now`, evicting the oldest entry if a bound
    /// is hit.
    pub fn announce(&mut self, now: Instant, info_hash: InfoHash, peer: SocketAddr) {
        if self.config.max_info_hashes == 0 || self.config.max_peers_per_hash == 0 {
            return;
        }
        if !self.torrents.contains_key(&info_hash)
            && self.torrents.len() >= self.config.max_info_hashes
        {
            let oldest = self
                .torrents
                .iter()
                .min_by_key(|(_, peers)| peers.last().map(|(_, at)| *at))
                .map(|(hash, _)| *hash);
            if let Some(oldest) = oldest {
                self.torrents.remove(&oldest);
            }
        }
        let peers = self.torrents.entry(info_hash).or_default();
        peers.retain(|(p, _)| *p != peer);
        if peers.len() >= self.config.max_peers_per_hash {
            peers.remove(0);
        }
        peers.push((peer, now));
    }

    /// Forgets every announce older than the time to live.
    pub fn expire(&mut self, now: Instant) {
        let ttl = self.config.ttl;
        self.torrents.retain(|_, peers| {
            peers.retain(|(_, at)| now.saturating_since(*at) < ttl);
            !peers.is_empty()
        });
    }
}
