//! [`Client`]: the whole protocol side of one bt process: every torrent, whom to dial, when to
//! announce, the DHT, and what crosses torrents.
//!
//! It wraps the [`Session`] (torrents, connections, routing by info hash) and adds what used to
//! live beside it in each driver:
//! - per torrent: its [`Announcer`] and the whole announce request (`left`, `numwant`, `key`,
//!   port, events), and its [`PeerList`] of every address learned, dialled and redialled with
//!   backoff;
//! - for the process: one DHT node announcing every public torrent ([`DhtSchedule`]), the BEP 15
//!   connection-id cache, the half-open limit and connect timeouts, our peer id and the root
//!   random stream.
//!
//! The user's controls live beside it: seeding goals that stop a torrent by themselves
//! ([`Client::set_seed_goal`], in `goals.rs`) and pause/resume ([`Client::pause`], in
//! `pause.rs`).
//!
//! A driver performs what [`Client::poll_output`] asks ([`Output`]: connect, transmit, close,
//! disk, datagram, announce, event) and reports back with the `handle_*` inputs; between them it
//! sleeps until [`Client::poll_timeout`]. The drain contract is the crate's (see the crate docs):
//! after every input or command, drain `poll_output` until `None`, then read `poll_timeout`.
//!
//! Timers: one table of named entries ([`Timer`]); [`Client::poll_timeout`] is its earliest, and
//! [`Client::last_timeout_reason`] names what the last [`Client::handle_timeout`] found due, as
//! str0m does.
//!
//! Connection handles: the client allocates every [`ConnId`], for the connections it asks for
//! ([`Output::Connect`]) and the ones peers open ([`Client::accept`]).
//!
//! Transports: a peer connection is TCP, carried by the driver, or uTP (BEP 29), carried inside
//! the client over its UDP socket (see `utp.rs`): the driver only moves datagrams
//! ([`Client::handle_datagram`], or [`Client::handle_datagrams`] for a batch that arrived
//! together, [`Output::Datagram`]), and the session sees a [`ConnId`] either
//! way. Which transport a dial tries first, and what it falls back to, is the peer list's
//! ([`PeerList::dial_transports`], over [`ClientConfig::transports`]). The UDP socket is shared
//! by the DHT and uTP: a datagram is sorted by its first byte ([`crate::utp::packet::classify`]).
//!
//! Determinism: every random choice comes from the seed given to [`Client::new`]; torrents,
//! connections and timers live in ordered maps.
//!
//! Bounds: connections as [`SessionConfig::max_connections`]; connects in progress at most
//! [`ClientConfig::max_half_open`]; per torrent at most [`ClientConfig::max_known_peers`]
//! addresses and one announce in flight; UDP connection ids for at most
//! [`crate::tracker::MAX_TRACKERS`] trackers; uTP sockets at most
//! [`ClientConfig::max_utp_sockets`], each connection's queue at most [`MAX_UTP_QUEUE_BYTES`];
//! outputs are drained by the driver after every input.

mod goals;
mod pause;
mod peers;
mod utp;
mod utp_tap;

#[cfg(test)]
mod controls_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod utp_tests;

use core::net::SocketAddr;
use core::time::Duration;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::ops::Bound;

pub use goals::{GoalReached, MAX_SEED_RATIO, SeedGoal, SeedProgress, SeedRatio};
pub use peers::{
    Ending, MAX_FAILS, PeerList, PeerSource, RECONNECT_AFTER, RETRY_BASE, RETRY_MAX, SourceCounts,
    Transport,
};
pub use utp::{
    MAX_UTP_QUEUE_BYTES, MAX_UTP_SOCKETS, UTP_CONNECT_TIMEOUT, UTP_READ_CHUNK, UdpStats,
};
pub use utp_tap::{
    MAX_FINISHED_TAPS, MAX_STREAM_CHUNKS, STREAM_CHUNK, StreamDigest, StreamMismatch, UtpTap,
};

use crate::dht::{Dht, DhtSchedule, ScheduleEvent};
use crate::io::{ConnId, DiskDone, DiskOp};
use crate::metainfo::{BLOCK_SIZE, InfoHash, Metainfo, TorrentLayout};
use crate::rng::Rng;
use crate::session::{
    Encryption, Output as SessionOutput, Session, SessionCloseReason, SessionConfig, SessionError,
    TorrentId,
};
use crate::time::Instant;
use crate::torrent::{Bitfield, CloseReason, Torrent, TorrentEvent};
use crate::tracker::{
    AnnounceRequest, AnnounceResponse, Announcer, AnnouncerConfig, Event as AnnounceEvent,
    MAX_TRACKERS, Scheme, TrackerError, TrackerUrl, UdpConfig,
};
use crate::wire::PeerId;

/// Most outgoing connects in progress at once (half-open connections), by default.
pub const MAX_HALF_OPEN: usize = 16;

/// Rounds of [`Client::pump`] per input while uTP events keep giving it work.
const PUMP_ROUNDS: usize = 8;

/// How long a connect may take, by default.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Peers asked of a tracker per announce, by default.
pub const NUMWANT: u32 = 80;

/// Most addresses a torrent's peer list keeps, by default.
pub const MAX_KNOWN_PEERS: usize = 2000;

/// An announce still unanswered after this is reported ([`Event::TrackerSlow`]), so a person
/// hears about a silent tracker within seconds.
pub const SLOW_TRACKER_NOTICE: Duration = Duration::from_secs(4);

/// UDP tracker retransmission (BEP 15) as clients run it: 3 s, 6 s, 12 s, then give up (after
/// 21 s) and let the announcer try the next tracker. BEP 15's own schedule (15 s doubling eight
/// times) would hold a dead tracker for two hours before trying the next.
pub const UDP_TRACKER_CONFIG: UdpConfig = UdpConfig {
    base_timeout: Duration::from_secs(3),
    max_retries: 2,
};

/// The longest a TCP connect to an HTTP tracker may take.
pub const TRACKER_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The longest an HTTP announce may take, connect to last byte.
pub const TRACKER_HTTP_TIMEOUT: Duration = Duration::from_secs(20);

/// How long a stopping torrent waits for its `stopped` announce.
pub const STOP_ANNOUNCE_TIMEOUT: Duration = Duration::from_secs(4);

/// Tunables of a [`Client`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientConfig {
    /// The session's (every torrent's settings, the connection limit).
    pub session: SessionConfig,
    /// Most outgoing connects in progress at once (at least 1).
    pub max_half_open: usize,
    /// How long a connect may take before it counts as failed.
    pub connect_timeout: Duration,
    /// Peers asked of a tracker per announce (0 with `stopped`).
    pub numwant: u32,
    /// Most addresses each torrent's peer list keeps.
    pub max_known_peers: usize,
    /// When to announce, and retry.
    pub announcer: AnnouncerConfig,
    /// Connection handles start after this. A driver running several clients in one space of
    /// handles (the simulator) gives each its own range; 0 for a driver with one client.
    pub conn_id_base: u64,
    /// The transports a dial tries, most preferred first (see [`PeerList::dial_transports`]).
    /// uTP is on (dials and incoming connections, on the UDP socket) when it is listed. The
    /// default is TCP alone; `[Utp, Tcp]` is libtorrent's order.
    pub transports: Vec<Transport>,
    /// Most uTP sockets at once (connections, and closed ones finishing).
    pub max_utp_sockets: usize,
    /// Record digests of every uTP connection's byte streams, both ways, for an observer that
    /// compares the two ends ([`UtpTap`], [`Client::take_utp_taps`]). Off by default, and free
    /// when off.
    pub utp_stream_taps: bool,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            session: SessionConfig::default(),
            max_half_open: MAX_HALF_OPEN,
            connect_timeout: CONNECT_TIMEOUT,
            numwant: NUMWANT,
            max_known_peers: MAX_KNOWN_PEERS,
            announcer: AnnouncerConfig::default(),
            conn_id_base: 0,
            transports: vec![Transport::Tcp],
            max_utp_sockets: MAX_UTP_SOCKETS,
            utp_stream_taps: false,
        }
    }
}

impl ClientConfig {
    /// Whether uTP is on (listed in [`ClientConfig::transports`]).
    pub fn utp_enabled(&self) -> bool {
        self.transports.contains(&Transport::Utp)
    }
}

