//! The hostile-peer catalogue: one test per misbehaviour, each a scripted fake peer
//! connected to a [`Torrent`] beside an honest peer (another `Torrent`, over a link with a
//! bandwidth, so the honest transfer runs while the fake peer misbehaves). Each test proves three
//! things: the fake peer's connection closes with its named reason; what it could grow (the
//! receive buffer, the queue of its requests, what we send it) stays bounded; and the honest
//! peer's transfer completes byte for byte. The clock is simulated: it jumps to the next delivery
//! or timer, so the 60 s frame timeout costs nothing.

use core::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use sha1::{Digest, Sha1};

use super::*;
use crate::harness::{answer_disk, content};
use crate::io::{ConnId, DiskOp};
use crate::metainfo::{BlockRef, InfoHash, TorrentLayout};
use crate::peer::{Direction, PeerConfig, PeerError};
use crate::rng::Rng;
use crate::time::Instant;
use crate::wire::{Frame, FrameDecoder, Handshake, Message, PeerId, Reserved, WireError, id};

const HASH: InfoHash = InfoHash([0x42; 20]);
/// The link between the torrent under test and the honest peer.
const HONEST: ConnId = ConnId(1);
/// The scripted fake peer's connection to the torrent under test.
const HOSTILE: ConnId = ConnId(2);
/// 12 pieces of 32 KiB (two blocks each), the last one 20,000 bytes (blocks of 16,384 and 3,616).
const PIECE_LEN: u64 = 32 * 1024;
const TOTAL: u64 = 11 * PIECE_LEN + 20_000;
const PIECES: u32 = 12;
/// The honest link's default rate: the download takes about 6 s.
const RATE: u64 = 64 * 1024;

/// Which end the torrent under test is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    /// It downloads from the honest seed; the fake peer poses as another seed.
    Leecher,
    /// It seeds to the honest leecher; the fake peer poses as another leecher.
    Seeder,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Side {
    Under,
    Honest,
}

struct Node {
    torrent: Torrent,
    storage: Vec<u8>,
    events: Vec<TorrentEvent>,
    closed: Vec<(ConnId, CloseReason)>,
    uplink_free_at: Instant,
}

/// The torrent under test, the honest peer, and the fake peer's end of its connection.
struct Lab {
    now: Instant,
    role: Role,
    layout: TorrentLayout,
    content: Vec<u8>,
    under: Node,
    honest: Node,
    /// Bytes on the honest link by arrival time: (receiving side, bytes).
    wire: BTreeMap<(Instant, u64), (Side, Bytes)>,
    seq: u64,
    link_up: bool,
    rate: u64,
    /// What the torrent under test sent the fake peer, decoded.
    hostile_rx: FrameDecoder,
    hostile_rx_handshake: bool,
    /// Bytes the torrent under test sent the fake peer in all.
    to_hostile_total: usize,
    /// Every block the torrent under test asked its disk to write.
    writes: Vec<(BlockRef, Bytes)>,
}

fn addr(n: u8) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, n)), 6881)
}

fn frame(m: Message<'_>) -> Vec<u8> {
    let mut v = Vec::new();
    m.encode_into(&mut v);
    v
}

