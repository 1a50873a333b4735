//! The extension protocol of a [`Torrent`]: our BEP 10 extension handshake and the peer's, BEP 9
//! `ut_metadata` serving, BEP 11 `ut_pex` peer exchange, and the BEP 5 `port` message.
//!
//! Our extended message ids are fixed, as libtorrent's: [`OUR_UT_METADATA`] and [`OUR_UT_PEX`].
//! An extended message on any other id is ignored (counted), never an error. A malformed
//! extension handshake, `ut_metadata` or `ut_pex` message is ignored too (counted in
//! [`ExtensionStats`]): BEP 10 asks for tolerance, and nothing we keep grows with it.
//!
//! Serving metadata (BEP 9): a request is answered with the piece while the bytes queued for the
//! peer's socket (sent to the driver and not yet reported written, plus those not yet flushed)
//! stay under [`TorrentConfig::send_buffer_watermark`](super::TorrentConfig); past it (or
//! without the metadata, or for a piece out of range) it is rejected, and once the queue is
//! [`METADATA_REJECT_SLACK`] over the watermark it is dropped unanswered. So a flood of requests
//! grows the peer's send queue to at most the watermark plus the slack plus one message.
//!
//! PEX (BEP 11): only with peers that put `ut_pex` in their handshake, to whom we offered it
//! (the torrent is not private and [`TorrentConfig::pex`](super::TorrentConfig) is on). Every
//! [`TorrentConfig::pex_interval`](super::TorrentConfig) one round sends each such peer the
//! listen addresses of the peers connected since its previous message (at most
//! [`PEX_MAX_PER_MESSAGE`]) and of those gone since (as many); a peer's listen address is the
//! one we dialled, or for an inbound peer its IP with the `p` of its extension handshake (an
//! inbound peer without `p` is left out). A message from a peer is taken at most once per three
//! quarters of the interval (earlier ones are counted and ignored).
//!
//! Bounds: per peer, what PEX told it is at most [`TorrentConfig::max_peers`](super::TorrentConfig)
//! plus [`PEX_MAX_PER_MESSAGE`] addresses (only current peers are added, and each round drops up
//! to that many gone); our own addresses as peers saw them, at most [`MAX_OUR_IPS`]; received
//! PEX lists are bounded by the codec ([`crate::wire::MAX_PEX_PEERS`]).

use core::net::{IpAddr, SocketAddr};
use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;

use super::{Peer, Torrent, TorrentEvent};
use crate::addr_key::AddrKey;
use crate::io::ConnId;
use crate::peer::Direction;
use crate::time::Instant;
use crate::wire::{
    ExtendedHandshake, METADATA_PIECE_LEN, MetadataMessage, PexFlags, PexMessage, metadata_piece,
};

/// Our extended message id for `ut_metadata` (BEP 9), as libtorrent's.
pub const OUR_UT_METADATA: u8 = 3;
/// Our extended message id for `ut_pex` (BEP 11), as libtorrent's.
pub const OUR_UT_PEX: u8 = 1;
/// Most of our own addresses remembered from peers' `yourip` (BEP 10).
pub(super) const MAX_OUR_IPS: usize = 8;
/// Most peers in the added list, and in the dropped list, of one PEX message we send (BEP 11:
/// "should not send more than 50").
pub const PEX_MAX_PER_MESSAGE: usize = 50;
/// How far past [`TorrentConfig::send_buffer_watermark`](super::TorrentConfig) a peer's send
/// queue may grow with our metadata rejects before its metadata requests go unanswered.
pub const METADATA_REJECT_SLACK: usize = 64 * 1024;

/// Counters of the extension protocol, for tests and statistics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExtensionStats {
    /// Extension handshakes that did not parse (ignored).
    pub bad_handshakes: u64,
    /// Extended messages on an id we never offered (ignored).
    pub unknown_extended: u64,
    /// `ut_metadata` messages that did not decode, or were not expected (ignored).
    pub bad_metadata_messages: u64,
    /// Metadata pieces we sent.
    pub metadata_served: u64,
    /// Metadata requests we rejected (no metadata, out of range, send queue full).
    pub metadata_rejected: u64,
    /// Metadata requests dropped unanswered (send queue far over its watermark, or the peer
    /// gave no `ut_metadata` id to answer on).
    pub metadata_dropped: u64,
    /// Our metadata requests that timed out.
    pub metadata_timeouts: u64,
    /// Peers whose `metadata_size` was refused (over the cap, zero, or another size).
    pub metadata_sizes_refused: u64,
    /// PEX messages we sent.
    pub pex_sent: u64,
    /// PEX messages we took.
    pub pex_received: u64,
    /// PEX messages ignored: too soon after the previous one, malformed, or from a peer we do
    /// not exchange peers with.
    pub pex_ignored: u64,
}

