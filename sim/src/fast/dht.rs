//! The fast engine's DHT (BEP 5): one protocol [`Dht`] per peer of a group with `dht` on, and
//! the scenario's bootstrap nodes as DHT-only hosts, their datagrams carried as UDP over the
//! simulated links.
//!
//! A peer's node follows the protocol's [`TorrentDht`] schedule, as the runtime's `DhtRunner` does
//! ([`PeerDht`]): at the start it
//! adds the bootstrap nodes and bootstraps (again after `REBOOTSTRAP` while the table is
//! empty); on `Bootstrapped` it announces the torrent with its TCP port; after a lookup that found
//! no peer it announces again in `EMPTY_LOOKUP_RETRY`, doubling while lookups stay empty, else
//! in `REANNOUNCE`. The peers found join the dial queue like a tracker's; a peer's BEP 5 PORT
//! message adds it as a node. Its timers are folded into the host's own wake-up (`Ev::Timer`); a
//! bootstrap node has its own (`Ev::DhtTimer`).
//!
//! Datagrams: each takes the link's latency and a uniform 0 to `jitter_ms` more, is lost with the
//! link's `loss` and the `[dht]` table's own (no retransmission: the node times the query out),
//! does not cross a partition, and is dropped at a peer that is not running. Every datagram sent
//! and delivered is a trace record (sender, receiver, length and a hash of its bytes), so the
//! same seed gives the same DHT traffic.
//!
//! Crash and restart: a crashed peer's node goes with it; a restarted peer starts a new node
//! (a new id from its new life's seed) with a fresh table, from the bootstrap nodes, as
//! `bt get` does when it has no saved DHT state.
//!
//! Bounds: each node bounds its own state and queues ([`bt_protocol::dht::DhtConfig`]); the
//! datagrams in flight are the event queue's, at most the nodes' `max_transmits` per drain.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use bt_protocol::dht::{Dht, DhtConfig, NodeId, TorrentDht, TorrentDhtEvent, Transmit};
use bt_protocol::metainfo::InfoHash;
use bt_protocol::rng::Rng;
use bt_protocol::time::Instant;

use super::{Ev, HostId, PORT, State, World, host_of_ip};
use crate::trace::{Fingerprint, Kind};

/// A DHT datagram on its way.
pub(super) struct Datagram {
    to: SocketAddr,
    from: SocketAddr,
    bytes: Vec<u8>,
}

/// Who a DHT address belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Node {
    /// A peer's node.
    Peer(HostId),
    /// Bootstrap node `b`.
    Boot(u32),
}

impl Node {
    /// Its number in trace records: a peer's host number, or `1 << 32` plus the bootstrap
    /// node's index.
    fn code(self) -> u64 {
        match self {
            Node::Peer(h) => u64::from(h),
            Node::Boot(b) => 1 << 32 | u64::from(b),
        }
    }
}

/// The address of bootstrap node `b`: 10.255.0.b+1 (no peer has a 10.255 address).
pub(super) fn boot_addr(b: u32) -> SocketAddr {
    SocketAddr::new(
        IpAddr::V4(Ipv4Addr::new(10, 255, (b >> 8) as u8, b as u8 + 1)),
        PORT,
    )
}

/// The node at `addr`, if it is one of ours.
fn node_of(addr: SocketAddr, hosts: usize, boots: usize) -> Option<Node> {
    if addr.port() != PORT {
        return None;
    }
    if let IpAddr::V4(v4) = addr.ip()
        && let [10, 255, hi, lo] = v4.octets()
    {
        let b = (u32::from(hi) << 8 | u32::from(lo)).checked_sub(1)?;
        return ((b as usize) < boots).then_some(Node::Boot(b));
    }
    host_of_ip(addr.ip())
        .filter(|h| (*h as usize) < hosts)
        .map(Node::Peer)
}

/// A new node with an id drawn from `rng`, as the runtime makes one with no saved state.
fn new_node(rng: &mut Rng) -> Dht {
    let mut id = [0u8; 20];
    rng.fill(&mut id);
    Dht::new(DhtConfig::default(), NodeId(id), rng.fork(0x0064_6874))
}

/// A bootstrap node: a bare [`Dht`] with no torrent.
pub(super) struct BootNode {
    dht: Dht,
    timer_at: Option<Instant>,
    /// Datagrams it sent.
    pub(super) datagrams: u64,
}

