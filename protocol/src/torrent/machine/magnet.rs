//! The magnet phase of a [`Torrent`] (BEP 9): a torrent made from an info hash alone fetches its
//! info dictionary from its peers, then becomes a normal torrent, keeping its connections.
//!
//! While fetching, the torrent's layout is [`TorrentLayout::empty`]: no piece exists, nothing is
//! requested, written or served, every peer stays choked, and Fast peers are told have-none. Each
//! connection keeps the peer's piece announcements raw ([`PeerConn::new_unknown_layout`](crate::peer::PeerConn::new_unknown_layout)) until the
//! layout is known. Every peer whose extension handshake gives a `ut_metadata` id and a
//! `metadata_size` that [`MetadataFetch`] accepts (at most
//! [`TorrentConfig::max_metadata_size`](super::TorrentConfig)) is asked for pieces, lowest first,
//! at most [`METADATA_REQUESTS_PER_PEER`] at a time, so several peers serve at once. A request
//! unanswered after [`TorrentConfig::metadata_timeout`](super::TorrentConfig), or rejected, frees
//! its piece for another peer and keeps that peer from being asked for the same time again.
//!
//! When the pieces hash to the info hash, the dictionary is parsed with the checks of a
//! `.torrent` file ([`Info::from_info_bytes`]): valid, it gives the layout, the piece hashes and an
//! empty picker, each connection learns the layout ([`PeerConn::set_layout`](crate::peer::PeerConn::set_layout): closed if its
//! bitfield does not fit), our extension handshake goes out again with `metadata_size`, and
//! [`TorrentEvent::MetadataReceived`] is emitted; invalid, [`TorrentEvent::MetadataInvalid`]
//! (fatal) and nothing more is fetched.
//!
//! Pieces that do not hash to the info hash: the fetch starts over with the other peers. If one
//! peer sent them all, it is closed ([`CloseReason::BadMetadata`]) and banned at once. If several
//! did, who lied is not known (an honest peer's pieces fail along with a liar's, as with piece
//! data, see smart ban): their pieces are kept, the next attempts ask one peer at a time (so a
//! failure names its liar), and once the metadata is known the senders of kept pieces that
//! differ from it are closed ([`CloseReason::BadMetadata`]) and banned; honest ones are not.
//!
//! Cost: while fetching, every input walks the peers (to ask free pieces of those that may be
//! asked), only in this phase.
//! Bounds: the fetch holds at most the size cap of data, and so do the pieces of the attempt
//! under way kept with their senders, and the suspect pieces of failed attempts (the oldest are
//! dropped past the cap); per peer at most [`METADATA_REQUESTS_PER_PEER`] requests; the timer
//! set holds at most two entries per request asked (its deadline and the backoff it may start).

use core::net::IpAddr;
use std::collections::{BTreeMap, BTreeSet, VecDeque};

use bytes::Bytes;

use super::{CloseReason, Torrent, TorrentConfig, TorrentEvent};
use crate::io::ConnId;
use crate::metainfo::{Info, InfoHash, TorrentLayout};
use crate::rng::Rng;
use crate::time::Instant;
use crate::torrent::{Bitfield, Picker};
use crate::wire::{FetchProgress, MetadataFetch, MetadataMessage, PeerId, metadata_piece};

/// The most `ut_metadata` requests in flight to one peer.
pub const METADATA_REQUESTS_PER_PEER: usize = 2;

/// The state of the metadata fetch.
#[derive(Debug)]
pub(super) struct MagnetFetch {
    fetch: MetadataFetch<ConnId>,
    /// Request deadlines (`Some(piece)`) and ends of a peer's backoff (`None`), by time.
    timers: BTreeSet<(Instant, ConnId, Option<u32>)>,
    /// The random stream of the picker to build when the metadata arrives: the one a torrent made
    /// from the `.torrent` file would have had.
    picker_rng: Rng,
    /// The metadata hashed right but did not parse: nothing more is fetched.
    invalid: bool,
    /// The pieces of the attempt under way, with who sent them (to judge an attempt that fails
    /// with several senders): at most the size cap in bytes.
    attempt: BTreeMap<u32, Sent>,
    /// Pieces of failed attempts that had several senders, oldest first, judged against the
    /// metadata once it is known: at most the size cap in bytes (the oldest go first).
    suspects: VecDeque<(u32, Sent)>,
    /// After a failure with several senders: pieces are asked of one peer at a time, so that a
    /// failure names its liar.
    one_source: bool,
}

