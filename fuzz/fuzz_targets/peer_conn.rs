//! Drives one `PeerConn` with an `Arbitrary` list of steps, in the style of quinn's
//! `fuzz/fuzz_targets/streams.rs`: what the peer sends (its handshake, well-formed messages
//! encoded with the wire encoder, raw bytes, batches and split deliveries), time passing with
//! `handle_timeout`, and our commands (requests, cancels, choke, unchoke, interest, blocks,
//! rejects, haves, allowed-fast, extended messages). The connection, its torrent geometry and its
//! config are fuzzed too.
//!
//! After every step, whatever the peer sent:
//! - our requests in flight are at most `max_pipeline`, the peer's queued requests at most
//!   `max_peer_requests`, its allowed-fast set at most `MAX_ALLOWED_FAST`; both request queues
//!   match a model kept from the command results and events (every request that leaves is
//!   accounted for by exactly one event or command); the peer's pieces only grow;
//! - the output is drained (the send queue is then empty) and read back as the peer would:
//!   our handshake first and once, then well-formed frames, each justified by the step (a request
//!   or cancel only from the command that returned true, a block only for a queued request with
//!   its data, a reject only with the Fast extension and for a block the peer asked for, a
//!   keep-alive only from a timeout, choke/unchoke and interested/not-interested alternating, Fast
//!   and extended messages only when negotiated). This bounds the output by the input;
//! - and when the step succeeds, exactly what it must: every request of the peer is queued (a
//!   `Request` event) if we unchoke it or the piece is allowed-fast and there is room, else
//!   refused (rejected with the Fast extension, a repeat of a queued one silently, without Fast
//!   a request over a full queue closes); every cancel of a queued request
//!   gives a `Cancel` event; every command that says it acted sent its message (choke rejects
//!   with Fast, a have, our pieces, allowed-fast, ...);
//! - events are justified too: a block only for a request in flight, a request only when we do
//!   not choke the peer (or the piece is allowed-fast), at most one event per frame received plus
//!   one `Have` per piece the peer newly announces;
//! - after `handle_timeout` succeeds, `poll_timeout` is in the future (no busy timer);
//! - every close is judged by a model of PeerConn's rules, except those of the stream's own
//!   form (handshake, frame decoding, bitfields, the order of the piece announcement): a modelled
//!   error comes exactly when its rule is first broken, and is that error. The hostile-peer
//!   rules: `FrameTimeout` once a partial frame sat `frame_timeout` from its first byte (each
//!   frame its own timer); `ChokeStorm` past `max_chokes` counted chokes in `choke_window` (only
//!   while we are interested and not within `INVITED_CHOKE_GRACE` of our not-interested);
//!   `UnrequestedBlocks` past `max_unrequested_blocks` blocks neither in flight nor withdrawn
//!   (cancelled, timed out, or dropped by a choke; at most twice the pipeline remembered);
//!   `RequestWhileChoked` past `max_peer_requests` requests while we choke since our unchoke;
//!   `TooManyRequests` past `max_peer_requests` refusals (over the queue with Fast, repeats,
//!   `refuse_request`) since our last block served, on the next input or timer for
//!   `refuse_request`; the timers' errors (handshake, idle, frame) exactly;
//! - an error closes the connection: its output is drained and checked, and no step follows.
//!
//! Commands other than `request` (which checks for itself) are issued only once the connection
//! may send (connected, or outbound with our handshake out), as `Torrent` does.
//!
//! Set `PEER_CONN_DEBUG=1` to print the decoded steps of an input.
#![no_main]

use std::collections::{BTreeSet, VecDeque};
use std::time::Duration;

use arbitrary::Arbitrary;
use bt_protocol::metainfo::{BLOCK_SIZE, BlockRef, InfoHash, TorrentLayout};
use bt_protocol::peer::{
    Direction, INVITED_CHOKE_GRACE, MAX_ALLOWED_FAST, PeerConfig, PeerConn, PeerError, PeerEvent,
};
use bt_protocol::time::Instant;
use bt_protocol::torrent::Bitfield;
use bt_protocol::wire::{FrameDecoder, Handshake, Message, PeerId, Reserved, WireLimits, id};
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;

const HASH: InfoHash = InfoHash([7; 20]);
const OUR_ID: PeerId = PeerId([1; 20]);
/// Longest extended payload the harness sends (the read-back decoder's bound).
const MAX_EXTENDED: usize = 4096;

#[derive(Arbitrary, Debug)]
struct Setup {
    inbound: bool,
    our_fast: bool,
    our_extensions: bool,
    /// Nominal piece length - 1, modulo 4 blocks.
    piece_len: u16,
    /// Piece count - 1, modulo 24.
    pieces: u8,
    /// Last piece length - 1, modulo the piece length.
    last_len: u16,
    max_pipeline: u8,
    min_pipeline: u8,
    max_peer_requests: u8,
    /// Seconds - 1 for request timeout, snub time, keep-alive, idle and handshake timeouts.
    timeouts: [u8; 5],
    pipeline_time_ms: u16,
    /// Seconds - 1 of the frame timeout and of the choke window.
    frame_timeout: u8,
    choke_window: u8,
    /// Chokes allowed per window, modulo 6.
    max_chokes: u8,
    /// Blocks never asked for allowed, modulo 6.
    max_unrequested_blocks: u8,
    /// Longest extended payload the peer may send, modulo 1024.
    max_extended_len: u16,
}

