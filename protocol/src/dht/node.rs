//! [`Dht`]: one mainline DHT node (BEP 5, with BEP 32 for IPv6) as a sans-IO state machine.
//!
//! The node answers the four BEP 5 queries from its [`RoutingTable`]s (one per address family),
//! its [`PeerStore`] and its [`TokenSecrets`], and runs iterative [`Lookup`]s for the caller:
//! bootstrap (a `find_node` for our own id), `get_peers` and announce (a `get_peers` lookup, then
//! `announce_peer` to the `k` closest nodes that gave a token), plus its own bucket refreshes.
//! Datagrams in go to [`Dht::handle_datagram`]; datagrams out come from [`Dht::poll_transmit`],
//! results from [`Dht::poll_event`]; time moves through [`Dht::handle_timeout`].
//!
//! Invariants: no datagram panics the machine; a response counts only if it comes from the
//! address we sent the query to with its transaction id (2 bytes from the seeded [`Rng`]), so
//! the same seed and the same inputs give the same datagrams. Bounds (all in [`DhtConfig`]):
//! queries in flight ([`DhtConfig::max_queries_in_flight`], default 256), running lookups
//! ([`DhtConfig::max_lookups`], 16) and waiting ones ([`DhtConfig::max_pending_lookups`], 64),
//! queued datagrams ([`DhtConfig::max_transmits`], 512; more are dropped, as UDP would) and
//! events ([`DhtConfig::max_events`], 1,024; the oldest `Peers` event goes first), the routing
//! tables (see [`super::routing`]), the peer store ([`DhtConfig::store`]), the candidates and
//! peers of a lookup (see [`super::lookup`]), the bootstrap addresses
//! ([`MAX_BOOTSTRAP_ADDRS`]) and the nodes read from one answer (the codec's `MAX_NODES`).

use core::net::SocketAddr;
use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use super::krpc::{
    Body, CompactNode, Message, NodeId, Query, Response, Token, TransactionId, Want,
};
use super::lookup::Lookup;
use super::routing::{Insertion, RoutingTable};
use super::storage::{PeerStore, PeerStoreConfig};
use super::token::TokenSecrets;
use crate::metainfo::InfoHash;
use crate::rng::Rng;
use crate::time::Instant;

/// Most bootstrap addresses remembered (those given to [`Dht::add_node`]); the oldest is
/// forgotten first.
pub const MAX_BOOTSTRAP_ADDRS: usize = 32;

/// How long after a bootstrap that found nobody it is tried again.
pub const BOOTSTRAP_RETRY: Duration = Duration::from_secs(30);

/// How often expired announces are dropped and an emptied table is noticed.
pub const MAINTENANCE_INTERVAL: Duration = Duration::from_secs(60);

/// Largest answer we send, in bytes: a `get_peers` answer carries fewer peers than
/// [`DhtConfig::max_values_per_answer`] if they would not fit (one unfragmented datagram on a
/// 1,500-byte MTU).
pub const MAX_ANSWER_LEN: usize = 1_400;

/// KRPC error code for a protocol error, such as a bad token (BEP 5).
pub const ERROR_PROTOCOL: i64 = 203;

/// KRPC error code for an unknown method (BEP 5).
pub const ERROR_METHOD_UNKNOWN: i64 = 204;

/// Tunables and bounds of a [`Dht`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DhtConfig {
    /// Bucket size, and how many closest nodes a lookup converges on and answers carry (BEP 5:
    /// 8).
    pub k: usize,
    /// Queries in flight per lookup (3, as in Kademlia).
    pub alpha: usize,
    /// A query unanswered this long has failed (5 s).
    pub query_timeout: Duration,
    /// A lookup's query unanswered this long is slow (1 s, libtorrent's short timeout): its
    /// lookup asks another node in its place, and still takes its answer until
    /// [`DhtConfig::query_timeout`].
    pub query_short_timeout: Duration,
    /// Lookups running at once (16); more wait.
    pub max_lookups: usize,
    /// Lookups waiting for a slot (64); beyond, a lookup ends at once with no peers.
    pub max_pending_lookups: usize,
    /// Queries of ours awaiting an answer (256); a lookup waits for a free one.
    pub max_queries_in_flight: usize,
    /// Datagrams queued for [`Dht::poll_transmit`] (512); more are dropped.
    pub max_transmits: usize,
    /// Events queued for [`Dht::poll_event`] (1,024); the oldest `Peers` event is dropped first.
    pub max_events: usize,
    /// Peers in one `get_peers` answer (100, as libtorrent; fewer if they would not fit in
    /// [`MAX_ANSWER_LEN`]).
    pub max_values_per_answer: usize,
    /// BEP 43 read-only: our queries carry `ro=1` and we answer no queries.
    pub read_only: bool,
    /// BEP 32: our queries ask for IPv4 and IPv6 nodes (`want` n4 and n6) and lookups use both.
    pub ipv6: bool,
    /// Bounds of the peer store.
    pub store: PeerStoreConfig,
}