/// A metadata piece as a peer sent it.
#[derive(Debug)]
struct Sent {
    conn: ConnId,
    ip: IpAddr,
    data: Bytes,
}

impl MagnetFetch {
    /// When the next metadata timer is due.
    pub(super) fn next_deadline(&self) -> Option<Instant> {
        self.timers.first().map(|(at, _, _)| *at)
    }
}

impl Torrent {
    /// A torrent known only by its info hash (a magnet link): it fetches its metadata from its
    /// peers (BEP 9), then downloads as a torrent made with [`Torrent::new`] would, with no piece
    /// verified yet. Until then [`Torrent::has_metadata`] is false, [`Torrent::layout`] has no
    /// pieces and no disk work is asked for. See the module docs of `magnet.rs`.
    pub fn new_magnet(
        config: TorrentConfig,
        info_hash: InfoHash,
        our_id: PeerId,
        rng: Rng,
    ) -> Self {
        // `Torrent::new` forks the picker's stream first: the same fork of the same state.
        let picker_rng = rng.clone().fork(1);
        let fetch = MagnetFetch {
            fetch: MetadataFetch::new(info_hash, config.max_metadata_size),
            timers: BTreeSet::new(),
            picker_rng,
            invalid: false,
            attempt: BTreeMap::new(),
            suspects: VecDeque::new(),
            one_source: false,
        };
        let mut t = Torrent::new(
            config,
            info_hash,
            TorrentLayout::empty(),
            Vec::new(),
            Bitfield::new(0),
            our_id,
            rng,
        );
        t.fetch = Some(Box::new(fetch));
        t
    }

    /// Whether the metadata is known: false only for a magnet link's torrent still fetching it.
    pub fn has_metadata(&self) -> bool {
        self.fetch.is_none()
    }

    /// While fetching the metadata: pieces received and pieces in all (0 while no peer gave its
    /// size). `None` once the metadata is known.
    pub fn metadata_progress(&self) -> Option<(u32, u32)> {
        self.fetch.as_ref().map(|f| f.fetch.progress())
    }

    /// The fetch is under way (not done, not failed).
    fn fetching(&self) -> bool {
        self.fetch.as_ref().is_some_and(|f| !f.invalid)
    }

    /// `conn`'s extension handshake changed: whether it may be asked for metadata, and ask it.
    pub(super) fn metadata_peer_changed(&mut self, now: Instant, conn: ConnId) {
        if !self.fetching() {
            return;
        }
        let f = self.fetch.as_mut().expect("fetching");
        let Some(p) = self.peers.get_mut(&conn) else {
            return;
        };
        let usable = match (p.ext.ut_metadata, p.ext.metadata_size) {
            (Some(_), Some(size)) => {
                let ok = f.fetch.handle_size(size).is_ok();
                if !ok {
                    self.ext_stats.metadata_sizes_refused += 1;
                }
                ok
            }
            _ => false,
        };
        if p.ext.meta_usable && !usable {
            f.fetch.peer_gone(&conn);
            for (piece, at) in p.ext.meta_asked.drain(..) {
                f.timers.remove(&(at, conn, Some(piece)));
            }
        }
        p.ext.meta_usable = usable;
        self.request_metadata(now, conn);
    }