/// A block named on the wire or in a command.
#[derive(Arbitrary, Debug, Clone, Copy)]
enum BlockSel {
    /// Block `index` (mod its count) of piece `piece` (mod the piece count).
    Valid { piece: u8, index: u8 },
    /// The n-th of our requests in flight (else a valid block).
    Ours(u8),
    /// The n-th of the peer's queued requests (else a valid block).
    Theirs(u8),
    /// Any triple: mostly not a block of the torrent (only on the wire).
    Any { piece: u32, offset: u32, len: u32 },
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum PieceSel {
    Valid(u8),
    Any(u32),
}

/// A message from the peer, encoded with the wire encoder.
#[derive(Arbitrary, Debug)]
enum PeerMsg {
    KeepAlive,
    Choke,
    Unchoke,
    Interested,
    NotInterested,
    Have(PieceSel),
    /// A bitfield of the right size from these bytes (spare bits cleared unless `spare`).
    Bitfield {
        bits: Vec<u8>,
        spare: bool,
    },
    /// A bitfield of any bytes.
    RawBitfield(Vec<u8>),
    HaveAll,
    HaveNone,
    Request(BlockSel),
    /// A block with its data; `short` cuts the data by that many bytes.
    Piece {
        block: BlockSel,
        short: u8,
    },
    Cancel(BlockSel),
    Port(u16),
    Suggest(PieceSel),
    Reject(BlockSel),
    AllowedFast(PieceSel),
    Extended {
        id: u8,
        payload: Vec<u8>,
    },
    Unknown {
        id: u8,
        payload: Vec<u8>,
    },
}

#[derive(Arbitrary, Debug)]
enum Step {
    /// The peer's handshake.
    Handshake {
        fast: bool,
        extensions: bool,
        wrong_hash: bool,
        our_id: bool,
        id: u8,
    },
    /// One message in one read.
    Msg(PeerMsg),
    /// One message split across two reads at `at` (mod its length).
    Split(PeerMsg, u16),
    /// Several messages in one read.
    Batch(Vec<PeerMsg>),
    /// Bytes as they come.
    Raw(Vec<u8>),
    /// Time passes (milliseconds, then that many times 256), then `handle_timeout`.
    Wait {
        ms: u16,
        long: u8,
    },
    /// Straight to the next deadline, then `handle_timeout`.
    Deadline,
    Request(BlockSel),
    Cancel(BlockSel),
    Choke,
    Unchoke,
    Interested(bool),
    /// Serve a block; `wrong_len` hands data of another length (refused).
    SendBlock {
        block: BlockSel,
        wrong_len: bool,
    },
    RejectRequest(BlockSel),
    SendHave(u8),
    SendPieces(Vec<u8>),
    SendAllowedFast(Vec<u8>),
    SendExtended {
        id: u8,
        payload: Vec<u8>,
    },
    /// Refuse a queued request for a piece we lack (counted towards `max_peer_requests`).
    RefuseRequest(BlockSel),
}

/// The data of a block: a byte derived from where it is.
fn block_data(block: BlockRef, len: usize) -> Vec<u8> {
    let fill = (block.piece.get() as u8) ^ ((block.offset / BLOCK_SIZE) as u8).wrapping_mul(31);
    vec![fill; len]
}

struct Harness {
    layout: TorrentLayout,
    config: PeerConfig,
    conn: PeerConn,
    now: Instant,
    /// Model of our requests in flight.
    ours: BTreeSet<BlockRef>,
    /// Model of the peer's queued requests.
    theirs: BTreeSet<BlockRef>,
    /// Pieces we let the peer request while choked (what we sent as allowed-fast).
    our_allowed_fast: BTreeSet<u32>,
    /// The peer's view of our stream.
    ours_decoder: FrameDecoder,
    our_handshake_seen: bool,
    we_choke: bool,
    we_interested: bool,
    /// What the connection has decoded of the peer's stream (a shadow of its decoder).
    theirs_decoder: FrameDecoder,
    their_handshake_seen: bool,
    /// Whether our reserved bits have the Fast bit, and whether both sides' have.
    our_fast: bool,
    shadow_fast: bool,
    peer_pieces: Bitfield,
    have_events: u32,
    /// Whether both sides have the extension protocol.
    our_extensions: bool,
    shadow_extensions: bool,

    // The model of the hostile-peer rules, kept by the shadow as the frames go (before the
    // connection sees them), by our commands and by the timers.
    /// Our requests in flight as the peer's frames leave them.
    live_ours: BTreeSet<BlockRef>,
    /// Requests we withdrew (cancelled, timed out, dropped by a choke), oldest first, at most
    /// twice the pipeline.
    withdrawn: VecDeque<BlockRef>,
    /// Blocks that came neither requested nor withdrawn.
    never_requested: u32,
    /// Requests while we choke since our last unchoke; refused requests since our last block.
    requests_while_choked: u32,
    requests_refused: u32,
    /// The error a command stored for the next input (`refuse_request`).
    failed: Option<PeerError>,
    /// When the first byte of the partial frame in the decoder came.
    partial_since: Option<Instant>,
    /// When we last said not-interested.
    uninterested_at: Option<Instant>,
    /// Counted chokes within the window.
    recent_chokes: VecDeque<Instant>,
    /// Whether the peer chokes us, as its frames say.
    peer_choking: bool,
    connected_at: Instant,
    last_received: Instant,
}

/// What a step may make us send.
#[derive(Default)]
struct Allowed {
    request: Option<BlockRef>,
    cancel: Option<BlockRef>,
    block: Option<BlockRef>,
    /// Blocks a reject may name (each once).
    rejects: Vec<BlockRef>,
    keepalive: bool,
    choke: bool,
    unchoke: bool,
    interest: bool,
    have: Option<u32>,
    pieces: bool,
    allowed_fast: Vec<u32>,
    extended: Option<(u8, Vec<u8>)>,
    /// Frames the peer sent in this step (bounds the events).
    frames_in: usize,
    /// Our requests in flight before the step (bounds the timeouts).
    in_flight_before: usize,
    /// Whether `pieces` must be used (the command sends something).
    pieces_required: bool,
    /// The error the model says the input must end with (the first rule broken); the shadow
    /// stops there.
    expect: Option<PeerError>,

