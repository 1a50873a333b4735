//! [`TrackerServer`]: a BitTorrent tracker as a sans-IO machine. HTTP announces (BEP 3, with BEP 23
//! compact and BEP 7 IPv6 peer lists) and scrapes (BEP 48), and the UDP tracker protocol (BEP 15),
//! over one peer store.
//!
//! The driver hands each whole HTTP request ([`http_head_end`] tells when the head has arrived)
//! to [`TrackerServer::handle_http_request`] and writes back the bytes it returns, then closes
//! the connection; it hands each datagram to [`TrackerServer::handle_datagram`] and sends back
//! what it returns, if anything, to the sender. Between inputs it sleeps until
//! [`TrackerServer::poll_timeout`] and calls [`TrackerServer::handle_timeout`], which forgets
//! peers that went silent.
//!
//! Invariants: no input panics the machine or grows it past the bounds of its
//! [`TrackerConfig`] (torrents, peers per torrent, peers in all, request size, scrape size,
//! peers per answer); its answers depend only on its seed and the sequence of inputs (times
//! included), never on a clock, global randomness or hash-map order.

use core::net::{IpAddr, SocketAddr};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use percent_encoding::percent_decode;
use sha1::{Digest, Sha1};

use super::announce::{AnnounceRequest, AnnounceResponse, Event, MAX_INTERVAL, MAX_TRACKER_ID_LEN};
use super::udp::PROTOCOL_ID;
use crate::metainfo::InfoHash;
use crate::rng::Rng;
use crate::time::Instant;
use crate::wire::PeerId;

/// How long one UDP connection-id window lasts (BEP 15 lets a client use an id for one minute; a
/// server accepts it for two). An id is accepted in its own window and the next one, so for at
/// least two and at most four minutes after it was given.
pub const CONNECTION_ID_WINDOW: Duration = Duration::from_secs(120);

/// The largest UDP scrape BEP 15 allows in one datagram: 74 info hashes.
pub const MAX_UDP_SCRAPE_HASHES: usize = 74;

const ACTION_CONNECT: u32 = 0;
const ACTION_ANNOUNCE: u32 = 1;
const ACTION_SCRAPE: u32 = 2;
const ACTION_ERROR: u32 = 3;

/// The length of a BEP 15 announce request without extensions.
const UDP_ANNOUNCE_LEN: usize = 98;

/// Label of the child generator that picks peers, so its draws do not shift the secret's.
const RNG_LABEL: u64 = 0x7472_6163_6b65_7264;

/// What a [`TrackerServer`] serves, and the bounds that hold whatever clients send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrackerConfig {
    /// How often clients are asked to announce (`interval`). Clamped to 1 s ..= one day.
    /// A peer silent for twice this long is forgotten.
    pub interval: Duration,
    /// The `min interval` given to HTTP clients; never more than `interval`.
    pub min_interval: Duration,
    /// Peers given when an announce does not say how many it wants.
    pub default_numwant: u32,
    /// Most peers given in one answer, whatever an announce asks for.
    pub max_numwant: u32,
    /// Most torrents tracked at once; an announce for one more is refused.
    pub max_torrents: usize,
    /// Most peers stored per torrent; a new peer beyond it is answered but not stored.
    pub max_peers_per_torrent: usize,
    /// Most peers stored over all torrents; a new peer beyond it is answered but not stored.
    pub max_peers: usize,
    /// Most info hashes answered in one scrape; the rest are ignored (UDP: at most
    /// [`MAX_UDP_SCRAPE_HASHES`] whatever this says).
    pub max_scrape_hashes: usize,
    /// Longest HTTP request accepted, in bytes (request line and headers).
    pub max_request_len: usize,
    /// When set, only these torrents are served; announces for others are refused.
    pub whitelist: Option<BTreeSet<InfoHash>>,
}

impl Default for TrackerConfig {
    /// 30 min interval, 1 min min interval, 50 peers by default and 200 at most per answer,
    /// 10,000 torrents, 10,000 peers per torrent, 200,000 peers in all, 74 hashes per scrape,
    /// 8 KiB requests, no whitelist.
    fn default() -> Self {
        TrackerConfig {
            interval: Duration::from_secs(1800),
            min_interval: Duration::from_secs(60),
            default_numwant: 50,
            max_numwant: 200,
            max_torrents: 10_000,
            max_peers_per_torrent: 10_000,
            max_peers: 200_000,
            max_scrape_hashes: MAX_UDP_SCRAPE_HASHES,
            max_request_len: 8 * 1024,
            whitelist: None,
        }
    }
}

/// Why an announce was refused: the text is the `failure reason` (HTTP) or the error message
/// (UDP action 3) the client sees.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AnnounceRefusal {
    /// A required parameter is missing or malformed (BEP 3: `info_hash` and `peer_id` are 20
    /// bytes, `port` a number from 1 to 65535).
    #[error("missing or malformed `{0}`")]
    BadParam(&'static str),
    /// The torrent is not on this tracker's whitelist.
    #[error("torrent not registered with this tracker")]
    NotRegistered,
    /// The tracker already tracks [`TrackerConfig::max_torrents`] torrents.
    #[error("tracker is full: it tracks at most {0} torrents")]
    TooManyTorrents(usize),
}

