//! [`Driver`]: runs the protocol [`Session`] on tokio for one torrent.
//!
//! One driver task owns the session (no locks around protocol state). Each connection has a reader
//! task (socket -> driver, through a bounded channel, so a busy driver slows readers down) and a
//! writer task (driver -> socket; after each write it reports the bytes sent, which is the
//! protocol's backpressure, see `Session::handle_sent`). Disk work runs on the disk threads of a
//! [`DiskPool`] (which hash pieces as they are written) and comes back as an input. Time comes only from `tokio::time`, so a simulated clock drives it in
//! the simulator; every `select!` is `biased;` for determinism. Disk work goes to a [`Storage`]
//! ([`crate::storage::FsStorage`] for real files).
//!
//! Magnets ([`Driver::new_magnet`]): the torrent starts with only its info hash; the protocol
//! fetches the metadata from peers, and when it arrives the driver opens the storage through the
//! caller's [`StorageOpener`] and starts the disk; the connections stay. Where each peer came from
//! (tracker, PEX, the user, incoming) follows it into [`Report::PeerConnected`] and
//! [`Status::sources`].
//!
//! Trackers: an [`Announcer`] decides when to announce to which URL; each announce runs as a task
//! ([`crate::tracker::announce`]) and comes back as an input. Peers from the answers (and from
//! [`Driver::add_peer`]) wait in a queue and are dialled while the torrent has room.
//!
//! Bounds: the input channel holds [`INPUT_QUEUE`] messages; each read is at most [`READ_CHUNK`]
//! bytes; a writer's queue is bounded by the protocol (blocks are queued only under its send-buffer
//! watermark; control messages are small and few per event); at most [`MAX_CANDIDATES`] peers
//! wait to be dialled and [`MAX_DIALS`] connects (or [`Driver::set_max_half_open`]) run at once;
//! one announce is in flight.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bt_protocol::io::{ConnId, DiskDone, DiskOp};
use bt_protocol::metainfo::{InfoHash, Metainfo, TorrentLayout};
use bt_protocol::rng::Rng;
use bt_protocol::session::{Output, Session, SessionCloseReason, SessionConfig, TorrentId};
use bt_protocol::time::Instant as ProtoInstant;
use bt_protocol::torrent::{Bitfield, CloseReason, TorrentEvent};
use bt_protocol::tracker::{
    AnnounceRequest, AnnounceResponse, Announcer, AnnouncerConfig, Event as AnnounceEvent,
    TrackerError,
};
use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::dht::{DhtInput, DhtReport, DhtRunner, DhtSetup};
use crate::disk::DiskPool;
use crate::net::Net;
use crate::storage::Storage;
use crate::tracker::{Clock, UdpConnection};

/// Messages the input channel holds before readers wait.
pub const INPUT_QUEUE: usize = 256;

/// The most bytes one socket read hands to the driver.
pub const READ_CHUNK: usize = 64 * 1024;

/// Reads (of at most [`READ_CHUNK`] bytes) the data channel holds before readers wait.
pub const DATA_QUEUE: usize = 64;

/// While this many bytes wait to be written, the driver reads no more from peers (TCP then slows
/// them down), so memory stays bounded when the network outpaces the disk.
pub const MAX_DISK_BACKLOG: usize = 16 * 1024 * 1024;

/// Most peer addresses waiting to be dialled.
pub const MAX_CANDIDATES: usize = 2000;

/// Most outgoing connects in progress at once (half-open connections), unless
/// [`Driver::set_max_half_open`] says otherwise.
pub const MAX_DIALS: usize = 16;

/// How long a connect may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// An announce still unanswered after this is reported ([`Report::TrackerSlow`]), so a person
/// hears about a silent tracker within seconds.
pub const SLOW_TRACKER_NOTICE: Duration = Duration::from_secs(4);

/// How long the `stopped` announce may hold up the exit.
pub const STOP_ANNOUNCE_TIMEOUT: Duration = Duration::from_secs(4);

/// Peers asked of a tracker per announce.
pub const NUMWANT: u32 = 80;

/// One disk thread per core, at most 4.
pub fn default_disk_threads() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get().min(4))
}

/// Why [`Driver::new`] failed.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    /// The session refused the torrent.
    #[error(transparent)]
    Session(#[from] bt_protocol::session::SessionError),
    /// The disk threads could not be started.
    #[error("cannot start the disk threads: {0}")]
    Threads(std::io::Error),
}

/// When [`Driver::run`] returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopWhen {
    /// As soon as every piece is verified (`bt get`).
    Complete,
    /// Only on interrupt (`bt seed`, `bt get --seed`).
    Interrupted,
}

/// How [`Driver::run`] ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Every piece is verified.
    Complete,
    /// Ctrl-C (or the stop handle) ended it first.
    Interrupted,
    /// It could not go on: [`Finished::error`] says why (a magnet's metadata parsed but named
    /// unsafe paths, or its files could not be opened).
    Failed,
}

/// What [`Driver::run`] returns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finished {
    /// Why it stopped.
    pub outcome: Outcome,
    /// The last snapshot.
    pub status: Status,
    /// The verified pieces, for the resume file.
    pub have: Bitfield,
    /// Why it failed, for [`Outcome::Failed`].
    pub error: Option<String>,
    /// The DHT routing table to save for the next run, when the DHT ran.
    pub dht_state: Option<Vec<u8>>,
    /// Block bytes exchanged with each peer over the whole run, by address.
    pub peers: PeerTotals,
}

/// Most peer addresses [`PeerTotals`] keeps apart; the bytes of any further address are summed
/// in [`PeerTotals::others`]. Bounds the table a long run meeting many peers grows.
pub const MAX_PEER_TOTALS: usize = 4096;

/// Block payload bytes received from and sent to each peer address over a run, every connection
/// to it counted, open or closed. Holds at most [`MAX_PEER_TOTALS`] addresses.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PeerTotals {
    /// (received, sent) by address.
    pub by_addr: BTreeMap<SocketAddr, Transferred>,
    /// The bytes of addresses past [`MAX_PEER_TOTALS`].
    pub others: Transferred,
}