    // Exact expectations, checked when the step succeeds.
    /// The peer's queued requests as its frames in this step leave them.
    queue: BTreeSet<BlockRef>,
    /// Rejects the connection must send: the peer's requests it will not queue (Fast), and our
    /// commands' rejects.
    must_reject: Vec<BlockRef>,
    /// The `Request` and `Cancel` events the peer's frames must give, in order.
    must_request: Vec<BlockRef>,
    must_cancel: Vec<BlockRef>,
    /// What was seen.
    rejected: Vec<BlockRef>,
    requested: Vec<BlockRef>,
    cancelled: Vec<BlockRef>,
}

impl Harness {
    fn new(setup: &Setup) -> Self {
        let block = u64::from(BLOCK_SIZE);
        let piece_len = 1 + u64::from(setup.piece_len) % (4 * block);
        let pieces = 1 + u64::from(setup.pieces % 24);
        let last = 1 + u64::from(setup.last_len) % piece_len;
        let layout = TorrentLayout::new(piece_len, &[(pieces - 1) * piece_len + last]).unwrap();
        let secs = |i: usize| Duration::from_secs(1 + u64::from(setup.timeouts[i]));
        let max_pipeline = u32::from(setup.max_pipeline % 12);
        let config = PeerConfig {
            max_pipeline,
            min_pipeline: u32::from(setup.min_pipeline) % (max_pipeline + 1),
            pipeline_time: Duration::from_millis(u64::from(setup.pipeline_time_ms)),
            request_timeout: secs(0),
            snub_time: secs(1),
            keepalive_interval: secs(2),
            idle_timeout: secs(3),
            handshake_timeout: secs(4),
            max_peer_requests: usize::from(setup.max_peer_requests % 12),
            max_extended_len: u32::from(setup.max_extended_len % 1024),
            frame_timeout: Duration::from_secs(1 + u64::from(setup.frame_timeout)),
            max_chokes: u32::from(setup.max_chokes % 6),
            choke_window: Duration::from_secs(1 + u64::from(setup.choke_window)),
            max_unrequested_blocks: u32::from(setup.max_unrequested_blocks % 6),
        };
        let mut reserved = Reserved::NONE;
        reserved.set_fast(setup.our_fast);
        reserved.set_extension_protocol(setup.our_extensions);
        let direction = if setup.inbound {
            Direction::Inbound
        } else {
            Direction::Outbound
        };
        let now = Instant::from_micros(1_000_000);
        let conn = PeerConn::new(
            config.clone(),
            direction,
            HASH,
            OUR_ID,
            reserved,
            layout.piece_count(),
            now,
        );
        let limits = WireLimits {
            max_extended_len: config.max_extended_len,
            ..WireLimits::for_pieces(layout.piece_count())
        };
        Harness {
            config,
            conn,
            now,
            ours: BTreeSet::new(),
            theirs: BTreeSet::new(),
            our_allowed_fast: BTreeSet::new(),
            ours_decoder: FrameDecoder::new(WireLimits {
                max_extended_len: MAX_EXTENDED as u32,
                ..WireLimits::for_pieces(layout.piece_count())
            }),
            our_handshake_seen: false,
            we_choke: true,
            we_interested: false,
            theirs_decoder: FrameDecoder::new(limits),
            their_handshake_seen: false,
            our_fast: setup.our_fast,
            shadow_fast: false,
            peer_pieces: Bitfield::new(layout.piece_count()),
            have_events: 0,
            our_extensions: setup.our_extensions,
            shadow_extensions: false,
            live_ours: BTreeSet::new(),
            withdrawn: VecDeque::new(),
            never_requested: 0,
            requests_while_choked: 0,
            requests_refused: 0,
            failed: None,
            partial_since: None,
            uninterested_at: None,
            recent_chokes: VecDeque::new(),
            peer_choking: true,
            connected_at: now,
            last_received: now,
            layout,
        }
    }

    fn valid_block(&self, piece: u8, index: u8) -> BlockRef {
        let p = self
            .layout
            .piece(u32::from(piece) % self.layout.piece_count())
            .unwrap();
        let i = u32::from(index) % self.layout.block_count(p);
        self.layout.block(p, i).unwrap()
    }

    /// A block of the torrent for a command.
    fn block(&self, sel: BlockSel) -> BlockRef {
        let nth = |set: &BTreeSet<BlockRef>, n: u8| {
            (!set.is_empty()).then(|| *set.iter().nth(usize::from(n) % set.len()).unwrap())
        };
        match sel {
            BlockSel::Valid { piece, index } => self.valid_block(piece, index),
            BlockSel::Ours(n) => nth(&self.ours, n).unwrap_or_else(|| self.valid_block(n, 0)),
            BlockSel::Theirs(n) => nth(&self.theirs, n).unwrap_or_else(|| self.valid_block(n, 0)),
            BlockSel::Any { piece, offset, len } => self
                .layout
                .block_at(piece, offset, len)
                .unwrap_or_else(|| self.valid_block(piece as u8, (offset / BLOCK_SIZE) as u8)),
        }
    }

    /// A block triple for the wire.
    fn triple(&self, sel: BlockSel) -> (u32, u32, u32) {
        match sel {
            BlockSel::Any { piece, offset, len } => (piece, offset, len),
            _ => {
                let b = self.block(sel);
                (b.piece.get(), b.offset, b.len)
            }
        }
    }

    fn piece(&self, sel: PieceSel) -> u32 {
        match sel {
            PieceSel::Valid(p) => u32::from(p) % self.layout.piece_count(),
            PieceSel::Any(p) => p,
        }
    }

    fn encode(&self, msg: &PeerMsg, out: &mut Vec<u8>) {
        let n = self.layout.piece_count();
        let data;
        let bits;
        let m = match msg {
            PeerMsg::KeepAlive => Message::KeepAlive,
            PeerMsg::Choke => Message::Choke,
            PeerMsg::Unchoke => Message::Unchoke,
            PeerMsg::Interested => Message::Interested,
            PeerMsg::NotInterested => Message::NotInterested,
            PeerMsg::Have(p) => Message::Have {
                piece: self.piece(*p),
            },
            PeerMsg::Bitfield { bits: b, spare } => {
                let mut v = vec![0u8; Bitfield::byte_len(n)];
                for (d, s) in v.iter_mut().zip(b) {
                    *d = *s;
                }
                if !spare && !n.is_multiple_of(8) {
                    let last = v.last_mut().unwrap();
                    *last &= 0xffu8 << (8 - n % 8);
                }
                bits = v;
                Message::Bitfield(&bits)
            }
            PeerMsg::RawBitfield(b) => Message::Bitfield(b),
            PeerMsg::HaveAll => Message::HaveAll,
            PeerMsg::HaveNone => Message::HaveNone,
            PeerMsg::Request(b) => {
                let (piece, offset, len) = self.triple(*b);
                Message::Request { piece, offset, len }
            }
            PeerMsg::Piece { block, short } => {
                let (piece, offset, len) = self.triple(*block);
                let len = (len.min(2 * BLOCK_SIZE) as usize).saturating_sub(usize::from(*short));
                data = match self.layout.block_at(piece, offset, len as u32) {
                    Some(b) => block_data(b, len),
                    None => vec![0xa5; len],
                };
                Message::Piece {
                    piece,
                    offset,
                    data: &data,
                }
            }
            PeerMsg::Cancel(b) => {
                let (piece, offset, len) = self.triple(*b);
                Message::Cancel { piece, offset, len }
            }
            PeerMsg::Port(p) => Message::Port(*p),
            PeerMsg::Suggest(p) => Message::SuggestPiece(self.piece(*p)),
            PeerMsg::Reject(b) => {
                let (piece, offset, len) = self.triple(*b);
                Message::RejectRequest { piece, offset, len }
            }
            PeerMsg::AllowedFast(p) => Message::AllowedFast(self.piece(*p)),
            PeerMsg::Extended { id, payload } => Message::Extended { id: *id, payload },
            PeerMsg::Unknown { id, payload } => {
                // Ids bt knows would be parsed as those messages; keep it unknown.
                let id = if *id <= 20 { 21 + id } else { *id };
                Message::Unknown { id, payload }
            }
        };
        m.encode_into(out);
    }