impl BootNode {
    /// A bootstrap node, its id from `rng`.
    pub(super) fn new(rng: &mut Rng) -> Self {
        BootNode {
            dht: new_node(rng),
            timer_at: None,
            datagrams: 0,
        }
    }
}

/// A peer's node with the schedule the runtime's `DhtRunner` follows too
/// ([`TorrentDht`]), announcing the torrent with the peer's port.
pub(super) struct PeerDht {
    node: TorrentDht,
    /// Reused buffer of the schedule's events.
    events: Vec<TorrentDhtEvent>,
}

impl PeerDht {
    /// A node for one life of a peer, its id from `rng`, announcing `info_hash` and
    /// bootstrapping from the `boots` nodes.
    fn new(now: Instant, rng: &mut Rng, info_hash: InfoHash, boots: u32) -> Self {
        let mut node = TorrentDht::new(new_node(rng), info_hash, Some(PORT));
        node.start_bootstrap(now, (0..boots).map(boot_addr).collect());
        PeerDht {
            node,
            events: Vec::new(),
        }
    }

    /// The next time [`PeerDht::handle_timeout`] has work.
    pub(super) fn poll_timeout(&self) -> Option<Instant> {
        self.node.poll_timeout()
    }

    /// Time has passed.
    pub(super) fn handle_timeout(&mut self, now: Instant) {
        self.node.handle_timeout(now);
    }

    /// Starts a due announce, takes the datagrams to send and the events: peers found go to
    /// `found`; returns the lookups of our torrent that finished.
    fn pump(&mut self, now: Instant, found: &mut Vec<SocketAddr>, out: &mut Vec<Transmit>) -> u64 {
        self.node.poll(now, &mut self.events);
        out.extend(std::iter::from_fn(|| self.node.poll_transmit()));
        let mut done = 0;
        for event in self.events.drain(..) {
            match event {
                TorrentDhtEvent::Peers(peers) => found.extend(peers),
                TorrentDhtEvent::Announced { .. } => done += 1,
                TorrentDhtEvent::Bootstrapped { .. } => {}
            }
        }
        done
    }
}

