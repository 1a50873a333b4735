//! [`Torrent`]: the state machine of one torrent: its peers, the picker, the choker, verification
//! and serving.
//!
//! Methods, in the quinn-proto order:
//! - getters: [`Torrent::have`], [`Torrent::is_complete`], [`Torrent::stats`], [`Torrent::poll_timeout`],
//!   [`Torrent::has_metadata`], [`Torrent::metadata_progress`], [`Torrent::info_bytes`],
//!   [`Torrent::is_private`], [`Torrent::extension_stats`], [`Torrent::wanted_complete`],
//!   [`Torrent::wanted_left`], [`Torrent::file_priorities`];
//! - input: [`Torrent::handle_bytes`] (a socket read), [`Torrent::handle_disk`] (a disk answer),
//!   [`Torrent::handle_timeout`], [`Torrent::peer_disconnected`];
//! - commands: [`Torrent::add_peer`], [`Torrent::set_metadata`], [`Torrent::set_listen_port`],
//!   [`Torrent::set_dht_port`], [`Torrent::set_rate_limits`], [`Torrent::set_file_priorities`];
//! - output: [`Torrent::poll_output`], drained after every input and command.
//!
//! Rules it keeps: a piece counts only once its SHA-1 matches; a mismatch drops the piece
//! and fetches it again. Who is to blame: a peer that sent every block of a failed piece is banned
//! at once; when several did, the blocks are read back and remembered with their senders, and once
//! the piece passes the peers whose blocks differed from the verified data are banned (smart ban,
//! see `smart_ban.rs`); honest peers that shared a piece with a liar are never blamed. Only
//! pieces we have are served, only to peers we unchoke (or allowed-fast); when a block arrives,
//! duplicate requests for it elsewhere are cancelled (endgame).
//!
//! Cost per input (issue: the fast engine's speed): the work of one input does not grow with the
//! connected peers, as in libtorrent. Each peer keeps the count of pieces it has that we lack
//! (interested = count > 0), updated on its haves and bitfield and, for every peer, when we verify
//! a piece (O(peers) per piece, not per input). `drive` looks only at the peers an input touched
//! (`dirty`: asked for more blocks; `touched`: flushed and their timer refreshed), at the peers
//! whose last pick ran short once the picker's [`Picker::epoch`] moved, at the peers waiting for
//! the disk-read bound once it frees up, and at every peer once per second (a measured rate, and
//! so a pipeline target, only grows at a second's turn). Peer deadlines sit in a set ordered by
//! time, so [`Torrent::poll_timeout`] is O(1) and [`Torrent::handle_timeout`] visits only the
//! peers due. The decisions are the same as asking every peer on every input; debug builds check
//! the bookkeeping against a from-scratch computation after every input.
//!
//! Disk full: a failed block write starts a *write stall* ([`Torrent::write_stall`]):
//! the error is reported once ([`TorrentEvent::DiskError`]), our requests in flight are cancelled
//! and no new blocks are asked for (serving uploads and every connection go on), and the piece of
//! the failed write is given back to the picker (verified pieces are never touched). After a
//! backoff ([`TorrentConfig::disk_retry_first`], doubling up to [`TorrentConfig::disk_retry_max`]
//! while retries fail) requests go out again; the stall ends when a piece written after the retry
//! has all its writes succeed. (Not on the first successful write: on a full disk a rewrite into
//! space the file already holds succeeds, and a stall must not end and start again per block.)
//!
//! Rate limits ([`Torrent::set_rate_limits`], [`crate::bandwidth`]): a request goes out only
//! once the download limit's tokens cover its block, and a disk read for a peer's request is
//! issued only once the upload limit's covers it. A peer held back waits in the limit's set and
//! is looked at again when a block's worth of tokens has accrued (a deadline in
//! [`Torrent::poll_timeout`]); passes start after the peer served last, so the tokens go round
//! the peers. Without a limit none of this runs.
//!
//! Extensions: our BEP 10 extension handshake, BEP 9 metadata serving, BEP 11 PEX and
//! the BEP 5 `port` message live in `machine/extensions.rs`; the magnet phase (a torrent made
//! with [`Torrent::new_magnet`] fetching its metadata from peers, then going on as any torrent
//! with the same connections) in `machine/magnet.rs`. Their module docs give their rules and
//! bounds.
//!
//! Bounds: peers at most [`TorrentConfig::max_peers`]; disk reads in flight at most
//! [`TorrentConfig::max_reads_in_flight`]; per-peer state is bounded by [`crate::peer::PeerConn`];
//! per-piece bookkeeping exists only for pieces in progress; outputs are drained after each call.

use core::net::{IpAddr, SocketAddr};
use core::time::Duration;
use std::collections::{BTreeMap, BTreeSet, VecDeque};

use bytes::Bytes;

mod extensions;
mod magnet;
mod priorities;
mod readers;

use readers::short_pipeline;
pub use readers::{ReaderError, UNPACED_MIN_RATE};

use extensions::PeerExt;
pub use extensions::{
    ExtensionStats, METADATA_REJECT_SLACK, OUR_UT_METADATA, OUR_UT_PEX, PEX_MAX_PER_MESSAGE,
};
pub use magnet::METADATA_REQUESTS_PER_PEER;
use magnet::MagnetFetch;
pub use priorities::{FilePrioritiesError, piece_priorities};

use super::smart_ban::{Judgement, SmartBan};
use super::{Bitfield, Choker, ChokerConfig, PeerSnapshot, Picker, Received, Strategy};
use crate::bandwidth::{Pacer, Usage};
use crate::io::{ConnId, DiskDone, DiskError, DiskOp};
use crate::metainfo::{BlockRef, InfoHash, PieceIndex, TorrentLayout};
use crate::peer::{Direction, PeerConfig, PeerConn, PeerError, PeerEvent, allowed_fast_set};
use crate::rng::Rng;
use crate::time::Instant;
use crate::wire::{PeerId, Reserved};

/// Bytes of one full block, for send-buffer accounting.
const BLOCK_BYTES: usize = crate::metainfo::BLOCK_SIZE as usize;