impl From<SessionConfig> for ClientConfig {
    /// `session`, the rest default.
    fn from(session: SessionConfig) -> Self {
        ClientConfig {
            session,
            ..ClientConfig::default()
        }
    }
}

/// The handle of an announce in flight: pass it back to [`Client::handle_announce`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AnnounceId(pub u64);

/// A UDP tracker's connection id and when it was received, reusable for a minute (BEP 15).
pub type UdpConnection = (u64, Instant);

/// Why the client closes a connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientCloseReason {
    /// The session or its torrent closed it.
    Session(SessionCloseReason),
    /// The connect did not complete within [`ClientConfig::connect_timeout`].
    ConnectTimeout,
}

/// What the client asks its driver to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// Open a TCP connection to `addr`; report with [`Client::handle_connected`] or
    /// [`Client::handle_connect_failed`]. Always TCP: uTP connections are dialled, written and
    /// closed inside the client, and reach the driver only as datagrams; no `Transmit` or
    /// `Close` names them either.
    Connect {
        /// The torrent it is for.
        torrent: TorrentId,
        /// The handle the connection will have.
        conn: ConnId,
        /// Where to.
        addr: SocketAddr,
    },
    /// Write bytes to a connection's socket, then report it with [`Client::handle_sent`].
    Transmit {
        /// The connection.
        conn: ConnId,
        /// The bytes.
        bytes: bytes::Bytes,
    },
    /// Close a connection's socket (or give up a connect in progress).
    Close {
        /// The connection.
        conn: ConnId,
        /// Why.
        reason: ClientCloseReason,
    },
    /// Disk work for a torrent; answer with [`Client::handle_disk`].
    Disk {
        /// The torrent.
        torrent: TorrentId,
        /// The work.
        op: DiskOp,
    },
    /// Send a UDP datagram from the client's UDP socket, which the DHT node and uTP share (on
    /// the port peers are told, the TCP listening port). Datagrams flow while either is on.
    Datagram {
        /// Where to.
        to: SocketAddr,
        /// Its bytes.
        bytes: Vec<u8>,
    },
    /// Announce to a tracker (HTTP or UDP, with BEP 15's retries for UDP); report the outcome
    /// with [`Client::handle_announce`], whatever it is.
    Announce {
        /// The torrent.
        torrent: TorrentId,
        /// The handle to report with.
        id: AnnounceId,
        /// The tracker's URL as given.
        url: String,
        /// The same, parsed (boxed, as the request: they are rare, and every output is as
        /// large as the largest).
        tracker: Box<TrackerUrl>,
        /// The request.
        request: Box<AnnounceRequest>,
        /// A UDP tracker's connection id still fresh from an earlier announce, to skip the
        /// connect exchange.
        udp_connection: Option<UdpConnection>,
    },
    /// Something for the user.
    Event(Event),
}

/// What happened, for the user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A torrent's own event (piece verified, peer connected, ...).
    Torrent {
        /// The torrent.
        torrent: TorrentId,
        /// What happened.
        event: TorrentEvent,
    },
    /// A connect failed or timed out.
    ConnectFailed {
        /// The torrent.
        torrent: TorrentId,
        /// Where to.
        addr: SocketAddr,
        /// Why, in words.
        error: String,
        /// The transport of the last attempt (a dial tries each of its transports before it
        /// fails).
        transport: Transport,
    },
    /// The session closed a uTP connection that had not joined a torrent (a refused or failed
    /// handshake: MSE, a wrong info hash). A TCP one is the driver's [`Output::Close`]; a uTP one
    /// the client closes itself, and this says so. Closes of connections in a torrent come as
    /// its `TorrentEvent::PeerClosed`.
    UtpRefused {
        /// The peer.
        addr: SocketAddr,
        /// Why.
        reason: SessionCloseReason,
    },
    /// New addresses joined a torrent's peer list (from PEX or the DHT; a tracker's are in
    /// [`Event::TrackerAnswered`]).
    PeersFound {
        /// The torrent.
        torrent: TorrentId,
        /// Where they came from.
        source: PeerSource,
        /// From which peer, for PEX.
        from: Option<SocketAddr>,
        /// How many were new.
        count: usize,
    },
    /// A tracker answered an announce.
    TrackerAnswered {
        /// The torrent.
        torrent: TorrentId,
        /// The tracker's URL.
        url: String,
        /// The event announced.
        event: AnnounceEvent,
        /// What it said (boxed: see [`Output::Announce`]).
        response: Box<AnnounceResponse>,
        /// How long until the next announce: the tracker's interval after our clamps; `None`
        /// when none is planned.
        next_in: Option<Duration>,
    },
    /// An announce failed.
    TrackerFailed {
        /// The torrent.
        torrent: TorrentId,
        /// The tracker's URL.
        url: String,
        /// Why.
        error: TrackerError,
        /// When the next announce (to this or another tracker) happens.
        retry_in: Option<Duration>,
    },
    /// An announce has had no answer for [`SLOW_TRACKER_NOTICE`]; it goes on.
    TrackerSlow {
        /// The torrent.
        torrent: TorrentId,
        /// The tracker's URL.
        url: String,
        /// How long it has waited.
        waited: Duration,
    },
    /// The DHT's routing table has nodes for the first time.
    DhtBootstrapped {
        /// Nodes in the table.
        nodes: usize,
    },
    /// A DHT announce of a torrent finished.
    DhtAnnounced {
        /// The torrent.
        torrent: TorrentId,
        /// Peers it found in all.
        peers: usize,
        /// Nodes that took our announce.
        announced: usize,
        /// Nodes in the table now.
        nodes: usize,
    },
    /// A torrent no longer uses the DHT (a magnet whose metadata is private, BEP 27).
    DhtStopped {
        /// The torrent.
        torrent: TorrentId,
        /// Why, in words.
        why: String,
    },
    /// A magnet's metadata arrived and parsed: the driver opens its storage now.
    MetadataReceived {
        /// The torrent.
        torrent: TorrentId,
        /// The whole metainfo (its trackers are the magnet's own).
        meta: Box<Metainfo>,
    },
    /// A torrent reached its seeding goal ([`Client::set_seed_goal`]); it stops now, and
    /// [`Event::Stopped`] follows.
    SeedGoalReached {
        /// The torrent.
        torrent: TorrentId,
        /// Which goal.
        reached: GoalReached,
        /// Block bytes uploaded, earlier runs included (see [`SeedProgress`]).
        uploaded: u64,
        /// How long it has seeded (running with every wanted piece verified), earlier runs
        /// included.
        seeded: Duration,
    },
    /// A torrent stopped: its connections are closed and its `stopped` announce is done (or
    /// gave up after [`STOP_ANNOUNCE_TIMEOUT`]).
    Stopped {
        /// The torrent.
        torrent: TorrentId,
    },
}

/// The entries of the client's timer table (see [`Client::last_timeout_reason`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Timer {
    /// The session's: peer timeouts, rechoking, keep-alives, unrouted handshakes.
    Session,
    /// A connect times out.
    Connect(ConnId),
    /// A torrent's next announce.
    Announce(TorrentId),
    /// A torrent's announce in flight has been slow long enough to say so.
    SlowTracker(TorrentId),
    /// A torrent's peer list has an address whose backoff ends.
    Redial(TorrentId),
    /// A stopping torrent gives up waiting for its `stopped` announce.
    StopDeadline(TorrentId),
    /// A seeding torrent reaches its seeding time goal.
    SeedGoal(TorrentId),
    /// The DHT node's (queries timing out, maintenance, announces, bootstrap).
    Dht,
    /// The uTP sockets' (retransmissions, probes, idle and drain timers).
    Utp,
}

/// Where a torrent is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Running,
    /// Paused ([`Client::pause`]): no connections, no dialling, `stopped` announced; its state
    /// kept for [`Client::resume`].
    Paused,
    /// Its connections are closed and its `stopped` announce is on its way.
    Stopping {
        deadline: Instant,
    },
    Stopped,
}

#[derive(Debug)]
struct InFlight {
    id: AnnounceId,
    url: String,
    event: AnnounceEvent,
    /// When to say it is slow; `None` once said.
    slow_at: Option<Instant>,
    sent_at: Instant,
    /// The UDP tracker's `host:port`, to cache its connection id under.
    udp_key: Option<String>,
}