/// A successful announce, before encoding: what [`TrackerServer::announce`] returns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AnnounceAnswer {
    /// When to announce again.
    pub interval: Duration,
    /// Not to announce more often than this.
    pub min_interval: Duration,
    /// Seeders of the torrent, the announcing peer included.
    pub complete: u32,
    /// Leechers of the torrent, the announcing peer included.
    pub incomplete: u32,
    /// Peers for the announcing peer, never itself; at most the numwant it was granted.
    pub peers: Vec<(SocketAddr, PeerId)>,
}

impl AnnounceAnswer {
    /// The answer as a client reads it (what [`super::parse_announce_response`] would return
    /// for its HTTP encoding), for simulators that skip the bytes.
    pub fn to_response(&self) -> AnnounceResponse {
        AnnounceResponse {
            interval: self.interval,
            min_interval: Some(self.min_interval).filter(|d| d.as_secs() > 0),
            tracker_id: None,
            complete: Some(self.complete),
            incomplete: Some(self.incomplete),
            peers: self.peers.iter().map(|&(addr, _)| addr).collect(),
            warning: None,
        }
    }
}

/// What a tracker knows of one torrent: a scrape entry (BEP 48).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SwarmStats {
    /// Peers with the whole torrent.
    pub complete: u32,
    /// Peers still downloading.
    pub incomplete: u32,
    /// `completed` events received since the torrent was first announced (the count is lost
    /// when its last peer leaves).
    pub downloaded: u32,
}

/// Counters of what a [`TrackerServer`] did, for logs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ServerStats {
    /// Announces answered with peers (HTTP and UDP).
    pub announces: u64,
    /// Scrapes answered.
    pub scrapes: u64,
    /// UDP connects answered.
    pub connects: u64,
    /// Announces refused with a failure reason.
    pub refused: u64,
    /// HTTP requests that were not an announce or scrape, and UDP datagrams answered with an
    /// error or dropped.
    pub bad_requests: u64,
    /// Peers forgotten because they went silent.
    pub expired: u64,
}

/// One stored peer.
#[derive(Clone, Copy, Debug)]
struct Peer {
    addr: SocketAddr,
    peer_id: PeerId,
    last_seen: Instant,
}

/// The peers of one torrent, in four pools (IPv4 leechers, IPv4 seeders, IPv6 leechers, IPv6
/// seeders) so an answer can be drawn from the right ones uniformly; `index` finds a peer by its
/// (ip, port).
#[derive(Clone, Debug, Default)]
struct Swarm {
    pools: [Vec<Peer>; 4],
    index: BTreeMap<SocketAddr, (usize, usize)>,
    downloaded: u32,
}

fn pool_of(addr: SocketAddr, seeder: bool) -> usize {
    usize::from(addr.is_ipv6()) * 2 + usize::from(seeder)
}

impl Swarm {
    fn len(&self) -> usize {
        self.index.len()
    }

    fn stats(&self) -> SwarmStats {
        let count = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        SwarmStats {
            complete: count(self.pools[1].len() + self.pools[3].len()),
            incomplete: count(self.pools[0].len() + self.pools[2].len()),
            downloaded: self.downloaded,
        }
    }

    fn insert(&mut self, pool: usize, peer: Peer) {
        self.index.insert(peer.addr, (pool, self.pools[pool].len()));
        self.pools[pool].push(peer);
    }

    fn remove(&mut self, addr: SocketAddr) -> Option<(usize, Peer)> {
        let (pool, slot) = self.index.remove(&addr)?;
        let peer = self.pools[pool].swap_remove(slot);
        if let Some(moved) = self.pools[pool].get(slot) {
            self.index.insert(moved.addr, (pool, slot));
        }
        Some((pool, peer))
    }

    /// Up to `k` peers drawn uniformly without replacement from `pools` (Floyd's sampling over
    /// their concatenation), in random order.
    fn sample(
        &self,
        rng: &mut Rng,
        pools: &[usize],
        k: usize,
        out: &mut Vec<(SocketAddr, PeerId)>,
    ) {
        let n: usize = pools.iter().map(|&p| self.pools[p].len()).sum();
        let k = k.min(n);
        if k == 0 {
            return;
        }
        let start = out.len();
        let push_index = |mut i: usize, out: &mut Vec<(SocketAddr, PeerId)>| {
            for &p in pools {
                if let Some(peer) = self.pools[p].get(i) {
                    out.push((peer.addr, peer.peer_id));
                    return;
                }
                i -= self.pools[p].len();
            }
        };
        if k == n {
            for i in 0..n {
                push_index(i, out);
            }
        } else {
            let mut chosen = BTreeSet::new();
            for j in n - k..n {
                let t = rng.below(j as u64 + 1) as usize;
                if !chosen.insert(t) {
                    chosen.insert(j);
                }
            }
            for i in chosen {
                push_index(i, out);
            }
        }
        rng.shuffle(&mut out[start..]);
    }
}

