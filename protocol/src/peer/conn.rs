//! [`PeerConn`]: the state machine of one connection to one peer (BEP 3, BEP 6, BEP 10).
//!
//! It owns the wire-level rules: the handshake, which message may come when, choke and interest
//! state in both directions, our outstanding requests and the peer's queued ones, timeouts,
//! keep-alives and rates. It decides nothing about *which* blocks to request or *whether* to serve:
//! the torrent does that through commands, and learns what happened through [`PeerEvent`]s.
//!
//! Methods, in the quinn-proto order:
//! - getters (`&self`): state, rates, [`PeerConn::pipeline_target`], [`PeerConn::poll_timeout`];
//! - input: [`PeerConn::handle_bytes`] (what the socket read), [`PeerConn::handle_timeout`];
//! - commands: [`PeerConn::request`], [`PeerConn::choke`], [`PeerConn::send_block`], ...;
//! - output: [`PeerConn::poll_event`] and [`PeerConn::poll_transmit`], drained after every input
//!   or command.
//!
//! A [`PeerError`] from an input means the connection must close; the reason names the rule broken.
//!
//! Bounds: the receive buffer is the frame decoder's ([`crate::wire::WireLimits`]); the peer's
//! queued requests are at most [`PeerConfig::max_peer_requests`]; our outstanding requests at most
//! [`PeerConfig::max_pipeline`]; the requests we withdrew (cancelled or timed out), remembered
//! so that a reject crossing our cancel is not taken for a protocol breach, at most twice
//! [`PeerConfig::max_pipeline`]; the allowed-fast set a peer gives us at most
//! [`MAX_ALLOWED_FAST`]; the chokes remembered, at most [`PeerConfig::max_chokes`]; events are
//! drained by the caller after each call (at most one per frame, and one per piece announced when
//! the layout becomes known).
//!
//! Unknown piece count (a magnet link before its metadata, BEP 9): a connection made with
//! [`PeerConn::new_unknown_layout`] keeps the peer's piece announcements raw: the first bitfield
//! (at most `max_pieces / 8` bytes, the decoder's bitfield bound), have-all or have-none, and its
//! haves and later bitfields as one bit per piece (at most `max_pieces / 8` bytes), refusing any
//! index at or past `max_pieces` ([`PeerError::PieceOutOfRange`]). [`PeerConn::set_layout`]
//! checks them against the real piece count, closing as a bitfield of the wrong size would
//! ([`PeerError::Bitfield`], [`PeerError::PieceOutOfRange`]), and then emits the usual
//! [`PeerEvent::Pieces`]. Until then no block is requested, and the peer's requests (we announced
//! nothing, and choke) are dropped, counted towards [`PeerError::RequestWhileChoked`].
//!
//! Hostile peers: every breach closes with a [`PeerError`] naming the rule, and floods end too:
//! requests past the queue or while choked ([`PeerError::TooManyRequests`],
//! [`PeerError::RequestWhileChoked`]), blocks never asked for ([`PeerError::UnrequestedBlocks`]),
//! chokes ([`PeerError::ChokeStorm`]), a frame trickled a byte at a time
//! ([`PeerError::FrameTimeout`]), a frame longer than its bound ([`PeerError::Wire`], judged from
//! its 5-byte header, so no buffer grows with a claimed length), silence
//! ([`PeerError::HandshakeTimeout`], [`PeerError::IdleTimeout`]).
//! The transmit queue is the caller's to bound: it checks [`PeerConn::send_queue_len`] before
//! serving more blocks.

use std::collections::{BTreeSet, VecDeque};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};

use super::RateMeter;
use super::requests::Requests;
use crate::metainfo::{BLOCK_SIZE, BlockRef, InfoHash, PieceIndex, TorrentLayout};
use crate::time::Instant;
use crate::torrent::{Bitfield, BitfieldError};
use crate::wire::{
    FrameDecoder, Handshake, HandshakeError, Message, PeerId, Reserved, WireError, WireLimits,
};

/// The most allowed-fast pieces we keep from one peer (BEP 6 suggests 10; libtorrent caps similarly).
pub const MAX_ALLOWED_FAST: usize = 64;

/// A choke that comes within this time of our not-interested is taken as its answer, however it
/// crossed our interested again, and does not count towards [`PeerError::ChokeStorm`]: a round
/// trip, with room for a slow link. A peer cannot use it to storm: it can make us lose interest
/// only by having nothing we lack, and then we ask it for nothing.
pub const INVITED_CHOKE_GRACE: Duration = Duration::from_secs(10);

/// Tunables of a peer connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerConfig {
    /// Most requests in flight to one peer.
    pub max_pipeline: u32,
    /// Fewest requests kept in flight to an unchoked peer.
    pub min_pipeline: u32,
    /// The pipeline holds this much time of the peer's measured rate (bandwidth-delay product).
    pub pipeline_time: Duration,
    /// A request unanswered this long is dropped and given to the picker again.
    pub request_timeout: Duration,
    /// No block for this long while requests are out marks the peer snubbed.
    pub snub_time: Duration,
    /// Send a keep-alive when we have sent nothing for this long.
    pub keepalive_interval: Duration,
    /// Close when nothing arrived for this long (BEP 3 suggests two minutes between keep-alives).
    pub idle_timeout: Duration,
    /// Close when the handshake is not done after this long.
    pub handshake_timeout: Duration,
    /// Most requests from the peer queued and not yet answered. Also the most requests we refuse
    /// (sent while we choke it, over the queue bound, repeats, or for pieces we lack) before the
    /// connection closes: see [`PeerError::TooManyRequests`] and [`PeerError::RequestWhileChoked`].
    pub max_peer_requests: usize,
    /// Longest extended message (BEP 10) payload the peer may send, in bytes; a longer length
    /// prefix closes the connection before its body is buffered
    /// ([`WireLimits::max_extended_len`]).
    pub max_extended_len: u32,
    /// A frame must arrive whole within this time of its first byte, or the connection closes
    /// ([`PeerError::FrameTimeout`]; a peer trickling bytes, slowloris, otherwise keeps the idle
    /// timer from firing forever). Default 60 s: the largest frame a peer sends while
    /// downloading is a 16 KiB block, which takes 60 s only below 273 bytes per second, and a
    /// peer that slow has already missed our request timeout (30 s) and been snubbed (60 s); the
    /// one-time bitfield of a 2^21-piece torrent (256 KiB) needs 4.4 KiB/s.
    pub frame_timeout: Duration,
    /// The most times the peer may choke us while we are interested (and did not lately say
    /// otherwise, see [`INVITED_CHOKE_GRACE`]) within [`PeerConfig::choke_window`]
    /// ([`PeerError::ChokeStorm`] past it). Default 20 a minute: rechoking runs every 10 s in
    /// the clients we know (libtorrent 15 s, Transmission 10 s), so an honest peer chokes us at
    /// most about 6 times a minute.
    pub max_chokes: u32,
    /// The window of [`PeerConfig::max_chokes`].
    pub choke_window: Duration,
    /// The most blocks the peer may send that we never asked for (neither outstanding nor lately
    /// withdrawn) before the connection closes ([`PeerError::UnrequestedBlocks`]). They are
    /// dropped, counted in [`PeerConn::unrequested_bytes`], and never reach the disk.
    pub max_unrequested_blocks: u32,
}