/// One peer's extension state.
#[derive(Debug, Default)]
pub(super) struct PeerExt {
    /// Whether we sent it our extension handshake.
    pub(super) handshake_sent: bool,
    /// Whether that handshake offered `ut_pex`.
    pub(super) pex_offered: bool,
    /// Its id for `ut_metadata`, from its latest handshake.
    pub(super) ut_metadata: Option<u8>,
    /// Its id for `ut_pex`.
    pub(super) ut_pex: Option<u8>,
    /// Its TCP listen port (`p`).
    pub(super) listen_port: Option<u16>,
    /// Its `metadata_size`.
    pub(super) metadata_size: Option<u64>,
    /// PEX with it, while both sides take part.
    pub(super) pex: Option<PexPeer>,
    /// Whether its DHT port was reported.
    pub(super) dht_reported: bool,
    /// Metadata fetch (magnet links): whether it may be asked for pieces.
    pub(super) meta_usable: bool,
    /// Metadata pieces asked of it, with their deadlines: at most
    /// [`super::magnet::METADATA_REQUESTS_PER_PEER`].
    pub(super) meta_asked: Vec<(u32, Instant)>,
    /// It is not asked for metadata before this (after a reject or a timeout).
    pub(super) meta_backoff: Option<Instant>,
}

/// PEX with one peer.
#[derive(Debug, Default)]
pub(super) struct PexPeer {
    /// The listen addresses we told it of as connected (added, and not dropped since), packed:
    /// a torrent holds one such set per peer.
    told: BTreeSet<AddrKey>,
    /// When we last took a message from it.
    last_received: Option<Instant>,
}

/// The address `peer` accepts connections on, if known (see the module docs).
fn listen_addr(peer: &Peer) -> Option<SocketAddr> {
    if !peer.conn.is_connected() {
        return None;
    }
    match peer.conn.direction() {
        Direction::Outbound => Some(peer.addr),
        Direction::Inbound => peer
            .ext
            .listen_port
            .map(|port| SocketAddr::new(peer.addr.ip(), port)),
    }
}

impl Torrent {
    // ---- getters ----

    /// The info dictionary, once known (given with [`Torrent::set_metadata`] or fetched from
    /// peers): what we serve over `ut_metadata` (BEP 9).
    pub fn info_bytes(&self) -> Option<&Bytes> {
        self.info_bytes.as_ref()
    }

    /// Whether the torrent is private (BEP 27): no PEX. Known once the metadata is.
    pub fn is_private(&self) -> bool {
        self.private
    }

    /// Counters of the extension protocol.
    pub fn extension_stats(&self) -> ExtensionStats {
        self.ext_stats
    }

    // ---- commands ----

    /// The info dictionary of a torrent made from a `.torrent` file, and whether it is private
    /// (BEP 27): it is served to peers that ask (BEP 9) and its size is advertised in the
    /// extension handshakes sent after the call (call it before adding peers); a private torrent
    /// does no PEX. On a magnet link's torrent still fetching its metadata it does nothing: the
    /// metadata comes from peers, checked against the info hash.
    pub fn set_metadata(&mut self, info: Bytes, private: bool) {
        if self.fetch.is_some() {
            return;
        }
        self.info_bytes = Some(info);
        self.private = private;
        if private {
            self.stop_pex();
        }
    }

    /// Our TCP listen port, advertised (`p`, BEP 10) in the extension handshakes sent after the
    /// call.
    pub fn set_listen_port(&mut self, port: u16) {
        self.config.listen_port = Some(port);
    }

    /// Our DHT node's UDP port: the DHT bit is set in the handshakes of connections added after
    /// the call, and the port is sent to their peers that run a DHT node too (BEP 5).
    pub fn set_dht_port(&mut self, port: u16) {
        self.config.dht_port = Some(port);
        self.our_reserved.set_dht(true);
    }

    // ---- internals ----

    /// Whether we exchange peers at all.
    pub(super) fn pex_enabled(&self) -> bool {
        self.config.pex && !self.private
    }

    /// Ends PEX with every peer (the torrent turned out private).
    pub(super) fn stop_pex(&mut self) {
        for p in self.peers.values_mut() {
            p.ext.pex = None;
        }
        self.pex_next = None;
    }

    /// The handshake of `conn` is done: our extension handshake (BEP 10) and DHT port (BEP 5).
    pub(super) fn extensions_connected(&mut self, now: Instant, conn: ConnId) {
        self.send_ext_handshake(now, conn);
        if let (Some(port), Some(p)) = (self.config.dht_port, self.peers.get_mut(&conn)) {
            p.conn.send_port(now, port);
        }
    }