/// Which peers an answer may hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Families {
    /// Both address families, the requester's own first (HTTP: `peers` and `peers6`).
    Both,
    /// Only the requester's family (UDP, whose answer has one entry size).
    Own,
}

/// A BitTorrent tracker: one peer store served over HTTP and UDP.
///
/// Methods, in the quinn-proto order:
/// - getters: [`TrackerServer::config`], [`TrackerServer::torrent_count`],
///   [`TrackerServer::peer_count`], [`TrackerServer::swarm`], [`TrackerServer::stats`],
///   [`TrackerServer::poll_timeout`];
/// - input: [`TrackerServer::handle_http_request`], [`TrackerServer::handle_datagram`],
///   [`TrackerServer::handle_timeout`], and the typed [`TrackerServer::announce`] for drivers
///   that skip the bytes (a simulator).
///
/// Unlike the client machines it queues no output: each request's answer is the return value
/// of the call that handled it. The one timer is the next peer expiry.
///
/// Peers are kept per torrent, keyed by (ip, port): the ip is the one the request came from
/// (the `ip` parameter is ignored, so nobody can register someone else), the port the announced
/// one. A peer is a seeder when it announces `left=0` or `completed`. `stopped` removes it; a
/// peer not heard from for twice the interval is forgotten (by [`TrackerServer::handle_timeout`],
/// and at the start of every input, so answers never hold expired peers whether or not the
/// driver keeps the timer). A torrent whose last peer leaves is forgotten.
///
/// An answer holds up to numwant peers (default [`TrackerConfig::default_numwant`], at most
/// [`TrackerConfig::max_numwant`]) drawn uniformly at random, never the requester itself; a
/// seeder is given only leechers. HTTP answers prefer the requester's address family and fill
/// up with the other (`peers6`, BEP 7); UDP answers hold only the requester's family (BEP 15).
///
/// UDP connection ids are not stored: each is a keyed hash of a secret drawn from the seed,
/// the client's IP address and the [`CONNECTION_ID_WINDOW`] it was given in; the current and
/// the previous window are accepted. The source port is left out, as opentracker does: clients
/// (bt among them) open a new socket, so a new port, for each announce while reusing the id for
/// a minute, and NATs rebind ports. An announce or scrape with another id gets an error
/// (action 3) and the client connects again.
///
/// Bounds: see [`TrackerConfig`]. An HTTP answer holds at most `max_numwant` peers, a UDP one
/// at most `max_numwant` entries of 18 bytes; a scrape answer at most `max_scrape_hashes` entries.
///
/// A driver, here a whole HTTP announce and its answer in memory:
///
/// ```
/// use bt_protocol::time::Instant;
/// use bt_protocol::tracker::{TrackerConfig, TrackerServer, parse_announce_response};
///
/// let mut tracker = TrackerServer::new(TrackerConfig::default(), 7);
/// let now = Instant::ZERO;
/// let request = b"GET /announce?info_hash=%01%01%01%01%01%01%01%01%01%01%01%01%01%01%01%01%01%01%01%01\
///     &peer_id=-BT0100-000000000000&port=6881&uploaded=0&downloaded=0&left=0&event=started \
///     HTTP/1.1\r\nHost: t\r\n\r\n";
/// let reply = tracker.handle_http_request(now, "10.0.0.1".parse().unwrap(), request);
/// assert!(reply.starts_with(b"HTTP/1.1 200 OK\r\n"));
/// let body = &reply[reply.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4..];
/// let answer = parse_announce_response(body).unwrap();
/// assert_eq!((answer.complete, answer.incomplete, answer.peers.len()), (Some(1), Some(0), 0));
/// assert_eq!(tracker.peer_count(), 1);
/// // The peer expires after two intervals of silence:
/// let expiry = tracker.poll_timeout().unwrap();
/// tracker.handle_timeout(expiry);
/// assert_eq!(tracker.peer_count(), 0);
/// ```
#[derive(Clone, Debug)]
pub struct TrackerServer {
    config: TrackerConfig,
    secret: [u8; 16],
    rng: Rng,
    torrents: BTreeMap<InfoHash, Swarm>,
    /// Every stored peer by when it was last heard from: the expiry queue.
    expiries: BTreeSet<(Instant, InfoHash, SocketAddr)>,
    peers: usize,
    stats: ServerStats,
}

impl TrackerServer {
    /// A tracker with no peers. `seed` gives the UDP connection-id secret and the peer draws.
    pub fn new(mut config: TrackerConfig, seed: u64) -> Self {
        config.interval = config.interval.clamp(Duration::from_secs(1), MAX_INTERVAL);
        config.min_interval = config.min_interval.min(config.interval);
        let mut rng = Rng::new(seed);
        let mut secret = [0u8; 16];
        rng.fill(&mut secret);
        TrackerServer {
            config,
            secret,
            rng: rng.fork(RNG_LABEL),
            torrents: BTreeMap::new(),
            expiries: BTreeSet::new(),
            peers: 0,
            stats: ServerStats::default(),
        }
    }

