//! [`Driver`]: runs the protocol [`Client`] on tokio: sockets, tasks, the disk threads, name
//! resolution and TLS. Every protocol decision (whom to dial and when to dial again, when to
//! announce what, the DHT's schedule) is the client's; the driver carries it out.
//!
//! One driver task owns the client (no locks around protocol state). Each connection has a
//! reader task (socket -> driver, through a bounded channel, so a busy driver slows readers down)
//! and a writer task (driver -> socket; after each write it reports the bytes sent, which is the
//! protocol's backpressure, see `Session::handle_sent`). Each connect the client asks for runs as
//! a task until the client's connect timeout closes it. Disk work runs on the disk threads of one
//! [`DiskPool`] per torrent (which hash pieces as they are written) and comes back as an input.
//! Time comes only from `tokio::time`, so a simulated clock drives it in the simulator; every
//! `select!` is `biased;` for determinism. Disk work goes to a [`Storage`]
//! ([`crate::storage::FsStorage`] for real files).
//!
//! Torrents: any number, added with [`Driver::add_torrent`] and [`Driver::add_magnet`] (or the
//! one-torrent constructors), each with its own storage. Magnets: the torrent starts with only
//! its info hash; the protocol fetches the metadata from peers, and when it arrives the driver
//! opens the storage through the caller's [`StorageOpener`] and starts the disk; the connections
//! stay.
//!
//! Commands: while it runs, the driver takes [`Command`]s through one bounded channel
//! ([`Driver::commands`]) and hands each to the client. An HTTP response streaming a torrent's
//! bytes ([`crate::serve`]) says where it reads (the client's picker then fetches the pieces
//! that reader needs first); a caller pauses and resumes a torrent, and the driver reports each
//! change ([`Report::Paused`], [`Report::Resumed`]) once the client has made it (its connections
//! closed, or its dialling begun again).
//!
//! Closing a connection is graceful, so a peer gets every byte queued for it: the writer task
//! writes what is queued, then half-closes (FIN); the reader task stops handing bytes to the
//! client and reads and drops whatever the peer still sends until the peer closes too. Closing a
//! socket with unread bytes in it would send a reset instead, and a reset makes the peer's system
//! drop data it has received but its program has not read yet: the last blocks before a seeding
//! goal, say. Both tasks give up [`LINGER`] after the close; a run's end waits for them that long
//! at most.
//!
//! Trackers: each announce the client asks for runs as a task ([`crate::tracker::announce`])
//! and comes back as an input. The DHT node is the client's (`runtime/src/dht.rs`).
//!
//! UDP: one socket ([`crate::udp`]) carries every datagram of the client, the DHT's and uTP's,
//! open whenever either is on; with uTP on it is bound with the listener, to the same address
//! and port ([`Driver::listen`]). uTP connections live inside the client: the driver only moves
//! their datagrams (`handle_datagrams`, `Output::Datagram`), taking every batch the receive
//! task has waiting, up to [`DATAGRAM_BATCH`] datagrams, as one input (one drain, and one uTP
//! acknowledgement per connection, for all of them). A run's end keeps the socket going until the client's uTP
//! sockets have closed (FINs both ways acknowledged, or reset) or [`LINGER`] has passed.
//!
//! Bounds: the input channel holds [`INPUT_QUEUE`] messages; each read is at most [`READ_CHUNK`]
//! bytes; a writer's queue is bounded by the protocol (blocks are queued only under its send-buffer
//! watermark; control messages are small and few per event); connect tasks are bounded by the
//! client's half-open limit, announce tasks by one per torrent; the command channel
//! ([`Driver::commands`]) holds [`COMMAND_QUEUE`] commands; the pause and resume reports waiting
//! for the caller are at most one per command taken, and go out before the next input is taken;
//! everything else is the client's.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bt_protocol::client::{
    AnnounceId, Client, ClientCloseReason, ClientConfig, Event as ClientEvent, GoalReached, Output,
    SeedGoal, SeedProgress,
};
use bt_protocol::io::{ConnId, DiskDone, DiskOp};
use bt_protocol::metainfo::{InfoHash, Metainfo, TorrentLayout};
use bt_protocol::rng::Rng;
use bt_protocol::session::{SessionCloseReason, TorrentId};
use bt_protocol::time::Instant as ProtoInstant;
use bt_protocol::torrent::{Bitfield, CloseReason, ReadPosition, ReaderId, TorrentEvent};
use bt_protocol::tracker::{AnnounceResponse, Event as AnnounceEvent, TrackerError};
use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

pub use bt_protocol::client::{PeerSource, SourceCounts, Transport};

use crate::dht::{DhtReport, DhtSetup, Resolved, encode_state, restore_node, spawn_resolver};
use crate::disk::DiskPool;
use crate::net::Net;
use crate::storage::Storage;
use crate::tracker::Clock;
use crate::udp::{ClientUdp, RECV_QUEUE, ReceivedBatch};

/// Messages the input channel holds before readers wait.
pub const INPUT_QUEUE: usize = 256;

/// The most bytes one socket read hands to the driver.
pub const READ_CHUNK: usize = 64 * 1024;

/// How long a closed connection's tasks may go on after the close: to write what was queued for
/// the peer, and to wait for the peer to close its side (see the module docs).
pub const LINGER: Duration = Duration::from_secs(2);

/// Reads (of at most [`READ_CHUNK`] bytes) the data channel holds before readers wait.
pub const DATA_QUEUE: usize = 64;

/// While this many bytes wait to be written, the driver reads no more from peers (TCP then slows
/// them down; uTP datagrams wait too, and a uTP sender backs off when the kernel drops them), so
/// memory stays bounded when the network outpaces the disk.
pub const MAX_DISK_BACKLOG: usize = 16 * 1024 * 1024;

/// Most datagrams handed to the client per input before its outputs are drained: waiting
/// batches are joined until they reach it (one batch larger than it goes whole).
pub const DATAGRAM_BATCH: usize = 128;

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
    /// As soon as every piece of every torrent is verified (`bt get`).
    Complete,
    /// On interrupt, or once every torrent has reached its seeding goal (`bt seed`, `bt get
    /// --seed`).
    Interrupted,
}

/// How [`Driver::run`] ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Every piece is verified.
    Complete,
    /// Ctrl-C (or the stop handle) ended it first.
    Interrupted,
    /// A torrent could not go on: its [`TorrentFinished::error`] says why (a magnet's metadata
    /// parsed but named unsafe paths, or its files could not be opened).
    Failed,
    /// Every torrent reached its seeding goal ([`Driver::set_seed_goal`]) and stopped.
    SeedGoalsReached,
}

/// What [`Driver::run`] returns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finished {
    /// Why it stopped.
    pub outcome: Outcome,
    /// Each torrent's end, in the order added.
    pub torrents: Vec<TorrentFinished>,
    /// The DHT routing table to save for the next run, when the DHT ran.
    pub dht_state: Option<Vec<u8>>,
}