    /// Feeds bytes from the peer; the shadow decoder notes the requests among them and the rule
    /// they break first, and the result must be what the model says.
    fn feed(&mut self, bytes: &[u8], allowed: &mut Allowed) -> Result<(), PeerError> {
        let mut completed = false;
        if let Some(e) = &self.failed {
            // A command's breach ends the next input before it is read.
            allowed.expect = Some(e.clone());
        } else {
            if !bytes.is_empty() {
                self.last_received = self.now;
            }
            completed = self.shadow(bytes, allowed);
        }
        let result = self.conn.handle_bytes(self.now, bytes, &self.layout);
        judge(&result, allowed.expect.take());
        if result.is_ok() {
            // The frame timer runs from the first byte of the frame still partial.
            self.partial_since = match self.theirs_decoder.buffered_len() {
                0 => None,
                _ if completed => Some(self.now),
                _ => self.partial_since.or(Some(self.now)),
            };
            assert_eq!(
                self.conn.receive_buffered_len(),
                self.theirs_decoder.buffered_len(),
                "receive_buffered_len"
            );
            assert!(self.conn.receive_buffered_len() <= self.theirs_decoder.max_buffered_len());
        }
        result
    }

    /// What `handle_timeout` at `now` must return.
    fn expect_timeout(&self) -> Option<PeerError> {
        let c = &self.config;
        if let Some(e) = &self.failed {
            return Some(e.clone());
        }
        if !self.their_handshake_seen {
            return (self.now - self.connected_at >= c.handshake_timeout)
                .then_some(PeerError::HandshakeTimeout(c.handshake_timeout));
        }
        if self.now - self.last_received >= c.idle_timeout {
            return Some(PeerError::IdleTimeout(c.idle_timeout));
        }
        if self
            .partial_since
            .is_some_and(|since| self.now - since >= c.frame_timeout)
        {
            return Some(PeerError::FrameTimeout(c.frame_timeout));
        }
        None
    }

    fn timeout(&mut self) -> Result<(), PeerError> {
        let expect = self.expect_timeout();
        let result = self.conn.handle_timeout(self.now);
        // Every error of a timer is modelled: it must be exactly the expected one.
        assert_eq!(result.as_ref().err(), expect.as_ref(), "handle_timeout");
        result
    }

    /// Remembers a withdrawn request, as the connection does (at most twice the pipeline).
    fn withdraw(&mut self, b: BlockRef) {
        if self.withdrawn.len() >= (self.config.max_pipeline as usize).max(1) * 2 {
            self.withdrawn.pop_front();
        }
        self.withdrawn.push_back(b);
    }

    fn forget_withdrawn(&mut self, b: BlockRef) -> bool {
        match self.withdrawn.iter().rposition(|w| *w == b) {
            Some(i) => {
                self.withdrawn.remove(i);
                true
            }
            None => false,
        }
    }

    /// Runs the peer's bytes through the shadow decoder; returns whether a frame (or the
    /// handshake) completed. Stops at the first breach the model knows (`allowed.expect`).
    fn shadow(&mut self, mut bytes: &[u8], allowed: &mut Allowed) -> bool {
        let mut completed = false;
        loop {
            let taken = self.theirs_decoder.extend(bytes);
            bytes = &bytes[taken..];
            if !self.their_handshake_seen {
                match self.theirs_decoder.take_handshake() {
                    Ok(Some(hs)) => {
                        completed = true;
                        self.their_handshake_seen = true;
                        self.shadow_fast = self.our_fast && hs.reserved.fast();
                        self.shadow_extensions =
                            self.our_extensions && hs.reserved.extension_protocol();
                    }
                    Ok(None) if bytes.is_empty() => return completed,
                    Ok(None) => continue,
                    Err(_) => return completed,
                }
            }
            loop {
                match self.theirs_decoder.next_frame() {
                    Ok(Some(frame)) => {
                        completed = true;
                        allowed.frames_in += 1;
                        allowed.expect = self.shadow_frame(frame.message(), allowed);
                        if allowed.expect.is_some() {
                            return completed;
                        }
                    }
                    Ok(None) => break,
                    Err(_) => return completed,
                }
            }
            if bytes.is_empty() {
                return completed;
            }
        }
    }