    // ---- getters ----

    /// The configuration, with `interval` and `min_interval` as clamped by [`TrackerServer::new`].
    pub fn config(&self) -> &TrackerConfig {
        &self.config
    }

    /// Torrents with at least one stored peer.
    pub fn torrent_count(&self) -> usize {
        self.torrents.len()
    }

    /// Stored peers over all torrents (as of the last input: peers whose time ran out since are
    /// counted until the next input or [`TrackerServer::handle_timeout`]).
    pub fn peer_count(&self) -> usize {
        self.peers
    }

    /// What the tracker knows of `info_hash`, if it has peers of it.
    pub fn swarm(&self, info_hash: &InfoHash) -> Option<SwarmStats> {
        self.torrents.get(info_hash).map(Swarm::stats)
    }

    /// Counters of what was served.
    pub fn stats(&self) -> ServerStats {
        self.stats
    }

    /// When the next stored peer expires, if any peer is stored.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.expiries
            .first()
            .map(|&(seen, _, _)| seen + self.peer_ttl())
    }

    // ---- input ----

    /// The clock reached [`TrackerServer::poll_timeout`]: forgets the peers silent for twice the
    /// interval. Early or repeated calls are harmless.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.expire(now);
    }

    /// One HTTP request from `peer_ip` (the address of the TCP connection): the request line and
    /// headers, as read up to [`http_head_end`] (or all that came before the connection ended).
    /// Returns the whole HTTP/1.1 response to write before closing the connection.
    ///
    /// `GET .../announce?...` gets a bencoded answer, or HTTP 200 with a `failure reason` when
    /// the announce is refused (as clients expect); `GET .../scrape?info_hash=...` gets the BEP 48
    /// `files` dictionary. A request longer than [`TrackerConfig::max_request_len`] gets 431,
    /// another method 405, another path 404, anything unreadable 400, each with a bencoded
    /// `failure reason` body.
    pub fn handle_http_request(
        &mut self,
        now: Instant,
        peer_ip: IpAddr,
        request: &[u8],
    ) -> Vec<u8> {
        self.expire(now);
        match self.http_request(now, peer_ip, request) {
            Ok(body) => http_response(200, &body),
            Err((status, text)) => {
                self.stats.bad_requests += 1;
                http_response(status, &failure_body(text))
            }
        }
    }

    /// One datagram from `from` to the tracker's UDP socket (BEP 15). Returns the datagram to send
    /// back to `from`, if any: nothing for a datagram shorter than 16 bytes or a connect without
    /// the protocol magic; an error (action 3) for a wrong or expired connection id, an unknown
    /// action or a truncated request.
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        from: SocketAddr,
        datagram: &[u8],
    ) -> Option<Vec<u8>> {
        self.expire(now);
        let from = SocketAddr::new(from.ip().to_canonical(), from.port());
        let (Some(connection_id), Some(action), Some(transaction)) = (
            be_u64(datagram, 0),
            be_u32(datagram, 8),
            be_u32(datagram, 12),
        ) else {
            self.stats.bad_requests += 1;
            return None;
        };
        if action == ACTION_CONNECT {
            if connection_id != PROTOCOL_ID {
                self.stats.bad_requests += 1;
                return None;
            }
            self.stats.connects += 1;
            let mut out = Vec::with_capacity(16);
            out.extend_from_slice(&ACTION_CONNECT.to_be_bytes());
            out.extend_from_slice(&transaction.to_be_bytes());
            out.extend_from_slice(&self.connection_id(from, window(now)).to_be_bytes());
            return Some(out);
        }
        let current = window(now);
        let valid = connection_id == self.connection_id(from, current)
            || (current > 0 && connection_id == self.connection_id(from, current - 1));
        if !valid {
            self.stats.bad_requests += 1;
            return Some(udp_error(transaction, "unknown or expired connection id"));
        }
        match action {
            ACTION_ANNOUNCE => Some(self.udp_announce(now, from, transaction, datagram)),
            ACTION_SCRAPE => {
                let hashes: Vec<InfoHash> = datagram[16..]
                    .chunks_exact(20)
                    .take(self.config.max_scrape_hashes.min(MAX_UDP_SCRAPE_HASHES))
                    .map(|h| InfoHash(h.try_into().expect("chunks of 20 bytes")))
                    .collect();
                if hashes.is_empty() {
                    self.stats.bad_requests += 1;
                    return Some(udp_error(transaction, "scrape without an info hash"));
                }
                self.stats.scrapes += 1;
                let mut out = Vec::with_capacity(8 + 12 * hashes.len());
                out.extend_from_slice(&ACTION_SCRAPE.to_be_bytes());
                out.extend_from_slice(&transaction.to_be_bytes());
                for hash in hashes {
                    let s = self.swarm(&hash).unwrap_or_default();
                    out.extend_from_slice(&s.complete.to_be_bytes());
                    out.extend_from_slice(&s.downloaded.to_be_bytes());
                    out.extend_from_slice(&s.incomplete.to_be_bytes());
                }
                Some(out)
            }
            _ => {
                self.stats.bad_requests += 1;
                Some(udp_error(transaction, "unknown action"))
            }
        }
    }

    /// Announces `request` for the peer at `source_ip` and answers as the HTTP side does (peers
    /// of both families, the requester's first): the typed core of both transports. `stopped`
    /// removes the peer and answers with no peers.
    pub fn announce(
        &mut self,
        now: Instant,
        source_ip: IpAddr,
        request: &AnnounceRequest,
    ) -> Result<AnnounceAnswer, AnnounceRefusal> {
        self.expire(now);
        self.announce_inner(now, source_ip, request, Families::Both)
    }

    // ---- internals ----

    /// How long a silent peer is kept: twice the interval.
    fn peer_ttl(&self) -> Duration {
        self.config.interval.saturating_mul(2)
    }

    fn expire(&mut self, now: Instant) {
        let ttl = self.peer_ttl();
        while let Some(&(seen, hash, addr)) = self.expiries.first() {
            if seen + ttl > now {
                break;
            }
            self.expiries.pop_first();
            self.stats.expired += 1;
            self.forget(hash, addr);
        }
    }

    /// Removes a stored peer from its swarm (not from the expiry queue), and the swarm if it is
    /// left empty.
    fn forget(&mut self, hash: InfoHash, addr: SocketAddr) -> Option<(usize, Peer)> {
        let swarm = self.torrents.get_mut(&hash)?;
        let removed = swarm.remove(addr);
        if removed.is_some() {
            self.peers -= 1;
        }
        if swarm.len() == 0 {
            self.torrents.remove(&hash);
        }
        removed
    }

    fn announce_inner(
        &mut self,
        now: Instant,
        source_ip: IpAddr,
        request: &AnnounceRequest,
        families: Families,
    ) -> Result<AnnounceAnswer, AnnounceRefusal> {
        let refuse = |this: &mut Self, why| {
            this.stats.refused += 1;
            Err(why)
        };
        let hash = request.info_hash;
        if self
            .config
            .whitelist
            .as_ref()
            .is_some_and(|list| !list.contains(&hash))
        {
            return refuse(self, AnnounceRefusal::NotRegistered);
        }
        if request.port == 0 {
            return refuse(self, AnnounceRefusal::BadParam("port"));
        }
        if !self.torrents.contains_key(&hash)
            && request.event != Event::Stopped
            && self.torrents.len() >= self.config.max_torrents
        {
            return refuse(
                self,
                AnnounceRefusal::TooManyTorrents(self.config.max_torrents),
            );
        }
        self.stats.announces += 1;
        let addr = SocketAddr::new(source_ip.to_canonical(), request.port);
        // Take the requester out first: it is then never drawn for its own answer.
        let old = self.forget(hash, addr);
        if let Some((_, peer)) = old {
            self.expiries.remove(&(peer.last_seen, hash, addr));
        }
        let was_seeder = old.is_some_and(|(pool, _)| pool % 2 == 1);
        let seeder = request.left == 0 || request.event == Event::Completed;
        let numwant = request
            .numwant
            .unwrap_or(self.config.default_numwant)
            .min(self.config.max_numwant) as usize;
        let mut peers = Vec::new();
        let mut stats = SwarmStats::default();
        if request.event != Event::Stopped {
            let store = self.peers < self.config.max_peers
                && self
                    .torrents
                    .get(&hash)
                    .is_none_or(|s| s.len() < self.config.max_peers_per_torrent);
            let swarm = self.torrents.entry(hash).or_default();
            if request.event == Event::Completed && !was_seeder {
                swarm.downloaded = swarm.downloaded.saturating_add(1);
            }
            let own = usize::from(addr.is_ipv6());
            let other = 1 - own;
            let from = |family: usize| -> Vec<usize> {
                if seeder {
                    vec![family * 2]
                } else {
                    vec![family * 2, family * 2 + 1]
                }
            };
            swarm.sample(&mut self.rng, &from(own), numwant, &mut peers);
            if families == Families::Both {
                let left = numwant - peers.len();
                swarm.sample(&mut self.rng, &from(other), left, &mut peers);
            }
            if store {
                swarm.insert(
                    pool_of(addr, seeder),
                    Peer {
                        addr,
                        peer_id: request.peer_id,
                        last_seen: now,
                    },
                );
                self.peers += 1;
                self.expiries.insert((now, hash, addr));
            }
            stats = swarm.stats();
            if swarm.len() == 0 {
                // Not stored (the store is full) and nobody else: keep no empty swarm.
                self.torrents.remove(&hash);
            }
        } else if let Some(swarm) = self.torrents.get(&hash) {
            stats = swarm.stats();
        }
        Ok(AnnounceAnswer {
            interval: self.config.interval,
            min_interval: self.config.min_interval,
            complete: stats.complete,
            incomplete: stats.incomplete,
            peers,
        })
    }

    /// The body of a 200 answer to an HTTP request, or the status and failure text of another.
    fn http_request(
        &mut self,
        now: Instant,
        peer_ip: IpAddr,
        request: &[u8],
    ) -> Result<Vec<u8>, (u16, &'static str)> {
        if request.len() > self.config.max_request_len {
            return Err((431, "request too large"));
        }
        let line_end = request
            .iter()
            .position(|&b| b == b'\n')
            .ok_or((400, "not an HTTP request"))?;
        let line = request[..line_end]
            .strip_suffix(b"\r")
            .unwrap_or(&request[..line_end]);
        let mut parts = line.split(|&b| b == b' ');
        let (Some(method), Some(target), Some(version), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err((400, "not an HTTP request"));
        };
        if !version.starts_with(b"HTTP/1.") {
            return Err((400, "not an HTTP/1 request"));
        }
        if method != b"GET" {
            return Err((405, "only GET is served"));
        }
        let (path, query) = match target.iter().position(|&b| b == b'?') {
            Some(q) => (&target[..q], &target[q + 1..]),
            None => (target, &[][..]),
        };
        let last = path.rsplit(|&b| b == b'/').next().unwrap_or_default();
        match last {
            b"announce" | b"announce.php" => Ok(self.http_announce(now, peer_ip, query)),
            b"scrape" | b"scrape.php" => Ok(self.http_scrape(query)),
            _ => Err((404, "not found: this tracker serves /announce and /scrape")),
        }
    }

    fn http_announce(&mut self, now: Instant, peer_ip: IpAddr, query: &[u8]) -> Vec<u8> {
        let parsed = match parse_announce_query(query) {
            Ok(parsed) => parsed,
            Err(refusal) => {
                self.stats.refused += 1;
                return failure_body(&refusal.to_string());
            }
        };
        match self.announce_inner(now, peer_ip, &parsed.request, Families::Both) {
            Ok(answer) => encode_announce(&answer, parsed.compact, parsed.no_peer_id),
            Err(refusal) => failure_body(&refusal.to_string()),
        }
    }

    fn http_scrape(&mut self, query: &[u8]) -> Vec<u8> {
        let mut hashes = BTreeSet::new();
        for (key, value) in query_params(query) {
            if key == b"info_hash"
                && let Ok(hash) = <[u8; 20]>::try_from(value.as_slice())
                && hashes.len() < self.config.max_scrape_hashes
            {
                hashes.insert(InfoHash(hash));
            }
        }
        if hashes.is_empty() {
            self.stats.bad_requests += 1;
            return failure_body("scrape needs at least one info_hash (no full scrape here)");
        }
        self.stats.scrapes += 1;
        let mut out = b"d5:filesd".to_vec();
        for hash in hashes {
            let s = self.swarm(&hash).unwrap_or_default();
            bytes_item(&mut out, &hash.0);
            out.push(b'd');
            bytes_item(&mut out, b"complete");
            int_item(&mut out, s.complete.into());
            bytes_item(&mut out, b"downloaded");
            int_item(&mut out, s.downloaded.into());
            bytes_item(&mut out, b"incomplete");
            int_item(&mut out, s.incomplete.into());
            out.push(b'e');
        }
        out.extend_from_slice(b"ee");
        out
    }

    fn udp_announce(
        &mut self,
        now: Instant,
        from: SocketAddr,
        transaction: u32,
        datagram: &[u8],
    ) -> Vec<u8> {
        if datagram.len() < UDP_ANNOUNCE_LEN {
            self.stats.bad_requests += 1;
            return udp_error(transaction, "announce request too short");
        }
        let field = |at: usize| be_u64(datagram, at).expect("length checked");
        let counter = |at: usize| u64::try_from(field(at) as i64).unwrap_or(0);
        let left = field(64) as i64;
        let numwant = be_u32(datagram, 92).expect("length checked") as i32;
        let request = AnnounceRequest {
            info_hash: InfoHash(datagram[16..36].try_into().expect("length checked")),
            peer_id: PeerId(datagram[36..56].try_into().expect("length checked")),
            downloaded: counter(56),
            // A negative `left` is not a seeder.
            left: u64::try_from(left).unwrap_or(u64::MAX),
            uploaded: counter(72),
            event: match be_u32(datagram, 80).expect("length checked") {
                1 => Event::Completed,
                2 => Event::Started,
                3 => Event::Stopped,
                _ => Event::None,
            },
            key: be_u32(datagram, 88).expect("length checked"),
            numwant: u32::try_from(numwant).ok(),
            port: u16::from_be_bytes([datagram[96], datagram[97]]),
            tracker_id: None,
        };
        match self.announce_inner(now, from.ip(), &request, Families::Own) {
            Ok(answer) => {
                let secs = u32::try_from(answer.interval.as_secs()).unwrap_or(u32::MAX);
                let mut out = Vec::with_capacity(20 + 18 * answer.peers.len());
                out.extend_from_slice(&ACTION_ANNOUNCE.to_be_bytes());
                out.extend_from_slice(&transaction.to_be_bytes());
                out.extend_from_slice(&secs.to_be_bytes());
                out.extend_from_slice(&answer.incomplete.to_be_bytes());
                out.extend_from_slice(&answer.complete.to_be_bytes());
                for (addr, _) in &answer.peers {
                    compact_peer(&mut out, *addr);
                }
                out
            }
            Err(refusal) => udp_error(transaction, &refusal.to_string()),
        }
    }

    /// The connection id a client at `addr` gets in time window `window`: the first 8 bytes of
    /// SHA-1(secret, window, ip). The port does not count (see [`TrackerServer`]).
    fn connection_id(&self, addr: SocketAddr, window: u64) -> u64 {
        let mut h = Sha1::new();
        h.update(self.secret);
        h.update(window.to_be_bytes());
        match addr.ip() {
            IpAddr::V4(v4) => h.update(v4.octets()),
            IpAddr::V6(v6) => h.update(v6.octets()),
        }
        let digest = h.finalize();
        u64::from_be_bytes(digest[..8].try_into().expect("SHA-1 has 20 bytes"))
    }
}