    /// Asks `conn` for free metadata pieces, up to [`METADATA_REQUESTS_PER_PEER`].
    fn request_metadata(&mut self, now: Instant, conn: ConnId) {
        let timeout = self.config.metadata_timeout;
        let Some(f) = self.fetch.as_mut().filter(|f| !f.invalid) else {
            return;
        };
        let Some(p) = self.peers.get_mut(&conn) else {
            return;
        };
        let Some(their_id) = p.ext.ut_metadata else {
            return;
        };
        if !p.ext.meta_usable
            || !p.conn.is_connected()
            || p.ext.meta_backoff.is_some_and(|at| at > now)
        {
            return;
        }
        if f.one_source
            && self
                .peers
                .iter()
                .any(|(c, q)| *c != conn && !q.ext.meta_asked.is_empty())
        {
            // Another peer is the source of this attempt.
            return;
        }
        let p = self.peers.get_mut(&conn).expect("looked up above");
        while p.ext.meta_asked.len() < METADATA_REQUESTS_PER_PEER {
            let Some(piece) = f.fetch.next_request(&conn) else {
                break;
            };
            let deadline = now + timeout;
            p.ext.meta_asked.push((piece, deadline));
            f.timers.insert((deadline, conn, Some(piece)));
            let mut buf = Vec::new();
            MetadataMessage::Request { piece }.encode_into(&mut buf);
            p.conn.send_extended(now, their_id, &buf);
            self.touched.insert(conn);
        }
    }

    /// Asks every peer that may be asked, in handle order (from `drive`, after every input).
    ///
    /// The fetch takes its size from the first peer that gave one, and refuses peers that give
    /// another. If no peer that agrees is left while some peer gives another size (the first
    /// one lied about it and left, say), the fetch starts over with the sizes of the peers
    /// there are, so a lie cannot stall it.
    pub(super) fn request_metadata_all(&mut self, now: Instant) {
        if !self.fetching() {
            return;
        }
        let size = self.fetch.as_ref().and_then(|f| f.fetch.size());
        if let Some(size) = size
            && !self.peers.values().any(|p| p.ext.meta_usable)
            && self.peers.values().any(|p| {
                p.ext.ut_metadata.is_some()
                    && p.ext.metadata_size.is_some_and(|s| s != u64::from(size))
            })
        {
            let f = self.fetch.as_mut().expect("fetching");
            f.fetch = MetadataFetch::new(self.info_hash, self.config.max_metadata_size);
            f.timers.clear();
            f.attempt.clear();
            let conns: Vec<ConnId> = self.peers.keys().copied().collect();
            for &conn in &conns {
                if let Some(p) = self.peers.get_mut(&conn) {
                    p.ext.meta_asked.clear();
                    p.ext.meta_backoff = None;
                }
            }
            for conn in conns {
                self.metadata_peer_changed(now, conn);
            }
        }
        let conns: Vec<ConnId> = self.peers.keys().copied().collect();
        for conn in conns {
            self.request_metadata(now, conn);
        }
    }

    /// Forgets that `piece` is asked of `conn`; whether it was.
    fn metadata_answered(&mut self, conn: ConnId, piece: u32) -> bool {
        let (Some(f), Some(p)) = (self.fetch.as_mut(), self.peers.get_mut(&conn)) else {
            return false;
        };
        let Some(i) = p.ext.meta_asked.iter().position(|(q, _)| *q == piece) else {
            return false;
        };
        let (_, at) = p.ext.meta_asked.remove(i);
        f.timers.remove(&(at, conn, Some(piece)));
        true
    }

    /// `conn` is not asked for metadata until the metadata timeout passes.
    fn metadata_backoff(&mut self, now: Instant, conn: ConnId) {
        let until = now + self.config.metadata_timeout;
        if let (Some(f), Some(p)) = (self.fetch.as_mut(), self.peers.get_mut(&conn)) {
            p.ext.meta_backoff = Some(until);
            f.timers.insert((until, conn, None));
        }
    }