    /// Sends (or sends again, after the metadata arrived) our extension handshake to `conn`, if
    /// both sides support the extension protocol.
    pub(super) fn send_ext_handshake(&mut self, now: Instant, conn: ConnId) {
        let pex = self.pex_enabled();
        let metadata_size = self.info_bytes.as_ref().map(|b| b.len() as u64);
        let Some(p) = self.peers.get_mut(&conn) else {
            return;
        };
        if !p.conn.extension_protocol() {
            return;
        }
        let mut m = BTreeMap::new();
        m.insert("ut_metadata".to_owned(), OUR_UT_METADATA);
        if pex {
            m.insert("ut_pex".to_owned(), OUR_UT_PEX);
        } else if p.ext.pex_offered {
            // Withdrawn (BEP 10: id 0 disables).
            m.insert("ut_pex".to_owned(), 0);
        }
        let hs = ExtendedHandshake {
            m,
            port: self.config.listen_port,
            client: Some(self.config.client_version.clone()),
            yourip: Some(p.addr.ip()),
            ipv4: None,
            ipv6: None,
            reqq: Some(u32::try_from(self.config.peer.max_peer_requests).unwrap_or(u32::MAX)),
            metadata_size,
        };
        p.conn.send_extended(now, 0, &hs.encode());
        p.ext.handshake_sent = true;
        p.ext.pex_offered = pex;
        if !pex {
            p.ext.pex = None;
        }
        self.touched.insert(conn);
    }

    /// A BEP 10 extended message from `conn`, on one of our ids.
    pub(super) fn on_extended(&mut self, now: Instant, conn: ConnId, id: u8, payload: Bytes) {
        match id {
            0 => self.on_ext_handshake(now, conn, &payload),
            OUR_UT_METADATA => self.on_metadata_message(now, conn, &payload),
            OUR_UT_PEX => self.on_pex(now, conn, &payload),
            _ => self.ext_stats.unknown_extended += 1,
        }
    }

    /// The peer's extension handshake, first or again (BEP 10: it may update its ids).
    fn on_ext_handshake(&mut self, now: Instant, conn: ConnId, payload: &[u8]) {
        let Ok(hs) = ExtendedHandshake::parse(payload) else {
            self.ext_stats.bad_handshakes += 1;
            return;
        };
        if let Some(ip) = hs.yourip
            && self.our_ips.len() < MAX_OUR_IPS
        {
            self.our_ips.insert(ip);
        }
        let interval = self.config.pex_interval;
        let Some(p) = self.peers.get_mut(&conn) else {
            return;
        };
        p.ext.ut_metadata = hs.extension_id("ut_metadata");
        p.ext.ut_pex = hs.extension_id("ut_pex");
        if hs.port.is_some() {
            p.ext.listen_port = hs.port;
        }
        if hs.metadata_size.is_some() {
            p.ext.metadata_size = hs.metadata_size;
        }
        if p.ext.pex_offered && p.ext.ut_pex.is_some() {
            p.ext.pex.get_or_insert_with(PexPeer::default);
            self.pex_next.get_or_insert(now + interval);
        } else {
            p.ext.pex = None;
        }
        self.metadata_peer_changed(now, conn);
    }

    /// A BEP 5 `port` message: the peer's DHT node, reported once per connection.
    pub(super) fn on_dht_port(&mut self, conn: ConnId, port: u16) {
        let Some(p) = self.peers.get_mut(&conn) else {
            return;
        };
        if port == 0 || p.ext.dht_reported {
            return;
        }
        p.ext.dht_reported = true;
        let addr = SocketAddr::new(p.addr.ip(), port);
        self.event(TorrentEvent::DhtPort { addr });
    }

    /// Answers a `ut_metadata` request (see the module docs for the bound).
    pub(super) fn serve_metadata(&mut self, now: Instant, conn: ConnId, piece: u32) {
        let watermark = self.config.send_buffer_watermark;
        let Some(p) = self.peers.get_mut(&conn) else {
            return;
        };
        let Some(their_id) = p.ext.ut_metadata else {
            self.ext_stats.metadata_dropped += 1;
            return;
        };
        let queued = p.unsent + p.conn.send_queue_len();
        let data = self
            .info_bytes
            .as_ref()
            .and_then(|info| metadata_piece(info, piece));
        let total_size = self.info_bytes.as_ref().map_or(0, |b| b.len() as u64);
        // A data message is the piece plus a dictionary of a few dozen bytes.
        let message = match data {
            Some(data) if queued + METADATA_PIECE_LEN + 64 <= watermark => {
                self.ext_stats.metadata_served += 1;
                MetadataMessage::Data {
                    piece,
                    total_size,
                    data,
                }
            }
            _ if queued < watermark + METADATA_REJECT_SLACK => {
                self.ext_stats.metadata_rejected += 1;
                MetadataMessage::Reject { piece }
            }
            _ => {
                self.ext_stats.metadata_dropped += 1;
                return;
            }
        };
        let mut buf = Vec::new();
        message.encode_into(&mut buf);
        p.conn.send_extended(now, their_id, &buf);
        self.touched.insert(conn);
    }