/// The connection-id window `now` falls in.
fn window(now: Instant) -> u64 {
    now.as_micros() / CONNECTION_ID_WINDOW.as_micros() as u64
}

/// Where the head of an HTTP request ends (just after its empty line, `\r\n\r\n` or `\n\n`), once
/// it has all arrived: a driver reads until this is `Some`, the request grows past
/// [`TrackerConfig::max_request_len`], or the connection ends.
pub fn http_head_end(buffer: &[u8]) -> Option<usize> {
    let crlf = buffer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| i + 4);
    let lf = buffer.windows(2).position(|w| w == b"\n\n").map(|i| i + 2);
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// An announce as read from an HTTP query.
struct HttpAnnounce {
    request: AnnounceRequest,
    compact: bool,
    no_peer_id: bool,
}

/// The `key=value` pairs of a query, both percent-decoded (`+` is kept as is: clients encode
/// binary bytes as `%XX`, and a raw `+` in an info hash is the byte 0x2B).
fn query_params(query: &[u8]) -> impl Iterator<Item = (Vec<u8>, Vec<u8>)> + '_ {
    query
        .split(|&b| b == b'&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = match pair.iter().position(|&b| b == b'=') {
                Some(eq) => (&pair[..eq], &pair[eq + 1..]),
                None => (pair, &[][..]),
            };
            (
                percent_decode(key).collect(),
                percent_decode(value).collect(),
            )
        })
}