impl Finished {
    /// Torrent `id`'s end.
    pub fn torrent(&self, id: TorrentId) -> Option<&TorrentFinished> {
        self.torrents.iter().find(|t| t.id == id)
    }

    /// The first torrent's end (the only one of a one-torrent driver).
    pub fn first(&self) -> Option<&TorrentFinished> {
        self.torrents.first()
    }
}

/// How one torrent ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TorrentFinished {
    /// The torrent.
    pub id: TorrentId,
    /// The last snapshot.
    pub status: Status,
    /// The verified pieces, for the resume file.
    pub have: Bitfield,
    /// Why it failed, for [`Outcome::Failed`].
    pub error: Option<String>,
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
    /// Progress toward seeding goals over every run, for a torrent with a goal or with progress
    /// restored ([`Driver::restore_seed_progress`]): what to save for the next run.
    pub seeding: Option<SeedProgress>,
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

impl Status {
    /// Bytes of the wanted pieces not verified yet.
    pub fn left(&self) -> u64 {
        self.total_bytes.saturating_sub(self.verified_bytes)
    }

    /// How long the rest of the wanted pieces take at the recent download rate, rounded up to a
    /// second: zero when nothing is left, `None` when unknown (no data flowing, or a magnet's
    /// size not known yet).
    pub fn eta(&self) -> Option<Duration> {
        let left = self.left();
        if self.metadata.is_some() {
            return None;
        }
        if left == 0 {
            return Some(Duration::ZERO);
        }
        (self.download_rate > 0).then(|| Duration::from_secs(left.div_ceil(self.download_rate)))
    }
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
        /// The transport of the last attempt (a dial tries each of its transports first).
        transport: Transport,
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
        /// Whether the stream runs under RC4 (message stream encryption).
        encrypted: bool,
        /// What carries it.
        transport: Transport,
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
        /// `AnnouncerConfig::interval_floor`, at most a day); `None` when none is planned.
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
    /// The torrent paused ([`Command::Pause`], [`Driver::pause`]): its connections are closed
    /// and it requests, serves and dials nothing until it resumes.
    Paused,
    /// The paused torrent runs again ([`Command::Resume`], [`Driver::resume`]): `started` is
    /// being announced and its peer list dialled.
    Resumed,
    /// The torrent reached its seeding goal and stops (see [`Driver::set_seed_goal`]).
    SeedGoalReached {
        /// Which goal.
        reached: GoalReached,
        /// Block bytes uploaded this run.
        uploaded: u64,
        /// How long it seeded.
        seeded: Duration,
    },
    /// An announce has had no answer for
    /// [`SLOW_TRACKER_NOTICE`](bt_protocol::client::SLOW_TRACKER_NOTICE); it goes on.
    TrackerSlow {
        /// The tracker's URL.
        url: String,
        /// How long it has waited.
        waited: Duration,
    },
}

/// A command to a running driver, sent through the channel [`Driver::commands`] returns; the
/// driver hands each to the client as it comes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    /// A reader of the torrent's bytes (an HTTP response being streamed, see [`crate::serve`])
    /// is at `position`: a new reader, or one that moved ([`Client::set_reader`]).
    SetReader {
        /// The torrent it reads.
        torrent: TorrentId,
        /// The reader, as its owner numbers them.
        reader: ReaderId,
        /// Where it reads next, and where it stops.
        position: ReadPosition,
    },
    /// The reader is done: its response ended or its client went away
    /// ([`Client::remove_reader`]).
    RemoveReader {
        /// The torrent it read.
        torrent: TorrentId,
        /// The reader.
        reader: ReaderId,
    },
    /// Pause the torrent ([`Client::pause`]): its connections close, nothing is requested,
    /// served or dialled, trackers hear `stopped`; its state stays. The driver reports
    /// [`Report::Paused`] once it is (not for a torrent that was not running).
    Pause {
        /// The torrent.
        torrent: TorrentId,
    },
    /// Resume the paused torrent ([`Client::resume`]): `started` is announced and its peer list
    /// dialled again. The driver reports [`Report::Resumed`] once it is (not for a torrent that
    /// was not paused).
    Resume {
        /// The torrent.
        torrent: TorrentId,
    },
}

/// Commands the channel of [`Driver::commands`] holds before senders wait.
pub const COMMAND_QUEUE: usize = 64;

/// The environment variable that, in debug builds only, makes every peer reader task (TCP) and
/// the UDP receive task (uTP and the DHT) panic on its first read: how the tests prove that a
/// panic in a task ends the process. Release builds never read it.
pub const INJECT_PEER_PANIC_ENV: &str = "BT_TEST_INJECT_PEER_PANIC";

/// Whether peer reader tasks panic on their first read (see [`INJECT_PEER_PANIC_ENV`]).
fn inject_peer_panic() -> bool {
    cfg!(debug_assertions) && std::env::var_os(INJECT_PEER_PANIC_ENV).is_some()
}

enum Input<N: Net> {
    Read {
        conn: ConnId,
        /// Owned, so an RC4 connection's bytes are decrypted where they were read.
        data: BytesMut,
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
        reader: N::Reader,
        writer: N::Writer,
    },
    ConnectFailed {
        conn: ConnId,
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
        id: AnnounceId,
        announced: crate::tracker::Announced,
    },
    DhtResolved(Resolved),
}

struct ConnTasks {
    addr: SocketAddr,
    torrent: Option<TorrentId>,
    writer: mpsc::UnboundedSender<Bytes>,
    writer_task: JoinHandle<()>,
    reader: JoinHandle<()>,
    /// Dropped to close: both tasks then linger (see the module docs).
    open: tokio::sync::watch::Sender<()>,
}

/// What the driver keeps per torrent beside the client's state.
struct TorrentTasks<D: Storage + 'static> {
    /// The disk threads; `None` while a magnet's metadata is being fetched.
    disk: Option<DiskPool>,
    /// Opens a magnet's storage when its metadata arrives.
    opener: Option<StorageOpener<D>>,
    /// Why it cannot go on, once it cannot.
    failed: Option<String>,
    /// Whether the last status reported showed a write stall.
    stalled: bool,
    /// Bytes exchanged with the peers whose connections closed.
    peer_totals: PeerTotals,
    /// A magnet's file priorities, chosen when the metadata arrives.
    choose_priorities: Option<PriorityChooser>,
}

/// Chooses a magnet link's file priorities from its metadata (see
/// [`Driver::set_priorities_on_metadata`]).
pub type PriorityChooser =
    Box<dyn FnOnce(&Metainfo) -> Result<Vec<bt_protocol::torrent::FilePriority>, String> + Send>;