impl Default for PeerConfig {
    fn default() -> Self {
        PeerConfig {
            max_pipeline: 250,
            min_pipeline: 4,
            pipeline_time: Duration::from_secs(3),
            request_timeout: Duration::from_secs(30),
            snub_time: Duration::from_secs(60),
            keepalive_interval: Duration::from_secs(90),
            idle_timeout: Duration::from_secs(180),
            handshake_timeout: Duration::from_secs(20),
            max_peer_requests: 500,
            max_extended_len: crate::wire::DEFAULT_MAX_EXTENDED_LEN,
            frame_timeout: Duration::from_secs(60),
            max_chokes: 20,
            choke_window: Duration::from_secs(60),
            max_unrequested_blocks: 64,
        }
    }
}

/// Who opened the connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// We dialled: our handshake goes first.
    Outbound,
    /// They dialled: we answer their handshake.
    Inbound,
}

/// Why a connection closes.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PeerError {
    /// BEP 3: the connection starts with a well-formed handshake.
    #[error("bad handshake: {0}")]
    Handshake(#[from] HandshakeError),
    /// BEP 3: "If a client receives a handshake with an info_hash that it is not currently
    /// serving, then the client must drop the connection."
    #[error("handshake for another torrent ({0})")]
    WrongInfoHash(InfoHash),
    /// The peer id is our own: we connected to ourselves.
    #[error("connected to ourselves")]
    SelfConnection,
    /// A frame broke the wire format.
    #[error("{0}")]
    Wire(#[from] WireError),
    /// BEP 3: bitfield "may only be sent immediately after the handshaking sequence is completed";
    /// BEP 6 says the same of have-all and have-none. Tolerated, as other clients do: extension
    /// messages (BEP 10), a DHT port and keep-alives before it (libtorrent sends its extension
    /// handshake first), and a later bitfield or have-all, taken as haves (aria2 sends a bitfield
    /// in place of a run of haves). Only a late have-none is refused.
    #[error("have-none after other messages")]
    PiecesNotFirst,
    /// BEP 3: a bitfield of the wrong size or with spare bits set must drop the connection.
    #[error("{0}")]
    Bitfield(#[from] BitfieldError),
    /// A piece index past the end of the torrent (have, suggest, allowed-fast).
    #[error("piece index {0} is out of range")]
    PieceOutOfRange(u32),
    /// A request, piece, cancel or reject that is not an exact block of this torrent.
    #[error("block (piece {piece}, offset {offset}, length {len}) is not a valid block")]
    InvalidBlock {
        /// Piece index.
        piece: u32,
        /// Offset within the piece.
        offset: u32,
        /// Length.
        len: u32,
    },
    /// BEP 6: "When the fast extension is disabled, if a peer receives [a Fast message] the peer
    /// MUST close the connection."
    #[error("Fast extension message {0:#04x} without the Fast extension")]
    FastNotNegotiated(u8),
    /// BEP 10: extended messages only after both sides set the extension bit.
    #[error("extended message without the extension protocol")]
    ExtendedNotNegotiated,
    /// BEP 6: "if a peer receives a reject for a request that was never sent, it SHOULD close
    /// the connection." A reject for a request we withdrew lately (cancelled, or timed out) is
    /// not this: it crossed our cancel on the wire, and is ignored (as libtorrent does).
    #[error("reject for a block we never requested")]
    RejectUnrequested,
    /// Our policy (a request flood): the peer queued more requests than
    /// [`PeerConfig::max_peer_requests`] without the Fast extension (we cannot reject them), or
    /// went on to send that many more that we refused (rejected as over the queue bound or for a
    /// piece we do not have, or repeats of queued ones) before we served it a block. BEP 3 sets
    /// no bound; libtorrent rejects past its queue bound (`max_allowed_in_request_queue`) and
    /// closes a peer that keeps making invalid requests.
    #[error("more than {0} requests queued")]
    TooManyRequests(usize),
    /// The peer kept requesting while choked: more than [`PeerConfig::max_peer_requests`]
    /// requests since our choke (BEP 3: a choked peer's requests are void; BEP 6 rejects them,
    /// but a peer that goes on regardless is flooding; libtorrent closes such a peer too,
    /// `too_many_requests_when_choked`).
    #[error("requests while choked")]
    RequestWhileChoked,
    /// Our policy (slowloris): a frame was not whole [`PeerConfig::frame_timeout`] after its
    /// first byte arrived. BEP 3 only bounds silence (two minutes between keep-alives); a peer
    /// trickling one byte at a time is never silent.
    #[error("a frame took longer than {0:?} to arrive")]
    FrameTimeout(Duration),
    /// Our policy (choke/unchoke storm): the peer choked us, interested, more than
    /// [`PeerConfig::max_chokes`] times within [`PeerConfig::choke_window`] (chokes answering our
    /// not-interested do not count). BEP 3: "choking ... should not be done too
    /// often"; clients rechoke every 10 s.
    #[error("choked us {chokes} times within {window:?}")]
    ChokeStorm {
        /// Chokes counted within the window.
        chokes: u32,
        /// The window.
        window: Duration,
    },
    /// Our policy: the peer sent more than [`PeerConfig::max_unrequested_blocks`] blocks we
    /// never requested (BEP 3: blocks answer requests). libtorrent ignores such blocks and counts
    /// them as waste; we do too, up to the bound.
    #[error("more than {0} blocks we never requested")]
    UnrequestedBlocks(u32),
    /// Nothing arrived for [`PeerConfig::idle_timeout`].
    #[error("no message for {0:?}")]
    IdleTimeout(Duration),
    /// The handshake did not complete within [`PeerConfig::handshake_timeout`].
    #[error("handshake not done after {0:?}")]
    HandshakeTimeout(Duration),
}

/// What happened on a connection, for the torrent to act on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PeerEvent {
    /// The handshake is done; the peer's extensions and id are known.
    Connected {
        /// The peer's id.
        peer_id: PeerId,
        /// The peer's reserved bits.
        reserved: Reserved,
    },
    /// The peer told which pieces it has (bitfield, have-all or have-none): see
    /// [`PeerConn::peer_pieces`].
    Pieces,
    /// The peer has a new piece.
    Have(PieceIndex),
    /// The peer choked us. Without the Fast extension our requests are void: `dropped` lists them.
    Choked {
        /// Requests cancelled by the choke, to give back to the picker.
        dropped: Vec<BlockRef>,
    },
    /// The peer unchoked us.
    Unchoked,
    /// The peer is interested in our pieces.
    Interested,
    /// The peer is no longer interested.
    NotInterested,
    /// A block we requested arrived; `data` shares the receive buffer.
    Block {
        /// Which block.
        block: BlockRef,
        /// Its bytes.
        data: Bytes,
    },
    /// The peer asks for a block (it was unchoked, or the piece is allowed-fast).
    Request(BlockRef),
    /// The peer withdrew a request it had queued.
    Cancel(BlockRef),
    /// The peer refused one of our requests (BEP 6).
    Rejected(BlockRef),
    /// One of our requests went unanswered for [`PeerConfig::request_timeout`].
    RequestTimedOut(BlockRef),
    /// We may request this piece while choked (BEP 6).
    AllowedFast(PieceIndex),
    /// The peer suggests this piece (BEP 6).
    Suggest(PieceIndex),
    /// The peer's DHT port (BEP 5).
    Port(u16),
    /// A BEP 10 extended message (id 0 is the extension handshake).
    Extended {
        /// Extended message id.
        id: u8,
        /// Its payload.
        payload: Bytes,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Handshaking,
    Open,
}

/// The peer's piece announcements while the piece count is unknown (see the module docs).
#[derive(Debug)]
struct Unlaid {
    /// The most pieces the torrent may turn out to have: announcements past it are refused.
    max_pieces: u32,
    /// The first message was a bitfield: its bytes, checked once the piece count is known. At most
    /// `max_pieces / 8` bytes (the decoder's bound).
    bitfield: Option<Bytes>,
    /// The first message was have-all.
    have_all: bool,
    /// A bitfield, have-all or have-none came first.
    announced: bool,
    /// Pieces from haves, later bitfields and later have-alls, one bit each (most significant
    /// first, as on the wire), grown on demand: at most `max_pieces / 8` bytes.
    haves: Vec<u8>,
    /// A have-all came after other messages (taken as haves of every piece).
    late_have_all: bool,
}

impl Unlaid {
    fn set_have(&mut self, piece: u32) -> Result<(), PeerError> {
        if piece >= self.max_pieces {
            return Err(PeerError::PieceOutOfRange(piece));
        }
        let byte = (piece / 8) as usize;
        if self.haves.len() <= byte {
            self.haves.resize(byte + 1, 0);
        }
        self.haves[byte] |= 0x80 >> (piece % 8);
        Ok(())
    }
}

/// The state machine of one peer connection. See the module docs for the calling convention.
#[derive(Debug)]
pub struct PeerConn {
    config: PeerConfig,
    direction: Direction,
    info_hash: InfoHash,
    our_id: PeerId,
    our_reserved: Reserved,
    state: State,
    peer_id: Option<PeerId>,
    /// The peer's reserved bits, once its handshake arrived.
    peer_reserved: Option<Reserved>,
    fast: bool,
    extensions: bool,
    decoder: FrameDecoder,

    am_choking: bool,
    am_interested: bool,
    peer_choking: bool,
    peer_interested: bool,
    peer_pieces: Bitfield,
    seen_first_message: bool,
    snubbed: bool,
    requests_while_choked: u32,
    /// Requests refused (rejected as over the queue bound or for a piece we lack, or repeats of
    /// queued ones) since we last sent the peer a block: at most
    /// [`PeerConfig::max_peer_requests`].
    requests_refused: u32,
    /// Block bytes that arrived unrequested (cancelled, timed out, or never asked for).
    unrequested_bytes: u64,
    /// Blocks that arrived that we never asked for (not withdrawn either): at most
    /// [`PeerConfig::max_unrequested_blocks`].
    never_requested_blocks: u32,
    /// A breach found by a command ([`PeerConn::refuse_request`]), returned by the next input.
    failed: Option<PeerError>,
    /// When the first byte of the frame still incomplete in the decoder arrived.
    partial_frame_since: Option<Instant>,
    /// When we last told the peer we are not interested.
    uninterested_at: Option<Instant>,
    /// When the peer choked us lately, oldest first, within [`PeerConfig::choke_window`]: at
    /// most [`PeerConfig::max_chokes`] entries.
    recent_chokes: VecDeque<Instant>,

    /// Our requests to the peer, with when they were sent.
    requests: Requests,
    /// Requests we withdrew (cancelled or timed out), newest last, at most
    /// [`PeerConn::withdrawn_cap`]: the peer may still reject them, not having seen the cancel.
    withdrawn: VecDeque<BlockRef>,
    /// The peer's requests to us, in arrival order.
    peer_requests: VecDeque<BlockRef>,
    /// Pieces the peer lets us request while choked.
    allowed_fast: BTreeSet<u32>,
    /// Pieces we let the peer request while choked.
    our_allowed_fast: BTreeSet<u32>,

    download: RateMeter,
    upload: RateMeter,
    connected_at: Instant,
    last_received: Instant,
    last_sent: Instant,
    last_block: Instant,

    events: VecDeque<PeerEvent>,
    /// Small messages are written here and cut off as one chunk before a block or on poll.
    scratch: BytesMut,
    /// Reused for encoding one message, so sending allocates nothing per message.
    encode_buf: Vec<u8>,
    transmit: VecDeque<Bytes>,
    transmit_len: usize,
    /// Set while the piece count is unknown: the announcements kept until [`PeerConn::set_layout`].
    unlaid: Option<Unlaid>,
}

impl PeerConn {
    /// A connection for the torrent `info_hash` whose piece count is not known yet (a magnet
    /// link, BEP 9), at most `max_pieces`: the peer's piece announcements are kept until
    /// [`PeerConn::set_layout`] (see the module docs). Otherwise as [`PeerConn::new`].
    pub fn new_unknown_layout(
        config: PeerConfig,
        direction: Direction,
        info_hash: InfoHash,
        our_id: PeerId,
        our_reserved: Reserved,
        max_pieces: u32,
        now: Instant,
    ) -> Self {
        let mut conn = PeerConn::new(
            config,
            direction,
            info_hash,
            our_id,
            our_reserved,
            max_pieces,
            now,
        );
        conn.peer_pieces = Bitfield::new(0);
        conn.unlaid = Some(Unlaid {
            max_pieces,
            bitfield: None,
            have_all: false,
            announced: false,
            haves: Vec::new(),
            late_have_all: false,
        });
        conn
    }

    /// Whether the piece count is known (always, except for a connection made with
    /// [`PeerConn::new_unknown_layout`] before [`PeerConn::set_layout`]).
    pub fn layout_known(&self) -> bool {
        self.unlaid.is_none()
    }

    /// The torrent's layout is now known (its metadata arrived): the piece announcements kept
    /// so far are checked against it and become [`PeerConn::peer_pieces`], with a
    /// [`PeerEvent::Pieces`] if there were any. An error (a bitfield of the wrong size, an index
    /// out of range) means: close the connection for that reason. Does nothing if the layout
    /// was known already.
    pub fn set_layout(&mut self, layout: &TorrentLayout) -> Result<(), PeerError> {
        let Some(unlaid) = self.unlaid.take() else {
            return Ok(());
        };
        let n = layout.piece_count();
        self.decoder.set_limits(WireLimits {
            max_extended_len: self.config.max_extended_len,
            ..WireLimits::for_pieces(n)
        });
        let mut pieces = match (&unlaid.bitfield, unlaid.have_all) {
            (Some(bits), _) => Bitfield::from_wire(bits, n)?,
            (None, true) => Bitfield::full(n),
            (None, false) => Bitfield::new(n),
        };
        if unlaid.late_have_all {
            pieces = Bitfield::full(n);
        }
        let mut any_have = false;
        for (i, byte) in unlaid.haves.iter().enumerate() {
            for bit in 0..8u32 {
                if byte & (0x80 >> bit) != 0 {
                    let piece = i as u32 * 8 + bit;
                    if piece >= n {
                        return Err(PeerError::PieceOutOfRange(piece));
                    }
                    pieces.set(piece);
                    any_have = true;
                }
            }
        }
        if let Some(&piece) = self.allowed_fast.iter().find(|p| **p >= n) {
            return Err(PeerError::PieceOutOfRange(piece));
        }
        self.peer_pieces = pieces;
        if unlaid.announced || any_have || unlaid.late_have_all {
            self.events.push_back(PeerEvent::Pieces);
        }
        for &piece in &self.allowed_fast {
            let p = layout.piece(piece).expect("checked in range above");
            self.events.push_back(PeerEvent::AllowedFast(p));
        }
        Ok(())
    }

    /// A message about pieces or blocks while the piece count is unknown: kept, or dropped, or
    /// refused (see the module docs). `Ok(false)` for the messages handled as usual.
    fn on_unlaid_message(
        &mut self,
        message: &Message<'_>,
        payload: &Bytes,
        first: bool,
    ) -> Result<bool, PeerError> {
        let bound = self.refusal_bound();
        let Some(unlaid) = self.unlaid.as_mut() else {
            return Ok(false);
        };
        match *message {
            Message::Have { piece } => unlaid.set_have(piece)?,
            Message::Bitfield(bits) if first => {
                // The payload is the bitfield's bytes, shared with the receive buffer.
                debug_assert_eq!(payload.len(), bits.len());
                unlaid.bitfield = Some(payload.clone());
                unlaid.announced = true;
            }
            Message::Bitfield(bits) => {
                for (i, byte) in bits.iter().enumerate() {
                    for bit in 0..8u32 {
                        if byte & (0x80 >> bit) != 0 {
                            unlaid.set_have(i as u32 * 8 + bit)?;
                        }
                    }
                }
            }
            Message::HaveAll if first => {
                unlaid.have_all = true;
                unlaid.announced = true;
            }
            Message::HaveAll => unlaid.late_have_all = true,
            Message::HaveNone if first => unlaid.announced = true,
            Message::HaveNone => return Err(PeerError::PiecesNotFirst),
            Message::Request { .. } => {
                // We announced nothing and choke: a void request, as one crossing our choke.
                self.requests_while_choked += 1;
                if self.requests_while_choked > bound {
                    return Err(PeerError::RequestWhileChoked);
                }
            }
            Message::Piece { data, .. } => {
                self.unrequested_bytes += data.len() as u64;
                self.never_requested_blocks += 1;
                if self.never_requested_blocks > self.config.max_unrequested_blocks {
                    return Err(PeerError::UnrequestedBlocks(
                        self.config.max_unrequested_blocks,
                    ));
                }
            }
            Message::Cancel { .. } => {}
            Message::RejectRequest { .. } => return Err(PeerError::RejectUnrequested),
            Message::AllowedFast(piece) => {
                if piece >= unlaid.max_pieces {
                    return Err(PeerError::PieceOutOfRange(piece));
                }
                if self.allowed_fast.len() < MAX_ALLOWED_FAST {
                    self.allowed_fast.insert(piece);
                }
            }
            Message::SuggestPiece(piece) => {
                if piece >= unlaid.max_pieces {
                    return Err(PeerError::PieceOutOfRange(piece));
                }
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// A connection for the torrent `info_hash` of `piece_count` pieces, opened at `now`. For an
    /// outbound connection our handshake is queued at once.
    pub fn new(
        config: PeerConfig,
        direction: Direction,
        info_hash: InfoHash,
        our_id: PeerId,
        our_reserved: Reserved,
        piece_count: u32,
        now: Instant,
    ) -> Self {
        let limits = WireLimits {
            max_extended_len: config.max_extended_len,
            ..WireLimits::for_pieces(piece_count)
        };
        let mut conn = PeerConn {
            config,
            direction,
            info_hash,
            our_id,
            our_reserved,
            state: State::Handshaking,
            peer_id: None,
            peer_reserved: None,
            fast: false,
            extensions: false,
            decoder: FrameDecoder::new(limits),
            am_choking: true,
            am_interested: false,
            peer_choking: true,
            peer_interested: false,
            peer_pieces: Bitfield::new(piece_count),
            seen_first_message: false,
            snubbed: false,
            requests_while_choked: 0,
            requests_refused: 0,
            unrequested_bytes: 0,
            never_requested_blocks: 0,
            partial_frame_since: None,
            failed: None,
            uninterested_at: None,
            recent_chokes: VecDeque::new(),
            requests: Requests::default(),
            withdrawn: VecDeque::new(),
            peer_requests: VecDeque::new(),
            allowed_fast: BTreeSet::new(),
            our_allowed_fast: BTreeSet::new(),
            download: RateMeter::new(now),
            upload: RateMeter::new(now),
            connected_at: now,
            last_received: now,
            last_sent: now,
            last_block: now,
            events: VecDeque::new(),
            scratch: BytesMut::new(),
            encode_buf: Vec::new(),
            transmit: VecDeque::new(),
            transmit_len: 0,
            unlaid: None,
        };
        if direction == Direction::Outbound {
            conn.send_handshake(now);
        }
        conn
    }

    // ---- getters ----

    /// Whether the handshake is done.
    pub fn is_connected(&self) -> bool {
        self.state == State::Open
    }

    /// Who opened the connection.
    pub fn direction(&self) -> Direction {
        self.direction
    }

    /// The peer's id, once the handshake is done.
    pub fn peer_id(&self) -> Option<PeerId> {
        self.peer_id
    }

    /// The peer's reserved bits (its extensions), once the handshake is done.
    pub fn peer_reserved(&self) -> Option<Reserved> {
        self.peer_reserved
    }

    /// Whether both sides support the Fast extension (BEP 6).
    pub fn fast_extension(&self) -> bool {
        self.fast
    }

    /// Whether both sides support the extension protocol (BEP 10).
    pub fn extension_protocol(&self) -> bool {
        self.extensions
    }

    /// Whether we choke the peer.
    pub fn am_choking(&self) -> bool {
        self.am_choking
    }

    /// Whether we are interested in the peer.
    pub fn am_interested(&self) -> bool {
        self.am_interested
    }

    /// Whether the peer chokes us.
    pub fn peer_choking(&self) -> bool {
        self.peer_choking
    }

    /// Whether the peer is interested in us.
    pub fn peer_interested(&self) -> bool {
        self.peer_interested
    }

    /// The pieces the peer has told us it has.
    pub fn peer_pieces(&self) -> &Bitfield {
        &self.peer_pieces
    }

    /// Whether the peer has gone [`PeerConfig::snub_time`] without sending a block we asked for.
    pub fn is_snubbed(&self) -> bool {
        self.snubbed
    }

    /// When the connection was opened.
    pub fn connected_at(&self) -> Instant {
        self.connected_at
    }

    /// Our requests in flight.
    pub fn outstanding(&self) -> impl Iterator<Item = BlockRef> + '_ {
        self.requests.keys().copied()
    }

    /// How many of our requests are in flight.
    pub fn outstanding_len(&self) -> usize {
        self.requests.len()
    }

    /// Whether `block` is requested from this peer.
    pub fn has_requested(&self, block: BlockRef) -> bool {
        self.requests.contains_key(&block)
    }

    /// The peer's requests we have not answered, oldest first.
    pub fn peer_requests(&self) -> impl Iterator<Item = BlockRef> + '_ {
        self.peer_requests.iter().copied()
    }

    /// Bytes per second received from the peer (blocks only) over the rolling window.
    pub fn download_rate(&self, now: Instant) -> u64 {
        self.download.rate(now)
    }

    /// Bytes per second sent to the peer (blocks only) over the rolling window.
    pub fn upload_rate(&self, now: Instant) -> u64 {
        self.upload.rate(now)
    }

    /// Block bytes that arrived after we no longer wanted them (cancelled or timed out requests)
    /// or that we never asked for.
    pub fn unrequested_bytes(&self) -> u64 {
        self.unrequested_bytes
    }

    /// Block bytes received and sent since the connection opened.
    pub fn totals(&self) -> (u64, u64) {
        (self.download.total(), self.upload.total())
    }

    /// How many requests should be in flight: the bandwidth-delay product of the measured rate
    /// ([`PeerConfig::pipeline_time`] of data), between the configured minimum and maximum.
    pub fn pipeline_target(&self, now: Instant) -> u32 {
        let bytes =
            u128::from(self.download.rate(now)) * self.config.pipeline_time.as_micros() / 1_000_000;
        let blocks = (bytes / u128::from(BLOCK_SIZE)) as u64;
        let target = blocks.clamp(
            u64::from(self.config.min_pipeline),
            u64::from(self.config.max_pipeline),
        );
        if self.snubbed { 1 } else { target as u32 }
    }

    /// Pieces the peer lets us request while it chokes us (BEP 6 allowed-fast).
    pub fn allowed_fast(&self) -> impl Iterator<Item = u32> + '_ {
        self.allowed_fast.iter().copied()
    }

    /// Whether we may request `piece` from the peer now: unchoked, or the piece is allowed-fast.
    pub fn can_request(&self, piece: PieceIndex) -> bool {
        self.is_connected()
            && self.peer_pieces.get(piece.get())
            && (!self.peer_choking || self.allowed_fast.contains(&piece.get()))
    }

    /// Bytes received and not yet taken as a frame (an incomplete frame or handshake): at most
    /// the decoder's bound ([`crate::wire::WireLimits::max_frame_len`]), whatever a length
    /// prefix claims.
    pub fn receive_buffered_len(&self) -> usize {
        self.decoder.buffered_len()
    }

    /// Bytes queued for the socket and not yet taken by [`PeerConn::poll_transmit`].
    pub fn send_queue_len(&self) -> usize {
        self.transmit_len + self.scratch.len()
    }

    /// The next time [`PeerConn::handle_timeout`] has something to do.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.failed.is_some() {
            // Due now: the last time anything happened is in the past.
            return Some(self.last_received.min(self.last_sent));
        }
        if self.state == State::Handshaking {
            return Some(self.connected_at + self.config.handshake_timeout);
        }
        let mut next = (self.last_received + self.config.idle_timeout)
            .min(self.last_sent + self.config.keepalive_interval);
        if let Some(since) = self.partial_frame_since {
            next = next.min(since + self.config.frame_timeout);
        }
        if let Some(oldest) = self.requests.oldest() {
            next = next.min(oldest + self.config.request_timeout);
            if !self.snubbed {
                next = next.min(self.last_block + self.config.snub_time);
            }
        }
        Some(next)
    }

    // ---- output ----

    /// The next event, if any. Drain after every input and command.
    pub fn poll_event(&mut self) -> Option<PeerEvent> {
        self.events.pop_front()
    }

    /// The next bytes to write to the socket, if any. Drain after every input and command.
    pub fn poll_transmit(&mut self) -> Option<Bytes> {
        self.flush_scratch();
        let chunk = self.transmit.pop_front()?;
        self.transmit_len -= chunk.len();
        Some(chunk)
    }

    /// Bytes queued for the socket and not yet taken by [`PeerConn::poll_transmit`].
    pub fn queued_len(&self) -> usize {
        self.transmit_len + self.scratch.len()
    }

    fn flush_scratch(&mut self) {
        if !self.scratch.is_empty() {
            let chunk = self.scratch.split().freeze();
            self.transmit_len += chunk.len();
            self.transmit.push_back(chunk);
        }
    }

    fn send(&mut self, now: Instant, message: Message<'_>) {
        self.encode_buf.clear();
        message.encode_into(&mut self.encode_buf);
        self.scratch.extend_from_slice(&self.encode_buf);
        self.last_sent = now;
    }

    fn send_handshake(&mut self, now: Instant) {
        let hs = Handshake {
            reserved: self.our_reserved,
            info_hash: self.info_hash,
            peer_id: self.our_id,
        };
        self.scratch.extend_from_slice(&hs.encode());
        self.last_sent = now;
    }

    // ---- input ----

    /// Feeds bytes read from the socket. An error means: close the connection for that reason.
    pub fn handle_bytes(
        &mut self,
        now: Instant,
        mut bytes: &[u8],
        layout: &TorrentLayout,
    ) -> Result<(), PeerError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        if !bytes.is_empty() {
            self.last_received = now;
        }
        // Whether a frame (or the handshake) completed in this read: then what stays buffered is
        // the start of a frame whose first byte came in this read.
        let mut completed = false;
        loop {
            let taken = self.decoder.extend(bytes);
            bytes = &bytes[taken..];
            if self.state == State::Handshaking {
                match self.decoder.take_handshake()? {
                    Some(hs) => {
                        completed = true;
                        self.on_handshake(now, hs)?;
                    }
                    None if bytes.is_empty() => break,
                    None => continue,
                }
            }
            while let Some(frame) = self.decoder.next_frame()? {
                completed = true;
                let payload = frame.payload().clone();
                self.on_message(now, frame.message(), payload, layout)?;
            }
            if bytes.is_empty() {
                break;
            }
        }
        self.partial_frame_since = match self.decoder.buffered_len() {
            0 => None,
            _ if completed => Some(now),
            _ => self.partial_frame_since.or(Some(now)),
        };
        Ok(())
    }

    fn on_handshake(&mut self, now: Instant, hs: Handshake) -> Result<(), PeerError> {
        if hs.info_hash != self.info_hash {
            return Err(PeerError::WrongInfoHash(hs.info_hash));
        }
        if hs.peer_id == self.our_id {
            return Err(PeerError::SelfConnection);
        }
        if self.direction == Direction::Inbound {
            self.send_handshake(now);
        }
        self.state = State::Open;
        self.peer_id = Some(hs.peer_id);
        self.peer_reserved = Some(hs.reserved);
        self.fast = hs.reserved.fast() && self.our_reserved.fast();
        self.extensions =
            hs.reserved.extension_protocol() && self.our_reserved.extension_protocol();
        self.events.push_back(PeerEvent::Connected {
            peer_id: hs.peer_id,
            reserved: hs.reserved,
        });
        Ok(())
    }

    fn piece_index(&self, index: u32, layout: &TorrentLayout) -> Result<PieceIndex, PeerError> {
        layout.piece(index).ok_or(PeerError::PieceOutOfRange(index))
    }

    fn block(
        &self,
        piece: u32,
        offset: u32,
        len: u32,
        layout: &TorrentLayout,
    ) -> Result<BlockRef, PeerError> {
        layout
            .block_at(piece, offset, len)
            .ok_or(PeerError::InvalidBlock { piece, offset, len })
    }

    /// The pieces of `pieces` the peer had not announced, as [`PeerEvent::Have`]s.
    fn haves_from(&mut self, pieces: &Bitfield, layout: &TorrentLayout) -> Result<(), PeerError> {
        for piece in pieces.ones() {
            if self.peer_pieces.set(piece) {
                let p = self.piece_index(piece, layout)?;
                self.events.push_back(PeerEvent::Have(p));
            }
        }
        Ok(())
    }

    fn on_message(
        &mut self,
        now: Instant,
        message: Message<'_>,
        payload: Bytes,
        layout: &TorrentLayout,
    ) -> Result<(), PeerError> {
        let first = !self.seen_first_message;
        // Messages about no piece may come before the piece announcement: libtorrent sends its
        // extension handshake (BEP 10) first, and a DHT port (BEP 5) may come anywhere.
        if !matches!(
            message,
            Message::KeepAlive
                | Message::Extended { .. }
                | Message::Port(_)
                | Message::Unknown { .. }
        ) {
            self.seen_first_message = true;
        }
        if let Some(id) = fast_only_id(&message)
            && !self.fast
        {
            return Err(PeerError::FastNotNegotiated(id));
        }
        if self.on_unlaid_message(&message, &payload, first)? {
            return Ok(());
        }
        match message {
            Message::KeepAlive | Message::Unknown { .. } => {}
            Message::Choke => {
                // A peer rightly chokes us once we said we are not interested (and unchokes us
                // when we are again): our interest flaps as we catch up with its pieces, many
                // times a minute in a fast swarm, and its choke may arrive after we are
                // interested again. Only a choke we did not invite counts towards a storm.
                let invited = !self.am_interested
                    || self
                        .uninterested_at
                        .is_some_and(|at| now - at < INVITED_CHOKE_GRACE);
                if !self.peer_choking && !invited {
                    self.count_choke(now)?;
                }
                self.peer_choking = true;
                // BEP 6: with the Fast extension a choke does not void requests; the peer rejects
                // the ones it will not serve.
                let dropped: Vec<BlockRef> = if self.fast {
                    Vec::new()
                } else {
                    std::mem::take(&mut self.requests).into_keys().collect()
                };
                // A block already on its way when the peer choked is not one we never asked for.
                for b in &dropped {
                    self.withdraw(*b);
                }
                self.events.push_back(PeerEvent::Choked { dropped });
            }
            Message::Unchoke => {
                self.peer_choking = false;
                self.events.push_back(PeerEvent::Unchoked);
            }
            Message::Interested => {
                self.peer_interested = true;
                self.events.push_back(PeerEvent::Interested);
            }
            Message::NotInterested => {
                self.peer_interested = false;
                self.events.push_back(PeerEvent::NotInterested);
            }
            Message::Have { piece } => {
                let p = self.piece_index(piece, layout)?;
                if self.peer_pieces.set(piece) {
                    self.events.push_back(PeerEvent::Have(p));
                }
            }
            Message::Bitfield(bits) => {
                let pieces = Bitfield::from_wire(bits, layout.piece_count())?;
                if first {
                    self.peer_pieces = pieces;
                    self.events.push_back(PeerEvent::Pieces);
                } else {
                    // aria2 sends a bitfield mid-connection in place of a run of haves: take the
                    // pieces it adds as haves (a peer never loses a piece).
                    self.haves_from(&pieces, layout)?;
                }
            }
            Message::HaveAll if !first => {
                self.haves_from(&Bitfield::full(layout.piece_count()), layout)?;
            }
            Message::HaveAll | Message::HaveNone => {
                if !first {
                    return Err(PeerError::PiecesNotFirst);
                }
                self.peer_pieces = if matches!(message, Message::HaveAll) {
                    Bitfield::full(layout.piece_count())
                } else {
                    Bitfield::new(layout.piece_count())
                };
                self.events.push_back(PeerEvent::Pieces);
            }
            Message::Request { piece, offset, len } => {
                let block = self.block(piece, offset, len, layout)?;
                self.on_request(now, block)?;
            }
            Message::Piece {
                piece,
                offset,
                data,
            } => {
                let len = u32::try_from(data.len()).unwrap_or(u32::MAX);
                let block = self.block(piece, offset, len, layout)?;
                // A block we no longer want (cancelled, timed out, or never asked for) is ignored.
                if self.requests.remove(&block).is_some() {
                    self.download.record(now, u64::from(len));
                    self.last_block = now;
                    self.snubbed = false;
                    self.events.push_back(PeerEvent::Block {
                        block,
                        data: payload,
                    });
                } else {
                    self.unrequested_bytes += u64::from(len);
                    // A withdrawn request answered after all: no reject will follow for it. A
                    // block never asked for counts towards the bound.
                    if !self.forget_withdrawn(block) {
                        self.never_requested_blocks += 1;
                        if self.never_requested_blocks > self.config.max_unrequested_blocks {
                            return Err(PeerError::UnrequestedBlocks(
                                self.config.max_unrequested_blocks,
                            ));
                        }
                    }
                }
            }
            Message::Cancel { piece, offset, len } => {
                let block = self.block(piece, offset, len, layout)?;
                if let Some(i) = self.peer_requests.iter().position(|b| *b == block) {
                    self.peer_requests.remove(i);
                    self.events.push_back(PeerEvent::Cancel(block));
                }
            }
            Message::RejectRequest { piece, offset, len } => {
                let block = self.block(piece, offset, len, layout)?;
                if self.requests.remove(&block).is_some() {
                    self.events.push_back(PeerEvent::Rejected(block));
                } else if !self.forget_withdrawn(block) {
                    return Err(PeerError::RejectUnrequested);
                }
                // A reject for a request we withdrew crossed our cancel: nothing to do.
            }
            Message::AllowedFast(piece) => {
                let p = self.piece_index(piece, layout)?;
                if self.allowed_fast.len() < MAX_ALLOWED_FAST && self.allowed_fast.insert(piece) {
                    self.events.push_back(PeerEvent::AllowedFast(p));
                }
            }
            Message::SuggestPiece(piece) => {
                let p = self.piece_index(piece, layout)?;
                self.events.push_back(PeerEvent::Suggest(p));
            }
            Message::Port(port) => self.events.push_back(PeerEvent::Port(port)),
            Message::Extended { id, .. } => {
                if !self.extensions {
                    return Err(PeerError::ExtendedNotNegotiated);
                }
                self.events.push_back(PeerEvent::Extended { id, payload });
            }
        }
        Ok(())
    }

    fn on_request(&mut self, now: Instant, block: BlockRef) -> Result<(), PeerError> {
        let allowed = !self.am_choking || self.our_allowed_fast.contains(&block.piece.get());
        let bound = self.refusal_bound();
        if !allowed {
            // A request may cross our choke in flight; only a peer that keeps at it is closed.
            self.requests_while_choked += 1;
            if self.requests_while_choked > bound {
                return Err(PeerError::RequestWhileChoked);
            }
            if self.fast {
                self.send(now, reject(block));
            }
            return Ok(());
        }
        let repeat = self.peer_requests.contains(&block);
        if repeat || self.peer_requests.len() >= self.config.max_peer_requests {
            if !self.fast && !repeat {
                return Err(PeerError::TooManyRequests(self.config.max_peer_requests));
            }
            // Refused (a repeat is dropped, an overflow rejected): a peer that goes on sending
            // more than a queue's worth before we serve it a block is flooding.
            self.requests_refused += 1;
            if self.requests_refused > bound {
                return Err(PeerError::TooManyRequests(self.config.max_peer_requests));
            }
            if !repeat {
                self.send(now, reject(block));
            }
            return Ok(());
        }
        self.peer_requests.push_back(block);
        self.events.push_back(PeerEvent::Request(block));
        Ok(())
    }

    /// Fires what is due at `now`: handshake and idle timeouts (an error: close), keep-alives,
    /// request timeouts and snubbing. Early or repeated calls are harmless.
    pub fn handle_timeout(&mut self, now: Instant) -> Result<(), PeerError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        if self.state == State::Handshaking {
            if now - self.connected_at >= self.config.handshake_timeout {
                return Err(PeerError::HandshakeTimeout(self.config.handshake_timeout));
            }
            return Ok(());
        }
        if now - self.last_received >= self.config.idle_timeout {
            return Err(PeerError::IdleTimeout(self.config.idle_timeout));
        }
        if let Some(since) = self.partial_frame_since
            && now - since >= self.config.frame_timeout
        {
            return Err(PeerError::FrameTimeout(self.config.frame_timeout));
        }
        if now - self.last_sent >= self.config.keepalive_interval {
            self.send(now, Message::KeepAlive);
        }
        // Snubbing looks at the requests out before this call expires any of them: a request
        // timeout (30 s) is shorter than the snub time (60 s).
        if !self.requests.is_empty() && now - self.last_block >= self.config.snub_time {
            self.snubbed = true;
        }
        for block in self.requests.expire(now, self.config.request_timeout) {
            self.withdraw(block);
            self.events.push_back(PeerEvent::RequestTimedOut(block));
        }
        Ok(())
    }

    // ---- commands ----

    /// Tells the peer which pieces we have, as the first message after the handshake: have-all or
    /// have-none when the Fast extension allows, else a bitfield (omitted when empty).
    pub fn send_pieces(&mut self, now: Instant, ours: &Bitfield) {
        // A bitfield of no pieces (a magnet link's torrent before its metadata) is have-none.
        if self.fast && ours.is_complete() && !ours.is_empty() {
            self.send(now, Message::HaveAll);
        } else if self.fast && ours.is_clear() {
            self.send(now, Message::HaveNone);
        } else if !ours.is_clear() {
            self.send(now, Message::Bitfield(ours.as_bytes()));
        }
    }

    /// Announces a newly verified piece.
    pub fn send_have(&mut self, now: Instant, piece: PieceIndex) {
        self.send(now, Message::Have { piece: piece.get() });
    }

    /// Lets the peer request `pieces` while choked (BEP 6); ignored without the Fast extension.
    pub fn send_allowed_fast(&mut self, now: Instant, pieces: &[u32]) {
        if !self.fast {
            return;
        }
        for &p in pieces {
            if self.our_allowed_fast.len() < MAX_ALLOWED_FAST && self.our_allowed_fast.insert(p) {
                self.send(now, Message::AllowedFast(p));
            }
        }
    }

    /// Sends a BEP 10 extended message; ignored unless both sides support the protocol.
    pub fn send_extended(&mut self, now: Instant, id: u8, payload: &[u8]) {
        if self.extensions {
            self.send(now, Message::Extended { id, payload });
        }
    }

    /// Sends our DHT node's UDP port (BEP 5 `port`); ignored unless the peer set the DHT bit.
    pub fn send_port(&mut self, now: Instant, port: u16) {
        if self.peer_reserved.is_some_and(|r| r.dht()) {
            self.send(now, Message::Port(port));
        }
    }

    /// Says whether we are interested in the peer's pieces (only sends on a change).
    pub fn set_interested(&mut self, now: Instant, interested: bool) {
        if self.am_interested != interested {
            self.am_interested = interested;
            if !interested {
                self.uninterested_at = Some(now);
            }
            let m = if interested {
                Message::Interested
            } else {
                Message::NotInterested
            };
            self.send(now, m);
        }
    }

    /// Chokes the peer. Its queued requests are void: returned so pending disk reads can be
    /// dropped. With the Fast extension each gets an explicit reject, except allowed-fast ones.
    pub fn choke(&mut self, now: Instant) -> Vec<BlockRef> {
        if self.am_choking {
            return Vec::new();
        }
        self.am_choking = true;
        self.send(now, Message::Choke);
        let (keep, dropped): (Vec<_>, Vec<_>) = self
            .peer_requests
            .drain(..)
            .partition(|b| self.fast && self.our_allowed_fast.contains(&b.piece.get()));
        self.peer_requests = keep.into();
        if self.fast {
            for b in &dropped {
                self.send(now, reject(*b));
            }
        }
        dropped
    }

    /// Refuses a queued request (we lack the piece, or the read failed): a reject with the Fast
    /// extension, silence without (BEP 3 has no way to refuse). Returns whether it was queued.
    pub fn reject_request(&mut self, now: Instant, block: BlockRef) -> bool {
        let Some(i) = self.peer_requests.iter().position(|b| *b == block) else {
            return false;
        };
        self.peer_requests.remove(i);
        if self.fast {
            self.send(now, reject(block));
        }
        true
    }

    /// Refuses a queued request for a piece we do not have, as [`PeerConn::reject_request`]
    /// does, and counts it: BEP 3 peers request only pieces we announced, so a peer that makes
    /// more than [`PeerConfig::max_peer_requests`] such or other refused requests before we send
    /// it a block is flooding, and the next [`PeerConn::handle_bytes`] or
    /// [`PeerConn::handle_timeout`] (due at once, see [`PeerConn::poll_timeout`]) fails with
    /// [`PeerError::TooManyRequests`]. Returns whether it was queued.
    pub fn refuse_request(&mut self, now: Instant, block: BlockRef) -> bool {
        if !self.reject_request(now, block) {
            return false;
        }
        self.requests_refused = self.requests_refused.saturating_add(1);
        if self.requests_refused > self.refusal_bound() && self.failed.is_none() {
            self.failed = Some(PeerError::TooManyRequests(self.config.max_peer_requests));
        }
        true
    }

    /// Unchokes the peer.
    pub fn unchoke(&mut self, now: Instant) {
        if self.am_choking {
            self.am_choking = false;
            self.requests_while_choked = 0;
            self.send(now, Message::Unchoke);
        }
    }

    /// Requests `block`. Returns `false` (and sends nothing) if it may not be requested now: not
    /// connected, already requested, the peer lacks the piece or chokes us, or the pipeline is full.
    pub fn request(&mut self, now: Instant, block: BlockRef) -> bool {
        if !self.can_request(block.piece)
            || self.requests.contains_key(&block)
            || self.requests.len() >= self.config.max_pipeline as usize
        {
            return false;
        }
        if self.requests.is_empty() {
            // The snub clock starts from the first request, not from the last block long ago.
            self.last_block = self.last_block.max(now);
        }
        self.requests.insert(block, now);
        self.send(
            now,
            Message::Request {
                piece: block.piece.get(),
                offset: block.offset,
                len: block.len,
            },
        );
        true
    }

    /// Withdraws a request (endgame: the block came from another peer). Returns whether it was
    /// outstanding.
    pub fn cancel(&mut self, now: Instant, block: BlockRef) -> bool {
        if self.requests.remove(&block).is_none() {
            return false;
        }
        self.withdraw(block);
        self.send(
            now,
            Message::Cancel {
                piece: block.piece.get(),
                offset: block.offset,
                len: block.len,
            },
        );
        true
    }

    /// Cancels our most recently sent requests that `keep_anyway` does not keep, until at most
    /// `keep` such requests stay in flight; returns the blocks cancelled (for the picker). The
    /// peer serves requests in order, so what stays is what it sends first.
    pub fn cancel_newest_beyond(
        &mut self,
        now: Instant,
        keep: usize,
        keep_anyway: impl Fn(BlockRef) -> bool,
    ) -> Vec<BlockRef> {
        let others = self.requests.keys().filter(|b| !keep_anyway(**b)).count();
        if others <= keep {
            return Vec::new();
        }
        let doomed: Vec<BlockRef> = self
            .requests
            .newest_first()
            .filter(|b| !keep_anyway(*b))
            .take(others - keep)
            .collect();
        for b in &doomed {
            self.cancel(now, *b);
        }
        doomed
    }

    /// Sends a block the peer requested. `data` must be the block's bytes (checked: its length).
    /// Returns `false`, sending nothing, if the request is no longer queued (cancelled, or the peer
    /// was choked meanwhile). The data is queued without copying.
    pub fn send_block(&mut self, now: Instant, block: BlockRef, data: Bytes) -> bool {
        if data.len() != block.len as usize {
            return false;
        }
        let Some(i) = self.peer_requests.iter().position(|b| *b == block) else {
            return false;
        };
        self.peer_requests.remove(i);
        self.requests_refused = 0;
        let mut header = BytesMut::with_capacity(13);
        header.put_u32(9 + block.len);
        header.put_u8(crate::wire::id::PIECE);
        header.put_u32(block.piece.get());
        header.put_u32(block.offset);
        self.scratch.extend_from_slice(&header);
        self.flush_scratch();
        self.transmit_len += data.len();
        self.transmit.push_back(data);
        self.upload.record(now, u64::from(block.len));
        self.last_sent = now;
        true
    }
}

