//! [`DhtSchedule`]: when a client's one DHT node bootstraps and announces each of its torrents,
//! sans-IO, so the runtime and the simulator follow one schedule.
//!
//! It wraps a [`Dht`]: the bootstrap nodes are added and a bootstrap runs
//! ([`DhtSchedule::start_bootstrap`]), again after [`REBOOTSTRAP`] while the table is empty. Once
//! the table has nodes ([`DhtEvent::Bootstrapped`]) every torrent added
//! ([`DhtSchedule::add_torrent`]) is announced with its port; after a lookup that found no peer
//! that torrent's next comes in [`EMPTY_LOOKUP_RETRY`], doubling while its lookups stay empty,
//! else in [`REANNOUNCE`]. A magnet with no other peer source waits on the DHT, and a seeder may
//! announce itself just after our first lookup.
//!
//! Determinism: torrents are kept in info-hash order, so due announces start in that order.
//!
//! Bounds: the bootstrap addresses are what the caller gives; one entry per torrent added (the
//! client bounds its torrents); everything else is the [`Dht`]'s.

use core::net::SocketAddr;
use core::time::Duration;
use std::collections::BTreeMap;

use super::{Dht, DhtEvent, Transmit};
use crate::metainfo::InfoHash;
use crate::time::Instant;

/// How often a torrent is announced again while lookups find peers.
pub const REANNOUNCE: Duration = Duration::from_secs(15 * 60);

/// After a lookup that found no peer, the next comes this soon, doubling up to [`REANNOUNCE`]
/// while lookups stay empty.
pub const EMPTY_LOOKUP_RETRY: Duration = Duration::from_secs(5);

/// How long after a bootstrap that found no node it is tried again.
pub const REBOOTSTRAP: Duration = Duration::from_secs(60);

/// What [`DhtSchedule::poll`] reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ScheduleEvent {
    /// Peers of a torrent from one answer.
    Peers {
        /// The torrent.
        info_hash: InfoHash,
        /// The peers.
        peers: Vec<SocketAddr>,
    },
    /// The table has nodes for the first time.
    Bootstrapped {
        /// Nodes in the table.
        nodes: usize,
    },
    /// An announce of a torrent (its lookup) finished.
    Announced {
        /// The torrent.
        info_hash: InfoHash,
        /// Peers it found in all.
        peers: usize,
        /// Nodes that took our announce.
        announced: usize,
        /// Nodes in the table now.
        nodes: usize,
    },
}

/// One torrent's announce schedule.
#[derive(Clone, Debug)]
struct Announcing {
    port: Option<u16>,
    /// When to announce next; `None` while one runs or before the table has nodes.
    next: Option<Instant>,
    running: bool,
    /// Lookups in a row that found no peer.
    empty_lookups: u32,
}

/// A DHT node announcing a set of torrents: see the module docs.
#[derive(Debug)]
pub struct DhtSchedule {
    dht: Dht,
    bootstrap: Vec<SocketAddr>,
    next_bootstrap: Option<Instant>,
    bootstrapped: bool,
    torrents: BTreeMap<InfoHash, Announcing>,
}

impl DhtSchedule {
    /// `dht`, announcing nothing yet.
    pub fn new(dht: Dht) -> Self {
        DhtSchedule {
            dht,
            bootstrap: Vec::new(),
            next_bootstrap: None,
            bootstrapped: false,
            torrents: BTreeMap::new(),
        }
    }

    /// The node.
    pub fn dht(&self) -> &Dht {
        &self.dht
    }

    /// Whether `info_hash` is announced.
    pub fn has_torrent(&self, info_hash: &InfoHash) -> bool {
        self.torrents.contains_key(info_hash)
    }

    /// The next time [`DhtSchedule::handle_timeout`] or [`DhtSchedule::poll`] has work.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let announces = self.torrents.values().filter_map(|t| t.next);
        [self.dht.poll_timeout(), self.next_bootstrap]
            .into_iter()
            .flatten()
            .chain(announces)
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

    /// Announces `info_hash` with `port` (`None`: implied port) from now on: at once if the
    /// table has nodes, else once it has.
    pub fn add_torrent(&mut self, now: Instant, info_hash: InfoHash, port: Option<u16>) {
        let next = self.bootstrapped.then_some(now);
        self.torrents.entry(info_hash).or_insert(Announcing {
            port,
            next,
            running: false,
            empty_lookups: 0,
        });
    }

    /// Stops announcing `info_hash` (a lookup running ends unreported).
    pub fn remove_torrent(&mut self, info_hash: &InfoHash) {
        self.torrents.remove(info_hash);
    }