/// What the client keeps per torrent beside the session's [`Torrent`].
#[derive(Debug)]
struct Side {
    phase: Phase,
    announcer: Option<Announcer>,
    in_flight: Option<InFlight>,
    peers: PeerList,
    /// Connects in progress for it.
    dialing: usize,
    /// Whether it is announced on the DHT (public, and the client runs a node).
    dht: bool,
    /// Whether it is private (BEP 27: no DHT, no PEX).
    private: bool,
}

#[derive(Clone, Copy, Debug)]
enum ConnState {
    Dialing { deadline: Instant },
    Open,
}

#[derive(Clone, Copy, Debug)]
struct ConnInfo {
    /// `None` for an incoming connection not yet routed.
    torrent: Option<TorrentId>,
    addr: SocketAddr,
    source: PeerSource,
    state: ConnState,
    /// What carries it (or what it is being dialled over).
    transport: Transport,
    /// While dialling: the transport to try at once if this one fails.
    fallback: Option<Transport>,
}

/// The protocol side of one bt process: see the module docs.
#[derive(Debug)]
pub struct Client {
    config: ClientConfig,
    session: Session,
    rng: Rng,
    key: u32,
    /// Boxed, as the session's torrents are: a B-tree node has room for eleven.
    sides: BTreeMap<TorrentId, Box<Side>>,
    conns: BTreeMap<ConnId, ConnInfo>,
    /// Connect deadlines: `(deadline, conn)`.
    dial_deadlines: BTreeSet<(Instant, ConnId)>,
    half_open: usize,
    next_conn: u64,
    next_announce: u64,
    /// The torrent the dialler serves first next time (round robin).
    dial_cursor: u32,
    listen: Option<SocketAddr>,
    dht: Option<DhtSchedule>,
    dht_events: Vec<ScheduleEvent>,
    udp_connections: BTreeMap<String, UdpConnection>,
    outputs: VecDeque<Output>,
    last_timeout_reason: Option<Timer>,
    /// Whether an input since the last [`Client::pump`] may have given it work: a torrent event
    /// it acts on (a peer connected or closed, completion, peers learned, ...) or a connection
    /// closed. The hot inputs (bytes, writes, disk) pump only then, so a busy transfer does not
    /// walk every torrent's announcer and peer list per input; time-driven work comes through
    /// [`Client::handle_timeout`], which always pumps.
    pump_needed: bool,
    /// Seeding goals by torrent (see [`Client::set_seed_goal`]).
    goals: BTreeMap<TorrentId, goals::GoalState>,
    /// Dials whose encryption handshake failed, with the rule it broke on our side (`None`: the
    /// peer hung up), until their torrent reports the peer gone (at most the connections we
    /// opened).
    encryption_failed: BTreeMap<ConnId, Option<crate::mse::MseError>>,
    /// The uTP multiplexer and its connections, while uTP is on.
    utp: Option<utp::UtpState>,
}

impl Client {
    /// A client whose every random choice comes from `seed`.
    pub fn new(config: ClientConfig, seed: u64) -> Self {
        let session = Session::new(config.session.clone(), seed);
        let base = config.conn_id_base;
        let mut rng = Rng::new(seed).fork(0x636c_6965_6e74);
        let key = rng.next_u32();
        // Its own stream, so the rest draw the same numbers with uTP on or off.
        let utp = config.utp_enabled().then(|| {
            let mux_seed = Rng::new(seed).fork(0x0075_7470).next_u64();
            utp::UtpState::new(mux_seed, config.max_utp_sockets, config.utp_stream_taps)
        });
        Client {
            config,
            session,
            rng,
            key,
            sides: BTreeMap::new(),
            conns: BTreeMap::new(),
            dial_deadlines: BTreeSet::new(),
            half_open: 0,
            next_conn: base + 1,
            next_announce: 1,
            dial_cursor: 0,
            listen: None,
            dht: None,
            dht_events: Vec::new(),
            udp_connections: BTreeMap::new(),
            outputs: VecDeque::new(),
            last_timeout_reason: None,
            pump_needed: false,
            goals: BTreeMap::new(),
            encryption_failed: BTreeMap::new(),
            utp,
        }
    }

    // ---- getters ----

    /// Our peer id.
    pub fn peer_id(&self) -> PeerId {
        self.session.peer_id()
    }

    /// The session (torrents and connections).
    pub fn session(&self) -> &Session {
        &self.session
    }

    /// A torrent.
    pub fn torrent(&self, id: TorrentId) -> Option<&Torrent> {
        self.session.torrent(id)
    }

    /// A torrent's peer list.
    pub fn peer_list(&self, id: TorrentId) -> Option<&PeerList> {
        self.sides.get(&id).map(|s| &s.peers)
    }

    /// A torrent's trackers, tier by tier, in the order they will be tried.
    pub fn trackers(&self, id: TorrentId) -> Vec<Vec<String>> {
        self.sides
            .get(&id)
            .and_then(|s| s.announcer.as_ref())
            .map_or_else(Vec::new, |a| {
                a.tiers()
                    .into_iter()
                    .map(|t| t.into_iter().map(str::to_owned).collect())
                    .collect()
            })
    }

    /// Where connection `conn` goes, and where its address was learned.
    pub fn conn_peer(&self, conn: ConnId) -> Option<(SocketAddr, PeerSource)> {
        self.conns.get(&conn).map(|c| (c.addr, c.source))
    }

    /// A torrent's open connections by where their peers came from.
    pub fn sources(&self, id: TorrentId) -> SourceCounts {
        let mut counts = SourceCounts::default();
        for c in self.conns.values() {
            if c.torrent == Some(id) && matches!(c.state, ConnState::Open) {
                counts.count(c.source);
            }
        }
        counts
    }

    /// Connects in progress.
    pub fn half_open(&self) -> usize {
        self.half_open
    }

    /// The DHT node, when running.
    pub fn dht(&self) -> Option<&Dht> {
        self.dht.as_ref().map(DhtSchedule::dht)
    }

    /// Whether torrent `id` has stopped (or is unknown).
    pub fn is_stopped(&self, id: TorrentId) -> bool {
        self.sides
            .get(&id)
            .is_none_or(|s| s.phase == Phase::Stopped)
    }

    /// Whether every torrent has stopped.
    pub fn all_stopped(&self) -> bool {
        self.sides.values().all(|s| s.phase == Phase::Stopped)
    }

    /// Bytes a torrent still needs, as announced (`left`): the wanted pieces not yet verified,
    /// exactly; one block while a magnet's size is unknown (zero would read as a seed, and
    /// libtorrent says one block too).
    pub fn left(&self, id: TorrentId) -> u64 {
        left_of(&self.session, id)
    }

    /// The table of timers: every entry with its deadline.
    pub fn timers(&self) -> Vec<(Timer, Instant)> {
        let mut table = Vec::new();
        self.each_timer(|name, at| table.push((name, at)));
        table
    }

    /// Calls `f` with every entry of the timer table (see [`Client::timers`]), allocating
    /// nothing: [`Client::poll_timeout`] runs after every input.
    fn each_timer(&self, mut f: impl FnMut(Timer, Instant)) {
        if let Some(at) = self.session.poll_timeout() {
            f(Timer::Session, at);
        }
        if let Some(&(at, conn)) = self.dial_deadlines.first() {
            f(Timer::Connect(conn), at);
        }
        for (id, side) in &self.sides {
            if let Some(at) = side.announcer.as_ref().and_then(Announcer::poll_timeout)
                && side.in_flight.is_none()
                && self.listen.is_some()
            {
                f(Timer::Announce(*id), at);
            }
            if let Some(at) = side.in_flight.as_ref().and_then(|fl| fl.slow_at) {
                f(Timer::SlowTracker(*id), at);
            }
            if side.phase == Phase::Running
                && let Some(at) = side.peers.poll_timeout()
            {
                f(Timer::Redial(*id), at);
            }
            if let Phase::Stopping { deadline } = side.phase {
                f(Timer::StopDeadline(*id), deadline);
            }
        }
        if let Some(at) = self.dht.as_ref().and_then(DhtSchedule::poll_timeout) {
            f(Timer::Dht, at);
        }
        for (name, at) in self.seed_goal_timers() {
            f(name, at);
        }
        if let Some(at) = self.utp.as_ref().and_then(|u| u.mux.poll_timeout()) {
            f(Timer::Utp, at);
        }
    }