/// A decimal number of at most 20 digits (no sign).
fn decimal(value: &[u8]) -> Option<u64> {
    if value.is_empty() || value.len() > 20 || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(value).ok()?.parse().ok()
}

/// Reads an announce query (BEP 3): `info_hash`, `peer_id` and `port` are required; the counters
/// default to 0 (`left` to "not done"); `numwant` is kept only when it is a number; the first
/// occurrence of a parameter counts; `ip` and unknown parameters are ignored.
fn parse_announce_query(query: &[u8]) -> Result<HttpAnnounce, AnnounceRefusal> {
    let mut info_hash = None;
    let mut peer_id = None;
    let mut port = None;
    let (mut uploaded, mut downloaded, mut left) = (None, None, None);
    let mut event = None;
    let mut numwant = None;
    let mut compact = None;
    let mut no_peer_id = None;
    let mut key = None;
    let mut tracker_id = None;
    for (name, value) in query_params(query) {
        match name.as_slice() {
            b"info_hash" if info_hash.is_none() => {
                info_hash = Some(
                    <[u8; 20]>::try_from(value.as_slice())
                        .map_err(|_| AnnounceRefusal::BadParam("info_hash"))?,
                );
            }
            b"peer_id" if peer_id.is_none() => {
                peer_id = Some(
                    <[u8; 20]>::try_from(value.as_slice())
                        .map_err(|_| AnnounceRefusal::BadParam("peer_id"))?,
                );
            }
            b"port" if port.is_none() => {
                port = Some(
                    decimal(&value)
                        .and_then(|p| u16::try_from(p).ok())
                        .filter(|&p| p != 0)
                        .ok_or(AnnounceRefusal::BadParam("port"))?,
                );
            }
            b"uploaded" if uploaded.is_none() => uploaded = decimal(&value),
            b"downloaded" if downloaded.is_none() => downloaded = decimal(&value),
            b"left" if left.is_none() => left = decimal(&value),
            b"event" if event.is_none() => {
                event = Some(match value.as_slice() {
                    b"started" => Event::Started,
                    b"completed" => Event::Completed,
                    b"stopped" => Event::Stopped,
                    _ => Event::None,
                });
            }
            b"numwant" if numwant.is_none() => {
                numwant = decimal(&value).map(|n| u32::try_from(n).unwrap_or(u32::MAX));
            }
            b"compact" if compact.is_none() => compact = Some(value.as_slice() != b"0"),
            b"no_peer_id" if no_peer_id.is_none() => no_peer_id = Some(value.as_slice() == b"1"),
            b"key" if key.is_none() => {
                key = std::str::from_utf8(&value)
                    .ok()
                    .and_then(|k| u32::from_str_radix(k, 16).ok());
            }
            b"trackerid" if tracker_id.is_none() => {
                tracker_id = String::from_utf8(value)
                    .ok()
                    .filter(|id| id.len() <= MAX_TRACKER_ID_LEN);
            }
            _ => {}
        }
    }
    Ok(HttpAnnounce {
        request: AnnounceRequest {
            info_hash: InfoHash(info_hash.ok_or(AnnounceRefusal::BadParam("info_hash"))?),
            peer_id: PeerId(peer_id.ok_or(AnnounceRefusal::BadParam("peer_id"))?),
            port: port.ok_or(AnnounceRefusal::BadParam("port"))?,
            uploaded: uploaded.unwrap_or(0),
            downloaded: downloaded.unwrap_or(0),
            left: left.unwrap_or(u64::MAX),
            event: event.unwrap_or_default(),
            numwant,
            key: key.unwrap_or(0),
            tracker_id,
        },
        compact: compact.unwrap_or(true),
        no_peer_id: no_peer_id.unwrap_or(false),
    })
}