/// Block payload bytes exchanged with a peer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Transferred {
    /// Bytes received from it.
    pub downloaded: u64,
    /// Bytes sent to it.
    pub uploaded: u64,
}

impl PeerTotals {
    /// Counts `downloaded` and `uploaded` bytes for `addr`.
    pub fn add(&mut self, addr: SocketAddr, downloaded: u64, uploaded: u64) {
        let slot = if self.by_addr.len() < MAX_PEER_TOTALS || self.by_addr.contains_key(&addr) {
            self.by_addr.entry(addr).or_default()
        } else {
            &mut self.others
        };
        slot.downloaded += downloaded;
        slot.uploaded += uploaded;
    }
}

/// Where the driver learned of a peer (`bt get -v` says it per connection).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PeerSource {
    /// A tracker's answer.
    Tracker,
    /// The DHT (BEP 5).
    Dht,
    /// Another peer's PEX message (BEP 11).
    Pex,
    /// Given by the user ([`Driver::add_peer`]: `--peer`, a magnet's `x.pe`).
    Direct,
    /// It connected to us.
    Incoming,
}

impl PeerSource {
    /// The lower-case name shown to users: `tracker`, `dht`, `pex`, `direct`, `incoming`.
    pub fn name(self) -> &'static str {
        match self {
            PeerSource::Tracker => "tracker",
            PeerSource::Dht => "dht",
            PeerSource::Pex => "pex",
            PeerSource::Direct => "direct",
            PeerSource::Incoming => "incoming",
        }
    }
}

/// Connected peers by where they came from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SourceCounts {
    /// From trackers.
    pub tracker: usize,
    /// From the DHT.
    pub dht: usize,
    /// From PEX.
    pub pex: usize,
    /// Given by the user.
    pub direct: usize,
    /// Connected to us.
    pub incoming: usize,
}

impl SourceCounts {
    fn count(&mut self, source: PeerSource) {
        let slot = match source {
            PeerSource::Tracker => &mut self.tracker,
            PeerSource::Dht => &mut self.dht,
            PeerSource::Pex => &mut self.pex,
            PeerSource::Direct => &mut self.direct,
            PeerSource::Incoming => &mut self.incoming,
        };
        *slot += 1;
    }
}

/// Opens a magnet's storage once its metadata has arrived (see [`Driver::new_magnet`]); an error
/// in words stops the driver with [`Outcome::Failed`].
pub type StorageOpener<D> = Box<dyn FnOnce(&Metainfo) -> Result<Arc<D>, String> + Send>;

/// A snapshot for progress displays.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Status {
    /// Verified pieces.
    pub have: u32,
    /// All pieces.
    pub pieces: u32,
    /// Bytes verified.
    pub verified_bytes: u64,
    /// Total bytes.
    pub total_bytes: u64,
    /// Block bytes received.
    pub downloaded: u64,
    /// Block bytes sent.
    pub uploaded: u64,
    /// Bytes per second received (rolling window).
    pub download_rate: u64,
    /// Bytes per second sent (rolling window).
    pub upload_rate: u64,
    /// Connected peers.
    pub peers: usize,
    /// Connected peers by where they came from.
    pub sources: SourceCounts,
    /// While a magnet's metadata is being fetched: (pieces of 16 KiB received, pieces in all, 0
    /// while no peer has said the size). `None` once the metadata is known.
    pub metadata: Option<(u32, u32)>,
    /// Writes to the disk failing (it is full, say): no new blocks are asked for until writing is
    /// tried again. The transfer goes on serving and keeps its connections; verified data stays.
    pub write_stall: Option<StallStatus>,
}

/// A write stall, as [`Status::write_stall`] shows it (see `bt_protocol::torrent::WriteStall`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StallStatus {
    /// The failure that started it, in words ("disk full writing /x/y").
    pub error: String,
    /// Which stall of this run it is: 1 for the first.
    pub episode: u64,
    /// How long until writing is tried again; `None` while it is being tried.
    pub retry_in: Option<Duration>,
    /// The wait before the latest retry (5 s at first, doubling while retries fail).
    pub backoff: Duration,
}

/// What the driver hands to its caller as things happen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Report {
    /// A periodic snapshot.
    Status(Status),
    /// A protocol event (piece verified, peer connected, ...). A [`TorrentEvent::DiskError`]
    /// comes right after a status, whose [`Status::write_stall`] says whether it stalled writes.
    Event(TorrentEvent),
    /// A connection attempt failed.
    ConnectFailed {
        /// Where to.
        addr: SocketAddr,
        /// Why.
        error: String,
    },
    /// We closed a connection (a protocol error, a ban, a duplicate, the peer went away).
    PeerClosed {
        /// The peer.
        addr: SocketAddr,
        /// Why, for a person debugging (`-v`).
        reason: String,
        /// Block bytes received from it over this connection.
        downloaded: u64,
        /// Block bytes sent to it over this connection.
        uploaded: u64,
    },
    /// A magnet's metadata arrived and checked out against its info hash; the download goes on
    /// with it. (Its trackers are the magnet's own; the info dictionary has none.)
    MetadataReceived(Box<Metainfo>),
    /// A handshake completed with a peer learned from `source`.
    PeerConnected {
        /// The peer.
        addr: SocketAddr,
        /// Where it came from.
        source: PeerSource,
    },
    /// New peers were queued to dial.
    PeersFound {
        /// Where they came from.
        source: PeerSource,
        /// From which peer, for PEX.
        from: Option<SocketAddr>,
        /// How many were new.
        count: usize,
    },
    /// A tracker answered an announce.
    TrackerAnswered {
        /// The tracker's URL.
        url: String,
        /// The event announced.
        event: AnnounceEvent,
        /// What it said.
        response: AnnounceResponse,
        /// How long until the next announce: the tracker's interval after our clamps (at least
        /// [`AnnouncerConfig::interval_floor`], at most a day); `None` when none is planned.
        next_in: Option<Duration>,
    },
    /// An announce failed.
    TrackerFailed {
        /// The tracker's URL.
        url: String,
        /// Why.
        error: TrackerError,
        /// When the next announce (to this or another tracker) happens; zero for at once.
        retry_in: Option<Duration>,
    },
    /// The DHT node (see [`Driver::start_dht`]).
    Dht(DhtReport),
    /// An announce has had no answer for [`SLOW_TRACKER_NOTICE`]; it goes on.
    TrackerSlow {
        /// The tracker's URL.
        url: String,
        /// How long it has waited.
        waited: Duration,
    },
}