    /// The next time [`Client::handle_timeout`] has work: the earliest of [`Client::timers`].
    pub fn poll_timeout(&self) -> Option<Instant> {
        let mut next: Option<Instant> = None;
        self.each_timer(|_, at| next = Some(next.map_or(at, |n| n.min(at))));
        next
    }

    /// The timer that was due at the last [`Client::handle_timeout`] (the earliest, when several
    /// were), for tracing why the client woke.
    pub fn last_timeout_reason(&self) -> Option<Timer> {
        self.last_timeout_reason
    }

    /// The next output. Drain after every input and command.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    // ---- commands ----

    /// Adds a torrent with the pieces `have` already verified, and its info dictionary
    /// (`info`, served to magnets; `private` per BEP 27). It starts at once: announces
    /// `started` to `trackers` (BEP 12 tiers) and dials the peers it learns.
    #[allow(clippy::too_many_arguments)]
    pub fn add_torrent(
        &mut self,
        now: Instant,
        info_hash: InfoHash,
        layout: TorrentLayout,
        piece_hashes: Vec<[u8; 20]>,
        have: Bitfield,
        info: bytes::Bytes,
        private: bool,
        trackers: Vec<Vec<String>>,
    ) -> Result<TorrentId, SessionError> {
        let id = self
            .session
            .add_torrent(info_hash, layout, piece_hashes, have)?;
        self.session.set_metadata(id, info, private);
        self.start_side(now, id, private, trackers);
        Ok(id)
    }

    /// Adds a torrent known only by its info hash (a magnet link, BEP 9): it fetches its
    /// metadata from its peers ([`Event::MetadataReceived`]), then downloads.
    pub fn add_magnet(
        &mut self,
        now: Instant,
        info_hash: InfoHash,
        trackers: Vec<Vec<String>>,
    ) -> Result<TorrentId, SessionError> {
        let id = self.session.add_magnet(info_hash)?;
        self.start_side(now, id, false, trackers);
        Ok(id)
    }

    fn start_side(
        &mut self,
        now: Instant,
        id: TorrentId,
        private: bool,
        trackers: Vec<Vec<String>>,
    ) {
        let announcer = (!trackers.is_empty()).then(|| {
            let mut a = Announcer::new(self.config.announcer, trackers, &mut self.rng);
            a.started(now);
            a
        });
        let mut side = Side {
            phase: Phase::Running,
            announcer,
            in_flight: None,
            peers: PeerList::new(self.config.max_known_peers),
            dialing: 0,
            dht: false,
            private,
        };
        if !private && let Some(dht) = &mut self.dht {
            side.dht = true;
            let hash = self.session.torrent(id).expect("just added").info_hash();
            dht.add_torrent(now, hash, self.listen.map(|l| l.port()));
        }
        self.sides.insert(id, Box::new(side));
        self.collect(now);
        self.pump(now);
    }

    /// Replaces torrent `id`'s trackers (BEP 12 tiers) and announces `started` to them.
    pub fn set_trackers(&mut self, now: Instant, id: TorrentId, trackers: Vec<Vec<String>>) {
        let Some(side) = self.sides.get_mut(&id) else {
            return;
        };
        side.in_flight = None;
        side.announcer = (!trackers.is_empty() && side.phase == Phase::Running).then(|| {
            let mut a = Announcer::new(self.config.announcer, trackers, &mut self.rng);
            a.started(now);
            a
        });
        self.pump(now);
    }

    /// Each file's priority for torrent `id` (see [`Torrent::set_file_priorities`]): skipped
    /// files are not downloaded, and `left` counts only the wanted pieces.
    pub fn set_file_priorities(
        &mut self,
        now: Instant,
        id: TorrentId,
        priorities: &[crate::torrent::FilePriority],
    ) -> Result<(), SessionError> {
        self.session.set_file_priorities(now, id, priorities)?;
        self.collect(now);
        self.pump(now);
        Ok(())
    }

    /// Reader `reader` of torrent `id` (an HTTP response being streamed, a player) is at
    /// `position`: the pieces it needs soon are fetched first, from the fastest peers, and its
    /// window is high priority (see [`crate::torrent::Deadlines`]). Readers are the caller's to
    /// number; [`Client::remove_reader`] releases one.
    pub fn set_reader(
        &mut self,
        now: Instant,
        id: TorrentId,
        reader: crate::torrent::ReaderId,
        position: crate::torrent::ReadPosition,
    ) -> Result<(), SessionError> {
        self.session.set_reader(now, id, reader, position)?;
        self.collect(now);
        self.pump_if_needed(now);
        Ok(())
    }

    /// Reader `reader` of torrent `id` went away: its pieces go back to the strategy's order.
    pub fn remove_reader(&mut self, now: Instant, id: TorrentId, reader: crate::torrent::ReaderId) {
        self.session.remove_reader(now, id, reader);
        self.collect(now);
        self.pump_if_needed(now);
    }

    /// Piece `piece` of torrent `id` is needed by `deadline` (`None`: no longer): within
    /// [`crate::torrent::URGENT_HORIZON`] of it the piece comes before all others.
    pub fn set_piece_deadline(
        &mut self,
        now: Instant,
        id: TorrentId,
        piece: crate::metainfo::PieceIndex,
        deadline: Option<Instant>,
    ) -> Result<(), SessionError> {
        self.session.set_piece_deadline(now, id, piece, deadline)?;
        self.collect(now);
        self.pump_if_needed(now);
        Ok(())
    }

    /// Global rate limits in bytes per second of block payload (`None`: unlimited), shared by
    /// every torrent (see [`Session::set_rate_limits`]).
    pub fn set_rate_limits(&mut self, now: Instant, download: Option<u64>, upload: Option<u64>) {
        self.session.set_rate_limits(now, download, upload);
        self.collect(now);
        self.pump(now);
    }

    /// Torrent `id`'s own rate limits (see [`Session::set_torrent_rate_limits`]).
    pub fn set_torrent_rate_limits(
        &mut self,
        now: Instant,
        id: TorrentId,
        download: Option<u64>,
        upload: Option<u64>,
    ) -> Result<(), SessionError> {
        self.session
            .set_torrent_rate_limits(now, id, download, upload)?;
        self.collect(now);
        self.pump(now);
        Ok(())
    }

    /// Most outgoing connects in progress at once (at least 1).
    pub fn set_max_half_open(&mut self, max: usize) {
        self.config.max_half_open = max.max(1);
    }

    /// Where we listen for peers: told to peers (BEP 10 `p`), announced, and never dialled.
    ///
    /// Announces wait for it: a tracker told port 0 lists us as unreachable, or refuses us. An
    /// announce held back is due at once when the address arrives (see [`Client::poll_timeout`]).
    pub fn set_listen_addr(&mut self, addr: SocketAddr) {
        self.listen = Some(addr);
        self.session.set_listen_port(addr.port());
    }

    /// Starts the DHT node `dht` (its UDP socket is the driver's), announcing every public
    /// torrent, present and future, with our listening port; `port` is the node's own UDP port,
    /// told to peers (BEP 5 `port`). Bootstrap with [`Client::dht_bootstrap`].
    pub fn start_dht(&mut self, now: Instant, dht: Dht, port: u16) {
        let mut schedule = DhtSchedule::new(dht);
        let listen = self.listen.map(|l| l.port());
        for (id, side) in &mut self.sides {
            if !side.private && side.phase == Phase::Running {
                side.dht = true;
                if let Some(t) = self.session.torrent(*id) {
                    schedule.add_torrent(now, t.info_hash(), listen);
                }
            }
        }
        self.dht = Some(schedule);
        self.session.set_dht_port(port);
        self.pump(now);
    }

    /// Bootstraps the DHT from `nodes` (the resolved bootstrap names), again while its table
    /// stays empty.
    pub fn dht_bootstrap(&mut self, now: Instant, nodes: Vec<SocketAddr>) {
        if let Some(dht) = &mut self.dht {
            dht.start_bootstrap(now, nodes);
        }
        self.pump(now);
    }