    /// One frame of the peer as the model sees it: the error it must close with, if any.
    fn shadow_frame(&mut self, m: Message<'_>, allowed: &mut Allowed) -> Option<PeerError> {
        let n = self.layout.piece_count();
        let fast_only = match m {
            Message::HaveAll => Some(id::HAVE_ALL),
            Message::HaveNone => Some(id::HAVE_NONE),
            Message::SuggestPiece(_) => Some(id::SUGGEST_PIECE),
            Message::RejectRequest { .. } => Some(id::REJECT_REQUEST),
            Message::AllowedFast(_) => Some(id::ALLOWED_FAST),
            _ => None,
        };
        if let Some(id) = fast_only
            && !self.shadow_fast
        {
            return Some(PeerError::FastNotNegotiated(id));
        }
        let block = |piece, offset, len| {
            self.layout
                .block_at(piece, offset, len)
                .ok_or(PeerError::InvalidBlock { piece, offset, len })
        };
        match m {
            Message::Request { piece, offset, len } => match block(piece, offset, len) {
                Ok(b) => {
                    allowed.rejects.push(b);
                    return self.shadow_request(b, allowed);
                }
                Err(e) => return Some(e),
            },
            Message::Cancel { piece, offset, len } => match block(piece, offset, len) {
                Ok(b) => {
                    if allowed.queue.remove(&b) {
                        allowed.must_cancel.push(b);
                    }
                }
                Err(e) => return Some(e),
            },
            Message::Piece {
                piece,
                offset,
                data,
            } => {
                let len = u32::try_from(data.len()).unwrap_or(u32::MAX);
                let b = match block(piece, offset, len) {
                    Ok(b) => b,
                    Err(e) => return Some(e),
                };
                // A late block of a withdrawn request (cancelled, timed out, dropped by a choke)
                // is tolerated; one never asked for counts towards the bound.
                if !self.live_ours.remove(&b) && !self.forget_withdrawn(b) {
                    self.never_requested += 1;
                    if self.never_requested > self.config.max_unrequested_blocks {
                        return Some(PeerError::UnrequestedBlocks(
                            self.config.max_unrequested_blocks,
                        ));
                    }
                }
            }
            Message::RejectRequest { piece, offset, len } => {
                let b = match block(piece, offset, len) {
                    Ok(b) => b,
                    Err(e) => return Some(e),
                };
                // A reject crossing our cancel is fine; one for nothing we asked is a breach.
                if !self.live_ours.remove(&b) && !self.forget_withdrawn(b) {
                    return Some(PeerError::RejectUnrequested);
                }
            }
            Message::Have { piece }
            | Message::AllowedFast(piece)
            | Message::SuggestPiece(piece)
                if piece >= n =>
            {
                return Some(PeerError::PieceOutOfRange(piece));
            }
            Message::Extended { .. } if !self.shadow_extensions => {
                return Some(PeerError::ExtendedNotNegotiated);
            }
            Message::Choke => {
                // Only a choke we did not invite counts: interested, and not within the grace
                // of our not-interested.
                let now = self.now;
                let invited = !self.conn.am_interested()
                    || self
                        .uninterested_at
                        .is_some_and(|at| now - at < INVITED_CHOKE_GRACE);
                if !self.peer_choking && !invited {
                    let window = self.config.choke_window;
                    while self
                        .recent_chokes
                        .front()
                        .is_some_and(|at| now - *at >= window)
                    {
                        self.recent_chokes.pop_front();
                    }
                    if self.recent_chokes.len() >= self.config.max_chokes as usize {
                        return Some(PeerError::ChokeStorm {
                            chokes: self.config.max_chokes + 1,
                            window,
                        });
                    }
                    self.recent_chokes.push_back(now);
                }
                self.peer_choking = true;
                if !self.shadow_fast {
                    // BEP 3: a choke voids our requests; they count as withdrawn.
                    for b in std::mem::take(&mut self.live_ours) {
                        self.withdraw(b);
                    }
                }
            }
            Message::Unchoke => self.peer_choking = false,
            _ => {}
        }
        None
    }

    /// What the connection must do with the peer's request `b` (BEP 3, BEP 6): queue it while
    /// we unchoke it (or the piece is allowed-fast) and there is room; else refuse it: a reject
    /// with the Fast extension (none for a repeat of a queued one), silence without, and past
    /// `max_peer_requests` refusals (since our unchoke for requests while choked, since our last
    /// block for the others) the connection closes. Without Fast, a request over a full queue
    /// closes it at once (it cannot be rejected).
    fn shadow_request(&mut self, b: BlockRef, allowed: &mut Allowed) -> Option<PeerError> {
        let max = self.config.max_peer_requests;
        let bound = max as u32;
        let welcome = !self.conn.am_choking() || self.our_allowed_fast.contains(&b.piece.get());
        if !welcome {
            self.requests_while_choked += 1;
            if self.requests_while_choked > bound {
                return Some(PeerError::RequestWhileChoked);
            }
            if self.shadow_fast {
                allowed.must_reject.push(b);
            }
            return None;
        }
        let repeat = allowed.queue.contains(&b);
        if repeat || allowed.queue.len() >= max {
            if !self.shadow_fast && !repeat {
                return Some(PeerError::TooManyRequests(max));
            }
            self.requests_refused += 1;
            if self.requests_refused > bound {
                return Some(PeerError::TooManyRequests(max));
            }
            if !repeat {
                allowed.must_reject.push(b);
            }
            return None;
        }
        allowed.queue.insert(b);
        allowed.must_request.push(b);
        None
    }

    /// Whether a command may be issued now (as `Torrent` does: once connected; an outbound
    /// connection has its handshake out already).
    fn may_send(&self) -> bool {
        self.conn.is_connected() || self.conn.direction() == Direction::Outbound
    }

    /// Runs one step; `Err` when the connection must close.
    fn step(&mut self, step: &Step) -> Result<(), PeerError> {
        let mut allowed = Allowed {
            in_flight_before: self.ours.len(),
            queue: self.theirs.clone(),
            ..Allowed::default()
        };
        let mut timeout = false;
        let result = self.run(step, &mut allowed, &mut timeout);
        self.drain_events(&mut allowed);
        self.check_output(&mut allowed);
        if result.is_ok() {
            self.check_exact(&mut allowed);
            assert_eq!(self.live_ours, self.ours, "the model's requests in flight");
        }
        if timeout && result.is_ok() {
            let next = self
                .conn
                .poll_timeout()
                .expect("a connection always has a timer");
            assert!(
                next > self.now,
                "timer still due after handle_timeout: {next:?}"
            );
        }
        self.check_bounds();
        result
    }