    /// A `ut_metadata` message from `conn`.
    pub(super) fn on_metadata_message(&mut self, now: Instant, conn: ConnId, payload: &[u8]) {
        let Ok(message) = MetadataMessage::decode(payload) else {
            self.ext_stats.bad_metadata_messages += 1;
            return;
        };
        match message {
            MetadataMessage::Request { piece } => self.serve_metadata(now, conn, piece),
            MetadataMessage::Reject { piece } => {
                if !self.metadata_answered(conn, piece) {
                    self.ext_stats.bad_metadata_messages += 1;
                    return;
                }
                if let Some(f) = self.fetch.as_mut() {
                    f.fetch.handle_reject(&conn, piece);
                }
                self.metadata_backoff(now, conn);
            }
            MetadataMessage::Data {
                piece,
                total_size,
                data,
            } => {
                if !self.metadata_answered(conn, piece) {
                    // Not asked, or answered after its timeout: the piece went to another peer.
                    self.ext_stats.bad_metadata_messages += 1;
                    return;
                }
                let ip = self.peers[&conn].addr.ip();
                let f = self
                    .fetch
                    .as_mut()
                    .expect("asked pieces exist only while fetching");
                let result = f.fetch.handle_data(&conn, piece, total_size, data);
                if result.is_ok() {
                    let data = Bytes::copy_from_slice(data);
                    f.attempt.insert(piece, Sent { conn, ip, data });
                }
                match result {
                    Ok(FetchProgress::Stored) => self.request_metadata(now, conn),
                    Ok(FetchProgress::Done(bytes)) => self.metadata_done(now, bytes),
                    Ok(FetchProgress::Failed { blame }) => self.metadata_failed(now, blame),
                    Err(_) => {
                        // A piece of the wrong length or size: this peer is not asked again.
                        self.ext_stats.bad_metadata_messages += 1;
                        f.fetch.handle_reject(&conn, piece);
                        f.fetch.peer_gone(&conn);
                        if let Some(p) = self.peers.get_mut(&conn) {
                            p.ext.meta_usable = false;
                            for (q, at) in p.ext.meta_asked.drain(..) {
                                f.timers.remove(&(at, conn, Some(q)));
                            }
                        }
                    }
                }
            }
        }
    }

    /// The metadata did not hash to the info hash: its senders are closed and banned, and the
    /// fetch starts over with the others.
    ///
    /// Who lied is certain when one peer sent every piece: it is closed and banned at once. With
    /// several senders it is not (an honest peer's pieces fail with a liar's): their pieces are
    /// kept as suspects, judged once the metadata is known (the senders of pieces that differ
    /// from it are closed and banned then, see `judge_suspects`), and the next attempts ask one
    /// peer at a time.
    fn metadata_failed(&mut self, now: Instant, blame: Vec<ConnId>) {
        let f = self.fetch.as_mut().expect("a fetch failed");
        let attempt = std::mem::take(&mut f.attempt);
        if let [liar] = blame[..] {
            let ip = attempt.values().find(|s| s.conn == liar).map(|s| s.ip);
            self.close(liar, CloseReason::BadMetadata);
            if let Some(ip) = ip {
                self.ban(ip);
            }
        } else {
            let cap = self.config.max_metadata_size as usize;
            f.one_source = true;
            f.suspects.extend(attempt);
            let mut held: usize = f.suspects.iter().map(|(_, s)| s.data.len()).sum();
            while held > cap {
                let Some((_, oldest)) = f.suspects.pop_front() else {
                    break;
                };
                held -= oldest.data.len();
            }
        }
        // Every request is void: the fetch forgot them. Sizes are taken afresh; backoffs stand.
        if let Some(f) = self.fetch.as_mut() {
            f.timers.retain(|(_, _, piece)| piece.is_none());
        }
        let conns: Vec<ConnId> = self.peers.keys().copied().collect();
        for &conn in &conns {
            if let Some(p) = self.peers.get_mut(&conn) {
                p.ext.meta_asked.clear();
                p.ext.meta_usable = false;
            }
        }
        for conn in conns {
            self.metadata_peer_changed(now, conn);
        }
    }