/// Drives the protocol [`Client`] over a [`Net`] and a [`Storage`] per torrent.
pub struct Driver<N: Net, D: Storage + 'static> {
    net: N,
    client: Client,
    /// How many disk threads each torrent starts (0: inline).
    disk_threads: usize,
    torrents: BTreeMap<TorrentId, TorrentTasks<D>>,
    tx: mpsc::Sender<Input<N>>,
    rx: mpsc::Receiver<Input<N>>,
    /// What readers read (and their end of stream), apart so it can wait while the disk is behind.
    data_tx: mpsc::Sender<Input<N>>,
    data_rx: mpsc::Receiver<Input<N>>,
    /// Bytes handed to the disk threads to write and not yet written.
    disk_backlog: usize,
    conns: BTreeMap<ConnId, ConnTasks>,
    /// The tasks of closed connections, each ending within [`LINGER`] of its close; finished ones
    /// are dropped at every close, so it holds at most the connections closed within [`LINGER`].
    lingering: Vec<JoinHandle<()>>,
    /// Connects in progress, until answered or given up by the client.
    dials: BTreeMap<ConnId, JoinHandle<()>>,
    announces: BTreeMap<AnnounceId, JoinHandle<()>>,
    listener: Option<JoinHandle<()>>,
    local_addr: Option<SocketAddr>,
    status_interval: Duration,
    clock: Clock,
    rng: Rng,
    /// The client's UDP socket (DHT and uTP), once open.
    udp: Option<ClientUdp>,
    /// Where the UDP socket's receive task sends what arrives ([`crate::udp::RECV_QUEUE`]).
    udp_tx: mpsc::Sender<ReceivedBatch>,
    udp_rx: mpsc::Receiver<ReceivedBatch>,
    /// Whether the client runs uTP (then the UDP socket opens with the listener, or at the
    /// start of the run).
    utp: bool,
    /// The task resolving the DHT's bootstrap names, while it runs.
    dht_resolver: Option<JoinHandle<()>>,
    /// What the DHT's socket said since the last drain.
    dht_reports: Vec<DhtReport>,
    /// Callers' commands, once [`Driver::commands`] was called.
    commands: Option<mpsc::Receiver<Command>>,
    /// Pause and resume reports not handed to the caller yet (they go after the client's
    /// outputs, so a pause is said once its connections are closed).
    changes: Vec<(TorrentId, Report)>,
}