    fn run(
        &mut self,
        step: &Step,
        allowed: &mut Allowed,
        timeout: &mut bool,
    ) -> Result<(), PeerError> {
        let now = self.now;
        match step {
            Step::Handshake {
                fast,
                extensions,
                wrong_hash,
                our_id,
                id,
            } => {
                let mut reserved = Reserved::NONE;
                reserved.set_fast(*fast);
                reserved.set_extension_protocol(*extensions);
                let hs = Handshake {
                    reserved,
                    info_hash: if *wrong_hash { InfoHash([8; 20]) } else { HASH },
                    peer_id: if *our_id {
                        OUR_ID
                    } else {
                        PeerId([id | 2; 20])
                    },
                };
                self.feed(&hs.encode(), allowed)?;
            }
            Step::Msg(m) => {
                let mut buf = Vec::new();
                self.encode(m, &mut buf);
                self.feed(&buf, allowed)?;
            }
            Step::Split(m, at) => {
                let mut buf = Vec::new();
                self.encode(m, &mut buf);
                let at = usize::from(*at) % (buf.len() + 1);
                self.feed(&buf[..at], allowed)?;
                self.feed(&buf[at..], allowed)?;
            }
            Step::Batch(ms) => {
                let mut buf = Vec::new();
                for m in ms {
                    self.encode(m, &mut buf);
                }
                self.feed(&buf, allowed)?;
            }
            Step::Raw(bytes) => self.feed(bytes, allowed)?,
            Step::Wait { ms, long } => {
                let ms = u64::from(*ms) * (1 + u64::from(*long) * 256);
                self.now = now + Duration::from_millis(ms);
                allowed.keepalive = true;
                *timeout = true;
                self.timeout()?;
            }
            Step::Deadline => {
                if let Some(at) = self.conn.poll_timeout() {
                    self.now = self.now.max(at);
                }
                allowed.keepalive = true;
                *timeout = true;
                self.timeout()?;
            }
            Step::Request(sel) => {
                let block = self.block(*sel);
                let before = self.conn.outstanding_len();
                let can = self.conn.can_request(block.piece)
                    && !self.conn.has_requested(block)
                    && before < self.config.max_pipeline as usize;
                let sent = self.conn.request(now, block);
                assert_eq!(
                    sent, can,
                    "request() disagrees with can_request and the pipeline"
                );
                if sent {
                    assert!(self.ours.insert(block));
                    assert!(self.live_ours.insert(block));
                    allowed.request = Some(block);
                }
            }
            _ if !self.may_send() => {}
            Step::Cancel(sel) => {
                let block = self.block(*sel);
                let was = self.ours.contains(&block);
                assert_eq!(self.conn.cancel(now, block), was);
                if was {
                    self.ours.remove(&block);
                    self.live_ours.remove(&block);
                    self.withdraw(block);
                    allowed.cancel = Some(block);
                }
            }
            Step::Choke => {
                let was_choking = self.conn.am_choking();
                let dropped = self.conn.choke(now);
                allowed.choke = !was_choking;
                for b in &dropped {
                    assert!(self.theirs.remove(b), "choke dropped {b:?}, never queued");
                    if self.conn.fast_extension() {
                        allowed.rejects.push(*b);
                        allowed.must_reject.push(*b);
                    }
                }
                if self.conn.fast_extension() {
                    // Only allowed-fast requests survive a choke.
                    assert!(
                        self.theirs
                            .iter()
                            .all(|b| self.our_allowed_fast.contains(&b.piece.get()))
                    );
                } else {
                    assert!(self.theirs.is_empty(), "requests left after a choke");
                }
            }
            Step::Unchoke => {
                allowed.unchoke = self.conn.am_choking();
                if self.conn.am_choking() {
                    self.requests_while_choked = 0;
                }
                self.conn.unchoke(now);
            }
            Step::Interested(on) => {
                allowed.interest = self.conn.am_interested() != *on;
                if allowed.interest && !*on {
                    self.uninterested_at = Some(now);
                }
                self.conn.set_interested(now, *on);
            }
            Step::SendBlock { block, wrong_len } => {
                let b = self.block(*block);
                let len = if *wrong_len {
                    b.len as usize + 1
                } else {
                    b.len as usize
                };
                let queued = self.theirs.contains(&b);
                let sent = self
                    .conn
                    .send_block(now, b, Bytes::from(block_data(b, len)));
                assert_eq!(sent, queued && !wrong_len);
                if sent {
                    self.theirs.remove(&b);
                    self.requests_refused = 0;
                    allowed.block = Some(b);
                }
            }
            Step::RejectRequest(sel) => {
                let b = self.block(*sel);
                let queued = self.theirs.contains(&b);
                assert_eq!(self.conn.reject_request(now, b), queued);
                if queued {
                    self.theirs.remove(&b);
                    if self.conn.fast_extension() {
                        allowed.rejects.push(b);
                        allowed.must_reject.push(b);
                    }
                }
            }
            Step::RefuseRequest(sel) => {
                let b = self.block(*sel);
                let queued = self.theirs.contains(&b);
                assert_eq!(self.conn.refuse_request(now, b), queued);
                if queued {
                    self.theirs.remove(&b);
                    if self.conn.fast_extension() {
                        allowed.rejects.push(b);
                        allowed.must_reject.push(b);
                    }
                    // Counted; past the bound the next input or timer closes the connection.
                    self.requests_refused += 1;
                    if self.requests_refused > self.config.max_peer_requests as u32
                        && self.failed.is_none()
                    {
                        self.failed =
                            Some(PeerError::TooManyRequests(self.config.max_peer_requests));
                    }
                }
            }
            Step::SendHave(p) => {
                let p = self
                    .layout
                    .piece(u32::from(*p) % self.layout.piece_count())
                    .unwrap();
                self.conn.send_have(now, p);
                allowed.have = Some(p.get());
            }
            Step::SendPieces(bits) => {
                let n = self.layout.piece_count();
                let mut ours = Bitfield::new(n);
                for (i, bit) in bits.iter().enumerate().take(n as usize) {
                    if bit & 1 != 0 {
                        ours.set(i as u32);
                    }
                }
                if bits.first().is_some_and(|b| b & 2 != 0) {
                    ours = Bitfield::full(n);
                }
                self.conn.send_pieces(now, &ours);
                allowed.pieces = true;
                allowed.pieces_required = self.conn.fast_extension() || !ours.is_clear();
            }
            Step::SendAllowedFast(pieces) => {
                let n = self.layout.piece_count();
                let pieces: Vec<u32> = pieces.iter().map(|&p| u32::from(p) % n).collect();
                self.conn.send_allowed_fast(now, &pieces);
                if self.conn.fast_extension() {
                    allowed.allowed_fast = pieces;
                }
            }
            Step::SendExtended { id, payload } => {
                let payload = &payload[..payload.len().min(MAX_EXTENDED)];
                self.conn.send_extended(now, *id, payload);
                if self.conn.extension_protocol() {
                    allowed.extended = Some((*id, payload.to_vec()));
                }
            }
        }
        Ok(())
    }