    /// Adds a node to the DHT's routing table (a saved node, a peer's BEP 5 `port`).
    pub fn add_dht_node(&mut self, now: Instant, addr: SocketAddr) {
        if let Some(dht) = &mut self.dht {
            dht.add_node(now, addr);
        }
        self.pump(now);
    }

    /// Adds peer addresses to torrent `id`'s list from `source`; returns how many were new. Our
    /// own listening address and port 0 are ignored.
    pub fn add_peers(
        &mut self,
        now: Instant,
        id: TorrentId,
        source: PeerSource,
        addrs: &[SocketAddr],
    ) -> usize {
        let count = self.learn(now, id, source, addrs);
        self.pump(now);
        count
    }

    fn learn(
        &mut self,
        now: Instant,
        id: TorrentId,
        source: PeerSource,
        addrs: &[SocketAddr],
    ) -> usize {
        let listen = self.listen;
        let Some(side) = self.sides.get_mut(&id) else {
            return 0;
        };
        addrs
            .iter()
            .filter(|a| a.port() != 0 && !is_own(listen, **a))
            .filter(|a| side.peers.add(now, **a, source))
            .count()
    }

    /// Stops torrent `id`: closes its connections, announces `stopped` and then reports
    /// [`Event::Stopped`] (at once with no tracker to tell). Its state stays readable.
    pub fn stop_torrent(&mut self, now: Instant, id: TorrentId) {
        let Some(side) = self.sides.get_mut(&id) else {
            return;
        };
        if !matches!(side.phase, Phase::Running | Phase::Paused) {
            return;
        }
        side.phase = Phase::Stopping {
            deadline: now + STOP_ANNOUNCE_TIMEOUT,
        };
        self.disconnect(now, id);
        self.collect(now);
        self.pump(now);
    }

