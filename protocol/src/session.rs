//! [`Session`]: the top of the protocol: every torrent, every connection, one clock and one seed.
//!
//! It gives out our peer id and each torrent's random stream (all from the one seed given to
//! [`Session::new`]), routes an incoming connection to its torrent by the info hash in the peer's
//! handshake, merges the torrents' timers, and labels their outputs with the torrent they belong
//! to.
//!
//! Methods, in the quinn-proto order:
//! - getters: [`Session::peer_id`], [`Session::torrent`], [`Session::poll_timeout`];
//! - input: [`Session::handle_bytes`], [`Session::handle_sent`], [`Session::handle_disconnect`],
//!   [`Session::handle_disk`], [`Session::handle_timeout`];
//! - commands: [`Session::add_torrent`], [`Session::add_magnet`], [`Session::set_metadata`],
//!   [`Session::remove_torrent`], [`Session::connect`], [`Session::connect_encrypted`],
//!   [`Session::accept`],
//!   [`Session::set_listen_port`], [`Session::set_dht_port`], [`Session::close_connections`],
//!   [`Session::set_rate_limits`], [`Session::set_torrent_rate_limits`],
//!   [`Session::set_file_priorities`];
//! - output: [`Session::poll_output`], drained after every input and command.
//!
//! Cost: timers and routing do not walk the connections: incoming connections still waiting for
//! their handshake sit in a set ordered by arrival, each torrent keeps its own timer set.
//!
//! Encryption (MSE/PE, [`SessionConfig::encryption`]): connections whose first bytes are an
//! encryption handshake, and those opened with [`Session::connect_encrypted`], go through the
//! `mse` layer; the torrents see only plaintext.
//!
//! Bounds: connections at most [`SessionConfig::max_connections`]; an incoming connection not yet
//! routed holds at most the 48 handshake bytes needed to route it, or during an encryption
//! handshake at most [`crate::mse::MAX_BUFFERED`], for at most
//! [`SessionConfig::handshake_timeout`].

use core::net::SocketAddr;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use crate::bandwidth::{Limits, RateShares, Usage};
use crate::io::{ConnId, DiskDone, DiskOp};
use crate::metainfo::{InfoHash, TorrentLayout};
use crate::peer::Direction;
use crate::rng::Rng;
use crate::time::Instant;
use crate::torrent::{
    AddPeerError, Bitfield, CloseReason, Torrent, TorrentConfig, TorrentEvent, TorrentOutput,
};
use crate::wire::{PROTOCOL, PeerId};

mod mse;

pub use mse::Encryption;

/// A torrent's handle within a session.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TorrentId(pub u32);

/// Tunables of a session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionConfig {
    /// Settings for every torrent.
    pub torrent: TorrentConfig,
    /// Most connections across all torrents.
    pub max_connections: usize,
    /// An incoming connection must send enough of its handshake to be routed within this time,
    /// and an encryption handshake either way must finish within it (else it closes with
    /// [`SessionCloseReason::Mse`] `TimedOut`).
    pub handshake_timeout: Duration,
    /// The first 8 bytes of our peer id (Azureus style: `-BT0100-`); the rest is random.
    pub peer_id_prefix: [u8; 8],
    /// Message stream encryption for incoming connections (see [`Encryption`]); `None`: none
    /// at all, and an encrypted handshake is refused as [`SessionCloseReason::NotBitTorrent`].
    pub encryption: Option<Encryption>,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            torrent: TorrentConfig::default(),
            max_connections: 500,
            handshake_timeout: Duration::from_secs(20),
            peer_id_prefix: *b"-BT0100-",
            encryption: None,
        }
    }
}