    /// What a successful step must have done, beyond what it may do.
    fn check_exact(&self, a: &mut Allowed) {
        assert_eq!(a.requested, a.must_request, "the peer's requests passed on");
        assert_eq!(a.cancelled, a.must_cancel, "the peer's cancels passed on");
        a.rejected.sort_unstable();
        a.must_reject.sort_unstable();
        assert_eq!(a.rejected, a.must_reject, "rejects sent");
        assert_eq!(a.request, None, "a request made but not sent");
        assert_eq!(a.cancel, None, "a cancel made but not sent");
        assert_eq!(a.block, None, "a block served but not sent");
        assert_eq!(a.have, None, "a have not sent");
        assert!(a.extended.is_none(), "an extended message not sent");
        assert!(
            !a.choke && !a.unchoke && !a.interest,
            "a state change not sent"
        );
        assert!(!(a.pieces_required && a.pieces), "our pieces not sent");
        for p in &a.allowed_fast {
            assert!(
                self.our_allowed_fast.contains(p)
                    || self.our_allowed_fast.len() >= MAX_ALLOWED_FAST,
                "allowed-fast {p} not sent"
            );
        }
    }

    fn drain_events(&mut self, allowed: &mut Allowed) {
        let mut others = 0;
        let events: Vec<PeerEvent> = std::iter::from_fn(|| self.conn.poll_event()).collect();
        // Pieces the peer announced one by one in this step (after its first announcement, if
        // that was in this step too).
        let haves: Vec<u32> = events
            .iter()
            .filter_map(|e| match e {
                PeerEvent::Have(p) => Some(p.get()),
                _ => None,
            })
            .collect();
        for event in events {
            match event {
                PeerEvent::Have(p) => {
                    assert!(self.peer_pieces.set(p.get()), "Have({p}) twice");
                    self.have_events += 1;
                    assert!(self.have_events <= self.layout.piece_count());
                    continue;
                }
                PeerEvent::Block { block, data } => {
                    assert!(
                        self.ours.remove(&block),
                        "block {block:?} we did not request"
                    );
                    assert_eq!(data.as_ref(), block_data(block, block.len as usize));
                }
                PeerEvent::Rejected(block) => {
                    assert!(self.ours.remove(&block), "{block:?} was not in flight");
                }
                PeerEvent::RequestTimedOut(block) => {
                    assert!(self.ours.remove(&block), "{block:?} was not in flight");
                    // Only timers time requests out: no frame of the step saw it.
                    assert!(self.live_ours.remove(&block));
                    self.withdraw(block);
                }
                PeerEvent::Choked { dropped } => {
                    if self.conn.fast_extension() {
                        assert!(dropped.is_empty());
                    } else {
                        let dropped: BTreeSet<_> = dropped.into_iter().collect();
                        assert_eq!(dropped, self.ours, "a choke drops every request");
                        self.ours.clear();
                    }
                }
                PeerEvent::Request(block) => {
                    assert!(
                        !self.conn.am_choking()
                            || self.our_allowed_fast.contains(&block.piece.get()),
                        "request {block:?} passed on while we choke"
                    );
                    assert!(self.theirs.insert(block), "request {block:?} queued twice");
                    allowed.requested.push(block);
                }
                PeerEvent::Cancel(block) => {
                    assert!(
                        self.theirs.remove(&block),
                        "cancel of {block:?}, not queued"
                    );
                    allowed.cancelled.push(block);
                }
                PeerEvent::Pieces => {
                    // Only while no piece is known, so nothing is lost. The connection's pieces
                    // now include the haves that followed in this step.
                    let mut pieces = self.conn.peer_pieces().clone();
                    assert!(self.peer_pieces.ones().all(|p| pieces.get(p)));
                    for &p in &haves {
                        pieces.clear(p);
                    }
                    self.peer_pieces = pieces;
                }
                PeerEvent::Connected { .. } => assert!(self.conn.is_connected()),
                PeerEvent::AllowedFast(p) | PeerEvent::Suggest(p) => {
                    assert!(p.get() < self.layout.piece_count());
                }
                PeerEvent::Extended { .. } => assert!(self.conn.extension_protocol()),
                PeerEvent::Unchoked
                | PeerEvent::Interested
                | PeerEvent::NotInterested
                | PeerEvent::Port(_) => {}
            }
            others += 1;
        }
        assert!(
            others <= allowed.frames_in + 1 + allowed.in_flight_before,
            "{others} events from {} frames",
            allowed.frames_in
        );
        // What the connection says of the peer's pieces is what its events said.
        let pieces = self.conn.peer_pieces();
        assert_eq!(
            pieces.count(),
            self.peer_pieces.count(),
            "pieces without events"
        );
        assert!(self.peer_pieces.ones().all(|p| pieces.get(p)));
    }

    /// Drains the output and reads it as the peer would.
    fn check_output(&mut self, allowed: &mut Allowed) {
        let mut out = Vec::new();
        while let Some(chunk) = self.conn.poll_transmit() {
            assert!(!chunk.is_empty(), "an empty transmit");
            out.extend_from_slice(&chunk);
        }
        assert_eq!(self.conn.send_queue_len(), 0, "bytes left after draining");
        let mut input = &out[..];
        loop {
            let taken = self.ours_decoder.extend(input);
            input = &input[taken..];
            if !self.our_handshake_seen {
                match self.ours_decoder.take_handshake() {
                    Ok(Some(hs)) => {
                        assert_eq!(hs.info_hash, HASH);
                        assert_eq!(hs.peer_id, OUR_ID);
                        self.our_handshake_seen = true;
                    }
                    Ok(None) => {
                        assert!(
                            input.is_empty() && self.ours_decoder.buffered_len() == 0,
                            "we sent something before our handshake"
                        );
                        return;
                    }
                    Err(e) => panic!("our handshake is malformed: {e}"),
                }
            }
            loop {
                let frame = match self.ours_decoder.next_frame() {
                    Ok(Some(frame)) => frame,
                    Ok(None) => break,
                    Err(e) => panic!("we sent a malformed frame: {e}"),
                };
                self.check_frame(frame.message(), allowed);
            }
            if input.is_empty() {
                break;
            }
        }
        assert_eq!(
            self.ours_decoder.buffered_len(),
            0,
            "we sent part of a frame"
        );
    }

