//! The fast engine's DHT (BEP 5): one protocol [`Dht`] per peer of a group with `dht` on, and
//! the scenario's bootstrap nodes as DHT-only hosts, their datagrams carried as UDP over the
//! simulated links.
//!
//! A peer's node is its client's (`Client::start_dht`): when to bootstrap and announce is the
//! protocol's schedule, the same the runtime runs; the peers it finds join the client's peer
//! list; a peer's BEP 5 PORT message adds it as a node. Here the engine only carries its
//! datagrams ([`bt_protocol::client::Output::Datagram`]) and runs the bootstrap nodes, each with
//! its own timer (`Ev::DhtTimer`).
//!
//! The same carriage serves the clients' uTP datagrams ([`World::send_datagram`] sorts them by
//! their first byte; uTP ones are traced as `utp_sent`/`utp_delivered` and lose only the link's
//! `loss`); with the bottleneck model every peer's datagram passes its uplink FIFO and the
//! receiver's downlink ([`super::bottleneck`]).
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

use bt_protocol::dht::{Dht, DhtConfig, NodeId, Transmit};
use bt_protocol::rng::Rng;
use bt_protocol::time::Instant;

use super::{Ev, HostId, PORT, State, World, host_of_ip, net};
use crate::trace::{Fingerprint, Kind};

/// A datagram (the DHT's or uTP's) on its way.
pub(super) struct Datagram {
    to: SocketAddr,
    from: SocketAddr,
    bytes: Vec<u8>,
}

impl Datagram {
    /// Its bytes.
    pub(super) fn bytes(&self) -> &[u8] {
        &self.bytes
    }
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
pub(super) fn new_node(rng: &mut Rng) -> Dht {
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

impl World<'_> {
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

    /// Bootstrap node `b`: its datagrams sent (its events are nobody's), its next wake-up.
    fn flush_boot(&mut self, b: u32) {
        let from = boot_addr(b);
        let node = &mut self.boots[b as usize];
        let out: Vec<Transmit> = std::iter::from_fn(|| node.dht.poll_transmit()).collect();
        while node.dht.poll_event().is_some() {}
        node.datagrams += out.len() as u64;
        for t in out {
            self.send_datagram(from, t.to, t.bytes);
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

    /// Puts a datagram from `from` on the network: with the bottleneck model, into the
    /// sending peer's uplink FIFO ([`World::queue_datagram`]); else straight onto the links
    /// ([`World::datagram_out`]).
    pub(super) fn send_datagram(&mut self, from: SocketAddr, to: SocketAddr, bytes: Vec<u8>) {
        let (hosts, boots) = (self.hosts.len(), self.boots.len());
        let (Some(src), dst) = (node_of(from, hosts, boots), node_of(to, hosts, boots)) else {
            return;
        };
        let utp = super::bottleneck::datagram_class(&bytes) == crate::transport::Class::Utp;
        self.trace.record(
            if utp { Kind::UtpSent } else { Kind::DhtSent },
            &[
                src.code(),
                dst.map_or(u64::MAX, Node::code),
                bytes.len() as u64,
                fnv(&bytes),
            ],
        );
        if dst.is_none() {
            self.lost_datagram(utp);
            return;
        }
        let d = Datagram { to, from, bytes };
        match src {
            Node::Peer(h) if self.buffer.is_some() => self.queue_datagram(h, d),
            _ => self.datagram_out(d),
        }
    }

    fn lost_datagram(&mut self, utp: bool) {
        if utp {
            self.utp_lost += 1;
        } else {
            self.dht_lost += 1;
        }
    }

    /// A datagram leaves its sender: lost (the link's `loss`, and a DHT datagram's own), dropped
    /// at a partition, or on its way (the latency and a uniform `0..=jitter` more). With the
    /// bottleneck model it then waits for the receiver's downlink.
    pub(super) fn datagram_out(&mut self, d: Datagram) {
        let (hosts, boots) = (self.hosts.len(), self.boots.len());
        let (Some(src), Some(dst)) = (node_of(d.from, hosts, boots), node_of(d.to, hosts, boots))
        else {
            return;
        };
        let utp = super::bottleneck::datagram_class(&d.bytes) == crate::transport::Class::Utp;
        if let (Node::Peer(a), Node::Peer(b)) = (src, dst)
            && self.cut(a, b)
        {
            self.lost_datagram(utp);
            return;
        }
        let own = match self.scenario.dht.as_ref() {
            Some(dht) if !utp => dht.loss,
            _ => 0.0,
        };
        let loss = net::both_losses(self.scenario.link.loss, own);
        let Some(delay) = net::datagram_trip(&self.scenario.link, loss, &mut self.dht_rng) else {
            self.lost_datagram(utp);
            return;
        };
        let at = self.now() + delay;
        if utp && let (Node::Peer(a), Node::Peer(b)) = (src, dst) {
            // Overtaken: it arrives before one sent earlier on the same path.
            let last = self.utp_last_arrival.entry((a, b)).or_insert(at);
            if at < *last {
                self.utp_reordered += 1;
            }
            *last = (*last).max(at);
        }
        let ev = if self.buffer.is_some() {
            let peer = match dst {
                Node::Peer(h) => Some(h),
                Node::Boot(_) => None,
            };
            Ev::DatagramArrive(peer, Box::new(d))
        } else {
            Ev::DhtDatagram(Box::new(d))
        };
        self.queue.push(at, ev);
    }

    /// A datagram reaches its node (dropped at a peer that is not running).
    pub(super) fn on_datagram(&mut self, d: Datagram) {
        let now = self.now();
        let (hosts, boots) = (self.hosts.len(), self.boots.len());
        let Some(dst) = node_of(d.to, hosts, boots) else {
            return;
        };
        let utp = super::bottleneck::datagram_class(&d.bytes) == crate::transport::Class::Utp;
        self.trace.record(
            if utp {
                Kind::UtpDelivered
            } else {
                Kind::DhtDelivered
            },
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
                let Some(client) = host.client.as_mut().filter(|_| host.state == State::Up) else {
                    return;
                };
                client.handle_datagram(now, d.from, &d.bytes);
                self.settle(h);
            }
        }
    }
}

/// FNV-1a of a datagram's bytes, for the trace.
pub(super) fn fnv(bytes: &[u8]) -> u64 {
    let mut f = Fingerprint::default();
    for chunk in bytes.chunks(8) {
        let mut w = [0u8; 8];
        w[..chunk.len()].copy_from_slice(chunk);
        f.word(u64::from_le_bytes(w));
    }
    f.value()
}