/// Why a session closes a connection it could not give to a torrent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SessionCloseReason {
    /// The torrent closed it.
    Torrent(CloseReason),
    /// The handshake names a torrent we do not have (BEP 3: drop the connection).
    UnknownTorrent(InfoHash),
    /// The first bytes are not a BitTorrent handshake.
    NotBitTorrent,
    /// The handshake did not arrive in time.
    HandshakeTimeout,
    /// The torrent refused the peer (banned, full).
    Refused(AddPeerError),
    /// [`SessionConfig::max_connections`] reached.
    TooManyConnections,
    /// The torrent was removed.
    TorrentRemoved,
    /// The torrent was stopped or paused.
    TorrentStopped,
    /// The encryption handshake failed (see [`crate::mse::MseError::name`]).
    Mse(crate::mse::MseError),
    /// A plaintext handshake while encryption is required.
    PlaintextRefused,
}

/// Why a command failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    /// A torrent with this info hash is already in the session.
    #[error("torrent {0} is already added")]
    DuplicateTorrent(InfoHash),
    /// No such torrent.
    #[error("no torrent {0:?}")]
    NoSuchTorrent(TorrentId),
    /// The connection handle is already in use.
    #[error("{0:?} is already in use")]
    ConnInUse(ConnId),
    /// [`SessionConfig::max_connections`] reached.
    #[error("already {0} connections")]
    TooManyConnections(usize),
    /// The torrent refused the peer.
    #[error(transparent)]
    Refused(#[from] AddPeerError),
    /// The torrent is paused or stopped: it takes no connection.
    #[error("torrent {0:?} is paused or stopped")]
    NotAccepting(TorrentId),
    /// The torrent refused the file priorities.
    #[error(transparent)]
    Priorities(#[from] crate::torrent::FilePrioritiesError),
    /// The torrent refused the reader or deadline.
    #[error(transparent)]
    Reader(#[from] crate::torrent::ReaderError),
}

/// What the session asks its driver to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// Write bytes to a connection's socket, then report it with [`Session::handle_sent`].
    Transmit {
        /// The connection.
        conn: ConnId,
        /// The bytes.
        bytes: bytes::Bytes,
    },
    /// Close a connection's socket.
    Close {
        /// The connection.
        conn: ConnId,
        /// Why.
        reason: SessionCloseReason,
    },
    /// Disk work for a torrent; answer with [`Session::handle_disk`].
    Disk {
        /// The torrent.
        torrent: TorrentId,
        /// The work.
        op: DiskOp,
    },
    /// Something for the user.
    Event {
        /// The torrent.
        torrent: TorrentId,
        /// What happened.
        event: TorrentEvent,
    },
}

#[derive(Debug)]
enum Conn {
    /// Incoming, waiting for enough of the handshake to route it.
    Pending {
        addr: SocketAddr,
        buffer: Vec<u8>,
        since: Instant,
        /// The torrent an encryption handshake named, which the BitTorrent handshake behind it
        /// must name too.
        encrypted: Option<InfoHash>,
    },
    /// Its encryption handshake is under way.
    Mse(mse::Handshaking),
    /// Owned by a torrent.
    Attached(TorrentId),
}

/// Bytes of a handshake up to the end of the info hash: enough to route it.
const ROUTING_LEN: usize = 1 + 19 + 8 + 20;

/// The whole protocol state of one bt process. See the module docs, and the crate docs for the
/// driver loop.
#[derive(Debug)]
pub struct Session {
    config: SessionConfig,
    rng: Rng,
    peer_id: PeerId,
    /// Boxed: a B-tree node has room for eleven entries, and a process with one torrent would
    /// otherwise carry ten empty `Torrent`s (2 KB each) beside it.
    torrents: BTreeMap<TorrentId, Box<Torrent>>,
    by_hash: BTreeMap<InfoHash, TorrentId>,
    conns: BTreeMap<ConnId, Conn>,
    /// The [`Conn::Pending`] connections by arrival: `(since, conn)`.
    pending: BTreeSet<(Instant, ConnId)>,
    next_torrent: u32,
    outputs: VecDeque<Output>,
    /// Global and per-torrent rate limits (see [`Session::set_rate_limits`]).
    shares: RateShares<TorrentId>,
    /// Torrents that take no new connection (paused or stopped; see
    /// [`Session::set_accepting`]).
    closed: BTreeSet<TorrentId>,
    /// `HASH('req2', info hash)` of every torrent: how an encrypted peer names one.
    by_req2: BTreeMap<[u8; 20], InfoHash>,
    /// The encryption layer (see the `mse` module).
    crypto: mse::Crypto,
}

impl Session {
    /// A session whose every random choice comes from `seed`.
    pub fn new(config: SessionConfig, seed: u64) -> Self {
        let mut rng = Rng::new(seed);
        let mut id = [0u8; 20];
        id[..8].copy_from_slice(&config.peer_id_prefix);
        // Printable random tail, as most clients do.
        const ALPHABET: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
        for b in &mut id[8..] {
            *b = ALPHABET[rng.below(ALPHABET.len() as u64) as usize];
        }
        Session {
            config,
            rng,
            peer_id: PeerId(id),
            torrents: BTreeMap::new(),
            by_hash: BTreeMap::new(),
            conns: BTreeMap::new(),
            pending: BTreeSet::new(),
            next_torrent: 0,
            outputs: VecDeque::new(),
            shares: RateShares::new(),
            closed: BTreeSet::new(),
            by_req2: BTreeMap::new(),
            crypto: mse::Crypto::new(seed),
        }
    }

    // ---- getters ----

    /// Our peer id.
    pub fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    /// A torrent.
    pub fn torrent(&self, id: TorrentId) -> Option<&Torrent> {
        self.torrents.get(&id).map(|t| &**t)
    }

    /// Every torrent, in handle order.
    pub fn torrents(&self) -> impl Iterator<Item = (TorrentId, &Torrent)> {
        self.torrents.iter().map(|(id, t)| (*id, &**t))
    }

    /// Open connections, routed or not.
    pub fn connection_count(&self) -> usize {
        self.conns.len()
    }

    /// The next time [`Session::handle_timeout`] has work.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let pending = self
            .pending
            .first()
            .map(|(since, _)| *since + self.config.handshake_timeout);
        let torrents = self.torrents.values().filter_map(|t| t.poll_timeout());
        let division = self.shares.next_division();
        pending.into_iter().chain(torrents).chain(division).min()
    }

    /// The next output. Drain after every input and command.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    // ---- commands ----

    /// Adds a torrent with the pieces `have` already verified.
    pub fn add_torrent(
        &mut self,
        info_hash: InfoHash,
        layout: TorrentLayout,
        piece_hashes: Vec<[u8; 20]>,
        have: Bitfield,
    ) -> Result<TorrentId, SessionError> {
        if self.by_hash.contains_key(&info_hash) {
            return Err(SessionError::DuplicateTorrent(info_hash));
        }
        let id = TorrentId(self.next_torrent);
        self.next_torrent += 1;
        let torrent = Torrent::new(
            self.config.torrent.clone(),
            info_hash,
            layout,
            piece_hashes,
            have,
            self.peer_id,
            self.rng.fork(u64::from(id.0)),
        );
        self.torrents.insert(id, Box::new(torrent));
        self.by_hash.insert(info_hash, id);
        self.by_req2
            .insert(crate::mse::req2_hash(&info_hash), info_hash);
        Ok(id)
    }

    /// Adds a torrent known only by its info hash (a magnet link, BEP 9): it fetches its
    /// metadata from its peers, then downloads (see [`Torrent::new_magnet`]). Incoming
    /// connections for its info hash are routed to it as for any torrent.
    pub fn add_magnet(&mut self, info_hash: InfoHash) -> Result<TorrentId, SessionError> {
        if self.by_hash.contains_key(&info_hash) {
            return Err(SessionError::DuplicateTorrent(info_hash));
        }
        let id = TorrentId(self.next_torrent);
        self.next_torrent += 1;
        let torrent = Torrent::new_magnet(
            self.config.torrent.clone(),
            info_hash,
            self.peer_id,
            self.rng.fork(u64::from(id.0)),
        );
        self.torrents.insert(id, Box::new(torrent));
        self.by_hash.insert(info_hash, id);
        self.by_req2
            .insert(crate::mse::req2_hash(&info_hash), info_hash);
        Ok(id)
    }

    /// The info dictionary of torrent `id` (made from a `.torrent` file) and whether it is
    /// private: see [`Torrent::set_metadata`]. Does nothing for an unknown id.
    pub fn set_metadata(&mut self, id: TorrentId, info: bytes::Bytes, private: bool) {
        if let Some(t) = self.torrents.get_mut(&id) {
            t.set_metadata(info, private);
        }
    }

    /// Each file's priority in torrent `id`: see [`Torrent::set_file_priorities`].
    pub fn set_file_priorities(
        &mut self,
        now: Instant,
        id: TorrentId,
        priorities: &[crate::torrent::FilePriority],
    ) -> Result<(), SessionError> {
        self.command(id, |t| t.set_file_priorities(now, priorities))
    }

    /// Runs a command on torrent `id` and collects what it did.
    fn command<E>(
        &mut self,
        id: TorrentId,
        f: impl FnOnce(&mut Torrent) -> Result<(), E>,
    ) -> Result<(), SessionError>
    where
        SessionError: From<E>,
    {
        let t = self
            .torrents
            .get_mut(&id)
            .ok_or(SessionError::NoSuchTorrent(id))?;
        f(t)?;
        self.collect(id);
        Ok(())
    }

    /// Reader `reader` of torrent `id` is at `position`: see [`Torrent::set_reader`].
    pub fn set_reader(
        &mut self,
        now: Instant,
        id: TorrentId,
        reader: crate::torrent::ReaderId,
        position: crate::torrent::ReadPosition,
    ) -> Result<(), SessionError> {
        self.command(id, |t| t.set_reader(now, reader, position))
    }

    /// Reader `reader` of torrent `id` went away: see [`Torrent::remove_reader`]. Does nothing
    /// for an unknown torrent or reader.
    pub fn remove_reader(&mut self, now: Instant, id: TorrentId, reader: crate::torrent::ReaderId) {
        if let Some(t) = self.torrents.get_mut(&id) {
            t.remove_reader(now, reader);
            self.collect(id);
        }
    }

    /// Piece `piece` of torrent `id` is needed by `deadline` (`None`: no longer): see
    /// [`Torrent::set_piece_deadline`].
    pub fn set_piece_deadline(
        &mut self,
        now: Instant,
        id: TorrentId,
        piece: crate::metainfo::PieceIndex,
        deadline: Option<Instant>,
    ) -> Result<(), SessionError> {
        self.command(id, |t| t.set_piece_deadline(now, piece, deadline))
    }

    /// Our TCP listen port, advertised to the peers of every torrent, present and future, in the
    /// extension handshakes sent after the call (BEP 10 `p`).
    pub fn set_listen_port(&mut self, port: u16) {
        self.config.torrent.listen_port = Some(port);
        for t in self.torrents.values_mut() {
            t.set_listen_port(port);
        }
    }

    /// Our DHT node's UDP port, for every torrent, present and future: see
    /// [`Torrent::set_dht_port`].
    pub fn set_dht_port(&mut self, port: u16) {
        self.config.torrent.dht_port = Some(port);
        for t in self.torrents.values_mut() {
            t.set_dht_port(port);
        }
    }

    /// Removes a torrent and closes its connections.
    pub fn remove_torrent(&mut self, id: TorrentId) -> Result<(), SessionError> {
        let torrent = self
            .torrents
            .remove(&id)
            .ok_or(SessionError::NoSuchTorrent(id))?;
        self.by_hash.remove(&torrent.info_hash());
        self.by_req2
            .remove(&crate::mse::req2_hash(&torrent.info_hash()));
        self.closed.remove(&id);
        let conns: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, c)| matches!(c, Conn::Attached(t) if *t == id))
            .map(|(c, _)| *c)
            .collect();
        for conn in conns {
            self.remove_conn(conn);
            self.crypto.forget(conn);
            self.outputs.push_back(Output::Close {
                conn,
                reason: SessionCloseReason::TorrentRemoved,
            });
        }
        Ok(())
    }

    /// Closes every connection of torrent `id` (it stops or pauses); the torrent keeps its
    /// state and reports each as [`TorrentEvent::PeerClosed`].
    pub fn close_connections(&mut self, now: Instant, id: TorrentId) {
        let conns: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, c)| matches!(c, Conn::Attached(t) if *t == id))
            .map(|(c, _)| *c)
            .collect();
        for &conn in &conns {
            self.remove_conn(conn);
            self.crypto.forget(conn);
            self.outputs.push_back(Output::Close {
                conn,
                reason: SessionCloseReason::TorrentStopped,
            });
        }
        let Some(t) = self.torrents.get_mut(&id) else {
            return;
        };
        for &conn in &conns {
            t.peer_disconnected(now, conn);
        }
        // What the torrent says to peers as each goes (a choke shuffle) is for connections
        // closing too: nothing of it is sent.
        while let Some(out) = t.poll_output() {
            let out = match out {
                TorrentOutput::Transmit { .. } => continue,
                TorrentOutput::Close { conn, reason } => Output::Close {
                    conn,
                    reason: SessionCloseReason::Torrent(reason),
                },
                TorrentOutput::Disk(op) => Output::Disk { torrent: id, op },
                TorrentOutput::Event(event) => Output::Event { torrent: id, event },
            };
            self.outputs.push_back(out);
        }
    }

    /// Whether torrent `id` takes new connections (it does from the start): while it does not
    /// (paused, stopped), an incoming handshake naming it is refused with
    /// [`SessionCloseReason::TorrentStopped`] and [`Session::connect`] refuses it.
    pub fn set_accepting(&mut self, id: TorrentId, accepting: bool) {
        if accepting {
            self.closed.remove(&id);
        } else if self.torrents.contains_key(&id) {
            self.closed.insert(id);
        }
    }

    /// Whether `conn`'s encryption handshake is under way.
    pub fn is_encrypting(&self, conn: ConnId) -> bool {
        matches!(self.conns.get(&conn), Some(Conn::Mse(_)))
    }

    /// Whether torrent `id` takes new connections (see [`Session::set_accepting`]).
    pub fn is_accepting(&self, id: TorrentId) -> bool {
        self.torrents.contains_key(&id) && !self.closed.contains(&id)
    }

    /// We opened `conn` to `addr` for `torrent`: our handshake is queued at once.
    pub fn connect(
        &mut self,
        now: Instant,
        torrent: TorrentId,
        conn: ConnId,
        addr: SocketAddr,
    ) -> Result<(), SessionError> {
        self.add_outbound(now, torrent, conn, addr)?;
        self.conns.insert(conn, Conn::Attached(torrent));
        self.collect(torrent);
        Ok(())
    }

    /// Gives torrent `torrent` a connection we opened, if the session and the torrent take it;
    /// returns the torrent's info hash. The caller records the connection.
    fn add_outbound(
        &mut self,
        now: Instant,
        torrent: TorrentId,
        conn: ConnId,
        addr: SocketAddr,
    ) -> Result<InfoHash, SessionError> {
        self.check_new_conn(conn)?;
        if self.closed.contains(&torrent) {
            return Err(SessionError::NotAccepting(torrent));
        }
        let t = self
            .torrents
            .get_mut(&torrent)
            .ok_or(SessionError::NoSuchTorrent(torrent))?;
        t.add_peer(now, conn, addr, Direction::Outbound)?;
        Ok(t.info_hash())
    }

    /// A peer at `addr` opened `conn` to us; it is routed when its handshake arrives.
    pub fn accept(
        &mut self,
        now: Instant,
        conn: ConnId,
        addr: SocketAddr,
    ) -> Result<(), SessionError> {
        self.check_new_conn(conn)?;
        self.pending.insert((now, conn));
        self.conns.insert(
            conn,
            Conn::Pending {
                addr,
                buffer: Vec::new(),
                since: now,
                encrypted: None,
            },
        );
        Ok(())
    }

    fn check_new_conn(&self, conn: ConnId) -> Result<(), SessionError> {
        if self.conns.contains_key(&conn) {
            return Err(SessionError::ConnInUse(conn));
        }
        if self.conns.len() >= self.config.max_connections {
            return Err(SessionError::TooManyConnections(
                self.config.max_connections,
            ));
        }
        Ok(())
    }

    // ---- input ----

    /// Bytes read from `conn`'s socket. On an RC4 connection they are copied to be decrypted:
    /// a driver that owns its read buffer saves the copy with [`Session::handle_bytes_mut`].
    pub fn handle_bytes(&mut self, now: Instant, conn: ConnId, bytes: &[u8]) {
        match self.crypto.copy_to_decrypt(conn, bytes) {
            Some(mut copy) => {
                self.handle_bytes_mut(now, conn, &mut copy);
                self.crypto.give_back(copy);
            }
            None => self.handle_plain(now, conn, bytes),
        }
    }

    /// Bytes read from `conn`'s socket, in a buffer this may overwrite: on an RC4 connection
    /// they are decrypted in place.
    pub fn handle_bytes_mut(&mut self, now: Instant, conn: ConnId, bytes: &mut [u8]) {
        self.crypto.decrypt(conn, bytes);
        self.handle_plain(now, conn, bytes);
    }

    /// Bytes from `conn`, decrypted.
    fn handle_plain(&mut self, now: Instant, conn: ConnId, bytes: &[u8]) {
        match self.conns.get_mut(&conn) {
            None => {}
            Some(Conn::Attached(t)) => {
                let t = *t;
                if let Some(torrent) = self.torrents.get_mut(&t) {
                    torrent.handle_bytes(now, conn, bytes);
                    self.collect(t);
                }
            }
            Some(Conn::Pending {
                buffer, encrypted, ..
            }) => {
                buffer.extend_from_slice(bytes);
                // Past an encryption handshake it is routed; else its first bytes sort it.
                let sorted = encrypted.is_some();
                if sorted || self.sort_pending(now, conn) == Some(true) {
                    self.route(now, conn);
                }
            }
            Some(Conn::Mse(_)) => self.mse_bytes(now, conn, bytes),
        }
    }

    /// Routes a pending connection once its handshake names a torrent.
    fn route(&mut self, now: Instant, conn: ConnId) {
        let Some(Conn::Pending {
            buffer,
            addr,
            encrypted,
            ..
        }) = self.conns.get(&conn)
        else {
            return;
        };
        let checked = buffer.len().min(1 + PROTOCOL.len());
        let mut expected = vec![PROTOCOL.len() as u8];
        expected.extend_from_slice(PROTOCOL);
        if buffer[..checked] != expected[..checked] {
            return self.refuse(now, conn, SessionCloseReason::NotBitTorrent);
        }
        if buffer.len() < ROUTING_LEN {
            return;
        }
        let hash = InfoHash(buffer[28..48].try_into().expect("20 bytes"));
        if encrypted.is_some_and(|e| e != hash) {
            let lie = crate::mse::MseError::UnknownTorrent;
            return self.refuse(now, conn, SessionCloseReason::Mse(lie));
        }
        let Some(&id) = self.by_hash.get(&hash) else {
            return self.refuse(now, conn, SessionCloseReason::UnknownTorrent(hash));
        };
        if self.closed.contains(&id) {
            return self.refuse(now, conn, SessionCloseReason::TorrentStopped);
        }
        let (addr, buffer) = (*addr, buffer.clone());
        let torrent = self
            .torrents
            .get_mut(&id)
            .expect("by_hash and torrents agree");
        if let Err(e) = torrent.add_peer(now, conn, addr, Direction::Inbound) {
            return self.refuse(now, conn, SessionCloseReason::Refused(e));
        }
        self.remove_conn(conn);
        self.conns.insert(conn, Conn::Attached(id));
        let torrent = self
            .torrents
            .get_mut(&id)
            .expect("by_hash and torrents agree");
        torrent.handle_bytes(now, conn, &buffer);
        self.collect(id);
    }

    /// Closes a connection no torrent owns yet, or whose encryption handshake a torrent waits on
    /// (the torrent hears of it as a peer gone).
    fn refuse(&mut self, now: Instant, conn: ConnId, reason: SessionCloseReason) {
        let removed = self.remove_conn(conn);
        self.crypto.forget(conn);
        // The close first: whoever acts on the torrent's news of the peer knows why.
        self.outputs.push_back(Output::Close { conn, reason });
        if let Some(Conn::Mse(h)) = removed
            && let Some(t) = h.torrent()
            && let Some(torrent) = self.torrents.get_mut(&t)
        {
            torrent.peer_disconnected(now, conn);
            self.collect(t);
        }
    }

    /// The driver wrote `bytes` of `conn`'s transmit data to its socket.
    pub fn handle_sent(&mut self, now: Instant, conn: ConnId, bytes: usize) {
        // Written bytes of a connection still handshaking or being routed are the encryption
        // handshake's (or held), but must come off its split all the same.
        let (t, handshaking) = match self.conns.get(&conn) {
            Some(Conn::Attached(t)) => (Some(*t), false),
            Some(Conn::Mse(h)) => (h.torrent(), true),
            Some(Conn::Pending { .. }) => (None, true),
            None => return,
        };
        let bytes = self.crypto.written(conn, bytes, handshaking);
        if bytes > 0
            && let Some(t) = t
            && let Some(torrent) = self.torrents.get_mut(&t)
        {
            torrent.handle_sent(now, conn, bytes);
            self.collect(t);
        }
    }

    /// `conn`'s socket closed or failed.
    pub fn handle_disconnect(&mut self, now: Instant, conn: ConnId) {
        self.crypto.forget(conn);
        let t = match self.remove_conn(conn) {
            Some(Conn::Attached(t)) => t,
            Some(Conn::Mse(h)) => match h.torrent() {
                Some(t) => t,
                None => return,
            },
            _ => return,
        };
        if let Some(torrent) = self.torrents.get_mut(&t) {
            torrent.peer_disconnected(now, conn);
            self.collect(t);
        }
    }

    /// The driver's answer to an [`Output::Disk`].
    pub fn handle_disk(&mut self, now: Instant, torrent: TorrentId, done: DiskDone) {
        if let Some(t) = self.torrents.get_mut(&torrent) {
            t.handle_disk(now, done);
            self.collect(torrent);
        }
    }

    /// Fires what is due. Early or repeated calls are harmless.
    pub fn handle_timeout(&mut self, now: Instant) {
        // `now - since` shrinks as `since` grows: the expired ones are a prefix. Refused in handle
        // order, as a walk over the connections would.
        let mut expired: Vec<ConnId> = self
            .pending
            .iter()
            .take_while(|(since, _)| now - *since >= self.config.handshake_timeout)
            .map(|(_, c)| *c)
            .collect();
        expired.sort_unstable();
        for conn in expired {
            let reason = match self.conns.get(&conn) {
                Some(Conn::Mse(_)) => SessionCloseReason::Mse(crate::mse::MseError::TimedOut),
                _ => SessionCloseReason::HandshakeTimeout,
            };
            self.refuse(now, conn, reason);
        }
        if self.shares.next_division().is_some_and(|at| at <= now) {
            self.divide_rates(now, false);
        }
        let ids: Vec<TorrentId> = self.torrents.keys().copied().collect();
        for id in ids {
            let t = self.torrents.get_mut(&id).expect("listed above");
            if t.poll_timeout().is_some_and(|d| d <= now) {
                t.handle_timeout(now);
                self.collect(id);
            }
        }
    }

    /// Forgets `conn`, keeping [`Session::pending`] in step.
    fn remove_conn(&mut self, conn: ConnId) -> Option<Conn> {
        let removed = self.conns.remove(&conn);
        match &removed {
            Some(Conn::Pending { since, .. }) => {
                self.pending.remove(&(*since, conn));
            }
            Some(Conn::Mse(h)) => {
                self.pending.remove(&(h.since, conn));
            }
            _ => {}
        }
        removed
    }

    /// Moves a torrent's outputs to the session's, forgetting connections it closed.
    fn collect(&mut self, id: TorrentId) {
        let Some(t) = self.torrents.get_mut(&id) else {
            return;
        };
        while let Some(out) = t.poll_output() {
            let out = match out {
                TorrentOutput::Transmit { conn, bytes } => {
                    match self.crypto.outgoing(&mut self.conns, conn, bytes) {
                        Some(bytes) => Output::Transmit { conn, bytes },
                        None => continue,
                    }
                }
                TorrentOutput::Close { conn, reason } => {
                    if let Some(Conn::Mse(h)) = self.conns.remove(&conn) {
                        self.pending.remove(&(h.since, conn));
                    }
                    self.crypto.forget(conn);
                    Output::Close {
                        conn,
                        reason: SessionCloseReason::Torrent(reason),
                    }
                }
                TorrentOutput::Disk(op) => Output::Disk { torrent: id, op },
                TorrentOutput::Event(event) => Output::Event { torrent: id, event },
            };
            self.outputs.push_back(out);
        }
    }
}