impl<N: Net, D: Storage + 'static> Driver<N, D> {
    /// A driver with no torrent yet; every random choice of its client comes from `seed`, and
    /// each torrent starts `disk_threads` disk threads (0 does disk work inline on the driver's
    /// task: deterministic, for the simulator).
    pub fn empty(net: N, config: ClientConfig, seed: u64, disk_threads: usize) -> Self {
        let (tx, rx) = mpsc::channel(INPUT_QUEUE);
        let (data_tx, data_rx) = mpsc::channel(DATA_QUEUE);
        let (udp_tx, udp_rx) = mpsc::channel(RECV_QUEUE);
        let utp = config.utp_enabled();
        Driver {
            net,
            client: Client::new(config, seed),
            disk_threads,
            torrents: BTreeMap::new(),
            tx,
            rx,
            data_tx,
            data_rx,
            disk_backlog: 0,
            conns: BTreeMap::new(),
            lingering: Vec::new(),
            dials: BTreeMap::new(),
            announces: BTreeMap::new(),
            listener: None,
            local_addr: None,
            status_interval: Duration::from_secs(1),
            clock: Clock::start(),
            rng: Rng::new(seed).fork(0x6472_6976_6572),
            udp: None,
            udp_tx,
            udp_rx,
            utp,
            dht_resolver: None,
            dht_reports: Vec::new(),
            commands: None,
            changes: Vec::new(),
        }
    }

    /// A channel (of [`COMMAND_QUEUE`] commands) through which callers command the running
    /// driver: readers of the torrents' bytes say where they are (the driver makes their pieces
    /// the client's priority while they read), torrents pause and resume. A second call replaces
    /// the first channel.
    pub fn commands(&mut self) -> mpsc::Sender<Command> {
        let (tx, rx) = mpsc::channel(COMMAND_QUEUE);
        self.commands = Some(rx);
        tx
    }

    fn command(&mut self, command: Command) {
        let now = self.now();
        match command {
            // Refused without metadata or past the client's reader limit: the response still
            // streams, only without priority.
            Command::SetReader {
                torrent,
                reader,
                position,
            } => {
                let _ = self.client.set_reader(now, torrent, reader, position);
            }
            Command::RemoveReader { torrent, reader } => {
                self.client.remove_reader(now, torrent, reader);
            }
            // An unknown torrent has nothing to pause or resume.
            Command::Pause { torrent } => {
                let _ = self.pause(torrent);
            }
            Command::Resume { torrent } => {
                let _ = self.resume(torrent);
            }
        }
    }

    /// A driver for `meta`, with the pieces `have` already verified on `disk`, doing disk work on
    /// one thread per core (at most 4).
    pub fn new(
        net: N,
        disk: Arc<D>,
        meta: &Metainfo,
        have: Bitfield,
        config: impl Into<ClientConfig>,
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
        config: impl Into<ClientConfig>,
        seed: u64,
        disk_threads: usize,
    ) -> Result<Self, DriverError> {
        let mut driver = Self::empty(net, config.into(), seed, disk_threads);
        driver.add_torrent(disk, meta, have, Vec::new())?;
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
        config: impl Into<ClientConfig>,
        seed: u64,
        disk_threads: usize,
    ) -> Result<Self, DriverError> {
        let mut driver = Self::empty(net, config.into(), seed, disk_threads);
        driver.add_magnet(info_hash, open, Vec::new())?;
        Ok(driver)
    }

    /// Adds a torrent: `meta`, with the pieces `have` already verified on `disk`, announcing to
    /// `trackers` (BEP 12 tiers).
    pub fn add_torrent(
        &mut self,
        disk: Arc<D>,
        meta: &Metainfo,
        have: Bitfield,
        trackers: Vec<Vec<String>>,
    ) -> Result<TorrentId, DriverError> {
        let now = self.now();
        let id = self.client.add_torrent(
            now,
            meta.info_hash,
            meta.info.layout.clone(),
            meta.info.pieces.clone(),
            have,
            Bytes::copy_from_slice(&meta.info_bytes),
            meta.info.private,
            trackers,
        )?;
        self.torrents.insert(id, TorrentTasks::new(None));
        self.start_disk(id, disk, &meta.info.layout)?;
        Ok(id)
    }

    /// Adds a magnet link's torrent (see [`Driver::new_magnet`]), announcing to `trackers`.
    pub fn add_magnet(
        &mut self,
        info_hash: InfoHash,
        open: StorageOpener<D>,
        trackers: Vec<Vec<String>>,
    ) -> Result<TorrentId, DriverError> {
        let now = self.now();
        let id = self.client.add_magnet(now, info_hash, trackers)?;
        self.torrents.insert(id, TorrentTasks::new(Some(open)));
        Ok(id)
    }

    /// The torrents, in the order added.
    pub fn torrent_ids(&self) -> Vec<TorrentId> {
        self.torrents.keys().copied().collect()
    }

    /// The first torrent added (the only one of a one-torrent driver).
    pub fn first_torrent(&self) -> Option<TorrentId> {
        self.torrents.keys().next().copied()
    }

    /// Starts torrent `id`'s disk threads (or the inline disk) over `disk`.
    fn start_disk(
        &mut self,
        id: TorrentId,
        disk: Arc<D>,
        layout: &TorrentLayout,
    ) -> Result<(), DriverError> {
        let to_driver = self.tx.clone();
        let pool = match self.disk_threads {
            0 => DiskPool::inline(disk, layout),
            workers => DiskPool::start(disk, layout, workers, move |done| {
                // On a disk thread: wait for room in the driver's queue. After the driver is
                // gone the result has nowhere to go.
                let _ = to_driver.blocking_send(Input::Disk { torrent: id, done });
            })
            .map_err(DriverError::Threads)?,
        };
        if let Some(t) = self.torrents.get_mut(&id) {
            t.disk = Some(pool);
        }
        Ok(())
    }

    /// Most outgoing connects in progress at once (default
    /// [`bt_protocol::client::MAX_HALF_OPEN`]; at least 1).
    pub fn set_max_half_open(&mut self, max: usize) {
        self.client.set_max_half_open(max);
    }

    /// How often [`Report::Status`] is produced (default 1 s).
    pub fn set_status_interval(&mut self, every: Duration) {
        self.status_interval = every;
    }

    /// Starts accepting peers on `addr`; returns the bound address. With uTP on, the client's
    /// UDP socket opens on the same address and port, so peers reach us there over uTP too:
    /// for port 0 a few ports are tried until one is free for both; for a given port whose UDP
    /// side is taken the UDP socket takes any port (see [`Driver::udp_addr`]), which still
    /// dials over uTP but takes no incoming uTP connection at the port peers know.
    pub async fn listen(&mut self, addr: SocketAddr) -> std::io::Result<SocketAddr> {
        let (mut listener, local) = self.bind_listener(addr).await?;
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
        self.client.set_listen_addr(local);
        Ok(local)
    }

    /// The address peers can reach us on, once listening.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.local_addr
    }

    /// Where the client's UDP socket (DHT and uTP) is bound, once open.
    pub fn udp_addr(&self) -> Option<SocketAddr> {
        self.udp.as_ref().map(ClientUdp::local_addr)
    }

    /// Binds the TCP listener at `addr` and, with uTP on, the UDP socket at the same port.
    async fn bind_listener(
        &mut self,
        addr: SocketAddr,
    ) -> std::io::Result<(N::Listener, SocketAddr)> {
        /// Ports tried for a listener on port 0 before the UDP socket takes any port.
        const PAIR_ATTEMPTS: usize = 8;
        let attempts = if self.utp && addr.port() == 0 {
            PAIR_ATTEMPTS
        } else {
            1
        };
        for attempt in 1..=attempts {
            let listener = self.net.listen(addr).await?;
            let local = N::local_addr(&listener)?;
            if !self.utp {
                return Ok((listener, local));
            }
            match ClientUdp::bind(&self.net, local, self.udp_tx.clone(), inject_peer_panic()).await
            {
                Ok(udp) => {
                    self.udp = Some(udp);
                    return Ok((listener, local));
                }
                Err(_) if attempt < attempts => continue,
                Err(_) => {
                    self.open_udp(SocketAddr::new(local.ip(), 0)).await?;
                    return Ok((listener, local));
                }
            }
        }
        unreachable!("the last attempt returns")
    }

    /// Opens the client's UDP socket at `addr` unless it is open.
    async fn open_udp(&mut self, addr: SocketAddr) -> std::io::Result<SocketAddr> {
        if let Some(udp) = &self.udp {
            return Ok(udp.local_addr());
        }
        let udp =
            ClientUdp::bind(&self.net, addr, self.udp_tx.clone(), inject_peer_panic()).await?;
        let local = udp.local_addr();
        self.udp = Some(udp);
        Ok(local)
    }

    /// Starts a DHT node (BEP 5) on the client's UDP socket, finding peers for every public
    /// torrent and announcing them (with our listening port, so call [`Driver::listen`] first);
    /// returns the socket's address. The socket opens at `setup.bind` unless it is open already
    /// (uTP on: it opened with the listener). Peers that send a BEP 5 `port` message are tried
    /// as nodes too.
    pub async fn start_dht(&mut self, setup: DhtSetup) -> std::io::Result<SocketAddr> {
        let local = self.open_udp(setup.bind).await?;
        let now = self.now();
        // An IPv6 socket (dual-stack on [::]) keeps IPv6 nodes too (BEP 32).
        let (node, bad_state) =
            restore_node(setup.saved.as_deref(), local.is_ipv6(), now, &mut self.rng);
        if let Some(e) = bad_state {
            self.dht_reports.push(DhtReport::BadState(e.to_string()));
        }
        self.dht_resolver = Some(spawn_resolver(
            &self.net,
            setup.bootstrap,
            self.tx.clone(),
            Input::DhtResolved,
        ));
        self.dht_reports.push(DhtReport::Listening(local));
        self.client.start_dht(now, node, local.port());
        Ok(local)
    }

    /// Announces torrent `id` to these trackers (BEP 12 tiers, each a list of URLs) while
    /// running: `started` at once, `completed` when the download completes, `stopped` on the way
    /// out.
    pub fn set_trackers(&mut self, id: TorrentId, tiers: Vec<Vec<String>>) {
        let now = self.now();
        self.client.set_trackers(now, id, tiers);
    }

    /// Torrent `id`'s trackers' URLs, tier by tier, in the order they will be tried.
    pub fn trackers(&self, id: TorrentId) -> Vec<Vec<String>> {
        self.client.trackers(id)
    }

    /// Gives torrent `id` a peer to dial (`--peer`, a magnet's `x.pe`); it is dialled when the
    /// torrent has room, and again after it goes away.
    pub fn add_peer(&mut self, id: TorrentId, addr: SocketAddr) {
        let now = self.now();
        self.client.add_peers(now, id, PeerSource::Direct, &[addr]);
    }

    fn now(&self) -> ProtoInstant {
        self.clock.now()
    }

    fn deadline(&self, at: ProtoInstant) -> tokio::time::Instant {
        self.clock.deadline(at)
    }

    /// A snapshot of torrent `id`'s progress.
    pub fn status(&self, id: TorrentId) -> Option<Status> {
        let t = self.client.torrent(id)?;
        let stats = t.stats();
        let (download_rate, upload_rate) = t.rates(self.now());
        Some(Status {
            have: t.have().count(),
            pieces: t.layout().piece_count(),
            verified_bytes: t.layout().total_length()
                - self.client.left(id).min(t.layout().total_length()),
            total_bytes: t.layout().total_length(),
            downloaded: stats.downloaded,
            uploaded: stats.uploaded,
            download_rate,
            upload_rate,
            peers: t.peer_count(),
            sources: self.client.sources(id),
            metadata: t.metadata_progress(),
            write_stall: t.write_stall().map(|s| StallStatus {
                error: s.error.to_string(),
                episode: s.episode,
                retry_in: s.retry_at.map(|at| at.saturating_since(self.now())),
                backoff: s.backoff,
            }),
            seeding: self.client.seed_progress(self.now(), id),
        })
    }

    fn start_conn(
        &mut self,
        conn: ConnId,
        addr: SocketAddr,
        torrent: Option<TorrentId>,
        mut reader: N::Reader,
        mut writer: N::Writer,
    ) {
        let (wtx, mut wrx) = mpsc::unbounded_channel::<Bytes>();
        let (open, mut closed) = tokio::sync::watch::channel(());
        let mut writer_closed = closed.clone();
        let tx = self.tx.clone();
        let writer_task = tokio::spawn(async move {
            let flush = async {
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
                // The queue ends with the close: everything queued is written, then FIN.
                let _ = writer.shutdown().await;
            };
            let give_up = async {
                // Resolves when the sender is dropped: the close.
                let _ = writer_closed.changed().await;
                tokio::time::sleep(LINGER).await;
            };
            tokio::select! {
                biased;
                () = flush => {}
                () = give_up => {}
            }
        });
        let tx = self.data_tx.clone();
        let inject_panic = inject_peer_panic();
        let reader_task = tokio::spawn(async move {
            let mut buf = BytesMut::with_capacity(READ_CHUNK);
            loop {
                buf.reserve(READ_CHUNK);
                let mut limited = (&mut reader).take(READ_CHUNK as u64);
                let read = tokio::select! {
                    biased;
                    _ = closed.changed() => None,
                    read = limited.read_buf(&mut buf) => Some(read),
                };
                let data = match read {
                    None => break,
                    Some(Ok(0) | Err(_)) => {
                        let _ = tx.send(Input::Eof { conn }).await;
                        return;
                    }
                    Some(Ok(_)) if inject_panic => {
                        panic!("injected into a peer reader task ({INJECT_PEER_PANIC_ENV})")
                    }
                    Some(Ok(_)) => buf.split(),
                };
                tokio::select! {
                    biased;
                    _ = closed.changed() => break,
                    sent = tx.send(Input::Read { conn, data }) => if sent.is_err() {
                        return;
                    },
                }
            }
            drain_until_peer_closes(&mut reader).await;
        });
        self.conns.insert(
            conn,
            ConnTasks {
                addr,
                torrent,
                writer: wtx,
                writer_task,
                reader: reader_task,
                open,
            },
        );
    }

    fn close_conn(&mut self, conn: ConnId) {
        if let Some(dial) = self.dials.remove(&conn) {
            dial.abort();
        }
        if let Some(tasks) = self.conns.remove(&conn) {
            // The writer writes what is queued, then half-closes; the reader drains until the
            // peer closes; both within LINGER (see the module docs).
            drop(tasks.open);
            drop(tasks.writer);
            self.lingering.retain(|t| !t.is_finished());
            self.lingering.push(tasks.writer_task);
            self.lingering.push(tasks.reader);
        }
    }

    /// Waits (at most [`LINGER`]) for closed connections to finish closing, so the process does
    /// not end them with a reset.
    async fn wait_lingering(&mut self) {
        let tasks = std::mem::take(&mut self.lingering);
        let _ = tokio::time::timeout(LINGER, async {
            for t in tasks {
                let _ = t.await;
            }
        })
        .await;
    }

    fn dial(&mut self, conn: ConnId, addr: SocketAddr) {
        let net = self.net.clone();
        let tx = self.tx.clone();
        let task = tokio::spawn(async move {
            // No timeout here: the client gives up on its own schedule and closes it.
            let input = match net.connect(addr).await {
                Ok((reader, writer)) => Input::Connected {
                    conn,
                    reader,
                    writer,
                },
                Err(error) => Input::ConnectFailed { conn, error },
            };
            let _ = tx.send(input).await;
        });
        self.dials.insert(conn, task);
    }

    fn announce(
        &mut self,
        id: AnnounceId,
        tracker: bt_protocol::tracker::TrackerUrl,
        request: bt_protocol::tracker::AnnounceRequest,
        udp: Option<bt_protocol::client::UdpConnection>,
    ) {
        let net = self.net.clone();
        let tx = self.tx.clone();
        let clock = self.clock;
        let mut rng = self.rng.fork(id.0);
        let task = tokio::spawn(async move {
            let announced =
                crate::tracker::announce(&net, clock, &tracker, request, |_| udp, &mut rng).await;
            let _ = tx.send(Input::Announced { id, announced }).await;
        });
        self.announces.insert(id, task);
    }

    /// Carries out every pending output; returns what to tell the caller.
    fn process_outputs(&mut self, reports: &mut Vec<(Option<TorrentId>, Report)>) {
        while let Some(out) = self.client.poll_output() {
            match out {
                Output::Connect { conn, addr, .. } => self.dial(conn, addr),
                Output::Transmit { conn, bytes } => {
                    if let Some(tasks) = self.conns.get(&conn) {
                        let _ = tasks.writer.send(bytes);
                    }
                }
                Output::Close { conn, reason } => {
                    // A torrent's close is reported with its byte counts by the
                    // `TorrentEvent::PeerClosed` right behind it; a given-up connect by its
                    // `ConnectFailed`.
                    if let ClientCloseReason::Session(reason) = &reason
                        && !matches!(reason, SessionCloseReason::Torrent(_))
                        && let Some(tasks) = self.conns.get(&conn)
                    {
                        reports.push((
                            tasks.torrent,
                            Report::PeerClosed {
                                addr: tasks.addr,
                                reason: format!("{reason:?}"),
                                downloaded: 0,
                                uploaded: 0,
                            },
                        ));
                    }
                    self.close_conn(conn);
                }
                Output::Disk { op, torrent } => {
                    if let DiskOp::Write { block, .. } = &op {
                        self.disk_backlog += block.len as usize;
                    }
                    // The protocol asks for no disk work before a magnet's metadata (whose event
                    // comes first and opens the disk); after a failed open nothing goes on.
                    let done = match self
                        .torrents
                        .get_mut(&torrent)
                        .and_then(|t| t.disk.as_mut())
                    {
                        Some(disk) => disk.submit(op),
                        None => None,
                    };
                    if let Some(done) = done {
                        self.disk_done(torrent, done);
                    }
                }
                Output::Datagram { to, bytes } => {
                    if let Some(udp) = &mut self.udp {
                        udp.send(to, bytes);
                    }
                }
                Output::Announce {
                    id,
                    tracker,
                    request,
                    udp_connection,
                    ..
                } => self.announce(id, *tracker, *request, udp_connection),
                Output::Event(event) => self.handle_event(event, reports),
            }
        }
        // This drain's datagrams go to the send task together.
        if let Some(udp) = &mut self.udp {
            udp.flush();
        }
        let ended: Vec<TorrentId> = self
            .torrents
            .iter()
            .filter(|(id, t)| t.stalled && self.write_stall_ended(**id))
            .map(|(id, _)| *id)
            .collect();
        for id in ended {
            // Said at once, not at the next tick.
            if let Some(t) = self.torrents.get_mut(&id) {
                t.stalled = false;
            }
            if let Some(status) = self.status(id) {
                reports.push((Some(id), Report::Status(status)));
            }
        }
        reports.extend(self.dht_reports.drain(..).map(|r| (None, Report::Dht(r))));
        // After the client's outputs: a pause is said once its connections are closed.
        reports.extend(self.changes.drain(..).map(|(id, r)| (Some(id), r)));
    }

    fn handle_event(&mut self, event: ClientEvent, reports: &mut Vec<(Option<TorrentId>, Report)>) {
        let (torrent, report) = match event {
            ClientEvent::Torrent { torrent, event } => {
                self.torrent_event(torrent, &event, reports);
                (Some(torrent), Report::Event(event))
            }
            ClientEvent::ConnectFailed {
                torrent,
                addr,
                error,
                transport,
                ..
            } => (
                Some(torrent),
                Report::ConnectFailed {
                    addr,
                    error,
                    transport,
                },
            ),
            ClientEvent::UtpRefused { addr, reason } => (
                None,
                Report::PeerClosed {
                    addr,
                    reason: format!("{reason:?}"),
                    downloaded: 0,
                    uploaded: 0,
                },
            ),
            ClientEvent::PeersFound {
                torrent,
                source,
                from,
                count,
            } => (
                Some(torrent),
                Report::PeersFound {
                    source,
                    from,
                    count,
                },
            ),
            ClientEvent::TrackerAnswered {
                torrent,
                url,
                event,
                response,
                next_in,
            } => (
                Some(torrent),
                Report::TrackerAnswered {
                    url,
                    event,
                    response: *response,
                    next_in,
                },
            ),
            ClientEvent::TrackerFailed {
                torrent,
                url,
                error,
                retry_in,
            } => (
                Some(torrent),
                Report::TrackerFailed {
                    url,
                    error,
                    retry_in,
                },
            ),
            ClientEvent::TrackerSlow {
                torrent,
                url,
                waited,
            } => (Some(torrent), Report::TrackerSlow { url, waited }),
            ClientEvent::DhtBootstrapped { nodes } => {
                (None, Report::Dht(DhtReport::Bootstrapped { nodes }))
            }
            ClientEvent::DhtAnnounced {
                torrent,
                peers,
                announced,
                nodes,
            } => (
                Some(torrent),
                Report::Dht(DhtReport::Announced {
                    peers,
                    announced,
                    nodes,
                }),
            ),
            ClientEvent::DhtStopped { torrent, why } => {
                (Some(torrent), Report::Dht(DhtReport::Stopped(why)))
            }
            ClientEvent::MetadataReceived { torrent, meta } => {
                if !self.open_storage(torrent, &meta) {
                    return;
                }
                (Some(torrent), Report::MetadataReceived(meta))
            }
            ClientEvent::SeedGoalReached {
                torrent,
                reached,
                uploaded,
                seeded,
            } => (
                Some(torrent),
                Report::SeedGoalReached {
                    reached,
                    uploaded,
                    seeded,
                },
            ),
            ClientEvent::Stopped { .. } => return,
        };
        reports.push((torrent, report));
    }

    fn torrent_event(
        &mut self,
        torrent: TorrentId,
        event: &TorrentEvent,
        reports: &mut Vec<(Option<TorrentId>, Report)>,
    ) {
        match event {
            TorrentEvent::DiskError(_) => {
                // Whether it started a write stall, and until when, the status says.
                if let Some(status) = self.status(torrent) {
                    if let Some(t) = self.torrents.get_mut(&torrent) {
                        t.stalled = status.write_stall.is_some();
                    }
                    reports.push((Some(torrent), Report::Status(status)));
                }
            }
            TorrentEvent::PeerConnected { conn, .. } => {
                if let Some(tasks) = self.conns.get_mut(conn) {
                    tasks.torrent = Some(torrent);
                }
                if let Some((addr, source)) = self.client.conn_peer(*conn) {
                    let encrypted = self.client.session().is_rc4(*conn);
                    let transport = self.client.conn_transport(*conn).unwrap_or(Transport::Tcp);
                    reports.push((
                        Some(torrent),
                        Report::PeerConnected {
                            addr,
                            source,
                            encrypted,
                            transport,
                        },
                    ));
                }
            }
            TorrentEvent::MetadataInvalid(why) => {
                if let Some(t) = self.torrents.get_mut(&torrent) {
                    t.failed = Some(format!("the torrent's metadata is unusable: {why}"));
                }
            }
            TorrentEvent::PeerClosed {
                addr,
                reason,
                downloaded,
                uploaded,
                ..
            } => {
                if let Some(t) = self.torrents.get_mut(&torrent) {
                    t.peer_totals.add(*addr, *downloaded, *uploaded);
                }
                // The peer's own end of stream is not a close of ours.
                if *reason != CloseReason::Disconnected {
                    reports.push((
                        Some(torrent),
                        Report::PeerClosed {
                            addr: *addr,
                            reason: format!("{:?}", SessionCloseReason::Torrent(reason.clone())),
                            downloaded: *downloaded,
                            uploaded: *uploaded,
                        },
                    ));
                }
            }
            _ => {}
        }
    }

    /// A magnet's metadata arrived: opens its storage and starts the disk; false if that failed
    /// (the torrent's error says why).
    fn open_storage(&mut self, torrent: TorrentId, meta: &Metainfo) -> bool {
        let Some(open) = self
            .torrents
            .get_mut(&torrent)
            .and_then(|t| t.opener.take())
        else {
            return false;
        };
        let error = match open(meta) {
            Ok(storage) => match self.start_disk(torrent, storage, &meta.info.layout) {
                Ok(()) => {
                    let choose = self
                        .torrents
                        .get_mut(&torrent)
                        .and_then(|t| t.choose_priorities.take());
                    let Some(choose) = choose else {
                        return true;
                    };
                    match choose(meta).and_then(|p| {
                        self.set_file_priorities(torrent, &p)
                            .map_err(|e| e.to_string())
                    }) {
                        Ok(()) => return true,
                        Err(e) => e,
                    }
                }
                Err(e) => e.to_string(),
            },
            Err(e) => e,
        };
        if let Some(t) = self.torrents.get_mut(&torrent) {
            t.failed = Some(error);
        }
        false
    }

    fn write_stall_ended(&self, id: TorrentId) -> bool {
        self.client
            .torrent(id)
            .is_some_and(|t| t.write_stall().is_none())
    }

    fn handle_input(&mut self, input: Input<N>) {
        let now = self.now();
        match input {
            Input::Read { conn, mut data } => self.client.handle_bytes_mut(now, conn, &mut data),
            Input::Sent { conn, bytes } => self.client.handle_sent(now, conn, bytes),
            Input::Eof { conn } => {
                self.close_conn(conn);
                self.client.handle_disconnect(now, conn);
            }
            Input::Connected {
                conn,
                reader,
                writer,
            } => {
                // A connect the client gave up meanwhile is dropped with its sockets.
                if self.dials.remove(&conn).is_none() {
                    return;
                }
                let Some((addr, _)) = self.client.conn_peer(conn) else {
                    return;
                };
                let torrent = None;
                self.start_conn(conn, addr, torrent, reader, writer);
                self.client.handle_connected(now, conn);
            }
            Input::ConnectFailed { conn, error } => {
                if self.dials.remove(&conn).is_some() {
                    self.client
                        .handle_connect_failed(now, conn, error.to_string());
                }
            }
            Input::Accepted {
                reader,
                writer,
                addr,
            } => {
                // Refused (too many connections): the sockets close as they drop.
                if let Ok(conn) = self.client.accept(now, addr) {
                    self.start_conn(conn, addr, None, reader, writer);
                }
            }
            Input::Disk { torrent, done } => self.disk_done(torrent, done),
            Input::Announced { id, announced } => {
                self.announces.remove(&id);
                let udp = announced.udp.map(|(_, connection)| connection);
                self.client.handle_announce(now, id, announced.result, udp);
            }
            Input::DhtResolved(Resolved { addrs, failed }) => {
                self.dht_resolver = None;
                for (node, error) in failed {
                    self.dht_reports
                        .push(DhtReport::BootstrapFailed { node, error });
                }
                self.client.dht_bootstrap(now, addrs);
            }
        }
    }

    fn disk_done(&mut self, torrent: TorrentId, done: DiskDone) {
        if let DiskDone::Written { block, .. } = &done {
            self.disk_backlog = self.disk_backlog.saturating_sub(block.len as usize);
        }
        let now = self.now();
        self.client.handle_disk(now, torrent, done);
    }

    /// Each file's priority for torrent `id` (see
    /// [`bt_protocol::torrent::Torrent::set_file_priorities`]); with [`StopWhen::Complete`] the
    /// run ends once every wanted piece is verified. For a magnet link's torrent, call it from
    /// [`Driver::set_priorities_on_metadata`]'s chooser instead.
    pub fn set_file_priorities(
        &mut self,
        id: TorrentId,
        priorities: &[bt_protocol::torrent::FilePriority],
    ) -> Result<(), bt_protocol::session::SessionError> {
        let now = self.now();
        self.client.set_file_priorities(now, id, priorities)
    }

    /// For a magnet link's torrent `id`: once the metadata arrives and the storage is open,
    /// `choose` gives the file priorities (an `Err` stops the run with that message).
    pub fn set_priorities_on_metadata(&mut self, id: TorrentId, choose: PriorityChooser) {
        if let Some(t) = self.torrents.get_mut(&id) {
            t.choose_priorities = Some(choose);
        }
    }

    /// Global rate limits in bytes per second of block payload (`None`: unlimited), shared by
    /// every torrent.
    pub fn set_rate_limits(&mut self, download: Option<u64>, upload: Option<u64>) {
        let now = self.now();
        self.client.set_rate_limits(now, download, upload);
    }

    /// Torrent `id`'s seeding goal (see [`bt_protocol::client::Client::set_seed_goal`]): once
    /// reached it stops, and when every torrent has, [`Driver::run`] returns with
    /// [`Outcome::SeedGoalsReached`].
    pub fn set_seed_goal(
        &mut self,
        id: TorrentId,
        goal: SeedGoal,
    ) -> Result<(), bt_protocol::session::SessionError> {
        let now = self.now();
        self.client.set_seed_goal(now, id, goal)
    }

    /// Adds the seeding progress of torrent `id`'s earlier runs, as a saved
    /// [`Status::seeding`] gave it (see [`bt_protocol::client::Client::restore_seed_progress`]).
    pub fn restore_seed_progress(
        &mut self,
        id: TorrentId,
        earlier: SeedProgress,
    ) -> Result<(), bt_protocol::session::SessionError> {
        let now = self.now();
        self.client.restore_seed_progress(now, id, earlier)
    }

    /// Pauses torrent `id` (see [`bt_protocol::client::Client::pause`]); when it was running,
    /// [`Driver::run`] reports [`Report::Paused`] after the connections it closed.
    pub fn pause(&mut self, id: TorrentId) -> Result<(), bt_protocol::session::SessionError> {
        let now = self.now();
        let was = self.client.is_paused(id);
        self.client.pause(now, id)?;
        if !was && self.client.is_paused(id) {
            self.changes.push((id, Report::Paused));
        }
        Ok(())
    }

    /// Resumes paused torrent `id` (see [`bt_protocol::client::Client::resume`]); when it was
    /// paused, [`Driver::run`] reports [`Report::Resumed`].
    pub fn resume(&mut self, id: TorrentId) -> Result<(), bt_protocol::session::SessionError> {
        let now = self.now();
        let was = self.client.is_paused(id);
        self.client.resume(now, id)?;
        if was && !self.client.is_paused(id) {
            self.changes.push((id, Report::Resumed));
        }
        Ok(())
    }

    /// Whether every wanted piece of every torrent is verified (every piece, unless file
    /// priorities skip some).
    pub fn wanted_complete(&self) -> bool {
        self.torrents.keys().all(|id| {
            self.client
                .torrent(*id)
                .is_some_and(|t| t.wanted_complete())
        })
    }

    /// Whether every piece of every torrent is verified.
    pub fn is_complete(&self) -> bool {
        self.torrents
            .keys()
            .all(|id| self.client.torrent(*id).is_some_and(|t| t.is_complete()))
    }

    fn failed(&self) -> bool {
        self.torrents.values().any(|t| t.failed.is_some())
    }

    /// Runs until `stop` says so, or `interrupt` resolves. `report` hears every event and a status
    /// snapshot of each torrent every status interval, with the torrent it concerns (`None` for
    /// the DHT node's own reports). On the way out every torrent announces `stopped` (waiting at
    /// most the client's `STOP_ANNOUNCE_TIMEOUT`).
    pub async fn run(
        mut self,
        stop: StopWhen,
        interrupt: impl std::future::Future<Output = ()>,
        mut report: impl FnMut(Option<TorrentId>, &Report),
    ) -> Finished {
        let mut reports = Vec::new();
        // uTP dials need the UDP socket even when nothing listens (it opened with the listener
        // otherwise). Without it uTP dials go unanswered and fall back to TCP.
        // A failed bind (it hardly happens on port 0) leaves dials to fall back to TCP.
        if self.utp && self.udp.is_none() {
            let _ = self.open_udp(SocketAddr::from(([0, 0, 0, 0], 0))).await;
        }
        let mut tick = tokio::time::interval(self.status_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(interrupt);
        let outcome = loop {
            self.process_outputs(&mut reports);
            for (id, r) in reports.drain(..) {
                report(id, &r);
            }
            if self.failed() {
                break Outcome::Failed;
            }
            if stop == StopWhen::Complete && self.wanted_complete() {
                break Outcome::Complete;
            }
            // Only a seeding goal stops a torrent while the driver runs.
            if !self.torrents.is_empty() && self.client.all_stopped() {
                break Outcome::SeedGoalsReached;
            }
            tokio::select! {
                biased;
                _ = &mut interrupt => break Outcome::Interrupted,
                _ = self.next_input() => {}
                _ = tick.tick() => {
                    for id in self.torrent_ids() {
                        if let Some(status) = self.status(id) {
                            report(Some(id), &Report::Status(status));
                        }
                    }
                }
            }
        };
        let mut torrents = Vec::new();
        for id in self.torrent_ids() {
            let (Some(status), Some(t)) = (self.status(id), self.client.torrent(id)) else {
                continue;
            };
            let have = t.have().clone();
            report(Some(id), &Report::Status(status.clone()));
            torrents.push(TorrentFinished {
                id,
                status,
                have,
                error: self.torrents.get_mut(&id).and_then(|t| t.failed.take()),
                peers: self.peer_totals(id),
            });
        }
        self.stop_all(&mut report).await;
        Finished {
            outcome,
            torrents,
            dht_state: self.client.dht().map(encode_state),
        }
    }

    /// Waits for the next input (or the client's next deadline) and takes it.
    async fn next_input(&mut self) {
        let deadline = self
            .client
            .poll_timeout()
            .map(|t| self.deadline(t))
            .unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(3600));
        tokio::select! {
            biased;
            Some(input) = self.rx.recv() => self.handle_input(input),
            Some(batch) = self.udp_rx.recv(), if self.disk_backlog < MAX_DISK_BACKLOG => {
                // What else has arrived goes in too before the outputs are drained: one drain
                // (and one poll of the timers, one ACK per uTP connection) per batch instead of
                // per datagram.
                let mut taken = batch.len();
                let mut batches = vec![batch];
                while taken < DATAGRAM_BATCH {
                    let Ok(batch) = self.udp_rx.try_recv() else {
                        break;
                    };
                    taken += batch.len();
                    batches.push(batch);
                }
                let now = self.now();
                let datagrams = batches.iter().flatten();
                self.client
                    .handle_datagrams(now, datagrams.map(|(from, bytes)| (*from, &bytes[..])));
            }
            Some(input) = self.data_rx.recv(), if self.disk_backlog < MAX_DISK_BACKLOG => {
                self.handle_input(input);
            }
            Some(command) = next_command(&mut self.commands) => self.command(command),
            _ = tokio::time::sleep_until(deadline) => {
                let now = self.now();
                self.client.handle_timeout(now);
            }
        }
    }

    /// The bytes exchanged with every peer of torrent `id` so far: the closed connections' and
    /// the open ones'.
    pub fn peer_totals(&self, id: TorrentId) -> PeerTotals {
        let mut totals = self
            .torrents
            .get(&id)
            .map(|t| t.peer_totals.clone())
            .unwrap_or_default();
        // Every open connection, whichever transport (uTP ones have no tasks here).
        if let Some(t) = self.client.torrent(id) {
            for conn in t.conns() {
                if let (Some(peer), Some((addr, _))) = (t.peer(conn), self.client.conn_peer(conn)) {
                    let (downloaded, uploaded) = peer.totals();
                    totals.add(addr, downloaded, uploaded);
                }
            }
        }
        totals
    }

    /// Stops every torrent: connections closed, `stopped` announced (the client bounds the
    /// wait), tasks ended.
    async fn stop_all(&mut self, report: &mut impl FnMut(Option<TorrentId>, &Report)) {
        if let Some(l) = self.listener.take() {
            l.abort();
        }
        let now = self.now();
        self.client.shutdown(now);
        let mut reports = Vec::new();
        // Bounded by the client: each stopping torrent gives up after its stop deadline.
        while !self.client.all_stopped() {
            self.process_outputs(&mut reports);
            for (id, r) in reports.drain(..) {
                report(id, &r);
            }
            if self.client.all_stopped() {
                break;
            }
            self.next_input().await;
        }
        self.process_outputs(&mut reports);
        for (id, r) in reports.drain(..) {
            report(id, &r);
        }
        for (_, task) in std::mem::take(&mut self.announces) {
            task.abort();
        }
        for (_, task) in std::mem::take(&mut self.dials) {
            task.abort();
        }
        if let Some(task) = self.dht_resolver.take() {
            task.abort();
        }
        let conns: Vec<ConnId> = self.conns.keys().copied().collect();
        for c in conns {
            self.close_conn(c);
        }
        // uTP connections closed above still owe their last bytes and FINs: the socket keeps
        // running until every uTP socket has closed (not its TIME_WAIT, which only answers
        // resent packets), for at most LINGER (the TCP ones linger as long).
        let until = tokio::time::Instant::now() + LINGER;
        while self.client.utp_mux().is_some_and(|m| {
            m.ids()
                .any(|id| m.socket(id).is_some_and(|s| s.close_reason().is_none()))
        }) {
            tokio::select! {
                biased;
                _ = self.next_input() => {}
                _ = tokio::time::sleep_until(until) => break,
            }
            self.process_outputs(&mut reports);
            for (id, r) in reports.drain(..) {
                report(id, &r);
            }
        }
        if let Some(udp) = &mut self.udp {
            udp.close().await;
        }
        self.wait_lingering().await;
    }
}