    /// Whether `addr` is our own listen address, as far as we know it.
    fn is_own_addr(&self, addr: &SocketAddr) -> bool {
        self.config.listen_port == Some(addr.port())
            && (self.our_ips.contains(&addr.ip()) || addr.ip().is_loopback())
    }

    /// A `ut_pex` message from `conn`.
    fn on_pex(&mut self, now: Instant, conn: ConnId, payload: &[u8]) {
        let min_gap = self.config.pex_interval * 3 / 4;
        let Some(p) = self.peers.get_mut(&conn) else {
            return;
        };
        let Some(pex) = p.ext.pex.as_mut() else {
            // We do not exchange peers with it (private, off, or it never offered ut_pex).
            self.ext_stats.pex_ignored += 1;
            return;
        };
        if pex.last_received.is_some_and(|at| now - at < min_gap) {
            self.ext_stats.pex_ignored += 1;
            return;
        }
        pex.last_received = Some(now);
        let Ok(message) = PexMessage::decode(payload) else {
            self.ext_stats.pex_ignored += 1;
            return;
        };
        self.ext_stats.pex_received += 1;
        let connected: BTreeSet<SocketAddr> = self
            .peers
            .values()
            .flat_map(|p| [Some(p.addr), listen_addr(p)])
            .flatten()
            .collect();
        let mut peers: Vec<SocketAddr> = Vec::new();
        for (addr, _) in message.added {
            let ip = addr.ip();
            if ip.is_unspecified()
                || is_multicast_or_broadcast(ip)
                || self.is_own_addr(&addr)
                || connected.contains(&addr)
                || self.banned.contains(&ip)
                || peers.contains(&addr)
            {
                continue;
            }
            peers.push(addr);
        }
        if !peers.is_empty() {
            self.event(TorrentEvent::PeersLearned { from: conn, peers });
        }
    }

    /// One PEX round: each peer we exchange peers with is sent what changed since its previous
    /// message (see the module docs); the next round is armed while any such peer remains.
    pub(super) fn pex_round(&mut self, now: Instant) {
        if !self.pex_enabled() {
            self.pex_next = None;
            return;
        }
        let has_metadata = self.fetch.is_none();
        let current: BTreeMap<AddrKey, PexFlags> = self
            .peers
            .values()
            .filter_map(|p| {
                let addr = listen_addr(p)?;
                let mut flags = 0;
                let pieces = p.conn.peer_pieces();
                if has_metadata && !pieces.is_empty() && pieces.is_complete() {
                    flags |= PexFlags::SEED;
                }
                if p.conn.direction() == Direction::Outbound {
                    flags |= PexFlags::REACHABLE;
                }
                Some((AddrKey::new(addr), PexFlags(flags)))
            })
            .collect();
        let mut any = false;
        for (c, p) in self.peers.iter_mut() {
            let own = listen_addr(p).map(AddrKey::new);
            let (Some(pex), Some(their_id)) = (p.ext.pex.as_mut(), p.ext.ut_pex) else {
                continue;
            };
            any = true;
            let added: Vec<(SocketAddr, PexFlags)> = current
                .iter()
                .filter(|(a, _)| Some(**a) != own && !pex.told.contains(a))
                .take(PEX_MAX_PER_MESSAGE)
                .map(|(a, f)| (a.addr(), *f))
                .collect();
            let dropped: Vec<AddrKey> = pex
                .told
                .iter()
                .filter(|a| !current.contains_key(a))
                .take(PEX_MAX_PER_MESSAGE)
                .copied()
                .collect();
            if added.is_empty() && dropped.is_empty() {
                continue;
            }
            pex.told.extend(added.iter().map(|(a, _)| AddrKey::new(*a)));
            for a in &dropped {
                pex.told.remove(a);
            }
            let dropped = dropped.into_iter().map(AddrKey::addr).collect();
            let message = PexMessage { added, dropped };
            p.conn.send_extended(now, their_id, &message.encode());
            self.ext_stats.pex_sent += 1;
            self.touched.insert(*c);
        }
        self.pex_next = any.then(|| now + self.config.pex_interval);
    }
}

/// Addresses no peer listens on.
fn is_multicast_or_broadcast(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_multicast() || v4.is_broadcast(),
        IpAddr::V6(v6) => v6.is_multicast(),
    }
}