impl PeerConn {
    /// Most withdrawn requests remembered: twice the pipeline, so every request cancelled within
    /// a round trip (at most a pipeline's worth, re-requested and cancelled once more) is still
    /// known when its reject arrives.
    fn withdrawn_cap(&self) -> usize {
        (self.config.max_pipeline as usize).max(1) * 2
    }

    /// Remembers a request we no longer count as outstanding, forgetting the oldest past the cap.
    fn withdraw(&mut self, block: BlockRef) {
        if self.withdrawn.len() >= self.withdrawn_cap() {
            self.withdrawn.pop_front();
        }
        self.withdrawn.push_back(block);
    }

    /// [`PeerConfig::max_peer_requests`] as a count of refused requests.
    fn refusal_bound(&self) -> u32 {
        u32::try_from(self.config.max_peer_requests).unwrap_or(u32::MAX)
    }

    /// Counts a choke at `now` within [`PeerConfig::choke_window`]; an error past
    /// [`PeerConfig::max_chokes`]. Keeps at most that many times.
    fn count_choke(&mut self, now: Instant) -> Result<(), PeerError> {
        let window = self.config.choke_window;
        while self
            .recent_chokes
            .front()
            .is_some_and(|at| now - *at >= window)
        {
            self.recent_chokes.pop_front();
        }
        if self.recent_chokes.len() >= self.config.max_chokes as usize {
            return Err(PeerError::ChokeStorm {
                chokes: self.config.max_chokes.saturating_add(1),
                window,
            });
        }
        self.recent_chokes.push_back(now);
        Ok(())
    }

    /// Forgets a withdrawn request; returns whether it was remembered.
    fn forget_withdrawn(&mut self, block: BlockRef) -> bool {
        match self.withdrawn.iter().rposition(|b| *b == block) {
            Some(i) => {
                self.withdrawn.remove(i);
                true
            }
            None => false,
        }
    }
}

fn reject(block: BlockRef) -> Message<'static> {
    Message::RejectRequest {
        piece: block.piece.get(),
        offset: block.offset,
        len: block.len,
    }
}

/// The id of a BEP 6 message, which needs the Fast extension.
fn fast_only_id(message: &Message<'_>) -> Option<u8> {
    use crate::wire::id;
    match message {
        Message::HaveAll => Some(id::HAVE_ALL),
        Message::HaveNone => Some(id::HAVE_NONE),
        Message::SuggestPiece(_) => Some(id::SUGGEST_PIECE),
        Message::RejectRequest { .. } => Some(id::REJECT_REQUEST),
        Message::AllowedFast(_) => Some(id::ALLOWED_FAST),
        _ => None,
    }
}