    /// Takes torrent `id` off the network (it stops or pauses): `stopped` announced, off the
    /// DHT, connects given up, connections closed, new ones refused.
    fn disconnect(&mut self, now: Instant, id: TorrentId) {
        let Some(side) = self.sides.get_mut(&id) else {
            return;
        };
        if let Some(a) = &mut side.announcer {
            a.stopped(now);
        }
        if std::mem::take(&mut side.dht)
            && let (Some(dht), Some(t)) = (&mut self.dht, self.session.torrent(id))
        {
            dht.remove_torrent(&t.info_hash());
        }
        // Connects in progress are given up.
        let dialing: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, c)| c.torrent == Some(id) && matches!(c.state, ConnState::Dialing { .. }))
            .map(|(conn, _)| *conn)
            .collect();
        for conn in dialing {
            if self.is_utp(conn) {
                self.utp_abandon(conn);
                self.drop_dial(conn);
                continue;
            }
            self.drop_dial(conn);
            self.outputs.push_back(Output::Close {
                conn,
                reason: ClientCloseReason::Session(SessionCloseReason::TorrentStopped),
            });
        }
        self.session.set_accepting(id, false);
        self.session.close_connections(now, id);
    }

    /// Stops every torrent (see [`Client::stop_torrent`]): the way out of the process. Done when
    /// [`Client::all_stopped`].
    pub fn shutdown(&mut self, now: Instant) {
        let ids: Vec<TorrentId> = self.sides.keys().copied().collect();
        for id in ids {
            self.stop_torrent(now, id);
        }
    }

    // ---- input ----

    /// A peer at `addr` opened a connection to us: its handle, or why it is refused (the driver
    /// closes the socket then).
    pub fn accept(&mut self, now: Instant, addr: SocketAddr) -> Result<ConnId, SessionError> {
        let conn = self.accept_over(now, addr, Transport::Tcp)?;
        self.collect(now);
        self.pump(now);
        Ok(conn)
    }

    /// A connection from `addr` over `transport`, handed to the session: its handle, or why the
    /// session refuses it.
    fn accept_over(
        &mut self,
        now: Instant,
        addr: SocketAddr,
        transport: Transport,
    ) -> Result<ConnId, SessionError> {
        let conn = self.alloc_conn();
        self.session.accept(now, conn, addr)?;
        self.conns.insert(
            conn,
            ConnInfo {
                torrent: None,
                addr,
                source: PeerSource::Incoming,
                state: ConnState::Open,
                transport,
                fallback: None,
            },
        );
        Ok(conn)
    }

    /// The connect asked by [`Output::Connect`] succeeded: our handshake goes out.
    pub fn handle_connected(&mut self, now: Instant, conn: ConnId) {
        if self.conn_transport(conn) != Some(Transport::Tcp) {
            return;
        }
        self.connected(now, conn);
        self.collect(now);
        self.pump(now);
    }

    /// Dial `conn` completed on its transport: our handshake goes out.
    fn connected(&mut self, now: Instant, conn: ConnId) {
        let Some(info) = self.conns.get(&conn).copied() else {
            return;
        };
        let (ConnState::Dialing { .. }, Some(torrent)) = (info.state, info.torrent) else {
            return;
        };
        // `drop_dial` forgets the connection; a uTP one keeps its socket.
        self.drop_dial(conn);
        if let Some(side) = self.sides.get_mut(&torrent) {
            side.peers.transport_worked(info.addr, info.transport);
        }
        let plaintext_only = self
            .sides
            .get(&torrent)
            .is_some_and(|s| s.peers.plaintext_only(&info.addr));
        // Encrypted unless the policy never encrypts, or prefers to and this peer turned it down.
        let encrypt = match self.config.session.encryption {
            Some(Encryption::Require) => true,
            Some(Encryption::Prefer) => !plaintext_only,
            Some(Encryption::Plaintext) | None => false,
        };
        let connected = match self.config.session.encryption {
            Some(policy) if encrypt => {
                let offer = policy.methods();
                self.session
                    .connect_encrypted(now, torrent, conn, info.addr, offer)
            }
            _ => self.session.connect(now, torrent, conn, info.addr),
        };
        match connected {
            Ok(()) => {
                self.conns.insert(
                    conn,
                    ConnInfo {
                        state: ConnState::Open,
                        ..info
                    },
                );
            }
            Err(e) => {
                let reason = ClientCloseReason::Session(match e {
                    SessionError::Refused(r) => SessionCloseReason::Refused(r),
                    SessionError::NotAccepting(_) => SessionCloseReason::TorrentStopped,
                    _ => SessionCloseReason::TooManyConnections,
                });
                self.close_conn(now, conn, reason);
                if let Some(side) = self.sides.get_mut(&torrent) {
                    side.peers.closed(now, info.addr, Ending::Closed, false);
                }
            }
        }
    }

    /// The connect asked by [`Output::Connect`] failed.
    pub fn handle_connect_failed(&mut self, now: Instant, conn: ConnId, error: String) {
        if let Some(ConnInfo {
            state: ConnState::Dialing { .. },
            torrent: Some(torrent),
            addr,
            transport: Transport::Tcp,
            fallback,
            ..
        }) = self.conns.get(&conn).copied()
        {
            if fallback.is_some() {
                self.dial_failed(now, conn, error);
                self.collect(now);
            } else {
                self.drop_dial(conn);
                self.connect_failed(now, torrent, addr, error, Transport::Tcp);
            }
        }
        self.pump(now);
    }

    fn connect_failed(
        &mut self,
        now: Instant,
        torrent: TorrentId,
        addr: SocketAddr,
        error: String,
        transport: Transport,
    ) {
        if let Some(side) = self.sides.get_mut(&torrent) {
            side.peers.closed(now, addr, Ending::ConnectFailed, false);
        }
        self.outputs.push_back(Output::Event(Event::ConnectFailed {
            torrent,
            addr,
            error,
            transport,
        }));
    }

    /// Bytes read from `conn`'s socket. On an RC4 connection they are copied to be decrypted:
    /// a driver that owns its read buffer saves the copy with [`Client::handle_bytes_mut`].
    pub fn handle_bytes(&mut self, now: Instant, conn: ConnId, bytes: &[u8]) {
        self.session.handle_bytes(now, conn, bytes);
        self.collect(now);
        self.pump_if_needed(now);
    }

    /// Bytes read from `conn`'s socket, in a buffer this may overwrite: on an RC4 connection
    /// they are decrypted in place.
    pub fn handle_bytes_mut(&mut self, now: Instant, conn: ConnId, bytes: &mut [u8]) {
        self.session.handle_bytes_mut(now, conn, bytes);
        self.collect(now);
        self.pump_if_needed(now);
    }

    /// The driver wrote `bytes` of `conn`'s transmit data to its socket.
    pub fn handle_sent(&mut self, now: Instant, conn: ConnId, bytes: usize) {
        self.session.handle_sent(now, conn, bytes);
        self.collect(now);
        self.pump_if_needed(now);
    }

    /// `conn`'s socket closed or failed.
    pub fn handle_disconnect(&mut self, now: Instant, conn: ConnId) {
        if self.is_utp(conn) {
            return;
        }
        self.disconnected(now, conn);
        self.collect(now);
        self.pump(now);
    }

    /// `conn`'s transport ended under it.
    fn disconnected(&mut self, now: Instant, conn: ConnId) {
        // A peer that hangs up on our encryption handshake may speak only plaintext.
        if self.session.is_encrypting(conn) && self.dialled(conn) {
            self.encryption_failed.insert(conn, None);
        }
        self.session.handle_disconnect(now, conn);
        // An unrouted incoming connection has no torrent to report its end.
        if self.conns.get(&conn).is_some_and(|c| c.torrent.is_none()) {
            self.conns.remove(&conn);
        }
    }

    /// The driver's answer to an [`Output::Disk`].
    pub fn handle_disk(&mut self, now: Instant, torrent: TorrentId, done: DiskDone) {
        self.session.handle_disk(now, torrent, done);
        self.collect(now);
        self.pump_if_needed(now);
    }

    /// A datagram that arrived on the client's UDP socket. While uTP is on, it is sorted by
    /// [`crate::utp::packet::classify`]: uTP to the multiplexer, KRPC (bencoded) to the DHT node,
    /// anything else dropped and counted ([`UdpStats::unknown_dropped`]). With uTP off every
    /// datagram is the DHT node's.
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, bytes: &[u8]) {
        self.take_datagram(now, from, bytes);
        self.pump(now);
    }

    /// Datagrams that arrived together (one read of the UDP socket, or what waited for the
    /// driver), each sorted as [`Client::handle_datagram`] sorts it; the client drains once,
    /// after the last. So a uTP connection answers the whole batch with one acknowledgement
    /// (its `ST_STATE` names the last packet in order and selectively the rest), as libtorrent
    /// defers its ACK until the socket is drained, instead of one per data packet; and what
    /// the packets delivered reaches the session in one read. The caller bounds a batch; a
    /// batch adds no queue here (what its packets deliver waits in the sockets' receive
    /// buffers, within their bounds).
    pub fn handle_datagrams<'a>(
        &mut self,
        now: Instant,
        datagrams: impl IntoIterator<Item = (SocketAddr, &'a [u8])>,
    ) {
        for (from, bytes) in datagrams {
            self.take_datagram(now, from, bytes);
        }
        self.pump(now);
    }

    /// Sorts one datagram to uTP or the DHT, without draining.
    fn take_datagram(&mut self, now: Instant, from: SocketAddr, bytes: &[u8]) {
        use crate::utp::packet::{DatagramKind, classify};
        let kind = match self.utp {
            Some(_) => classify(bytes),
            None => DatagramKind::Dht,
        };
        match kind {
            DatagramKind::Dht => {
                if let Some(dht) = &mut self.dht {
                    dht.handle_datagram(now, from, bytes);
                }
            }
            DatagramKind::Utp => {
                if let Some(utp) = &mut self.utp {
                    utp.mux.handle_datagram(now, from, bytes);
                }
            }
            DatagramKind::Other => {
                if let Some(utp) = &mut self.utp {
                    utp.stats.unknown_dropped += 1;
                }
            }
        }
    }

    /// The outcome of [`Output::Announce`] `id`, and for a UDP tracker the connection id it
    /// used, to reuse.
    pub fn handle_announce(
        &mut self,
        now: Instant,
        id: AnnounceId,
        result: Result<AnnounceResponse, TrackerError>,
        udp_connection: Option<UdpConnection>,
    ) {
        let Some((torrent, side)) = self
            .sides
            .iter_mut()
            .find(|(_, s)| s.in_flight.as_ref().is_some_and(|f| f.id == id))
        else {
            return;
        };
        let torrent = *torrent;
        let flight = side.in_flight.take().expect("found by it");
        if let (Some(key), Some(connection)) = (flight.udp_key, udp_connection)
            && (self.udp_connections.len() < MAX_TRACKERS
                || self.udp_connections.contains_key(&key))
        {
            self.udp_connections.insert(key, connection);
        }
        let Some(announcer) = &mut side.announcer else {
            return;
        };
        let running = side.phase == Phase::Running;
        match result {
            Ok(response) => {
                announcer.handle_success(now, &flight.url, &response);
                let next_in = announcer.poll_timeout().map(|at| at.saturating_since(now));
                if running && flight.event != AnnounceEvent::Stopped {
                    self.learn(now, torrent, PeerSource::Tracker, &response.peers);
                }
                self.outputs
                    .push_back(Output::Event(Event::TrackerAnswered {
                        torrent,
                        url: flight.url,
                        event: flight.event,
                        response: Box::new(response),
                        next_in,
                    }));
            }
            Err(error) => {
                announcer.handle_failure(now, &flight.url, &error);
                let retry_in = announcer.poll_timeout().map(|at| at.saturating_since(now));
                self.outputs.push_back(Output::Event(Event::TrackerFailed {
                    torrent,
                    url: flight.url,
                    error,
                    retry_in,
                }));
            }
        }
        self.pump(now);
    }

    /// Fires what is due. Early or repeated calls are harmless.
    pub fn handle_timeout(&mut self, now: Instant) {
        let mut due: Option<(Instant, Timer)> = None;
        self.each_timer(|name, at| {
            if at <= now && due.is_none_or(|d| (at, name) < d) {
                due = Some((at, name));
            }
        });
        self.last_timeout_reason = due.map(|(_, name)| name);
        self.session.handle_timeout(now);
        self.collect(now);
        while let Some(&(at, conn)) = self.dial_deadlines.first()
            && at <= now
        {
            let info = self.conns.get(&conn).copied();
            if let Some(i) = info
                && (i.transport == Transport::Utp || i.fallback.is_some())
            {
                if i.transport == Transport::Tcp {
                    self.outputs.push_back(Output::Close {
                        conn,
                        reason: ClientCloseReason::ConnectTimeout,
                    });
                }
                let secs = match i.transport {
                    Transport::Tcp => self.config.connect_timeout,
                    Transport::Utp => UTP_CONNECT_TIMEOUT.min(self.config.connect_timeout),
                }
                .as_secs();
                let name = i.transport.name();
                self.dial_failed(now, conn, format!("no {name} answer within {secs} s"));
                // Whatever happened, this deadline is spent.
                self.dial_deadlines.remove(&(at, conn));
                continue;
            }
            self.drop_dial(conn);
            self.outputs.push_back(Output::Close {
                conn,
                reason: ClientCloseReason::ConnectTimeout,
            });
            if let Some(ConnInfo {
                torrent: Some(torrent),
                addr,
                ..
            }) = info
            {
                let secs = self.config.connect_timeout.as_secs();
                let error = format!("no answer within {secs} s");
                self.connect_failed(now, torrent, addr, error, Transport::Tcp);
            }
        }
        // Walks the torrents by handle without collecting them: timeouts are frequent.
        let mut next = self.sides.keys().next().copied();
        while let Some(id) = next {
            next = self.side_after(id);
            let side = self.sides.get_mut(&id).expect("walked above");
            side.peers.handle_timeout(now);
            if let Some(flight) = &mut side.in_flight
                && flight.slow_at.is_some_and(|at| at <= now)
            {
                flight.slow_at = None;
                let (url, waited) = (flight.url.clone(), now.saturating_since(flight.sent_at));
                self.outputs.push_back(Output::Event(Event::TrackerSlow {
                    torrent: id,
                    url,
                    waited,
                }));
            }
            if let Phase::Stopping { deadline } = side.phase
                && deadline <= now
            {
                self.finish_stop(id);
            }
        }
        if let Some(dht) = &mut self.dht {
            dht.handle_timeout(now);
        }
        if let Some(utp) = &mut self.utp {
            utp.mux.handle_timeout(now);
        }
        self.pump(now);
    }

    // ---- internals ----

    fn alloc_conn(&mut self) -> ConnId {
        let c = ConnId(self.next_conn);
        self.next_conn += 1;
        c
    }

    /// Forgets a connect in progress (answered, failed, timed out or given up).
    fn drop_dial(&mut self, conn: ConnId) {
        if let Some(info) = self.conns.get(&conn)
            && let ConnState::Dialing { deadline } = info.state
        {
            self.dial_deadlines.remove(&(deadline, conn));
            let torrent = info.torrent;
            self.conns.remove(&conn);
            self.free_dial_slot(torrent);
        }
    }

    /// Gives back a dial's slot of the half-open limit and of its torrent's dials.
    fn free_dial_slot(&mut self, torrent: Option<TorrentId>) {
        self.half_open -= 1;
        if let Some(side) = torrent.and_then(|t| self.sides.get_mut(&t)) {
            side.dialing -= 1;
        }
    }

    fn finish_stop(&mut self, id: TorrentId) {
        if let Some(side) = self.sides.get_mut(&id)
            && side.phase != Phase::Stopped
        {
            side.phase = Phase::Stopped;
            side.in_flight = None;
            self.outputs
                .push_back(Output::Event(Event::Stopped { torrent: id }));
        }
    }

    /// Moves the session's outputs to the client's, acting on the events that concern it.
    fn collect(&mut self, now: Instant) {
        while let Some(out) = self.session.poll_output() {
            let out = match out {
                SessionOutput::Transmit { conn, bytes } => {
                    if self.is_utp(conn) {
                        self.utp_transmit(now, conn, bytes);
                        continue;
                    }
                    Output::Transmit { conn, bytes }
                }
                SessionOutput::Close { conn, reason } => {
                    // A connection fewer may leave room to dial.
                    self.pump_needed = true;
                    // A handshake that stalled is no sign the peer speaks only plaintext.
                    if let SessionCloseReason::Mse(e) = reason
                        && e != crate::mse::MseError::TimedOut
                        && self.dialled(conn)
                    {
                        self.encryption_failed.insert(conn, Some(e));
                    }
                    // An attached connection's end is handled at its `PeerClosed`.
                    let unattached = match self.conns.get(&conn) {
                        Some(c) if c.torrent.is_none() => Some(c.addr),
                        _ => None,
                    };
                    if unattached.is_some() {
                        self.conns.remove(&conn);
                    }
                    if self.is_utp(conn) {
                        self.utp_close(now, conn);
                        if let Some(addr) = unattached
                            && !matches!(reason, SessionCloseReason::Torrent(_))
                        {
                            self.outputs
                                .push_back(Output::Event(Event::UtpRefused { addr, reason }));
                        }
                        continue;
                    }
                    Output::Close {
                        conn,
                        reason: ClientCloseReason::Session(reason),
                    }
                }
                SessionOutput::Disk { torrent, op } => Output::Disk { torrent, op },
                SessionOutput::Event { torrent, event } => {
                    self.on_event(now, torrent, &event);
                    Output::Event(Event::Torrent { torrent, event })
                }
            };
            self.outputs.push_back(out);
        }
    }

    fn on_event(&mut self, now: Instant, torrent: TorrentId, event: &TorrentEvent) {
        // Every event acted on below may give the pump work (room to dial, peers to dial, an
        // announce due); the rest (pieces started and verified, ...) never do.
        self.pump_needed |= matches!(
            event,
            TorrentEvent::PeerConnected { .. }
                | TorrentEvent::PeerClosed { .. }
                | TorrentEvent::PeerBanned(_)
                | TorrentEvent::Complete
                | TorrentEvent::PeersLearned { .. }
                | TorrentEvent::DhtPort { .. }
                | TorrentEvent::MetadataReceived
        );
        match event {
            TorrentEvent::PeerConnected { conn, .. } => {
                if let Some(info) = self.conns.get_mut(conn) {
                    info.torrent = Some(torrent);
                    if info.source == PeerSource::Incoming
                        && let Some(side) = self.sides.get_mut(&torrent)
                    {
                        side.peers.connected_in(info.addr, *conn);
                        // A peer that reached us over uTP speaks it.
                        if info.transport == Transport::Utp {
                            side.peers.transport_worked(info.addr, Transport::Utp);
                        }
                    }
                }
            }
            TorrentEvent::PeerClosed {
                conn,
                addr,
                reason,
                seed,
                ..
            } => {
                let info = self.conns.remove(conn);
                let dialled = info.is_some_and(|i| i.source != PeerSource::Incoming);
                let prefer = self.config.session.encryption == Some(Encryption::Prefer);
                if let Some(why) = self.encryption_failed.remove(conn)
                    && let Some(side) = self.sides.get_mut(&torrent)
                {
                    // Plaintext next, if we may; else a failure like any other.
                    let then = if prefer {
                        side.peers.encryption_failed(now, *addr);
                        "; trying plaintext"
                    } else {
                        side.peers.closed(now, *addr, Ending::Error, *seed);
                        "; encryption is required, so not in plaintext"
                    };
                    let what = match why {
                        Some(e) => format!("the encryption handshake failed ({})", e.name()),
                        None => "the peer hung up on the encryption handshake".to_owned(),
                    };
                    self.outputs.push_back(Output::Event(Event::ConnectFailed {
                        torrent,
                        addr: *addr,
                        error: format!("{what}{then}"),
                        transport: info.map_or(Transport::Tcp, |i| i.transport),
                    }));
                } else if let Some(side) = self.sides.get_mut(&torrent)
                    && (dialled || side.peers.is_busy(addr))
                {
                    let ending = match reason {
                        CloseReason::Banned | CloseReason::BadMetadata => Ending::Banned,
                        CloseReason::Disconnected | CloseReason::Duplicate => Ending::Closed,
                        CloseReason::Peer(_) => Ending::Error,
                    };
                    side.peers.closed(now, *addr, ending, *seed);
                }
            }
            TorrentEvent::PeerBanned(ip) => {
                if let Some(side) = self.sides.get_mut(&torrent) {
                    for addr in side.peers.addrs_on(*ip) {
                        side.peers.ban(addr);
                    }
                }
            }
            TorrentEvent::Complete => {
                if let Some(side) = self.sides.get_mut(&torrent) {
                    if let Some(a) = &mut side.announcer {
                        a.completed(now);
                    }
                    side.peers.set_complete(now, true);
                }
            }
            TorrentEvent::PeersLearned { from, peers } => {
                let from = self.conns.get(from).map(|c| c.addr);
                let count = self.learn(now, torrent, PeerSource::Pex, peers);
                self.outputs.push_back(Output::Event(Event::PeersFound {
                    torrent,
                    source: PeerSource::Pex,
                    from,
                    count,
                }));
            }
            TorrentEvent::DhtPort { addr } => {
                if let Some(dht) = &mut self.dht {
                    dht.add_node(now, *addr);
                }
            }
            TorrentEvent::MetadataReceived => self.metadata_received(torrent),
            _ => {}
        }
    }

    /// A magnet's metadata arrived: parsed for the driver; a private torrent leaves the DHT.
    fn metadata_received(&mut self, torrent: TorrentId) {
        let Some(info) = self
            .session
            .torrent(torrent)
            .and_then(|t| t.info_bytes())
            .cloned()
        else {
            return;
        };
        // The torrent checked it already; one that does not parse is reported by the torrent
        // as `MetadataInvalid`.
        let Ok(meta) = Metainfo::from_info_bytes(&info) else {
            return;
        };
        if let Some(side) = self.sides.get_mut(&torrent) {
            side.private = meta.info.private;
            if meta.info.private && side.dht {
                side.dht = false;
                if let Some(dht) = &mut self.dht {
                    dht.remove_torrent(&meta.info_hash);
                }
                self.outputs.push_back(Output::Event(Event::DhtStopped {
                    torrent,
                    why: "the torrent is private".into(),
                }));
            }
        }
        self.outputs
            .push_back(Output::Event(Event::MetadataReceived {
                torrent,
                meta: Box::new(meta),
            }));
    }

    /// Whether `conn` is a connection we opened.
    fn dialled(&self, conn: ConnId) -> bool {
        self.conns
            .get(&conn)
            .is_some_and(|c| c.source != PeerSource::Incoming)
    }

    /// The torrent after `id` in handle order. Loops that run after every input walk the
    /// torrents with it, changing the client between steps, instead of collecting the handles.
    fn side_after(&self, id: TorrentId) -> Option<TorrentId> {
        self.sides
            .range((Bound::Excluded(id), Bound::Unbounded))
            .next()
            .map(|(k, _)| *k)
    }

    /// [`Client::pump`] after a hot input, if it may have work (see `pump_needed`); always
    /// while a seeding goal is set, since every block uploaded moves a ratio. (A clock kept
    /// only to be saved starts and stops on events and commands, which pump anyway.)
    fn pump_if_needed(&mut self, now: Instant) {
        self.drive_utp(now);
        if self.pump_needed || self.has_seed_goal() {
            self.pump(now);
        }
    }

    /// After every input and command: due announces, the DHT, and dialling.
    /// With uTP on, the mux is drained last, and what its events gave the pump (a connection
    /// opened or closed) is pumped again, a bounded number of rounds.
    fn pump(&mut self, now: Instant) {
        for _ in 0..PUMP_ROUNDS {
            self.pump_needed = false;
            self.check_seed_goals(now);
            self.pump_announces(now);
            self.pump_dht(now);
            self.dial_more(now);
            if !self.drive_utp(now) || !self.pump_needed {
                return;
            }
        }
    }

    fn pump_announces(&mut self, now: Instant) {
        // Walks the torrents by handle without collecting them: this runs after every input.
        let mut next = self.sides.keys().next().copied();
        while let Some(id) = next {
            next = self.side_after(id);
            let side = self.sides.get_mut(&id).expect("listed above");
            if side.in_flight.is_some() {
                continue;
            }
            // Until we listen there is no port to announce; a torrent stopping meanwhile has
            // announced nothing, so its announcer stops at once.
            let due = if self.listen.is_some() {
                side.announcer.as_mut().and_then(|a| a.poll_announce(now))
            } else {
                None
            };
            let Some(announce) = due else {
                if matches!(side.phase, Phase::Stopping { .. })
                    && side.announcer.as_ref().is_none_or(Announcer::is_stopped)
                {
                    self.finish_stop(id);
                }
                continue;
            };
            // Counted only when announcing: it walks the pieces.
            let left = left_of(&self.session, id);
            let t = self.session.torrent(id).expect("sides and torrents agree");
            let stats = t.stats();
            let request = AnnounceRequest {
                info_hash: t.info_hash(),
                peer_id: self.session.peer_id(),
                port: self.listen.map_or(0, |l| l.port()),
                uploaded: stats.uploaded,
                downloaded: stats.downloaded,
                left,
                event: announce.event,
                numwant: Some(if announce.event == AnnounceEvent::Stopped {
                    0
                } else {
                    self.config.numwant
                }),
                key: self.key,
                tracker_id: announce.tracker_id,
            };
            let udp_key =
                (announce.tracker.scheme() == Scheme::Udp).then(|| announce.tracker.authority());
            let udp_connection = udp_key
                .as_ref()
                .and_then(|k| self.udp_connections.get(k).copied());
            let aid = AnnounceId(self.next_announce);
            self.next_announce += 1;
            side.in_flight = Some(InFlight {
                id: aid,
                url: announce.url.clone(),
                event: announce.event,
                slow_at: Some(now + SLOW_TRACKER_NOTICE),
                sent_at: now,
                udp_key,
            });
            self.outputs.push_back(Output::Announce {
                torrent: id,
                id: aid,
                url: announce.url,
                tracker: Box::new(announce.tracker),
                request: Box::new(request),
                udp_connection,
            });
        }
    }

    fn pump_dht(&mut self, now: Instant) {
        let Some(dht) = &mut self.dht else {
            return;
        };
        dht.poll(now, &mut self.dht_events);
        while let Some(t) = dht.poll_transmit() {
            self.outputs.push_back(Output::Datagram {
                to: t.to,
                bytes: t.bytes,
            });
        }
        let events = std::mem::take(&mut self.dht_events);
        for event in events {
            match event {
                ScheduleEvent::Peers { info_hash, peers } => {
                    let Some(torrent) = self.torrent_by_hash(&info_hash) else {
                        continue;
                    };
                    let count = self.learn(now, torrent, PeerSource::Dht, &peers);
                    if count > 0 {
                        self.outputs.push_back(Output::Event(Event::PeersFound {
                            torrent,
                            source: PeerSource::Dht,
                            from: None,
                            count,
                        }));
                    }
                }
                ScheduleEvent::Bootstrapped { nodes } => {
                    self.outputs
                        .push_back(Output::Event(Event::DhtBootstrapped { nodes }));
                }
                ScheduleEvent::Announced {
                    info_hash,
                    peers,
                    announced,
                    nodes,
                } => {
                    if let Some(torrent) = self.torrent_by_hash(&info_hash) {
                        self.outputs.push_back(Output::Event(Event::DhtAnnounced {
                            torrent,
                            peers,
                            announced,
                            nodes,
                        }));
                    }
                }
            }
        }
    }

    fn torrent_by_hash(&self, info_hash: &InfoHash) -> Option<TorrentId> {
        self.session
            .torrents()
            .find(|(_, t)| t.info_hash() == *info_hash)
            .map(|(id, _)| id)
    }

    /// Dials ready addresses while there is room: under the half-open limit, the connection
    /// limit, and each torrent's peer limit; torrents take turns.
    fn dial_more(&mut self, now: Instant) {
        let max_half_open = self.config.max_half_open.max(1);
        let max_conns = self.config.session.max_connections;
        let max_peers = self.config.session.torrent.max_peers;
        // Rounds over the torrents from the cursor, one dial per torrent per round, until a
        // round dials nothing. It runs after every input, so it walks the torrents by handle
        // instead of collecting them.
        loop {
            let mut dialled = false;
            let start = TorrentId(self.dial_cursor);
            let mut next = self
                .sides
                .range(start..)
                .next()
                .or_else(|| self.sides.iter().next())
                .map(|(id, _)| *id);
            let mut visited = 0;
            while let Some(id) = next {
                if visited == self.sides.len() {
                    break;
                }
                visited += 1;
                next = self
                    .side_after(id)
                    .or_else(|| self.sides.keys().next().copied());
                if self.half_open >= max_half_open
                    || self.session.connection_count() + self.half_open >= max_conns
                {
                    return;
                }
                let side = self.sides.get_mut(&id).expect("walked above");
                if side.phase != Phase::Running || side.peers.ready_count() == 0 {
                    continue;
                }
                let peers = self.session.torrent(id).map_or(0, Torrent::peer_count);
                if peers + side.dialing >= max_peers {
                    continue;
                }
                let conn = ConnId(self.next_conn);
                let Some((addr, source)) = side.peers.take_ready(conn) else {
                    continue;
                };
                let (transport, fallback) =
                    side.peers.dial_transports(&addr, &self.config.transports);
                self.next_conn += 1;
                side.dialing += 1;
                self.half_open += 1;
                self.dial_cursor = id.0.wrapping_add(1);
                self.start_dial(now, id, conn, addr, source, transport, fallback);
                dialled = true;
            }
            if !dialled {
                return;
            }
        }
    }
}

/// See [`Client::left`]. Walks the torrent's pieces.
fn left_of(session: &Session, id: TorrentId) -> u64 {
    let Some(t) = session.torrent(id) else {
        return 0;
    };
    if !t.has_metadata() {
        return u64::from(BLOCK_SIZE);
    }
    t.wanted_left()
}

/// Whether `addr` is our own listening address. On a wildcard listen only the loopback form is
/// known to be us; another host may well use the same port, and a connection to ourselves by a
/// public address is caught by the peer id check.
fn is_own(listen: Option<SocketAddr>, addr: SocketAddr) -> bool {
    listen.is_some_and(|l| {
        l.port() == addr.port()
            && (l.ip() == addr.ip() || (l.ip().is_unspecified() && addr.ip().is_loopback()))
    })
}
