//! [`TorrentDht`]: when a client's DHT node bootstraps and announces one torrent, sans-IO, so
//! the runtime's driver and the simulator follow one schedule.
//!
//! It wraps a [`Dht`]: the bootstrap nodes are added and a bootstrap runs
//! ([`TorrentDht::start_bootstrap`]), again after [`REBOOTSTRAP`] while the table is empty; on
//! [`DhtEvent::Bootstrapped`] the torrent is announced (with our port); after a lookup that found
//! no peer the next comes in [`EMPTY_LOOKUP_RETRY`], doubling while lookups stay empty, else in
//! [`REANNOUNCE`]. A magnet with no other peer source waits on the DHT, and a seeder may announce
//! itself just after our first lookup.
//!
//! Bounds: the bootstrap addresses are what the caller gives; everything else is the [`Dht`]'s.

use core::net::SocketAddr;
use core::time::Duration;

use super::{Dht, DhtEvent, Transmit};
use crate::metainfo::InfoHash;
use crate::time::Instant;

/// How often the torrent is announced again while lookups find peers.
pub const REANNOUNCE: Duration = Duration::from_secs(15 * 60);

/// After a lookup that found no peer, the next comes this soon, doubling up to [`REANNOUNCE`]
/// while lookups stay empty.
pub const EMPTY_LOOKUP_RETRY: Duration = Duration::from_secs(5);

/// How long after a bootstrap that found no node it is tried again.
pub const REBOOTSTRAP: Duration = Duration::from_secs(60);

/// What [`TorrentDht::poll`] reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TorrentDhtEvent {
    /// Peers of the torrent from one answer.
    Peers(Vec<SocketAddr>),
    /// The table has nodes for the first time.
    Bootstrapped {
        /// Nodes in the table.
        nodes: usize,
    },
    /// An announce (its lookup) finished.
    Announced {
        /// Peers it found in all.
        peers: usize,
        /// Nodes that took our announce.
        announced: usize,
        /// Nodes in the table now.
        nodes: usize,
    },
}

/// A DHT node announcing one torrent: see the module docs.
#[derive(Debug)]
pub struct TorrentDht {
    dht: Dht,
    info_hash: InfoHash,
    port: Option<u16>,
    bootstrap: Vec<SocketAddr>,
    next_bootstrap: Option<Instant>,
    /// When to announce next; `None` while one runs or before the table has nodes.
    next_announce: Option<Instant>,
    announcing: bool,
    bootstrapped: bool,
    /// Lookups in a row that found no peer.
    empty_lookups: u32,
}

impl TorrentDht {
    /// `dht` announcing `info_hash` with `port` (`None`: implied port).
    pub fn new(dht: Dht, info_hash: InfoHash, port: Option<u16>) -> Self {
        TorrentDht {
            dht,
            info_hash,
            port,
            bootstrap: Vec::new(),
            next_bootstrap: None,
            next_announce: None,
            announcing: false,
            bootstrapped: false,
            empty_lookups: 0,
        }
    }

    /// The node.
    pub fn dht(&self) -> &Dht {
        &self.dht
    }

    /// The next time [`TorrentDht::handle_timeout`] or [`TorrentDht::poll`] has work.
    pub fn poll_timeout(&self) -> Option<Instant> {
        [
            self.dht.poll_timeout(),
            self.next_announce,
            self.next_bootstrap,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// A datagram for the node.
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, bytes: &[u8]) {
        self.dht.handle_datagram(now, from, bytes);
    }

    /// Time has passed.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.dht.handle_timeout(now);
        if self.next_bootstrap.is_some_and(|at| at <= now) {
            if self.dht.node_count() == 0 {
                self.bootstrap_now(now);
            } else {
                self.next_bootstrap = None;
            }
        }
    }

    /// A node to try (a peer's BEP 5 `port` message, a saved node).
    pub fn add_node(&mut self, now: Instant, addr: SocketAddr) {
        self.dht.add_node(now, addr);
    }

    /// Bootstraps from `nodes` (kept, to bootstrap again while the table stays empty).
    pub fn start_bootstrap(&mut self, now: Instant, nodes: Vec<SocketAddr>) {
        self.bootstrap = nodes;
        self.bootstrap_now(now);
    }

    fn bootstrap_now(&mut self, now: Instant) {
        for &addr in &self.bootstrap {
            self.dht.add_node(now, addr);
        }
        self.dht.bootstrap(now);
        self.next_bootstrap = Some(now + REBOOTSTRAP);
    }

    /// The next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.dht.poll_transmit()
    }

    /// Starts a due announce and takes the node's events into `out` (announcing at once when an
    /// event asks for it). Drain [`TorrentDht::poll_transmit`] after it.
    pub fn poll(&mut self, now: Instant, out: &mut Vec<TorrentDhtEvent>) {
        loop {
            if self.next_announce.is_some_and(|at| at <= now) {
                self.next_announce = None;
                self.announcing = true;
                self.dht.announce(now, self.info_hash, self.port);
            }
            while let Some(event) = self.dht.poll_event() {
                self.take(now, event, out);
            }
            if self.next_announce.is_none_or(|at| at > now) {
                return;
            }
        }
    }

    fn take(&mut self, now: Instant, event: DhtEvent, out: &mut Vec<TorrentDhtEvent>) {
        match event {
            DhtEvent::Peers {
                info_hash, peers, ..
            } if info_hash == self.info_hash => out.push(TorrentDhtEvent::Peers(peers)),
            DhtEvent::LookupDone {
                info_hash,
                peers,
                announced,
                ..
            } if info_hash == self.info_hash => {
                self.announcing = false;
                self.empty_lookups = if peers == 0 {
                    self.empty_lookups.saturating_add(1)
                } else {
                    0
                };
                let wait = match self.empty_lookups {
                    0 => REANNOUNCE,
                    n => EMPTY_LOOKUP_RETRY
                        .saturating_mul(1 << (n - 1).min(16))
                        .min(REANNOUNCE),
                };
                self.next_announce = Some(now + wait);
                out.push(TorrentDhtEvent::Announced {
                    peers,
                    announced,
                    nodes: self.dht.node_count(),
                });
            }
            DhtEvent::Bootstrapped { nodes } => {
                if !self.bootstrapped {
                    self.bootstrapped = true;
                    out.push(TorrentDhtEvent::Bootstrapped { nodes });
                }
                if !self.announcing && self.next_announce.is_none() {
                    self.next_announce = Some(now);
                }
            }
            DhtEvent::Peers { .. } | DhtEvent::LookupDone { .. } => {}
        }
    }
}