/// The environment variable that, in debug builds only, makes every peer reader task panic on
/// its first read: how the tests prove that a panic in a task ends the process. Release builds
/// never read it.
pub const INJECT_PEER_PANIC_ENV: &str = "BT_TEST_INJECT_PEER_PANIC";

/// Whether peer reader tasks panic on their first read (see [`INJECT_PEER_PANIC_ENV`]).
fn inject_peer_panic() -> bool {
    cfg!(debug_assertions) && std::env::var_os(INJECT_PEER_PANIC_ENV).is_some()
}

enum Input<N: Net> {
    Read {
        conn: ConnId,
        data: Bytes,
    },
    Sent {
        conn: ConnId,
        bytes: usize,
    },
    Eof {
        conn: ConnId,
    },
    Connected {
        conn: ConnId,
        addr: SocketAddr,
        reader: N::Reader,
        writer: N::Writer,
    },
    ConnectFailed {
        conn: ConnId,
        addr: SocketAddr,
        error: std::io::Error,
    },
    Accepted {
        reader: N::Reader,
        writer: N::Writer,
        addr: SocketAddr,
    },
    Disk {
        torrent: TorrentId,
        done: DiskDone,
    },
    Announced {
        url: String,
        announced: crate::tracker::Announced,
    },
    AnnounceSlow {
        url: String,
    },
    Dht(DhtInput),
}

struct ConnTasks {
    addr: SocketAddr,
    source: PeerSource,
    writer: mpsc::UnboundedSender<Bytes>,
    reader: JoinHandle<()>,
}

/// Drives one torrent's protocol session over a [`Net`] and a [`Storage`].
pub struct Driver<N: Net, D: Storage + 'static> {
    net: N,
    /// The disk threads; `None` while a magnet's metadata is being fetched.
    disk: Option<DiskPool>,
    /// How many disk threads to start (0: inline).
    disk_threads: usize,
    /// Opens a magnet's storage when its metadata arrives.
    opener: Option<StorageOpener<D>>,
    /// Why the run cannot go on, once it cannot.
    failed: Option<String>,
    _storage: std::marker::PhantomData<D>,
    session: Session,
    torrent: TorrentId,
    tx: mpsc::Sender<Input<N>>,
    rx: mpsc::Receiver<Input<N>>,
    /// What readers read (and their end of stream), apart so it can wait while the disk is behind.
    data_tx: mpsc::Sender<Input<N>>,
    data_rx: mpsc::Receiver<Input<N>>,
    /// Bytes handed to the disk threads to write and not yet written.
    disk_backlog: usize,
    conns: BTreeMap<ConnId, ConnTasks>,
    next_conn: u64,
    listener: Option<JoinHandle<()>>,
    local_addr: Option<SocketAddr>,
    status_interval: Duration,
    clock: Clock,
    rng: Rng,
    announcer: Option<Announcer>,
    announce_key: u32,
    announce_task: Option<JoinHandle<()>>,
    udp_connections: BTreeMap<SocketAddr, UdpConnection>,
    /// Peers waiting to be dialled, and the same as a set.
    candidates: VecDeque<SocketAddr>,
    /// The queued addresses, with where each came from.
    queued: BTreeMap<SocketAddr, PeerSource>,
    /// Outgoing connections by address (dialling or open), and their addresses by connection.
    outgoing: BTreeMap<SocketAddr, ConnId>,
    outgoing_addr: BTreeMap<ConnId, (SocketAddr, PeerSource)>,
    dialing: usize,
    max_dials: usize,
    max_peers: usize,
    /// Whether the last status reported showed a write stall.
    stalled: bool,
    /// The DHT node, once started.
    dht: Option<DhtRunner>,
    /// What the DHT said since the last drain.
    dht_reports: Vec<DhtReport>,
    /// Bytes exchanged with the peers whose connections closed.
    peer_totals: PeerTotals,
    /// A magnet's file priorities, chosen when the metadata arrives.
    choose_priorities: Option<PriorityChooser>,
}

/// Chooses a magnet link's file priorities from its metadata (see
/// [`Driver::set_priorities_on_metadata`]).
pub type PriorityChooser =
    Box<dyn FnOnce(&Metainfo) -> Result<Vec<bt_protocol::torrent::FilePriority>, String> + Send>;