/// Rate limits: a global limit shared among the torrents, and each torrent's own.
impl Session {
    /// Sets the process-wide download and upload limits, in block payload bytes per second
    /// (`None`: unlimited). The session divides each among its torrents every
    /// [`crate::bandwidth::DIVISION_INTERVAL`] by what they used, and a torrent's effective limit
    /// is the min of its own ([`Session::set_torrent_rate_limits`]) and its share: see
    /// [`RateShares`] for the rule. The sum over the torrents stays within the global limit.
    pub fn set_rate_limits(&mut self, now: Instant, download: Option<u64>, upload: Option<u64>) {
        self.shares.set_global(now, Limits { download, upload });
        // Torrents added later start with the share of a newcomer.
        let newcomer = self.shares.newcomer();
        self.config.torrent.download_limit = newcomer.download;
        self.config.torrent.upload_limit = newcomer.upload;
        self.divide_rates(now, true);
    }

    /// Sets torrent `id`'s own download and upload limits, in block payload bytes per second
    /// (`None`: unlimited); under a global limit its effective limit is the min of this and its
    /// share (see [`Session::set_rate_limits`]).
    pub fn set_torrent_rate_limits(
        &mut self,
        now: Instant,
        id: TorrentId,
        download: Option<u64>,
        upload: Option<u64>,
    ) -> Result<(), SessionError> {
        if !self.torrents.contains_key(&id) {
            return Err(SessionError::NoSuchTorrent(id));
        }
        let torrents = &self.torrents;
        self.shares.retain(|k| torrents.contains_key(k));
        let limits = self.shares.set_own(id, Limits { download, upload });
        if let Some(t) = self.torrents.get_mut(&id) {
            t.set_rate_limits(now, limits.download, limits.upload);
            self.collect(id);
        }
        Ok(())
    }

    /// Divides the global limits among the torrents (evenly if `busy`) and applies each
    /// torrent's effective limits.
    fn divide_rates(&mut self, now: Instant, busy: bool) {
        let usage: Vec<(TorrentId, Usage, Usage)> = self
            .torrents
            .iter_mut()
            .map(|(id, t)| {
                let (down, up) = t.take_rate_usage();
                (*id, down, up)
            })
            .collect();
        for (id, limits) in self.shares.divide(now, &usage, busy) {
            if let Some(t) = self.torrents.get_mut(&id) {
                t.set_rate_limits(now, limits.download, limits.upload);
                self.collect(id);
            }
        }
    }
}