/// Tunables of a torrent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TorrentConfig {
    /// How new pieces are chosen.
    pub strategy: Strategy,
    /// Per-connection settings.
    pub peer: PeerConfig,
    /// Upload slots and rechoke timing.
    pub choker: ChokerConfig,
    /// Most connected peers.
    pub max_peers: usize,
    /// Most disk reads (for serving) in flight at once.
    pub max_reads_in_flight: usize,
    /// How many allowed-fast pieces (BEP 6) we offer a peer.
    pub allowed_fast_count: usize,
    /// Serve a peer (issue disk reads for its requests) only while the bytes queued for its socket
    /// and not yet reported sent ([`Torrent::handle_sent`]), plus reads in flight, stay under this.
    pub send_buffer_watermark: usize,
    /// After a failed block write, how long no new blocks are requested before trying again.
    pub disk_retry_first: Duration,
    /// The longest wait between retries while writes keep failing (the wait doubles each time).
    pub disk_retry_max: Duration,
    /// The largest info dictionary a magnet link's torrent accepts from peers, in bytes (BEP 9
    /// `metadata_size`; a peer announcing more is not asked). It also bounds the piece count
    /// assumed for the peers' bitfields before the metadata arrives (one 20-byte hash per piece).
    pub max_metadata_size: u32,
    /// A `ut_metadata` request unanswered this long is asked of another peer (BEP 9).
    pub metadata_timeout: Duration,
    /// Our client name and version, sent as `v` in the extension handshake (BEP 10).
    pub client_version: String,
    /// Whether to exchange peers with peers that support `ut_pex` (BEP 11). Private torrents
    /// (BEP 27) never do, whatever this says.
    pub pex: bool,
    /// How often each peer is sent a `ut_pex` message (BEP 11: at most once a minute).
    pub pex_interval: Duration,
    /// Our TCP listen port, sent as `p` in the extension handshake (BEP 10), if known.
    pub listen_port: Option<u16>,
    /// Our DHT node's UDP port: when set, the DHT bit is set in our handshake and the port is
    /// sent (BEP 5 `port`) to peers that set theirs.
    pub dht_port: Option<u16>,
    /// Download limit in payload bytes per second (`None`: unlimited); see
    /// [`Torrent::set_rate_limits`].
    pub download_limit: Option<u64>,
    /// Upload limit in payload bytes per second (`None`: unlimited); see
    /// [`Torrent::set_rate_limits`].
    pub upload_limit: Option<u64>,
}

impl Default for TorrentConfig {
    fn default() -> Self {
        TorrentConfig {
            strategy: Strategy::RarestFirst,
            peer: PeerConfig::default(),
            choker: ChokerConfig::default(),
            max_peers: 80,
            max_reads_in_flight: 256,
            allowed_fast_count: 10,
            send_buffer_watermark: 512 * 1024,
            disk_retry_first: Duration::from_secs(5),
            disk_retry_max: Duration::from_secs(60),
            max_metadata_size: 64 * 1024 * 1024,
            metadata_timeout: Duration::from_secs(30),
            client_version: "bt/0.1.0".to_owned(),
            pex: true,
            pex_interval: Duration::from_secs(60),
            listen_port: None,
            dht_port: None,
            download_limit: None,
            upload_limit: None,
        }
    }
}

/// Why a connection is closed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CloseReason {
    /// The peer broke a protocol rule or timed out.
    Peer(PeerError),
    /// The peer sent data that failed verification too often.
    Banned,
    /// A second connection to a peer id. The one completed later is closed, except when two
    /// peers dialled each other at once: then the one opened by the peer with the higher id, so
    /// both ends close the same one.
    Duplicate,
    /// The remote side closed the socket (or the driver saw an error on it).
    Disconnected,
    /// The peer sent metadata (BEP 9 `ut_metadata` pieces) that did not hash to the info hash.
    /// Its address is banned too, as for bad piece data.
    BadMetadata,
}

/// Why [`Torrent::add_peer`] refused a connection.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AddPeerError {
    /// The address was banned for bad data.
    #[error("peer {0} is banned")]
    Banned(IpAddr),
    /// [`TorrentConfig::max_peers`] reached.
    #[error("already {0} peers")]
    TooManyPeers(usize),
    /// The handle is in use.
    #[error("{0:?} is already in use")]
    ConnInUse(ConnId),
}

/// What a user interface wants to know.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TorrentEvent {
    /// A handshake completed.
    PeerConnected {
        /// The connection.
        conn: ConnId,
        /// The peer's id.
        peer_id: PeerId,
    },
    /// A connection ended, whichever side ended it.
    PeerClosed {
        /// The connection.
        conn: ConnId,
        /// The peer's address (the one dialled, or the remote end of an incoming connection).
        addr: SocketAddr,
        /// Why.
        reason: CloseReason,
        /// Block payload bytes received from the peer over this connection.
        downloaded: u64,
        /// Block payload bytes sent to the peer over this connection.
        uploaded: u64,
        /// Whether the peer had every piece (a seed).
        seed: bool,
    },
    /// A peer was banned for bad data.
    PeerBanned(IpAddr),
    /// The first blocks of a piece were requested: it is in flight until verified (or until it
    /// fails its hash check, after which it starts again).
    PieceStarted(PieceIndex),
    /// A piece passed its hash check.
    PieceVerified(PieceIndex),
    /// A piece failed its hash check and will be downloaded again.
    PieceFailed(PieceIndex),
    /// Every piece is verified: the torrent is a seed (a tracker's `completed`). Whether every
    /// *wanted* piece is, a driver asks [`Torrent::wanted_complete`] after a
    /// [`TorrentEvent::PieceVerified`] or [`Torrent::set_file_priorities`].
    Complete,
    /// The disk failed; the affected piece is fetched again. A failed write is reported once per
    /// write stall (see [`Torrent::write_stall`]), not once per block.
    DiskError(DiskError),
    /// A magnet link's metadata arrived and checked out (BEP 9): from now on
    /// [`Torrent::layout`], [`Torrent::have`] and [`Torrent::info_bytes`] are the real torrent's,
    /// and the download goes on as for a `.torrent`.
    MetadataReceived,
    /// The metadata hashes to the info hash but is not a valid info dictionary (an unsafe path,
    /// say): the torrent cannot go on. Fatal: the driver stops it.
    MetadataInvalid(String),
    /// A peer told us of other peers of the swarm (BEP 11 `ut_pex` added peers, at most
    /// [`crate::wire::MAX_PEX_PEERS`], without our own address or those we are connected to).
    PeersLearned {
        /// The connection that told us.
        from: ConnId,
        /// Their listen addresses.
        peers: Vec<SocketAddr>,
    },
    /// A peer gave its DHT node's address (BEP 5 `port`; its IP with that port), once per
    /// connection.
    DhtPort {
        /// The DHT node's address.
        addr: SocketAddr,
    },
}

/// Everything the torrent asks its driver to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TorrentOutput {
    /// Write these bytes to the connection's socket.
    Transmit {
        /// The connection.
        conn: ConnId,
        /// The bytes.
        bytes: Bytes,
    },
    /// Close the connection.
    Close {
        /// The connection.
        conn: ConnId,
        /// Why.
        reason: CloseReason,
    },
    /// Do disk work and answer with [`Torrent::handle_disk`].
    Disk(DiskOp),
    /// Tell the user.
    Event(TorrentEvent),
}

/// Byte counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TorrentStats {
    /// Block bytes received that we had asked for.
    pub downloaded: u64,
    /// Block bytes sent: counted once the driver reports them written to the socket
    /// ([`Torrent::handle_sent`]), so a block queued and then lost with its connection (or with
    /// the process, once a seeding goal stops it) never counts.
    pub uploaded: u64,
    /// Bytes of pieces that passed their hash check.
    pub verified: u64,
    /// Bytes of pieces that failed their hash check, and of blocks nobody wanted any more.
    pub wasted: u64,
}

/// A run of failed block writes (a full disk, say), from the first failure to the first piece
/// written whole after a retry. See the module docs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WriteStall {
    /// The failure that started it (the one reported).
    pub error: DiskError,
    /// Which stall this is: 1 for the torrent's first, counting up.
    pub episode: u64,
    /// When requests go out again; `None` once they have (retrying: the next writes tell).
    pub retry_at: Option<Instant>,
    /// The wait before the latest retry.
    pub backoff: Duration,
}