impl<N: Net, D: Storage + 'static> Driver<N, D> {
    /// A driver for `meta`, with the pieces `have` already verified on `disk`, doing disk work on
    /// one thread per core (at most 4).
    pub fn new(
        net: N,
        disk: Arc<D>,
        meta: &Metainfo,
        have: Bitfield,
        config: SessionConfig,
        seed: u64,
    ) -> Result<Self, DriverError> {
        Self::with_disk_threads(net, disk, meta, have, config, seed, default_disk_threads())
    }

    /// Like [`Driver::new`] with `disk_threads` disk threads; 0 does disk work inline on the
    /// driver's task (deterministic, for the simulator).
    pub fn with_disk_threads(
        net: N,
        disk: Arc<D>,
        meta: &Metainfo,
        have: Bitfield,
        config: SessionConfig,
        seed: u64,
        disk_threads: usize,
    ) -> Result<Self, DriverError> {
        let mut driver = Self::with_session(net, config, seed, disk_threads, |session| {
            let torrent = session.add_torrent(
                meta.info_hash,
                meta.info.layout.clone(),
                meta.info.pieces.clone(),
                have,
            )?;
            session.set_metadata(
                torrent,
                Bytes::copy_from_slice(&meta.info_bytes),
                meta.info.private,
            );
            Ok(torrent)
        })?;
        driver.start_disk(disk, &meta.info.layout)?;
        Ok(driver)
    }

    /// A driver for a magnet link's torrent, of which only the info hash is known: it fetches the
    /// metadata from the peers it finds (BEP 9), then calls `open` with it for the storage and
    /// downloads as for a torrent file, keeping its connections. `disk_threads` as in
    /// [`Driver::with_disk_threads`].
    pub fn new_magnet(
        net: N,
        info_hash: InfoHash,
        open: StorageOpener<D>,
        config: SessionConfig,
        seed: u64,
        disk_threads: usize,
    ) -> Result<Self, DriverError> {
        let mut driver = Self::with_session(net, config, seed, disk_threads, |session| {
            session.add_magnet(info_hash)
        })?;
        driver.opener = Some(open);
        Ok(driver)
    }

    /// The driver's state around a session of `config` holding the torrent `add` adds, before
    /// its disk starts.
    fn with_session(
        net: N,
        config: SessionConfig,
        seed: u64,
        disk_threads: usize,
        add: impl FnOnce(&mut Session) -> Result<TorrentId, bt_protocol::session::SessionError>,
    ) -> Result<Self, DriverError> {
        let max_peers = config.torrent.max_peers;
        let mut session = Session::new(config, seed);
        let torrent = add(&mut session)?;
        let (tx, rx) = mpsc::channel(INPUT_QUEUE);
        let (data_tx, data_rx) = mpsc::channel(DATA_QUEUE);
        let mut rng = Rng::new(seed).fork(0x6472_6976_6572);
        let announce_key = rng.next_u32();
        Ok(Driver {
            net,
            disk: None,
            disk_threads,
            opener: None,
            failed: None,
            _storage: std::marker::PhantomData,
            session,
            torrent,
            tx,
            rx,
            data_tx,
            data_rx,
            disk_backlog: 0,
            conns: BTreeMap::new(),
            next_conn: 1,
            listener: None,
            local_addr: None,
            status_interval: Duration::from_secs(1),
            clock: Clock::start(),
            rng,
            announcer: None,
            announce_key,
            announce_task: None,
            udp_connections: BTreeMap::new(),
            candidates: VecDeque::new(),
            queued: BTreeMap::new(),
            outgoing: BTreeMap::new(),
            outgoing_addr: BTreeMap::new(),
            dialing: 0,
            max_dials: MAX_DIALS,
            max_peers,
            stalled: false,
            dht: None,
            dht_reports: Vec::new(),
            peer_totals: PeerTotals::default(),
            choose_priorities: None,
        })
    }

    /// Starts the disk threads (or the inline disk) over `disk`.
    fn start_disk(&mut self, disk: Arc<D>, layout: &TorrentLayout) -> Result<(), DriverError> {
        let (to_driver, torrent) = (self.tx.clone(), self.torrent);
        self.disk = Some(match self.disk_threads {
            0 => DiskPool::inline(disk, layout),
            workers => DiskPool::start(disk, layout, workers, move |done| {
                // On a disk thread: wait for room in the driver's queue. After the driver is
                // gone the result has nowhere to go.
                let _ = to_driver.blocking_send(Input::Disk { torrent, done });
            })
            .map_err(DriverError::Threads)?,
        });
        Ok(())
    }

    /// Most outgoing connects in progress at once (default [`MAX_DIALS`]; at least 1).
    pub fn set_max_half_open(&mut self, max: usize) {
        self.max_dials = max.max(1);
    }

    /// How often [`Report::Status`] is produced (default 1 s).
    pub fn set_status_interval(&mut self, every: Duration) {
        self.status_interval = every;
    }

    /// Starts accepting peers on `addr`; returns the bound address.
    pub async fn listen(&mut self, addr: SocketAddr) -> std::io::Result<SocketAddr> {
        let mut listener = self.net.listen(addr).await?;
        let local = N::local_addr(&listener)?;
        let tx = self.tx.clone();
        self.listener = Some(tokio::spawn(async move {
            loop {
                match N::accept(&mut listener).await {
                    Ok((reader, writer, addr)) => {
                        if tx
                            .send(Input::Accepted {
                                reader,
                                writer,
                                addr,
                            })
                            .await
                            .is_err()
                        {
                            return;
                        }
                    }
                    // A failed accept (say, out of file descriptors) must not spin.
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        }));
        self.local_addr = Some(local);
        // Told to peers in our extension handshake, so PEX can pass on where we listen.
        self.session.set_listen_port(local.port());
        Ok(local)
    }

    /// The address peers can reach us on, once listening.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.local_addr
    }

    /// Starts a DHT node (BEP 5) on UDP at `setup.bind`, finding peers for the torrent and
    /// announcing it (with our listening port, so call [`Driver::listen`] first); returns the
    /// bound address. Peers that send a BEP 5 `port` message are tried as nodes too.
    pub async fn start_dht(&mut self, setup: DhtSetup) -> std::io::Result<SocketAddr> {
        let info_hash = self
            .session
            .torrent(self.torrent)
            .expect("the driver's torrent exists")
            .info_hash();
        let port = self.local_addr.map_or(0, |a| a.port());
        let now = self.now();
        let (runner, local) = DhtRunner::start(
            &self.net,
            setup,
            info_hash,
            port,
            now,
            &mut self.rng,
            self.tx.clone(),
            Input::Dht,
            &mut self.dht_reports,
        )
        .await?;
        self.dht = Some(runner);
        self.session.set_dht_port(local.port());
        Ok(local)
    }

    /// Announces to these trackers (BEP 12 tiers, each a list of URLs) while running: `started`
    /// at the start, `completed` when the download completes, `stopped` on the way out.
    pub fn set_trackers(&mut self, tiers: Vec<Vec<String>>, config: AnnouncerConfig) {
        self.announcer = Some(Announcer::new(config, tiers, &mut self.rng));
    }

    /// The trackers' URLs, tier by tier, in the order they will be tried.
    pub fn trackers(&self) -> Vec<Vec<String>> {
        self.announcer.as_ref().map_or_else(Vec::new, |a| {
            a.tiers()
                .into_iter()
                .map(|t| t.into_iter().map(str::to_owned).collect())
                .collect()
        })
    }

    /// Queues a peer to dial; it is dialled when the torrent has room. Known addresses (queued,
    /// dialling or connected) and our own listening address are ignored.
    pub fn add_peer(&mut self, addr: SocketAddr) {
        self.add_candidate(addr, PeerSource::Direct);
    }

    /// Queues a peer learned from `source`; returns whether it was new.
    fn add_candidate(&mut self, addr: SocketAddr, source: PeerSource) -> bool {
        // Our own listening address (a tracker lists us too). On a wildcard listen only the
        // loopback form is known to be us; another host may well use the same port, and a
        // connection to ourselves by a public address is caught by the peer id check.
        let own = self.local_addr.is_some_and(|l| {
            l.port() == addr.port()
                && (l.ip() == addr.ip() || (l.ip().is_unspecified() && addr.ip().is_loopback()))
        });
        if own
            || addr.port() == 0
            || self.queued.contains_key(&addr)
            || self.outgoing.contains_key(&addr)
            || self.candidates.len() >= MAX_CANDIDATES
        {
            return false;
        }
        self.queued.insert(addr, source);
        self.candidates.push_back(addr);
        true
    }

    /// Dials queued peers while there is room for more.
    fn dial_more(&mut self) {
        let peers = self
            .session
            .torrent(self.torrent)
            .map_or(0, |t| t.peer_count());
        while self.dialing < self.max_dials
            && peers + self.dialing < self.max_peers
            && let Some(addr) = self.candidates.pop_front()
        {
            let source = self.queued.remove(&addr).unwrap_or(PeerSource::Direct);
            self.dial(addr, source);
        }
    }

    fn dial(&mut self, addr: SocketAddr, source: PeerSource) {
        let conn = self.alloc_conn();
        self.outgoing.insert(addr, conn);
        self.outgoing_addr.insert(conn, (addr, source));
        self.dialing += 1;
        let net = self.net.clone();
        let tx = self.tx.clone();
        tokio::spawn(async move {
            let input = match tokio::time::timeout(CONNECT_TIMEOUT, net.connect(addr)).await {
                Ok(Ok((reader, writer))) => Input::Connected {
                    conn,
                    addr,
                    reader,
                    writer,
                },
                Ok(Err(error)) => Input::ConnectFailed { conn, addr, error },
                Err(_) => Input::ConnectFailed {
                    conn,
                    addr,
                    error: std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "no answer within 10 s",
                    ),
                },
            };
            let _ = tx.send(input).await;
        });
    }

    fn forget_outgoing(&mut self, conn: ConnId) {
        if let Some((addr, _)) = self.outgoing_addr.remove(&conn) {
            self.outgoing.remove(&addr);
        }
    }

    fn alloc_conn(&mut self) -> ConnId {
        let c = ConnId(self.next_conn);
        self.next_conn += 1;
        c
    }

    fn now(&self) -> ProtoInstant {
        self.clock.now()
    }

    fn deadline(&self, at: ProtoInstant) -> tokio::time::Instant {
        self.clock.deadline(at)
    }

    /// A snapshot of progress.
    pub fn status(&self) -> Status {
        let t = self
            .session
            .torrent(self.torrent)
            .expect("the driver's torrent exists");
        let stats = t.stats();
        let (download_rate, upload_rate) = t.rates(self.now());
        Status {
            have: t.have().count(),
            pieces: t.layout().piece_count(),
            verified_bytes: t
                .have()
                .ones()
                .filter_map(|i| t.layout().piece(i))
                .map(|p| u64::from(t.layout().piece_len(p)))
                .sum(),
            total_bytes: t.layout().total_length(),
            downloaded: stats.downloaded,
            uploaded: stats.uploaded,
            download_rate,
            upload_rate,
            peers: t.peer_count(),
            sources: self
                .conns
                .values()
                .fold(SourceCounts::default(), |mut c, tasks| {
                    c.count(tasks.source);
                    c
                }),
            metadata: t.metadata_progress(),
            write_stall: t.write_stall().map(|s| StallStatus {
                error: s.error.to_string(),
                episode: s.episode,
                retry_in: s.retry_at.map(|at| at.saturating_since(self.now())),
                backoff: s.backoff,
            }),
        }
    }

    fn start_conn(
        &mut self,
        conn: ConnId,
        addr: SocketAddr,
        source: PeerSource,
        mut reader: N::Reader,
        mut writer: N::Writer,
    ) {
        let (wtx, mut wrx) = mpsc::unbounded_channel::<Bytes>();
        let tx = self.tx.clone();
        tokio::spawn(async move {
            while let Some(bytes) = wrx.recv().await {
                if writer.write_all(&bytes).await.is_err() {
                    let _ = tx.send(Input::Eof { conn }).await;
                    return;
                }
                if tx
                    .send(Input::Sent {
                        conn,
                        bytes: bytes.len(),
                    })
                    .await
                    .is_err()
                {
                    return;
                }
            }
            let _ = writer.shutdown().await;
        });
        let tx = self.data_tx.clone();
        let inject_panic = inject_peer_panic();
        let reader_task = tokio::spawn(async move {
            let mut buf = BytesMut::with_capacity(READ_CHUNK);
            loop {
                buf.reserve(READ_CHUNK);
                let mut limited = (&mut reader).take(READ_CHUNK as u64);
                match limited.read_buf(&mut buf).await {
                    Ok(0) | Err(_) => {
                        let _ = tx.send(Input::Eof { conn }).await;
                        return;
                    }
                    Ok(_) if inject_panic => {
                        panic!("injected into a peer reader task ({INJECT_PEER_PANIC_ENV})")
                    }
                    Ok(_) => {
                        let data = buf.split().freeze();
                        if tx.send(Input::Read { conn, data }).await.is_err() {
                            return;
                        }
                    }
                }
            }
        });
        self.conns.insert(
            conn,
            ConnTasks {
                addr,
                source,
                writer: wtx,
                reader: reader_task,
            },
        );
    }

    fn close_conn(&mut self, conn: ConnId) {
        self.forget_outgoing(conn);
        if let Some(tasks) = self.conns.remove(&conn) {
            tasks.reader.abort();
            // Dropping the sender ends the writer task after it flushes what is queued.
            drop(tasks.writer);
        }
    }

    /// Carries out every pending output; returns events for the caller.
    fn process_outputs(&mut self, reports: &mut Vec<Report>) {
        while let Some(out) = self.session.poll_output() {
            match out {
                Output::Transmit { conn, bytes } => {
                    if let Some(tasks) = self.conns.get(&conn) {
                        let _ = tasks.writer.send(bytes);
                    }
                }
                Output::Close { conn, reason } => {
                    // A torrent's close is reported with its byte counts by the
                    // `TorrentEvent::PeerClosed` right behind it.
                    if !matches!(reason, SessionCloseReason::Torrent(_))
                        && let Some(tasks) = self.conns.get(&conn)
                    {
                        reports.push(Report::PeerClosed {
                            addr: tasks.addr,
                            reason: format!("{reason:?}"),
                            downloaded: 0,
                            uploaded: 0,
                        });
                    }
                    self.close_conn(conn);
                }
                // One torrent per driver: its pool does the work.
                Output::Disk { op, torrent } => {
                    if let DiskOp::Write { block, .. } = &op {
                        self.disk_backlog += block.len as usize;
                    }
                    // The protocol asks for no disk work before a magnet's metadata (whose event
                    // comes first and opens the disk); after a failed open nothing goes on.
                    let done = match &mut self.disk {
                        Some(disk) => disk.submit(op),
                        None => None,
                    };
                    if let Some(done) = done {
                        self.disk_done(torrent, done);
                    }
                }
                Output::Event { event, .. } => self.handle_event(event, reports),
            }
        }
        if self.stalled && self.write_stall_ended() {
            // Said at once, not at the next tick.
            self.stalled = false;
            reports.push(Report::Status(self.status()));
        }
    }

    fn handle_event(&mut self, event: TorrentEvent, reports: &mut Vec<Report>) {
        match &event {
            TorrentEvent::Complete => {
                if let Some(announcer) = &mut self.announcer {
                    announcer.completed(self.clock.now());
                }
            }
            TorrentEvent::DiskError(_) => {
                // Whether it started a write stall, and until when, the status says.
                let status = self.status();
                self.stalled = status.write_stall.is_some();
                reports.push(Report::Status(status));
            }
            TorrentEvent::PeerConnected { conn, .. } => {
                if let Some(tasks) = self.conns.get(conn) {
                    reports.push(Report::PeerConnected {
                        addr: tasks.addr,
                        source: tasks.source,
                    });
                }
            }
            TorrentEvent::PeersLearned { from, peers } => {
                let count = peers
                    .iter()
                    .filter(|&&p| self.add_candidate(p, PeerSource::Pex))
                    .count();
                reports.push(Report::PeersFound {
                    source: PeerSource::Pex,
                    from: self.conns.get(from).map(|t| t.addr),
                    count,
                });
            }
            TorrentEvent::MetadataReceived => self.metadata_received(reports),
            TorrentEvent::DhtPort { addr } => {
                let now = self.now();
                if let Some(dht) = &mut self.dht {
                    dht.add_node(now, *addr);
                }
            }
            TorrentEvent::MetadataInvalid(why) => {
                self.failed = Some(format!("the torrent's metadata is unusable: {why}"));
            }
            TorrentEvent::PeerClosed {
                addr,
                reason,
                downloaded,
                uploaded,
                ..
            } => {
                self.peer_totals.add(*addr, *downloaded, *uploaded);
                // The peer's own end of stream is not a close of ours.
                if *reason != CloseReason::Disconnected {
                    reports.push(Report::PeerClosed {
                        addr: *addr,
                        reason: format!("{:?}", SessionCloseReason::Torrent(reason.clone())),
                        downloaded: *downloaded,
                        uploaded: *uploaded,
                    });
                }
            }
            _ => {}
        }
        reports.push(Report::Event(event));
    }

    /// A magnet's metadata arrived: opens its storage and starts the disk.
    fn metadata_received(&mut self, reports: &mut Vec<Report>) {
        let Some(info) = self
            .session
            .torrent(self.torrent)
            .and_then(|t| t.info_bytes())
            .cloned()
        else {
            return;
        };
        let meta = match Metainfo::from_info_bytes(&info) {
            Ok(meta) => meta,
            Err(e) => {
                self.failed = Some(format!("the torrent's metadata is unusable: {e}"));
                return;
            }
        };
        let Some(open) = self.opener.take() else {
            return;
        };
        match open(&meta) {
            Ok(storage) => {
                if let Err(e) = self.start_disk(storage, &meta.info.layout) {
                    self.failed = Some(e.to_string());
                    return;
                }
            }
            Err(e) => {
                self.failed = Some(e);
                return;
            }
        }
        if let Some(choose) = self.choose_priorities.take() {
            let chosen =
                choose(&meta).and_then(|p| self.set_file_priorities(&p).map_err(|e| e.to_string()));
            if let Err(e) = chosen {
                self.failed = Some(e);
                return;
            }
        }
        if meta.info.private && self.dht.take().is_some() {
            // BEP 27: a private torrent finds peers through its trackers only; the node's tasks
            // stop as it drops.
            self.dht_reports
                .push(DhtReport::Stopped("the torrent is private".into()));
        }
        reports.push(Report::MetadataReceived(Box::new(meta)));
    }

    fn write_stall_ended(&self) -> bool {
        self.session
            .torrent(self.torrent)
            .is_some_and(|t| t.write_stall().is_none())
    }

    fn handle_input(&mut self, input: Input<N>, reports: &mut Vec<Report>) {
        let now = self.now();
        match input {
            Input::Read { conn, data } => self.session.handle_bytes(now, conn, &data),
            Input::Sent { conn, bytes } => self.session.handle_sent(now, conn, bytes),
            Input::Eof { conn } => {
                self.close_conn(conn);
                self.session.handle_disconnect(now, conn);
            }
            Input::Connected {
                conn,
                addr,
                reader,
                writer,
            } => {
                self.dialing -= 1;
                let source = self
                    .outgoing_addr
                    .get(&conn)
                    .map_or(PeerSource::Direct, |(_, s)| *s);
                self.start_conn(conn, addr, source, reader, writer);
                if self.session.connect(now, self.torrent, conn, addr).is_err() {
                    self.close_conn(conn);
                }
            }
            Input::ConnectFailed { conn, addr, error } => {
                self.dialing -= 1;
                self.forget_outgoing(conn);
                reports.push(Report::ConnectFailed {
                    addr,
                    error: error.to_string(),
                });
            }
            Input::Accepted {
                reader,
                writer,
                addr,
            } => {
                let conn = self.alloc_conn();
                self.start_conn(conn, addr, PeerSource::Incoming, reader, writer);
                if self.session.accept(now, conn, addr).is_err() {
                    self.close_conn(conn);
                }
            }
            Input::Disk { torrent, done } => self.disk_done(torrent, done),
            Input::Announced { url, announced } => self.handle_announced(url, announced, reports),
            Input::AnnounceSlow { url } => reports.push(Report::TrackerSlow {
                url,
                waited: SLOW_TRACKER_NOTICE,
            }),
            Input::Dht(input) => {
                if let Some(dht) = &mut self.dht {
                    dht.handle(now, input, &mut self.dht_reports);
                }
            }
        }
    }

    fn disk_done(&mut self, torrent: TorrentId, done: DiskDone) {
        if let DiskDone::Written { block, .. } = &done {
            self.disk_backlog = self.disk_backlog.saturating_sub(block.len as usize);
        }
        let now = self.now();
        self.session.handle_disk(now, torrent, done);
    }

    fn handle_announced(
        &mut self,
        url: String,
        announced: crate::tracker::Announced,
        reports: &mut Vec<Report>,
    ) {
        self.announce_task = None;
        let now = self.now();
        let Some(announcer) = &mut self.announcer else {
            return;
        };
        let event = announcer
            .in_flight()
            .map_or(AnnounceEvent::None, |(_, e)| e);
        if let Some((addr, connection)) = announced.udp
            && (self.udp_connections.len() < bt_protocol::tracker::MAX_TRACKERS
                || self.udp_connections.contains_key(&addr))
        {
            self.udp_connections.insert(addr, connection);
        }
        match announced.result {
            Ok(response) => {
                announcer.handle_success(now, &url, &response);
                let next_in = announcer.poll_timeout().map(|at| at.saturating_since(now));
                if event != AnnounceEvent::Stopped {
                    for &peer in &response.peers {
                        self.add_candidate(peer, PeerSource::Tracker);
                    }
                }
                reports.push(Report::TrackerAnswered {
                    url,
                    event,
                    response,
                    next_in,
                });
            }
            Err(error) => {
                announcer.handle_failure(now, &url, &error);
                let retry_in = announcer.poll_timeout().map(|at| at.saturating_since(now));
                reports.push(Report::TrackerFailed {
                    url,
                    error,
                    retry_in,
                });
            }
        }
    }

    /// Starts the announce the announcer wants now, if any.
    fn pump_trackers(&mut self) {
        let now = self.now();
        let Some(announcer) = &mut self.announcer else {
            return;
        };
        let Some(announce) = announcer.poll_announce(now) else {
            return;
        };
        let status = self.status();
        // Before a magnet's metadata the size is unknown; what is left must not read as zero, or
        // the tracker takes us for a seeder (libtorrent sends one block's worth too).
        let left = if status.metadata.is_some() {
            u64::from(bt_protocol::metainfo::BLOCK_SIZE)
        } else {
            self.session
                .torrent(self.torrent)
                .map_or(status.total_bytes - status.verified_bytes, |t| {
                    t.wanted_left()
                })
        };
        let request = AnnounceRequest {
            info_hash: self
                .session
                .torrent(self.torrent)
                .expect("the driver's torrent exists")
                .info_hash(),
            peer_id: self.session.peer_id(),
            port: self.local_addr.map_or(0, |a| a.port()),
            uploaded: status.uploaded,
            downloaded: status.downloaded,
            left,
            event: announce.event,
            numwant: Some(if announce.event == AnnounceEvent::Stopped {
                0
            } else {
                NUMWANT
            }),
            key: self.announce_key,
            tracker_id: announce.tracker_id,
        };
        let net = self.net.clone();
        let tx = self.tx.clone();
        let clock = self.clock;
        let cached = self.udp_connections.clone();
        let mut rng = self.rng.fork(self.next_conn);
        self.announce_task = Some(tokio::spawn(async move {
            let url = announce.url;
            let work = crate::tracker::announce(
                &net,
                clock,
                &announce.tracker,
                request,
                |addr| cached.get(&addr).copied(),
                &mut rng,
            );
            tokio::pin!(work);
            let announced = tokio::select! {
                biased;
                announced = &mut work => announced,
                _ = tokio::time::sleep(SLOW_TRACKER_NOTICE) => {
                    let _ = tx.send(Input::AnnounceSlow { url: url.clone() }).await;
                    work.await
                }
            };
            let _ = tx.send(Input::Announced { url, announced }).await;
        }));
    }

    /// Starts a due DHT announce, sends its datagrams, and queues the peers it found.
    fn pump_dht(&mut self, reports: &mut Vec<Report>) {
        let Some(dht) = &mut self.dht else {
            return;
        };
        let now = self.clock.now();
        let mut peers = Vec::new();
        dht.pump(now, &mut self.dht_reports, &mut peers);
        let count = peers
            .into_iter()
            .filter(|&p| self.add_candidate(p, PeerSource::Dht))
            .count();
        if count > 0 {
            reports.push(Report::PeersFound {
                source: PeerSource::Dht,
                from: None,
                count,
            });
        }
        reports.extend(self.dht_reports.drain(..).map(Report::Dht));
    }

    /// Each file's priority (see [`bt_protocol::torrent::Torrent::set_file_priorities`]); with
    /// [`StopWhen::Complete`] the run ends once every wanted piece is verified. For a magnet
    /// link's torrent, call it from [`Driver::set_priorities_on_metadata`]'s chooser instead.
    pub fn set_file_priorities(
        &mut self,
        priorities: &[bt_protocol::torrent::FilePriority],
    ) -> Result<(), bt_protocol::session::SessionError> {
        let now = self.now();
        self.session
            .set_file_priorities(now, self.torrent, priorities)
    }

    /// For a magnet link's torrent: once the metadata arrives and the storage is open, `choose`
    /// gives the file priorities (an `Err` stops the run with that message).
    pub fn set_priorities_on_metadata(&mut self, choose: PriorityChooser) {
        self.choose_priorities = Some(choose);
    }

    /// Whether every wanted piece is verified (every piece, unless file priorities skip some).
    pub fn wanted_complete(&self) -> bool {
        self.session
            .torrent(self.torrent)
            .is_some_and(|t| t.wanted_complete())
    }

    /// Whether every piece is verified.
    pub fn is_complete(&self) -> bool {
        self.session
            .torrent(self.torrent)
            .is_some_and(|t| t.is_complete())
    }

    /// Runs until `stop` says so, or `interrupt` resolves. `report` hears every event and a status
    /// snapshot every status interval.
    pub async fn run(
        mut self,
        stop: StopWhen,
        interrupt: impl std::future::Future<Output = ()>,
        mut report: impl FnMut(&Report),
    ) -> Finished {
        let mut reports = Vec::new();
        let mut tick = tokio::time::interval(self.status_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(interrupt);
        if let Some(announcer) = &mut self.announcer {
            announcer.started(self.clock.now());
        }
        let outcome = loop {
            self.process_outputs(&mut reports);
            self.pump_trackers();
            self.pump_dht(&mut reports);
            self.dial_more();
            for r in reports.drain(..) {
                report(&r);
            }
            if self.failed.is_some() {
                break Outcome::Failed;
            }
            if stop == StopWhen::Complete && self.wanted_complete() {
                break Outcome::Complete;
            }
            let next = [
                self.session.poll_timeout(),
                self.announcer.as_ref().and_then(Announcer::poll_timeout),
                self.dht.as_ref().and_then(DhtRunner::poll_timeout),
            ]
            .into_iter()
            .flatten()
            .min();
            let deadline = next
                .map(|t| self.deadline(t))
                .unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(3600));
            tokio::select! {
                biased;
                _ = &mut interrupt => break Outcome::Interrupted,
                Some(input) = self.rx.recv() => self.handle_input(input, &mut reports),
                Some(input) = self.data_rx.recv(), if self.disk_backlog < MAX_DISK_BACKLOG => {
                    self.handle_input(input, &mut reports);
                }
                _ = tokio::time::sleep_until(deadline) => {
                    let now = self.now();
                    self.session.handle_timeout(now);
                    if let Some(dht) = &mut self.dht {
                        dht.handle_timeout(now);
                    }
                }
                _ = tick.tick() => report(&Report::Status(self.status())),
            }
        };
        let status = self.status();
        report(&Report::Status(status.clone()));
        let have = self
            .session
            .torrent(self.torrent)
            .expect("the driver's torrent exists")
            .have()
            .clone();
        let peers = self.peer_totals();
        self.shutdown();
        self.stop_trackers(&mut report).await;
        Finished {
            outcome,
            status,
            have,
            error: self.failed.take(),
            dht_state: self.dht.as_ref().map(DhtRunner::state),
            peers,
        }
    }

    /// The bytes exchanged with every peer so far: the closed connections' and the open ones'.
    pub fn peer_totals(&self) -> PeerTotals {
        let mut totals = self.peer_totals.clone();
        if let Some(t) = self.session.torrent(self.torrent) {
            for (conn, tasks) in &self.conns {
                if let Some(peer) = t.peer(*conn) {
                    let (downloaded, uploaded) = peer.totals();
                    totals.add(tasks.addr, downloaded, uploaded);
                }
            }
        }
        totals
    }

    /// Announces `stopped` (to the last tracker that answered), waiting at most
    /// [`STOP_ANNOUNCE_TIMEOUT`].
    async fn stop_trackers(&mut self, report: &mut impl FnMut(&Report)) {
        let Some(announcer) = &mut self.announcer else {
            return;
        };
        announcer.stopped(self.clock.now());
        let deadline = tokio::time::Instant::now() + STOP_ANNOUNCE_TIMEOUT;
        let mut reports = Vec::new();
        loop {
            self.pump_trackers();
            for r in reports.drain(..) {
                report(&r);
            }
            if self.announcer.as_ref().is_none_or(Announcer::is_stopped) {
                break;
            }
            tokio::select! {
                biased;
                _ = tokio::time::sleep_until(deadline) => break,
                input = self.rx.recv() => match input {
                    Some(Input::Announced { url, announced }) => {
                        self.handle_announced(url, announced, &mut reports);
                    }
                    Some(_) => {} // peers are closed; the rest no longer matters
                    None => break,
                },
            }
        }
        if let Some(task) = self.announce_task.take() {
            task.abort();
        }
    }

    fn shutdown(&mut self) {
        if let Some(l) = self.listener.take() {
            l.abort();
        }
        let conns: Vec<ConnId> = self.conns.keys().copied().collect();
        for c in conns {
            self.close_conn(c);
        }
    }
}