    /// The next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.dht.poll_transmit()
    }

    /// Starts the due announces and takes the node's events into `out` (announcing at once when
    /// an event asks for it). Drain [`DhtSchedule::poll_transmit`] after it.
    pub fn poll(&mut self, now: Instant, out: &mut Vec<ScheduleEvent>) {
        loop {
            let due: Vec<(InfoHash, Option<u16>)> = self
                .torrents
                .iter()
                .filter(|(_, t)| t.next.is_some_and(|at| at <= now))
                .map(|(h, t)| (*h, t.port))
                .collect();
            for (info_hash, port) in due {
                let t = self.torrents.get_mut(&info_hash).expect("listed above");
                t.next = None;
                t.running = true;
                self.dht.announce(now, info_hash, port);
            }
            while let Some(event) = self.dht.poll_event() {
                self.take(now, event, out);
            }
            if !self
                .torrents
                .values()
                .any(|t| t.next.is_some_and(|at| at <= now))
            {
                return;
            }
        }
    }

    fn take(&mut self, now: Instant, event: DhtEvent, out: &mut Vec<ScheduleEvent>) {
        match event {
            DhtEvent::Peers {
                info_hash, peers, ..
            } if self.torrents.contains_key(&info_hash) => {
                out.push(ScheduleEvent::Peers { info_hash, peers });
            }
            DhtEvent::LookupDone {
                info_hash,
                peers,
                announced,
                ..
            } => {
                let Some(t) = self.torrents.get_mut(&info_hash) else {
                    return;
                };
                t.running = false;
                t.empty_lookups = if peers == 0 {
                    t.empty_lookups.saturating_add(1)
                } else {
                    0
                };
                let wait = match t.empty_lookups {
                    0 => REANNOUNCE,
                    n => EMPTY_LOOKUP_RETRY
                        .saturating_mul(1 << (n - 1).min(16))
                        .min(REANNOUNCE),
                };
                t.next = Some(now + wait);
                out.push(ScheduleEvent::Announced {
                    info_hash,
                    peers,
                    announced,
                    nodes: self.dht.node_count(),
                });
            }
            DhtEvent::Bootstrapped { nodes } => {
                if !self.bootstrapped {
                    self.bootstrapped = true;
                    out.push(ScheduleEvent::Bootstrapped { nodes });
                }
                for t in self.torrents.values_mut() {
                    if !t.running && t.next.is_none() {
                        t.next = Some(now);
                    }
                }
            }
            DhtEvent::Peers { .. } => {}
        }
    }
}

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

/// A [`DhtSchedule`] announcing exactly one torrent.
#[derive(Debug)]
pub struct TorrentDht {
    schedule: DhtSchedule,
    events: Vec<ScheduleEvent>,
}

impl TorrentDht {
    /// `dht` announcing `info_hash` with `port` (`None`: implied port).
    pub fn new(dht: Dht, info_hash: InfoHash, port: Option<u16>) -> Self {
        let mut schedule = DhtSchedule::new(dht);
        schedule.add_torrent(Instant::ZERO, info_hash, port);
        TorrentDht {
            schedule,
            events: Vec::new(),
        }
    }

    /// The node.
    pub fn dht(&self) -> &Dht {
        self.schedule.dht()
    }

    /// See [`DhtSchedule::poll_timeout`].
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.schedule.poll_timeout()
    }

    /// See [`DhtSchedule::handle_datagram`].
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, bytes: &[u8]) {
        self.schedule.handle_datagram(now, from, bytes);
    }

    /// See [`DhtSchedule::handle_timeout`].
    pub fn handle_timeout(&mut self, now: Instant) {
        self.schedule.handle_timeout(now);
    }

    /// See [`DhtSchedule::add_node`].
    pub fn add_node(&mut self, now: Instant, addr: SocketAddr) {
        self.schedule.add_node(now, addr);
    }

    /// See [`DhtSchedule::start_bootstrap`].
    pub fn start_bootstrap(&mut self, now: Instant, nodes: Vec<SocketAddr>) {
        self.schedule.start_bootstrap(now, nodes);
    }

    /// See [`DhtSchedule::poll_transmit`].
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.schedule.poll_transmit()
    }

    /// See [`DhtSchedule::poll`].
    pub fn poll(&mut self, now: Instant, out: &mut Vec<TorrentDhtEvent>) {
        self.schedule.poll(now, &mut self.events);
        out.extend(self.events.drain(..).map(|e| match e {
            ScheduleEvent::Peers { peers, .. } => TorrentDhtEvent::Peers(peers),
            ScheduleEvent::Bootstrapped { nodes } => TorrentDhtEvent::Bootstrapped { nodes },
            ScheduleEvent::Announced {
                peers,
                announced,
                nodes,
                ..
            } => TorrentDhtEvent::Announced {
                peers,
                announced,
                nodes,
            },
        }));
    }
}