#[derive(Debug)]
struct Peer {
    conn: PeerConn,
    addr: SocketAddr,
    /// Bytes handed to the driver for this socket and not yet reported sent.
    unsent: usize,
    /// Bytes handed to the driver for this socket since the torrent took it.
    emitted: u64,
    /// Blocks queued for the peer and not yet written: `(end, len)`, where `end` is the
    /// block's last byte as an offset in `emitted`. Oldest first; at most the blocks the read
    /// watermark lets be queued at once (see [`Torrent::handle_sent`]).
    unwritten: VecDeque<(u64, u32)>,
    /// Queued requests with a disk read in flight.
    reading: BTreeSet<BlockRef>,
    /// How many pieces the peer has that we lack: we are interested while it is above zero.
    missing: u32,
    /// Set while the events of the read that brought the peer's piece announcement are handled:
    /// `missing` counted its pieces as they stand after the whole read, haves included.
    counted_whole: bool,
    /// The connection's [`PeerConn::poll_timeout`] as entered in [`Torrent::timers`].
    deadline: Option<Instant>,
    /// Extension protocol state (BEP 10, 9, 11, 5).
    ext: PeerExt,
}

/// The state machine of one torrent. See the module docs.
#[derive(Debug)]
pub struct Torrent {
    config: TorrentConfig,
    info_hash: InfoHash,
    layout: TorrentLayout,
    piece_hashes: Vec<[u8; 20]>,
    our_id: PeerId,
    our_reserved: Reserved,
    picker: Picker,
    choker: Choker<ConnId>,
    /// Boxed: a peer's state is over a kilobyte, and B-tree nodes (room for eleven, often
    /// half full) holding it inline would carry as much again empty.
    peers: BTreeMap<ConnId, Box<Peer>>,
    /// Who sent each block written of each piece in progress.
    contributors: BTreeMap<u32, Vec<(BlockRef, IpAddr)>>,
    /// Who sent what in pieces that failed, to ban the liars once the pieces pass.
    smart_ban: SmartBan,
    banned: BTreeSet<IpAddr>,
    /// Block writes not yet acknowledged, per piece.
    pending_writes: BTreeMap<u32, u32>,
    /// Pieces whose blocks are all received, waiting for their writes before hashing.
    awaiting_hash: BTreeSet<u32>,
    /// Pieces with a failed write: dropped when their writes are all answered.
    write_failed: BTreeSet<u32>,
    /// The write stall under way, if any.
    stall: Option<WriteStall>,
    /// Write stalls so far.
    stalls: u64,
    /// Pieces with a write issued since a stall's latest retry (a subset of the pieces in
    /// progress): one written whole ends the stall.
    probing: BTreeSet<u32>,
    reads_in_flight: usize,
    rechoke_soon: bool,
    stats: TorrentStats,
    outputs: VecDeque<TorrentOutput>,
    scratch: Vec<BlockRef>,
    /// Every peer's deadline, earliest first (one entry per peer with a deadline).
    timers: BTreeSet<(Instant, ConnId)>,
    /// Peers whose state changed since the last `drive`: their requests are looked at again.
    dirty: BTreeSet<ConnId>,
    /// Peers a command may have written to since the last `drive`: flushed, deadline refreshed.
    /// A superset of `dirty` once `drive` starts.
    touched: BTreeSet<ConnId>,
    /// Peers whose pipeline stayed below its target at their last pick, with the picker's
    /// [`Picker::epoch`] before it: asked again once the epoch moves.
    short: BTreeMap<ConnId, u64>,
    /// Peers whose serving stopped at [`TorrentConfig::max_reads_in_flight`].
    read_blocked: BTreeSet<ConnId>,
    /// The second (since the epoch) in which `drive` last looked at every peer.
    swept_sec: Option<u64>,
    /// Reused list of the peers one pass looks at.
    candidates: Vec<ConnId>,
    /// The info dictionary, once known: served to peers (BEP 9).
    info_bytes: Option<Bytes>,
    /// BEP 27: no PEX.
    private: bool,
    /// The metadata fetch of a magnet link, until the metadata arrives.
    fetch: Option<Box<MagnetFetch>>,
    /// When the next round of PEX messages goes out, while some peer takes them.
    pex_next: Option<Instant>,
    /// Our addresses as peers saw them (BEP 10 `yourip`), at most [`MAX_OUR_IPS`]: to leave
    /// ourselves out of what PEX teaches us.
    our_ips: BTreeSet<IpAddr>,
    /// Extension counters.
    ext_stats: ExtensionStats,
    /// The download limit: requests go out only as its tokens allow.
    download: Pacer<ConnId>,
    /// The upload limit: disk reads for requested blocks are issued only as its tokens allow.
    upload: Pacer<ConnId>,
    /// Each file's priority, or empty while every file is normal (see `machine/priorities.rs`).
    file_priorities: Vec<super::FilePriority>,
    /// Readers and deadlines per piece (see `machine/readers.rs`).
    deadlines: super::Deadlines,
    /// When a needed piece next turns urgent or late.
    deadline_wake: Option<Instant>,
    /// The urgent pieces of the last round (reused).
    urgent_scratch: Vec<super::Urgent>,
}