/// Reads and drops what the peer still sends after we closed, until it closes too (or fails),
/// for at most [`LINGER`]: its bytes are never left unread in the socket (see the module docs).
async fn drain_until_peer_closes<R: tokio::io::AsyncRead + Unpin>(reader: &mut R) {
    let mut scratch = [0u8; 4096];
    let _ = tokio::time::timeout(LINGER, async {
        while let Ok(1..) = reader.read(&mut scratch).await {}
    })
    .await;
}

/// The next command, or never when there is no command channel.
async fn next_command(commands: &mut Option<mpsc::Receiver<Command>>) -> Option<Command> {
    match commands {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

impl<D: Storage + 'static> TorrentTasks<D> {
    fn new(opener: Option<StorageOpener<D>>) -> Self {
        TorrentTasks {
            disk: None,
            opener,
            failed: None,
            stalled: false,
            peer_totals: PeerTotals::default(),
            choose_priorities: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(verified_bytes: u64, download_rate: u64, metadata: Option<(u32, u32)>) -> Status {
        Status {
            have: 0,
            pieces: 10,
            verified_bytes,
            total_bytes: 10_000,
            downloaded: 0,
            uploaded: 0,
            download_rate,
            upload_rate: 0,
            peers: 1,
            sources: SourceCounts::default(),
            metadata,
            write_stall: None,
            seeding: None,
        }
    }

    #[test]
    fn eta_is_the_bytes_left_over_the_recent_rate_and_unknown_without_one() {
        // Proves the progress line's ETA: bytes left over the download rate, rounded up to a
        // second; zero when done; unknown with no data flowing or no metadata yet.
        assert_eq!(
            status(4_000, 1_000, None).eta(),
            Some(Duration::from_secs(6))
        );
        assert_eq!(
            status(4_000, 7_000, None).eta(),
            Some(Duration::from_secs(1))
        );
        assert_eq!(status(10_000, 0, None).eta(), Some(Duration::ZERO));
        assert_eq!(status(4_000, 0, None).eta(), None);
        assert_eq!(status(0, 1_000, Some((1, 4))).eta(), None);
    }
}