    /// Fires the metadata timers due: a request unanswered frees its piece for another peer.
    pub(super) fn metadata_timeouts(&mut self, now: Instant) {
        let Some(f) = self.fetch.as_mut() else {
            return;
        };
        let due: Vec<(Instant, ConnId, Option<u32>)> = f
            .timers
            .iter()
            .take_while(|(at, _, _)| *at <= now)
            .copied()
            .collect();
        if due.is_empty() {
            return;
        }
        let mut backoffs = Vec::new();
        for entry in due {
            f.timers.remove(&entry);
            let (_, conn, what) = entry;
            let Some(p) = self.peers.get_mut(&conn) else {
                continue;
            };
            match what {
                Some(piece) => {
                    p.ext.meta_asked.retain(|(q, _)| *q != piece);
                    f.fetch.handle_reject(&conn, piece);
                    self.ext_stats.metadata_timeouts += 1;
                    backoffs.push(conn);
                }
                None => {
                    if p.ext.meta_backoff.is_some_and(|at| at <= now) {
                        p.ext.meta_backoff = None;
                    }
                }
            }
        }
        backoffs.dedup();
        for conn in backoffs {
            self.metadata_backoff(now, conn);
        }
    }

    /// `conn` left: its pieces may be asked of others.
    pub(super) fn metadata_peer_gone(&mut self, conn: ConnId) {
        let Some(f) = self.fetch.as_mut() else {
            return;
        };
        f.fetch.peer_gone(&conn);
        f.timers.retain(|(_, c, _)| *c != conn);
    }

    /// The metadata is known: the senders of suspect pieces (from failed attempts with several
    /// senders) that differ from it lied. They are closed (if still connected) and banned.
    fn judge_suspects(&mut self, metadata: &[u8]) {
        let Some(f) = self.fetch.as_mut() else {
            return;
        };
        let suspects = std::mem::take(&mut f.suspects);
        let mut liars: Vec<(ConnId, IpAddr)> = Vec::new();
        for (piece, sent) in suspects {
            if metadata_piece(metadata, piece) != Some(&sent.data[..])
                && !liars.contains(&(sent.conn, sent.ip))
            {
                liars.push((sent.conn, sent.ip));
            }
        }
        for (conn, ip) in liars {
            if self.peers.get(&conn).is_some_and(|p| p.addr.ip() == ip) {
                self.close(conn, CloseReason::BadMetadata);
            }
            self.ban(ip);
        }
    }

    /// The metadata hashed to the info hash: parse it and become a normal torrent.
    fn metadata_done(&mut self, now: Instant, bytes: Vec<u8>) {
        self.judge_suspects(&bytes);
        let info = match Info::from_info_bytes(&bytes) {
            Ok(info) => info,
            Err(e) => {
                if let Some(f) = self.fetch.as_mut() {
                    f.invalid = true;
                    f.timers.clear();
                }
                self.event(TorrentEvent::MetadataInvalid(e.to_string()));
                return;
            }
        };
        let fetch = self.fetch.take().expect("fetching");
        let n = info.layout.piece_count();
        self.info_bytes = Some(Bytes::from(bytes));
        self.private = info.private;
        self.layout = info.layout;
        self.piece_hashes = info.pieces;
        self.picker = Picker::new(
            self.layout.clone(),
            Bitfield::new(n),
            self.config.strategy,
            fetch.picker_rng,
        );
        self.short.clear();
        self.rechoke_soon = true;
        if self.private {
            self.stop_pex();
        }
        self.event(TorrentEvent::MetadataReceived);
        let conns: Vec<ConnId> = self.peers.keys().copied().collect();
        for conn in conns {
            let Some(p) = self.peers.get_mut(&conn) else {
                continue;
            };
            p.ext.meta_asked.clear();
            p.ext.meta_backoff = None;
            self.dirty.insert(conn);
            self.touched.insert(conn);
            match p.conn.set_layout(&self.layout) {
                Ok(()) => {
                    self.process_events(now, conn);
                    if self.peers.get(&conn).is_some_and(|p| p.ext.handshake_sent) {
                        self.send_ext_handshake(now, conn);
                    }
                }
                Err(e) => self.close(conn, CloseReason::Peer(e)),
            }
        }
    }
}