impl Default for DhtConfig {
    /// The values given on each field.
    fn default() -> Self {
        DhtConfig {
            k: 8,
            alpha: 3,
            query_timeout: Duration::from_secs(5),
            query_short_timeout: Duration::from_secs(1),
            max_lookups: 16,
            max_pending_lookups: 64,
            max_queries_in_flight: 256,
            max_transmits: 512,
            max_events: 1_024,
            max_values_per_answer: 100,
            read_only: false,
            ipv6: false,
            store: PeerStoreConfig::default(),
        }
    }
}

/// A lookup started by [`Dht::get_peers`] or [`Dht::announce`], named in its events.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LookupId(pub u64);

/// A datagram to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit {
    /// Where to.
    pub to: SocketAddr,
    /// The KRPC message.
    pub bytes: Vec<u8>,
}

/// What the node tells its user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DhtEvent {
    /// New peers of `info_hash` from one answer to the lookup (never repeated within a lookup).
    Peers {
        /// The lookup.
        lookup: LookupId,
        /// The torrent.
        info_hash: InfoHash,
        /// The peers not reported before by this lookup.
        peers: Vec<SocketAddr>,
    },
    /// The lookup ended.
    LookupDone {
        /// The lookup.
        lookup: LookupId,
        /// The torrent.
        info_hash: InfoHash,
        /// Distinct peers found.
        peers: usize,
        /// Nodes that accepted our `announce_peer` (0 for a plain `get_peers`).
        announced: usize,
    },
    /// A bootstrap lookup converged and the routing tables hold nodes, for the first time since
    /// [`Dht::bootstrap`] (or since the tables last emptied).
    Bootstrapped {
        /// Good and questionable nodes in the tables.
        nodes: usize,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Purpose {
    Bootstrap,
    Refresh,
    GetPeers,
    Announce { port: Option<u16> },
}

impl Purpose {
    fn reported(self) -> bool {
        matches!(self, Purpose::GetPeers | Purpose::Announce { .. })
    }
}

#[derive(Clone, Debug)]
struct Running {
    info_hash: InfoHash,
    purpose: Purpose,
    lookup: Lookup,
    /// `announce_peer` queries out, once the search converged (None while searching).
    announcing: Option<usize>,
    announced: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TxKind {
    Ping,
    Lookup(LookupId),
    Announce(LookupId),
}

#[derive(Clone, Copy, Debug)]
struct Transaction {
    kind: TxKind,
    deadline: Instant,
    /// For a lookup's query: when it counts as slow ([`DhtConfig::query_short_timeout`]);
    /// `None` once it does, or for other queries.
    slow_at: Option<Instant>,
}

/// One DHT node: see the module docs for its role and bounds.
///
/// Methods, in the quinn-proto order:
/// - getters: [`Dht::id`], [`Dht::config`], [`Dht::node_count`], [`Dht::nodes`],
///   [`Dht::routing_table`], [`Dht::peer_store`], [`Dht::lookup_count`],
///   [`Dht::pending_lookup_count`], [`Dht::queries_in_flight`], [`Dht::queued_transmits`],
///   [`Dht::queued_events`], [`Dht::poll_timeout`];
/// - inputs: [`Dht::handle_datagram`] (every datagram that came to the DHT socket),
///   [`Dht::handle_timeout`];
/// - commands: [`Dht::add_node`], [`Dht::bootstrap`], [`Dht::get_peers`], [`Dht::announce`];
/// - outputs: [`Dht::poll_transmit`], [`Dht::poll_event`].
///
/// After every input or command, drain [`Dht::poll_transmit`] and [`Dht::poll_event`], then
/// sleep until [`Dht::poll_timeout`] or the next datagram. Early or repeated
/// [`Dht::handle_timeout`] calls are harmless.
///
/// ```
/// use bt_protocol::dht::{Dht, DhtConfig, DhtEvent, NodeId};
/// use bt_protocol::{rng::Rng, time::Instant};
///
/// let mut dht = Dht::new(DhtConfig::default(), NodeId([7; 20]), Rng::new(1));
/// let mut now = Instant::ZERO;
/// dht.add_node(now, "10.0.0.1:6881".parse().unwrap());
/// dht.bootstrap(now);
/// for _round in 0..10 {
///     while let Some(transmit) = dht.poll_transmit() {
///         let _ = transmit; // socket.send_to(&transmit.bytes, transmit.to)
///     }
///     while let Some(event) = dht.poll_event() {
///         if let DhtEvent::Bootstrapped { nodes } = event {
///             println!("{nodes} nodes");
///         }
///     }
///     // Wait for a datagram (then `handle_datagram`) or the deadline:
///     let Some(deadline) = dht.poll_timeout() else { break };
///     now = now.max(deadline);
///     dht.handle_timeout(now);
/// }
/// assert_eq!(dht.node_count(), 0); // nobody answered
/// ```
#[derive(Clone, Debug)]
pub struct Dht {
    config: DhtConfig,
    id: NodeId,
    rng: Rng,
    table4: RoutingTable,
    table6: RoutingTable,
    tokens: TokenSecrets,
    store: PeerStore,
    transactions: BTreeMap<(u16, SocketAddr), Transaction>,
    lookups: BTreeMap<LookupId, Running>,
    pending: VecDeque<(LookupId, InfoHash, Purpose)>,
    next_lookup: u64,
    transmits: VecDeque<Transmit>,
    events: VecDeque<DhtEvent>,
    bootstrap_addrs: VecDeque<SocketAddr>,
    bootstrap_wanted: bool,
    bootstrap_running: Option<LookupId>,
    bootstrap_reported: bool,
    bootstrap_retry: Option<Instant>,
    maintenance_at: Option<Instant>,
}

impl Dht {
    /// A node with id `id` and no known nodes, drawing transaction ids and secrets from `rng`.
    pub fn new(config: DhtConfig, id: NodeId, mut rng: Rng) -> Dht {
        let tokens = TokenSecrets::new(&mut rng);
        Dht {
            table4: RoutingTable::new(id, config.k),
            table6: RoutingTable::new(id, config.k),
            store: PeerStore::new(config.store),
            config,
            id,
            rng,
            tokens,
            transactions: BTreeMap::new(),
            lookups: BTreeMap::new(),
            pending: VecDeque::new(),
            next_lookup: 0,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            bootstrap_addrs: VecDeque::new(),
            bootstrap_wanted: false,
            bootstrap_running: None,
            bootstrap_reported: false,
            bootstrap_retry: None,
            maintenance_at: None,
        }
    }

    // ---- getters ----

    /// Our node id.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// The configuration.
    pub fn config(&self) -> &DhtConfig {
        &self.config
    }

    /// Good and questionable nodes, both routing tables.
    pub fn node_count(&self) -> usize {
        self.table4.len() + self.table6.len()
    }

    /// Every good or questionable node of both tables, for [`super::save_state`].
    pub fn nodes(&self) -> Vec<(NodeId, SocketAddr)> {
        self.table4
            .nodes()
            .chain(self.table6.nodes())
            .map(|n| (n.id, n.addr))
            .collect()
    }

    /// The routing table of IPv6 nodes if `ipv6`, else of IPv4 ones.
    pub fn routing_table(&self, ipv6: bool) -> &RoutingTable {
        if ipv6 { &self.table6 } else { &self.table4 }
    }

    /// The peers announced to us.
    pub fn peer_store(&self) -> &PeerStore {
        &self.store
    }

    /// Lookups running (at most [`DhtConfig::max_lookups`]).
    pub fn lookup_count(&self) -> usize {
        self.lookups.len()
    }

    /// Lookups waiting for a slot (at most [`DhtConfig::max_pending_lookups`]).
    pub fn pending_lookup_count(&self) -> usize {
        self.pending.len()
    }

    /// Queries awaiting an answer (at most [`DhtConfig::max_queries_in_flight`]).
    pub fn queries_in_flight(&self) -> usize {
        self.transactions.len()
    }

    /// Datagrams waiting in [`Dht::poll_transmit`] (at most [`DhtConfig::max_transmits`]).
    pub fn queued_transmits(&self) -> usize {
        self.transmits.len()
    }

    /// Events waiting in [`Dht::poll_event`] (at most [`DhtConfig::max_events`]).
    pub fn queued_events(&self) -> usize {
        self.events.len()
    }

    /// The next instant [`Dht::handle_timeout`] has work: a query deadline, a token rotation, a
    /// bucket refresh, a bootstrap retry or maintenance.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let deadlines = self
            .transactions
            .values()
            .map(|t| t.slow_at.map_or(t.deadline, |s| s.min(t.deadline)));
        deadlines
            .chain(self.tokens.poll_timeout())
            .chain(self.maintenance_at)
            .chain(self.bootstrap_retry)
            .chain(self.table4.next_refresh())
            .chain(self.table6.next_refresh())
            .min()
    }

    // ---- inputs ----

    /// A datagram from `from`. Queries are answered (unless read-only), responses and errors
    /// matched to our queries by (transaction id, address); anything else is dropped. Never
    /// panics.
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, bytes: &[u8]) {
        self.start(now);
        let Ok(message) = Message::decode(bytes) else {
            return;
        };
        match message.body {
            Body::Query(query) => {
                self.handle_query(now, from, message.transaction, message.read_only, query)
            }
            Body::Response(response) => {
                self.handle_response(now, from, &message.transaction, message.read_only, response)
            }
            Body::Error { .. } => self.handle_error(now, from, &message.transaction),
        }
    }

    /// Fires whatever is due at `now`: failed queries, token rotation, bucket refreshes,
    /// bootstrap retries, expiry of announces. After it, [`Dht::poll_timeout`] is later than
    /// `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.start(now);
        let slow: Vec<((u16, SocketAddr), LookupId)> = self
            .transactions
            .iter_mut()
            .filter(|(_, tx)| tx.slow_at.is_some_and(|at| at <= now) && tx.deadline > now)
            .filter_map(|(key, tx)| {
                tx.slow_at = None;
                match tx.kind {
                    TxKind::Lookup(lookup) => Some((*key, lookup)),
                    _ => None,
                }
            })
            .collect();
        for ((_, addr), lookup) in slow {
            if let Some(run) = self.lookups.get_mut(&lookup) {
                run.lookup.handle_slow(addr);
            }
            self.drive(now, lookup);
        }
        let expired: Vec<((u16, SocketAddr), Transaction)> = self
            .transactions
            .iter()
            .filter(|(_, tx)| tx.deadline <= now)
            .map(|(key, tx)| (*key, *tx))
            .collect();
        for (key, tx) in expired {
            self.transactions.remove(&key);
            let addr = key.1;
            self.table_mut(addr).failed(addr);
            match tx.kind {
                TxKind::Ping => {}
                TxKind::Lookup(lookup) => {
                    if let Some(run) = self.lookups.get_mut(&lookup) {
                        run.lookup.handle_failure(addr);
                    }
                    self.drive(now, lookup);
                }
                TxKind::Announce(lookup) => {
                    if let Some(run) = self.lookups.get_mut(&lookup) {
                        run.announcing = run.announcing.map(|n| n.saturating_sub(1));
                    }
                    self.drive(now, lookup);
                }
            }
        }
        self.tokens.handle_timeout(now, &mut self.rng);
        if self.maintenance_at.is_some_and(|at| at <= now) {
            self.maintenance_at = Some(now + MAINTENANCE_INTERVAL);
            self.store.expire(now);
            if self.bootstrap_wanted
                && self.node_count() == 0
                && self.bootstrap_running.is_none()
                && self.bootstrap_retry.is_none()
            {
                // The tables emptied: bootstrap again.
                self.bootstrap_reported = false;
                self.bootstrap_retry = Some(now);
            }
        }
        if self.bootstrap_retry.is_some_and(|at| at <= now) {
            self.bootstrap_retry = None;
            if self.bootstrap_running.is_none() {
                self.start_bootstrap(now);
            }
        }
        for v6 in [false, true] {
            loop {
                let table = if v6 {
                    &mut self.table6
                } else {
                    &mut self.table4
                };
                let Some(target) = table.refresh_due(now, &mut self.rng) else {
                    break;
                };
                if self.lookups.len() < self.config.max_lookups {
                    let id = self.next_lookup_id();
                    self.launch(now, id, InfoHash(target.0), Purpose::Refresh);
                }
            }
        }
    }

    // ---- commands ----

    /// Pings `addr` (a bootstrap node, or a peer's BEP 5 PORT); it joins the routing table if it
    /// answers. The address is also remembered (at most [`MAX_BOOTSTRAP_ADDRS`]) as a seed for
    /// [`Dht::bootstrap`].
    pub fn add_node(&mut self, now: Instant, addr: SocketAddr) {
        self.start(now);
        if addr.port() == 0 {
            return;
        }
        if !self.bootstrap_addrs.contains(&addr) {
            if self.bootstrap_addrs.len() >= MAX_BOOTSTRAP_ADDRS {
                self.bootstrap_addrs.pop_front();
            }
            self.bootstrap_addrs.push_back(addr);
        }
        self.send_query(now, addr, Query::Ping { id: self.id }, TxKind::Ping);
    }

    /// Starts a `find_node` lookup for our own id from the known nodes and the addresses given
    /// to [`Dht::add_node`]. Once it converges with nodes in the tables, [`DhtEvent::Bootstrapped`]
    /// is reported; if it found nobody it is retried after [`BOOTSTRAP_RETRY`], and it is run
    /// again whenever the tables empty.
    pub fn bootstrap(&mut self, now: Instant) {
        self.start(now);
        self.bootstrap_wanted = true;
        if self.bootstrap_running.is_none() {
            self.start_bootstrap(now);
        }
    }

    /// Starts a `get_peers` lookup for `info_hash`: [`DhtEvent::Peers`] as peers arrive, then
    /// [`DhtEvent::LookupDone`].
    pub fn get_peers(&mut self, now: Instant, info_hash: InfoHash) -> LookupId {
        self.start(now);
        self.start_lookup(now, info_hash, Purpose::GetPeers)
    }

    /// Starts an announce: a `get_peers` lookup for `info_hash` (reporting peers as
    /// [`Dht::get_peers`] does), then `announce_peer` with our TCP `port` to the `k` closest
    /// nodes that gave a token; with `port` None they take the UDP source port instead
    /// (`implied_port`). [`DhtEvent::LookupDone`] says how many accepted.
    pub fn announce(&mut self, now: Instant, info_hash: InfoHash, port: Option<u16>) -> LookupId {
        self.start(now);
        self.start_lookup(now, info_hash, Purpose::Announce { port })
    }

    // ---- outputs ----

    /// The next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<DhtEvent> {
        self.events.pop_front()
    }

    // ---- internals ----

    /// Starts the token and maintenance schedules at the first input.
    fn start(&mut self, now: Instant) {
        if self.maintenance_at.is_none() {
            self.maintenance_at = Some(now + MAINTENANCE_INTERVAL);
            self.tokens.handle_timeout(now, &mut self.rng);
        }
    }

    fn table_mut(&mut self, addr: SocketAddr) -> &mut RoutingTable {
        if addr.is_ipv6() {
            &mut self.table6
        } else {
            &mut self.table4
        }
    }

    fn want(&self) -> Want {
        Want {
            n4: self.config.ipv6,
            n6: self.config.ipv6,
        }
    }

    fn next_lookup_id(&mut self) -> LookupId {
        let id = LookupId(self.next_lookup);
        self.next_lookup = self.next_lookup.wrapping_add(1);
        id
    }

    fn push_transmit(&mut self, to: SocketAddr, bytes: Vec<u8>) {
        if self.transmits.len() < self.config.max_transmits {
            self.transmits.push_back(Transmit { to, bytes });
        }
    }

    fn push_event(&mut self, event: DhtEvent) {
        if self.config.max_events == 0 {
            return;
        }
        if self.events.len() >= self.config.max_events {
            match self
                .events
                .iter()
                .position(|e| matches!(e, DhtEvent::Peers { .. }))
            {
                Some(i) => {
                    self.events.remove(i);
                }
                None => {
                    self.events.pop_front();
                }
            }
        }
        self.events.push_back(event);
    }

    /// Sends `query` to `to` under a fresh transaction id; false if no transaction slot is free.
    fn send_query(&mut self, now: Instant, to: SocketAddr, query: Query, kind: TxKind) -> bool {
        if self.transactions.len() >= self.config.max_queries_in_flight {
            return false;
        }
        let mut free = None;
        for _ in 0..8 {
            let t = (self.rng.next_u32() >> 16) as u16;
            if !self.transactions.contains_key(&(t, to)) {
                free = Some(t);
                break;
            }
        }
        let Some(t) = free else {
            return false;
        };
        self.transactions.insert(
            (t, to),
            Transaction {
                kind,
                deadline: now + self.config.query_timeout,
                slow_at: matches!(kind, TxKind::Lookup(_))
                    .then(|| now + self.config.query_short_timeout),
            },
        );
        let message = Message {
            transaction: TransactionId::new(t.to_be_bytes()).expect("2 bytes fit"),
            version: None,
            ip: None,
            read_only: self.config.read_only,
            body: Body::Query(query),
        };
        self.push_transmit(to, message.encode());
        true
    }

    fn after_insertion(&mut self, now: Instant, from: SocketAddr, insertion: Insertion) {
        if let Insertion::Cached { ping: Some(addr) } = insertion {
            self.table_mut(from).set_pinging(addr);
            self.send_query(now, addr, Query::Ping { id: self.id }, TxKind::Ping);
        }
    }

    fn handle_query(
        &mut self,
        now: Instant,
        from: SocketAddr,
        transaction: TransactionId,
        sender_read_only: bool,
        query: Query,
    ) {
        if self.config.read_only {
            return;
        }
        let id = query.id();
        if !sender_read_only && id != self.id && from.port() != 0 {
            let insertion = self.table_mut(from).heard_query(now, id, from);
            self.after_insertion(now, from, insertion);
        }
        let body = self.answer(now, from, query);
        let message = Message {
            transaction,
            version: None,
            ip: Some(from),
            read_only: false,
            body,
        };
        self.push_transmit(from, message.encode());
    }

    /// The answer to `query` from `from` (BEP 5 server side).
    fn answer(&mut self, now: Instant, from: SocketAddr, query: Query) -> Body {
        let own = self.id;
        let ours = |r: Response| Body::Response(Response { id: own, ..r });
        match query {
            Query::Ping { .. } => ours(Response::default()),
            Query::FindNode { target, want, .. } => {
                let (nodes, nodes6) = self.closest_for(from, &target, want);
                ours(Response {
                    nodes,
                    nodes6,
                    ..Response::default()
                })
            }
            Query::GetPeers {
                info_hash, want, ..
            } => {
                let (nodes, nodes6) = self.closest_for(from, &NodeId::from(info_hash), want);
                // Keep the answer within MAX_ANSWER_LEN: 8 bytes per IPv4 peer ("6:" + 6),
                // 20 per IPv6 one, 26 and 38 per node, at most 200 for the rest (t, y, id, ip, token, keys).
                let used = 200 + nodes.len() * 26 + nodes6.len() * 38;
                let per_value = if from.is_ipv4() { 8 } else { 20 };
                let room = MAX_ANSWER_LEN.saturating_sub(used) / per_value;
                let max = self.config.max_values_per_answer.min(room);
                let values = self.store.peers(now, &info_hash, from, max);
                let token = Token::new(self.tokens.token(from.ip())).expect("8 bytes fit");
                ours(Response {
                    nodes,
                    nodes6,
                    values,
                    token: Some(token),
                    ..Response::default()
                })
            }
            Query::AnnouncePeer {
                info_hash,
                port,
                implied_port,
                token,
                ..
            } => {
                if !self.tokens.is_valid(from.ip(), token.as_bytes()) {
                    return error(ERROR_PROTOCOL, "bad token");
                }
                let port = if implied_port { from.port() } else { port };
                if port == 0 {
                    return error(ERROR_PROTOCOL, "invalid port");
                }
                self.store
                    .announce(now, info_hash, SocketAddr::new(from.ip(), port));
                ours(Response::default())
            }
            Query::Unknown { .. } => error(ERROR_METHOD_UNKNOWN, "Method Unknown"),
        }
    }

    /// The `k` closest nodes (the querier left out) of the families `want` asks for (BEP 32), by
    /// default the family of the querier's address.
    fn closest_for(
        &self,
        from: SocketAddr,
        target: &NodeId,
        want: Want,
    ) -> (Vec<CompactNode>, Vec<CompactNode>) {
        let (n4, n6) = if want.n4 || want.n6 {
            (want.n4, want.n6)
        } else {
            (from.is_ipv4(), from.is_ipv6())
        };
        let k = self.config.k;
        let pick = |yes: bool, table: &RoutingTable| {
            if yes {
                // The querier itself is no news to it.
                let mut nodes = table.closest(target, k + 1);
                nodes.retain(|n| n.addr != from);
                nodes.truncate(k);
                nodes
            } else {
                Vec::new()
            }
        };
        (pick(n4, &self.table4), pick(n6, &self.table6))
    }

    fn handle_response(
        &mut self,
        now: Instant,
        from: SocketAddr,
        transaction: &TransactionId,
        sender_read_only: bool,
        response: Response,
    ) {
        let Some(key) = tx_key(transaction, from) else {
            return;
        };
        let Some(tx) = self.transactions.remove(&key) else {
            return;
        };
        if !sender_read_only && response.id != self.id {
            let insertion = self.table_mut(from).heard_response(now, response.id, from);
            self.after_insertion(now, from, insertion);
        }
        match tx.kind {
            TxKind::Ping => {}
            TxKind::Lookup(lookup) => {
                let ipv6 = self.config.ipv6;
                if let Some(run) = self.lookups.get_mut(&lookup) {
                    let mut nodes = response.nodes;
                    if ipv6 {
                        nodes.extend(response.nodes6);
                    }
                    run.lookup
                        .handle_response(from, response.id, &nodes, response.token);
                    if run.purpose.reported() {
                        let peers = run.lookup.handle_values(&response.values);
                        if !peers.is_empty() {
                            let event = DhtEvent::Peers {
                                lookup,
                                info_hash: run.info_hash,
                                peers,
                            };
                            self.push_event(event);
                        }
                    }
                }
                self.drive(now, lookup);
            }
            TxKind::Announce(lookup) => {
                if let Some(run) = self.lookups.get_mut(&lookup) {
                    run.announcing = run.announcing.map(|n| n.saturating_sub(1));
                    run.announced += 1;
                }
                self.drive(now, lookup);
            }
        }
    }

    fn handle_error(&mut self, now: Instant, from: SocketAddr, transaction: &TransactionId) {
        let Some(key) = tx_key(transaction, from) else {
            return;
        };
        let Some(tx) = self.transactions.remove(&key) else {
            return;
        };
        match tx.kind {
            TxKind::Ping => {}
            TxKind::Lookup(lookup) => {
                if let Some(run) = self.lookups.get_mut(&lookup) {
                    run.lookup.handle_failure(from);
                }
                self.drive(now, lookup);
            }
            TxKind::Announce(lookup) => {
                if let Some(run) = self.lookups.get_mut(&lookup) {
                    run.announcing = run.announcing.map(|n| n.saturating_sub(1));
                }
                self.drive(now, lookup);
            }
        }
    }

    fn start_bootstrap(&mut self, now: Instant) {
        let id = self.next_lookup_id();
        self.bootstrap_running = Some(id);
        self.enqueue(now, id, InfoHash(self.id.0), Purpose::Bootstrap);
    }

    fn start_lookup(&mut self, now: Instant, info_hash: InfoHash, purpose: Purpose) -> LookupId {
        let id = self.next_lookup_id();
        self.enqueue(now, id, info_hash, purpose);
        id
    }

    /// Runs the lookup now if a slot is free, else queues it (or, the queue full, ends it).
    fn enqueue(&mut self, now: Instant, id: LookupId, info_hash: InfoHash, purpose: Purpose) {
        if self.lookups.len() < self.config.max_lookups {
            self.launch(now, id, info_hash, purpose);
        } else if self.pending.len() < self.config.max_pending_lookups {
            self.pending.push_back((id, info_hash, purpose));
        } else {
            self.finished(now, id, info_hash, purpose, 0, 0);
        }
    }

    fn launch(&mut self, now: Instant, id: LookupId, info_hash: InfoHash, purpose: Purpose) {
        let target = NodeId::from(info_hash);
        let k = self.config.k;
        let mut seeds: Vec<(Option<NodeId>, SocketAddr)> = self
            .table4
            .closest(&target, k)
            .into_iter()
            .chain(if self.config.ipv6 {
                self.table6.closest(&target, k)
            } else {
                Vec::new()
            })
            .map(|n| (Some(n.id), n.addr))
            .collect();
        if seeds.len() < k {
            seeds.extend(self.bootstrap_addrs.iter().map(|a| (None, *a)));
        }
        let mut lookup = Lookup::new(self.id, target, k, self.config.alpha, seeds);
        if purpose.reported() {
            // Peers announced to us count too: we may be one of the closest nodes.
            let local = self
                .store
                .peers(now, &info_hash, SocketAddr::from(([0, 0, 0, 0], 0)), 100);
            let local6 = self
                .store
                .peers(now, &info_hash, SocketAddr::from(([0u16; 8], 0)), 100);
            let peers = lookup.handle_values(&[local, local6].concat());
            if !peers.is_empty() {
                self.push_event(DhtEvent::Peers {
                    lookup: id,
                    info_hash,
                    peers,
                });
            }
        }
        self.lookups.insert(
            id,
            Running {
                info_hash,
                purpose,
                lookup,
                announcing: None,
                announced: 0,
            },
        );
        self.drive(now, id);
    }

    /// Sends what the lookup may send, and ends it once it is done.
    fn drive(&mut self, now: Instant, id: LookupId) {
        let free = self
            .config
            .max_queries_in_flight
            .saturating_sub(self.transactions.len());
        let Some(run) = self.lookups.get_mut(&id) else {
            return;
        };
        if run.announcing.is_none() {
            let mut to = Vec::new();
            while to.len() < free {
                let Some(addr) = run.lookup.next_query() else {
                    break;
                };
                to.push(addr);
            }
            let (purpose, info_hash) = (run.purpose, run.info_hash);
            let want = self.want();
            for addr in to {
                let query = match purpose {
                    Purpose::Bootstrap | Purpose::Refresh => Query::FindNode {
                        id: self.id,
                        target: NodeId::from(info_hash),
                        want,
                    },
                    Purpose::GetPeers | Purpose::Announce { .. } => Query::GetPeers {
                        id: self.id,
                        info_hash,
                        want,
                    },
                };
                if !self.send_query(now, addr, query, TxKind::Lookup(id))
                    && let Some(run) = self.lookups.get_mut(&id)
                {
                    run.lookup.handle_failure(addr);
                }
            }
            let Some(run) = self.lookups.get_mut(&id) else {
                return;
            };
            if !run.lookup.is_done() {
                return;
            }
            let Purpose::Announce { port } = run.purpose else {
                return self.finish(now, id);
            };
            let targets = run.lookup.announce_targets(self.config.k);
            run.announcing = Some(0);
            for (_, addr, token) in targets {
                let query = Query::AnnouncePeer {
                    id: self.id,
                    info_hash,
                    port: port.unwrap_or(0),
                    implied_port: port.is_none(),
                    token,
                };
                if self.send_query(now, addr, query, TxKind::Announce(id))
                    && let Some(run) = self.lookups.get_mut(&id)
                {
                    run.announcing = run.announcing.map(|n| n + 1);
                }
            }
        }
        if self
            .lookups
            .get(&id)
            .is_some_and(|run| run.announcing == Some(0))
        {
            self.finish(now, id);
        }
    }

    fn finish(&mut self, now: Instant, id: LookupId) {
        let Some(run) = self.lookups.remove(&id) else {
            return;
        };
        self.finished(
            now,
            id,
            run.info_hash,
            run.purpose,
            run.lookup.peer_count(),
            run.announced,
        );
        while self.lookups.len() < self.config.max_lookups {
            let Some((id, info_hash, purpose)) = self.pending.pop_front() else {
                break;
            };
            self.launch(now, id, info_hash, purpose);
        }
    }

    fn finished(
        &mut self,
        now: Instant,
        id: LookupId,
        info_hash: InfoHash,
        purpose: Purpose,
        peers: usize,
        announced: usize,
    ) {
        match purpose {
            Purpose::Bootstrap => {
                self.bootstrap_running = None;
                let nodes = self.node_count();
                if nodes == 0 {
                    self.bootstrap_retry = Some(now + BOOTSTRAP_RETRY);
                } else if !self.bootstrap_reported {
                    self.bootstrap_reported = true;
                    self.push_event(DhtEvent::Bootstrapped { nodes });
                }
            }
            Purpose::Refresh => {}
            Purpose::GetPeers | Purpose::Announce { .. } => self.push_event(DhtEvent::LookupDone {
                lookup: id,
                info_hash,
                peers,
                announced,
            }),
        }
    }
}

fn error(code: i64, message: &str) -> Body {
    Body::Error {
        code,
        message: message.to_owned(),
    }
}

/// Our transaction ids are 2 bytes; any other length cannot be an answer to us.
fn tx_key(transaction: &TransactionId, from: SocketAddr) -> Option<(u16, SocketAddr)> {
    let t: [u8; 2] = transaction.as_bytes().try_into().ok()?;
    Some((u16::from_be_bytes(t), from))
}