    fn check_frame(&mut self, m: Message<'_>, allowed: &mut Allowed) {
        let fast = self.conn.fast_extension();
        let block_of = |piece, offset, len| {
            self.layout
                .block_at(piece, offset, len)
                .unwrap_or_else(|| panic!("we named no block: {m:?}"))
        };
        match m {
            Message::KeepAlive => {
                assert!(std::mem::take(&mut allowed.keepalive), "keep-alive unasked")
            }
            Message::Choke => {
                assert!(
                    std::mem::take(&mut allowed.choke) && !self.we_choke,
                    "{m:?}"
                );
                self.we_choke = true;
            }
            Message::Unchoke => {
                assert!(
                    std::mem::take(&mut allowed.unchoke) && self.we_choke,
                    "{m:?}"
                );
                self.we_choke = false;
            }
            Message::Interested | Message::NotInterested => {
                let on = matches!(m, Message::Interested);
                assert!(std::mem::take(&mut allowed.interest) && self.we_interested != on);
                self.we_interested = on;
            }
            Message::Have { piece } => assert_eq!(allowed.have.take(), Some(piece)),
            Message::Bitfield(bits) => {
                assert!(std::mem::take(&mut allowed.pieces));
                Bitfield::from_wire(bits, self.layout.piece_count()).expect("our bitfield");
            }
            Message::HaveAll | Message::HaveNone => {
                assert!(fast && std::mem::take(&mut allowed.pieces), "{m:?}");
            }
            Message::Request { piece, offset, len } => {
                assert_eq!(allowed.request.take(), Some(block_of(piece, offset, len)));
            }
            Message::Cancel { piece, offset, len } => {
                assert_eq!(allowed.cancel.take(), Some(block_of(piece, offset, len)));
            }
            Message::Piece {
                piece,
                offset,
                data,
            } => {
                let b = block_of(piece, offset, u32::try_from(data.len()).unwrap());
                assert_eq!(allowed.block.take(), Some(b));
                assert_eq!(data, block_data(b, data.len()));
            }
            Message::RejectRequest { piece, offset, len } => {
                assert!(fast, "reject without the Fast extension");
                let b = block_of(piece, offset, len);
                let i = allowed
                    .rejects
                    .iter()
                    .position(|r| *r == b)
                    .unwrap_or_else(|| panic!("reject of {b:?}, which the peer did not ask for"));
                allowed.rejects.swap_remove(i);
                allowed.rejected.push(b);
            }
            Message::AllowedFast(piece) => {
                assert!(fast, "allowed-fast without the Fast extension");
                let i = allowed
                    .allowed_fast
                    .iter()
                    .position(|&p| p == piece)
                    .expect("allowed-fast unasked");
                allowed.allowed_fast.swap_remove(i);
                assert!(
                    self.our_allowed_fast.insert(piece),
                    "allowed-fast {piece} twice"
                );
                assert!(self.our_allowed_fast.len() <= MAX_ALLOWED_FAST);
            }
            Message::Extended { id, payload } => {
                assert!(self.conn.extension_protocol());
                assert_eq!(allowed.extended.take(), Some((id, payload.to_vec())));
            }
            Message::Port(_) | Message::SuggestPiece(_) | Message::Unknown { .. } => {
                panic!("we sent {m:?}")
            }
        }
    }

    fn check_bounds(&self) {
        let c = &self.conn;
        assert!(c.outstanding_len() <= self.config.max_pipeline as usize);
        assert!(c.peer_requests().count() <= self.config.max_peer_requests);
        assert!(c.allowed_fast().count() <= MAX_ALLOWED_FAST);
        assert_eq!(c.outstanding().collect::<BTreeSet<_>>(), self.ours);
        assert_eq!(c.peer_requests().collect::<BTreeSet<_>>(), self.theirs);
        assert_eq!(
            c.peer_requests().count(),
            self.theirs.len(),
            "a request queued twice"
        );
        assert_eq!(c.peer_pieces().len(), self.layout.piece_count());
        assert!(c.pipeline_target(self.now) <= self.config.max_pipeline.max(1));
        assert!(self.theirs_decoder.buffered_len() <= self.theirs_decoder.max_buffered_len());
    }
}

/// Whether the model judges this error: every rule but the stream's own form (handshake, frames,
/// bitfields, the order of the piece announcement), which the decoder and `Bitfield` check.
fn modelled(e: &PeerError) -> bool {
    !matches!(
        e,
        PeerError::Handshake(_)
            | PeerError::WrongInfoHash(_)
            | PeerError::SelfConnection
            | PeerError::Wire(_)
            | PeerError::PiecesNotFirst
            | PeerError::Bitfield(_)
    )
}

/// The result of an input against the model's verdict: a rule the model knows closes the
/// connection exactly when it is broken, with that error; an error of the stream's form may come
/// first (the model does not judge it).
fn judge(result: &Result<(), PeerError>, expect: Option<PeerError>) {
    match (result, expect) {
        (Ok(()), None) => {}
        (Ok(()), Some(e)) => panic!("the peer broke a rule ({e:?}) and the connection went on"),
        (Err(e), _) if !modelled(e) => {}
        (Err(e), Some(x)) => assert_eq!(*e, x, "closed for another rule"),
        (Err(e), None) => panic!("closed for a rule the peer did not break: {e:?}"),
    }
}

fuzz_target!(|input: (Setup, Vec<Step>)| {
    let (setup, steps) = input;
    let debug = std::env::var_os("PEER_CONN_DEBUG").is_some();
    if debug {
        eprintln!("{setup:?}");
    }
    let mut h = Harness::new(&setup);
    let mut none = Allowed::default();
    // Outbound: our handshake is queued at once.
    h.check_output(&mut none);
    assert_eq!(h.our_handshake_seen, !setup.inbound);
    for step in &steps {
        if debug {
            eprintln!("{step:?}");
        }
        let result = h.step(step);
        if debug {
            eprintln!("  -> {result:?}");
        }
        if result.is_err() {
            // The caller closes the connection: nothing more is fed to it.
            return;
        }
    }
});