impl Torrent {
    /// A torrent with `layout`, piece hashes `piece_hashes`, and the verified pieces `have`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        config: TorrentConfig,
        info_hash: InfoHash,
        layout: TorrentLayout,
        piece_hashes: Vec<[u8; 20]>,
        have: Bitfield,
        our_id: PeerId,
        mut rng: Rng,
    ) -> Self {
        let mut our_reserved = Reserved::NONE;
        our_reserved.set_fast(true);
        our_reserved.set_extension_protocol(true);
        our_reserved.set_dht(config.dht_port.is_some());
        let picker = Picker::new(layout.clone(), have, config.strategy, rng.fork(1));
        let choker = Choker::new(config.choker, rng.fork(2));
        Torrent {
            info_hash,
            layout,
            piece_hashes,
            our_id,
            our_reserved,
            picker,
            choker,
            peers: BTreeMap::new(),
            contributors: BTreeMap::new(),
            smart_ban: SmartBan::new(),
            banned: BTreeSet::new(),
            pending_writes: BTreeMap::new(),
            awaiting_hash: BTreeSet::new(),
            write_failed: BTreeSet::new(),
            stall: None,
            stalls: 0,
            probing: BTreeSet::new(),
            reads_in_flight: 0,
            rechoke_soon: true,
            stats: TorrentStats::default(),
            outputs: VecDeque::new(),
            scratch: Vec::new(),
            timers: BTreeSet::new(),
            dirty: BTreeSet::new(),
            touched: BTreeSet::new(),
            short: BTreeMap::new(),
            read_blocked: BTreeSet::new(),
            swept_sec: None,
            candidates: Vec::new(),
            info_bytes: None,
            private: false,
            fetch: None,
            pex_next: None,
            our_ips: BTreeSet::new(),
            ext_stats: ExtensionStats::default(),
            file_priorities: Vec::new(),
            deadlines: super::Deadlines::default(),
            deadline_wake: None,
            urgent_scratch: Vec::new(),
            download: Pacer::new(config.download_limit),
            upload: Pacer::new(config.upload_limit),
            config,
        }
    }

    // ---- getters ----

    /// The torrent's info hash.
    pub fn info_hash(&self) -> InfoHash {
        self.info_hash
    }

    /// Our peer id on this torrent's connections.
    pub fn our_id(&self) -> PeerId {
        self.our_id
    }

    /// The torrent's geometry ([`TorrentLayout::empty`] while a magnet link's metadata is
    /// fetched).
    pub fn layout(&self) -> &TorrentLayout {
        &self.layout
    }

    /// Our verified pieces.
    pub fn have(&self) -> &Bitfield {
        self.picker.have()
    }

    /// Whether every piece is verified (never while a magnet link's metadata is being fetched).
    pub fn is_complete(&self) -> bool {
        self.fetch.is_none() && self.picker.have().is_complete()
    }

    /// Byte counters, including those of connections still open.
    pub fn stats(&self) -> TorrentStats {
        let mut stats = self.stats;
        stats.wasted += self
            .peers
            .values()
            .map(|p| p.conn.unrequested_bytes())
            .sum::<u64>();
        stats
    }

    /// Download and upload rates in bytes per second, summed over peers (rolling window).
    pub fn rates(&self, now: Instant) -> (u64, u64) {
        self.peers.values().fold((0, 0), |(d, u), p| {
            (d + p.conn.download_rate(now), u + p.conn.upload_rate(now))
        })
    }

    /// Connected peers (handshake done or not).
    pub fn peer_count(&self) -> usize {
        self.peers.len()
    }

    /// The connection, if it exists.
    pub fn peer(&self, conn: ConnId) -> Option<&PeerConn> {
        self.peers.get(&conn).map(|p| &p.conn)
    }

    /// Connection handles in order.
    pub fn conns(&self) -> impl Iterator<Item = ConnId> + '_ {
        self.peers.keys().copied()
    }

    /// Whether `ip` is banned.
    pub fn is_banned(&self, ip: IpAddr) -> bool {
        self.banned.contains(&ip)
    }

    /// The write stall under way (writes failed: no new blocks are requested until its
    /// `retry_at`), if any. See the module docs.
    pub fn write_stall(&self) -> Option<&WriteStall> {
        self.stall.as_ref()
    }

    /// The next time [`Torrent::handle_timeout`] has work.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let peers = self.timers.first().map(|(at, _)| *at);
        let rechoke = (!self.peers.is_empty()).then(|| self.choker.next_rechoke());
        let retry = self.stall.as_ref().and_then(|s| s.retry_at);
        let metadata = self.fetch.as_ref().and_then(|f| f.next_deadline());
        peers
            .into_iter()
            .chain(rechoke)
            .chain(retry)
            .chain(metadata)
            .chain(self.pex_next)
            .chain(self.download.wake_at())
            .chain(self.upload.wake_at())
            .chain(self.deadline_wake)
            .min()
    }

    /// The next output, if any. Drain after every input and command.
    pub fn poll_output(&mut self) -> Option<TorrentOutput> {
        self.outputs.pop_front()
    }

    // ---- commands ----

    /// Adds a connection to a peer at `addr`. An outbound one sends our handshake at once.
    pub fn add_peer(
        &mut self,
        now: Instant,
        conn: ConnId,
        addr: SocketAddr,
        direction: Direction,
    ) -> Result<(), AddPeerError> {
        if self.banned.contains(&addr.ip()) {
            return Err(AddPeerError::Banned(addr.ip()));
        }
        if self.peers.contains_key(&conn) {
            return Err(AddPeerError::ConnInUse(conn));
        }
        if self.peers.len() >= self.config.max_peers {
            return Err(AddPeerError::TooManyPeers(self.config.max_peers));
        }
        let peer_conn = if self.fetch.is_some() {
            PeerConn::new_unknown_layout(
                self.config.peer.clone(),
                direction,
                self.info_hash,
                self.our_id,
                self.our_reserved,
                self.config.max_metadata_size / 20,
                now,
            )
        } else {
            PeerConn::new(
                self.config.peer.clone(),
                direction,
                self.info_hash,
                self.our_id,
                self.our_reserved,
                self.layout.piece_count(),
                now,
            )
        };
        self.peers.insert(
            conn,
            Box::new(Peer {
                conn: peer_conn,
                addr,
                unsent: 0,
                emitted: 0,
                unwritten: VecDeque::new(),
                reading: BTreeSet::new(),
                missing: 0,
                counted_whole: false,
                deadline: None,
                ext: PeerExt::default(),
            }),
        );
        self.flush(conn);
        self.refresh_deadline(conn);
        Ok(())
    }

    /// Sets the download and upload limits, in block payload bytes per second (`None`:
    /// unlimited; see [`crate::bandwidth`] for what counts and the guarantee). Downloads are
    /// paced: a block is requested only once the download limit's tokens cover it, whatever the
    /// pipeline and endgame would ask, and [`Torrent::poll_timeout`] includes the time a block's
    /// worth accrues while a peer waits for it. Uploads: a requested block is read (and so sent)
    /// only once the upload limit's tokens cover it; meanwhile the request waits in the peer's
    /// bounded queue ([`PeerConfig::max_peer_requests`]). Without limits nothing is paced.
    pub fn set_rate_limits(&mut self, now: Instant, download: Option<u64>, upload: Option<u64>) {
        self.config.download_limit = download;
        self.config.upload_limit = upload;
        let waiting_down = self.download.set_limit(now, download);
        let waiting_up = self.upload.set_limit(now, upload);
        // The peers held back look again: a limit raised or lifted lets them go on.
        self.dirty.extend(waiting_down);
        self.touched.extend(waiting_up);
        if !self.dirty.is_empty() || !self.touched.is_empty() {
            self.drive(now);
        }
    }

    /// The download and upload limits in force, bytes per second (`None`: unlimited).
    pub fn rate_limits(&self) -> (Option<u64>, Option<u64>) {
        (self.download.limit(), self.upload.limit())
    }

    /// What the download and upload limits let through since the last call, and whether they
    /// held a transfer back: what [`crate::bandwidth::RateShares`] divides a global limit by.
    /// Counts only while a limit is set.
    pub fn take_rate_usage(&mut self) -> (Usage, Usage) {
        (self.download.take_usage(), self.upload.take_usage())
    }

    // ---- input ----

    /// Bytes read from `conn`'s socket.
    pub fn handle_bytes(&mut self, now: Instant, conn: ConnId, bytes: &[u8]) {
        let Some(peer) = self.peers.get_mut(&conn) else {
            return;
        };
        self.dirty.insert(conn);
        self.touched.insert(conn);
        if let Err(e) = peer.conn.handle_bytes(now, bytes, &self.layout) {
            self.process_events(now, conn);
            self.close(conn, CloseReason::Peer(e));
        } else {
            self.process_events(now, conn);
        }
        self.drive(now);
    }

    /// The driver wrote `bytes` of `conn`'s transmit data to the socket. Serving a peer waits for
    /// this (see [`TorrentConfig::send_buffer_watermark`]): it is the protocol's backpressure.
    pub fn handle_sent(&mut self, now: Instant, conn: ConnId, bytes: usize) {
        if let Some(peer) = self.peers.get_mut(&conn) {
            peer.unsent = peer.unsent.saturating_sub(bytes);
            // Blocks wholly written now count as uploaded.
            let written = peer.emitted - peer.unsent as u64;
            while let Some(&(end, len)) = peer.unwritten.front()
                && end <= written
            {
                peer.unwritten.pop_front();
                self.stats.uploaded += u64::from(len);
            }
            self.touched.insert(conn);
            self.drive(now);
        }
    }

    /// The socket of `conn` closed.
    pub fn peer_disconnected(&mut self, now: Instant, conn: ConnId) {
        if self.peers.contains_key(&conn) {
            self.forget(conn, CloseReason::Disconnected);
            self.drive(now);
        }
    }

    /// Fires what is due: peer timers and rechoking. Early or repeated calls are harmless.
    pub fn handle_timeout(&mut self, now: Instant) {
        // Only the peers due: for the others `PeerConn::handle_timeout` does nothing. In handle
        // order, as a walk over every peer would go.
        let mut conns: Vec<ConnId> = self
            .timers
            .iter()
            .take_while(|(at, _)| *at <= now)
            .map(|(_, conn)| *conn)
            .collect();
        conns.sort_unstable();
        for conn in conns {
            let Some(peer) = self.peers.get_mut(&conn) else {
                continue;
            };
            self.dirty.insert(conn);
            self.touched.insert(conn);
            match peer.conn.handle_timeout(now) {
                Ok(()) => self.process_events(now, conn),
                Err(e) => {
                    self.process_events(now, conn);
                    self.close(conn, CloseReason::Peer(e));
                }
            }
        }
        if now >= self.choker.next_rechoke() {
            self.rechoke_soon = true;
        }
        if let Some(stall) = &mut self.stall
            && stall.retry_at.is_some_and(|at| at <= now)
        {
            // Try the disk again: every peer may be asked for blocks.
            stall.retry_at = None;
            self.dirty.extend(self.peers.keys().copied());
        }
        if let Some(due) = self.download.take_due(now) {
            self.dirty.extend(due);
        }
        if let Some(due) = self.upload.take_due(now) {
            self.touched.extend(due);
        }
        self.metadata_timeouts(now);
        if self.pex_next.is_some_and(|at| at <= now) {
            self.pex_round(now);
        }
        self.drive(now);
    }

    /// The driver's answer to a [`DiskOp`].
    pub fn handle_disk(&mut self, now: Instant, done: DiskDone) {
        match done {
            DiskDone::Written { block, result } => {
                let piece = block.piece.get();
                if let Err(e) = result {
                    self.write_failed.insert(piece);
                    self.write_failed_now(now, e);
                }
                let left = self.pending_writes.get_mut(&piece).map(|n| {
                    *n = n.saturating_sub(1);
                    *n
                });
                if left == Some(0) {
                    self.pending_writes.remove(&piece);
                    let probed = self.probing.remove(&piece);
                    if self.write_failed.remove(&piece) {
                        self.awaiting_hash.remove(&piece);
                        self.contributors.remove(&piece);
                        self.picker.piece_failed(block.piece);
                    } else if self.awaiting_hash.remove(&piece) {
                        if probed {
                            // A whole piece reached the disk after the retry: space is back.
                            self.stall = None;
                            self.probing.clear();
                        }
                        self.outputs
                            .push_back(TorrentOutput::Disk(DiskOp::Hash { piece: block.piece }));
                    }
                }
            }
            DiskDone::Hashed { piece, result } => self.on_hashed(now, piece, result),
            DiskDone::BlockHashes { piece, result } => {
                if let Err(e) = &result {
                    self.event(TorrentEvent::DiskError(e.clone()));
                }
                match self.smart_ban.handle_hashes(piece, result) {
                    Judgement::Failed { ban } => {
                        // The failed data is read: the piece may be written again.
                        self.picker.piece_failed(piece);
                        ban.into_iter().for_each(|ip| self.ban(ip));
                    }
                    Judgement::Passed { ban } => ban.into_iter().for_each(|ip| self.ban(ip)),
                    Judgement::Unexpected => {}
                }
            }
            DiskDone::Read {
                conn,
                block,
                result,
            } => {
                self.reads_in_flight = self.reads_in_flight.saturating_sub(1);
                if let Some(peer) = self.peers.get_mut(&conn) {
                    self.touched.insert(conn);
                    peer.reading.remove(&block);
                    match result {
                        Ok(data) => {
                            if peer.conn.send_block(now, block, data) {
                                // It ends where the connection's queue ends: counted when
                                // the driver reports that far written.
                                let end = peer.emitted + peer.conn.queued_len() as u64;
                                peer.unwritten.push_back((end, block.len));
                            }
                        }
                        Err(e) => {
                            peer.conn.reject_request(now, block);
                            self.event(TorrentEvent::DiskError(e));
                        }
                    }
                }
            }
        }
        self.drive(now);
    }

    // ---- internals ----

    fn event(&mut self, e: TorrentEvent) {
        self.outputs.push_back(TorrentOutput::Event(e));
    }

    /// A block write failed: starts a write stall (reported once), or after a failed retry waits
    /// twice as long; while waiting nothing is requested and what is in flight is cancelled.
    fn write_failed_now(&mut self, now: Instant, error: DiskError) {
        let backoff = match &self.stall {
            // Blocks in flight when it started fail too: the wait stands.
            Some(s) if s.retry_at.is_some() => return,
            Some(s) => s.backoff.saturating_mul(2).min(self.config.disk_retry_max),
            None => {
                self.stalls += 1;
                self.event(TorrentEvent::DiskError(error.clone()));
                self.config.disk_retry_first
            }
        };
        self.probing.clear();
        let episode = self.stall.as_ref().map_or(self.stalls, |s| s.episode);
        let error = self.stall.take().map_or(error, |s| s.error);
        self.stall = Some(WriteStall {
            error,
            episode,
            retry_at: Some(now.saturating_add(backoff)),
            backoff,
        });
        // What is in flight would only fail to be written: cancel it, give it back.
        for (c, p) in self.peers.iter_mut() {
            self.scratch.clear();
            self.scratch.extend(p.conn.outstanding());
            for &b in &self.scratch {
                if p.conn.cancel(now, b) {
                    self.picker.request_dropped(b);
                }
            }
            if !self.scratch.is_empty() {
                self.touched.insert(*c);
            }
        }
        self.scratch.clear();
    }

    fn on_hashed(&mut self, now: Instant, piece: PieceIndex, result: Result<[u8; 20], DiskError>) {
        let senders = self.contributors.remove(&piece.get()).unwrap_or_default();
        let expected = self.piece_hashes.get(piece.as_usize()).copied();
        let digest = match result {
            Ok(digest) => Some(digest),
            Err(e) => {
                self.event(TorrentEvent::DiskError(e));
                None
            }
        };
        if digest.is_some() && digest == expected {
            let needed = self.picker.needs(piece);
            self.piece_gained(piece);
            self.picker.piece_verified(piece);
            self.stats.verified += u64::from(self.layout.piece_len(piece));
            self.event(TorrentEvent::PieceVerified(piece));
            for p in self.peers.values_mut() {
                if p.conn.is_connected() {
                    p.conn.send_have(now, piece);
                }
            }
            if let Some(op) = self.smart_ban.piece_passed(piece) {
                self.outputs.push_back(TorrentOutput::Disk(op));
            }
            if needed && self.wanted_complete() {
                self.wanted_done();
            }
            if self.is_complete() {
                // Nothing is left to write.
                self.stall = None;
                self.probing.clear();
                self.event(TorrentEvent::Complete);
                self.rechoke_soon = true;
            }
            return;
        }
        self.stats.wasted += u64::from(self.layout.piece_len(piece));
        self.event(TorrentEvent::PieceFailed(piece));
        if digest.is_none() {
            // The disk failed, not a peer: blame nobody.
            self.picker.piece_failed(piece);
            return;
        }
        let first = senders.first().map(|(_, ip)| *ip);
        if let Some(ip) = first
            && senders.iter().all(|(_, other)| *other == ip)
        {
            // One peer sent it all: it sent the bad data.
            self.picker.piece_failed(piece);
            self.ban(ip);
            return;
        }
        match self.smart_ban.piece_failed(piece, senders) {
            // The piece is fetched again once its blocks are read (`DiskDone::BlockHashes`).
            Some(op) => self.outputs.push_back(TorrentOutput::Disk(op)),
            None => self.picker.piece_failed(piece),
        }
    }

    fn ban(&mut self, ip: IpAddr) {
        if !self.banned.insert(ip) {
            return;
        }
        self.event(TorrentEvent::PeerBanned(ip));
        let conns: Vec<ConnId> = self
            .peers
            .iter()
            .filter(|(_, p)| p.addr.ip() == ip)
            .map(|(c, _)| *c)
            .collect();
        for conn in conns {
            self.close(conn, CloseReason::Banned);
        }
    }

    /// Removes a peer, gives its requests back to the picker, and tells the driver to close it.
    fn close(&mut self, conn: ConnId, reason: CloseReason) {
        if self.peers.contains_key(&conn) {
            self.outputs.push_back(TorrentOutput::Close {
                conn,
                reason: reason.clone(),
            });
            self.forget(conn, reason);
        }
    }

    fn forget(&mut self, conn: ConnId, reason: CloseReason) {
        let Some(peer) = self.peers.remove(&conn) else {
            return;
        };
        if let Some(at) = peer.deadline {
            self.timers.remove(&(at, conn));
        }
        self.dirty.remove(&conn);
        self.touched.remove(&conn);
        self.short.remove(&conn);
        self.read_blocked.remove(&conn);
        self.download.forget(conn);
        self.upload.forget(conn);
        self.stats.wasted += peer.conn.unrequested_bytes();
        self.picker.remove_peer(peer.conn.peer_pieces());
        for block in peer.conn.outstanding() {
            self.picker.request_dropped(block);
        }
        self.rechoke_soon = true;
        let (downloaded, uploaded) = peer.conn.totals();
        let seed = self.has_metadata() && peer.conn.peer_pieces().is_complete();
        self.event(TorrentEvent::PeerClosed {
            conn,
            addr: peer.addr,
            reason,
            downloaded,
            uploaded,
            seed,
        });
        self.metadata_peer_gone(conn);
    }

    fn process_events(&mut self, now: Instant, conn: ConnId) {
        while let Some(event) = self.peers.get_mut(&conn).and_then(|p| p.conn.poll_event()) {
            self.on_peer_event(now, conn, event);
            if !self.peers.contains_key(&conn) {
                return;
            }
        }
        if let Some(p) = self.peers.get_mut(&conn) {
            p.counted_whole = false;
        }
    }

    fn on_peer_event(&mut self, now: Instant, conn: ConnId, event: PeerEvent) {
        match event {
            PeerEvent::Connected { peer_id, .. } => {
                let other = self
                    .peers
                    .iter()
                    .find(|(c, p)| **c != conn && p.conn.peer_id() == Some(peer_id))
                    .map(|(c, p)| (*c, p.conn.direction()));
                if let Some((other, other_direction)) = other {
                    let direction = self.peers[&conn].conn.direction();
                    if self.keeps_newer(peer_id, direction, other_direction) {
                        self.close(other, CloseReason::Duplicate);
                    } else {
                        self.close(conn, CloseReason::Duplicate);
                        return;
                    }
                }
                self.event(TorrentEvent::PeerConnected { conn, peer_id });
                self.extensions_connected(now, conn);
                let have = self.picker.have().clone();
                let allowed = match self.peers[&conn].addr.ip() {
                    IpAddr::V4(ip) if !have.is_clear() && !have.is_complete() => allowed_fast_set(
                        ip,
                        &self.info_hash,
                        self.layout.piece_count(),
                        self.config.allowed_fast_count,
                    )
                    .into_iter()
                    .filter(|p| have.get(*p))
                    .collect(),
                    _ => Vec::new(),
                };
                let peer = self.peers.get_mut(&conn).expect("checked above");
                peer.conn.send_pieces(now, &have);
                peer.conn.send_allowed_fast(now, &allowed);
            }
            PeerEvent::Pieces => {
                let peer = self
                    .peers
                    .get_mut(&conn)
                    .expect("events come from live peers");
                // The pieces as they stand after this whole read: later haves in it are counted.
                peer.missing = self.picker.settled().count_lacked(peer.conn.peer_pieces());
                peer.counted_whole = true;
                self.picker.add_peer(peer.conn.peer_pieces());
            }
            PeerEvent::Have(piece) => {
                self.picker.peer_has(piece);
                if self.picker.needs(piece)
                    && let Some(peer) = self.peers.get_mut(&conn)
                    && !peer.counted_whole
                {
                    peer.missing += 1;
                }
            }
            PeerEvent::Choked { dropped } => {
                for b in dropped {
                    self.picker.request_dropped(b);
                    self.download.refund(u64::from(b.len));
                }
            }
            PeerEvent::Interested | PeerEvent::NotInterested => self.rechoke_soon = true,
            PeerEvent::Block { block, data } => self.on_block(now, conn, block, data),
            PeerEvent::Request(block) => {
                // Never serve what we lack. What we have is served by `serve`, as the socket
                // drains.
                if !self.picker.have().get(block.piece.get())
                    && let Some(p) = self.peers.get_mut(&conn)
                {
                    p.conn.refuse_request(now, block);
                }
            }
            PeerEvent::Rejected(block) => {
                self.picker.request_dropped(block);
                self.download.refund(u64::from(block.len));
            }
            PeerEvent::RequestTimedOut(block) => {
                // Not refunded: the block may still come.
                self.picker.request_dropped(block);
            }
            PeerEvent::Extended { id, payload } => self.on_extended(now, conn, id, payload),
            PeerEvent::Port(port) => self.on_dht_port(conn, port),
            PeerEvent::Unchoked
            | PeerEvent::Cancel(_)
            | PeerEvent::AllowedFast(_)
            | PeerEvent::Suggest(_) => {}
        }
    }

    /// Of two connections to the peer `peer_id`, whether to keep the one whose handshake just
    /// completed (opened in direction `newer`) rather than the one completed before (`older`).
    ///
    /// Both ends must keep the same TCP connection, or each closes the one the other kept and
    /// neither survives (two peers dialling each other at once). A newer inbound connection is
    /// closed before we answer its handshake (the answer is still unsent when the torrent sees
    /// the handshake), so the peer never completes it and keeps the older one too: an
    /// established connection is never replaced by a redial. A newer outbound one completed
    /// because the peer answered it, having no completed connection to us then: it is the same
    /// case at both ends (each completed the other's dial first), so the tie is broken on
    /// something both ends know: the connection opened by the peer with the lower peer id is
    /// kept (libtorrent breaks it on listen ports, which we do not learn from an inbound
    /// connection). Two outbound connections: the older is kept, as libtorrent does.
    fn keeps_newer(&self, peer_id: PeerId, newer: Direction, older: Direction) -> bool {
        newer == Direction::Outbound && older == Direction::Inbound && self.our_id.0 < peer_id.0
    }

    fn on_block(&mut self, now: Instant, conn: ConnId, block: BlockRef, data: Bytes) {
        self.stats.downloaded += u64::from(block.len);
        // Endgame: nobody else needs to send this block now. Only a block the picker counts
        // as requested more than once can be out elsewhere, so the peers are walked only then.
        if self.picker.requested_elsewhere(block) {
            for (c, p) in self.peers.iter_mut() {
                if *c != conn && p.conn.cancel(now, block) {
                    self.dirty.insert(*c);
                    self.touched.insert(*c);
                }
            }
        }
        match self.picker.block_received(block) {
            Received::Unwanted => self.stats.wasted += u64::from(block.len),
            outcome => {
                let piece = block.piece.get();
                let ip = self.peers[&conn].addr.ip();
                self.contributors
                    .entry(piece)
                    .or_default()
                    .push((block, ip));
                *self.pending_writes.entry(piece).or_default() += 1;
                if self.stall.as_ref().is_some_and(|s| s.retry_at.is_none()) {
                    self.probing.insert(piece);
                }
                self.outputs
                    .push_back(TorrentOutput::Disk(DiskOp::Write { block, data }));
                if outcome == Received::PieceComplete {
                    self.awaiting_hash.insert(piece);
                }
            }
        }
    }

    fn rechoke(&mut self, now: Instant) {
        self.rechoke_soon = false;
        // While a magnet link's metadata is fetched we have nothing to offer: everyone stays
        // choked (the choker still runs, so its round timer moves on).
        let fetching = self.fetch.is_some();
        let snapshots: Vec<PeerSnapshot<ConnId>> = self
            .peers
            .iter()
            .filter(|(_, p)| !fetching && p.conn.is_connected())
            .map(|(c, p)| PeerSnapshot {
                key: *c,
                interested: p.conn.peer_interested(),
                download_rate: p.conn.download_rate(now),
                upload_rate: p.conn.upload_rate(now),
                is_seed: p.conn.peer_pieces().is_complete(),
                snubbed: p.conn.is_snubbed(),
                connected_at: p.conn.connected_at(),
            })
            .collect();
        let seeding = self.is_complete();
        let unchoked = self.choker.rechoke(now, seeding, &snapshots);
        for (c, p) in self.peers.iter_mut() {
            if !p.conn.is_connected() {
                continue;
            }
            self.touched.insert(*c);
            if unchoked.contains(c) {
                p.conn.unchoke(now);
            } else {
                p.conn.choke(now);
            }
        }
    }

    /// After any change: interest, request pipelines, rechoke if due, and transmit.
    fn drive(&mut self, now: Instant) {
        if self.rechoke_soon {
            self.rechoke(now);
        }
        self.request_more(now);
        self.request_metadata_all(now);
        self.serve(now);
        self.flush_touched();
        #[cfg(debug_assertions)]
        self.check_bookkeeping(now);
    }

    /// Interest and request pipelines of the peers that may want a change (see the module docs),
    /// in handle order: the same requests as looking at every peer.
    fn request_more(&mut self, now: Instant) {
        let mut candidates = std::mem::take(&mut self.candidates);
        candidates.clear();
        // A pipeline target follows the measured rate, which without new data only falls within
        // a second; at a second's turn it may rise, so then every peer is looked at.
        let sec = now.as_micros() / 1_000_000;
        let sweep = self.swept_sec != Some(sec);
        if sweep {
            self.swept_sec = Some(sec);
            candidates.extend(self.peers.keys().copied());
        } else {
            candidates.extend(self.dirty.iter().copied());
            candidates.extend(self.short.keys().copied());
            candidates.sort_unstable();
            candidates.dedup();
        }
        self.download.rotate(&mut candidates);
        // Pieces that turned urgent or late change the picker's epoch: the peers whose last
        // pick ran short are looked at again, the others have full pipelines.
        let urgent_floor = self
            .update_urgent(now)
            .then(|| self.fastest_first(now, &mut candidates));
        let mut scratch = std::mem::take(&mut self.scratch);
        // A write stall waiting to retry: interest goes on, requests wait.
        let paused = self.requests_paused();
        for &c in &candidates {
            if !sweep
                && !self.dirty.contains(&c)
                && self.short.get(&c) == Some(&self.picker.epoch())
            {
                // Its last pick ran short and nothing became pickable since.
                continue;
            }
            let Some(p) = self.peers.get_mut(&c) else {
                continue;
            };
            self.short.remove(&c);
            let conn = &mut p.conn;
            if !conn.is_connected() {
                continue;
            }
            self.touched.insert(c);
            let wanted = p.missing > 0;
            conn.set_interested(now, wanted);
            if !wanted || paused {
                continue;
            }
            // Choked: only the pieces the peer allows fast (BEP 6), if any.
            if conn.peer_choking() && conn.allowed_fast().next().is_none() {
                continue;
            }
            let allowed_only = conn.peer_choking().then(|| {
                let mut bits = Bitfield::new(conn.peer_pieces().len());
                for p in conn.allowed_fast() {
                    if conn.peer_pieces().get(p) {
                        bits.set(p);
                    }
                }
                bits
            });
            if allowed_only.as_ref().is_some_and(Bitfield::is_clear) {
                continue;
            }
            let target = conn.pipeline_target(now) as usize;
            let urgent_ok = urgent_floor.is_none_or(|floor| conn.download_rate(now) >= floor);
            // A peer that is to serve urgent blocks serves them after what is queued there: it
            // keeps a short pipeline of other blocks, the newest cancelled (the peer serves in
            // order, so an urgent block asked now waits only for that short pipeline).
            let holds_urgent = urgent_floor.is_some()
                && urgent_ok
                && self
                    .picker
                    .urgent_held_by(allowed_only.as_ref().unwrap_or(conn.peer_pieces()));
            if holds_urgent {
                let picker = &self.picker;
                let cancelled = conn.cancel_newest_beyond(now, short_pipeline(target), |b| {
                    picker.is_urgent(b.piece.get())
                });
                for b in cancelled {
                    self.picker.request_dropped(b);
                    self.download.refund(u64::from(b.len));
                }
            }
            let want = target.saturating_sub(conn.outstanding_len());
            if want == 0 {
                continue;
            }
            let epoch = self.picker.epoch();
            // Paced: no more blocks than the download limit's tokens cover (every block counts
            // as a whole one here; the tokens taken are its real length).
            let allowed = want.min(self.download.blocks_available(now));
            scratch.clear();
            if allowed > 0 {
                let pieces = allowed_only.as_ref().unwrap_or(conn.peer_pieces());
                let normal_max = match urgent_floor {
                    Some(_) => short_pipeline(target).saturating_sub(conn.outstanding_len()),
                    None => allowed,
                };
                self.picker.pick_for(
                    pieces,
                    allowed,
                    urgent_ok,
                    normal_max,
                    |b| conn.has_requested(b),
                    &mut scratch,
                );
            }
            for b in scratch.drain(..) {
                if !conn.request(now, b) {
                    self.picker.request_dropped(b);
                } else {
                    let taken = self.download.take(now, c, u64::from(b.len));
                    debug_assert!(taken, "blocks_available covers every block picked");
                }
            }
            if conn.outstanding_len() < target {
                self.short.insert(c, epoch);
                // Held back by the limit only if it leaves less than a block: otherwise the
                // picker or the connection stopped short, and waking for tokens would not help.
                if self.download.blocks_available(now) == 0 {
                    self.download.hold(c);
                }
            }
        }
        self.dirty.clear();
        self.scratch = scratch;
        self.candidates = candidates;
        let started: Vec<PieceIndex> = self.picker.take_started().collect();
        for piece in started {
            self.event(TorrentEvent::PieceStarted(piece));
        }
    }

    /// Issues disk reads for queued requests, oldest first, while each peer's unsent bytes and
    /// reads in flight stay under the watermark and the torrent's read bound. Looks at the peers
    /// touched since the last pass and, while the read bound has room, those it held back: the
    /// others have every queued request read or wait for their own sends, as before.
    ///
    /// Under an upload limit a read is issued only once the tokens for its block are taken; a
    /// peer left waiting is held ([`Pacer::hold`]) and looked at again once tokens accrue, and
    /// the pass starts after the peer served last so the tokens go round.
    fn serve(&mut self, now: Instant) {
        let watermark = self.config.send_buffer_watermark;
        let mut candidates = std::mem::take(&mut self.candidates);
        candidates.clear();
        candidates.extend(self.touched.iter().copied());
        if self.reads_in_flight < self.config.max_reads_in_flight && !self.read_blocked.is_empty() {
            candidates.extend(self.read_blocked.iter().copied());
            candidates.sort_unstable();
            candidates.dedup();
        }
        self.upload.rotate(&mut candidates);
        for &conn in &candidates {
            self.read_blocked.remove(&conn);
            let Some(peer) = self.peers.get_mut(&conn) else {
                continue;
            };
            if !peer.conn.is_connected() {
                continue;
            }
            let Peer {
                conn: pc,
                reading,
                unsent,
                ..
            } = &mut **peer;
            let mut budget = watermark.saturating_sub(*unsent + reading.len() * BLOCK_BYTES);
            for block in pc.peer_requests() {
                if reading.contains(&block) {
                    continue;
                }
                if budget < block.len as usize
                    || self.reads_in_flight >= self.config.max_reads_in_flight
                {
                    if self.reads_in_flight >= self.config.max_reads_in_flight {
                        self.read_blocked.insert(conn);
                    }
                    break;
                }
                if !self.upload.take(now, conn, u64::from(block.len)) {
                    self.upload.hold(conn);
                    break;
                }
                budget -= block.len as usize;
                self.reads_in_flight += 1;
                reading.insert(block);
                self.outputs
                    .push_back(TorrentOutput::Disk(DiskOp::Read { conn, block }));
            }
        }
        self.candidates = candidates;
    }

    /// Moves the pending bytes of every peer touched since the last pass to the outputs, in
    /// handle order, and refreshes their deadlines. Untouched peers have nothing pending.
    fn flush_touched(&mut self) {
        while let Some(conn) = self.touched.pop_first() {
            self.flush(conn);
            self.refresh_deadline(conn);
        }
    }

    /// Keeps [`Torrent::timers`] in step with `conn`'s [`PeerConn::poll_timeout`].
    fn refresh_deadline(&mut self, conn: ConnId) {
        let Some(peer) = self.peers.get_mut(&conn) else {
            return;
        };
        let deadline = peer.conn.poll_timeout();
        if deadline != peer.deadline {
            if let Some(at) = peer.deadline {
                self.timers.remove(&(at, conn));
            }
            if let Some(at) = deadline {
                self.timers.insert((at, conn));
            }
            peer.deadline = deadline;
        }
    }

    /// We are verifying `piece` (called before the picker learns it): unless we had it already,
    /// peers that have it offer one piece fewer (those left with none lose our interest); every
    /// connected peer is sent a have.
    fn piece_gained(&mut self, piece: PieceIndex) {
        // Only needed pieces are counted in `missing`.
        let new = self.picker.needs(piece);
        for (c, p) in self.peers.iter_mut() {
            if new && p.conn.peer_pieces().get(piece.get()) {
                p.missing = p.missing.saturating_sub(1);
                if p.missing == 0 {
                    self.dirty.insert(*c);
                }
            }
            if p.conn.is_connected() {
                self.touched.insert(*c);
            }
        }
    }

    /// Debug builds: the incremental bookkeeping equals a from-scratch computation over every
    /// peer (interest counts, deadlines, nothing left unflushed, no pipeline left short unseen).
    #[cfg(debug_assertions)]
    fn check_bookkeeping(&self, now: Instant) {
        let mut with_deadline = 0;
        for (c, p) in &self.peers {
            let conn = &p.conn;
            assert_eq!(
                p.missing,
                self.picker.settled().count_lacked(conn.peer_pieces()),
                "{c:?}: interest count"
            );
            assert_eq!(p.deadline, conn.poll_timeout(), "{c:?}: deadline");
            if let Some(at) = p.deadline {
                with_deadline += 1;
                assert!(self.timers.contains(&(at, *c)), "{c:?}: timer entry");
            }
            assert_eq!(conn.send_queue_len(), 0, "{c:?}: unflushed bytes");
            if conn.is_connected() {
                assert_eq!(conn.am_interested(), p.missing > 0, "{c:?}: interest");
                let can_request = !conn.peer_choking()
                    || conn
                        .allowed_fast()
                        .any(|piece| conn.peer_pieces().get(piece));
                if p.missing > 0
                    && !self.requests_paused()
                    && can_request
                    && conn.outstanding_len() < conn.pipeline_target(now) as usize
                {
                    assert!(self.short.contains_key(c), "{c:?}: short pipeline unseen");
                }
            }
        }
        assert_eq!(self.timers.len(), with_deadline, "stale timer entries");
    }

    /// Whether a write stall holds requests back now.
    fn requests_paused(&self) -> bool {
        self.stall.as_ref().is_some_and(|s| s.retry_at.is_some())
    }

    fn flush(&mut self, conn: ConnId) {
        if let Some(peer) = self.peers.get_mut(&conn) {
            while let Some(bytes) = peer.conn.poll_transmit() {
                peer.unsent += bytes.len();
                peer.emitted += bytes.len() as u64;
                self.outputs
                    .push_back(TorrentOutput::Transmit { conn, bytes });
            }
        }
    }
}