fn bytes_item(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(bytes.len().to_string().as_bytes());
    out.push(b':');
    out.extend_from_slice(bytes);
}

fn int_item(out: &mut Vec<u8>, n: i64) {
    out.push(b'i');
    out.extend_from_slice(n.to_string().as_bytes());
    out.push(b'e');
}

fn compact_peer(out: &mut Vec<u8>, addr: SocketAddr) {
    match addr.ip() {
        IpAddr::V4(v4) => out.extend_from_slice(&v4.octets()),
        IpAddr::V6(v6) => out.extend_from_slice(&v6.octets()),
    }
    out.extend_from_slice(&addr.port().to_be_bytes());
}

/// The bencoded answer (keys in canonical order): `complete`, `incomplete`, `interval`,
/// `min interval`, then `peers` (compact BEP 23 IPv4 string, or a list of dictionaries of both
/// families) and `peers6` (compact BEP 7, only when compact and there are IPv6 peers).
fn encode_announce(answer: &AnnounceAnswer, compact: bool, no_peer_id: bool) -> Vec<u8> {
    let secs = |d: Duration| i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
    let mut out = Vec::with_capacity(96 + 64 * answer.peers.len());
    out.push(b'd');
    bytes_item(&mut out, b"complete");
    int_item(&mut out, answer.complete.into());
    bytes_item(&mut out, b"incomplete");
    int_item(&mut out, answer.incomplete.into());
    bytes_item(&mut out, b"interval");
    int_item(&mut out, secs(answer.interval));
    bytes_item(&mut out, b"min interval");
    int_item(&mut out, secs(answer.min_interval));
    bytes_item(&mut out, b"peers");
    if compact {
        let mut v4 = Vec::new();
        let mut v6 = Vec::new();
        for &(addr, _) in &answer.peers {
            compact_peer(if addr.is_ipv4() { &mut v4 } else { &mut v6 }, addr);
        }
        bytes_item(&mut out, &v4);
        if !v6.is_empty() {
            bytes_item(&mut out, b"peers6");
            bytes_item(&mut out, &v6);
        }
    } else {
        out.push(b'l');
        for (addr, peer_id) in &answer.peers {
            out.push(b'd');
            bytes_item(&mut out, b"ip");
            bytes_item(&mut out, addr.ip().to_string().as_bytes());
            if !no_peer_id {
                bytes_item(&mut out, b"peer id");
                bytes_item(&mut out, &peer_id.0);
            }
            bytes_item(&mut out, b"port");
            int_item(&mut out, addr.port().into());
            out.push(b'e');
        }
        out.push(b'e');
    }
    out.push(b'e');
    out
}

/// `d14:failure reason<len>:<text>e`.
fn failure_body(text: &str) -> Vec<u8> {
    let mut out = b"d".to_vec();
    bytes_item(&mut out, b"failure reason");
    bytes_item(&mut out, text.as_bytes());
    out.push(b'e');
    out
}

/// A whole HTTP/1.1 response that closes the connection.
fn http_response(status: u16, body: &[u8]) -> Vec<u8> {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        431 => "Request Header Fields Too Large",
        _ => "Error",
    };
    let mut out = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\
         Cache-Control: no-store\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}

/// A BEP 15 error datagram.
fn udp_error(transaction: u32, message: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + message.len());
    out.extend_from_slice(&ACTION_ERROR.to_be_bytes());
    out.extend_from_slice(&transaction.to_be_bytes());
    out.extend_from_slice(message.as_bytes());
    out
}

fn be_u32(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}

fn be_u64(bytes: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_be_bytes(bytes.get(at..at + 8)?.try_into().ok()?))
}

#[cfg(test)]
#[path = "server_tests.rs"]
mod tests;