/// The fake peer's handshake for `hash`, with or without the Fast extension.
fn handshake(hash: InfoHash, fast: bool) -> Vec<u8> {
    let mut reserved = Reserved::NONE;
    reserved.set_fast(fast);
    Handshake {
        reserved,
        info_hash: hash,
        peer_id: PeerId([0x66; 20]),
    }
    .encode()
    .to_vec()
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

impl Lab {
    /// A lab where the torrent under test is `role`, with `config`, and the honest link carries
    /// `rate` bytes per second each way.
    fn new(role: Role, config: TorrentConfig, rate: u64) -> Lab {
        let layout = TorrentLayout::new(PIECE_LEN, &[TOTAL]).expect("valid layout");
        let data = content(TOTAL);
        let hashes: Vec<[u8; 20]> = data
            .chunks(PIECE_LEN as usize)
            .map(|c| Sha1::digest(c).into())
            .collect();
        let node = |seed: bool, config: TorrentConfig, n: u8| {
            let have = if seed {
                Bitfield::full(PIECES)
            } else {
                Bitfield::new(PIECES)
            };
            Node {
                torrent: Torrent::new(
                    config,
                    HASH,
                    layout.clone(),
                    hashes.clone(),
                    have,
                    PeerId([n; 20]),
                    Rng::new(u64::from(n)),
                ),
                storage: if seed {
                    data.clone()
                } else {
                    vec![0; TOTAL as usize]
                },
                events: Vec::new(),
                closed: Vec::new(),
                uplink_free_at: Instant::ZERO,
            }
        };
        let under_seeds = role == Role::Seeder;
        let mut lab = Lab {
            now: Instant::ZERO,
            role,
            under: node(under_seeds, config, 1),
            honest: node(!under_seeds, TorrentConfig::default(), 2),
            layout,
            content: data,
            wire: BTreeMap::new(),
            seq: 0,
            link_up: true,
            rate,
            hostile_rx: FrameDecoder::new(crate::wire::WireLimits::for_pieces(PIECES)),
            hostile_rx_handshake: false,
            to_hostile_total: 0,
            writes: Vec::new(),
        };
        lab.under
            .torrent
            .add_peer(Instant::ZERO, HONEST, addr(2), Direction::Outbound)
            .expect("room for the honest peer");
        lab.honest
            .torrent
            .add_peer(Instant::ZERO, HONEST, addr(1), Direction::Inbound)
            .expect("room for the torrent under test");
        lab.drain();
        lab
    }

    fn default(role: Role) -> Lab {
        Lab::new(role, TorrentConfig::default(), RATE)
    }

    fn node(&mut self, side: Side) -> &mut Node {
        match side {
            Side::Under => &mut self.under,
            Side::Honest => &mut self.honest,
        }
    }

    /// Handles both torrents' outputs until neither has any.
    fn drain(&mut self) {
        for _ in 0..1_000_000 {
            let out = match self.under.torrent.poll_output() {
                Some(out) => Some((Side::Under, out)),
                None => self.honest.torrent.poll_output().map(|o| (Side::Honest, o)),
            };
            let Some((side, out)) = out else {
                return;
            };
            self.output(side, out);
        }
        panic!("outputs without end");
    }

    fn output(&mut self, side: Side, out: TorrentOutput) {
        let now = self.now;
        match out {
            TorrentOutput::Transmit { conn, bytes } if side == Side::Under && conn == HOSTILE => {
                // The fake peer reads everything at once.
                self.to_hostile_total += bytes.len();
                let mut rest = &bytes[..];
                while !rest.is_empty() {
                    let taken = self.hostile_rx.extend(rest);
                    rest = &rest[taken..];
                    assert!(taken > 0, "what we send the fake peer decodes");
                }
                self.under.torrent.handle_sent(now, HOSTILE, bytes.len());
            }
            TorrentOutput::Transmit { conn, bytes } => {
                assert_eq!(conn, HONEST, "only two connections");
                if !self.link_up {
                    return;
                }
                let rate = self.rate;
                let node = self.node(side);
                let start = node.uplink_free_at.max(now);
                node.uplink_free_at =
                    start + Duration::from_micros(bytes.len() as u64 * 1_000_000 / rate);
                let at = node.uplink_free_at;
                let to = match side {
                    Side::Under => Side::Honest,
                    Side::Honest => Side::Under,
                };
                self.seq += 1;
                self.wire.insert((at, self.seq), (to, bytes));
            }
            TorrentOutput::Close { conn, reason } => {
                self.node(side).closed.push((conn, reason));
                if conn == HONEST && self.link_up {
                    self.link_up = false;
                    let other = match side {
                        Side::Under => Side::Honest,
                        Side::Honest => Side::Under,
                    };
                    self.node(other).torrent.peer_disconnected(now, HONEST);
                }
            }
            TorrentOutput::Disk(op) => {
                if let (Side::Under, DiskOp::Write { block, data }) = (side, &op) {
                    self.writes.push((*block, data.clone()));
                }
                let layout = self.layout.clone();
                let node = self.node(side);
                let done = answer_disk(&layout, &mut node.storage, false, op);
                node.torrent.handle_disk(now, done);
            }
            TorrentOutput::Event(e) => self.node(side).events.push(e),
        }
    }

    /// Runs deliveries and timers up to `until` (bounded in steps: a livelock panics).
    fn run_until(&mut self, until: Instant) {
        for _ in 0..1_000_000 {
            self.drain();
            let next = [
                self.wire.keys().next().map(|(at, _)| *at),
                self.under.torrent.poll_timeout(),
                self.honest.torrent.poll_timeout(),
            ]
            .into_iter()
            .flatten()
            .min();
            let Some(next) = next.filter(|n| *n <= until) else {
                self.now = self.now.max(until);
                return;
            };
            self.now = self.now.max(next);
            let now = self.now;
            while let Some(entry) = self.wire.first_entry() {
                if entry.key().0 > now {
                    break;
                }
                let (to, bytes) = entry.remove();
                if !self.link_up {
                    continue;
                }
                self.node(to).torrent.handle_bytes(now, HONEST, &bytes);
                let from = match to {
                    Side::Under => Side::Honest,
                    Side::Honest => Side::Under,
                };
                self.node(from)
                    .torrent
                    .handle_sent(now, HONEST, bytes.len());
                self.drain();
            }
            for side in [Side::Under, Side::Honest] {
                let node = self.node(side);
                if node.torrent.poll_timeout().is_some_and(|t| t <= now) {
                    node.torrent.handle_timeout(now);
                }
            }
        }
        panic!("no end of work before {until:?}: livelock?");
    }

    fn run_for(&mut self, d: Duration) {
        self.run_until(self.now + d);
    }

    /// Connects the fake peer (we dial it: `Outbound`; it dialled us: `Inbound`).
    fn connect_hostile(&mut self, direction: Direction) {
        self.under
            .torrent
            .add_peer(self.now, HOSTILE, addr(66), direction)
            .expect("room for the fake peer");
        self.drain();
    }

    /// Connects the fake peer (we dial it) and has it answer with its handshake (for our
    /// torrent, with or without Fast) and `then`.
    fn hostile_open(&mut self, fast: bool, then: &[Vec<u8>]) {
        self.connect_hostile(Direction::Outbound);
        let mut bytes = handshake(HASH, fast);
        for m in then {
            bytes.extend_from_slice(m);
        }
        self.hostile_send(&bytes);
    }

    /// The fake peer sends `bytes` (one socket read).
    fn hostile_send(&mut self, bytes: &[u8]) {
        let now = self.now;
        self.under.torrent.handle_bytes(now, HOSTILE, bytes);
        self.drain();
    }

    /// Why the torrent under test closed the fake peer, if it did.
    fn hostile_closed(&self) -> Option<CloseReason> {
        self.under
            .closed
            .iter()
            .find(|(c, _)| *c == HOSTILE)
            .map(|(_, r)| r.clone())
    }

    /// The frames the torrent under test sent the fake peer since the last call.
    fn hostile_frames(&mut self) -> Vec<Frame> {
        if !self.hostile_rx_handshake {
            match self.hostile_rx.take_handshake() {
                Ok(Some(_)) => self.hostile_rx_handshake = true,
                Ok(None) => return Vec::new(),
                Err(e) => panic!("our handshake is well-formed: {e}"),
            }
        }
        std::iter::from_fn(|| {
            self.hostile_rx
                .next_frame()
                .expect("our frames are well-formed")
        })
        .collect()
    }

    /// Asserts the fake peer was closed for `reason` (and only once).
    fn assert_closed(&self, reason: CloseReason) {
        assert_eq!(self.hostile_closed(), Some(reason));
        assert_eq!(
            self.under.torrent.peer(HOSTILE).map(|_| ()),
            None,
            "the fake peer is forgotten"
        );
    }

    /// Runs until the honest transfer completes (at most `limit` more) and asserts it did, byte
    /// for byte, without the honest connection ever closing.
    fn assert_honest_completes(&mut self, limit: Duration) {
        let deadline = self.now + limit;
        while self.now < deadline && !self.leecher().torrent.is_complete() {
            self.run_for(secs(1));
        }
        let role = self.role;
        let content = self.content.clone();
        let leecher = self.leecher();
        assert!(
            leecher.torrent.is_complete(),
            "the honest transfer completes ({role:?} under test)"
        );
        assert!(leecher.storage == content, "the data is the torrent's");
        assert!(
            leecher.events.contains(&TorrentEvent::Complete),
            "complete reported"
        );
        assert!(
            self.under.closed.iter().all(|(c, _)| *c != HONEST) && self.honest.closed.is_empty(),
            "the honest connection stays open: {:?} {:?}",
            self.under.closed,
            self.honest.closed
        );
    }

    fn leecher(&mut self) -> &mut Node {
        match self.role {
            Role::Leecher => &mut self.under,
            Role::Seeder => &mut self.honest,
        }
    }
}

fn peer(e: PeerError) -> CloseReason {
    CloseReason::Peer(e)
}

/// A `piece` message for block 0 of piece 0 with wrong bytes (0xee).
fn junk_block() -> Vec<u8> {
    frame(Message::Piece {
        piece: 0,
        offset: 0,
        data: &[0xee; 16 * 1024],
    })
}

fn request(piece: u32, offset: u32, len: u32) -> Vec<u8> {
    frame(Message::Request { piece, offset, len })
}

#[test]
fn a_handshake_for_another_torrent_closes() {
    // Proves BEP 3's rule: a handshake naming another info hash closes the connection at once,
    // before we say anything past our own handshake; the honest download completes.
    let mut lab = Lab::default(Role::Leecher);
    lab.run_for(secs(1));
    lab.connect_hostile(Direction::Outbound);
    let other = InfoHash([0x13; 20]);
    lab.hostile_send(&handshake(other, true));
    lab.assert_closed(peer(PeerError::WrongInfoHash(other)));
    assert_eq!(lab.to_hostile_total, 68, "only our handshake went out");
    lab.assert_honest_completes(secs(60));
}

#[test]
fn a_bitfield_of_the_wrong_length_or_with_spare_bits_closes() {
    // Proves BEP 3's bitfield rules: 12 pieces take exactly 2 bytes with the last 4 bits clear;
    // a short one, a long one (refused from the frame header) and one with spare bits set each
    // close with their reason, and the honest download completes each time.
    let cases: [(&[u8], CloseReason); 3] = [
        (
            &[0xff],
            peer(PeerError::Bitfield(BitfieldError::WrongLength {
                received: 1,
                expected: 2,
                pieces: PIECES,
            })),
        ),
        (
            &[0xff, 0xf0, 0x00],
            peer(PeerError::Wire(WireError::FrameTooLong {
                id: id::BITFIELD,
                len: 4,
                max: 3,
            })),
        ),
        (
            &[0xff, 0xf1],
            peer(PeerError::Bitfield(BitfieldError::SpareBitsSet)),
        ),
    ];
    for (bits, reason) in cases {
        let mut lab = Lab::default(Role::Leecher);
        lab.hostile_open(true, &[frame(Message::Bitfield(bits))]);
        lab.assert_closed(reason);
        lab.assert_honest_completes(secs(60));
    }
}

#[test]
fn a_have_of_a_piece_out_of_range_closes() {
    // Proves a have (or BEP 6 suggest / allowed-fast) naming a piece past the torrent's end
    // closes with the index, whether just past the end or at u32::MAX.
    for (m, index) in [
        (Message::Have { piece: PIECES }, PIECES),
        (Message::Have { piece: u32::MAX }, u32::MAX),
        (Message::SuggestPiece(PIECES), PIECES),
        (Message::AllowedFast(PIECES + 7), PIECES + 7),
    ] {
        let mut lab = Lab::default(Role::Leecher);
        lab.hostile_open(true, &[frame(Message::HaveNone), frame(m)]);
        lab.assert_closed(peer(PeerError::PieceOutOfRange(index)));
        lab.assert_honest_completes(secs(60));
    }
}

#[test]
fn a_request_over_16_kib_or_past_the_piece_end_closes() {
    // Proves a request that is not an exact block of this torrent closes with InvalidBlock, even
    // from a peer we unchoked, and serves nothing; the honest leecher still gets every block.
    let last = PIECES - 1;
    for (piece, offset, len) in [
        (0, 0, 32 * 1024),            // over 16 KiB
        (0, 16 * 1024, 32 * 1024),    // over 16 KiB and past the piece end
        (last, 16 * 1024, 16 * 1024), // past the last piece's end (3,616 bytes are left)
        (0, 40 * 1024, 16 * 1024),    // starts past the piece end
        (0, 100, 16 * 1024),          // not at a block boundary
        (0, 0, 0),                    // empty
        (PIECES, 0, 16 * 1024),       // no such piece
    ] {
        let mut lab = Lab::default(Role::Seeder);
        lab.connect_hostile(Direction::Inbound);
        lab.hostile_send(&[handshake(HASH, true), frame(Message::Interested)].concat());
        lab.run_for(secs(1));
        assert!(
            !lab.under.torrent.peer(HOSTILE).expect("open").am_choking(),
            "the fake peer is unchoked: the request is judged on its own"
        );
        lab.hostile_send(&request(piece, offset, len));
        lab.assert_closed(peer(PeerError::InvalidBlock { piece, offset, len }));
        let served = lab
            .hostile_frames()
            .iter()
            .filter(|f| matches!(f.message(), Message::Piece { .. }))
            .count();
        assert_eq!(served, 0, "nothing served");
        lab.assert_honest_completes(secs(60));
    }
}

/// The blocks of the torrent, as `(piece, offset, len)`.
fn all_blocks(layout: &TorrentLayout) -> Vec<(u32, u32, u32)> {
    layout
        .pieces()
        .flat_map(|p| layout.blocks(p).collect::<Vec<_>>())
        .map(|b| (b.piece.get(), b.offset, b.len))
        .collect()
}

/// What the fake peer was sent: (blocks, rejects).
fn served_and_rejected(frames: &[Frame]) -> (usize, usize) {
    let count =
        |pred: fn(&Message<'_>) -> bool| frames.iter().filter(|f| pred(&f.message())).count();
    (
        count(|m| matches!(m, Message::Piece { .. })),
        count(|m| matches!(m, Message::RejectRequest { .. })),
    )
}

#[test]
fn a_request_flood_closes_with_the_queue_bound() {
    // Proves a flood of requests ends in TooManyRequests: without the Fast extension at the
    // first request past the queue bound; with it, after a queue's worth more were refused
    // (rejected or repeated) before we served a block. We answer at most one reject per refused
    // request, so the flood is never amplified, and the queue never passes its bound.
    let bound = 16;
    let config = TorrentConfig {
        peer: PeerConfig {
            max_peer_requests: bound,
            ..PeerConfig::default()
        },
        ..TorrentConfig::default()
    };
    for fast in [false, true] {
        let mut lab = Lab::new(Role::Seeder, config.clone(), RATE);
        lab.connect_hostile(Direction::Inbound);
        lab.hostile_send(&[handshake(HASH, fast), frame(Message::Interested)].concat());
        lab.run_for(secs(1));
        let blocks = all_blocks(&lab.layout);
        // 2,000 requests in one read: the 24 distinct blocks over and over.
        let flood: Vec<u8> = (0..2000)
            .flat_map(|i| {
                let (p, o, l) = blocks[i % blocks.len()];
                request(p, o, l)
            })
            .collect();
        lab.hostile_send(&flood);
        lab.assert_closed(peer(PeerError::TooManyRequests(bound)));
        let (served, rejected) = served_and_rejected(&lab.hostile_frames());
        assert_eq!(served, 0, "the flood closed it before any read came back");
        assert!(
            rejected <= bound,
            "{rejected} rejects for a flood: at most one per refusal"
        );
        lab.assert_honest_completes(secs(60));
    }
}

#[test]
fn requests_while_choked_close_past_the_bound() {
    // Proves a peer we choke that keeps requesting is closed (RequestWhileChoked) after a
    // queue's worth, with or without the Fast extension, having been sent at most one reject per
    // request and no block.
    for fast in [false, true] {
        let mut lab = Lab::default(Role::Seeder);
        // Not interested: it stays choked.
        lab.connect_hostile(Direction::Inbound);
        lab.hostile_send(&handshake(HASH, fast));
        lab.run_for(secs(1));
        assert!(lab.under.torrent.peer(HOSTILE).expect("open").am_choking());
        let flood: Vec<u8> = request(0, 0, 16 * 1024).repeat(600);
        lab.hostile_send(&flood);
        lab.assert_closed(peer(PeerError::RequestWhileChoked));
        let (served, rejected) = served_and_rejected(&lab.hostile_frames());
        assert_eq!(served, 0);
        assert!(rejected <= PeerConfig::default().max_peer_requests);
        lab.assert_honest_completes(secs(60));
    }
}

#[test]
fn blocks_we_never_asked_for_are_dropped_then_close() {
    // Proves a piece message we never asked for is dropped without reaching the disk, counted as
    // waste, and past the bound (64) closes with UnrequestedBlocks; the honest download completes
    // with only honest bytes written.
    let mut lab = Lab::default(Role::Leecher);
    // Have-none: we never request from it, so every block it sends is unrequested.
    lab.hostile_open(true, &[frame(Message::HaveNone), frame(Message::Unchoke)]);
    let block = junk_block();
    let max = PeerConfig::default().max_unrequested_blocks;
    for i in 0..max {
        lab.hostile_send(&block);
        assert_eq!(lab.hostile_closed(), None, "block {i} is tolerated");
    }
    assert_eq!(
        lab.under.torrent.stats().wasted,
        u64::from(max) * 16 * 1024,
        "counted as waste"
    );
    lab.hostile_send(&block);
    lab.assert_closed(peer(PeerError::UnrequestedBlocks(max)));
    lab.assert_honest_completes(secs(60));
    let content = &lab.content;
    let layout = &lab.layout;
    assert!(
        lab.writes.iter().all(|(b, data)| {
            let at = (layout.piece_offset(b.piece) + u64::from(b.offset)) as usize;
            data[..] == content[at..at + data.len()]
        }),
        "no unrequested byte reached the disk"
    );
}

#[test]
fn a_4_gib_length_prefix_closes_from_the_header() {
    // Proves a length prefix of 4 GiB (for a piece, or an unknown id) is refused from the 5-byte
    // header: nothing is buffered for the body it claims, even with a megabyte of it in the
    // same read, and the honest download completes.
    for (id_byte, max) in [(id::PIECE, 9 + 16 * 1024), (200, 9 + 16 * 1024)] {
        let mut lab = Lab::default(Role::Leecher);
        lab.hostile_open(true, &[frame(Message::HaveNone)]);
        lab.hostile_send(&[0xff; 4]);
        let buffered = lab
            .under
            .torrent
            .peer(HOSTILE)
            .expect("open")
            .receive_buffered_len();
        assert_eq!(buffered, 4, "the prefix alone waits for its id byte");
        let mut rest = vec![id_byte];
        rest.extend(std::iter::repeat_n(0xab, 1 << 20));
        lab.hostile_send(&rest);
        lab.assert_closed(peer(PeerError::Wire(WireError::FrameTooLong {
            id: id_byte,
            len: u32::MAX,
            max,
        })));
        lab.assert_honest_completes(secs(60));
    }
}

#[test]
fn a_frame_trickled_a_byte_a_second_closes_after_the_frame_timeout() {
    // Proves slowloris ends: a peer that sends a 16 KiB block one byte a second never lets the
    // idle timer fire, but the frame timeout (60 s from the frame's first byte) closes it, while
    // the buffer holds only the bytes that came; the slower honest download completes meanwhile.
    let mut lab = Lab::new(Role::Leecher, TorrentConfig::default(), 8 * 1024);
    lab.hostile_open(true, &[frame(Message::HaveNone)]);
    let started = lab.now;
    let block = junk_block();
    let timeout = PeerConfig::default().frame_timeout;
    let mut sent = 0;
    for byte in &block {
        if lab.hostile_closed().is_some() {
            break;
        }
        lab.hostile_send(&[*byte]);
        sent += 1;
        let buffered = lab
            .under
            .torrent
            .peer(HOSTILE)
            .map(|p| p.receive_buffered_len());
        assert!(
            buffered.is_none_or(|b| b == sent),
            "only what came is buffered"
        );
        lab.run_for(secs(1));
    }
    lab.assert_closed(peer(PeerError::FrameTimeout(timeout)));
    assert_eq!(
        sent,
        timeout.as_secs() as usize,
        "closed at the frame timeout, no later"
    );
    assert!(lab.now - started <= timeout + secs(1));
    lab.assert_honest_completes(secs(120));
}

#[test]
fn a_handshake_trickled_a_byte_a_second_closes_after_the_handshake_timeout() {
    // Proves slowloris in the handshake ends at the handshake timeout (20 s from the connection),
    // however steadily the bytes come.
    let mut lab = Lab::new(Role::Leecher, TorrentConfig::default(), 8 * 1024);
    lab.connect_hostile(Direction::Inbound);
    for byte in handshake(HASH, true).iter().take(40) {
        if lab.hostile_closed().is_some() {
            break;
        }
        lab.hostile_send(&[*byte]);
        lab.run_for(secs(1));
    }
    let timeout = PeerConfig::default().handshake_timeout;
    lab.assert_closed(peer(PeerError::HandshakeTimeout(timeout)));
    assert_eq!(
        lab.now,
        Instant::ZERO + timeout,
        "closed at the handshake timeout"
    );
    lab.assert_honest_completes(secs(120));
}

#[test]
fn a_peer_that_never_speaks_closes_after_the_handshake_timeout() {
    // Proves a peer that connects (either way) and never sends a byte is closed at the handshake
    // timeout; the honest download completes.
    let timeout = PeerConfig::default().handshake_timeout;
    for direction in [Direction::Outbound, Direction::Inbound] {
        let mut lab = Lab::default(Role::Leecher);
        lab.connect_hostile(direction);
        lab.run_for(timeout - Duration::from_millis(1));
        assert_eq!(
            lab.hostile_closed(),
            None,
            "{direction:?}: not before the timeout"
        );
        lab.run_for(Duration::from_millis(1));
        lab.assert_closed(peer(PeerError::HandshakeTimeout(timeout)));
        lab.assert_honest_completes(secs(60));
    }
}

#[test]
fn a_choke_unchoke_storm_closes_and_our_requests_stay_bounded() {
    // Proves a choke/unchoke storm costs us at most a minimal pipeline of requests per unchoke
    // (the fake peer sends no block, so its pipeline target stays at the minimum) and closes at
    // the 21st choke within a minute while we want its pieces (ChokeStorm); with and without the
    // Fast extension.
    let config = PeerConfig::default();
    for fast in [false, true] {
        // A slow honest link: we stay interested in the fake peer's pieces all through.
        let mut lab = Lab::new(Role::Leecher, TorrentConfig::default(), 16 * 1024);
        lab.hostile_open(fast, &[frame(Message::Bitfield(&[0xff, 0xf0]))]);
        let mut requests = 0;
        let mut unchokes = 0;
        for _ in 0..100 {
            if lab.hostile_closed().is_some() {
                break;
            }
            lab.hostile_send(&frame(Message::Unchoke));
            unchokes += 1;
            lab.run_for(Duration::from_millis(200));
            lab.hostile_send(&frame(Message::Choke));
            lab.run_for(Duration::from_millis(200));
            requests += lab
                .hostile_frames()
                .iter()
                .filter(|f| matches!(f.message(), Message::Request { .. }))
                .count();
        }
        lab.assert_closed(peer(PeerError::ChokeStorm {
            chokes: config.max_chokes + 1,
            window: config.choke_window,
        }));
        assert_eq!(unchokes, config.max_chokes as usize + 1);
        assert!(requests > 0, "it was asked for blocks");
        assert!(
            requests <= unchokes * config.min_pipeline as usize,
            "{requests} requests for {unchokes} unchokes (fast: {fast})"
        );
        lab.assert_honest_completes(secs(60));
    }
}

#[test]
fn a_peer_sending_corrupt_data_is_banned() {
    // Proves a peer that answers our requests with wrong bytes is banned once its pieces fail
    // their hash check (Banned), and the download completes from the honest peer with the
    // right bytes.
    let mut lab = Lab::new(Role::Leecher, TorrentConfig::default(), 16 * 1024);
    lab.hostile_open(true, &[frame(Message::HaveAll), frame(Message::Unchoke)]);
    for _ in 0..600 {
        if lab.hostile_closed().is_some() {
            break;
        }
        let wanted: Vec<(u32, u32, u32)> = lab
            .hostile_frames()
            .iter()
            .filter_map(|f| match f.message() {
                Message::Request { piece, offset, len } => Some((piece, offset, len)),
                _ => None,
            })
            .collect();
        for (piece, offset, len) in wanted {
            let junk = vec![0xee; len as usize];
            lab.hostile_send(&frame(Message::Piece {
                piece,
                offset,
                data: &junk,
            }));
        }
        lab.run_for(Duration::from_millis(100));
    }
    lab.assert_closed(CloseReason::Banned);
    assert!(
        lab.under
            .events
            .contains(&TorrentEvent::PeerBanned(addr(66).ip()))
    );
    assert!(lab.under.torrent.is_banned(addr(66).ip()));
    assert!(
        lab.under
            .events
            .iter()
            .any(|e| matches!(e, TorrentEvent::PieceFailed(_))),
        "its data failed the hash check"
    );
    lab.assert_honest_completes(secs(120));
}

#[test]
fn requests_for_pieces_we_lack_close_past_the_bound() {
    // Proves a peer we unchoked that keeps requesting a piece we do not have (BEP 3: peers
    // request what we announced) gets one reject per request and, past a queue's worth with no
    // block served, is closed with TooManyRequests; the download goes on.
    let mut lab = Lab::default(Role::Leecher);
    lab.hostile_open(
        true,
        &[frame(Message::HaveNone), frame(Message::Interested)],
    );
    lab.run_for(secs(1));
    assert!(
        !lab.under.torrent.peer(HOSTILE).expect("open").am_choking(),
        "the interested fake peer is unchoked"
    );
    let lacked = (0..PIECES)
        .rev()
        .find(|p| !lab.under.torrent.have().get(*p))
        .expect("a piece still missing after 1 s");
    let bound = PeerConfig::default().max_peer_requests;
    let one = request(lacked, 0, 16 * 1024);
    for i in 0..=bound {
        assert_eq!(
            lab.hostile_closed(),
            None,
            "request {i} is refused, not fatal"
        );
        lab.hostile_send(&one);
    }
    // The breach is found by the refusal, so the connection closes at once, not at the next read.
    lab.run_for(Duration::from_millis(1));
    lab.assert_closed(peer(PeerError::TooManyRequests(bound)));
    let (served, rejected) = served_and_rejected(&lab.hostile_frames());
    assert_eq!(served, 0);
    assert_eq!(rejected, bound + 1, "one reject per request, no more");
    lab.assert_honest_completes(secs(60));
}