impl World<'_> {
    /// Gives peer `h` a new DHT node for this life, if its group runs one; its id comes from
    /// `rng` (the life's seed).
    pub(super) fn start_dht(&mut self, h: HostId, rng: &mut Rng) {
        let now = self.now();
        let boots = self.scenario.dht_bootstrap_count();
        let info_hash = self.content.info_hash;
        let host = &mut self.hosts[h as usize];
        host.dht = (self.scenario.dht.is_some() && self.scenario.groups[host.group].dht)
            .then(|| Box::new(PeerDht::new(now, rng, info_hash, boots)));
    }

    /// The bootstrap nodes know each other and bootstrap, at the start of the run.
    pub(super) fn start_boot_nodes(&mut self) {
        let now = self.now();
        let n = self.boots.len() as u32;
        for b in 0..n {
            let node = &mut self.boots[b as usize].dht;
            for other in (0..n).filter(|o| *o != b) {
                node.add_node(now, boot_addr(other));
            }
            node.bootstrap(now);
            self.flush_boot(b);
        }
    }

    /// Peer `h`'s node: a due announce, its datagrams sent, the peers found queued to dial.
    pub(super) fn pump_dht(&mut self, h: HostId) {
        let now = self.now();
        let host = &mut self.hosts[h as usize];
        let Some(d) = host.dht.as_mut() else {
            return;
        };
        let (mut found, mut out) = (Vec::new(), Vec::new());
        let done = d.pump(now, &mut found, &mut out);
        if done > 0 {
            host.dht_lookups += done;
            host.dht_first_lookup_at.get_or_insert(now);
        }
        host.dht_datagrams += out.len() as u64;
        let from = host.addr;
        for t in out {
            self.send_datagram(from, t);
        }
        if !found.is_empty() {
            let before = self.hosts[h as usize].queued.len();
            for addr in found {
                self.add_peer(h, addr);
            }
            let new = self.hosts[h as usize].queued.len().saturating_sub(before) as u64;
            self.hosts[h as usize].dht_peers += new;
            self.trace.record(Kind::DhtFound, &[u64::from(h), new]);
        }
    }

    /// Bootstrap node `b`: its datagrams sent (its events are nobody's), its next wake-up.
    fn flush_boot(&mut self, b: u32) {
        let from = boot_addr(b);
        let node = &mut self.boots[b as usize];
        let out: Vec<Transmit> = std::iter::from_fn(|| node.dht.poll_transmit()).collect();
        while node.dht.poll_event().is_some() {}
        node.datagrams += out.len() as u64;
        for t in out {
            self.send_datagram(from, t);
        }
        let now = self.now();
        let node = &mut self.boots[b as usize];
        if let Some(at) = node.dht.poll_timeout() {
            // A deadline already due is handled after what is queued for now.
            let at = at.max(now);
            if node.timer_at.is_none_or(|t| at < t) {
                node.timer_at = Some(at);
                self.queue.push(at, Ev::DhtTimer(b));
            }
        }
    }

    /// Bootstrap node `b`'s timer, if it is still the one it waits for.
    pub(super) fn on_boot_timer(&mut self, b: u32) {
        let now = self.now();
        let node = &mut self.boots[b as usize];
        if node.timer_at != Some(now) {
            return;
        }
        node.timer_at = None;
        self.trace.record(Kind::DhtBootTimer, &[u64::from(b)]);
        node.dht.handle_timeout(now);
        self.flush_boot(b);
    }

    /// Puts a datagram from `from` on the network: lost, held by a partition or scheduled.
    fn send_datagram(&mut self, from: SocketAddr, t: Transmit) {
        let (hosts, boots) = (self.hosts.len(), self.boots.len());
        let (Some(src), dst) = (node_of(from, hosts, boots), node_of(t.to, hosts, boots)) else {
            return;
        };
        self.trace.record(
            Kind::DhtSent,
            &[
                src.code(),
                dst.map_or(u64::MAX, Node::code),
                t.bytes.len() as u64,
                fnv(&t.bytes),
            ],
        );
        let Some(dst) = dst else {
            self.dht_lost += 1;
            return;
        };
        if let (Node::Peer(a), Node::Peer(b)) = (src, dst)
            && self.cut(a, b)
        {
            self.dht_lost += 1;
            return;
        }
        let link = &self.scenario.link;
        let own = self.scenario.dht.as_ref().map_or(0.0, |d| d.loss);
        let loss = 1.0 - (1.0 - link.loss) * (1.0 - own);
        let jitter = link.jitter.as_micros() as u64;
        let mut delay = link.latency;
        if jitter > 0 {
            delay += Duration::from_micros(self.dht_rng.below(jitter + 1));
        }
        if loss > 0.0 && (self.dht_rng.next_u64() as f64) < loss * u64::MAX as f64 {
            self.dht_lost += 1;
            return;
        }
        let at = self.now() + delay;
        self.queue.push(
            at,
            Ev::DhtDatagram(Box::new(Datagram {
                to: t.to,
                from,
                bytes: t.bytes,
            })),
        );
    }

    /// A datagram reaches its node (dropped at a peer that is not running).
    pub(super) fn on_datagram(&mut self, d: Datagram) {
        let now = self.now();
        let (hosts, boots) = (self.hosts.len(), self.boots.len());
        let Some(dst) = node_of(d.to, hosts, boots) else {
            return;
        };
        self.trace.record(
            Kind::DhtDelivered,
            &[dst.code(), d.bytes.len() as u64, fnv(&d.bytes)],
        );
        match dst {
            Node::Boot(b) => {
                self.boots[b as usize]
                    .dht
                    .handle_datagram(now, d.from, &d.bytes);
                self.flush_boot(b);
            }
            Node::Peer(h) => {
                let host = &mut self.hosts[h as usize];
                let Some(node) = host.dht.as_mut().filter(|_| host.state == State::Up) else {
                    return;
                };
                node.node.handle_datagram(now, d.from, &d.bytes);
                self.settle(h);
            }
        }
    }

    /// A peer told peer `h` its DHT port (BEP 5 PORT): a node to try.
    pub(super) fn dht_port(&mut self, h: HostId, addr: SocketAddr) {
        let now = self.now();
        if let Some(d) = self.hosts[h as usize].dht.as_mut() {
            d.node.add_node(now, addr);
        }
    }
}

/// FNV-1a of a datagram's bytes, for the trace.
fn fnv(bytes: &[u8]) -> u64 {
    let mut f = Fingerprint::default();
    for chunk in bytes.chunks(8) {
        let mut w = [0u8; 8];
        w[..chunk.len()].copy_from_slice(chunk);
        f.word(u64::from_le_bytes(w));
    }
    f.value()
}
